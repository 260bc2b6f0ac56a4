//! The walks of a shard's items that serve introspection and expiry: the expiry
//! crawler, `stats cachedump`, `lru_crawler metadump` ([`DumpPlace`]), the per-class
//! figures, and what an eviction watcher is told.

use super::classes::ClassStats;
use super::ctx::Ctx;
use super::item::{Hdr, FETCHED, LIVE};
use super::segment::{loc, Loc, Place, SEG_BYTES};
use super::shard::{Shard, Why};
use super::view::ItemMeta;

/// Oldest segments of each queue `stats items` looks at for a class's `age`.
const AGE_SEGMENTS: usize = 8;

impl Shard {
    /// Background expiry: examines up to `budget` items, frees expired and flushed ones.
    pub fn crawl(&mut self, ctx: &Ctx, budget: usize) -> usize {
        let mut freed = 0;
        let mut n = 0;
        while n < budget {
            if self.crawl_seg >= self.segs.len() {
                self.crawl_seg = 0;
                self.crawl_off = 0;
                // One full pass done.
                break;
            }
            let sid = self.crawl_seg;
            let used = match self.segs.get(sid) {
                Some(Some(s)) if !matches!(s.place, Place::Evicting) => {
                    if s.gen != self.crawl_gen {
                        // Rewound or reused since the offset was taken: from its start.
                        self.crawl_gen = s.gen;
                        self.crawl_off = 0;
                    }
                    s.used
                }
                _ => 0,
            };
            if self.crawl_off >= used {
                self.crawl_seg += 1;
                self.crawl_off = 0;
                continue;
            }
            n += 1;
            let l = loc(sid, self.crawl_off);
            let (hd, live) = {
                let c = self.item_at(l);
                (Hdr::read(c, ctx.cas_on), c[0] & LIVE != 0)
            };
            self.crawl_off += hd.total().max(1);
            if live {
                let class = Self::class_of(ctx, hd.total());
                if let Some(c) = self.classes.get_mut(class) {
                    c.crawler_items_checked += 1;
                }
            }
            if live && ctx.invalid(&hd).is_some() {
                let c = self.item_at(l);
                let h = ctx.hash(&c[hd.key_at..hd.key_at + hd.klen]);
                // The segment may be emptied and reused: finish it next call.
                let last = self.seg(sid).live == 1;
                self.remove(ctx, h, l, Why::Crawl);
                freed += 1;
                if last {
                    self.crawl_seg += 1;
                    self.crawl_off = 0;
                }
            }
        }
        // Give memory back when over a lowered limit.
        if ctx.over_limit() {
            let n = self.release_memory(ctx, SEG_BYTES);
            ctx.budget_release(n);
        }
        freed
    }

    /// Calls `f(key, value_len, exptime)` for live, valid items of one size class until
    /// it returns false (`stats cachedump`).
    pub fn dump_class(
        &self,
        ctx: &Ctx,
        class: usize,
        f: &mut dyn FnMut(&[u8], usize, u32) -> bool,
    ) -> bool {
        for s in self.segs.iter().flatten() {
            if s.place == Place::Evicting {
                continue;
            }
            let mut off = 0;
            while off < s.used {
                let c = &s.data[off..s.used];
                let hd = Hdr::read(c, ctx.cas_on);
                off += hd.total().max(1);
                if c[0] & LIVE == 0
                    || ctx.invalid(&hd).is_some()
                    || Self::class_of(ctx, hd.total()) != class
                {
                    continue;
                }
                if !f(&c[hd.key_at..hd.key_at + hd.klen], hd.vlen, hd.exptime) {
                    return false;
                }
            }
        }
        true
    }

    /// Zeroes the event counters (`stats reset`); figures describing what is stored
    /// now (items, bytes, segments) stay.
    pub fn reset_stats(&mut self) {
        self.total_items = 0;
        self.lookups = 0;
        for st in &mut self.classes {
            st.evicted = 0;
            st.evicted_nonzero = 0;
            st.evicted_unfetched = 0;
            st.evicted_time = 0;
            st.expired_unfetched = 0;
            st.reclaimed = 0;
            st.outofmemory = 0;
            st.crawler_reclaimed = 0;
            st.crawler_items_checked = 0;
            st.ops = Default::default();
        }
    }

    /// Adds this shard's per-class figures to `out`: a class's "chunks" are its items
    /// (there are no chunks of a fixed size; the store turns the bytes its items take
    /// into 1 MiB "pages"). With `with_age`, `age` is the earliest access time (+1) of the class's
    /// valid items in the oldest segments of both queues, the next to be walked for
    /// eviction (a bounded look: [`AGE_SEGMENTS`] per queue), as memcached's `age` is
    /// that of its LRU tail.
    pub fn class_stats(&self, ctx: &Ctx, out: &mut [ClassStats], with_age: bool) {
        for (i, c) in self.classes.iter().enumerate() {
            if let Some(o) = out.get_mut(i) {
                o.add(c);
                o.total_chunks += c.number;
                o.used_chunks += c.number;
            }
        }
        if !with_age {
            return;
        }
        let fifos = || self.bands.iter().flat_map(|b| b.q.iter());
        let tails = fifos()
            .flat_map(|f| f.closed.iter().take(AGE_SEGMENTS))
            .filter_map(|&(sid, gen)| match self.segs.get(sid as usize) {
                Some(Some(s)) if s.gen == gen && matches!(s.place, Place::Closed(_)) => Some(s),
                _ => None,
            })
            .chain(
                fifos()
                    .filter_map(|f| f.open)
                    .filter_map(|o| self.segs.get(o as usize).and_then(Option::as_ref)),
            );
        for s in tails {
            let mut off = 0;
            while off < s.used {
                let c = &s.data[off..s.used];
                let hd = Hdr::read(c, ctx.cas_on);
                off += hd.total().max(1);
                if c[0] & LIVE == 0 || ctx.invalid(&hd).is_some() {
                    continue;
                }
                if let Some(o) = out.get_mut(Self::class_of(ctx, hd.total())) {
                    let t = u64::from(hd.time) + 1;
                    if o.age == 0 || t < o.age {
                        o.age = t;
                    }
                }
            }
        }
    }
}

/// Where a metadump walk is in one shard: segment, offset of the next item, and the
/// segment's generation then (a segment rewound or reused since starts over, so an
/// old offset is never read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpPlace {
    pub(super) seg: usize,
    pub(super) off: usize,
    pub(super) gen: u32,
}

impl Shard {
    /// What a watcher of evictions is told about the item at `l`, which is being
    /// evicted (only when a sink is installed: one atomic load otherwise).
    pub(super) fn note_eviction(&self, ctx: &Ctx, l: Loc, hd: &Hdr) {
        if let Some(sink) = ctx.eviction_sink() {
            let c = self.item_at(l);
            sink(&Self::meta_of(ctx, c, hd));
        }
    }

    pub(super) fn meta_of<'c>(ctx: &Ctx, c: &'c [u8], hd: &Hdr) -> ItemMeta<'c> {
        ItemMeta {
            key: &c[hd.key_at..hd.key_at + hd.klen],
            flags: hd.flags,
            value_len: hd.vlen,
            exptime: hd.exptime,
            time: hd.time,
            cas: hd.cas,
            fetched: hd.bits & FETCHED != 0,
            class: Self::class_of(ctx, hd.total()) + 1,
        }
    }

    /// One batch of a metadump: from `at`, calls `f` for the live, valid items,
    /// examining at most `max` extents, and returns where to go on (`None`: this
    /// shard is done). The caller holds the shard lock for one batch only.
    pub fn dump_walk(
        &self,
        ctx: &Ctx,
        at: DumpPlace,
        max: usize,
        f: &mut dyn FnMut(&ItemMeta<'_>),
    ) -> Option<DumpPlace> {
        let mut p = at;
        let mut n = 0;
        loop {
            if n >= max {
                return Some(p);
            }
            let s = match self.segs.get(p.seg) {
                None => return None,
                Some(Some(s)) if s.place != Place::Evicting => s,
                Some(_) => {
                    p.seg += 1;
                    p.off = 0;
                    continue;
                }
            };
            if s.gen != p.gen {
                // Rewound or reused since the offset was taken (or a new segment):
                // from its start.
                p.gen = s.gen;
                p.off = 0;
            }
            if p.off >= s.used {
                p.seg += 1;
                p.off = 0;
                continue;
            }
            n += 1;
            let c = &s.data[p.off..s.used];
            let hd = Hdr::read(c, ctx.cas_on);
            p.off += hd.total().max(1);
            if c[0] & LIVE == 0 || ctx.invalid(&hd).is_some() {
                continue;
            }
            f(&Self::meta_of(ctx, c, &hd));
        }
    }

    /// Whether the expiry crawler is at the start of its pass (a call of
    /// [`Shard::crawl`] that leaves it there finished a pass).
    pub fn crawl_at_start(&self) -> bool {
        self.crawl_seg == 0 && self.crawl_off == 0
    }
}
