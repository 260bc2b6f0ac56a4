//! Size classes, which remain only as the view `stats slabs`/`stats items`/`stats
//! cachedump` show (an item counts in the class its size falls in; memory is not
//! bound to them), and the figures the store reports with memcached's names.

use super::ctx::StoreConfig;
use super::item;
use super::segment::SEG_BYTES;

pub(super) fn build_classes(cfg: &StoreConfig) -> (Vec<usize>, Vec<usize>) {
    let hdr = item::BASE + if cfg.cas_enabled { item::CAS_BYTES } else { 0 };
    let max = cfg.item_size_max.max(1024);
    let g = 1.0 + (cfg.growth_factor - 1.0).max(0.01) / 4.0;
    let mut sizes = Vec::new();
    let mut size = (hdr + cfg.chunk_min.max(1)).min(max);
    loop {
        sizes.push(size);
        if size >= max {
            break;
        }
        let next = ((size as f64 * g) as usize).max(size + 8);
        size = next.min(max);
    }
    let pages = sizes
        .iter()
        .map(|&c| if c <= SEG_BYTES { SEG_BYTES / c * c } else { c })
        .collect();
    (sizes, pages)
}

/// Store-wide figures for `stats`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Items stored now.
    pub curr_items: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Bytes used by stored items.
    pub bytes: u64,
    /// Valid items removed to free memory.
    pub evictions: u64,
    /// Expired items whose memory was reused.
    pub reclaimed: u64,
    /// Items expired before they were ever fetched.
    pub expired_unfetched: u64,
    /// Items evicted before they were ever fetched.
    pub evicted_unfetched: u64,
    /// Segments owned (`total_pages`: memcached counts its 1 MiB pages here).
    pub total_pages: u64,
    /// Item memory limit in bytes.
    pub limit_maxbytes: u64,
    /// Stores that failed for lack of memory.
    pub outofmemory: u64,
    /// Items removed by the background expiry crawler.
    pub crawler_reclaimed: u64,
    /// Bytes of segments allocated now (memcached's `total_malloced`).
    pub total_malloced: u64,
    /// Bytes held by the hash index (not part of `-m`, as in memcached).
    pub hash_bytes: u64,
    /// Valid items the background crawler looked at.
    pub crawler_items_checked: u64,
    /// Background crawler runs started (one per [`Store::crawl_expired`] call).
    pub crawler_starts: u64,
    /// log2 of the index's slots (all shards), memcached's `hash_power_level`.
    pub hash_power_level: u32,
}

/// Per-class figures for `stats slabs` / `stats items`, with memcached's names.
///
/// Not kept (memcached fields with no equivalent here, printed as 0 by the server):
/// `age_hot`/`age_warm`, the `hot`/`warm` LRU counts (there is one queue pair, not
/// memcached's segmented LRU: every item counts as `cold`), `lrutail_reflocked`,
/// `moves_*`, `direct_reclaims`, `evicted_active`, `tailrepairs`.
#[derive(Debug, Clone, Default)]
pub struct ClassStats {
    /// Class number (1-based, as memcached prints it).
    pub id: usize,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Items of the class's size one segment holds (`chunks_per_page`).
    pub chunks_per_page: u64,
    /// Slabs of this class.
    pub total_pages: u64,
    /// Items of the class (`total_chunks`: an item is its own chunk).
    pub total_chunks: u64,
    /// Chunks holding an item.
    pub used_chunks: u64,
    /// Free chunks.
    pub free_chunks: u64,
    /// Items stored now (`number`).
    pub number: u64,
    /// Bytes requested by stored items (`mem_requested`).
    pub requested: u64,
    /// Seconds since the last access of the class's oldest item near the queues'
    /// tails (the next eviction candidates; `age`, as memcached's LRU tail).
    pub age: u64,
    /// Items evicted.
    pub evicted: u64,
    /// Items evicted that had an expiry time.
    pub evicted_nonzero: u64,
    /// Items evicted never fetched.
    pub evicted_unfetched: u64,
    /// Seconds since last access of the last evicted item.
    pub evicted_time: u32,
    /// Expired items reclaimed never fetched.
    pub expired_unfetched: u64,
    /// Expired items whose memory was reused.
    pub reclaimed: u64,
    /// Allocations that failed.
    pub outofmemory: u64,
    /// Items freed by the crawler.
    pub crawler_reclaimed: u64,
    /// Items the crawler looked at.
    pub crawler_items_checked: u64,
    /// Operations on items of this class, as memcached's per-class counters of
    /// `stats slabs`: hits of get (text, meta, binary), storage commands (counted
    /// for the class of the value sent, whatever the outcome), and the hits of
    /// delete, incr, decr, cas (and its bad values), touch (and gat).
    pub ops: ClassOps,
}

/// Per-class operation counters (see [`ClassStats::ops`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassOps {
    /// Get hits.
    pub get_hits: u64,
    /// Storage commands.
    pub cmd_set: u64,
    /// Delete hits.
    pub delete_hits: u64,
    /// Incr hits.
    pub incr_hits: u64,
    /// Decr hits.
    pub decr_hits: u64,
    /// Cas hits.
    pub cas_hits: u64,
    /// Cas on a changed item.
    pub cas_badval: u64,
    /// Touch and gat hits.
    pub touch_hits: u64,
}

/// Which per-class counter an operation moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClassOp {
    GetHit,
    Set,
    DeleteHit,
    IncrHit,
    DecrHit,
    CasHit,
    CasBadval,
    TouchHit,
}

impl ClassOps {
    pub(super) fn bump(&mut self, op: ClassOp) {
        let c = match op {
            ClassOp::GetHit => &mut self.get_hits,
            ClassOp::Set => &mut self.cmd_set,
            ClassOp::DeleteHit => &mut self.delete_hits,
            ClassOp::IncrHit => &mut self.incr_hits,
            ClassOp::DecrHit => &mut self.decr_hits,
            ClassOp::CasHit => &mut self.cas_hits,
            ClassOp::CasBadval => &mut self.cas_badval,
            ClassOp::TouchHit => &mut self.touch_hits,
        };
        *c += 1;
    }

    pub(super) fn add(&mut self, o: &ClassOps) {
        self.get_hits += o.get_hits;
        self.cmd_set += o.cmd_set;
        self.delete_hits += o.delete_hits;
        self.incr_hits += o.incr_hits;
        self.decr_hits += o.decr_hits;
        self.cas_hits += o.cas_hits;
        self.cas_badval += o.cas_badval;
        self.touch_hits += o.touch_hits;
    }
}

impl ClassStats {
    pub(super) fn add(&mut self, o: &ClassStats) {
        self.total_pages += o.total_pages;
        // Shards give the oldest access time seen (+1; 0 = none): the earliest wins.
        if o.age != 0 && (self.age == 0 || o.age < self.age) {
            self.age = o.age;
        }
        self.crawler_items_checked += o.crawler_items_checked;
        self.ops.add(&o.ops);
        self.number += o.number;
        self.requested += o.requested;
        self.evicted += o.evicted;
        self.evicted_nonzero += o.evicted_nonzero;
        self.evicted_unfetched += o.evicted_unfetched;
        self.evicted_time = self.evicted_time.max(o.evicted_time);
        self.expired_unfetched += o.expired_unfetched;
        self.reclaimed += o.reclaimed;
        self.outofmemory += o.outofmemory;
        self.crawler_reclaimed += o.crawler_reclaimed;
    }
}
