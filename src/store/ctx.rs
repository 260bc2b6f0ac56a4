//! What every shard needs and the store shares: settings, the clock, the size classes,
//! the one byte budget of `-m`, the flush marks, the key hash.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::clock::Clock;
use super::held;
use super::item;
use super::outcome::Miss;
use super::view::EvictionSink;

/// Store settings, from the command line.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Item memory limit in bytes (`-m`).
    pub mem_limit: usize,
    /// Largest item in bytes (`-I`).
    pub item_size_max: usize,
    /// Size class growth factor (`-f`): the classes `stats slabs` shows.
    pub growth_factor: f64,
    /// Minimum space for key + value + flags (`-n`).
    pub chunk_min: usize,
    /// CAS unique values kept and returned (`-C` turns this off).
    pub cas_enabled: bool,
    /// Evict when full (`-M` turns this off: stores fail with out of memory).
    pub evict: bool,
    /// Number of shards, a power of two.
    pub shards: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mem_limit: 64 << 20,
            item_size_max: 1 << 20,
            growth_factor: 1.25,
            chunk_min: 48,
            cas_enabled: true,
            evict: true,
            shards: 16,
        }
    }
}

/// State every shard needs: settings, clock, classes, budget, flush marks.
pub(crate) struct Ctx {
    pub(crate) cas_on: bool,
    pub(crate) evict: bool,
    pub(crate) clock: Arc<Clock>,
    pub(super) sizes: Vec<usize>,
    /// Per class, the bytes `stats slabs` shows as one of its pages.
    pub(super) page_sizes: Vec<usize>,
    /// Bytes of the limit in use: segments, and what is lent ([`Loan`]).
    pub(super) used: Arc<AtomicUsize>,
    pub(super) limit: AtomicUsize,
    /// Segment bytes each shard owns (kept by the shard under its lock, read without it
    /// to pick the shard to take memory from).
    pub(super) owned: Box<[AtomicUsize]>,
    /// Memory connections hold beyond the eviction's reach (lent, pinned).
    pub(super) held: Arc<held::Held>,
    pub(super) oldest_live: AtomicU32,
    pub(super) oldest_cas: AtomicU64,
    pub(super) eviction_sink: std::sync::OnceLock<EvictionSink>,
}

impl Ctx {
    /// The eviction watcher, once installed.
    #[inline]
    pub(crate) fn eviction_sink(&self) -> Option<&EvictionSink> {
        self.eviction_sink.get()
    }

    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        hash_key(key)
    }

    #[inline]
    pub(crate) fn class_size(&self, class: usize) -> usize {
        self.sizes.get(class).copied().unwrap_or(0)
    }

    /// The bytes of one "page" of class `class` as `stats slabs` shows it.
    #[inline]
    pub(crate) fn page_bytes(&self, class: usize) -> usize {
        self.page_sizes.get(class).copied().unwrap_or(0)
    }

    /// Number of size classes.
    pub(super) fn classes(&self) -> usize {
        self.sizes.len()
    }

    /// The memory limit now.
    pub(super) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the memory limit.
    pub(super) fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Release);
    }

    /// Bytes of the limit in use.
    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub(super) fn class_for(&self, total: usize) -> Option<usize> {
        let c = self.sizes.partition_point(|&s| s < total);
        (c < self.sizes.len()).then_some(c)
    }

    pub(crate) fn budget_reserve(&self, n: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                (u + n <= limit).then_some(u + n)
            })
            .is_ok()
    }

    /// Most bytes connections may hold of each kind beyond the eviction's reach
    /// (lent, pinned): a quarter of the limit.
    pub(crate) fn held_cap(&self) -> usize {
        self.limit.load(Ordering::Relaxed) / 4
    }

    pub(crate) fn budget_release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    pub(crate) fn over_limit(&self) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_owned(&self, shard: usize, bytes: u64) {
        if let Some(o) = self.owned.get(shard) {
            o.store(bytes as usize, Ordering::Relaxed);
        }
    }

    /// One shard's share of the limit.
    pub(crate) fn share(&self) -> usize {
        self.limit.load(Ordering::Relaxed) / self.owned.len().max(1)
    }

    /// Bytes in use above the limit (after the limit was lowered).
    pub(crate) fn over_by(&self) -> usize {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used.load(Ordering::Relaxed).saturating_sub(limit)
    }

    /// Why an item is no longer valid: flushed (checked first, as memcached) or expired.
    #[inline]
    pub(crate) fn invalid(&self, hd: &item::Hdr) -> Option<Miss> {
        let now = self.clock.now();
        let oldest = self.oldest_live.load(Ordering::Acquire);
        if oldest != 0 && oldest <= now {
            let ocas = self.oldest_cas.load(Ordering::Acquire);
            if hd.time <= oldest || (ocas != 0 && hd.cas != 0 && hd.cas < ocas) {
                return Some(Miss::Flushed);
            }
        }
        if hd.exptime != 0 && hd.exptime <= now {
            return Some(Miss::Expired);
        }
        None
    }
}

/// 64-bit key hash (multiply-rotate over 8-byte words, murmur3 finaliser).
#[inline]
pub(super) fn hash_key(key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x243F_6A88_85A3_08D3 ^ (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(31);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(31);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}
