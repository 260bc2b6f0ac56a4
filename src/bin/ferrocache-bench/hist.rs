//! Log-linear latency histogram: 64 linear sub-buckets per power of two (about 1.6 %
//! resolution), values in nanoseconds up to 2^40 ns (about 18 minutes; larger values
//! are clamped). Recording is one index computation and one increment.

/// Sub-buckets per power of two, as a bit count.
const SUB_BITS: u32 = 6;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Largest recorded value (larger ones are clamped to it).
const MAX_VALUE: u64 = (1 << 40) - 1;
/// Number of buckets needed for values up to `MAX_VALUE`.
const BUCKETS: usize = ((40 - SUB_BITS as usize) + 1) * SUB as usize;

/// A latency histogram.
#[derive(Clone, Debug)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// An empty histogram.
    pub fn new() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros();
        let shift = msb - SUB_BITS;
        let sub = (v >> shift) - SUB;
        (((shift as u64 + 1) << SUB_BITS) + sub) as usize
    }

    /// Lower bound and width of bucket `idx`.
    fn bounds(idx: usize) -> (u64, u64) {
        let idx = idx as u64;
        if idx < SUB {
            return (idx, 1);
        }
        let shift = (idx >> SUB_BITS) - 1;
        let sub = idx & (SUB - 1);
        ((SUB + sub) << shift, 1 << shift)
    }

    /// Records one value (nanoseconds).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        let v = ns.min(MAX_VALUE);
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        if v > self.max {
            self.max = v;
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest recorded value.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Adds `o` into `self`.
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(o.counts.iter()) {
            *a += *b;
        }
        self.total += o.total;
        self.max = self.max.max(o.max);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.max = 0;
    }

    /// The `q` quantile (0.0..=1.0) in nanoseconds: the middle of the bucket holding
    /// it, never above the maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                let (lo, w) = Self::bounds(i);
                return (lo + w / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_with_small_error() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            100,
            1000,
            12345,
            1 << 20,
            (1 << 40) - 1,
        ] {
            let (lo, w) = Hist::bounds(Hist::index(v));
            assert!(lo <= v && v < lo + w, "{v}: {lo} {w}");
            assert!(
                w as f64 <= (v as f64 / 64.0).max(1.0) + 1e-9,
                "{v}: width {w}"
            );
        }
        assert!(Hist::index(MAX_VALUE) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Hist::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.02, "{p50}");
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.02, "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.count(), 1000);
    }
}
