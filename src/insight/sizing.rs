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

use crate::policy::{self, Band, BandShare, Coin, Lifetimes, Queue};
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
}

#[derive(Debug, Clone, Copy)]
struct Ent {
    size: u32,
    freq: u8,
    q: Queue,
    gen: u32,
}

/// A key in a mini's ghost: where it was evicted from, and its band's eviction clock
/// (bytes) then.
#[derive(Debug, Clone, Copy)]
struct GhostEnt {
    band: Band,
    q: Queue,
    clock: u64,
    seq: u64,
}

/// One miniature cache: the store's policy ([`crate::policy`]) on items instead of
/// segments.
#[derive(Debug)]
struct Mini {
    map: HashMap<u64, Ent>,
    /// Queues by band and queue: (key, generation).
    queues: [[VecDeque<(u64, u32)>; 2]; 2],
    bytes: [[u64; 2]; 2],
    /// The charge probabilities of each band's size classes.
    lifetimes: [Lifetimes; 2],
    small_share: [u32; 2],
    large_share: BandShare,
    gen: u32,
    ghost: HashMap<u64, GhostEnt>,
    ghost_fifo: VecDeque<(u64, u64)>,
    ghost_seq: u64,
    /// Bytes evicted from each band.
    clock: [u64; 2],
    /// Recent evictions from each queue of each band.
    from: [[u32; 2]; 2],
    coin: Coin,
    misses: u64,
    /// Misses, each weighted by 1/R at the time (R halves as the sample grows).
    misses_w: f64,
    hits: u64,
}

impl Mini {
    fn new() -> Mini {
        Mini {
            map: HashMap::new(),
            queues: Default::default(),
            bytes: [[0; 2]; 2],
            lifetimes: [Lifetimes::default(), Lifetimes::default()],
            small_share: [policy::SMALL_SHARE_START; 2],
            large_share: BandShare::default(),
            gen: 0,
            ghost: HashMap::new(),
            ghost_fifo: VecDeque::new(),
            ghost_seq: 0,
            clock: [0; 2],
            from: [[0; 2]; 2],
            coin: Coin::new(0x5DEE_CE66_D1CE_4E5B),
            misses: 0,
            misses_w: 0.0,
            hits: 0,
        }
    }

    fn total_bytes(&self) -> u64 {
        self.bytes.iter().flatten().sum()
    }

    fn band_bytes(&self, b: Band) -> u64 {
        self.bytes[b.index()].iter().sum()
    }

    fn push(&mut self, h: u64, q: Queue) {
        self.gen = self.gen.wrapping_add(1);
        let gen = self.gen;
        if let Some(e) = self.map.get_mut(&h) {
            e.gen = gen;
            e.q = q;
            let b = Band::of(e.size as usize).index();
            self.queues[b][q.index()].push_back((h, gen));
            self.bytes[b][q.index()] += u64::from(e.size);
        }
    }

    fn ghost_insert(&mut self, h: u64, band: Band, q: Queue, size: u32) {
        let b = band.index();
        self.clock[b] += u64::from(size);
        self.ghost_seq += 1;
        self.ghost.insert(
            h,
            GhostEnt {
                band,
                q,
                clock: self.clock[b],
                seq: self.ghost_seq,
            },
        );
        self.ghost_fifo.push_back((h, self.ghost_seq));
        self.from[b][q.index()] += 1;
        let bound = self.map.len().max(64);
        while self.ghost_fifo.len() > bound {
            if let Some((g, s)) = self.ghost_fifo.pop_front() {
                if self.ghost.get(&g).is_some_and(|e| e.seq == s) {
                    self.ghost.remove(&g);
                }
            }
        }
        let f = &mut self.from[b];
        if (f[0] + f[1]) as usize > bound {
            f[0] /= 2;
            f[1] /= 2;
        }
    }

    /// The band the next eviction takes from, as the store's `evict_band`.
    fn evict_band(&mut self) -> Band {
        let large: usize = self.queues[1].iter().map(VecDeque::len).sum();
        let packed: usize = self.queues[0].iter().map(VecDeque::len).sum();
        if large == 0 {
            return Band::Packed;
        }
        if packed == 0 {
            return Band::Large;
        }
        let now = self.gen;
        let older = match (self.oldest(Band::Packed), self.oldest(Band::Large)) {
            (Some(p), Some(l)) if now.wrapping_sub(l) > now.wrapping_sub(p) => Band::Large,
            _ => Band::Packed,
        };
        let large = self.band_bytes(Band::Large) as usize;
        self.large_share
            .pick(large, self.total_bytes() as usize, older)
    }

    /// The push number of the oldest live entry at the fronts of `band`'s queues.
    fn oldest(&self, band: Band) -> Option<u32> {
        let now = self.gen;
        self.queues[band.index()]
            .iter()
            .filter_map(|q| {
                q.iter()
                    .take(4)
                    .find_map(|&(h, gen)| self.map.get(&h).filter(|e| e.gen == gen).map(|_| gen))
            })
            .max_by_key(|&g| now.wrapping_sub(g))
    }

    /// Evicts one item (or moves one survivor); false when empty.
    fn evict_one(&mut self, cap: u64) -> bool {
        let band = self.evict_band();
        let b = band.index();
        let [small, main] = &self.bytes[b];
        let total = small + main;
        let from_small = !self.queues[b][0].is_empty()
            && (small * 1024 > u64::from(self.small_share[b]) * cap.max(total)
                || self.queues[b][1].is_empty());
        let q = if from_small {
            Queue::Small
        } else {
            Queue::Main
        };
        let Some((h, gen)) = self.queues[b][q.index()].pop_front() else {
            return false;
        };
        let Some(e) = self.map.get(&h).copied() else {
            return true;
        };
        if e.gen != gen {
            return true;
        }
        self.bytes[b][q.index()] -= u64::from(e.size);
        let nf = if !self.lifetimes[b].charged(e.size as usize, &mut self.coin) {
            Some(e.freq)
        } else if e.freq >= policy::READS_PER_CHARGE {
            Some(match q {
                Queue::Small => 0,
                Queue::Main => e.freq - policy::READS_PER_CHARGE,
            })
        } else {
            None
        };
        match nf {
            Some(f) => {
                if let Some(m) = self.map.get_mut(&h) {
                    m.freq = f;
                }
                self.push(h, Queue::Main);
            }
            None => {
                self.map.remove(&h);
                self.lifetimes[b].removed(e.size as usize);
                self.ghost_insert(h, band, q, e.size);
            }
        }
        true
    }

    fn remove(&mut self, h: u64) {
        if let Some(e) = self.map.remove(&h) {
            let b = Band::of(e.size as usize).index();
            self.bytes[b][e.q.index()] -= u64::from(e.size);
            self.lifetimes[b].removed(e.size as usize);
        }
        // A deleted key leaves its queue entry behind until eviction reaches it; in a
        // cache that never fills, stores and deletes would pile them up.
        let queued: usize = self.queues.iter().flatten().map(VecDeque::len).sum();
        if queued > 2 * self.map.len() + 1024 {
            self.compact_queues();
        }
    }

    fn compact_queues(&mut self) {
        let map = &self.map;
        let live = |&(h, gen): &(u64, u32)| map.get(&h).is_some_and(|e| e.gen == gen);
        for q in self.queues.iter_mut().flatten() {
            q.retain(live);
        }
    }

    fn insert(&mut self, h: u64, size: u32, cap: u64) {
        if let Some(e) = self.map.get(&h).copied() {
            // In place: see the module doc. A size that changes band is a new item.
            if Band::of(e.size as usize) == Band::of(size as usize) {
                let b = Band::of(size as usize).index();
                self.bytes[b][e.q.index()] =
                    self.bytes[b][e.q.index()] - u64::from(e.size) + u64::from(size);
                self.lifetimes[b].removed(e.size as usize);
                self.lifetimes[b].stored(size as usize);
                if let Some(m) = self.map.get_mut(&h) {
                    m.size = size;
                }
            } else {
                self.remove(h);
                return self.insert(h, size, cap);
            }
        } else {
            let back = self.ghost.remove(&h);
            if let Some(g) = back {
                let b = g.band.index();
                let [fs, fm] = self.from[b];
                self.small_share[b] = policy::adapt_small_share(self.small_share[b], g.q, fs, fm);
                let distance = self.clock[b] - g.clock;
                self.large_share.returned(g.band, distance, cap);
            }
            let q = policy::admit(back.map(|g| g.q));
            if u64::from(size) > cap {
                return;
            }
            self.map.insert(
                h,
                Ent {
                    size,
                    freq: 0,
                    q,
                    gen: 0,
                },
            );
            self.lifetimes[Band::of(size as usize).index()].stored(size as usize);
            self.push(h, q);
        }
        // Bounded: every step removes a queue entry or takes a read off a counter.
        let mut steps = 0usize;
        while self.total_bytes() > cap {
            if !self.evict_one(cap) || steps > 1 << 20 {
                break;
            }
            steps += 1;
        }
    }

    /// Keeps only the keys whose sample bits are under `threshold` (the rate halved).
    fn keep_under(&mut self, threshold: u64) {
        self.map.retain(|&h, _| sample_bits(h) < threshold);
        self.compact_queues();
        self.bytes = [[0; 2]; 2];
        for l in &mut self.lifetimes {
            l.forget_sizes();
        }
        let ents: Vec<Ent> = self.map.values().copied().collect();
        for e in ents {
            let b = Band::of(e.size as usize).index();
            self.bytes[b][e.q.index()] += u64::from(e.size);
            self.lifetimes[b].stored(e.size as usize);
        }
        self.ghost.retain(|&h, _| sample_bits(h) < threshold);
        self.ghost_fifo.retain(|&(h, _)| sample_bits(h) < threshold);
    }

    fn get(&mut self, h: u64, weight: f64) -> bool {
        match self.map.get_mut(&h) {
            Some(e) => {
                self.lifetimes[Band::of(e.size as usize).index()].read(e.size as usize);
                if e.freq < 3 && policy::read_counts(e.size as usize, &mut self.coin) {
                    e.freq += 1;
                }
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
        let (m, w, h, s, l) = (
            self.misses,
            self.misses_w,
            self.hits,
            self.small_share,
            self.large_share,
        );
        *self = Mini::new();
        (
            self.misses,
            self.misses_w,
            self.hits,
            self.small_share,
            self.large_share,
        ) = (m, w, h, s, l);
    }

    fn bytes(&self) -> usize {
        self.map.capacity() * 32
            + self.ghost.capacity() * 48
            + (self
                .queues
                .iter()
                .flatten()
                .map(VecDeque::capacity)
                .sum::<usize>()
                + self.ghost_fifo.capacity())
                * 16
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
                    m.insert(h, s.min(u32::MAX as usize) as u32, cap);
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
            m.insert(h, size.min(u32::MAX as usize) as u32, cap);
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
            let queued: usize = m.queues.iter().flatten().map(VecDeque::len).sum();
            assert!(queued <= 1024 + 2 * m.map.len() + 1);
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
