//! The item store: a sharded hash index over log-structured segments of item memory.
//!
//! This file is the narrow interface the rest of the server uses. Every operation
//! locks exactly one shard, briefly, and never does I/O while holding it: readers get
//! the item through a closure that runs under the shard lock and copies what it needs
//! (the value goes straight into the connection's write buffer), so a value being sent
//! to one client stays intact while another replaces or deletes the key. A value too
//! long for the connection's buffer is leased instead (`lease.rs`: its segment pinned
//! and streamed a piece at a time), and a value being received that the connection
//! buffer budget cannot cover borrows from the limit (`loan.rs`).
//!
//! # Layout
//! - `Store` = `cfg.shards` shards (power of two), each a `parking_lot::Mutex<Shard>`.
//!   A key's 64-bit hash picks the shard (high bits) and gives the index tag (low 32 bits).
//! - A shard's index is four `hashbrown::HashTable`s of 4-byte slots: the item location
//!   (`u32` = segment id << 15 | byte offset), nothing else. Keys are compared in place
//!   in item memory (after hashbrown's 7-bit control-byte match), and rehashing reads
//!   the key from item memory. The key hash picks the table; the four tables take
//!   unequal shares of the keys (0.19, 0.22, 0.27, 0.32) so they double at different
//!   item counts: the index costs 7.3-9.2 bytes per item at any size (5 bytes a bucket)
//!   instead of 5.7-11.4 for one power-of-two table.
//! - Item memory: segments of 32 KiB owned by the shard; items are appended back to
//!   back, each exactly its own size (no size classes, no rounding); an item above
//!   8 KiB gets a segment of its own. Every segment is reserved from ONE store-wide byte
//!   budget (`cfg.mem_limit`, changeable at run time) before it is allocated, and given
//!   back when it is dropped. The item header is described byte by byte in [`item`] (9
//!   bytes, +4 with an expiry, +4 for non-zero flags, +6 with CAS).
//! - Size classes (memcached's ladder, four times finer) are only a view for `stats
//!   slabs`/`stats items`/`cachedump`: an item counts in the class its size falls in.
//!
//! # Memory and eviction policy
//! Size-aware S3-FIFO (see `shard.rs` for the diagram): new items go to a small FIFO
//! queue (a tenth of the shard); at its tail, items read while there move to the main
//! FIFO queue, the others are evicted and their key fingerprints kept in a ghost table
//! (a key that comes back soon goes straight to main); at main's tail, items read since
//! the last pass are reinserted with a count taken off their 2-bit counter, the others
//! are evicted. A large item needs a read per KiB of its size (up to 3) to stay. The
//! queues are FIFOs of segments: evicting walks the oldest segment, copies its
//! survivors to main's open segment and frees the segment. Dead bytes (replaced,
//! deleted, expired items) are reclaimed by compacting sparse segments before anything
//! valid is evicted, and before a shard grows while half its memory is dead.
//!
//! When an item needs room: (1) its queue's open segment; (2) an empty segment kept by
//! the shard; (3) a new segment if the budget allows (after compacting sparse ones when
//! the shard holds much dead space); (4) compaction of sparse segments, then eviction
//! as above; (5) a shard that owns no memory, or less than half its share of the limit,
//! takes memory from the other shards, the one that owns the most first: with
//! `try_lock` under its own lock, then, if that is not enough, with its lock released,
//! locking the others one at a time and running the operation again
//! (`Store::with_retry`). Bytes freed for an allocation stay reserved in the budget for
//! it until they make up its segment, so concurrent allocations cannot take them. With
//! `evict == false` only expired items are reclaimed and the store fails with
//! `OutOfMemory`. A lowered limit is enforced as segments are freed by eviction and
//! the crawler. Reads never relink anything: they update the counter and the fetched
//! bit in the item header.
//!
//! Why this and not the earlier slab classes (16 KiB slabs, one per shard and class,
//! CLOCK per shard): the partly filled slabs of 8 shards × ~80 classes held more than
//! `-m 8` itself (2 MiB of items in 8 MiB at `-m 8` with 50 B..8 KiB values). Measured
//! side by side with memcached 1.6.18 (`ferrocache-bench hitratio`, 80 cells, BENCHMARKS.md):
//! avoidable misses 0.54× memcached's (geometric mean; 0.78× with the slab store).

pub mod clock;
mod held;
pub mod item;
mod lease;
mod loan;
mod shard;
pub mod snapshot;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::insight::{Event, Insight, InsightConfig, StoreShape};
use crate::limits;

use shard::{DumpPlace, Found, Mem, Shard};

pub use clock::{Clock, RelTime};
use lease::LeaseTry;
pub use lease::{Reply, ReplyValue, ValueLease};
pub use loan::Loan;
pub use shard::SnapBuf;

/// Store settings, from the command line.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Item memory limit in bytes (`-m`).
    pub mem_limit: usize,
    /// Largest item in bytes (`-I`).
    pub item_size_max: usize,
    /// Slab chunk size growth factor (`-f`).
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

pub use crate::op::{Delta, StoreOp};

/// Result of a storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// `STORED`
    Stored,
    /// `NOT_STORED` (add on present key, replace/append/prepend on missing key)
    NotStored,
    /// `EXISTS` (cas mismatch)
    Exists,
    /// `NOT_FOUND` (cas on missing key)
    NotFound,
    /// The item can never fit (`SERVER_ERROR object too large for cache`).
    TooLarge,
    /// No memory could be found (`SERVER_ERROR out of memory storing object`).
    OutOfMemory,
}

/// Why a key was not found; memcached counts these apart (`get_expired`, `get_flushed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Never stored, deleted or evicted.
    Absent,
    /// Present but past its expiry time (removed now).
    Expired,
    /// Present but invalidated by `flush_all` (removed now).
    Flushed,
}

/// A stored item, borrowed for the duration of a lookup closure.
#[derive(Debug)]
pub struct ItemRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Value bytes (without the trailing `\r\n`).
    pub value: &'a [u8],
    /// CAS unique (0 when CAS is disabled).
    pub cas: u64,
    /// Relative expiry time (0 = never).
    pub exptime: RelTime,
}

/// What a metadump or an eviction watcher sees of an item (borrowed under the shard
/// lock).
#[derive(Debug, Clone, Copy)]
pub struct ItemMeta<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Value length in bytes.
    pub value_len: usize,
    /// Relative expiry (0 = never).
    pub exptime: RelTime,
    /// Relative time of the last access or update.
    pub time: RelTime,
    /// CAS unique (0 when CAS is disabled).
    pub cas: u64,
    /// Read since it was stored.
    pub fetched: bool,
    /// The size class (1-based) it counts in for `stats items` / `stats slabs`.
    pub class: usize,
}

/// Told about every evicted item while installed ([`Store::set_eviction_sink`]).
pub type EvictionSink = Box<dyn Fn(&ItemMeta<'_>) + Send + Sync>;

/// Where a metadump is: shard, and place in it. Walks segments in the order they
/// are laid out, so it is no snapshot: items stored, moved or evicted meanwhile may
/// be missed or seen twice (as with memcached's LRU walk).
#[derive(Debug, Clone, Copy, Default)]
pub struct DumpCursor {
    shard: usize,
    place: DumpPlace,
    done: bool,
}

impl DumpCursor {
    /// From the start.
    pub fn new() -> DumpCursor {
        DumpCursor::default()
    }

    /// All shards walked.
    pub fn done(&self) -> bool {
        self.done
    }
}

/// One item as a snapshot file holds it ([`Store::snapshot_shard`],
/// [`Store::restore_item`]): times are unix seconds, so they mean the same in another
/// process (or on another machine).
#[derive(Debug, Clone, Copy)]
pub struct SnapItem<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value (without `\r\n`).
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Expiry, unix seconds (0 = never).
    pub exptime: i64,
    /// Last access or update, unix seconds.
    pub atime: i64,
    /// CAS unique (0 when CAS is disabled).
    pub cas: u64,
    /// The 2-bit access counter (0..=3).
    pub freq: u8,
    /// Read since it was stored.
    pub fetched: bool,
    /// In the main queue (read enough to survive a pass), not the small one.
    pub main: bool,
    /// Meta marks ([`item::MARK_STALE`], [`item::MARK_KEY_BINARY`], ...).
    pub marks: u8,
}

/// What [`Store::restore_item`] did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// Stored.
    Loaded,
    /// The key is there with a newer (or the same) CAS unique: kept.
    Duplicate,
    /// Its expiry time (or a `flush_all` point after it was stored) has passed.
    Expired,
    /// Larger than this server's `-I`.
    TooLarge,
    /// No memory left without evicting.
    NoMemory,
}

/// Store-wide facts a snapshot keeps besides the items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapMeta {
    /// The CAS counter (uniques handed out so far).
    pub cas_counter: u64,
    /// `flush_all`'s point, unix seconds (0 = none): items last stored or accessed
    /// at or before it are invalid once it has passed.
    pub flush_at: i64,
    /// `flush_all`'s CAS mark (items with a lower unique are invalid), 0 = none.
    pub flush_cas: u64,
    /// CAS uniques were kept.
    pub cas_enabled: bool,
}

/// Result of incr/decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// The new value.
    Value(u64),
    /// No such key (or expired/flushed).
    NotFound(Miss),
    /// The value is not a decimal number.
    NonNumeric,
    /// A CAS guard did not match ([`Store::delta_guarded`]).
    Exists,
    /// The new value could not be stored.
    OutOfMemory,
}

/// Result of a CAS-guarded removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// Done.
    Done,
    /// No such item.
    Miss(Miss),
    /// The item's CAS unique did not match the guard.
    Exists,
}

/// An item as the meta commands see it, borrowed under the shard lock.
#[derive(Debug)]
pub struct MetaItem<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// CAS unique.
    pub cas: u64,
    /// Relative expiry (0 = never).
    pub exptime: RelTime,
    /// Last access time (relative), before this request.
    pub atime: RelTime,
    /// Fetched before this request.
    pub fetched: bool,
    /// Meta marks ([`item::MARK_WON`], [`item::MARK_STALE`], [`item::MARK_KEY_BINARY`]).
    pub marks: u8,
    /// Created by this request (`N` on a miss).
    pub created: bool,
    /// Size class id (1-based).
    pub class: usize,
    /// Bytes the item takes in its chunk.
    pub size: usize,
}

/// What a meta lookup changes on the item after its closure ran.
#[derive(Debug, Clone, Copy)]
pub struct MetaUpdate {
    /// New relative expiry.
    pub exptime: Option<RelTime>,
    /// New marks.
    pub marks: u8,
    /// Mark it read now (fetched bit, access time, access counter).
    pub bump: bool,
}

/// Result of a meta delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaDelete {
    /// Removed.
    Deleted,
    /// Marked stale with a new CAS unique (`I`).
    Invalidated,
    /// The CAS guard did not match.
    Exists,
    /// Not there.
    Miss(Miss),
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
    /// Pages (1 MiB) handed to slab classes.
    pub total_pages: u64,
    /// Item memory limit in bytes.
    pub limit_maxbytes: u64,
    /// Stores that failed for lack of memory.
    pub outofmemory: u64,
    /// Items removed by the background expiry crawler.
    pub crawler_reclaimed: u64,
    /// Bytes of item memory (slabs) allocated now (memcached's `total_malloced`).
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
    /// Chunks per slab ("page").
    pub chunks_per_page: u64,
    /// Slabs of this class.
    pub total_pages: u64,
    /// Chunks in those slabs.
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
    fn bump(&mut self, op: ClassOp) {
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

    fn add(&mut self, o: &ClassOps) {
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
    fn add(&mut self, o: &ClassStats) {
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

/// State every shard needs: settings, clock, classes, budget, flush marks.
pub(crate) struct Ctx {
    pub(crate) cas_on: bool,
    pub(crate) evict: bool,
    pub(crate) clock: Arc<Clock>,
    sizes: Vec<usize>,
    slab_sizes: Vec<usize>,
    /// Bytes of the limit in use: segments, and what is lent ([`Loan`]).
    used: Arc<AtomicUsize>,
    limit: AtomicUsize,
    /// Slab bytes each shard owns (kept by the shard under its lock, read without it
    /// to pick the shard to take memory from).
    owned: Box<[AtomicUsize]>,
    /// Memory connections hold beyond the eviction's reach (lent, pinned).
    held: Arc<held::Held>,
    oldest_live: AtomicU32,
    oldest_cas: AtomicU64,
    eviction_sink: std::sync::OnceLock<EvictionSink>,
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

    #[inline]
    pub(crate) fn slab_bytes(&self, class: usize) -> usize {
        self.slab_sizes.get(class).copied().unwrap_or(0)
    }

    fn class_for(&self, total: usize) -> Option<usize> {
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

/// The result of a lookup that copies every value ([`ReplyValue::COPY`]), which never
/// waits.
fn copied<R>(r: Result<Reply<R>, Miss>) -> Result<R, Miss> {
    match r? {
        Reply::Done(r, _) => Ok(r),
        Reply::Wait => {
            debug_assert!(false, "a lookup that copies waited");
            Err(Miss::Absent)
        }
    }
}

/// 64-bit key hash (multiply-rotate over 8-byte words, murmur3 finaliser).
#[inline]
fn hash_key(key: &[u8]) -> u64 {
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

fn build_classes(cfg: &StoreConfig) -> (Vec<usize>, Vec<usize>) {
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
    let slabs = sizes
        .iter()
        .map(|&c| {
            if c <= shard::SEG_BYTES {
                shard::SEG_BYTES / c * c
            } else {
                c
            }
        })
        .collect();
    (sizes, slabs)
}

/// The sharded item store.
pub struct Store {
    cfg: StoreConfig,
    ctx: Ctx,
    cas: AtomicU64,
    shift: u32,
    shards: Box<[Mutex<Shard>]>,
    steal_from: AtomicUsize,
    crawler_starts: AtomicU64,
    /// Hot keys, sizing simulations, miss reasons (`crate::insight`), once enabled.
    insight: std::sync::OnceLock<Insight>,
    /// The classes' ages last computed.
    ages: Mutex<Option<ClassAges>>,
}

/// The key hash and what an operation did, kept while its shard lock is held and
/// told to [`Insight::note`] after it is released.
#[derive(Default)]
struct Seen(std::cell::Cell<Option<(u64, Event)>>);

impl Seen {
    #[inline]
    fn set(&self, h: u64, ev: Event) {
        self.0.set(Some((h, ev)));
    }
}

/// The classes' ages as [`Store::class_ages`] last computed them: (server time, real
/// time, per class the oldest access time + 1).
type ClassAges = (RelTime, std::time::Instant, Arc<Vec<u64>>);

/// Times an operation runs again after taking memory from the other shards.
const RETRIES: usize = 3;

impl Store {
    /// A new, empty store.
    pub fn new(cfg: StoreConfig, clock: Arc<Clock>) -> Store {
        let n = cfg.shards.max(1).next_power_of_two();
        let (sizes, slab_sizes) = build_classes(&cfg);
        let nclasses = sizes.len();
        let shards = (0..n)
            .map(|i| Mutex::new(Shard::new(nclasses, i)))
            .collect();
        Store {
            ctx: Ctx {
                cas_on: cfg.cas_enabled,
                evict: cfg.evict,
                clock,
                sizes,
                slab_sizes,
                used: Arc::new(AtomicUsize::new(0)),
                limit: AtomicUsize::new(cfg.mem_limit),
                owned: (0..n).map(|_| AtomicUsize::new(0)).collect(),
                oldest_live: AtomicU32::new(0),
                oldest_cas: AtomicU64::new(0),
                eviction_sink: std::sync::OnceLock::new(),
                held: Arc::default(),
            },
            cfg,
            cas: AtomicU64::new(0),
            shift: 64 - n.trailing_zeros(),
            shards,
            steal_from: AtomicUsize::new(0),
            crawler_starts: AtomicU64::new(0),
            insight: std::sync::OnceLock::new(),
            ages: Mutex::new(None),
        }
    }

    /// Turns on the insight parts `cfg` asks for (once; later calls are ignored).
    pub fn enable_insight(&self, cfg: InsightConfig) {
        if !(cfg.hotkeys || cfg.sizing || cfg.miss_reasons) {
            return;
        }
        let shape = StoreShape {
            shards: self.shards.len(),
            seg_bytes: shard::SEG_BYTES,
            big_item: shard::BIG_ITEM,
            big_align: 64,
        };
        let _ = self.insight.set(Insight::new(cfg, shape, self.mem_limit()));
    }

    /// The memory limit now (`-m`, or what `cache_memlimit` set).
    pub fn mem_limit(&self) -> usize {
        self.ctx.limit.load(Ordering::Relaxed)
    }

    /// The insight state, when enabled.
    pub fn insight(&self) -> Option<&Insight> {
        self.insight.get()
    }

    /// Tells the insight what an operation did (after its shard lock is released).
    #[inline]
    fn note(&self, key: &[u8], seen: &Seen) {
        if let (Some(i), Some((h, ev))) = (self.insight.get(), seen.0.get()) {
            i.note(key, h, ev, || self.ctx.clock.now(), self.mem_limit());
        }
    }

    /// Whether `key` is absent because it was evicted recently (its fingerprint is in
    /// its shard's ghost of evicted keys): the `get_miss_evicted` reason. False when
    /// miss reasons are off.
    pub fn recently_evicted(&self, key: &[u8]) -> bool {
        match self.insight.get() {
            Some(i) if i.config().miss_reasons => {
                let h = hash_key(key);
                self.shards[self.shard_of(h)].lock().recently_evicted(h)
            }
            _ => false,
        }
    }

    /// Lookups of any key since the start or `stats reset`, over all shards.
    pub fn lookups(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().lookups).sum()
    }

    /// The clock this store expires items by.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.ctx.clock
    }

    #[inline]
    fn shard_of(&self, h: u64) -> usize {
        if self.shards.len() == 1 {
            0
        } else {
            (h >> self.shift) as usize
        }
    }

    /// The next CAS unique, modulo 2^48 as items keep it (0 is skipped: it means "none").
    fn next_cas(&self) -> u64 {
        if self.cfg.cas_enabled {
            let c = (self.cas.fetch_add(1, Ordering::AcqRel) + 1) & item::CAS_MASK;
            if c == 0 {
                (self.cas.fetch_add(1, Ordering::AcqRel) + 1) & item::CAS_MASK
            } else {
                c
            }
        } else {
            0
        }
    }

    /// Runs `f` with the key's shard locked, once: a failed allocation in it is final.
    fn with<R>(&self, key: &[u8], f: impl FnOnce(&mut Shard, u64, &Mem<'_>) -> R) -> R {
        let h = hash_key(key);
        let i = self.shard_of(h);
        let steal = |bytes: usize| self.steal(i, bytes);
        let mem = Mem::new(0, &steal, true);
        f(&mut self.shards[i].lock(), h, &mem)
    }

    /// Runs `f` with the key's shard locked. With evictions on, when an allocation in
    /// `f` found no memory in this shard nor (without blocking) in the others, `f`
    /// returns at once ([`Mem::retrying`]), the lock is released, the memory is taken
    /// from the other shards locked one at a time (blocking: no other lock is held, so
    /// there is no lock order to deadlock on), and `f` runs again with it, up to
    /// `RETRIES` times. So a store fails only when the other shards cannot free the
    /// memory (concurrent allocations hold it, or it is not there). `f` must change
    /// nothing before a failed allocation that it would not do again (it sees the
    /// store afresh on every run).
    fn with_retry<R>(&self, key: &[u8], mut f: impl FnMut(&mut Shard, u64, &Mem<'_>) -> R) -> R {
        let h = hash_key(key);
        let i = self.shard_of(h);
        let steal = |bytes: usize| self.steal(i, bytes);
        let mut credit = 0;
        let mut tries = 0;
        loop {
            let mem = Mem::new(credit, &steal, tries >= RETRIES);
            let r = f(&mut self.shards[i].lock(), h, &mem);
            let (short, left) = mem.take();
            if short == 0 {
                if left > 0 {
                    self.ctx.budget_release(left);
                }
                return r;
            }
            tries += 1;
            credit = self.reclaim(i, short, left);
        }
    }

    /// Takes up to `bytes` from the other shards without blocking (`try_lock`; the
    /// caller holds its own shard's lock). The bytes stay counted in the budget and
    /// belong to the caller, so no other allocation can take them on the way.
    fn steal(&self, me: usize, bytes: usize) -> usize {
        let mut got = 0;
        for j in self.victims(me) {
            if let Some(mut sh) = self.shards[j].try_lock() {
                got += sh.release_memory(&self.ctx, bytes - got);
                if got >= bytes {
                    break;
                }
            }
        }
        got
    }

    /// The shards to take memory from for shard `me`, in order: first the one that owns
    /// the most (a shard's hand frees its oldest items, and the largest share is the
    /// likeliest to hold items older than the others'; a shard that just lost its
    /// memory would lose what it stored since), then the rest in turn.
    fn victims(&self, me: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.shards.len();
        let owned = &self.ctx.owned;
        let rich = (0..n)
            .filter(|&j| j != me)
            .max_by_key(|&j| owned[j].load(Ordering::Relaxed));
        let start = self.steal_from.fetch_add(1, Ordering::Relaxed);
        rich.into_iter().chain(
            (0..n)
                .map(move |k| (start + k) % n)
                .filter(move |&j| j != me && Some(j) != rich),
        )
    }

    /// For a retry in shard `me` that needs `need` bytes and holds `held`: takes the rest
    /// from the other shards, locking each in turn and blocking (the caller holds no
    /// lock), then from the free budget. Returns the bytes now held for the retry;
    /// when the whole store could not make up `need` (concurrent allocations hold it),
    /// gives everything back, so they can finish, and returns 0.
    fn reclaim(&self, me: usize, need: usize, mut held: usize) -> usize {
        for j in self.victims(me) {
            if held >= need {
                return held;
            }
            held += self.shards[j].lock().release_memory(&self.ctx, need - held);
        }
        if held >= need || self.ctx.budget_reserve(need - held) {
            return need.max(held);
        }
        self.ctx.budget_release(held);
        std::thread::yield_now();
        0
    }

    /// True when an item with this key and value length (and flags 0) can never be
    /// stored: memcached's `item_size_ok` against `-I`. See [`Store::too_large_flags`].
    pub fn too_large(&self, key_len: usize, value_len: usize) -> bool {
        self.too_large_flags(key_len, 0, value_len)
    }

    /// Exactly memcached 1.6's boundary for "object too large for cache": its item size
    /// ([`limits::item_size`], the protocols' rule) above `-I`, or a key longer than
    /// memcached's 250 bytes.
    pub fn too_large_flags(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        key_len > limits::KEY_MAX_LENGTH
            || limits::item_size(key_len, flags, value_len + 2, self.cfg.cas_enabled)
                > self.cfg.item_size_max
    }

    /// Looks a key up and runs `f` on the item under the shard lock.
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&ItemRef<'_>) -> R) -> Result<R, Miss> {
        copied(self.get_reply(key, None, ReplyValue::COPY, |it, _| f(it)))
    }

    /// A lookup for a reply ([`Store::get`], or [`Store::get_and_touch`] with
    /// `touch`) that may lease the value instead of handing it to `f` to copy (see
    /// `lease.rs` and [`ReplyValue`]): `f` is told so (`true`) and writes the reply
    /// without the value, which the caller then streams with [`Store::read_lease`].
    pub fn get_reply<R>(
        &self,
        key: &[u8],
        touch: Option<i64>,
        rv: ReplyValue,
        f: impl FnOnce(&ItemRef<'_>, bool) -> R,
    ) -> Result<Reply<R>, Miss> {
        let ctx = &self.ctx;
        let mut f = Some(f);
        let seen = Seen::default();
        let body = |sh: &mut Shard, h: u64, mem: &Mem<'_>| {
            sh.lookups += 1;
            seen.set(h, Event::Get(None));
            let mut l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return Err(m),
            };
            let lease = match self.lease_for(sh, h, l, rv) {
                Some(lease) => lease,
                None => return Ok(Reply::Wait),
            };
            let now = ctx.clock.now();
            sh.bump(ctx, l, now);
            let mut drop_after = false;
            if let Some(e) = touch {
                let exp = ctx.clock.realtime(e);
                if !sh.set_exptime(ctx, l, exp) {
                    match self.regrow(sh, h, key, l, exp, mem) {
                        Ok(n) => l = n,
                        // Run again with memory from the other shards (a second bump).
                        Err(_) if mem.retrying() => return Err(Miss::Absent),
                        // Finding memory may have moved the item: use where it is now.
                        Err(Some(at)) => {
                            l = at;
                            drop_after = true;
                        }
                        Err(None) => return Err(Miss::Absent),
                    }
                }
            }
            let c = sh.chunk(l);
            let hd = item::Hdr::read(c, ctx.cas_on);
            let f = f.take().expect("lookup: f runs once");
            let r = f(
                &ItemRef {
                    key: &c[hd.key_at..hd.key_at + hd.klen],
                    flags: hd.flags,
                    value: &c[hd.value_at()..hd.total()],
                    cas: hd.cas,
                    exptime: hd.exptime,
                },
                lease.is_some(),
            );
            // Counted once the hit is served (a run that retries counts nothing), from
            // the header already read.
            let hit = if touch.is_some() {
                ClassOp::TouchHit
            } else {
                ClassOp::GetHit
            };
            sh.count_class(ctx.class_for(hd.total()).unwrap_or(0), hit);
            seen.set(h, Event::Get(Some(hd.total())));
            if drop_after {
                sh.delete_at(ctx, h, l);
            }
            Ok(Reply::Done(r, lease))
        };
        let r = if touch.is_none() {
            self.with(key, body)
        } else {
            self.with_retry(key, body)
        };
        self.note(key, &seen);
        r
    }

    /// The lease a reply takes on the item at `l`: `Some(None)` to copy the value,
    /// `Some(Some(lease))` to stream it, `None` to wait (see [`ReplyValue`]).
    fn lease_for(
        &self,
        sh: &mut Shard,
        h: u64,
        l: shard::Loc,
        rv: ReplyValue,
    ) -> Option<Option<ValueLease>> {
        let hd = item::Hdr::read(sh.chunk(l), self.ctx.cas_on);
        if hd.vlen <= rv.lease_over {
            return Some(None);
        }
        match sh.lease(&self.ctx, l) {
            LeaseTry::Pinned(sid, pin) => Some(Some(ValueLease::new(
                self.shard_of(h),
                sid,
                pin,
                hd.value_at(),
                hd.vlen,
            ))),
            LeaseTry::Shared => Some(None),
            LeaseTry::OverCap if hd.vlen <= rv.copy_up_to => Some(None),
            LeaseTry::OverCap => None,
        }
    }

    /// Moves the item at `l` to a chunk with room for an expiry field and sets it to
    /// `exp`. `Err(Some(l))`: no memory (the item is still at `l`, without the new
    /// expiry; the caller removes it rather than let it outlive its expiry).
    /// `Err(None)`: finding memory evicted the item itself.
    fn regrow(
        &self,
        sh: &mut Shard,
        h: u64,
        key: &[u8],
        l: shard::Loc,
        exp: u32,
        mem: &Mem<'_>,
    ) -> Result<shard::Loc, Option<shard::Loc>> {
        let ctx = &self.ctx;
        let hd = item::Hdr::read(sh.chunk(l), ctx.cas_on);
        let old = sh.chunk(l)[hd.key_at..hd.total()].to_vec();
        let total = item::total_size(hd.klen, hd.vlen, hd.flags, exp, ctx.cas_on);
        if ctx.class_for(total).is_none() {
            return Err(Some(l));
        }
        let Some(new) = sh.alloc(ctx, h, total, mem) else {
            return Err(sh.find_raw(ctx, h, key));
        };
        let Some(cur) = sh.find_raw(ctx, h, key) else {
            sh.free_chunk(ctx, new);
            return Err(None);
        };
        let bits = sh.chunk(cur)[0];
        let c = sh.chunk_mut(new);
        let at = item::write_header(
            c, hd.klen, hd.vlen, hd.flags, exp, hd.time, ctx.cas_on, hd.cas,
        );
        c[0] |= bits & (item::FREQ | item::FETCHED);
        c[at..at + old.len()].copy_from_slice(&old);
        sh.move_marks(cur, new);
        sh.link(ctx, h, new, Some(cur));
        // A move, not a new item.
        sh.total_items -= 1;
        Ok(new)
    }

    /// Like [`Store::get`], and sets a new expiry (`gat`).
    pub fn get_and_touch<R>(
        &self,
        key: &[u8],
        exptime: i64,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Result<R, Miss> {
        copied(self.get_reply(key, Some(exptime), ReplyValue::COPY, |it, _| f(it)))
    }

    /// Sets a new expiry on an existing item.
    pub fn touch(&self, key: &[u8], exptime: i64) -> Result<(), Miss> {
        copied(self.get_reply(key, Some(exptime), ReplyValue::COPY, |_, _| ()))
    }

    /// Stores a value. `exptime` is as the client sent it.
    pub fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
    ) -> StoreOutcome {
        self.store_guarded(op, key, flags, exptime, value, 0).0
    }

    /// [`Store::store`] that also returns the CAS unique given to the stored item (0 when
    /// nothing was stored), and, with `guard != 0`, stores only if the present item's
    /// CAS unique equals `guard` (`Exists` otherwise) — for `append`/`prepend`, which the
    /// binary protocol lets carry a CAS. Check and change happen under one shard lock.
    pub fn store_guarded(
        &self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        guard: u64,
    ) -> (StoreOutcome, u64) {
        self.store_marked(op, key, flags, exptime, value, guard, false, 0)
    }

    /// The meta protocol's store (`ms`): [`Store::store_guarded`], plus `invalidate`
    /// (`I`): a `Cas` whose unique is *lower* than the item's stores anyway, keeps the
    /// old expiry and marks the new item stale (keeping the old "win sent" mark), as
    /// memcached does; `marks` are set on the stored item (e.g. the base64-key mark).
    #[allow(clippy::too_many_arguments)]
    pub fn store_marked(
        &self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
        guard: u64,
        invalidate: bool,
        marks: u8,
    ) -> (StoreOutcome, u64) {
        if key.is_empty() || self.too_large_flags(key.len(), flags, value.len()) {
            if op == StoreOp::Set {
                self.unlink(key);
            }
            return (StoreOutcome::TooLarge, 0);
        }
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        let marks_in = marks;
        // memcached counts a storage command in the class of the item it allocates for
        // the value sent, before it knows the outcome (once, whatever the retries).
        let sent_class = ctx
            .class_for(item::total_size(key.len(), value.len(), flags, 0, cas_on))
            .unwrap_or(0);
        let counted = std::cell::Cell::new(false);
        let seen = Seen::default();
        let r = self.with_retry(key, |sh, h, mem| {
            seen.set(h, Event::Other);
            if !counted.replace(true) {
                sh.count_class(sent_class, ClassOp::Set);
            }
            let mut marks = marks_in;
            let found = sh.find(ctx, h, key);
            // Decide without allocating first.
            let mut old_val: Option<Vec<u8>> = None;
            let (nflags, nexp) = match (op, &found) {
                (StoreOp::Add, Found::Live(_)) => return (StoreOutcome::NotStored, 0),
                (StoreOp::Replace | StoreOp::Append | StoreOp::Prepend, Found::Miss(_)) => {
                    return (StoreOutcome::NotStored, 0)
                }
                (StoreOp::Cas(_), Found::Miss(_)) => return (StoreOutcome::NotFound, 0),
                (StoreOp::Cas(c), Found::Live(l)) => {
                    // With CAS disabled memcached answers EXISTS to every cas on a present key.
                    let hd = item::Hdr::read(sh.chunk(*l), cas_on);
                    if cas_on && hd.cas != c && invalidate && c < hd.cas {
                        marks |= item::MARK_STALE | (sh.marks(*l) & item::MARK_WON);
                        (flags, hd.exptime)
                    } else if !cas_on || hd.cas != c {
                        sh.count(ctx, *l, ClassOp::CasBadval);
                        return (StoreOutcome::Exists, 0);
                    } else {
                        sh.count(ctx, *l, ClassOp::CasHit);
                        (flags, ctx.clock.realtime(exptime))
                    }
                }
                (StoreOp::Append | StoreOp::Prepend, Found::Live(l)) => {
                    let c = sh.chunk(*l);
                    let hd = item::Hdr::read(c, cas_on);
                    if guard != 0 && (!cas_on || hd.cas != guard) {
                        return (StoreOutcome::Exists, 0);
                    }
                    old_val = Some(c[hd.value_at()..hd.total()].to_vec());
                    (hd.flags, hd.exptime)
                }
                _ => (flags, ctx.clock.realtime(exptime)),
            };
            let (first, second): (&[u8], &[u8]) = match (&old_val, op) {
                (Some(o), StoreOp::Append) => (o, value),
                (Some(o), _) => (value, o),
                (None, _) => (value, &[]),
            };
            let vlen = first.len() + second.len();
            if old_val.is_some() && self.too_large_flags(key.len(), nflags, vlen) {
                return (StoreOutcome::NotStored, 0);
            }
            let total = item::total_size(key.len(), vlen, nflags, nexp, cas_on);
            if ctx.class_for(total).is_none() {
                // Only append/prepend can grow past the largest item.
                return (StoreOutcome::NotStored, 0);
            }
            let Some(new) = sh.alloc(ctx, h, total, mem) else {
                // A failed set removes the old value (as memcached), unless it runs again.
                if op == StoreOp::Set && !mem.retrying() {
                    sh.unlink_key(ctx, h, key);
                }
                return (StoreOutcome::OutOfMemory, 0);
            };
            // The hand may have moved or evicted the old item meanwhile.
            let old = sh.find_raw(ctx, h, key);
            let needs_old = !matches!(op, StoreOp::Set | StoreOp::Add);
            if needs_old && old.is_none() {
                sh.free_chunk(ctx, new);
                return match op {
                    StoreOp::Cas(_) => (StoreOutcome::NotFound, 0),
                    _ => (StoreOutcome::NotStored, 0),
                };
            }
            let now = ctx.clock.now();
            let cas = self.next_cas();
            let c = sh.chunk_mut(new);
            let at = item::write_header(c, key.len(), vlen, nflags, nexp, now, cas_on, cas);
            c[at..at + key.len()].copy_from_slice(key);
            let v = at + key.len();
            c[v..v + first.len()].copy_from_slice(first);
            c[v + first.len()..v + vlen].copy_from_slice(second);
            if let Some(o) = old {
                sh.rewrote(o, new);
            }
            sh.link(ctx, h, new, old);
            if marks != 0 {
                sh.set_marks(new, marks);
            }
            seen.set(h, Event::Set(total));
            (StoreOutcome::Stored, if cas_on { cas } else { 0 })
        });
        self.note(key, &seen);
        r
    }

    /// The meta lookup (`mg`, `me`, and the reads of `ma`): finds the item (or with
    /// `vivify`, creates an empty one with flags 0 and no expiry on a miss), runs `f`
    /// on it under the shard lock, then applies the update `f` returns (marks, expiry,
    /// bump), all under the same lock.
    pub fn meta_get<R>(
        &self,
        key: &[u8],
        vivify: bool,
        f: impl FnOnce(&MetaItem<'_>) -> (R, MetaUpdate),
    ) -> Result<R, Miss> {
        copied(self.meta_lookup(key, vivify, ReplyValue::COPY, |it, _| f(it)))
    }

    /// [`Store::meta_get`] for a reply: the value may be leased as
    /// [`Store::get_reply`] leases it (`f` is told with `true`).
    pub fn meta_get_reply<R>(
        &self,
        key: &[u8],
        vivify: bool,
        rv: ReplyValue,
        f: impl FnOnce(&MetaItem<'_>, bool) -> (R, MetaUpdate),
    ) -> Result<Reply<R>, Miss> {
        self.meta_lookup(key, vivify, rv, f)
    }

    fn meta_lookup<R>(
        &self,
        key: &[u8],
        vivify: bool,
        rv: ReplyValue,
        f: impl FnOnce(&MetaItem<'_>, bool) -> (R, MetaUpdate),
    ) -> Result<Reply<R>, Miss> {
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        if key.is_empty() {
            return Err(Miss::Absent);
        }
        let mut f = Some(f);
        let counted = std::cell::Cell::new(false);
        let seen = Seen::default();
        let body = |sh: &mut Shard, h: u64, mem: &Mem<'_>| {
            let mut created = false;
            let mut lease_got = None;
            if !counted.get() {
                sh.lookups += 1;
            }
            seen.set(h, Event::Get(None));
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => {
                    if !counted.get() {
                        // Decided before anything is counted or changed: a request
                        // that must wait runs again later.
                        if let Some(lease) = self.lease_for(sh, h, l, rv) {
                            lease_got = lease;
                        } else {
                            return Ok(Reply::Wait);
                        }
                    }
                    if !counted.replace(true) {
                        sh.count(ctx, l, ClassOp::GetHit);
                    }
                    seen.set(h, Event::Get(Some(sh.footprint(ctx, l))));
                    l
                }
                Found::Miss(m) => {
                    if !vivify {
                        return Err(m);
                    }
                    let total = item::total_size(key.len(), 0, 0, 0, cas_on);
                    if ctx.class_for(total).is_none() {
                        return Err(m);
                    }
                    let Some(new) = sh.alloc(ctx, h, total, mem) else {
                        return Err(m);
                    };
                    let now = ctx.clock.now();
                    let cas = self.next_cas();
                    let c = sh.chunk_mut(new);
                    let at = item::write_header(c, key.len(), 0, 0, 0, now, cas_on, cas);
                    c[at..at + key.len()].copy_from_slice(key);
                    let old = sh.find_raw(ctx, h, key);
                    sh.link(ctx, h, new, old);
                    created = true;
                    new
                }
            };
            let lease = lease_got.take();
            let (r, up) = {
                let c = sh.chunk(l);
                let hd = item::Hdr::read(c, cas_on);
                let view = MetaItem {
                    key: &c[hd.key_at..hd.key_at + hd.klen],
                    value: &c[hd.value_at()..hd.total()],
                    flags: hd.flags,
                    cas: hd.cas,
                    exptime: hd.exptime,
                    atime: hd.time,
                    fetched: hd.bits & item::FETCHED != 0,
                    marks: sh.marks(l),
                    created,
                    class: ctx.class_for(hd.total()).unwrap_or(0) + 1,
                    size: hd.total(),
                };
                let f = f.take().expect("meta_get: f runs once");
                f(&view, lease.is_some())
            };
            // `f` has run: no second run from here on.
            mem.set_last();
            let mut l = l;
            if up.marks != sh.marks(l) {
                sh.set_marks(l, up.marks);
            }
            if let Some(exp) = up.exptime {
                if !sh.set_exptime(ctx, l, exp) {
                    match self.regrow(sh, h, key, l, exp, mem) {
                        Ok(n) => l = n,
                        Err(Some(at)) => {
                            sh.delete_at(ctx, h, at);
                            return Ok(Reply::Done(r, lease));
                        }
                        Err(None) => return Ok(Reply::Done(r, lease)),
                    }
                }
            }
            if up.bump {
                sh.bump(ctx, l, ctx.clock.now());
            }
            Ok(Reply::Done(r, lease))
        };
        let r = if vivify {
            self.with_retry(key, body)
        } else {
            self.with(key, body)
        };
        self.note(key, &seen);
        r
    }

    /// The meta delete (`md`): with `guard`, only when the item's CAS unique equals it;
    /// with `invalidate`, marks the item stale (clearing the "win sent" mark), gives it a
    /// new CAS unique and, when `Some(ttl)`, a new expiry, instead of removing it.
    pub fn meta_delete(
        &self,
        key: &[u8],
        guard: Option<u64>,
        invalidate: Option<Option<i64>>,
    ) -> MetaDelete {
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        if key.is_empty() {
            return MetaDelete::Miss(Miss::Absent);
        }
        let seen = Seen::default();
        let r = self.with(key, |sh, h, mem| {
            seen.set(h, Event::Other);
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return MetaDelete::Miss(m),
            };
            let hd = item::Hdr::read(sh.chunk(l), cas_on);
            if let Some(g) = guard {
                if hd.cas != g {
                    return MetaDelete::Exists;
                }
            }
            sh.count(ctx, l, ClassOp::DeleteHit);
            let Some(ttl) = invalidate else {
                sh.delete_at(ctx, h, l);
                seen.set(h, Event::Delete);
                return MetaDelete::Deleted;
            };
            let m = (sh.marks(l) | item::MARK_STALE) & !item::MARK_WON;
            sh.set_marks(l, m);
            if cas_on {
                let cas = self.next_cas();
                item::write_cas(sh.chunk_mut(l), hd.cas_at(), cas);
            }
            if let Some(t) = ttl {
                let exp = ctx.clock.realtime(t);
                if !sh.set_exptime(ctx, l, exp) {
                    if let Err(Some(at)) = self.regrow(sh, h, key, l, exp, mem) {
                        sh.delete_at(ctx, h, at);
                    }
                }
            }
            MetaDelete::Invalidated
        });
        self.note(key, &seen);
        r
    }

    /// Removes a key.
    pub fn delete(&self, key: &[u8]) -> Result<(), Miss> {
        match self.delete_guarded(key, 0) {
            Guarded::Done => Ok(()),
            Guarded::Miss(m) => Err(m),
            Guarded::Exists => Err(Miss::Absent),
        }
    }

    /// Removes a key only if its CAS unique equals `guard` (any item when `guard` is
    /// 0); check and removal happen under one shard lock.
    pub fn delete_guarded(&self, key: &[u8], guard: u64) -> Guarded {
        let ctx = &self.ctx;
        let seen = Seen::default();
        let r = self.with(key, |sh, h, _| {
            seen.set(h, Event::Other);
            match sh.find(ctx, h, key) {
                Found::Live(l) => {
                    if guard != 0
                        && (!ctx.cas_on || item::Hdr::read(sh.chunk(l), true).cas != guard)
                    {
                        return Guarded::Exists;
                    }
                    sh.count(ctx, l, ClassOp::DeleteHit);
                    sh.delete_at(ctx, h, l);
                    seen.set(h, Event::Delete);
                    Guarded::Done
                }
                Found::Miss(m) => Guarded::Miss(m),
            }
        });
        self.note(key, &seen);
        r
    }

    /// incr / decr with memcached's rules: the value is parsed like `safe_strtoull`; a
    /// result no longer than the old value is written in place, padded with spaces.
    pub fn delta(&self, key: &[u8], delta: Delta) -> DeltaOutcome {
        self.delta_guarded(key, delta, 0).0
    }

    /// [`Store::delta`] that also returns the item's new CAS unique (0 when nothing
    /// changed), and with `guard != 0` changes the value only if the item's CAS unique
    /// equals `guard` (`Exists` otherwise), under one shard lock.
    pub fn delta_guarded(&self, key: &[u8], delta: Delta, guard: u64) -> (DeltaOutcome, u64) {
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        let seen = Seen::default();
        let r = self.with_retry(key, |sh, h, mem| {
            seen.set(h, Event::Other);
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return (DeltaOutcome::NotFound(m), 0),
            };
            let c = sh.chunk(l);
            let hd = item::Hdr::read(c, cas_on);
            // As memcached: an empty value is refused before the CAS guard is looked at.
            if hd.vlen == 0 {
                return (DeltaOutcome::NonNumeric, 0);
            }
            if guard != 0 && (!cas_on || hd.cas != guard) {
                return (DeltaOutcome::Exists, 0);
            }
            let Some(v) = crate::num::strtoull(&c[hd.value_at()..hd.total()]) else {
                return (DeltaOutcome::NonNumeric, 0);
            };
            let hit = match delta {
                Delta::Incr(_) => ClassOp::IncrHit,
                Delta::Decr(_) => ClassOp::DecrHit,
            };
            sh.count(ctx, l, hit);
            let n = match delta {
                Delta::Incr(d) => v.wrapping_add(d),
                Delta::Decr(d) => v.saturating_sub(d),
            };
            let digits = n.to_string();
            let d = digits.as_bytes();
            let now = ctx.clock.now();
            if d.len() <= hd.vlen {
                let cas = self.next_cas();
                let c = sh.chunk_mut(l);
                let va = hd.value_at();
                c[va..va + d.len()].copy_from_slice(d);
                c[va + d.len()..hd.total()].fill(b' ');
                if cas_on {
                    item::write_cas(c, hd.cas_at(), cas);
                }
                item::wr32(c, item::OFF_TIME, now);
                sh.wrote(l);
                return (DeltaOutcome::Value(n), if cas_on { cas } else { 0 });
            }
            let total = item::total_size(key.len(), d.len(), hd.flags, hd.exptime, cas_on);
            if ctx.class_for(total).is_none() {
                return (DeltaOutcome::OutOfMemory, 0);
            }
            let Some(new) = sh.alloc(ctx, h, total, mem) else {
                return (DeltaOutcome::OutOfMemory, 0);
            };
            let Some(old) = sh.find_raw(ctx, h, key) else {
                sh.free_chunk(ctx, new);
                return (DeltaOutcome::NotFound(Miss::Absent), 0);
            };
            let cas = self.next_cas();
            let c = sh.chunk_mut(new);
            let at = item::write_header(
                c,
                key.len(),
                d.len(),
                hd.flags,
                hd.exptime,
                now,
                cas_on,
                cas,
            );
            c[at..at + key.len()].copy_from_slice(key);
            c[at + key.len()..at + key.len() + d.len()].copy_from_slice(d);
            sh.rewrote(old, new);
            sh.link(ctx, h, new, Some(old));
            (DeltaOutcome::Value(n), if cas_on { cas } else { 0 })
        });
        self.note(key, &seen);
        r
    }

    /// `flush_all [delay]`: invalidates every item stored before the given time, with
    /// memcached's arithmetic (`oldest_live`, and with CAS `oldest_cas`, which takes one
    /// CAS unique).
    pub fn flush_all(&self, exptime: i64) {
        if let (Some(i), true) = (self.insight.get(), exptime <= 0) {
            i.flush();
        }
        let now = self.ctx.clock.now();
        let new_oldest = if exptime > 0 {
            self.ctx.clock.realtime(exptime)
        } else {
            now
        };
        if self.cfg.cas_enabled {
            let ol = new_oldest.wrapping_sub(1);
            if ol <= now {
                self.ctx
                    .oldest_cas
                    .store(self.next_cas(), Ordering::Release);
            }
            self.ctx.oldest_live.store(ol, Ordering::Release);
        } else {
            self.ctx.oldest_live.store(new_oldest, Ordering::Release);
        }
    }

    /// Removes a key without counting it (after a failed `set`).
    pub fn unlink(&self, key: &[u8]) {
        let ctx = &self.ctx;
        self.with(key, |sh, h, _| {
            sh.unlink_key(ctx, h, key);
        });
    }

    /// Changes the memory limit (`cache_memlimit`). Memory above a lowered limit is given
    /// back as slabs are swept. Always accepted.
    pub fn set_mem_limit(&self, bytes: usize) -> bool {
        self.ctx.limit.store(bytes, Ordering::Release);
        true
    }

    /// Bytes of item memory in use (slabs), against the limit.
    pub fn mem_used(&self) -> usize {
        self.ctx.used.load(Ordering::Acquire)
    }

    /// Store-wide figures.
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            limit_maxbytes: self.ctx.limit.load(Ordering::Relaxed) as u64,
            ..Default::default()
        };
        let mut cls = vec![ClassStats::default(); self.ctx.sizes.len()];
        for sh in self.shards.iter() {
            let m = sh.lock();
            s.curr_items += m.len() as u64;
            s.total_items += m.total_items;
            s.bytes += m.bytes;
            s.total_pages += m.nslabs;
            s.total_malloced += m.slab_bytes;
            s.hash_bytes += m.index_bytes() as u64;
            m.class_stats(&self.ctx, &mut cls, false);
        }
        for c in &cls {
            s.evictions += c.evicted;
            s.reclaimed += c.reclaimed;
            s.expired_unfetched += c.expired_unfetched;
            s.evicted_unfetched += c.evicted_unfetched;
            s.outofmemory += c.outofmemory;
            s.crawler_reclaimed += c.crawler_reclaimed;
            s.crawler_items_checked += c.crawler_items_checked;
        }
        s.crawler_starts = self.crawler_starts.load(Ordering::Relaxed);
        // Index slots from its bytes (a slot and its control byte: 5 bytes).
        s.hash_power_level = (s.hash_bytes / 5).max(1).ilog2();
        s
    }

    /// Per-class figures (`stats items`); classes never used are included with zero
    /// pages, callers print only those with `total_pages > 0` or `number > 0`. The
    /// `age` of each class is computed at most once per second of server time (see
    /// `Store::class_ages`).
    pub fn class_stats(&self) -> Vec<ClassStats> {
        let ages = self.class_ages();
        let mut cls = self.class_counts();
        let now = u64::from(self.ctx.clock.now());
        for (c, &a) in cls.iter_mut().zip(ages.iter()) {
            // The oldest access time (+1, 0 = none) of the class's items at the queues'
            // tails.
            c.age = if a == 0 { 0 } else { now.saturating_sub(a - 1) };
        }
        cls
    }

    /// Per-class figures without `age` (`stats slabs`): the counters only, no item is
    /// looked at.
    pub fn class_counts(&self) -> Vec<ClassStats> {
        let mut cls = vec![ClassStats::default(); self.ctx.sizes.len()];
        for sh in self.shards.iter() {
            sh.lock().class_stats(&self.ctx, &mut cls, false);
        }
        for (i, c) in cls.iter_mut().enumerate() {
            c.id = i + 1;
            c.chunk_size = self.ctx.class_size(i) as u64;
            c.chunks_per_page = (self.ctx.slab_bytes(i) / self.ctx.class_size(i).max(1)) as u64;
            // There are no pages of a class: its items take this many MiB of segments,
            // and a class once stored into keeps one, as a memcached class keeps its
            // first page (so its counters stay visible in `stats slabs`).
            if c.number > 0 || c.ops.cmd_set > 0 {
                c.total_pages = c.requested.div_ceil(1 << 20).max(1);
            }
        }
        cls
    }

    /// Per class, the oldest access time (+1, 0 = none) of the items at the tails of
    /// the shards' queues, where the eviction walks next (memcached's `age` is that
    /// of its LRU tail). Finding it reads the items of several segments per shard
    /// under each shard's lock (about 0.6 ms at 200,000 items): clients looping `stats
    /// items` made every other client several times slower (issue #24). It has the
    /// resolution of a second, so it is computed once per second of server time (and
    /// at least once a second of real time, for `-o debugtime`), and reused between.
    fn class_ages(&self) -> Arc<Vec<u64>> {
        let now = self.ctx.clock.now();
        if let Some((at, made, ages)) = &*self.ages.lock() {
            if *at == now && made.elapsed() < std::time::Duration::from_secs(1) {
                return ages.clone();
            }
        }
        // Computed without the cache's lock held: a concurrent request computes its own.
        let mut cls = vec![ClassStats::default(); self.ctx.sizes.len()];
        for sh in self.shards.iter() {
            sh.lock().class_stats(&self.ctx, &mut cls, true);
        }
        let ages = Arc::new(cls.iter().map(|c| c.age).collect::<Vec<u64>>());
        *self.ages.lock() = Some((now, std::time::Instant::now(), ages.clone()));
        ages
    }

    /// Zeroes the store's event counters (`stats reset`: `total_items`, `evictions`,
    /// `reclaimed`, ...), as memcached does; current figures stay.
    pub fn reset_stats(&self) {
        for sh in self.shards.iter() {
            sh.lock().reset_stats();
        }
        if let Some(i) = self.insight.get() {
            i.reset(self.ctx.clock.now());
        }
    }

    /// Number of slab classes (ids are `1..=classes()`).
    pub fn classes(&self) -> usize {
        self.ctx.sizes.len()
    }

    /// Lists up to `limit` valid items of class `id` (1-based) as
    /// `(key, value length, relative expiry)`, for `stats cachedump`. Shards are locked
    /// one at a time.
    pub fn dump_class(&self, id: usize, limit: usize) -> Vec<(Vec<u8>, usize, RelTime)> {
        let mut out = Vec::new();
        if id == 0 || id > self.classes() {
            return out;
        }
        for sh in self.shards.iter() {
            let sh = sh.lock();
            let go_on = sh.dump_class(&self.ctx, id - 1, &mut |k, vlen, exp| {
                out.push((k.to_vec(), vlen, exp));
                out.len() < limit
            });
            if !go_on {
                break;
            }
        }
        out
    }

    /// One batch of a metadump (`lru_crawler metadump`): locks one shard, calls `f`
    /// for the valid items among at most `max` extents from the cursor, unlocks, and
    /// moves the cursor on. Returns true when every shard has been walked.
    pub fn dump_step(
        &self,
        cur: &mut DumpCursor,
        max: usize,
        f: &mut dyn FnMut(&ItemMeta<'_>),
    ) -> bool {
        if cur.done {
            return true;
        }
        let Some(sh) = self.shards.get(cur.shard) else {
            cur.done = true;
            return true;
        };
        let next = sh.lock().dump_walk(&self.ctx, cur.place, max.max(1), f);
        match next {
            Some(p) => cur.place = p,
            None => {
                cur.shard += 1;
                cur.place = DumpPlace::default();
                cur.done = cur.shard >= self.shards.len();
            }
        }
        cur.done
    }

    /// Looks a key up without marking it read (what a watcher of fetchers is told of
    /// a store's or delete's own lookup): `f` runs on the item under the shard lock.
    pub fn peek<R>(&self, key: &[u8], f: impl FnOnce(&ItemRef<'_>) -> R) -> Result<R, Miss> {
        let ctx = &self.ctx;
        self.with(key, |sh, h, _mem| {
            let l = match sh.find(ctx, h, key) {
                Found::Live(l) => l,
                Found::Miss(m) => return Err(m),
            };
            let c = sh.chunk(l);
            let hd = item::Hdr::read(c, ctx.cas_on);
            Ok(f(&ItemRef {
                key: &c[hd.key_at..hd.key_at + hd.klen],
                flags: hd.flags,
                value: &c[hd.value_at()..hd.total()],
                cas: hd.cas,
                exptime: hd.exptime,
            }))
        })
    }

    /// Installs what is told about every eviction (once; later calls are ignored).
    /// The sink runs under a shard lock: it must be quick and take no store lock.
    pub fn set_eviction_sink(&self, sink: EvictionSink) {
        let _ = self.ctx.eviction_sink.set(sink);
    }

    /// The size class (1-based, as `stats items` shows it) an item counts in.
    pub fn class_of(&self, it: &ItemRef<'_>) -> usize {
        let total = item::total_size(
            it.key.len(),
            it.value.len(),
            it.flags,
            it.exptime,
            self.cfg.cas_enabled,
        );
        self.ctx.class_for(total).unwrap_or(0) + 1
    }

    /// One full pass of the expiry crawler over every shard (`lru_crawler crawl`):
    /// batches of `batch` items under each shard's lock, `pause` called between
    /// batches (it returns false to stop early). `max_per_shard` (0: no bound) caps the
    /// items examined in a shard. Returns the items reclaimed.
    pub fn crawl_pass(
        &self,
        batch: usize,
        max_per_shard: usize,
        pause: &mut dyn FnMut() -> bool,
    ) -> usize {
        let batch = batch.max(1);
        let mut freed = 0;
        for sh in self.shards.iter() {
            let mut seen = 0usize;
            // Mid-pass (the background crawl keeps its place): finish that pass, then
            // one whole pass.
            let mut wraps = if sh.lock().crawl_at_start() { 1 } else { 2 };
            loop {
                let step = if max_per_shard > 0 {
                    batch.min(max_per_shard - seen)
                } else {
                    batch
                };
                let (f, wrapped) = {
                    let mut s = sh.lock();
                    let f = s.crawl(&self.ctx, step);
                    (f, s.crawl_at_start())
                };
                freed += f;
                seen += step;
                if wrapped {
                    wraps -= 1;
                }
                if wraps == 0 || (max_per_shard > 0 && seen >= max_per_shard) {
                    break;
                }
                if !pause() {
                    return freed;
                }
            }
        }
        freed
    }

    /// One step of background expiry: examines a bounded number of chunks per shard
    /// (in batches, so no lock is held long) and frees expired or flushed items; returns
    /// how many. `max` bounds the chunks examined per shard per call.
    pub fn crawl_expired(&self, max: usize) -> usize {
        self.crawler_starts.fetch_add(1, Ordering::Relaxed);
        let mut freed = 0;
        for sh in self.shards.iter() {
            // Segments a closed connection's lease left pinned.
            sh.lock().reap_orphans(&self.ctx);
            let mut left = max.max(1);
            while left > 0 {
                let batch = left.min(512);
                freed += sh.lock().crawl(&self.ctx, batch);
                left -= batch;
            }
        }
        freed
    }

    /// Number of shards ([`Store::snapshot_shard`] takes one of `0..shards()`).
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The store-wide facts a snapshot keeps (CAS counter, flush point).
    pub fn snapshot_meta(&self) -> SnapMeta {
        let ps = self.ctx.clock.process_started();
        let ol = self.ctx.oldest_live.load(Ordering::Acquire);
        // Only a point still ahead: one that has passed invalidated what it had to,
        // and the items saved are valid after it.
        let pending = ol != 0 && ol > self.ctx.clock.now();
        SnapMeta {
            // Uniques are handed out modulo 2^48: the counter's place in that cycle
            // (a file never claims more than a store keeps).
            cas_counter: self.cas.load(Ordering::Acquire) & item::CAS_MASK,
            flush_at: if pending { ps + i64::from(ol) } else { 0 },
            flush_cas: self.ctx.oldest_cas.load(Ordering::Acquire),
            cas_enabled: self.cfg.cas_enabled,
        }
    }

    /// Takes over a snapshot's store-wide facts (before its items are restored): the
    /// CAS counter never goes back, and a `flush_all` point that was ahead at the save
    /// is kept at the same wall time (if it passed during the downtime, the items
    /// it invalidates are not restored). CAS values above 2^48 - 1 (which no store
    /// hands out; the snapshot reader refuses them) are taken modulo 2^48.
    pub fn restore_meta(&self, m: &SnapMeta) {
        self.cas
            .fetch_max(m.cas_counter & item::CAS_MASK, Ordering::AcqRel);
        let clock = &self.ctx.clock;
        if m.flush_at != 0 {
            let rel = m
                .flush_at
                .saturating_sub(clock.process_started())
                .clamp(1, i64::from(u32::MAX));
            self.ctx
                .oldest_cas
                .store(m.flush_cas & item::CAS_MASK, Ordering::Release);
            self.ctx.oldest_live.store(rel as u32, Ordering::Release);
        }
    }

    /// Copies shard `i` for a snapshot while the store keeps serving, and calls `f`
    /// for every valid item, never under the shard lock. The lock is held for one
    /// batch of segments at a time (about `batch_bytes` of them, copied raw), and a
    /// last time to copy what the segments gained meanwhile; so every item in the shard
    /// from the start to the end of the walk is seen, with a value it had during the
    /// walk. An item stored, moved or replaced meanwhile may be seen twice (a restore
    /// keeps the higher CAS unique). `buf` is scratch memory (reused between calls).
    pub fn snapshot_shard(
        &self,
        i: usize,
        batch_bytes: usize,
        buf: &mut SnapBuf,
        f: &mut dyn FnMut(&SnapItem<'_>),
    ) {
        let Some(sh) = self.shards.get(i) else {
            return;
        };
        let mut walk = sh.lock().snap_begin();
        loop {
            buf.clear();
            let more = sh.lock().snap_step(&mut walk, batch_bytes, buf);
            self.snap_emit(buf, f);
            if !more {
                break;
            }
        }
        buf.clear();
        sh.lock().snap_finish(&mut walk, buf);
        self.snap_emit(buf, f);
        buf.clear();
    }

    fn snap_emit(&self, buf: &SnapBuf, f: &mut dyn FnMut(&SnapItem<'_>)) {
        let ctx = &self.ctx;
        let ps = ctx.clock.process_started();
        buf.items(ctx.cas_on, &mut |v| {
            if ctx.invalid(&v.hd).is_some() {
                return;
            }
            let hd = &v.hd;
            f(&SnapItem {
                key: &v.bytes[hd.key_at..hd.key_at + hd.klen],
                value: &v.bytes[hd.value_at()..hd.total()],
                flags: hd.flags,
                exptime: if hd.exptime == 0 {
                    0
                } else {
                    ps + i64::from(hd.exptime)
                },
                atime: ps + i64::from(hd.time),
                cas: hd.cas,
                freq: (hd.bits & item::FREQ) >> 6,
                fetched: hd.bits & item::FETCHED != 0,
                main: v.main,
                marks: v.marks,
            });
        });
    }

    /// Sizes the index for `items` more keys spread over the shards (before a restore
    /// of that many items).
    pub fn reserve(&self, items: u64) {
        let per = (items / self.shards.len() as u64) as usize;
        let per = per + per / 32;
        for sh in self.shards.iter() {
            sh.lock().reserve(&self.ctx, per);
        }
    }

    /// Stores an item read from a snapshot, as it was (CAS unique, flags, expiry,
    /// access counter, queue, marks), without evicting anything: when memory runs out
    /// it is refused ([`Restored::NoMemory`]). An item whose expiry has passed is not
    /// stored; a key already present keeps the version with the higher CAS unique.
    /// CAS uniques above the store's counter move the counter up.
    pub fn restore_item(&self, it: &SnapItem<'_>) -> Restored {
        let ctx = &self.ctx;
        let cas_on = ctx.cas_on;
        let key = it.key;
        if key.is_empty() || self.too_large_flags(key.len(), it.flags, it.value.len()) {
            return Restored::TooLarge;
        }
        let clock = &ctx.clock;
        let ps = clock.process_started();
        let exp = if it.exptime == 0 {
            0
        } else if it.exptime <= clock.unix_time() {
            return Restored::Expired;
        } else {
            it.exptime.saturating_sub(ps).clamp(1, i64::from(u32::MAX)) as u32
        };
        let time = it.atime.saturating_sub(ps).clamp(0, i64::from(clock.now())) as u32;
        let oldest = ctx.oldest_live.load(Ordering::Acquire);
        if oldest != 0 && oldest <= clock.now() && time <= oldest {
            // Stored before a flush_all point that passed during the downtime.
            return Restored::Expired;
        }
        let cas = if !cas_on {
            0
        } else if it.cas != 0 {
            let c = it.cas & item::CAS_MASK;
            self.cas.fetch_max(c, Ordering::AcqRel);
            c
        } else {
            self.next_cas()
        };
        let total = item::total_size(key.len(), it.value.len(), it.flags, exp, cas_on);
        if ctx.class_for(total).is_none() {
            return Restored::TooLarge;
        }
        self.with(key, |sh, h, _| {
            let old = sh.find_raw(ctx, h, key);
            if let Some(o) = old {
                if !cas_on || item::Hdr::read(sh.chunk(o), cas_on).cas >= cas {
                    return Restored::Duplicate;
                }
            }
            // Nothing is evicted nor moved: `old` stays where it is.
            let Some(new) = sh.restore_alloc(ctx, it.main, total) else {
                return Restored::NoMemory;
            };
            let c = sh.chunk_mut(new);
            let at = item::write_header(
                c,
                key.len(),
                it.value.len(),
                it.flags,
                exp,
                time,
                cas_on,
                cas,
            );
            c[0] |= (it.freq.min(3) << 6) | if it.fetched { item::FETCHED } else { 0 };
            c[at..at + key.len()].copy_from_slice(key);
            c[at + key.len()..at + key.len() + it.value.len()].copy_from_slice(it.value);
            sh.link(ctx, h, new, old);
            if it.marks != 0 {
                sh.set_marks(new, it.marks);
            }
            Restored::Loaded
        })
    }
}

#[cfg(test)]
mod tests;
