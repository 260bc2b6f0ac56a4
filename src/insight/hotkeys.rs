//! Hot keys: a space-saving sketch (Metwally, Agrawal, El Abbadi, ICDT'05) of the
//! most requested keys, one per worker thread, fed by a 1-in-[`SAMPLE_EVERY`] sample
//! of key requests and merged on demand (`stats hotkeys [N]`). A sample costs about
//! 250 instructions (callgrind), one in 16 requests about 16 per request.
//!
//! ```text
//!  request ─▶ worker's countdown (thread-local Cell) ─ not 0 ─▶ nothing more
//!                         │ 0: reset to a jittered SAMPLE_EVERY
//!                         ▼
//!        worker's Sketch (its own Mutex, uncontended but for `stats hotkeys`)
//!        COUNTERS slots: (key hash, count, error, key bytes); a key not monitored
//!        takes the slot with the smallest count, inheriting it as its error
//!  stats hotkeys N ─▶ every sketch: rate = count × SAMPLE_EVERY / span, summed by key
//! ```
//!
//! Counts decay: every [`HALF_LIFE`] seconds of server time a sketch halves its
//! counts and its time base together, so a rate is requests per second over roughly
//! the last two half-lives, and a key that cooled down leaves the top. Memory is
//! fixed: [`COUNTERS`] slots of at most 250 key bytes per worker.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

/// Monitored keys per worker. Space-saving's error is about the unmonitored tail's
/// share of the samples over the counter count: with 128 counters Zipf(0.99) over 1M
/// keys left ranks 8-10 with errors as large as their counts (`ferrocache-bench
/// insight`: 9/10 of the true top 10, ranks 8-10 unreliable); 512 keep them exact.
pub const COUNTERS: usize = 512;
// Slots are numbered in a u16.
const _: () = assert!(COUNTERS <= 1 << 16);
/// One request in this many (on average) is offered to the sketch.
pub const SAMPLE_EVERY: u32 = 16;
/// Seconds of server time after which a sketch halves its counts.
pub const HALF_LIFE: u32 = 60;
/// Longest key memcached accepts (a slot holds up to this many bytes).
const KEY_MAX: usize = 250;

/// One worker's sketch. A sample costs a hash-table probe and, for a key not
/// monitored, a step of the cursor that finds a slot with the smallest count (counts
/// only grow between halvings, so the cursor rarely walks far: a full turn that finds
/// none recomputes the minimum).
#[derive(Debug)]
struct Sketch {
    /// Key hash → slot.
    index: HashMap<u64, u16>,
    hashes: Vec<u64>,
    counts: Vec<u64>,
    errors: Vec<u64>,
    /// Key bytes per slot (buffers reused, at most 250 bytes each).
    keys: Vec<Vec<u8>>,
    /// The smallest count (a lower bound: some slot has it, or a turn of the cursor
    /// finds a larger one) and where the cursor is.
    min: u64,
    cursor: usize,
    /// Sampled requests (halved with the counts).
    total: u64,
    /// Effective seconds before `since` (halved with the counts).
    base: f64,
    /// Server time (relative seconds) the current stretch began.
    since: u32,
}

impl Sketch {
    fn new(now: u32) -> Sketch {
        Sketch {
            index: HashMap::with_capacity(COUNTERS),
            min: 0,
            cursor: 0,
            hashes: Vec::with_capacity(COUNTERS),
            counts: Vec::with_capacity(COUNTERS),
            errors: Vec::with_capacity(COUNTERS),
            keys: Vec::with_capacity(COUNTERS),
            total: 0,
            base: 0.0,
            since: now,
        }
    }

    /// Seconds the counts stand for (at least one).
    fn span(&self, now: u32) -> f64 {
        (self.base + f64::from(now.saturating_sub(self.since))).max(1.0)
    }

    fn offer(&mut self, key: &[u8], h: u64, now: u32) {
        if now.saturating_sub(self.since) >= HALF_LIFE {
            self.base = self.span(now) / 2.0;
            self.since = now;
            self.total /= 2;
            for (c, e) in self.counts.iter_mut().zip(self.errors.iter_mut()) {
                *c /= 2;
                *e /= 2;
            }
            self.min = 0;
        }
        self.total += 1;
        let key = &key[..key.len().min(KEY_MAX)];
        if let Some(&i) = self.index.get(&h) {
            let i = usize::from(i);
            if self.keys[i] == key {
                self.counts[i] += 1;
                return;
            }
            // Another key with the same 64-bit hash: it takes the slot over below.
        }
        if self.hashes.len() < COUNTERS {
            self.index.insert(h, self.hashes.len() as u16);
            self.hashes.push(h);
            self.counts.push(1);
            self.errors.push(0);
            self.keys.push(key.to_vec());
            return;
        }
        let i = self.min_slot();
        let min = self.counts[i];
        self.index.remove(&self.hashes[i]);
        self.index.insert(h, i as u16);
        self.hashes[i] = h;
        self.counts[i] = min + 1;
        self.errors[i] = min;
        self.keys[i].clear();
        self.keys[i].extend_from_slice(key);
        self.cursor = (i + 1) % COUNTERS;
    }

    /// A slot with the smallest count.
    fn min_slot(&mut self) -> usize {
        let n = self.counts.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            if self.counts[i] <= self.min {
                return i;
            }
        }
        let (i, &m) = self
            .counts
            .iter()
            .enumerate()
            .min_by_key(|&(_, c)| *c)
            .unwrap_or((0, &0));
        self.min = m;
        i
    }

    fn bytes(&self) -> usize {
        let slots = COUNTERS * (8 * 3 + std::mem::size_of::<Vec<u8>>());
        let index = self.index.capacity() * (8 + 2 + 1);
        slots + index + self.keys.iter().map(Vec::capacity).sum::<usize>()
    }

    fn clear(&mut self, now: u32) {
        *self = Sketch::new(now);
    }
}

/// A key of the merged top list.
#[derive(Debug, Clone, PartialEq)]
pub struct HotKey {
    /// The key's bytes (up to 250).
    pub key: Vec<u8>,
    /// Estimated requests per second, from the guaranteed count (`count - error`:
    /// space-saving overcounts by at most `error`); the list is ranked by it.
    pub rate: f64,
    /// Its estimated share of all requests (0..1).
    pub share: f64,
    /// Sampled requests counted for it, over all workers.
    pub count: u64,
    /// The most `count` may exceed its true sampled count by.
    pub error: u64,
}

/// The merged figures `stats hotkeys` prints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HotReport {
    /// The top keys, most requested first.
    pub top: Vec<HotKey>,
    /// Estimated requests per second over all keys.
    pub total_rate: f64,
    /// Sampled requests now counted (after decay), over all workers.
    pub sampled: u64,
    /// Bytes the sketches take.
    pub bytes: usize,
    /// Worker sketches.
    pub sketches: usize,
}

thread_local! {
    /// The calling thread's sketch: (hot-key set id, its sketch).
    static LOCAL: std::cell::RefCell<Option<(u64, Arc<Mutex<Sketch>>)>> =
        const { std::cell::RefCell::new(None) };
    /// Requests left before the next sample; xorshift state for the jitter.
    static COUNTDOWN: Cell<u32> = const { Cell::new(1) };
    static JITTER: Cell<u32> = const { Cell::new(0x9E37_79B9) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The hot-key sketches of one server: one per thread that serves requests.
#[derive(Debug)]
pub struct HotKeys {
    id: u64,
    on: AtomicBool,
    sketches: Mutex<Vec<Arc<Mutex<Sketch>>>>,
    /// Bumped when sampling is switched or the counts are forgotten: a report made
    /// before is no longer what a new one would say.
    epoch: AtomicU64,
}

impl HotKeys {
    /// Sketches collecting when `on`.
    pub fn new(on: bool) -> HotKeys {
        HotKeys {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            on: AtomicBool::new(on),
            sketches: Mutex::new(Vec::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Whether requests are sampled.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Switches sampling on or off (counts are kept).
    pub fn set_enabled(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes when sampling is switched or the counts are cleared (a cached report
    /// from another epoch is stale).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// A request for `key` (hash `h`) at server time `now` (relative seconds): counted
    /// on one request in [`SAMPLE_EVERY`] on average.
    #[inline]
    pub fn note(&self, key: &[u8], h: u64, now: impl FnOnce() -> u32) {
        if !self.enabled() {
            return;
        }
        let left = COUNTDOWN.with(|c| {
            let v = c.get() - 1;
            c.set(v);
            v
        });
        if left == 0 {
            self.sample(key, h, now());
        }
    }

    #[cold]
    fn sample(&self, key: &[u8], h: u64, now: u32) {
        // Next gap: uniform in 1..=2×SAMPLE_EVERY-1 (mean SAMPLE_EVERY), so a request
        // pattern with a period cannot hide from or flood the sample.
        let r = JITTER.with(|j| {
            let mut x = j.get();
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            j.set(x);
            x
        });
        COUNTDOWN.with(|c| c.set(1 + r % (2 * SAMPLE_EVERY - 1)));
        LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            match &*l {
                Some((id, sk)) if *id == self.id => sk.lock().offer(key, h, now),
                _ => {
                    let sk = Arc::new(Mutex::new(Sketch::new(now)));
                    sk.lock().offer(key, h, now);
                    self.sketches.lock().push(sk.clone());
                    *l = Some((self.id, sk));
                }
            }
        });
    }

    /// The `n` most requested keys, merged over the workers, at server time `now`.
    pub fn report(&self, n: usize, now: u32) -> HotReport {
        let sketches = self.sketches.lock().clone();
        let every = f64::from(SAMPLE_EVERY);
        let mut merged: HashMap<Vec<u8>, (f64, u64, u64)> = HashMap::new();
        let mut rep = HotReport {
            sketches: sketches.len(),
            ..HotReport::default()
        };
        for sk in &sketches {
            let s = sk.lock();
            let span = s.span(now);
            rep.total_rate += s.total as f64 * every / span;
            rep.sampled += s.total;
            rep.bytes += s.bytes();
            for i in 0..s.keys.len() {
                let e = merged.entry(s.keys[i].clone()).or_default();
                // The guaranteed part of the count: a key that entered the sketch
                // late inherited the smallest count as its error, and in a long tail
                // that error is as large as a hot key's count.
                e.0 += (s.counts[i] - s.errors[i]) as f64 * every / span;
                e.1 += s.counts[i];
                e.2 += s.errors[i];
            }
        }
        let mut top: Vec<HotKey> = merged
            .into_iter()
            .map(|(key, (rate, count, error))| HotKey {
                key,
                rate,
                share: if rep.total_rate > 0.0 {
                    rate / rep.total_rate
                } else {
                    0.0
                },
                count,
                error,
            })
            .collect();
        top.sort_by(|a, b| b.rate.total_cmp(&a.rate).then_with(|| a.key.cmp(&b.key)));
        top.truncate(n);
        rep.top = top;
        rep
    }

    /// Forgets every count (`stats reset`).
    pub fn clear(&self, now: u32) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        for sk in self.sketches.lock().iter() {
            sk.lock().clear(now);
        }
    }
}

/// A key as `stats hotkeys` prints it: bytes other than ASCII letters, digits and
/// `-._~:/` as `%XX` (so a row never holds a space, a control byte or a non-ASCII
/// byte; `%` itself is `%25`), as memcached's metadump writes keys.
pub fn escape_key(key: &[u8]) -> String {
    let mut s = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-._~:/".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaviest_keys_are_kept_and_ranked() {
        let mut s = Sketch::new(0);
        // 20 heavy keys with decreasing weights among 5,000 light ones.
        let mut x = 7u64;
        for round in 0..2000u64 {
            for k in 0..20u64 {
                if round % (k + 1) == 0 {
                    let key = format!("hot{k}");
                    s.offer(key.as_bytes(), k, 1);
                }
            }
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            let light = 1000 + (x >> 33) % 5000;
            s.offer(format!("cold{light}").as_bytes(), light, 1);
        }
        let mut order: Vec<usize> = (0..s.keys.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(s.counts[i]));
        let top: Vec<&[u8]> = order[..3].iter().map(|&i| &s.keys[i][..]).collect();
        assert_eq!(top, [&b"hot0"[..], b"hot1", b"hot2"]);
        assert!(s.keys.len() <= COUNTERS);
    }

    #[test]
    fn counts_and_time_base_halve_together() {
        let mut s = Sketch::new(0);
        for _ in 0..100 {
            s.offer(b"k", 1, 10);
        }
        assert_eq!(s.span(10), 10.0);
        s.offer(b"k", 1, HALF_LIFE);
        assert_eq!(s.counts[0], 51);
        assert_eq!(s.span(HALF_LIFE), f64::from(HALF_LIFE) / 2.0);
    }

    #[test]
    fn keys_are_escaped() {
        assert_eq!(
            escape_key(b"a b\r\n%\x00\xff:x/y"),
            "a%20b%0D%0A%25%00%FF:x/y"
        );
    }
}
