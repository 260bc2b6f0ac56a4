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
//! (`Shards::with_retry`). Bytes freed for an allocation stay reserved in the budget for
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

//!
//! # Files, bottom up
//! - `item.rs` (the item layout), `clock.rs`, `held.rs` (memory connections hold);
//! - `segment.rs` (segments, locations, queues of segments), `index.rs` (which
//!   table, which hash), `ghost.rs` (S3-FIFO's ghost), `view.rs` (the item views),
//!   `outcome.rs` (requests and outcomes), `ctx.rs` (settings, budget, flush marks),
//!   `classes.rs` (size classes as a view, the figures);
//! - `shard.rs` (a shard: its index and item bookkeeping), then the shard's work by
//!   concern: `alloc.rs` (getting room), `evict.rs` (S3-FIFO, compaction),
//!   `crawl.rs` (crawler, dumps, class figures), `pins.rs` (leased segments),
//!   `snapwalk.rs` (a shard's snapshot walk);
//! - `shards.rs` (the shards, one lock per operation, retries), the operations over
//!   them: `read.rs`, `write.rs`, `walks.rs` (every shard in turn), `lease.rs`
//!   (values streamed to a reply), `loan.rs` (`-m` lent to values being received);
//! - this file, the [`Store`] facade (with the insight); `snapshot.rs`, the snapshot
//!   file format, uses it.

mod alloc;
mod classes;
pub mod clock;
mod crawl;
mod ctx;
mod evict;
mod ghost;
mod held;
mod index;
pub mod item;
mod lease;
mod loan;
mod outcome;
mod pins;
mod read;
mod segment;
mod shard;
mod shards;
pub mod snapshot;
mod snapwalk;
mod view;
mod walks;
mod write;

use std::sync::Arc;

use parking_lot::Mutex;

use crate::insight::{Insight, InsightConfig, StoreShape};
use shards::{copied, Seen, Shards};

pub use crate::op::{Delta, StoreOp};
pub use classes::{ClassOps, ClassStats, StoreStats};
pub use clock::{Clock, RelTime};
pub use ctx::StoreConfig;
pub use lease::{Reply, ReplyValue, ValueLease};
pub use loan::Loan;
pub use outcome::{
    DeleteOutcome, DeltaOutcome, Guard, MetaDelete, Miss, NewItem, Restored, StoreOutcome,
};
pub use snapwalk::SnapBuf;
pub use view::{EvictionSink, ItemMeta, ItemRef, MetaItem, MetaUpdate, SnapItem, SnapMeta};
pub use walks::DumpCursor;

/// The sharded item store.
pub struct Store {
    core: Shards,
    /// Hot keys, sizing simulations, miss reasons (`crate::insight`), once enabled.
    insight: std::sync::OnceLock<Insight>,
    /// The classes' ages last computed.
    ages: Mutex<Option<ClassAges>>,
}

/// The classes' ages as [`Store::class_ages`] last computed them: (server time, real
/// time, per class the oldest access time + 1).
type ClassAges = (RelTime, std::time::Instant, Arc<Vec<u64>>);

impl Store {
    /// A new, empty store.
    pub fn new(cfg: StoreConfig, clock: Arc<Clock>) -> Store {
        Store {
            core: Shards::new(cfg, clock),
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
            shards: self.core.shards.len(),
            seg_bytes: segment::SEG_BYTES,
            big_item: crate::policy::BIG_ITEM,
            big_align: 64,
        };
        let _ = self.insight.set(Insight::new(cfg, shape, self.mem_limit()));
    }

    /// The memory limit now (`-m`, or what `cache_memlimit` set).
    pub fn mem_limit(&self) -> usize {
        self.core.ctx.limit()
    }

    /// The insight state, when enabled.
    pub fn insight(&self) -> Option<&Insight> {
        self.insight.get()
    }

    /// Tells the insight what an operation did (after its shard lock is released).
    #[inline]
    fn note(&self, key: &[u8], seen: &Seen) {
        if let (Some(i), Some((h, ev))) = (self.insight.get(), seen.0.get()) {
            i.note(key, h, ev, || self.core.ctx.clock.now(), self.mem_limit());
        }
    }

    /// Whether `key` is absent because it was evicted recently (its fingerprint is in
    /// its shard's ghost of evicted keys): the `get_miss_evicted` reason. False when
    /// miss reasons are off.
    pub fn recently_evicted(&self, key: &[u8]) -> bool {
        match self.insight.get() {
            Some(i) if i.config().miss_reasons => self.core.recently_evicted(key),
            _ => false,
        }
    }

    /// Lookups of any key since the start or `stats reset`, over all shards.
    pub fn lookups(&self) -> u64 {
        self.core.shards.iter().map(|s| s.lock().lookups).sum()
    }

    /// The clock this store expires items by.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.core.ctx.clock
    }

    /// True when an item with this key and value length (and flags 0) can never be
    /// stored: memcached's `item_size_ok` against `-I`. See [`Store::too_large_flags`].
    pub fn too_large(&self, key_len: usize, value_len: usize) -> bool {
        self.core.too_large_flags(key_len, 0, value_len)
    }

    /// Exactly memcached 1.6's boundary for "object too large for cache": its item size
    /// ([`limits::item_size`], the protocols' rule) above `-I`, or a key longer than
    /// memcached's 250 bytes.
    pub fn too_large_flags(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        self.core.too_large_flags(key_len, flags, value_len)
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
        let seen = Seen::default();
        let r = self.core.get_reply(key, touch, rv, f, &seen);
        self.note(key, &seen);
        r
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

    /// Stores a value: `op` decides on the present item (memcached's `set`, `add`,
    /// `replace`, `append`, `prepend`, `cas`), `guard` adds the conditions of the
    /// binary and meta protocols ([`Guard`]). Returns the outcome and the CAS unique
    /// given to the stored item (0 when nothing was stored or CAS is off). A set
    /// refused as too large or for lack of memory removes the old value, as memcached.
    #[inline]
    pub fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        item: NewItem<'_>,
        guard: Guard,
    ) -> (StoreOutcome, u64) {
        let seen = Seen::default();
        let r = self.core.store(op, key, item, guard, &seen);
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
        copied(self.meta_get_reply(key, vivify, ReplyValue::COPY, |it, _| f(it)))
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
        let seen = Seen::default();
        let r = self.core.meta_lookup(key, vivify, rv, f, &seen);
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
        let seen = Seen::default();
        let r = self.core.meta_delete(key, guard, invalidate, &seen);
        self.note(key, &seen);
        r
    }

    /// Removes a key; with `guard != 0` only if its CAS unique equals `guard`
    /// (`Exists` otherwise). Check and removal happen under one shard lock.
    pub fn delete(&self, key: &[u8], guard: u64) -> DeleteOutcome {
        let seen = Seen::default();
        let r = self.core.delete(key, guard, &seen);
        self.note(key, &seen);
        r
    }

    /// incr / decr with memcached's rules: the value is parsed like `safe_strtoull`; a
    /// result no longer than the old value is written in place, padded with spaces.
    /// With `guard != 0` the value changes only if the item's CAS unique equals
    /// `guard` (`Exists` otherwise), under one shard lock. Returns the outcome and the
    /// item's new CAS unique (0 when nothing changed).
    #[inline]
    pub fn delta(&self, key: &[u8], delta: Delta, guard: u64) -> (DeltaOutcome, u64) {
        let seen = Seen::default();
        let r = self.core.delta(key, delta, guard, &seen);
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
        self.core.flush_all(exptime);
    }

    /// Removes a key without counting it (after a failed `set`).
    pub fn unlink(&self, key: &[u8]) {
        self.core.unlink(key)
    }

    /// Changes the memory limit (`cache_memlimit`). Memory above a lowered limit is given
    /// back as segments are evicted or emptied. Always accepted.
    pub fn set_mem_limit(&self, bytes: usize) -> bool {
        self.core.ctx.set_limit(bytes);
        true
    }

    /// Bytes of item memory in use (segments, and what is lent), against the limit.
    pub fn mem_used(&self) -> usize {
        self.core.ctx.used()
    }

    /// Store-wide figures.
    pub fn stats(&self) -> StoreStats {
        self.core.stats()
    }

    /// Per-class figures (`stats items`); classes never used are included with zero
    /// pages, callers print only those with `total_pages > 0` or `number > 0`. The
    /// `age` of each class is computed at most once per second of server time (see
    /// `Store::class_ages`).
    pub fn class_stats(&self) -> Vec<ClassStats> {
        let ages = self.class_ages();
        let mut cls = self.class_counts();
        let now = u64::from(self.core.ctx.clock.now());
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
        self.core.class_counts()
    }

    /// Per class, the oldest access time (+1, 0 = none) of the items at the tails of
    /// the shards' queues, where the eviction walks next (memcached's `age` is that
    /// of its LRU tail). Finding it reads the items of several segments per shard
    /// under each shard's lock (about 0.6 ms at 200,000 items): clients looping `stats
    /// items` made every other client several times slower (issue #24). It has the
    /// resolution of a second, so it is computed once per second of server time (and
    /// at least once a second of real time, for `-o debugtime`), and reused between.
    fn class_ages(&self) -> Arc<Vec<u64>> {
        let now = self.core.ctx.clock.now();
        if let Some((at, made, ages)) = &*self.ages.lock() {
            if *at == now && made.elapsed() < std::time::Duration::from_secs(1) {
                return ages.clone();
            }
        }
        // Computed without the cache's lock held: a concurrent request computes its own.
        let ages = Arc::new(self.core.class_ages());
        *self.ages.lock() = Some((now, std::time::Instant::now(), ages.clone()));
        ages
    }

    /// Zeroes the store's event counters (`stats reset`: `total_items`, `evictions`,
    /// `reclaimed`, ...), as memcached does; current figures stay.
    pub fn reset_stats(&self) {
        self.core.reset_stats();
        if let Some(i) = self.insight.get() {
            i.reset(self.core.ctx.clock.now());
        }
    }

    /// Number of size classes (ids are `1..=classes()`).
    pub fn classes(&self) -> usize {
        self.core.ctx.classes()
    }

    /// Lists up to `limit` valid items of class `id` (1-based) as
    /// `(key, value length, relative expiry)`, for `stats cachedump`. Shards are locked
    /// one at a time.
    pub fn dump_class(&self, id: usize, limit: usize) -> Vec<(Vec<u8>, usize, RelTime)> {
        self.core.dump_class(id, limit)
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
        self.core.dump_step(cur, max, f)
    }

    /// Looks a key up without marking it read (what a watcher of fetchers is told of
    /// a store's or delete's own lookup): `f` runs on the item under the shard lock.
    pub fn peek<R>(&self, key: &[u8], f: impl FnOnce(&ItemRef<'_>) -> R) -> Result<R, Miss> {
        self.core.peek(key, f)
    }

    /// Installs what is told about every eviction (once; later calls are ignored).
    /// The sink runs under a shard lock: it must be quick and take no store lock.
    pub fn set_eviction_sink(&self, sink: EvictionSink) {
        let _ = self.core.ctx.eviction_sink.set(sink);
    }

    /// The size class (1-based, as `stats items` shows it) an item counts in.
    pub fn class_of(&self, it: &ItemRef<'_>) -> usize {
        let total = item::total_size(
            it.key.len(),
            it.value.len(),
            it.flags,
            it.exptime,
            self.core.ctx.cas_on,
        );
        self.core.ctx.class_for(total).unwrap_or(0) + 1
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
        self.core.crawl_pass(batch, max_per_shard, pause)
    }

    /// One step of background expiry: examines a bounded number of items per shard
    /// (in batches, so no lock is held long) and frees expired or flushed items; returns
    /// how many. `max` bounds the items examined per shard per call.
    pub fn crawl_expired(&self, max: usize) -> usize {
        self.core.crawl_expired(max)
    }

    /// Number of shards ([`Store::snapshot_shard`] takes one of `0..shards()`).
    pub fn shards(&self) -> usize {
        self.core.shards.len()
    }

    /// The store-wide facts a snapshot keeps (CAS counter, flush point).
    pub fn snapshot_meta(&self) -> SnapMeta {
        self.core.snapshot_meta()
    }

    /// Takes over a snapshot's store-wide facts (before its items are restored): the
    /// CAS counter never goes back, and a `flush_all` point that was ahead at the save
    /// is kept at the same wall time (if it passed during the downtime, the items
    /// it invalidates are not restored). CAS values above 2^48 - 1 (which no store
    /// hands out; the snapshot reader refuses them) are taken modulo 2^48.
    pub fn restore_meta(&self, m: &SnapMeta) {
        self.core.restore_meta(m)
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
        self.core.snapshot_shard(i, batch_bytes, buf, f)
    }

    /// Sizes the index for `items` more keys spread over the shards (before a restore
    /// of that many items).
    pub fn reserve(&self, items: u64) {
        self.core.reserve(items)
    }

    /// Stores an item read from a snapshot, as it was (CAS unique, flags, expiry,
    /// access counter, queue, marks), without evicting anything: when memory runs out
    /// it is refused ([`Restored::NoMemory`]). An item whose expiry has passed is not
    /// stored; a key already present keeps the version with the higher CAS unique.
    /// CAS uniques above the store's counter move the counter up.
    pub fn restore_item(&self, it: &SnapItem<'_>) -> Restored {
        self.core.restore_item(it)
    }

    /// Bytes [`Store::lend`] may still give (before eviction decides).
    pub fn lendable(&self) -> usize {
        self.core.lendable()
    }

    /// Bytes lent now.
    pub fn lent(&self) -> usize {
        self.core.lent()
    }

    /// Lends `n` bytes of the item budget for a value being received: from free
    /// budget, else freed by evicting from the shards (the one that owns the most
    /// first, locking one at a time). None when a quarter of the limit is lent
    /// already (`held.rs`) or the store cannot free them (with `-M`, only free
    /// budget is lent). Locks no shard while another is held.
    pub fn lend(&self, n: usize) -> Option<Loan> {
        self.core.lend(n)
    }

    /// Changes whenever memory connections held (lent or pinned) is given back: a
    /// request told to wait ([`Reply::Wait`]) tries again then.
    pub fn released(&self) -> u64 {
        self.core.released()
    }

    /// Bytes pinned by replies streaming values now.
    pub fn pinned(&self) -> usize {
        self.core.pinned()
    }

    /// Appends up to `max` bytes of the leased value, from offset `from`, to `out`
    /// (one shard lock). Returns the bytes appended; 0 when `from` is at the end, or
    /// when the lease does not match its segment (which would be a bug: the caller
    /// then closes the connection rather than send a wrong value).
    pub fn read_lease(
        &self,
        lease: &ValueLease,
        from: usize,
        max: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        self.core.read_lease(lease, from, max, out)
    }

    /// The reply is done with the value: the segment is unpinned, and freed at once
    /// if its item is gone and no other lease holds it.
    pub fn end_lease(&self, lease: ValueLease) {
        self.core.end_lease(lease)
    }
}

#[cfg(test)]
mod tests;
