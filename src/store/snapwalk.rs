//! A shard's side of a snapshot: the walk that copies its segments raw under the
//! lock ([`SnapWalk`], [`SnapBuf`]), the items decoded from the copy, and the
//! allocation a restore uses (no eviction).

use std::collections::HashMap;

use super::ctx::Ctx;
use super::index::{rehash, SUBTABLES, SUB_BOUNDS};
use super::item::{Hdr, LIVE};
use super::segment::{split, Loc, Place, SEG_BYTES};
use super::shard::Shard;
use crate::policy::{Band, Queue, BIG_ITEM};

/// Where a snapshot walk of one shard is ([`Shard::snap_begin`]): the segments in
/// queue order (oldest first, as S3-FIFO would evict them), the next one to copy, and
/// for every segment copied the generation and the bytes it held then, so that the
/// last step copies exactly what was appended (or rewritten) since.
#[derive(Debug, Default)]
pub struct SnapWalk {
    order: Vec<u32>,
    pos: usize,
    /// Indexed by segment id: (generation, bytes copied) once copied.
    seen: Vec<Option<(u32, usize)>>,
}

/// Raw bytes of a batch of segments copied under the shard lock, decoded into items
/// after the lock is released ([`SnapBuf::items`]).
#[derive(Debug, Default)]
pub struct SnapBuf {
    data: Vec<u8>,
    /// (start in `data`, length, from the main queue).
    runs: Vec<(usize, usize, bool)>,
    /// Meta marks of marked items, by the item's offset in `data`.
    marks: HashMap<usize, u8>,
}

/// One item as a snapshot sees it, borrowed from a [`SnapBuf`].
#[derive(Debug, Clone, Copy)]
pub struct SnapView<'a> {
    /// The parsed header.
    pub hd: Hdr,
    /// The item's bytes (header, key, value).
    pub bytes: &'a [u8],
    /// It was in the main queue.
    pub main: bool,
    /// Its meta marks.
    pub marks: u8,
}

impl SnapBuf {
    /// Empties the buffer (keeping its capacity).
    pub fn clear(&mut self) {
        self.data.clear();
        self.runs.clear();
        self.marks.clear();
    }

    /// Bytes copied.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Nothing copied.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Calls `f` for every live item copied, in segment order.
    pub(crate) fn items(&self, cas_on: bool, f: &mut dyn FnMut(SnapView<'_>)) {
        for &(start, len, main) in &self.runs {
            let mut off = start;
            let end = start + len;
            while off < end {
                let c = &self.data[off..end];
                let hd = Hdr::read(c, cas_on);
                let total = hd.total().max(1);
                if c[0] & LIVE != 0 && total <= c.len() {
                    f(SnapView {
                        hd,
                        bytes: &c[..total],
                        main,
                        marks: self.marks.get(&off).copied().unwrap_or(0),
                    });
                }
                off += total;
            }
        }
    }
}

impl Shard {
    /// Starts a snapshot walk: the order in which segments will be copied.
    pub fn snap_begin(&self) -> SnapWalk {
        let mut order = Vec::with_capacity(self.segs.len());
        let mut listed = vec![false; self.segs.len()];
        let mut add = |sid: u32, order: &mut Vec<u32>| {
            if let Some(l) = listed.get_mut(sid as usize) {
                if !*l {
                    *l = true;
                    order.push(sid);
                }
            }
        };
        for (fifo, q) in self
            .bands
            .iter()
            .flat_map(|b| [(&b.q[0], Queue::Small), (&b.q[1], Queue::Main)])
        {
            let open = fifo.open;
            for &(sid, gen) in &fifo.closed {
                if let Some(Some(s)) = self.segs.get(sid as usize) {
                    if s.gen == gen && s.place == Place::Closed(q) {
                        add(sid, &mut order);
                    }
                }
            }
            if let Some(o) = open {
                add(o, &mut order);
            }
        }
        // Anything else holding bytes (none is expected: every segment with items is
        // in a queue), so that no item can be missed.
        for (sid, s) in self.segs.iter().enumerate() {
            if matches!(s, Some(s) if s.used > 0) {
                add(sid as u32, &mut order);
            }
        }
        SnapWalk {
            order,
            pos: 0,
            seen: vec![None; self.segs.len()],
        }
    }

    /// Copies the bytes of segment `sid` that the walk has not copied yet (all of
    /// them when its generation changed) into `out`.
    pub(super) fn snap_copy_seg(&self, w: &mut SnapWalk, sid: usize, out: &mut SnapBuf) {
        let Some(Some(s)) = self.segs.get(sid) else {
            return;
        };
        if w.seen.len() <= sid {
            w.seen.resize(sid + 1, None);
        }
        let from = match w.seen[sid] {
            Some((gen, used)) if gen == s.gen => used,
            _ => 0,
        };
        w.seen[sid] = Some((s.gen, s.used));
        if from >= s.used {
            return;
        }
        let start = out.data.len();
        out.data.extend_from_slice(&s.data[from..s.used]);
        let main = matches!(
            s.place,
            Place::Open(Queue::Main) | Place::Closed(Queue::Main)
        );
        out.runs.push((start, s.used - from, main));
        if !self.marks.is_empty() {
            for (&l, &m) in &self.marks {
                let (msid, moff) = split(l);
                if msid == sid && moff >= from {
                    out.marks.insert(start + moff - from, m);
                }
            }
        }
    }

    /// Copies the next segments of the walk, about `max_bytes` of them, into `out`;
    /// returns false when every segment listed at the start has been copied.
    pub fn snap_step(&self, w: &mut SnapWalk, max_bytes: usize, out: &mut SnapBuf) -> bool {
        let until = out.len() + max_bytes.max(1);
        while w.pos < w.order.len() && out.len() < until {
            let sid = w.order[w.pos] as usize;
            w.pos += 1;
            self.snap_copy_seg(w, sid, out);
        }
        w.pos < w.order.len()
    }

    /// The walk's last step: copies what every segment gained since it was copied
    /// (items stored or moved meanwhile; a segment reused since is copied whole), so
    /// that every item live now is in the copy.
    pub fn snap_finish(&self, w: &mut SnapWalk, out: &mut SnapBuf) {
        for sid in 0..self.segs.len() {
            self.snap_copy_seg(w, sid, out);
        }
    }

    /// Makes room in the index for `items` more keys at once (a restore knows how
    /// many are coming: the tables are sized once instead of doubling, each doubling
    /// rehashing every key from item memory).
    pub fn reserve(&mut self, ctx: &Ctx, items: usize) {
        let mut lo = 0u64;
        for t in 0..SUBTABLES {
            let hi = SUB_BOUNDS.get(t).map_or(1 << 24, |&b| u64::from(b));
            let n = (items as u64 * (hi - lo)).div_ceil(1 << 24) as usize;
            lo = hi;
            let segs = &self.segs;
            self.tables[t].reserve(n, |&l| rehash(segs, ctx, l));
        }
    }

    /// Room for a restored item of `total` bytes in queue `main`/small, without
    /// evicting anything nor taking memory from other shards: the open segment, an
    /// empty one, or a new one if the budget allows. `None`: no memory is left.
    pub fn restore_alloc(&mut self, ctx: &Ctx, main: bool, total: usize) -> Option<Loc> {
        let q = if main { Queue::Main } else { Queue::Small };
        if total > BIG_ITEM {
            let bytes = total.next_multiple_of(64);
            if !ctx.budget_reserve(bytes) {
                return None;
            }
            let Some(sid) = self.make_seg(ctx, bytes) else {
                ctx.budget_release(bytes);
                return None;
            };
            self.enqueue(q, sid, true);
            return self.append(ctx, sid, total);
        }
        if let Some(sid) = self.fifo(Band::Packed, q).open {
            if let Some(l) = self.append(ctx, sid as usize, total) {
                return Some(l);
            }
        }
        let sid = match self.empty.pop() {
            Some(s) => s as usize,
            None => {
                if !ctx.budget_reserve(SEG_BYTES) {
                    return None;
                }
                match self.make_seg(ctx, SEG_BYTES) {
                    Some(s) => s,
                    None => {
                        ctx.budget_release(SEG_BYTES);
                        return None;
                    }
                }
            }
        };
        self.open(q, sid);
        self.append(ctx, sid, total)
    }
}
