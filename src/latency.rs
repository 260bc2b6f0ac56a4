//! Server-side request latency: per command family, the time from "request parsed"
//! to "reply queued" (written into the connection's reply buffer), in log-linear
//! histograms.
//!
//! ```text
//!   bucket i < 8:   ns in (i, i + 1]          (the first eight are 1 ns wide)
//!   bucket i >= 8:  octave m = i / 8 + 2, step k = i % 8:
//!                   ns in ((8 + k) << (m - 3), (9 + k) << (m - 3)]
//!   255 buckets up to 2^34 ns (~17 s), the last one open-ended
//! ```
//!
//! Eight linear sub-buckets per power of two: every bucket is at most 12.5 % wide, from
//! nanoseconds to seconds. Bucket bounds are inclusive at the top (`x ∈ (lo, hi]`),
//! which is Prometheus' `le`, so the exported cumulative buckets are exact sums.
//!
//! **Cost.** Reading the clock (`Instant::now`, vDSO `clock_gettime` on the TSC) costs
//! ~22 ns here, two per timed request; pipelined gets cost the server ~0.4 µs each, so
//! timing every request would add ~11 %. Each worker therefore *counts* every request
//! but *times* one in `N` (`-o latency_sample=N`, default [`DEFAULT_SAMPLE`]; `1` times
//! all), at gaps drawn uniformly from `1..=2N-1` so that no periodic pattern of
//! requests (a pipelined batch of `N`) always puts the same position under the clock.
//! Quantiles of the sample estimate those of all requests; the histograms' counts are
//! the timed requests, [`FamilySnapshot::requests`] all of them.
//!
//! **Concurrency.** A [`Latency`] block belongs to one worker, the only thread that
//! writes it (relaxed atomics on its own cache lines); `stats latency` and `/metrics`
//! sum the blocks of all workers on demand. The request counts are written with a
//! plain load and store (no locked instruction on the per-request path): a
//! `stats reset` racing a worker's increment may lose to it, leaving one count from
//! before the reset.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Sub-buckets per power of two (as a bit count: 8).
const SUB_BITS: u32 = 3;
/// Histogram buckets.
pub const BUCKETS: usize = 256;
/// One request in this many is timed by default.
pub const DEFAULT_SAMPLE: u32 = 16;

/// The command families timed apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `get`, `gets`.
    Get,
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Set,
    /// `delete`.
    Delete,
    /// `incr`, `decr`.
    IncrDecr,
    /// `touch`, `gat`, `gats`.
    Touch,
    /// The meta commands (`mg ms md ma mn me`).
    Meta,
    /// Every binary-protocol request.
    Binary,
}

/// Number of [`Family`] values.
pub const FAMILIES: usize = 7;

impl Family {
    /// Every family, in the order `stats latency` prints them.
    pub const ALL: [Family; FAMILIES] = [
        Family::Get,
        Family::Set,
        Family::Delete,
        Family::IncrDecr,
        Family::Touch,
        Family::Meta,
        Family::Binary,
    ];

    /// The name in `stats latency` rows and the `family` label of `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Get => "get",
            Family::Set => "set",
            Family::Delete => "delete",
            Family::IncrDecr => "incr_decr",
            Family::Touch => "touch",
            Family::Meta => "meta",
            Family::Binary => "binary",
        }
    }
}

/// The bucket of a latency of `ns` nanoseconds.
#[inline]
pub fn bucket_of(ns: u64) -> usize {
    let x = ns.saturating_sub(1);
    let sub = 1u64 << SUB_BITS;
    if x < sub {
        return x as usize;
    }
    let msb = 63 - x.leading_zeros();
    let shift = msb - SUB_BITS;
    let idx = ((shift + 1) << SUB_BITS) as u64 + ((x >> shift) & (sub - 1));
    (idx as usize).min(BUCKETS - 1)
}

/// The largest latency (ns) bucket `i` holds (its inclusive upper bound); the last
/// bucket also holds everything above it.
pub fn bucket_upper_ns(i: usize) -> u64 {
    let sub = 1u64 << SUB_BITS;
    let i = i.min(BUCKETS - 1) as u64;
    if i < sub {
        return i + 1;
    }
    let shift = (i >> SUB_BITS) - 1;
    let k = i & (sub - 1);
    (sub + k + 1) << shift
}

/// One family's histogram in a worker's block.
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

/// One worker's latency figures: a histogram and a request count per family.
#[repr(align(128))]
pub struct Latency {
    hist: [Histogram; FAMILIES],
    requests: [AtomicU64; FAMILIES],
    /// Requests until the next timed one.
    countdown: AtomicU32,
    /// xorshift state for the gaps between timed requests.
    rng: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hist: std::array::from_fn(|_| Histogram::default()),
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            countdown: AtomicU32::new(1),
            rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        }
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latency").finish_non_exhaustive()
    }
}

impl Latency {
    /// A request of `family` was parsed: counts it and, when it is one of the
    /// sample (one in `every`; 0 = latency off, nothing counted), returns the time
    /// to pass to [`Latency::end`] once its reply is queued. Called by the owning
    /// worker only.
    #[inline]
    pub fn begin(&self, family: Family, every: u32) -> Option<Instant> {
        if every == 0 {
            return None;
        }
        let r = &self.requests[family as usize];
        r.store(r.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let left = self.countdown.load(Ordering::Relaxed);
        if left > 1 {
            self.countdown.store(left - 1, Ordering::Relaxed);
            return None;
        }
        self.countdown
            .store(self.next_gap(every), Ordering::Relaxed);
        Some(Instant::now())
    }

    /// The reply of a request [`Latency::begin`] timed is queued.
    #[inline]
    pub fn end(&self, family: Family, started: Instant) {
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.record(family, ns);
    }

    /// Adds one timed request of `ns` nanoseconds.
    pub fn record(&self, family: Family, ns: u64) {
        let h = &self.hist[family as usize];
        h.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        h.sum_ns.fetch_add(ns, Ordering::Relaxed);
        h.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// A gap drawn uniformly from `1..=2*every-1` (mean `every`; always 1 for 1).
    fn next_gap(&self, every: u32) -> u32 {
        if every <= 1 {
            return 1;
        }
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        let span = u64::from(every) * 2 - 1;
        (1 + (x >> 32) % span) as u32
    }

    /// Zeroes every figure (`stats reset`).
    pub fn reset(&self) {
        for (h, r) in self.hist.iter().zip(&self.requests) {
            for b in &h.buckets {
                b.store(0, Ordering::Relaxed);
            }
            h.sum_ns.store(0, Ordering::Relaxed);
            h.max_ns.store(0, Ordering::Relaxed);
            r.store(0, Ordering::Relaxed);
        }
    }

    /// Adds this block's figures into `s`.
    pub fn add_into(&self, s: &mut LatencySnapshot) {
        for ((h, r), f) in self.hist.iter().zip(&self.requests).zip(&mut s.families) {
            f.requests += r.load(Ordering::Relaxed);
            for (b, out) in h.buckets.iter().zip(f.buckets.iter_mut()) {
                *out += b.load(Ordering::Relaxed);
            }
            f.sum_ns += h.sum_ns.load(Ordering::Relaxed);
            f.max_ns = f.max_ns.max(h.max_ns.load(Ordering::Relaxed));
        }
    }
}

/// One family's figures summed over workers.
#[derive(Debug, Clone)]
pub struct FamilySnapshot {
    /// Requests of the family (every one, timed or not).
    pub requests: u64,
    /// Timed requests per bucket.
    pub buckets: [u64; BUCKETS],
    /// Sum of the timed latencies, ns.
    pub sum_ns: u64,
    /// Largest timed latency, ns.
    pub max_ns: u64,
}

impl Default for FamilySnapshot {
    fn default() -> Self {
        FamilySnapshot {
            requests: 0,
            buckets: [0; BUCKETS],
            sum_ns: 0,
            max_ns: 0,
        }
    }
}

impl FamilySnapshot {
    /// Timed requests.
    pub fn timed(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `q` quantile (0..=1) of the timed latencies, ns: the upper bound of the
    /// bucket holding it, never above the largest latency seen; 0 with no sample.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        let n = self.timed();
        if n == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_upper_ns(i).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

/// Every family's figures summed over workers.
#[derive(Debug, Clone, Default)]
pub struct LatencySnapshot {
    /// By [`Family`] (in [`Family::ALL`] order).
    pub families: [FamilySnapshot; FAMILIES],
}

impl LatencySnapshot {
    /// Sums a set of per-worker blocks.
    pub fn sum<'a>(blocks: impl IntoIterator<Item = &'a Latency>) -> LatencySnapshot {
        let mut s = LatencySnapshot::default();
        for b in blocks {
            b.add_into(&mut s);
        }
        s
    }

    /// One family's figures.
    pub fn family(&self, f: Family) -> &FamilySnapshot {
        &self.families[f as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_log_linear_and_inclusive_at_the_top() {
        let mut lo = 0;
        for i in 0..BUCKETS - 1 {
            let hi = bucket_upper_ns(i);
            assert!(hi > lo, "bucket {i}");
            // Every bucket beyond the linear start is at most 12.5 % wide.
            if i >= 8 {
                assert!((hi - lo) * 8 <= lo + 1, "bucket {i}: ({lo}, {hi}]");
            }
            assert_eq!(bucket_of(hi), i, "top of bucket {i}");
            assert_eq!(bucket_of(lo + 1), i, "bottom of bucket {i}");
            lo = hi;
        }
        // 10 s fits below the last bucket; anything huge lands in it.
        assert!(bucket_of(10_000_000_000) < BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(0), 0);
    }

    #[test]
    fn quantiles_come_from_the_bucket_bounds_and_never_pass_the_max() {
        let l = Latency::default();
        for ns in 1..=1000u64 {
            l.record(Family::Get, ns * 1000);
        }
        let s = LatencySnapshot::sum([&l]);
        let g = s.family(Family::Get);
        assert_eq!(g.timed(), 1000);
        for (q, want) in [(0.5, 500_000u64), (0.9, 900_000), (0.99, 990_000)] {
            let got = g.quantile_ns(q);
            assert!(got >= want && got * 8 <= want * 9, "q{q}: {got} vs {want}");
        }
        assert_eq!(g.quantile_ns(1.0), 1_000_000);
        assert_eq!(g.max_ns, 1_000_000);
        assert_eq!(s.family(Family::Set).quantile_ns(0.99), 0);
    }

    #[test]
    fn one_in_n_is_timed_and_every_request_counted() {
        let l = Latency::default();
        let timed = (0..16_000)
            .filter_map(|_| l.begin(Family::Set, 16))
            .inspect(|t| l.end(Family::Set, *t))
            .count();
        assert!((500..=1500).contains(&timed), "{timed} timed of 16000");
        let s = LatencySnapshot::sum([&l]);
        assert_eq!(s.family(Family::Set).requests, 16_000);
        assert_eq!(s.family(Family::Set).timed(), timed as u64);
        assert!(l.begin(Family::Get, 0).is_none());
        let every = Latency::default();
        assert!((0..10).all(|_| every.begin(Family::Delete, 1).is_some()));
        l.reset();
        assert_eq!(LatencySnapshot::sum([&l]).family(Family::Set).requests, 0);
    }
}
