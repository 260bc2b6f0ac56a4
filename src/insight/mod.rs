//! Insight into the workload (issue #17): which keys are hot, how the miss ratio
//! would change with the cache size, and why lookups missed.
//!
//! ```text
//!  Store op (key, hash) ─▶ Insight::note ─┬─▶ hotkeys: worker's countdown ─▶ 1 in 16: its sketch
//!        (after the shard lock is         └─▶ sampled hash? ─▶ sizing: miniature S3-FIFO caches
//!         released)                                                     at 0.25x..8x of -m
//!  get miss, Absent ─▶ Store::recently_evicted (the shard's ghost of evicted keys)
//! ```
//!
//! A leaf module: the store calls it with what it already has (the key, its hash, the
//! item's footprint), and `stats hotkeys` / `stats sizing` read it. It imports nothing
//! of the store or the server. Each part is off by a flag (`-o no_hotkeys`,
//! `-o no_sizing`, `-o no_miss_reasons`, `-o no_insight` for all three).

pub mod hot_rows;
pub mod hotkeys;
pub mod sizing;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

pub use hotkeys::{escape_key, HotKey, HotKeys, HotReport};
pub use sizing::{SizeEstimate, Sizing, SizingReport, StoreShape};

/// Which parts are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsightConfig {
    /// Hot-key sketches.
    pub hotkeys: bool,
    /// Miniature simulations for `stats sizing`.
    pub sizing: bool,
    /// Evicted / never stored split of get misses.
    pub miss_reasons: bool,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            hotkeys: true,
            sizing: true,
            miss_reasons: true,
        }
    }
}

/// What a store operation was, for the simulations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A lookup; the item's footprint when found.
    Get(Option<usize>),
    /// An item of this footprint was stored.
    Set(usize),
    /// The key was removed.
    Delete,
    /// Anything else with a key (incr, a failed store, ...): hot keys only.
    Other,
}

/// The insight state of one store.
#[derive(Debug)]
pub struct Insight {
    cfg: InsightConfig,
    /// The hot-key sketches.
    pub hot: HotKeys,
    /// The sizing sample's threshold (lowered by the simulations as they grow).
    threshold: AtomicU64,
    sizing: Option<Mutex<Sizing>>,
}

impl Insight {
    /// Insight for a store of this shape and limit.
    pub fn new(cfg: InsightConfig, shape: StoreShape, mem_limit: usize) -> Insight {
        let sizing = cfg.sizing.then(|| Sizing::new(shape, mem_limit));
        Insight {
            cfg,
            hot: HotKeys::new(cfg.hotkeys),
            threshold: AtomicU64::new(sizing.as_ref().map_or(0, Sizing::threshold)),
            sizing: sizing.map(Mutex::new),
        }
    }

    /// Which parts are on.
    pub fn config(&self) -> InsightConfig {
        self.cfg
    }

    /// Whether the sizing simulations see requests for key hash `h`.
    #[inline]
    pub fn sampled(&self, h: u64) -> bool {
        Sizing::sampled(self.threshold.load(Ordering::Relaxed), h)
    }

    /// One store operation on `key` (hash `h`), after its shard lock is released.
    #[inline]
    pub fn note(&self, key: &[u8], h: u64, ev: Event, now: impl FnOnce() -> u32, limit: usize) {
        self.hot.note(key, h, now);
        if self.sampled(h) {
            self.simulate(h, ev, limit);
        }
    }

    #[cold]
    fn simulate(&self, h: u64, ev: Event, limit: usize) {
        let Some(s) = &self.sizing else { return };
        let mut s = s.lock();
        match ev {
            Event::Get(size) => s.get(h, size, limit),
            Event::Set(size) => s.set(h, size, limit),
            Event::Delete => s.delete(h),
            Event::Other => {}
        }
        self.threshold.store(s.threshold(), Ordering::Relaxed);
    }

    /// `flush_all`.
    pub fn flush(&self) {
        if let Some(s) = &self.sizing {
            s.lock().flush();
        }
    }

    /// `stats reset`: counts to zero.
    pub fn reset(&self, now: u32) {
        self.hot.clear(now);
        if let Some(s) = &self.sizing {
            s.lock().reset();
        }
    }

    /// The sizing figures (`None`: off), given all lookups since the start or reset.
    pub fn sizing(&self, lookups: u64, limit: usize) -> Option<SizingReport> {
        self.sizing
            .as_ref()
            .map(|s| s.lock().report(lookups, limit))
    }
}
