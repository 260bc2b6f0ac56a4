//! Cache sizing: an online miss-ratio curve from miniature simulations (Waldspurger,
//! Saemundsson, Ahmad, Park, ATC'17) of the store's own eviction policy.
//!
//! ```text
//!  key hash ─▶ low 32 bits < threshold?  (spatial sampling, rate R = 2^-k, SHARDS)
//!                  │ yes (R of the keys, all their requests)
//!                  ▼
//!   one Mutex ─▶ 6 miniature caches of SCALES × -m × R × (1 - slack) bytes, each an
//!                item-level size-aware S3-FIFO as the store's (small queue with an
//!                adaptive share, main queue with a 2-bit counter, ghost), every item
//!                charged its real footprint (header + key + value)
//!  estimate(s) = Σ over misses of mini s of 1/R / all lookups  (SHARDS-adj: the
//!                sample's excess or shortfall of requests is hot keys, which hit at
//!                any size; R halves when a mini reaches its share of ENTRY_CAP)
//! ```
//!
//! What the store wastes besides item bytes is taken off the simulated capacity: the
//! open segments of every shard (on average one segment per shard) and the unused end
//! of each segment an item did not fit, measured by packing the sampled items into
//! segments as the store does. A set of a key a mini holds updates its size in place:
//! under cache-aside a set follows a miss of the *real* cache, which a larger mini may
//! have hit. `R` starts at the largest power of two that keeps the sampled share of
//! `-m` under [`SAMPLE_BYTES`], and halves (the keys above the new threshold leave the
//! minis) whenever a mini holds more than its share of [`ENTRY_CAP`] entries, so
//! memory stays bounded whatever the item sizes (SHARDS' fixed-size variant).

use hashbrown::HashMap;
use std::collections::VecDeque;

/// Cache sizes simulated, as multiples of the current `-m`.
pub const SCALES: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
/// Names of [`SCALES`] in `stats sizing` rows.
pub const SCALE_NAMES: [&str; 6] = ["0.25x", "0.5x", "1x", "2x", "4x", "8x"];
/// The sampled share of `-m` (at 1x) is at most this many bytes.
pub const SAMPLE_BYTES: usize = 4 << 20;
/// Entries all minis hold at most (shared in proportion to their size).
pub const ENTRY_CAP: usize = 1 << 16;

/// Share of a queue in 1/1024 of the mini's bytes: start and bounds, as the store's.
const SMALL_SHARE_START: u32 = 102;
const SMALL_SHARE_MIN: u32 = 20;
const SMALL_SHARE_MAX: u32 = 512;

/// What the simulation needs to know of the store.
#[derive(Debug, Clone, Copy)]
pub struct StoreShape {
    /// Shards of the store.
    pub shards: usize,
    /// Bytes of a segment.
    pub seg_bytes: usize,
    /// Items above this get a segment of their own.
    pub big_item: usize,
    /// Bytes a large item's segment is rounded up to.
    pub big_align: usize,
    /// Reads an item needs in the small queue per this many bytes (up to 3).
    pub small_bytes_per_read: usize,
    /// The same in the main queue.
    pub main_bytes_per_read: usize,
}

#[derive(Debug, Clone, Copy)]
struct Ent {
    size: u32,
    freq: u8,
    main: bool,
    gen: u32,
}

/// One miniature cache.
#[derive(Debug, Default)]
struct Mini {
    map: HashMap<u64, Ent>,
    small: VecDeque<(u64, u32)>,
    main: VecDeque<(u64, u32)>,
    small_bytes: u64,
    main_bytes: u64,
    gen: u32,
    ghost: HashMap<u64, (u64, bool)>,
    ghost_fifo: VecDeque<(u64, u64)>,
    ghost_seq: u64,
    from_small: u64,
    from_main: u64,
    small_share: u32,
    misses: u64,
    /// Misses, each weighted by 1/R at the time (R halves as the sample grows).
    misses_w: f64,
    hits: u64,
}

impl Mini {
    fn new() -> Mini {
        Mini {
            small_share: SMALL_SHARE_START,
            ..Mini::default()
        }
    }

    fn reads_needed(per: usize, size: u32) -> u8 {
        (size as usize).div_ceil(per).clamp(1, 3) as u8
    }

    fn push(&mut self, h: u64, main: bool) {
        self.gen = self.gen.wrapping_add(1);
        let gen = self.gen;
        if let Some(e) = self.map.get_mut(&h) {
            e.gen = gen;
            e.main = main;
            if main {
                self.main.push_back((h, gen));
                self.main_bytes += u64::from(e.size);
            } else {
                self.small.push_back((h, gen));
                self.small_bytes += u64::from(e.size);
            }
        }
    }

    fn ghost_insert(&mut self, h: u64, main: bool) {
        self.ghost_seq += 1;
        self.ghost.insert(h, (self.ghost_seq, main));
        self.ghost_fifo.push_back((h, self.ghost_seq));
        if main {
            self.from_main += 1;
        } else {
            self.from_small += 1;
        }
        let bound = self.map.len().max(64);
        while self.ghost_fifo.len() > bound {
            if let Some((g, s)) = self.ghost_fifo.pop_front() {
                if self.ghost.get(&g).is_some_and(|&(gs, _)| gs == s) {
                    self.ghost.remove(&g);
                }
            }
        }
        if (self.from_small + self.from_main) as usize > bound {
            self.from_small /= 2;
            self.from_main /= 2;
        }
    }

    /// Evicts one item (or moves one survivor); false when empty.
    fn evict_one(&mut self, shape: &StoreShape, cap: u64) -> bool {
        let total = self.small_bytes + self.main_bytes;
        let from_small = !self.small.is_empty()
            && (self.small_bytes * 1024 > u64::from(self.small_share) * cap.max(total)
                || self.main.is_empty());
        let entry = if from_small {
            self.small.pop_front()
        } else {
            self.main.pop_front()
        };
        let Some((h, gen)) = entry else {
            return false;
        };
        let Some(e) = self.map.get(&h).copied() else {
            return true;
        };
        if e.gen != gen {
            return true;
        }
        if from_small {
            self.small_bytes -= u64::from(e.size);
            if e.freq >= Self::reads_needed(shape.small_bytes_per_read, e.size) {
                if let Some(m) = self.map.get_mut(&h) {
                    m.freq = 0;
                }
                self.push(h, true);
            } else {
                self.map.remove(&h);
                self.ghost_insert(h, false);
            }
        } else {
            self.main_bytes -= u64::from(e.size);
            let need = Self::reads_needed(shape.main_bytes_per_read, e.size);
            if e.freq >= need {
                if let Some(m) = self.map.get_mut(&h) {
                    m.freq -= need;
                }
                self.push(h, true);
            } else {
                self.map.remove(&h);
                self.ghost_insert(h, true);
            }
        }
        true
    }

    fn remove(&mut self, h: u64) {
        if let Some(e) = self.map.remove(&h) {
            if e.main {
                self.main_bytes -= u64::from(e.size);
            } else {
                self.small_bytes -= u64::from(e.size);
            }
        }
        // A deleted key leaves its queue entry behind until eviction reaches it; in a
        // cache that never fills, stores and deletes would pile them up.
        if self.small.len() + self.main.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            let live = |&(h, gen): &(u64, u32)| map.get(&h).is_some_and(|e| e.gen == gen);
            self.small.retain(live);
            self.main.retain(live);
        }
    }

    fn insert(&mut self, shape: &StoreShape, h: u64, size: u32, cap: u64) {
        if let Some(e) = self.map.get_mut(&h) {
            // In place: see the module doc.
            let old = u64::from(e.size);
            e.size = size;
            if e.main {
                self.main_bytes = self.main_bytes - old + u64::from(size);
            } else {
                self.small_bytes = self.small_bytes - old + u64::from(size);
            }
        } else {
            let main = match self.ghost.remove(&h) {
                None => false,
                Some((_, from_main)) => {
                    let (fs, fm) = (self.from_small.max(1) as u32, self.from_main.max(1) as u32);
                    self.small_share = if from_main {
                        self.small_share
                            .saturating_sub((fs / fm).max(1))
                            .max(SMALL_SHARE_MIN)
                    } else {
                        (self.small_share + (fm / fs).max(1)).min(SMALL_SHARE_MAX)
                    };
                    true
                }
            };
            if u64::from(size) > cap {
                return;
            }
            self.map.insert(
                h,
                Ent {
                    size,
                    freq: 0,
                    main,
                    gen: 0,
                },
            );
            self.push(h, main);
        }
        // Bounded: every step removes a queue entry or takes a read off a counter.
        let mut steps = 0usize;
        while self.small_bytes + self.main_bytes > cap {
            if !self.evict_one(shape, cap) || steps > 1 << 20 {
                break;
            }
            steps += 1;
        }
    }

    /// Keeps only the keys whose sample bits are under `threshold` (the rate halved).
    fn keep_under(&mut self, threshold: u64) {
        self.map.retain(|&h, _| sample_bits(h) < threshold);
        let map = &self.map;
        let live = |&(h, gen): &(u64, u32)| map.get(&h).is_some_and(|e| e.gen == gen);
        self.small.retain(live);
        self.main.retain(live);
        self.small_bytes = 0;
        self.main_bytes = 0;
        for e in self.map.values() {
            if e.main {
                self.main_bytes += u64::from(e.size);
            } else {
                self.small_bytes += u64::from(e.size);
            }
        }
        self.ghost.retain(|&h, _| sample_bits(h) < threshold);
        self.ghost_fifo.retain(|&(h, _)| sample_bits(h) < threshold);
    }

    fn get(&mut self, h: u64, weight: f64) -> bool {
        match self.map.get_mut(&h) {
            Some(e) => {
                e.freq = (e.freq + 1).min(3);
                self.hits += 1;
                true
            }
            None => {
                self.misses += 1;
                self.misses_w += weight;
                false
            }
        }
    }

    fn clear(&mut self) {
        let (m, w, h, s) = (self.misses, self.misses_w, self.hits, self.small_share);
        *self = Mini::new();
        (self.misses, self.misses_w, self.hits, self.small_share) = (m, w, h, s);
    }

    fn bytes(&self) -> usize {
        self.map.capacity() * 32
            + self.ghost.capacity() * 32
            + (self.small.capacity() + self.main.capacity() + self.ghost_fifo.capacity()) * 16
    }
}

/// Segment packing of the sampled items, for the share of memory segment ends waste.
#[derive(Debug, Default)]
struct Packer {
    fill: usize,
    used: u64,
    wasted: u64,
}

impl Packer {
    fn add(&mut self, shape: &StoreShape, size: usize) {
        if size > shape.big_item {
            let seg = size.next_multiple_of(shape.big_align.max(1));
            self.used += size as u64;
            self.wasted += (seg - size) as u64;
            return;
        }
        if self.fill + size > shape.seg_bytes {
            self.wasted += (shape.seg_bytes - self.fill) as u64;
            self.fill = 0;
        }
        self.fill += size;
        self.used += size as u64;
    }

    fn waste(&self) -> f64 {
        let all = self.used + self.wasted;
        if all == 0 {
            0.0
        } else {
            self.wasted as f64 / all as f64
        }
    }
}

/// One simulated size in a [`SizingReport`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeEstimate {
    /// Multiple of `-m`.
    pub scale: f64,
    /// Cache bytes it stands for (`scale × -m`).
    pub bytes: u64,
    /// Estimated miss ratio of lookups at that size (0..1).
    pub miss_ratio: f64,
    /// Entries the mini holds now.
    pub entries: usize,
}

/// What `stats sizing` prints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SizingReport {
    /// Sampling rate R now (a power of two, at most 1).
    pub rate: f64,
    /// Times R was halved because a mini reached its share of [`ENTRY_CAP`].
    pub halvings: u32,
    /// Lookups of sampled keys since the start or `stats reset`.
    pub sampled_lookups: u64,
    /// Lookups of all keys over the same time.
    pub lookups: u64,
    /// Distinct sampled keys the largest mini holds.
    pub sampled_keys: usize,
    /// Share of segment bytes left unused at segment ends by the sampled items.
    pub segment_waste: f64,
    /// Bytes the simulations take.
    pub bytes: usize,
    /// One row per size of [`SCALES`].
    pub sizes: Vec<SizeEstimate>,
}

/// The miniature simulations of one store.
#[derive(Debug)]
pub struct Sizing {
    shape: StoreShape,
    /// `sample_bits(h) < threshold` selects a key; `1 << 32` selects all.
    threshold: u64,
    rate: f64,
    halvings: u32,
    minis: Vec<Mini>,
    packer: Packer,
    sampled: u64,
}

/// The bits sampling looks at: the low 32 bits of the key hash (the index table's
/// hash; the simulations are store-wide, so it does not matter which shards or tables
/// the sampled keys live in, only that a key is in or out for good).
#[inline]
fn sample_bits(h: u64) -> u64 {
    h & 0xFFFF_FFFF
}

impl Sizing {
    /// Simulations for a store of `mem_limit` bytes.
    pub fn new(shape: StoreShape, mem_limit: usize) -> Sizing {
        let mut k = 0u32;
        while k < 32 && (mem_limit >> k) > SAMPLE_BYTES {
            k += 1;
        }
        Sizing {
            shape,
            threshold: 1u64 << (32 - k),
            rate: (1u64 << (32 - k)) as f64 / (1u64 << 32) as f64,
            halvings: 0,
            minis: SCALES.iter().map(|_| Mini::new()).collect(),
            packer: Packer::default(),
            sampled: 0,
        }
    }

    /// The sampling threshold now: [`Sizing::sampled`] with it says whether a key's
    /// requests are simulated (cheap: check first, lock only when it says yes).
    #[inline]
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Whether the key hash `h` is in a sample with `threshold`.
    #[inline]
    pub fn sampled(threshold: u64, h: u64) -> bool {
        sample_bits(h) < threshold
    }

    /// (bytes, entries) each mini may hold.
    fn caps(&self, mem_limit: usize) -> Vec<(u64, usize)> {
        let slack = self.shape.shards * self.shape.seg_bytes;
        let usable = mem_limit.saturating_sub(slack) as f64 * (1.0 - self.packer.waste());
        let sum: f64 = SCALES.iter().sum();
        SCALES
            .iter()
            .map(|s| {
                (
                    (usable * s * self.rate) as u64,
                    ((ENTRY_CAP as f64) * s / sum).max(16.0) as usize,
                )
            })
            .collect()
    }

    /// A lookup of sampled key `h`; `size`: the item's footprint when the real store
    /// had it (a cache-aside client fills a simulated miss with it).
    pub fn get(&mut self, h: u64, size: Option<usize>, mem_limit: usize) {
        if sample_bits(h) >= self.threshold {
            // Sampled under an earlier, higher rate (the caller read it unlocked).
            return;
        }
        self.sampled += 1;
        let caps = self.caps(mem_limit);
        let weight = 1.0 / self.rate;
        let mut fresh = false;
        for (m, &(cap, _)) in self.minis.iter_mut().zip(&caps) {
            if !m.get(h, weight) {
                if let Some(s) = size {
                    fresh = true;
                    m.insert(&self.shape, h, s.min(u32::MAX as usize) as u32, cap);
                }
            }
        }
        if fresh {
            if let Some(s) = size {
                self.packer.add(&self.shape, s);
            }
        }
        self.bound(&caps);
    }

    /// A store of sampled key `h` with an item of `size` bytes.
    pub fn set(&mut self, h: u64, size: usize, mem_limit: usize) {
        if sample_bits(h) >= self.threshold {
            return;
        }
        let caps = self.caps(mem_limit);
        self.packer.add(&self.shape, size);
        for (m, &(cap, _)) in self.minis.iter_mut().zip(&caps) {
            m.insert(&self.shape, h, size.min(u32::MAX as usize) as u32, cap);
        }
        self.bound(&caps);
    }

    /// Halves the rate while a mini holds more entries than its share of
    /// [`ENTRY_CAP`] (SHARDS with a fixed size): the keys above the new threshold
    /// leave every mini, and capacities follow the rate.
    fn bound(&mut self, caps: &[(u64, usize)]) {
        while self.threshold > 1
            && self
                .minis
                .iter()
                .zip(caps)
                .any(|(m, &(_, max))| m.map.len() > max)
        {
            self.threshold /= 2;
            self.rate /= 2.0;
            self.halvings += 1;
            for m in &mut self.minis {
                m.keep_under(self.threshold);
            }
        }
    }

    /// A removal of sampled key `h` (delete).
    pub fn delete(&mut self, h: u64) {
        for m in &mut self.minis {
            m.remove(h);
        }
    }

    /// `flush_all`: every mini is emptied (its counts stay).
    pub fn flush(&mut self) {
        for m in &mut self.minis {
            m.clear();
        }
    }

    /// Zeroes the counts (`stats reset`); what the minis hold stays.
    pub fn reset(&mut self) {
        self.sampled = 0;
        for m in &mut self.minis {
            m.misses = 0;
            m.misses_w = 0.0;
            m.hits = 0;
        }
    }

    /// The figures, given the lookups of all keys since the start or reset.
    pub fn report(&self, lookups: u64, mem_limit: usize) -> SizingReport {
        SizingReport {
            rate: self.rate,
            halvings: self.halvings,
            sampled_lookups: self.sampled,
            lookups,
            sampled_keys: self.minis.last().map_or(0, |m| m.map.len()),
            segment_waste: self.packer.waste(),
            bytes: std::mem::size_of::<Sizing>()
                + self.minis.iter().map(Mini::bytes).sum::<usize>(),
            sizes: self
                .minis
                .iter()
                .zip(SCALES)
                .map(|(m, s)| SizeEstimate {
                    scale: s,
                    bytes: (mem_limit as f64 * s) as u64,
                    miss_ratio: if lookups > 0 {
                        (m.misses_w / lookups as f64).min(1.0)
                    } else {
                        0.0
                    },
                    entries: m.map.len(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> StoreShape {
        StoreShape {
            shards: 4,
            seg_bytes: 32 * 1024,
            big_item: 8 * 1024,
            big_align: 64,
            small_bytes_per_read: 2048,
            main_bytes_per_read: 1024,
        }
    }

    #[test]
    fn stores_and_deletes_do_not_grow_the_queues() {
        let mut s = Sizing::new(shape(), 1 << 30);
        for i in 0..200_000u64 {
            // Keys inside the sample (low 32 bits under the threshold).
            let h = (i << 32) | 1;
            s.set(h, 100, 1 << 30);
            s.delete(h);
        }
        for m in &s.minis {
            assert!(m.small.len() + m.main.len() <= 1024 + 2 * m.map.len() + 1);
        }
    }

    #[test]
    fn the_rate_keeps_the_sample_bounded() {
        assert_eq!(Sizing::new(shape(), 1 << 20).rate, 1.0);
        assert_eq!(Sizing::new(shape(), 16 << 20).rate, 0.25);
        assert_eq!(Sizing::new(shape(), 1 << 30).rate, 1.0 / 256.0);
    }

    #[test]
    fn a_larger_cache_misses_less_and_the_curve_is_monotone() {
        // Cache-aside over a skewed key space at a small -m: all keys sampled.
        let mut s = Sizing::new(shape(), 1 << 20);
        let mut x = 1u64;
        let mut lookups = 0;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((x >> 11) as f64) / ((1u64 << 53) as f64);
            // Roughly Zipf over 20,000 keys of 200 bytes.
            let k = (20_000f64.powf(u) as u64).min(19_999);
            let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            lookups += 1;
            let before = s.minis[2].misses;
            s.get(h, None, 1 << 20);
            if s.minis[2].misses > before {
                s.set(h, 200, 1 << 20);
            }
        }
        let r = s.report(lookups, 1 << 20);
        let m: Vec<f64> = r.sizes.iter().map(|e| e.miss_ratio).collect();
        for w in m.windows(2) {
            assert!(w[0] >= w[1], "{m:?}");
        }
        assert!(m[0] > m[5] + 0.05, "{m:?}");
    }
}
