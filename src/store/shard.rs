//! One shard: hash index, slabs cut into chunks, the CLOCK hand and the expiry crawler.
//!
//! Memory policy (see the module doc of `store` for the overview):
//! - A shard owns slabs. A slab is `SLAB_BYTES` (16 KiB) cut into equal chunks of one
//!   class, or, for chunks larger than that, exactly one chunk. Slab bytes are reserved
//!   from the store-wide byte budget before they are allocated and given back when the
//!   slab is dropped, so the sum of all slabs never exceeds the limit.
//! - All slabs of a shard sit on one ring; one CLOCK hand sweeps it when memory is short.
//!   It reclaims expired and flushed items, decrements non-zero access counters, and
//!   evicts items whose counter is 0. When the hand reaches the end of a slab whose
//!   class is not the one that needs memory, the slab's survivors move to free chunks of
//!   their class elsewhere and the slab goes back to the budget (if some find no room,
//!   the slab stays). So memory flows to the classes and shards that allocate, in the
//!   order it was last swept: no class or shard keeps memory it does not use (no slab
//!   calcification).
//! - Bytes the hand frees while an allocation is short are kept by that allocation (they
//!   stay counted in the budget) until they add up to the slab it needs, so concurrent
//!   allocations in other shards cannot take them one slab at a time.
//! - A shard that cannot free memory itself (it owns too little) takes bytes from other
//!   shards, first with `try_lock` only (never blocking while holding its own lock); the
//!   bytes pass to it directly, not through the budget. When that is not enough, the
//!   allocation fails with [`Mem::retrying`] set: the store releases this shard's lock,
//!   takes the memory from the other shards locking one at a time, and runs the
//!   operation again with it (see `Store::with_retry`).

use hashbrown::HashTable;

use super::item::{self, Hdr, FETCHED, FREQ, FREQ_ONE, LIVE, MARKED};
use super::{ClassStats, Ctx, Miss};
use std::cell::Cell;
use std::collections::HashMap;

/// Slab size for small chunks.
pub const SLAB_BYTES: usize = 16 * 1024;
const CHUNK_BITS: u32 = 12;
const CHUNK_MASK: u32 = (1 << CHUNK_BITS) - 1;
const MAX_SLABS: usize = 1 << (32 - CHUNK_BITS);
const NONE: u32 = u32::MAX;
const VACANT: u32 = u32::MAX;
/// Laps of the hand after which every item has been evicted (access counter 0..=3).
const LAPS: usize = 5;
/// Want-class meaning "give slabs back, whatever their class".
pub const RELEASE: usize = usize::MAX;

/// What an allocation may draw on besides its own shard, and what a failed one leaves
/// for its caller.
pub struct Mem<'a> {
    /// Bytes reserved in the budget for this operation and not in any slab (taken from
    /// other shards before a retry); an allocation uses them first.
    credit: Cell<usize>,
    /// Takes up to the given bytes from other shards without blocking (`try_lock`);
    /// returns what it took, still counted in the budget and now the caller's.
    steal: &'a dyn Fn(usize) -> usize,
    /// No retry follows: a failed allocation is final (`OutOfMemory`).
    last: Cell<bool>,
    /// Slab bytes a failed, non-final allocation needs (0: none failed so).
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

    /// (Slab bytes a failed allocation needs, reserved bytes it left unused.)
    pub fn take(&self) -> (usize, usize) {
        (self.short.replace(0), self.credit.replace(0))
    }
}

/// An item's location: slab id (high 20 bits) and chunk index (low 12 bits).
pub type Loc = u32;

#[inline]
fn loc(sid: usize, idx: u32) -> Loc {
    ((sid as u32) << CHUNK_BITS) | idx
}

#[inline]
pub(crate) fn split_loc(l: Loc) -> (usize, u32) {
    split(l)
}

fn split(l: Loc) -> (usize, u32) {
    ((l >> CHUNK_BITS) as usize, l & CHUNK_MASK)
}

/// Number of hash tables in a shard's index.
const SUBTABLES: usize = 4;
/// Upper bounds (of 24 hash bits) of the sub-tables' shares of the keys: shares grow by
/// 2^(1/4) from one table to the next (0.189, 0.225, 0.268, 0.318), so the tables double
/// at different item counts and the index is never all at half load right after a
/// doubling (the index costs 7.3-9.2 bytes per item at any count instead of 5.7-11.4).
const SUB_BOUNDS: [u32; SUBTABLES - 1] = [3_174_369, 6_949_350, 11_438_586];

/// Which sub-table holds a key: bits 32..56 of its hash (the shard uses the top bits,
/// the table the low 32).
#[inline]
fn sub_of(h: u64) -> usize {
    let u = ((h >> 32) as u32) & 0x00FF_FFFF;
    usize::from(u >= SUB_BOUNDS[0])
        + usize::from(u >= SUB_BOUNDS[1])
        + usize::from(u >= SUB_BOUNDS[2])
}

/// The hash a table files a key under (from the low 32 bits of the key hash).
#[inline]
fn table_hash(h: u64) -> u64 {
    let t = h as u32 as u64;
    (t | (t << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// True when the item at `l` has this key.
#[inline]
fn key_is(slabs: &[Option<Slab>], l: Loc, key: &[u8], cas_on: bool) -> bool {
    let (sid, idx) = split(l);
    match slabs.get(sid) {
        Some(Some(sl)) => {
            let c = sl.chunk(idx);
            let at = item::key_at(c, cas_on);
            c[1] as usize == key.len() && c.get(at..at + key.len()) == Some(key)
        }
        _ => false,
    }
}

/// The table hash of the item at `l`, for rehashing (reads the key in item memory).
#[inline]
fn rehash(slabs: &[Option<Slab>], ctx: &Ctx, l: Loc) -> u64 {
    let (sid, idx) = split(l);
    match slabs.get(sid) {
        Some(Some(sl)) => {
            let c = sl.chunk(idx);
            let at = item::key_at(c, ctx.cas_on);
            let klen = c[1] as usize;
            table_hash(ctx.hash(c.get(at..at + klen).unwrap_or_default()))
        }
        _ => 0,
    }
}

/// Buckets of a hashbrown table of this capacity (its control bytes and slots).
fn buckets(cap: usize) -> usize {
    match cap {
        0 => 0,
        1..=7 => cap + 1,
        _ => (cap * 8 / 7).next_power_of_two(),
    }
}

struct Slab {
    mem: Box<[u8]>,
    class: usize,
    chunk: usize,
    nchunks: u32,
    carved: u32,
    live: u32,
    free_head: u32,
    in_partial: bool,
    /// Being emptied by [`Shard::evacuate`]: freed chunks are not offered for reuse.
    draining: bool,
    ring_pos: usize,
}

impl Slab {
    #[inline]
    fn chunk(&self, idx: u32) -> &[u8] {
        let a = idx as usize * self.chunk;
        &self.mem[a..a + self.chunk]
    }
    #[inline]
    fn chunk_mut(&mut self, idx: u32) -> &mut [u8] {
        let a = idx as usize * self.chunk;
        &mut self.mem[a..a + self.chunk]
    }
}

#[derive(Default)]
struct Class {
    /// Slabs of this class with at least one free chunk.
    partial: Vec<u32>,
    stats: ClassStats,
}

/// Why an item is being removed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Evict,
    Reclaim,
    Crawl,
    Quiet,
}

/// One shard of the store.
pub struct Shard {
    /// This shard's number (its entry in `Ctx::owned`).
    id: usize,
    /// The index: item locations (4 bytes each), keys compared in item memory.
    tables: [HashTable<Loc>; SUBTABLES],
    slabs: Vec<Option<Slab>>,
    free_ids: Vec<u32>,
    ring: Vec<u32>,
    vacant: Vec<usize>,
    hand: usize,
    hand_chunk: u32,
    crawl: usize,
    crawl_chunk: u32,
    classes: Vec<Class>,
    chunks_total: usize,
    /// Meta marks of the items whose `MARKED` bit is set (location -> marks); every
    /// path that frees or moves a chunk keeps it in step.
    marks: HashMap<Loc, u8>,
    /// Items ever linked.
    pub total_items: u64,
    /// Bytes of linked items.
    pub bytes: u64,
    /// Bytes of slabs owned.
    pub slab_bytes: u64,
    /// Slabs owned.
    pub nslabs: u64,
}

/// Validity of an item found in the index.
pub enum Found {
    /// Valid, at this location.
    Live(Loc),
    /// Not there (or removed now because expired/flushed).
    Miss(Miss),
}

impl Shard {
    /// An empty shard number `id` for `nclasses` slab classes.
    pub fn new(nclasses: usize, id: usize) -> Shard {
        Shard {
            id,
            tables: std::array::from_fn(|_| HashTable::new()),
            slabs: Vec::new(),
            free_ids: Vec::new(),
            ring: Vec::new(),
            vacant: Vec::new(),
            hand: 0,
            hand_chunk: 0,
            crawl: 0,
            crawl_chunk: 0,
            classes: (0..nclasses).map(|_| Class::default()).collect(),
            chunks_total: 0,
            marks: HashMap::new(),
            total_items: 0,
            bytes: 0,
            slab_bytes: 0,
            nslabs: 0,
        }
    }

    /// Items in the index.
    pub fn len(&self) -> usize {
        self.tables.iter().map(HashTable::len).sum()
    }

    /// Bytes held by the index itself (approximate: buckets × (slot + control byte)).
    pub fn index_bytes(&self) -> usize {
        self.tables
            .iter()
            .map(|t| buckets(t.capacity()) * (std::mem::size_of::<Loc>() + 1))
            .sum()
    }

    fn slab(&self, sid: usize) -> &Slab {
        match self.slabs.get(sid) {
            Some(Some(s)) => s,
            _ => unreachable_slab(),
        }
    }

    fn slab_mut(&mut self, sid: usize) -> &mut Slab {
        match self.slabs.get_mut(sid) {
            Some(Some(s)) => s,
            _ => unreachable_slab(),
        }
    }

    /// The size class of slab `sid`.
    pub fn slab_class(&self, sid: usize) -> usize {
        self.slab(sid).class
    }

    /// The bytes of the chunk at `l`.
    #[inline]
    pub fn chunk(&self, l: Loc) -> &[u8] {
        let (sid, idx) = split(l);
        self.slab(sid).chunk(idx)
    }

    /// The bytes of the chunk at `l`, mutable.
    #[inline]
    pub fn chunk_mut(&mut self, l: Loc) -> &mut [u8] {
        let (sid, idx) = split(l);
        self.slab_mut(sid).chunk_mut(idx)
    }

    /// Finds a key without checking validity.
    pub fn find_raw(&self, ctx: &Ctx, h: u64, key: &[u8]) -> Option<Loc> {
        let slabs = &self.slabs;
        let cas_on = ctx.cas_on;
        self.tables[sub_of(h)]
            .find(table_hash(h), |&l| key_is(slabs, l, key, cas_on))
            .copied()
    }

    /// Finds a valid item; expired or flushed ones are removed and reported.
    pub fn find(&mut self, ctx: &Ctx, h: u64, key: &[u8]) -> Found {
        let Some(l) = self.find_raw(ctx, h, key) else {
            return Found::Miss(Miss::Absent);
        };
        let hd = Hdr::read(self.chunk(l), ctx.cas_on);
        match ctx.invalid(&hd) {
            None => Found::Live(l),
            Some(m) => {
                self.remove(ctx, h, l, Why::Quiet);
                Found::Miss(m)
            }
        }
    }

    /// Marks an item as read now.
    pub fn bump(&mut self, l: Loc, now: u32) {
        let c = self.chunk_mut(l);
        let b = c[0];
        c[0] = if b & FREQ == FREQ { b } else { b + FREQ_ONE } | FETCHED;
        if item::rd32(c, item::OFF_TIME) != now {
            item::wr32(c, item::OFF_TIME, now);
        }
    }

    /// Sets the expiry of the item at `l` in place. An item stored without an expiry
    /// field grows by 4 bytes when its chunk has room; false when it has not (the caller
    /// moves the item to a larger chunk).
    pub fn set_exptime(&mut self, ctx: &Ctx, l: Loc, exp: u32) -> bool {
        let (sid, idx) = split(l);
        let slab = self.slab_mut(sid);
        let class = slab.class;
        let c = slab.chunk_mut(idx);
        let at = item::exp_at(c);
        if c[0] & item::HAS_EXP != 0 {
            item::wr32(c, at, exp);
            return true;
        }
        if exp == 0 {
            return true;
        }
        let total = Hdr::read(c, ctx.cas_on).total();
        if c.len() < total + 4 {
            return false;
        }
        c.copy_within(at..total, at + 4);
        c[0] |= item::HAS_EXP;
        item::wr32(c, at, exp);
        self.bytes += 4;
        self.classes[class].stats.requested += 4;
        true
    }

    /// Removes an item from the index and frees its chunk.
    fn remove(&mut self, ctx: &Ctx, h: u64, l: Loc, why: Why) {
        if let Ok(e) = self.tables[sub_of(h)].find_entry(table_hash(h), |&s| s == l) {
            e.remove();
        }
        let hd = Hdr::read(self.chunk(l), ctx.cas_on);
        let (sid, _) = split(l);
        let class = self.slab(sid).class;
        let now = ctx.clock.now();
        let st = &mut self.classes[class].stats;
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
        self.free_chunk(l);
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
        if self.chunk(l)[0] & MARKED == 0 {
            return 0;
        }
        self.marks.get(&l).copied().unwrap_or(0)
    }

    /// Sets the meta marks of the item at `l` (0 removes them).
    pub fn set_marks(&mut self, l: Loc, m: u8) {
        if m == 0 {
            self.marks.remove(&l);
            self.chunk_mut(l)[0] &= !MARKED;
        } else {
            self.marks.insert(l, m);
            self.chunk_mut(l)[0] |= MARKED;
        }
    }

    /// Moves the meta marks of an item copied from `from` to `to`.
    pub fn move_marks(&mut self, from: Loc, to: Loc) {
        let m = self.marks(from);
        self.marks.remove(&from);
        self.set_marks(to, m);
    }

    /// Frees a chunk that is not (or no longer) in the index.
    pub fn free_chunk(&mut self, l: Loc) {
        if self.chunk(l)[0] & MARKED != 0 {
            self.marks.remove(&l);
        }
        let (sid, idx) = split(l);
        let slab = self.slab_mut(sid);
        let head = slab.free_head;
        let c = slab.chunk_mut(idx);
        c[0] = 0;
        item::wr32(c, 2, head);
        slab.free_head = idx;
        slab.live -= 1;
        let class = slab.class;
        if !slab.in_partial && !slab.draining {
            slab.in_partial = true;
            self.classes[class].partial.push(sid as u32);
        }
    }

    /// Links a freshly written chunk: replaces `old` in the index (freeing it) or inserts.
    pub fn link(&mut self, ctx: &Ctx, h: u64, new: Loc, old: Option<Loc>) {
        let hd = Hdr::read(self.chunk(new), ctx.cas_on);
        let (sid, _) = split(new);
        let class = self.slab(sid).class;
        let st = &mut self.classes[class].stats;
        st.number += 1;
        st.requested += hd.total() as u64;
        self.bytes += hd.total() as u64;
        self.total_items += 1;
        let t = sub_of(h);
        if let Some(o) = old {
            if let Some(s) = self.tables[t].find_mut(table_hash(h), |&s| s == o) {
                *s = new;
                let ohd = Hdr::read(self.chunk(o), ctx.cas_on);
                let (osid, _) = split(o);
                let oclass = self.slab(osid).class;
                let st = &mut self.classes[oclass].stats;
                st.number = st.number.saturating_sub(1);
                st.requested = st.requested.saturating_sub(ohd.total() as u64);
                self.bytes = self.bytes.saturating_sub(ohd.total() as u64);
                self.free_chunk(o);
                return;
            }
        }
        let slabs = &self.slabs;
        self.tables[t].insert_unique(table_hash(h), new, |&l| rehash(slabs, ctx, l));
    }

    fn take_free(&mut self, class: usize) -> Option<Loc> {
        while let Some(&sid) = self.classes[class].partial.last() {
            let sid = sid as usize;
            let slab = self.slab_mut(sid);
            let idx = if slab.free_head != NONE {
                let idx = slab.free_head;
                slab.free_head = item::rd32(slab.chunk(idx), 2);
                Some(idx)
            } else if slab.carved < slab.nchunks {
                slab.carved += 1;
                Some(slab.carved - 1)
            } else {
                None
            };
            if let Some(idx) = idx {
                slab.live += 1;
                if slab.live == slab.nchunks {
                    slab.in_partial = false;
                    self.classes[class].partial.pop();
                }
                return Some(loc(sid, idx));
            }
            slab.in_partial = false;
            self.classes[class].partial.pop();
        }
        None
    }

    fn new_slab(&mut self, ctx: &Ctx, class: usize, bytes: usize) -> bool {
        let sid = match self.free_ids.pop() {
            Some(s) => s as usize,
            None if self.slabs.len() < MAX_SLABS => {
                self.slabs.push(None);
                self.slabs.len() - 1
            }
            None => return false,
        };
        let chunk = ctx.class_size(class);
        // The new slab goes where the hand will come last, so new items are swept last
        // (FIFO order for the hand): just behind the hand, in the vacant position there
        // if there is one, else in a new position. (A vacant position further back has
        // slabs between it and the hand, and one ahead of the hand comes before the
        // slabs after it.)
        if self.hand >= self.ring.len() {
            self.hand = 0;
            self.hand_chunk = 0;
        }
        let hand = self.hand;
        let behind = hand.checked_sub(1).or(self.ring.len().checked_sub(1));
        let ring_pos = match behind.filter(|&p| self.ring[p] == VACANT) {
            Some(p) => {
                if let Some(i) = self.vacant.iter().position(|&v| v == p) {
                    self.vacant.swap_remove(i);
                }
                self.ring[p] = sid as u32;
                p
            }
            None if hand == 0 => {
                self.ring.push(sid as u32);
                self.ring.len() - 1
            }
            None => {
                // Every position from the hand on moves up one.
                self.ring.insert(hand, sid as u32);
                for &s in &self.ring[hand + 1..] {
                    if let Some(Some(sl)) = self.slabs.get_mut(s as usize) {
                        sl.ring_pos += 1;
                    }
                }
                for p in self.vacant.iter_mut().filter(|p| **p >= hand) {
                    *p += 1;
                }
                self.hand += 1;
                if self.crawl >= hand {
                    self.crawl += 1;
                }
                hand
            }
        };
        let nchunks = (bytes / chunk).max(1) as u32;
        self.slabs[sid] = Some(Slab {
            mem: vec![0u8; bytes].into_boxed_slice(),
            class,
            chunk,
            nchunks,
            carved: 0,
            live: 0,
            free_head: NONE,
            in_partial: true,
            draining: false,
            ring_pos,
        });
        self.classes[class].partial.push(sid as u32);
        self.classes[class].stats.total_pages += 1;
        self.chunks_total += nchunks as usize;
        self.slab_bytes += bytes as u64;
        self.nslabs += 1;
        ctx.set_owned(self.id, self.slab_bytes);
        true
    }

    /// Drops an empty slab; returns its bytes, still counted in the budget (the caller
    /// passes them on or gives them back).
    fn release_slab(&mut self, ctx: &Ctx, sid: usize) -> usize {
        let Some(slab) = self.slabs.get_mut(sid).and_then(Option::take) else {
            return 0;
        };
        let class = slab.class;
        if slab.in_partial {
            let p = &mut self.classes[class].partial;
            if let Some(i) = p.iter().rposition(|&s| s as usize == sid) {
                p.swap_remove(i);
            }
        }
        self.classes[class].stats.total_pages -= 1;
        self.ring[slab.ring_pos] = VACANT;
        self.vacant.push(slab.ring_pos);
        self.free_ids.push(sid as u32);
        self.chunks_total -= slab.nchunks as usize;
        self.slab_bytes -= slab.mem.len() as u64;
        self.nslabs -= 1;
        ctx.set_owned(self.id, self.slab_bytes);
        if self.vacant.len() > 64 && self.vacant.len() * 2 > self.ring.len() {
            self.compact_ring();
        }
        slab.mem.len()
    }

    fn compact_ring(&mut self) {
        let hand_sid = self.ring.get(self.hand).copied();
        let crawl_sid = self.ring.get(self.crawl).copied();
        self.ring.retain(|&s| s != VACANT);
        self.vacant.clear();
        self.hand = 0;
        self.crawl = 0;
        for (i, &s) in self.ring.iter().enumerate() {
            if let Some(Some(sl)) = self.slabs.get_mut(s as usize) {
                sl.ring_pos = i;
            }
            if Some(s) == hand_sid {
                self.hand = i;
            }
            if Some(s) == crawl_sid {
                self.crawl = i;
            }
        }
        self.hand_chunk = 0;
        self.crawl_chunk = 0;
    }

    /// Gets a chunk of `class`, freeing memory as needed (`mem`: memory from other
    /// shards). The common case, a free chunk of the class in this shard, is all inline.
    #[inline]
    pub fn alloc(&mut self, ctx: &Ctx, class: usize, mem: &Mem<'_>) -> Option<Loc> {
        if let Some(l) = self.take_free(class) {
            return Some(l);
        }
        self.alloc_slow(ctx, class, mem)
    }

    /// A new slab for `class`: from the credit, the budget, this shard's hand, then the
    /// other shards. Bytes freed on the way are held (they stay counted in the budget)
    /// until they make up the slab, so other shards cannot take them meanwhile.
    #[inline(never)]
    fn alloc_slow(&mut self, ctx: &Ctx, class: usize, mem: &Mem<'_>) -> Option<Loc> {
        let bytes = ctx.slab_bytes(class);
        let mut held = mem.credit.replace(0);
        let mut steps = 0usize;
        // Every item is evicted by the fourth lap at the latest (its access counter is 3
        // at most and nothing reads while the shard is locked), and its slab released. A
        // lap is one step per carved chunk plus one per ring position (a slab's end or a
        // vacant position).
        let max_steps = LAPS * (self.chunks_total + self.ring.len()) + 2 * (SLAB_BYTES / 8) + 64;
        // A shard that owns less than half its share of the limit takes from the shard
        // that owns the most before evicting its own items: with the keys spread evenly
        // over the shards, that one holds the oldest items, and the hand of a poor shard
        // would evict what it stored last.
        let poor = ctx.evict && (self.slab_bytes as usize) < ctx.share() / 2;
        let mut stole = false;
        let got = loop {
            if let Some(l) = self.take_free(class) {
                break Some(l);
            }
            if held > 0 {
                // Over a lowered limit: the excess goes back, not into a new slab.
                let x = ctx.over_by().min(held);
                if x > 0 {
                    ctx.budget_release(x);
                    held -= x;
                }
            }
            let extra = bytes.saturating_sub(held);
            if extra == 0 || ctx.budget_reserve(extra) {
                if self.new_slab(ctx, class, bytes) {
                    held -= bytes - extra;
                    continue;
                }
                if extra > 0 {
                    ctx.budget_release(extra);
                }
            }
            let own_empty = self.ring.len() == self.vacant.len();
            let stuck = own_empty || steps > max_steps;
            if !stole && ctx.evict && (stuck || poor) {
                stole = true;
                let n = (mem.steal)(extra.max(1));
                if n > 0 {
                    held += n;
                    continue;
                }
            }
            if stuck || (!ctx.evict && steps > 4096) {
                break None;
            }
            steps += 1;
            held += self.hand_step(ctx, class);
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
            self.classes[class].stats.outofmemory += 1;
        }
        got
    }

    /// Frees memory for another shard or a lower limit: sweeps until `bytes` were freed
    /// or a bound is hit. Returns the bytes freed, still counted in the budget: the
    /// caller passes them on or gives them back.
    pub fn release_memory(&mut self, ctx: &Ctx, bytes: usize) -> usize {
        let mut freed = 0;
        let max_steps = LAPS * (self.chunks_total + self.ring.len()) + 64;
        let mut steps = 0;
        while freed < bytes && steps < max_steps {
            if self.ring.len() == self.vacant.len() {
                break;
            }
            freed += self.hand_step(ctx, RELEASE);
            steps += 1;
        }
        freed
    }

    /// One step of the CLOCK hand: examine one chunk, or finish a slab. Returns the
    /// bytes of a slab it released (still counted in the budget: the caller's).
    fn hand_step(&mut self, ctx: &Ctx, want: usize) -> usize {
        if self.ring.is_empty() {
            return 0;
        }
        if self.hand >= self.ring.len() {
            self.hand = 0;
            self.hand_chunk = 0;
        }
        let sid = self.ring[self.hand];
        if sid == VACANT {
            self.hand += 1;
            self.hand_chunk = 0;
            return 0;
        }
        let sid = sid as usize;
        let (carved, class) = {
            let s = self.slab(sid);
            (s.carved, s.class)
        };
        if self.hand_chunk < carved {
            let idx = self.hand_chunk;
            self.hand_chunk += 1;
            let l = loc(sid, idx);
            let c = self.chunk(l);
            if c[0] & LIVE == 0 {
                return 0;
            }
            let hd = Hdr::read(c, ctx.cas_on);
            if ctx.invalid(&hd).is_some() {
                let h = ctx.hash(&c[hd.key_at..hd.key_at + hd.klen]);
                self.remove(ctx, h, l, Why::Reclaim);
            } else if hd.bits & FREQ != 0 {
                self.chunk_mut(l)[0] -= FREQ_ONE;
            } else if ctx.evict {
                let h = ctx.hash(&c[hd.key_at..hd.key_at + hd.klen]);
                self.remove(ctx, h, l, Why::Evict);
            }
            return 0;
        }
        // End of this slab.
        self.hand_chunk = 0;
        self.hand += 1;
        if want != class {
            if self.slab(sid).live > 0 && ctx.evict {
                self.evacuate(ctx, sid);
            }
            if self.slab(sid).live == 0 {
                return self.release_slab(ctx, sid);
            }
        }
        0
    }

    /// Moves the items of a slab to free chunks of the same class elsewhere. When there
    /// is no room for the next one, the rest stay and so does the slab: the hand has
    /// already evicted its cold items, and evicting items that were just read (the
    /// survivors) to move memory to another class loses more hits than the hand going on.
    fn evacuate(&mut self, ctx: &Ctx, sid: usize) {
        let (carved, class) = {
            let s = self.slab(sid);
            (s.carved, s.class)
        };
        // Take this slab out of the class's free list so its own chunks are not used.
        if self.slab(sid).in_partial {
            let p = &mut self.classes[class].partial;
            if let Some(i) = p.iter().rposition(|&s| s as usize == sid) {
                p.swap_remove(i);
            }
            self.slab_mut(sid).in_partial = false;
        }
        self.slab_mut(sid).draining = true;
        let mut buf = Vec::new();
        for idx in 0..carved {
            let l = loc(sid, idx);
            let (hd, h) = {
                let c = self.chunk(l);
                if c[0] & LIVE == 0 {
                    continue;
                }
                let hd = Hdr::read(c, ctx.cas_on);
                buf.clear();
                buf.extend_from_slice(&c[..hd.total()]);
                (hd, ctx.hash(&c[hd.key_at..hd.key_at + hd.klen]))
            };
            if ctx.invalid(&hd).is_some() {
                self.remove(ctx, h, l, Why::Reclaim);
                continue;
            }
            match self.take_free(class) {
                Some(n) => {
                    self.chunk_mut(n)[..buf.len()].copy_from_slice(&buf);
                    self.move_marks(l, n);
                    if let Some(s) = self.tables[sub_of(h)].find_mut(table_hash(h), |&s| s == l) {
                        *s = n;
                    }
                    // Chunk moved: free the old one without touching the counters.
                    self.free_chunk(l);
                }
                None => break,
            }
        }
        self.slab_mut(sid).draining = false;
        // Chunks freed above are not on the free list: a slab that still holds items
        // (with `evict` off) goes back on it.
        if self.slab(sid).live > 0 && self.slab(sid).live < self.slab(sid).nchunks {
            self.slab_mut(sid).in_partial = true;
            self.classes[class].partial.push(sid as u32);
        }
    }

    /// Background expiry: examines up to `budget` chunks, frees expired and flushed items.
    pub fn crawl(&mut self, ctx: &Ctx, budget: usize) -> usize {
        let mut freed = 0;
        let mut n = 0;
        while n < budget && !self.ring.is_empty() {
            if self.crawl >= self.ring.len() {
                self.crawl = 0;
                self.crawl_chunk = 0;
                // One full pass done.
                break;
            }
            let sid = self.ring[self.crawl];
            if sid == VACANT {
                self.crawl += 1;
                self.crawl_chunk = 0;
                continue;
            }
            let sid = sid as usize;
            let carved = self.slab(sid).carved;
            if self.crawl_chunk >= carved {
                self.crawl += 1;
                self.crawl_chunk = 0;
                continue;
            }
            let l = loc(sid, self.crawl_chunk);
            self.crawl_chunk += 1;
            n += 1;
            let c = self.chunk(l);
            if c[0] & LIVE == 0 {
                continue;
            }
            let hd = Hdr::read(c, ctx.cas_on);
            if ctx.invalid(&hd).is_some() {
                let h = ctx.hash(&c[hd.key_at..hd.key_at + hd.klen]);
                self.remove(ctx, h, l, Why::Crawl);
                freed += 1;
            }
        }
        // Give memory back when over a lowered limit.
        if ctx.over_limit() {
            let n = self.release_memory(ctx, SLAB_BYTES);
            ctx.budget_release(n);
        }
        freed
    }

    /// Calls `f(key, value_len, exptime)` for live, valid items of one class until it
    /// returns false (`stats cachedump`).
    pub fn dump_class(
        &self,
        ctx: &Ctx,
        class: usize,
        f: &mut dyn FnMut(&[u8], usize, u32) -> bool,
    ) -> bool {
        for s in self.slabs.iter().flatten().filter(|s| s.class == class) {
            for idx in 0..s.carved {
                let c = s.chunk(idx);
                if c[0] & LIVE == 0 {
                    continue;
                }
                let hd = Hdr::read(c, ctx.cas_on);
                if ctx.invalid(&hd).is_some() {
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
    /// now (items, bytes, pages) stay.
    pub fn reset_stats(&mut self) {
        self.total_items = 0;
        for c in &mut self.classes {
            let st = &mut c.stats;
            st.evicted = 0;
            st.evicted_nonzero = 0;
            st.evicted_unfetched = 0;
            st.evicted_time = 0;
            st.expired_unfetched = 0;
            st.reclaimed = 0;
            st.outofmemory = 0;
            st.crawler_reclaimed = 0;
        }
    }

    /// Per-class figures: (class, stats, used chunks, free chunks, total chunks).
    pub fn class_stats(&self, out: &mut [ClassStats]) {
        for (i, c) in self.classes.iter().enumerate() {
            if let Some(o) = out.get_mut(i) {
                o.add(&c.stats);
            }
        }
        for s in self.slabs.iter().flatten() {
            if let Some(o) = out.get_mut(s.class) {
                o.total_chunks += s.nchunks as u64;
                o.used_chunks += s.live as u64;
                o.free_chunks += (s.nchunks - s.live) as u64;
            }
        }
    }
}

#[cold]
fn unreachable_slab() -> ! {
    // Every location in the index points to a live slab; reaching here is a store bug.
    panic!("store: item location points to a released slab")
}
