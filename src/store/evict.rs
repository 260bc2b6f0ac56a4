//! Eviction: S3-FIFO priced by size over a shard's segment queues (see the shard
//! module doc's diagram and `crate::policy`), compaction of sparse segments, and
//! memory given to other shards.

use super::ctx::Ctx;
use super::index::{sub_of, table_hash};
use super::item::{Hdr, FREQ, FREQ_ONE, LIVE, MARKED};
use super::segment::{loc, BandQueues, Loc, Place, SEG_BYTES};
use super::shard::{Evicted, Shard, Why};
use crate::policy::{self, Band, Queue};

impl Shard {
    /// Takes the oldest segment of the queue S3-FIFO evicts from and walks its items
    /// (see the module doc). With `compact`, nothing is evicted: every live item is
    /// copied to the open segment of its own queue (counter unchanged), which frees the
    /// space of the dead ones.
    pub(super) fn evict_one(&mut self, ctx: &Ctx, compact: bool) -> Evicted {
        let band = self.evict_band();
        let bq = &self.bands[band.index()];
        let [small, main] = &bq.q;
        let total = small.bytes + main.bytes;
        let from_small = !small.closed.is_empty()
            && (main.closed.is_empty() || small.bytes * 1024 > total * bq.small_share as usize);
        let q = if from_small {
            Queue::Small
        } else if !main.closed.is_empty() {
            Queue::Main
        } else {
            // Only open segments: close the fuller one so the next step can take it.
            let pick = [(Queue::Small, small.open), (Queue::Main, main.open)]
                .into_iter()
                .filter_map(|(q, o)| o.map(|o| (q, o as usize)))
                .max_by_key(|&(_, o)| self.seg(o).used);
            let Some((q, o)) = pick else {
                return Evicted::Nothing;
            };
            if self.seg(o).used == 0 {
                return Evicted::Nothing;
            }
            self.fifo(band, q).open = None;
            self.enqueue(q, o, false);
            return Evicted::Progress;
        };
        let Some((sid, gen)) = self.fifo(band, q).closed.pop_front() else {
            return Evicted::Progress;
        };
        let sid = sid as usize;
        match self.segs.get(sid) {
            Some(Some(s)) if s.gen == gen && s.place == Place::Closed(q) => {}
            // A stale entry: the segment was emptied and reused meanwhile.
            _ => return Evicted::Progress,
        }
        let bytes = self.seg(sid).data.len();
        self.fifo(band, q).bytes -= bytes;
        self.seg_mut(sid).place = Place::Evicting;
        if bytes != SEG_BYTES {
            return self.evict_big(ctx, q, sid, compact);
        }
        self.walk(ctx, q, sid, compact);
        let dest = if compact { q } else { Queue::Main };
        self.place_survivors(ctx, q, dest, sid)
    }

    /// The band the next eviction takes from: the one holding more than its share
    /// ([`BandShare`]), or the one that has anything to give; when no key has come back
    /// for a while, the one whose oldest segment is the older ([`BandShare::pick`]).
    pub(super) fn evict_band(&mut self) -> Band {
        let [packed, large] = &self.bands;
        let packed_has = packed.closed() > 0
            || packed
                .q
                .iter()
                .filter_map(|f| f.open)
                .any(|o| self.seg(o as usize).used > 0);
        if large.closed() == 0 {
            return Band::Packed;
        }
        if !packed_has {
            return Band::Large;
        }
        let (lb, total) = (large.bytes(), large.bytes() + packed.bytes());
        let older = match (
            self.oldest_birth(Band::Packed),
            self.oldest_birth(Band::Large),
        ) {
            (Some(p), Some(l)) if self.births.wrapping_sub(l) > self.births.wrapping_sub(p) => {
                Band::Large
            }
            _ => Band::Packed,
        };
        self.large_share.pick(lb, total, older)
    }

    /// When the oldest closed segment of `band` was born (stale queue entries at the
    /// front are passed over).
    pub(super) fn oldest_birth(&self, band: Band) -> Option<u32> {
        let now = self.births;
        self.bands[band.index()]
            .q
            .iter()
            .filter_map(|f| {
                f.closed
                    .iter()
                    .take(4)
                    .find_map(|&(sid, gen)| match self.segs.get(sid as usize) {
                        Some(Some(s)) if s.gen == gen => Some(s.born),
                        _ => None,
                    })
            })
            .max_by_key(|&b| now.wrapping_sub(b))
    }

    /// Closed segments in all queues.
    pub(super) fn closed_segments(&self) -> usize {
        self.bands.iter().map(BandQueues::closed).sum()
    }

    /// What becomes of a valid item of `total` bytes in `band` at the tail of queue `q`
    /// with counter bits `freq`: `Some(counter bits)` it stays (in main), `None` it is
    /// evicted. An item the policy charges ([`policy::charged`]) pays one read from its
    /// counter or leaves: from small, promoted with its counter cleared; from main,
    /// reinserted with the read taken off. One not charged goes round again with its
    /// counter as it is.
    pub(super) fn verdict(&mut self, band: Band, q: Queue, freq: u8, total: usize) -> Option<u8> {
        if !self.lifetimes[band.index()].charged(total, &mut self.coin) {
            return Some(freq);
        }
        let need = FREQ_ONE * policy::READS_PER_CHARGE;
        if freq < need {
            return None;
        }
        Some(match q {
            Queue::Small => 0,
            Queue::Main => freq - need,
        })
    }

    /// Evicts the valid item at `l` (key hash `h`, `total` bytes) from queue `q` of
    /// `band`: its key goes to the ghost.
    pub(super) fn evict(&mut self, ctx: &Ctx, h: u64, l: Loc, band: Band, q: Queue, total: usize) {
        let items = self.len();
        self.ghost.insert(h, items, band, q, total);
        self.remove(ctx, h, l, Why::Evict);
    }

    /// Walks the items of segment `sid` (taken from queue `q`): removes the expired,
    /// evicts the cold (unless `compact`), copies the survivors out to `moved`.
    pub(super) fn walk(&mut self, ctx: &Ctx, q: Queue, sid: usize, compact: bool) {
        self.moved.clear();
        self.moving.clear();
        let used = self.seg(sid).used;
        let mut off = 0;
        while off < used {
            let (hd, h) = {
                let c = &self.seg(sid).data[off..used];
                let hd = Hdr::read(c, ctx.cas_on);
                let h = if c[0] & LIVE != 0 {
                    ctx.hash(&c[hd.key_at..hd.key_at + hd.klen])
                } else {
                    0
                };
                (hd, h)
            };
            let total = hd.total();
            let start = off;
            let l = loc(sid, start);
            off += total.max(1);
            if hd.bits & LIVE == 0 {
                continue;
            }
            if ctx.invalid(&hd).is_some() {
                self.remove(ctx, h, l, Why::Reclaim);
                continue;
            }
            if !ctx.evict {
                // With -M only expired items go; the rest stay where they are.
                self.moving.push((usize::MAX, total, h, l));
                continue;
            }
            let freq = hd.bits & FREQ;
            let nf = if compact {
                Some(freq)
            } else {
                self.verdict(Band::Packed, q, freq, total)
            };
            let Some(nf) = nf else {
                self.evict(ctx, h, l, Band::Packed, q, total);
                continue;
            };
            let at = self.moved.len();
            if let Some(Some(sg)) = self.segs.get(sid) {
                self.moved.extend_from_slice(&sg.data[start..start + total]);
            }
            self.moved[at] = (self.moved[at] & !FREQ) | nf;
            self.moving.push((at, total, h, l));
        }
    }

    /// Puts the survivors of the walked segment `sid` (from queue `q`) into the open
    /// segment of queue `dest`, then, when that fills, into `sid` itself (which becomes
    /// `dest`'s open segment). Returns `Empty(sid)` when none had to go there.
    pub(super) fn place_survivors(
        &mut self,
        ctx: &Ctx,
        q: Queue,
        dest: Queue,
        sid: usize,
    ) -> Evicted {
        if !ctx.evict {
            // Nothing moves: a segment with items left goes back where it was.
            if self.seg(sid).live == 0 {
                let s = self.seg_mut(sid);
                s.used = 0;
                s.live_bytes = 0;
                s.sparse = false;
                s.gen = s.gen.wrapping_add(1);
                return Evicted::Empty(sid);
            }
            self.enqueue(q, sid, true);
            return Evicted::Progress;
        }
        let moving = std::mem::take(&mut self.moving);
        let moved = std::mem::take(&mut self.moved);
        // Every survivor still counts as live in `sid`: release them from it first.
        let s = self.seg_mut(sid);
        s.live -= moving.len() as u32;
        s.used = 0;
        s.live_bytes = 0;
        s.sparse = false;
        s.gen = s.gen.wrapping_add(1);
        let mut reused = false;
        for &(at, total, h, old) in &moving {
            let dst = self
                .fifo(Band::Packed, dest)
                .open
                .and_then(|o| self.append(ctx, o as usize, total))
                .or_else(|| {
                    // The open segment is full: `sid` (empty now) takes over.
                    if !reused {
                        reused = true;
                        self.open(dest, sid);
                    }
                    self.append(ctx, sid, total)
                });
            let Some(new) = dst else {
                // Cannot happen: the survivors fit the segment they came from.
                continue;
            };
            self.item_at_mut(new)[..total].copy_from_slice(&moved[at..at + total]);
            if moved[at] & MARKED != 0 {
                if let Some(m) = self.marks.remove(&old) {
                    self.marks.insert(new, m);
                }
            }
            if let Some(slot) = self.tables[sub_of(h)].find_mut(table_hash(h), |&s| s == old) {
                *slot = new;
            }
        }
        self.moving = moving;
        self.moved = moved;
        if reused {
            Evicted::Progress
        } else {
            let s = self.seg_mut(sid);
            s.live = 0;
            s.used = 0;
            s.live_bytes = 0;
            s.sparse = false;
            Evicted::Empty(sid)
        }
    }

    /// Evicts or keeps the one item of a segment of its own (no copy: a survivor's
    /// segment just moves to the back of main).
    pub(super) fn evict_big(&mut self, ctx: &Ctx, q: Queue, sid: usize, compact: bool) -> Evicted {
        let (hd, h, alive) = {
            let c = &self.seg(sid).data[..self.seg(sid).used];
            let hd = Hdr::read(c, ctx.cas_on);
            let alive = c[0] & LIVE != 0;
            let h = if alive {
                ctx.hash(&c[hd.key_at..hd.key_at + hd.klen])
            } else {
                0
            };
            (hd, h, alive)
        };
        let l = loc(sid, 0);
        if alive {
            let freq = hd.bits & FREQ;
            let total = hd.total();
            let stays = if ctx.invalid(&hd).is_some() {
                self.remove(ctx, h, l, Why::Reclaim);
                None
            } else if compact || !ctx.evict {
                Some((freq, q))
            } else {
                match self.verdict(Band::Large, q, freq, total) {
                    Some(nf) => Some((nf, Queue::Main)),
                    None => {
                        self.evict(ctx, h, l, Band::Large, q, total);
                        None
                    }
                }
            };
            if let Some((nf, dest)) = stays {
                let s = self.seg_mut(sid);
                s.data[0] = (s.data[0] & !FREQ) | nf;
                self.enqueue(dest, sid, true);
                return Evicted::Progress;
            }
        }
        let s = self.seg_mut(sid);
        s.live = 0;
        s.used = 0;
        s.live_bytes = 0;
        s.sparse = false;
        s.gen = s.gen.wrapping_add(1);
        if self.pinned(sid) {
            // A reply still streams its bytes: not reused until the lease ends.
            self.orphans.push(sid as u32);
            return Evicted::Progress;
        }
        Evicted::Empty(sid)
    }

    /// Frees memory for another shard or a lower limit: evicts until `bytes` were freed
    /// or a bound is hit. Returns the bytes freed, still counted in the budget: the
    /// caller passes them on or gives them back.
    pub fn release_memory(&mut self, ctx: &Ctx, bytes: usize) -> usize {
        let mut freed = 0;
        while freed < bytes {
            let Some(sid) = self.empty.pop() else { break };
            freed += self.drop_seg(ctx, sid as usize);
        }
        let max_steps = 5 * (self.closed_segments() + 2) + 16;
        let mut steps = 0;
        while freed < bytes && steps < max_steps {
            steps += 1;
            match self.evict_one(ctx, false) {
                Evicted::Empty(sid) => freed += self.drop_seg(ctx, sid),
                Evicted::Progress => {}
                Evicted::Nothing => break,
            }
        }
        freed
    }
}
