//! The operations that walk every shard, one lock at a time: the store's figures
//! and the per-class ones, `stats cachedump` and `lru_crawler metadump`
//! ([`DumpCursor`]), the expiry crawler, and a snapshot's save and restore.

use std::sync::atomic::Ordering;

use super::classes::{ClassStats, StoreStats};
use super::clock::RelTime;
use super::crawl::DumpPlace;
use super::item;
use super::outcome::Restored;
use super::shards::Shards;
use super::snapwalk::SnapBuf;
use super::view::{ItemMeta, SnapItem, SnapMeta};

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

impl Shards {
    /// Store-wide figures.
    pub(super) fn stats(&self) -> StoreStats {
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
            s.total_pages += m.nsegments;
            s.total_malloced += m.segment_bytes;
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

    /// Per-class figures without `age` (`stats slabs`): the counters only, no item is
    /// looked at.
    pub(super) fn class_counts(&self) -> Vec<ClassStats> {
        let mut cls = vec![ClassStats::default(); self.ctx.sizes.len()];
        for sh in self.shards.iter() {
            sh.lock().class_stats(&self.ctx, &mut cls, false);
        }
        for (i, c) in cls.iter_mut().enumerate() {
            c.id = i + 1;
            c.chunk_size = self.ctx.class_size(i) as u64;
            c.chunks_per_page = (self.ctx.page_bytes(i) / self.ctx.class_size(i).max(1)) as u64;
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
    /// of its LRU tail): reads the items of several segments per shard under each
    /// shard's lock (the facade keeps the result for a second).
    pub(super) fn class_ages(&self) -> Vec<u64> {
        let mut cls = vec![ClassStats::default(); self.ctx.sizes.len()];
        for sh in self.shards.iter() {
            sh.lock().class_stats(&self.ctx, &mut cls, true);
        }
        cls.iter().map(|c| c.age).collect()
    }

    /// Zeroes the store's event counters (`stats reset`: `total_items`, `evictions`,
    /// `reclaimed`, ...), as memcached does; current figures stay.
    pub(super) fn reset_stats(&self) {
        for sh in self.shards.iter() {
            sh.lock().reset_stats();
        }
    }

    /// Lists up to `limit` valid items of class `id` (1-based) as
    /// `(key, value length, relative expiry)`, for `stats cachedump`. Shards are locked
    /// one at a time.
    pub(super) fn dump_class(&self, id: usize, limit: usize) -> Vec<(Vec<u8>, usize, RelTime)> {
        let mut out = Vec::new();
        if id == 0 || id > self.ctx.classes() {
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
    pub(super) fn dump_step(
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

    /// One full pass of the expiry crawler over every shard (`lru_crawler crawl`):
    /// batches of `batch` items under each shard's lock, `pause` called between
    /// batches (it returns false to stop early). `max_per_shard` (0: no bound) caps the
    /// items examined in a shard. Returns the items reclaimed.
    pub(super) fn crawl_pass(
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
    pub(super) fn crawl_expired(&self, max: usize) -> usize {
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

    /// The store-wide facts a snapshot keeps (CAS counter, flush point).
    pub(super) fn snapshot_meta(&self) -> SnapMeta {
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
    pub(super) fn restore_meta(&self, m: &SnapMeta) {
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
    pub(super) fn snapshot_shard(
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

    pub(super) fn snap_emit(&self, buf: &SnapBuf, f: &mut dyn FnMut(&SnapItem<'_>)) {
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
    pub(super) fn reserve(&self, items: u64) {
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
    pub(super) fn restore_item(&self, it: &SnapItem<'_>) -> Restored {
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
                if !cas_on || item::Hdr::read(sh.item_at(o), cas_on).cas >= cas {
                    return Restored::Duplicate;
                }
            }
            // Nothing is evicted nor moved: `old` stays where it is.
            let Some(new) = sh.restore_alloc(ctx, it.main, total) else {
                return Restored::NoMemory;
            };
            let c = sh.item_at_mut(new);
            let at = item::write_header(
                c,
                &item::Head {
                    klen: key.len(),
                    vlen: it.value.len(),
                    flags: it.flags,
                    exptime: exp,
                    time,
                    cas,
                },
                cas_on,
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
