//! Getting room for an item in a shard: the open segment of its queue, an empty
//! segment, a new one within the budget, compaction of sparse segments, eviction
//! (`evict.rs`), and memory taken from other shards ([`Mem`]).

use std::cell::Cell;

use super::ctx::Ctx;
use super::item;
use super::segment::{loc, Loc, Place, Seg, MAX_SEGS, SEG_BYTES};
use super::shard::Evicted;
use super::shard::Shard;
use crate::policy::{self, Band, Queue, BIG_ITEM};

/// What an allocation may draw on besides its own shard, and what a failed one leaves
/// for its caller.
pub struct Mem<'a> {
    /// Bytes reserved in the budget for this operation and not in any segment (taken
    /// from other shards before a retry); an allocation uses them first.
    credit: Cell<usize>,
    /// Takes up to the given bytes from other shards without blocking (`try_lock`);
    /// returns what it took, still counted in the budget and now the caller's.
    steal: &'a dyn Fn(usize) -> usize,
    /// No retry follows: a failed allocation is final (`OutOfMemory`).
    last: Cell<bool>,
    /// Bytes a failed, non-final allocation needs (0: none failed so).
    short: Cell<usize>,
}

impl<'a> Mem<'a> {
    /// `credit` bytes already reserved; `last`: no retry after a failure.
    pub fn new(credit: usize, steal: &'a dyn Fn(usize) -> usize, last: bool) -> Mem<'a> {
        Mem {
            credit: Cell::new(credit),
            steal,
            last: Cell::new(last),
            short: Cell::new(0),
        }
    }

    /// An allocation failed and the operation will be run again: the caller returns
    /// at once, changing nothing.
    #[inline]
    pub fn retrying(&self) -> bool {
        self.short.get() != 0
    }

    /// From now on a failed allocation is final (the operation has done something that
    /// must not be done twice).
    pub fn set_last(&self) {
        self.last.set(true);
    }

    /// (Bytes a failed allocation needs, reserved bytes it left unused.)
    pub fn take(&self) -> (usize, usize) {
        (self.short.replace(0), self.credit.replace(0))
    }
}

impl Shard {
    /// Reserves `total` bytes for a new item with key hash `h`, freeing memory as
    /// needed (`mem`: memory from other shards). The extent gets a dead placeholder
    /// header until the caller writes the item and links it. A key whose fingerprint
    /// is in the ghost goes to the main queue, every other to the small one. The common
    /// case, room in the open segment, is all inline.
    #[inline]
    pub fn alloc(&mut self, ctx: &Ctx, h: u64, total: usize, mem: &Mem<'_>) -> Option<Loc> {
        let back = self.ghost.take(h, self.ghost_horizon());
        if let Some(r) = &back {
            // A key back soon after its eviction: the queue that let it go was too
            // short (ARC's rule), and its band too small if it left within the
            // window (the band shares).
            let bq = &mut self.bands[r.band.index()];
            let [fs, fm] = self.ghost.from[r.band.index()];
            bq.small_share = policy::adapt_small_share(bq.small_share, r.queue, fs, fm);
            self.large_share
                .returned(r.band, r.distance, self.segment_bytes);
        }
        let q = policy::admit(back.map(|r| r.queue));
        if total > BIG_ITEM {
            return self.alloc_big(ctx, q, total, mem);
        }
        if let Some(sid) = self.fifo(Band::Packed, q).open {
            if let Some(l) = self.append(ctx, sid as usize, total) {
                return Some(l);
            }
        }
        self.alloc_slow(ctx, q, total, mem)
    }

    /// Appends an extent of `total` bytes to segment `sid` if it has room.
    #[inline]
    pub(super) fn append(&mut self, ctx: &Ctx, sid: usize, total: usize) -> Option<Loc> {
        let s = self.seg_mut(sid);
        let off = s.used;
        if off + total > s.data.len() {
            return None;
        }
        s.used += total;
        s.live += 1;
        s.live_bytes += total as u32;
        item::write_filler(&mut s.data[off..off + total], total, ctx.cas_on);
        Some(loc(sid, off))
    }

    /// Puts segment `sid` at the back of queue `q`, closed. Its bytes already count in
    /// the queue when it was `q`'s open segment; `new_to_queue` adds them.
    pub(super) fn enqueue(&mut self, q: Queue, sid: usize, new_to_queue: bool) {
        let band = self.band_of(sid);
        self.births = self.births.wrapping_add(u32::from(new_to_queue));
        let born = self.births;
        let s = self.seg_mut(sid);
        if new_to_queue {
            s.born = born;
        }
        s.place = Place::Closed(q);
        let (gen, bytes) = (s.gen, s.data.len());
        let fifo = self.fifo(band, q);
        fifo.closed.push_back((sid as u32, gen));
        if new_to_queue {
            fifo.bytes += bytes;
        }
    }

    /// Closes the open segment of `q` (it joins the queue's FIFO) and opens `sid`.
    pub(super) fn open(&mut self, q: Queue, sid: usize) {
        let old = self.fifo(Band::Packed, q).open.replace(sid as u32);
        if let Some(o) = old {
            self.enqueue(q, o as usize, false);
        }
        self.births = self.births.wrapping_add(1);
        let born = self.births;
        let s = self.seg_mut(sid);
        s.place = Place::Open(q);
        s.born = born;
        let bytes = s.data.len();
        self.fifo(Band::Packed, q).bytes += bytes;
    }

    #[inline(never)]
    pub(super) fn alloc_slow(
        &mut self,
        ctx: &Ctx,
        q: Queue,
        total: usize,
        mem: &Mem<'_>,
    ) -> Option<Loc> {
        // Making room may have opened a segment of this queue (survivors of an
        // eviction land in main's): try it before taking another.
        let sid = self.new_segment(ctx, SEG_BYTES, mem)?;
        if let Some(l) = self
            .fifo(Band::Packed, q)
            .open
            .and_then(|o| self.append(ctx, o as usize, total))
        {
            // Room appeared where the survivors went; keep the new segment for later.
            self.seg_mut(sid).place = Place::Evicting;
            self.empty.push(sid as u32);
            return Some(l);
        }
        self.open(q, sid);
        self.append(ctx, sid, total)
    }

    /// An item larger than [`BIG_ITEM`]: a closed segment of its own at the back of
    /// queue `q`.
    pub(super) fn alloc_big(
        &mut self,
        ctx: &Ctx,
        q: Queue,
        total: usize,
        mem: &Mem<'_>,
    ) -> Option<Loc> {
        let bytes = total.next_multiple_of(64);
        let sid = self.new_segment(ctx, bytes, mem)?;
        self.enqueue(q, sid, true);
        self.append(ctx, sid, total)
    }

    /// An empty segment of `bytes` (out of every queue): a kept empty one, the credit,
    /// the budget, this shard's evictions, then the other shards. Bytes freed on the way
    /// are held (they stay counted in the budget) until they make up the segment, so
    /// other shards cannot take them meanwhile. (Survivors of an eviction on the way
    /// may open a segment of main: the caller looks there first.)
    pub(super) fn new_segment(&mut self, ctx: &Ctx, bytes: usize, mem: &Mem<'_>) -> Option<usize> {
        if bytes == SEG_BYTES {
            if let Some(sid) = self.empty.pop() {
                return Some(sid as usize);
            }
        }
        let mut held = mem.credit.replace(0);
        // Every item is evicted by the fourth pass over main at the latest (its counter
        // is 3 at most and nothing reads while the shard is locked).
        let max_steps = 5 * (self.closed_segments() + 2) + 16;
        let mut steps = 0usize;
        let poor = ctx.evict && (self.segment_bytes as usize) < ctx.share() / 2;
        let mut stole = false;
        let mut compactions = 0;
        let got = loop {
            if held > 0 {
                // Over a lowered limit: the excess goes back, not into a new segment.
                let x = ctx.over_by().min(held);
                if x > 0 {
                    ctx.budget_release(x);
                    held -= x;
                }
            }
            if bytes == SEG_BYTES {
                if let Some(sid) = self.empty.pop() {
                    break Some(sid as usize);
                }
            }
            // Dead space is reclaimed before the shard grows while it holds much of
            // it, and before anything valid is evicted.
            let extra = bytes.saturating_sub(held);
            let grow_first = !self.garbage_heavy();
            if grow_first && (extra == 0 || ctx.budget_reserve(extra)) {
                match self.make_seg(ctx, bytes) {
                    Some(sid) => {
                        held -= bytes - extra;
                        break Some(sid);
                    }
                    None if extra > 0 => ctx.budget_release(extra),
                    None => {}
                }
            }
            if compactions < 8 {
                if let Some(r) = self.compact_sparse(ctx) {
                    compactions += 1;
                    match r {
                        Evicted::Empty(sid) if self.seg(sid).data.len() == bytes => {
                            break Some(sid)
                        }
                        Evicted::Empty(sid) => held += self.drop_seg(ctx, sid),
                        Evicted::Progress | Evicted::Nothing => {}
                    }
                    continue;
                }
            }
            if !grow_first && (extra == 0 || ctx.budget_reserve(extra)) {
                match self.make_seg(ctx, bytes) {
                    Some(sid) => {
                        held -= bytes - extra;
                        break Some(sid);
                    }
                    None if extra > 0 => ctx.budget_release(extra),
                    None => {}
                }
            }
            let own_empty = self.closed_segments() == 0;
            let stuck = own_empty || steps > max_steps;
            if !stole && ctx.evict && (stuck || poor) {
                stole = true;
                let n = (mem.steal)(extra.max(1));
                if n > 0 {
                    held += n;
                    continue;
                }
            }
            if stuck || !ctx.evict && steps > 4096 {
                break None;
            }
            steps += 1;
            match self.evict_one(ctx, false) {
                Evicted::Empty(sid) => {
                    if self.seg(sid).data.len() == bytes {
                        break Some(sid);
                    }
                    held += self.drop_seg(ctx, sid);
                }
                Evicted::Progress => {}
                Evicted::Nothing => {
                    if !ctx.evict {
                        break None;
                    }
                    steps = max_steps + 1;
                }
            }
        };
        if got.is_none() && ctx.evict && !mem.last.get() {
            // The caller takes memory from the other shards (blocking, this lock
            // released) and runs the operation again; it keeps what is held here.
            mem.credit.set(held);
            mem.short.set(bytes);
            return None;
        }
        if held > 0 {
            ctx.budget_release(held);
        }
        if got.is_none() {
            self.classes[0].outofmemory += 1;
        }
        got
    }

    /// A new segment of `bytes` whose bytes the caller has reserved.
    pub(super) fn make_seg(&mut self, ctx: &Ctx, bytes: usize) -> Option<usize> {
        let (sid, gen) = match self.free_ids.pop() {
            Some((s, g)) => (s as usize, g.wrapping_add(1)),
            None if self.segs.len() < MAX_SEGS => {
                self.segs.push(None);
                (self.segs.len() - 1, 0)
            }
            None => return None,
        };
        self.segs[sid] = Some(Seg {
            data: vec![0u8; bytes].into_boxed_slice(),
            used: 0,
            live: 0,
            live_bytes: 0,
            sparse: false,
            gen,
            born: 0,
            place: Place::Evicting,
        });
        self.segment_bytes += bytes as u64;
        self.nsegments += 1;
        ctx.set_owned(self.id, self.segment_bytes);
        Some(sid)
    }

    /// Drops an empty segment that is in no queue; returns its bytes, still counted in
    /// the budget (the caller passes them on or gives them back).
    pub(super) fn drop_seg(&mut self, ctx: &Ctx, sid: usize) -> usize {
        let Some(s) = self.segs.get_mut(sid).and_then(Option::take) else {
            return 0;
        };
        self.pins.remove(&(sid as u32));
        self.free_ids.push((sid as u32, s.gen));
        self.segment_bytes -= s.data.len() as u64;
        self.nsegments -= 1;
        ctx.set_owned(self.id, self.segment_bytes);
        s.data.len()
    }

    /// True when more than half of this shard's segment bytes hold no live item
    /// (replaced, deleted or expired items not yet walked over): then a segment is
    /// compacted before the shard takes more memory.
    pub(super) fn garbage_heavy(&self) -> bool {
        self.closed_segments() >= 2 && (self.bytes as usize) * 2 < self.segment_bytes as usize
    }
}
