//! One shard: hash index, log-structured segments, S3-FIFO eviction, expiry crawler.
//!
//! ```text
//!   index (4 × hashbrown table of u32 Loc)        Loc = segment id << 15 | byte offset
//!        │
//!   segments (32 KiB; an item above 8 KiB gets a segment of its own)
//!        small queue (adaptive, from 10 %)  main queue (the rest)         ghost
//!   new ─▶ [open] [seg] [seg] ─▶ tail        [open] [seg] ... [seg] ─▶ tail   fingerprints of
//!          read since stored? ── yes ──────▶ copied to main's open          keys evicted from
//!                                 no ──▶ evicted, key fingerprint ──▶ ghost  small unread
//!          main tail: read since last pass? yes: counter - 1, copied to main's open
//!                                           no: evicted, fingerprint ──▶ ghost (main)
//!   a new item whose key is in the ghost goes straight to main, and moves the small
//!   queue's share up (evicted from small) or down (evicted from main), as ARC does
//! ```
//!
//! Memory policy (see the module doc of `store` for the overview):
//! - Items are appended to the open segment of their queue: no size classes, so no
//!   memory is held by a class that does not use it, and the only slack is the unused
//!   end of each queue's open segment. Segment bytes are reserved from the store-wide
//!   byte budget before they are allocated and given back when a segment is dropped,
//!   so the sum of all segments never exceeds the limit.
//! - Eviction is S3-FIFO (Yang et al., SOSP'23) at item granularity, with segments as
//!   the unit of memory: when a shard needs a segment and the budget is spent, it
//!   takes the oldest segment of the small queue (while that queue holds more than its
//!   share of the shard's segments: 10 % at first, then adapted by the ghost's hits)
//!   or of the main queue, and walks its items. Expired
//!   and flushed items are reclaimed; items read since they were stored (small) or
//!   since the last pass (main, 2-bit counter) are copied to the open segment of the
//!   main queue; the rest are evicted (their key's fingerprint goes to the ghost, with
//!   the queue it left, so a quick return is admitted to main directly). Survivors are copied out
//!   of the segment first, so the emptied segment itself can take them when main's open
//!   segment fills: eviction never needs a spare segment. Reads only bump the item's
//!   counter; nothing is relinked.
//! - A segment whose items are all gone (deleted, replaced, expired) is reused at once.
//! - A shard that cannot free memory itself (it owns too little) takes bytes from other
//!   shards, first with `try_lock` only (never blocking while holding its own lock); the
//!   bytes pass to it directly, not through the budget. When that is not enough, the
//!   allocation fails with [`Mem::retrying`] set: the store releases this shard's lock,
//!   takes the memory from the other shards locking one at a time, and runs the
//!   operation again with it (see `Shards::with_retry`).

use std::collections::HashMap;

use hashbrown::HashTable;

use super::classes::{ClassOp, ClassStats};
use super::ctx::Ctx;
use super::ghost::Ghost;
use super::index::{buckets, key_is, rehash, sub_of, table_hash, SUBTABLES};
use super::item::{self, Hdr, FETCHED, FREQ, FREQ_ONE, LIVE, MARKED};
use super::lease::PinToken;
use super::outcome::Miss;
use super::segment::{split, unreachable_seg, BandQueues, Fifo, Loc, Place, Seg, SEG_BYTES};
use crate::policy::{self, Band, BandShare, Coin, Lifetimes, Queue};

/// A closed segment whose live bytes fall below this share of its used bytes is sparse.
const SPARSE_PERCENT: usize = 60;

/// Why an item is being removed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    Evict,
    Reclaim,
    Crawl,
    Quiet,
}

/// One shard of the store.
pub struct Shard {
    /// This shard's number (its entry in `Ctx::owned`).
    pub(super) id: usize,
    /// The index: item locations (4 bytes each), keys compared in item memory.
    pub(super) tables: [HashTable<Loc>; SUBTABLES],
    pub(super) segs: Vec<Option<Seg>>,
    /// Ids of dropped segments, with their last generation (a new segment under an
    /// old id continues it, so stale queue entries and the crawler never match it).
    pub(super) free_ids: Vec<(u32, u32)>,
    /// Empty segments of `SEG_BYTES` ready for reuse (still counted in the budget).
    pub(super) empty: Vec<u32>,
    /// The queues of each band (see [`crate::policy`]).
    pub(super) bands: [BandQueues; 2],
    /// The large band's share of the segment bytes.
    pub(super) large_share: BandShare,
    /// The charge probabilities of each band's size classes.
    pub(super) lifetimes: [Lifetimes; 2],
    /// The policy's coin flips.
    pub(super) coin: Coin,
    /// Segments opened or requeued so far (the `born` of the next).
    pub(super) births: u32,
    pub(super) ghost: Ghost,
    /// Closed segments that became sparse (with their generation then).
    pub(super) sparse: Vec<(u32, u32)>,
    /// Survivors of the segment being evicted: their bytes, and (offset in `moved`,
    /// length, key hash, old location).
    pub(super) moved: Vec<u8>,
    pub(super) moving: Vec<(usize, usize, u64, Loc)>,
    /// The crawler's place: segment, offset of the next item, and the segment's
    /// generation then (a segment rewound or reused since starts over).
    pub(super) crawl_seg: usize,
    pub(super) crawl_off: usize,
    pub(super) crawl_gen: u32,
    /// Per size class figures (classes are only a view: memory is not bound to them).
    pub(super) classes: Vec<ClassStats>,
    /// Lookups of any key since the start or `stats reset` (`stats sizing`'s
    /// denominator).
    pub(super) lookups: u64,
    /// Meta marks of the items whose `MARKED` bit is set (location -> marks); every
    /// path that frees or moves an item keeps it in step.
    pub(super) marks: HashMap<Loc, u8>,
    /// Segments of their own item that a reply may be streaming from
    /// ([`Shard::lease`]): the token leases hold (pinned while one does).
    pub(super) pins: HashMap<u32, std::sync::Weak<PinToken>>,
    /// Pinned segments whose item is gone: kept (and counted in the budget) until the
    /// last lease ends ([`Shard::reap_orphans`]).
    pub(super) orphans: Vec<u32>,
    /// Items ever linked.
    pub total_items: u64,
    /// Bytes of linked items.
    pub bytes: u64,
    /// Bytes of segments owned.
    pub segment_bytes: u64,
    /// Segments owned.
    pub nsegments: u64,
}

/// Validity of an item found in the index.
pub(super) enum Found {
    /// Valid, at this location.
    Live(Loc),
    /// Not there (or removed now because expired/flushed).
    Miss(Miss),
}

/// What walking the oldest segment of a queue gave.
pub(super) enum Evicted {
    /// This segment is now empty and out of every queue: the caller's.
    Empty(usize),
    /// Items moved or were removed, but no whole segment came free.
    Progress,
    /// Nothing left to evict.
    Nothing,
}

impl Shard {
    /// An empty shard number `id` with `nclasses` size classes for its figures.
    pub fn new(nclasses: usize, id: usize) -> Shard {
        Shard {
            id,
            tables: std::array::from_fn(|_| HashTable::new()),
            segs: Vec::new(),
            free_ids: Vec::new(),
            empty: Vec::new(),
            bands: [BandQueues::default(), BandQueues::default()],
            large_share: BandShare::default(),
            lifetimes: [Lifetimes::default(), Lifetimes::default()],
            births: 0,
            coin: Coin::new(
                0x9E37_79B9_7F4A_7C15 ^ (id as u64).wrapping_mul(0x2545_F491_4F6C_DD1D),
            ),
            ghost: Ghost::default(),
            sparse: Vec::new(),
            moved: Vec::new(),
            moving: Vec::new(),
            crawl_seg: 0,
            crawl_off: 0,
            crawl_gen: 0,
            classes: vec![ClassStats::default(); nclasses],
            lookups: 0,
            marks: HashMap::new(),
            pins: HashMap::new(),
            orphans: Vec::new(),
            total_items: 0,
            bytes: 0,
            segment_bytes: 0,
            nsegments: 0,
        }
    }

    /// Items in the index.
    pub fn len(&self) -> usize {
        self.tables.iter().map(HashTable::len).sum()
    }

    /// Whether a key with hash `h` was evicted recently (its fingerprint is in the
    /// ghost): the "evicted" reason of a miss.
    pub fn recently_evicted(&self, h: u64) -> bool {
        self.ghost.holds(h, self.ghost_horizon())
    }

    /// How far back, in bytes of its band's evictions, a key counts as recently
    /// evicted: as many bytes as the shard holds.
    pub(super) fn ghost_horizon(&self) -> u64 {
        self.segment_bytes.max(SEG_BYTES as u64)
    }

    /// The queues of `band`, queue `q`.
    pub(super) fn fifo(&mut self, band: Band, q: Queue) -> &mut Fifo {
        &mut self.bands[band.index()].q[q.index()]
    }

    /// The band of segment `sid` (a segment of its own is a large item's).
    pub(super) fn band_of(&self, sid: usize) -> Band {
        if self.seg(sid).data.len() == SEG_BYTES {
            Band::Packed
        } else {
            Band::Large
        }
    }

    /// Counts an item of `total` bytes in or out of its band's sizes.
    pub(super) fn band_count(&mut self, total: usize, add: bool) {
        let l = &mut self.lifetimes[Band::of(total).index()];
        if add {
            l.stored(total);
        } else {
            l.removed(total);
        }
    }

    /// Bytes held by the index itself (approximate: buckets × (slot + control byte)),
    /// and the ghost.
    pub fn index_bytes(&self) -> usize {
        self.tables
            .iter()
            .map(|t| buckets(t.capacity()) * (std::mem::size_of::<Loc>() + 1))
            .sum::<usize>()
            + self.ghost.bytes()
    }

    pub(super) fn seg(&self, sid: usize) -> &Seg {
        match self.segs.get(sid) {
            Some(Some(s)) => s,
            _ => unreachable_seg(),
        }
    }

    pub(super) fn seg_mut(&mut self, sid: usize) -> &mut Seg {
        match self.segs.get_mut(sid) {
            Some(Some(s)) => s,
            _ => unreachable_seg(),
        }
    }

    /// The bytes the item at `l` takes (header, key, value).
    pub fn footprint(&self, ctx: &Ctx, l: Loc) -> usize {
        Hdr::read(self.item_at(l), ctx.cas_on).total()
    }

    /// The bytes of the item at `l`, and after it what its segment holds (the header
    /// says how many are the item's: [`Hdr::total`]). Right after [`Shard::alloc`]
    /// this is exactly the space allocated.
    #[inline]
    pub fn item_at(&self, l: Loc) -> &[u8] {
        let (sid, off) = split(l);
        let s = self.seg(sid);
        &s.data[off..s.used]
    }

    /// The bytes of the item at `l`, mutable (see [`Shard::item_at`]): only the item's
    /// own bytes may be written.
    #[inline]
    pub fn item_at_mut(&mut self, l: Loc) -> &mut [u8] {
        let (sid, off) = split(l);
        let s = self.seg_mut(sid);
        let used = s.used;
        &mut s.data[off..used]
    }

    /// Finds a key without checking validity.
    pub fn find_raw(&self, ctx: &Ctx, h: u64, key: &[u8]) -> Option<Loc> {
        let segs = &self.segs;
        let cas_on = ctx.cas_on;
        self.tables[sub_of(h)]
            .find(table_hash(h), |&l| key_is(segs, l, key, cas_on))
            .copied()
    }

    /// Finds a valid item; expired or flushed ones are removed and reported.
    pub fn find(&mut self, ctx: &Ctx, h: u64, key: &[u8]) -> Found {
        let Some(l) = self.find_raw(ctx, h, key) else {
            return Found::Miss(Miss::Absent);
        };
        let hd = Hdr::read(self.item_at(l), ctx.cas_on);
        match ctx.invalid(&hd) {
            None => Found::Live(l),
            Some(m) => {
                self.remove(ctx, h, l, Why::Quiet);
                Found::Miss(m)
            }
        }
    }

    /// Marks an item as read now: its counter goes up by one read per
    /// [`policy::READ_BYTES`] of its size ([`policy::read_counts`]).
    pub fn bump(&mut self, ctx: &Ctx, l: Loc, now: u32) {
        let (sid, off) = split(l);
        // The item's segment, borrowed apart from the policy's fields (one lookup).
        let seg = match self.segs.get_mut(sid) {
            Some(Some(s)) => s,
            _ => unreachable_seg(),
        };
        let used = seg.used;
        let c = &mut seg.data[off..used];
        let total = item::total_of(c, ctx.cas_on);
        self.lifetimes[Band::of(total).index()].read(total);
        let b = c[0];
        if b & FREQ != FREQ && policy::read_counts(total, &mut self.coin) {
            c[0] = b + FREQ_ONE;
        }
        c[0] |= FETCHED;
        if item::rd32(c, item::OFF_TIME) != now {
            item::wr32(c, item::OFF_TIME, now);
        }
    }

    /// A write to the item at `l` in place (incr/decr, meta arithmetic): an access, as
    /// a read is for eviction (one more on its counter), without making it "fetched"
    /// (memcached's `fetched` counts reads only).
    pub fn wrote(&mut self, l: Loc) {
        let c = self.item_at_mut(l);
        if c[0] & FREQ != FREQ {
            c[0] += FREQ_ONE;
        }
    }

    /// A write that replaced the item at `from` by the one at `to` (a set, cas,
    /// append, prepend or arithmetic that needed a new extent): the key is in use, so
    /// the new item keeps the old one's counter, plus one for this access.
    pub fn rewrote(&mut self, from: Loc, to: Loc) {
        let f = self.item_at(from)[0] & FREQ;
        let n = if f == FREQ { f } else { f + FREQ_ONE };
        let c = self.item_at_mut(to);
        c[0] = (c[0] & !FREQ) | n;
    }

    /// Sets the expiry of the item at `l` in place; false when the item has no expiry
    /// field (stored without one) and `exp` is not 0: the caller moves it to a new
    /// extent with the field ([`Store::regrow`](super::Store)).
    pub fn set_exptime(&mut self, _ctx: &Ctx, l: Loc, exp: u32) -> bool {
        let c = self.item_at_mut(l);
        let at = item::exp_at(c);
        if c[0] & item::HAS_EXP != 0 {
            item::wr32(c, at, exp);
            return true;
        }
        exp == 0
    }

    /// The size class an item of `total` bytes counts in (figures only).
    pub(super) fn class_of(ctx: &Ctx, total: usize) -> usize {
        ctx.class_for(total).unwrap_or(0)
    }

    /// Counts an operation on the item at `l` in its class's figures.
    pub(crate) fn count(&mut self, ctx: &Ctx, l: Loc, op: ClassOp) {
        let total = Hdr::read(self.item_at(l), ctx.cas_on).total();
        self.count_class(Self::class_of(ctx, total), op);
    }

    /// Counts an operation in the figures of class `class` (0-based).
    pub(crate) fn count_class(&mut self, class: usize, op: ClassOp) {
        if let Some(c) = self.classes.get_mut(class) {
            c.ops.bump(op);
        }
    }

    /// Removes an item from the index and frees its extent.
    pub(super) fn remove(&mut self, ctx: &Ctx, h: u64, l: Loc, why: Why) {
        if let Ok(e) = self.tables[sub_of(h)].find_entry(table_hash(h), |&s| s == l) {
            e.remove();
        }
        let hd = Hdr::read(self.item_at(l), ctx.cas_on);
        let now = ctx.clock.now();
        if why == Why::Evict {
            self.note_eviction(ctx, l, &hd);
        }
        let st = &mut self.classes[Self::class_of(ctx, hd.total())];
        st.number = st.number.saturating_sub(1);
        st.requested = st.requested.saturating_sub(hd.total() as u64);
        let fetched = hd.bits & FETCHED != 0;
        match why {
            Why::Evict => {
                st.evicted += 1;
                if hd.exptime != 0 {
                    st.evicted_nonzero += 1;
                }
                if !fetched {
                    st.evicted_unfetched += 1;
                }
                st.evicted_time = now.saturating_sub(hd.time);
            }
            Why::Reclaim | Why::Crawl => {
                if why == Why::Reclaim {
                    st.reclaimed += 1;
                } else {
                    st.crawler_reclaimed += 1;
                }
                if !fetched && ctx.clock.is_expired(hd.exptime) {
                    st.expired_unfetched += 1;
                }
            }
            Why::Quiet => {}
        }
        self.bytes = self.bytes.saturating_sub(hd.total() as u64);
        self.band_count(hd.total(), false);
        self.free_extent(ctx, l);
    }

    /// Removes the item with this key, if any, without counting (no validity check).
    pub fn unlink_key(&mut self, ctx: &Ctx, h: u64, key: &[u8]) -> bool {
        match self.find_raw(ctx, h, key) {
            Some(l) => {
                self.remove(ctx, h, l, Why::Quiet);
                true
            }
            None => false,
        }
    }

    /// Removes a valid item found by [`Shard::find`].
    pub fn delete_at(&mut self, ctx: &Ctx, h: u64, l: Loc) {
        self.remove(ctx, h, l, Why::Quiet);
    }

    /// The meta marks of the item at `l` (0 when none).
    pub fn marks(&self, l: Loc) -> u8 {
        if self.item_at(l)[0] & MARKED == 0 {
            return 0;
        }
        self.marks.get(&l).copied().unwrap_or(0)
    }

    /// Sets the meta marks of the item at `l` (0 removes them).
    pub fn set_marks(&mut self, l: Loc, m: u8) {
        if m == 0 {
            self.marks.remove(&l);
            self.item_at_mut(l)[0] &= !MARKED;
        } else {
            self.marks.insert(l, m);
            self.item_at_mut(l)[0] |= MARKED;
        }
    }

    /// Moves the meta marks of an item copied from `from` to `to`.
    pub fn move_marks(&mut self, from: Loc, to: Loc) {
        let m = self.marks(from);
        self.marks.remove(&from);
        self.set_marks(to, m);
    }

    /// Frees an extent that is not (or no longer) in the index: its bytes stay in the
    /// segment as a dead item until the segment is emptied.
    pub fn free_extent(&mut self, ctx: &Ctx, l: Loc) {
        if self.item_at(l)[0] & MARKED != 0 {
            self.marks.remove(&l);
        }
        let total = Hdr::read(self.item_at(l), ctx.cas_on).total();
        self.item_at_mut(l)[0] &= !(LIVE | MARKED);
        let (sid, _) = split(l);
        let s = self.seg_mut(sid);
        s.live -= 1;
        s.live_bytes = s.live_bytes.saturating_sub(total as u32);
        if s.live == 0 {
            self.emptied(ctx, sid);
        } else if !s.sparse
            && matches!(s.place, Place::Closed(_))
            && (s.live_bytes as usize) * 100 < s.used * SPARSE_PERCENT
        {
            // Mostly dead: compacted before anything is evicted (and before the shard
            // grows when it holds much dead space).
            s.sparse = true;
            let gen = s.gen;
            self.sparse.push((sid as u32, gen));
        }
    }

    /// A sparse segment still sparse and where it was listed, taken out of its queue.
    pub(super) fn take_sparse(&mut self) -> Option<(Queue, usize)> {
        while let Some((sid, gen)) = self.sparse.pop() {
            let sid = sid as usize;
            let q = match self.segs.get_mut(sid) {
                Some(Some(s)) if s.gen == gen && s.sparse => {
                    s.sparse = false;
                    match s.place {
                        Place::Closed(q) => q,
                        _ => continue,
                    }
                }
                _ => continue,
            };
            let band = self.band_of(sid);
            let s = self.seg_mut(sid);
            let bytes = s.data.len();
            // Its queue entry becomes stale.
            s.gen = s.gen.wrapping_add(1);
            s.place = Place::Evicting;
            self.fifo(band, q).bytes -= bytes;
            return Some((q, sid));
        }
        None
    }

    /// Compacts a sparse segment: its live items go to the open segment of its queue.
    pub(super) fn compact_sparse(&mut self, ctx: &Ctx) -> Option<Evicted> {
        let (q, sid) = self.take_sparse()?;
        if self.seg(sid).data.len() != SEG_BYTES {
            return Some(self.evict_big(ctx, q, sid, true));
        }
        self.walk(ctx, q, sid, true);
        Some(self.place_survivors(ctx, q, q, sid))
    }

    /// A segment's last item is gone: an open one starts over, a closed one leaves its
    /// queue and is reused (one that is being evicted is the eviction's).
    pub(super) fn emptied(&mut self, ctx: &Ctx, sid: usize) {
        let band = self.band_of(sid);
        let s = self.seg_mut(sid);
        match s.place {
            Place::Open(_) => {
                // Rewound: offsets into its earlier contents (the crawler's) are stale.
                s.used = 0;
                s.gen = s.gen.wrapping_add(1);
            }
            Place::Closed(q) => {
                // The queue keeps a stale entry (its generation no longer matches).
                let bytes = s.data.len();
                self.fifo(band, q).bytes -= bytes;
                self.recycle(ctx, sid);
            }
            Place::Evicting => {}
        }
    }

    /// Keeps an emptied segment for reuse (normal size) or drops it (an item's own):
    /// dropped bytes go back to the budget.
    pub(super) fn recycle(&mut self, ctx: &Ctx, sid: usize) {
        let s = self.seg_mut(sid);
        s.gen = s.gen.wrapping_add(1);
        s.used = 0;
        s.live_bytes = 0;
        s.sparse = false;
        s.live = 0;
        s.place = Place::Evicting;
        if self.pinned(sid) {
            // A reply still streams its bytes: kept until the lease ends.
            self.orphans.push(sid as u32);
            return;
        }
        let s = self.seg_mut(sid);
        if s.data.len() == SEG_BYTES && !ctx.over_limit() {
            self.empty.push(sid as u32);
        } else {
            // Outside an allocation: the bytes go back to the budget.
            let n = self.drop_seg(ctx, sid);
            ctx.budget_release(n);
        }
    }

    /// Links a freshly written item: replaces `old` in the index (freeing it) or inserts.
    pub fn link(&mut self, ctx: &Ctx, h: u64, new: Loc, old: Option<Loc>) {
        let hd = Hdr::read(self.item_at(new), ctx.cas_on);
        let st = &mut self.classes[Self::class_of(ctx, hd.total())];
        st.number += 1;
        st.requested += hd.total() as u64;
        self.bytes += hd.total() as u64;
        self.band_count(hd.total(), true);
        self.total_items += 1;
        let t = sub_of(h);
        if let Some(o) = old {
            if let Some(s) = self.tables[t].find_mut(table_hash(h), |&s| s == o) {
                *s = new;
                let ohd = Hdr::read(self.item_at(o), ctx.cas_on);
                let st = &mut self.classes[Self::class_of(ctx, ohd.total())];
                st.number = st.number.saturating_sub(1);
                st.requested = st.requested.saturating_sub(ohd.total() as u64);
                self.bytes = self.bytes.saturating_sub(ohd.total() as u64);
                self.band_count(ohd.total(), false);
                self.free_extent(ctx, o);
                return;
            }
        }
        let segs = &self.segs;
        self.tables[t].insert_unique(table_hash(h), new, |&l| rehash(segs, ctx, l));
    }
}
