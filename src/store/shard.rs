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
//!   operation again with it (see `Store::with_retry`).

use hashbrown::HashTable;

use super::item::{self, Hdr, FETCHED, FREQ, FREQ_ONE, LIVE, MARKED};
use super::lease::{LeaseTry, PinToken};
use super::{ClassOp, ClassStats, Ctx, ItemMeta, Miss};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

/// Size of a segment.
pub const SEG_BYTES: usize = 32 * 1024;
const OFF_BITS: u32 = 15;
const OFF_MASK: u32 = (1 << OFF_BITS) - 1;
const MAX_SEGS: usize = 1 << (32 - OFF_BITS);
pub use crate::policy::BIG_ITEM;
use crate::policy::{self, Band, BandShare, Coin, Lifetimes, Queue};

/// Oldest segments of each queue `stats items` looks at for a class's `age`.
const AGE_SEGMENTS: usize = 8;

/// A closed segment whose live bytes fall below this share of its used bytes is sparse.
const SPARSE_PERCENT: usize = 60;

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

/// An item's location: segment id (high 17 bits) and byte offset (low 15 bits).
pub type Loc = u32;

#[inline]
fn loc(sid: usize, off: usize) -> Loc {
    ((sid as u32) << OFF_BITS) | off as u32
}

#[inline]
fn split(l: Loc) -> (usize, usize) {
    ((l >> OFF_BITS) as usize, (l & OFF_MASK) as usize)
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

/// The ghost's slot number bits of a key hash.
#[inline]
fn fingerprint(h: u64) -> u32 {
    (h >> 8) as u32
}

/// The bytes from the item at `l` to the end of what its segment holds (the item's
/// header says how many are its own).
#[inline]
fn bytes_at(segs: &[Option<Seg>], l: Loc) -> Option<&[u8]> {
    let (sid, off) = split(l);
    match segs.get(sid) {
        Some(Some(s)) => s.data.get(off..s.used),
        _ => None,
    }
}

/// True when the item at `l` has this key.
#[inline]
fn key_is(segs: &[Option<Seg>], l: Loc, key: &[u8], cas_on: bool) -> bool {
    match bytes_at(segs, l) {
        Some(c) => {
            let at = item::key_at(c, cas_on);
            c[1] as usize == key.len() && c.get(at..at + key.len()) == Some(key)
        }
        None => false,
    }
}

/// The table hash of the item at `l`, for rehashing (reads the key in item memory).
#[inline]
fn rehash(segs: &[Option<Seg>], ctx: &Ctx, l: Loc) -> u64 {
    match bytes_at(segs, l) {
        Some(c) => {
            let at = item::key_at(c, ctx.cas_on);
            let klen = c[1] as usize;
            table_hash(ctx.hash(c.get(at..at + klen).unwrap_or_default()))
        }
        None => 0,
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

/// Where a segment is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    /// The open segment of a queue: items are appended to it.
    Open(Queue),
    /// Closed, in a queue's FIFO.
    Closed(Queue),
    /// Being walked by the eviction.
    Evicting,
}

struct Seg {
    data: Box<[u8]>,
    /// Bytes appended (items live or dead, back to back from offset 0).
    used: usize,
    /// Extents allocated and not freed.
    live: u32,
    /// Their bytes.
    live_bytes: u32,
    /// On the shard's list of sparse segments (mostly dead bytes).
    sparse: bool,
    /// Bumped when the segment is emptied and reused, so queue entries of its earlier
    /// life are recognised as stale.
    gen: u32,
    /// When it was opened (or its item requeued): the shard's segment count then; the
    /// band shares compare the oldest segments of the bands.
    born: u32,
    place: Place,
}

/// Keys recently evicted (S3-FIFO's ghost queue): a direct-mapped table of 8-byte
/// slots, about as many as the shard has items. A slot holds 24 check bits of the key
/// hash (other bits than the ones that pick the slot), the band and queue the key left,
/// and where its band's eviction clock stood (bytes evicted from that band so far, in
/// [`GHOST_UNIT`]s, 38 bits): a key counts as recently evicted while its band has
/// evicted fewer bytes since than the shard holds, and its return moves the band shares
/// when it is within their window ([`BandShare::returned`]).
#[derive(Default)]
struct Ghost {
    slots: Vec<u64>,
    /// Bytes evicted from each band, in [`GHOST_UNIT`]s.
    clock: [u64; 2],
    /// Recent insertions from each queue of each band (halved as they reach the
    /// table's size).
    from: [[u32; 2]; 2],
}

/// The eviction clocks count in units of this many bytes.
const GHOST_UNIT: u64 = 64;
const GHOST_CLOCK_BITS: u32 = 38;
const GHOST_CLOCK_MASK: u64 = (1 << GHOST_CLOCK_BITS) - 1;

/// A key's return from the ghost: where it was evicted from, and how many bytes its
/// band evicted since.
struct Returned {
    band: Band,
    queue: Queue,
    distance: u64,
}

impl Ghost {
    #[inline]
    fn check(h: u64) -> u64 {
        ((h >> 40) & 0xFF_FFFF) | 1
    }

    fn insert(&mut self, h: u64, items: usize, band: Band, from: Queue, total: usize) {
        let want = items.max(1024).next_power_of_two();
        if self.slots.len() < want / 2 || self.slots.len() > want * 2 {
            // Resized with the shard: the old entries go (the ghost is a hint).
            self.slots = vec![0; want];
        }
        let b = band.index();
        self.clock[b] = self.clock[b].wrapping_add((total as u64).div_ceil(GHOST_UNIT));
        let f = &mut self.from[b];
        f[from.index()] += 1;
        if (f[0] + f[1]) as usize > self.slots.len() {
            f[0] /= 2;
            f[1] /= 2;
        }
        let n = self.slots.len();
        self.slots[fingerprint(h) as usize & (n - 1)] = (Self::check(h) << 40)
            | ((b as u64) << 39)
            | ((from.index() as u64) << 38)
            | (self.clock[b] & GHOST_CLOCK_MASK);
    }

    /// The slot of `h` if it holds `h` evicted within the last `horizon` bytes of its
    /// band's evictions.
    fn find(&self, h: u64, horizon: u64) -> Option<(usize, Returned)> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        let i = fingerprint(h) as usize & (n - 1);
        let slot = self.slots[i];
        if slot >> 40 != Self::check(h) {
            return None;
        }
        let band = if slot >> 39 & 1 == 1 {
            Band::Large
        } else {
            Band::Packed
        };
        let queue = if slot >> 38 & 1 == 1 {
            Queue::Main
        } else {
            Queue::Small
        };
        let distance = self.clock[band.index()].wrapping_sub(slot) & GHOST_CLOCK_MASK;
        let distance = distance * GHOST_UNIT;
        (distance <= horizon).then_some((
            i,
            Returned {
                band,
                queue,
                distance,
            },
        ))
    }

    /// Where `h` was evicted from, if that was within the last `horizon` bytes of its
    /// band's evictions; forgets it.
    fn take(&mut self, h: u64, horizon: u64) -> Option<Returned> {
        let (i, r) = self.find(h, horizon)?;
        self.slots[i] = 0;
        Some(r)
    }

    fn bytes(&self) -> usize {
        self.slots.len() * 8
    }

    /// Whether `h` was evicted within the last `horizon` bytes of its band's evictions
    /// (a peek: the entry stays).
    fn holds(&self, h: u64, horizon: u64) -> bool {
        self.find(h, horizon).is_some()
    }
}

/// One FIFO of segments.
#[derive(Default)]
struct Fifo {
    /// Closed segments, oldest first, with their generation then.
    closed: VecDeque<(u32, u32)>,
    /// The segment items are appended to (the packed band's queues only).
    open: Option<u32>,
    /// Segment bytes in the queue (open and closed).
    bytes: usize,
}

/// The two queues of a band, and the small queue's share of the band.
struct BandQueues {
    q: [Fifo; 2],
    small_share: u32,
}

impl Default for BandQueues {
    fn default() -> Self {
        BandQueues {
            q: [Fifo::default(), Fifo::default()],
            small_share: policy::SMALL_SHARE_START,
        }
    }
}

impl BandQueues {
    fn bytes(&self) -> usize {
        self.q[0].bytes + self.q[1].bytes
    }

    fn closed(&self) -> usize {
        self.q[0].closed.len() + self.q[1].closed.len()
    }
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
    segs: Vec<Option<Seg>>,
    /// Ids of dropped segments, with their last generation (a new segment under an
    /// old id continues it, so stale queue entries and the crawler never match it).
    free_ids: Vec<(u32, u32)>,
    /// Empty segments of `SEG_BYTES` ready for reuse (still counted in the budget).
    empty: Vec<u32>,
    /// The queues of each band (see [`crate::policy`]).
    bands: [BandQueues; 2],
    /// The large band's share of the segment bytes.
    large_share: BandShare,
    /// The charge probabilities of each band's size classes.
    lifetimes: [Lifetimes; 2],
    /// The policy's coin flips.
    coin: Coin,
    /// Segments opened or requeued so far (the `born` of the next).
    births: u32,
    ghost: Ghost,
    /// Closed segments that became sparse (with their generation then).
    sparse: Vec<(u32, u32)>,
    /// Survivors of the segment being evicted: their bytes, and (offset in `moved`,
    /// length, key hash, old location).
    moved: Vec<u8>,
    moving: Vec<(usize, usize, u64, Loc)>,
    /// The crawler's place: segment, offset of the next item, and the segment's
    /// generation then (a segment rewound or reused since starts over).
    crawl_seg: usize,
    crawl_off: usize,
    crawl_gen: u32,
    /// Per size class figures (classes are only a view: memory is not bound to them).
    classes: Vec<ClassStats>,
    /// Lookups of any key since the start or `stats reset` (`stats sizing`'s
    /// denominator).
    pub(super) lookups: u64,
    /// Meta marks of the items whose `MARKED` bit is set (location -> marks); every
    /// path that frees or moves an item keeps it in step.
    marks: HashMap<Loc, u8>,
    /// Segments of their own item that a reply may be streaming from
    /// ([`Shard::lease`]): the token leases hold (pinned while one does).
    pins: HashMap<u32, std::sync::Weak<PinToken>>,
    /// Pinned segments whose item is gone: kept (and counted in the budget) until the
    /// last lease ends ([`Shard::reap_orphans`]).
    orphans: Vec<u32>,
    /// Items ever linked.
    pub total_items: u64,
    /// Bytes of linked items.
    pub bytes: u64,
    /// Bytes of segments owned.
    pub slab_bytes: u64,
    /// Segments owned.
    pub nslabs: u64,
}

/// Validity of an item found in the index.
pub enum Found {
    /// Valid, at this location.
    Live(Loc),
    /// Not there (or removed now because expired/flushed).
    Miss(Miss),
}

/// What walking the oldest segment of a queue gave.
enum Evicted {
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
            slab_bytes: 0,
            nslabs: 0,
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
    fn ghost_horizon(&self) -> u64 {
        self.slab_bytes.max(SEG_BYTES as u64)
    }

    /// The queues of `band`, queue `q`.
    fn fifo(&mut self, band: Band, q: Queue) -> &mut Fifo {
        &mut self.bands[band.index()].q[q.index()]
    }

    /// The band of segment `sid` (a segment of its own is a large item's).
    fn band_of(&self, sid: usize) -> Band {
        if self.seg(sid).data.len() == SEG_BYTES {
            Band::Packed
        } else {
            Band::Large
        }
    }

    /// Counts an item of `total` bytes in or out of its band's sizes.
    fn band_count(&mut self, total: usize, add: bool) {
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

    fn seg(&self, sid: usize) -> &Seg {
        match self.segs.get(sid) {
            Some(Some(s)) => s,
            _ => unreachable_seg(),
        }
    }

    fn seg_mut(&mut self, sid: usize) -> &mut Seg {
        match self.segs.get_mut(sid) {
            Some(Some(s)) => s,
            _ => unreachable_seg(),
        }
    }

    /// The bytes the item at `l` takes (header, key, value).
    pub fn footprint(&self, ctx: &Ctx, l: Loc) -> usize {
        Hdr::read(self.chunk(l), ctx.cas_on).total()
    }

    /// The bytes of the item at `l`, and after it what its segment holds (the header
    /// says how many are the item's: [`Hdr::total`]). Right after [`Shard::alloc`]
    /// this is exactly the space allocated.
    #[inline]
    pub fn chunk(&self, l: Loc) -> &[u8] {
        let (sid, off) = split(l);
        let s = self.seg(sid);
        &s.data[off..s.used]
    }

    /// The bytes of the item at `l`, mutable (see [`Shard::chunk`]): only the item's
    /// own bytes may be written.
    #[inline]
    pub fn chunk_mut(&mut self, l: Loc) -> &mut [u8] {
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
        let hd = Hdr::read(self.chunk(l), ctx.cas_on);
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
        let c = self.chunk_mut(l);
        if c[0] & FREQ != FREQ {
            c[0] += FREQ_ONE;
        }
    }

    /// A write that replaced the item at `from` by the one at `to` (a set, cas,
    /// append, prepend or arithmetic that needed a new extent): the key is in use, so
    /// the new item keeps the old one's counter, plus one for this access.
    pub fn rewrote(&mut self, from: Loc, to: Loc) {
        let f = self.chunk(from)[0] & FREQ;
        let n = if f == FREQ { f } else { f + FREQ_ONE };
        let c = self.chunk_mut(to);
        c[0] = (c[0] & !FREQ) | n;
    }

    /// Sets the expiry of the item at `l` in place; false when the item has no expiry
    /// field (stored without one) and `exp` is not 0: the caller moves it to a new
    /// extent with the field ([`Store::regrow`](super::Store)).
    pub fn set_exptime(&mut self, _ctx: &Ctx, l: Loc, exp: u32) -> bool {
        let c = self.chunk_mut(l);
        let at = item::exp_at(c);
        if c[0] & item::HAS_EXP != 0 {
            item::wr32(c, at, exp);
            return true;
        }
        exp == 0
    }

    /// The size class an item of `total` bytes counts in (figures only).
    fn class_of(ctx: &Ctx, total: usize) -> usize {
        ctx.class_for(total).unwrap_or(0)
    }

    /// Counts an operation on the item at `l` in its class's figures.
    pub(crate) fn count(&mut self, ctx: &Ctx, l: Loc, op: ClassOp) {
        let total = Hdr::read(self.chunk(l), ctx.cas_on).total();
        self.count_class(Self::class_of(ctx, total), op);
    }

    /// Counts an operation in the figures of class `class` (0-based).
    pub(crate) fn count_class(&mut self, class: usize, op: ClassOp) {
        if let Some(c) = self.classes.get_mut(class) {
            c.ops.bump(op);
        }
    }

    /// Removes an item from the index and frees its extent.
    fn remove(&mut self, ctx: &Ctx, h: u64, l: Loc, why: Why) {
        if let Ok(e) = self.tables[sub_of(h)].find_entry(table_hash(h), |&s| s == l) {
            e.remove();
        }
        let hd = Hdr::read(self.chunk(l), ctx.cas_on);
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
        self.free_chunk(ctx, l);
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

    /// Frees an extent that is not (or no longer) in the index: its bytes stay in the
    /// segment as a dead item until the segment is emptied.
    pub fn free_chunk(&mut self, ctx: &Ctx, l: Loc) {
        if self.chunk(l)[0] & MARKED != 0 {
            self.marks.remove(&l);
        }
        let total = Hdr::read(self.chunk(l), ctx.cas_on).total();
        self.chunk_mut(l)[0] &= !(LIVE | MARKED);
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
    fn take_sparse(&mut self) -> Option<(Queue, usize)> {
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
    fn compact_sparse(&mut self, ctx: &Ctx) -> Option<Evicted> {
        let (q, sid) = self.take_sparse()?;
        if self.seg(sid).data.len() != SEG_BYTES {
            return Some(self.evict_big(ctx, q, sid, true));
        }
        self.walk(ctx, q, sid, true);
        Some(self.place_survivors(ctx, q, q, sid))
    }

    /// A segment's last item is gone: an open one starts over, a closed one leaves its
    /// queue and is reused (one that is being evicted is the eviction's).
    fn emptied(&mut self, ctx: &Ctx, sid: usize) {
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
    fn recycle(&mut self, ctx: &Ctx, sid: usize) {
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
        let hd = Hdr::read(self.chunk(new), ctx.cas_on);
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
                let ohd = Hdr::read(self.chunk(o), ctx.cas_on);
                let st = &mut self.classes[Self::class_of(ctx, ohd.total())];
                st.number = st.number.saturating_sub(1);
                st.requested = st.requested.saturating_sub(ohd.total() as u64);
                self.bytes = self.bytes.saturating_sub(ohd.total() as u64);
                self.band_count(ohd.total(), false);
                self.free_chunk(ctx, o);
                return;
            }
        }
        let segs = &self.segs;
        self.tables[t].insert_unique(table_hash(h), new, |&l| rehash(segs, ctx, l));
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
                .returned(r.band, r.distance, self.slab_bytes);
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
    fn append(&mut self, ctx: &Ctx, sid: usize, total: usize) -> Option<Loc> {
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
    fn enqueue(&mut self, q: Queue, sid: usize, new_to_queue: bool) {
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
    fn open(&mut self, q: Queue, sid: usize) {
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
    fn alloc_slow(&mut self, ctx: &Ctx, q: Queue, total: usize, mem: &Mem<'_>) -> Option<Loc> {
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
    fn alloc_big(&mut self, ctx: &Ctx, q: Queue, total: usize, mem: &Mem<'_>) -> Option<Loc> {
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
    fn new_segment(&mut self, ctx: &Ctx, bytes: usize, mem: &Mem<'_>) -> Option<usize> {
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
        let poor = ctx.evict && (self.slab_bytes as usize) < ctx.share() / 2;
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
    fn make_seg(&mut self, ctx: &Ctx, bytes: usize) -> Option<usize> {
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
        self.slab_bytes += bytes as u64;
        self.nslabs += 1;
        ctx.set_owned(self.id, self.slab_bytes);
        Some(sid)
    }

    /// Drops an empty segment that is in no queue; returns its bytes, still counted in
    /// the budget (the caller passes them on or gives them back).
    fn drop_seg(&mut self, ctx: &Ctx, sid: usize) -> usize {
        let Some(s) = self.segs.get_mut(sid).and_then(Option::take) else {
            return 0;
        };
        self.pins.remove(&(sid as u32));
        self.free_ids.push((sid as u32, s.gen));
        self.slab_bytes -= s.data.len() as u64;
        self.nslabs -= 1;
        ctx.set_owned(self.id, self.slab_bytes);
        s.data.len()
    }

    /// True when more than half of this shard's segment bytes hold no live item
    /// (replaced, deleted or expired items not yet walked over): then a segment is
    /// compacted before the shard takes more memory.
    fn garbage_heavy(&self) -> bool {
        self.closed_segments() >= 2 && (self.bytes as usize) * 2 < self.slab_bytes as usize
    }

    /// Takes the oldest segment of the queue S3-FIFO evicts from and walks its items
    /// (see the module doc). With `compact`, nothing is evicted: every live item is
    /// copied to the open segment of its own queue (counter unchanged), which frees the
    /// space of the dead ones.
    fn evict_one(&mut self, ctx: &Ctx, compact: bool) -> Evicted {
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
    fn evict_band(&mut self) -> Band {
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
    fn oldest_birth(&self, band: Band) -> Option<u32> {
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
    fn closed_segments(&self) -> usize {
        self.bands.iter().map(BandQueues::closed).sum()
    }

    /// What becomes of a valid item of `total` bytes in `band` at the tail of queue `q`
    /// with counter bits `freq`: `Some(counter bits)` it stays (in main), `None` it is
    /// evicted. An item the policy charges ([`policy::charged`]) pays one read from its
    /// counter or leaves: from small, promoted with its counter cleared; from main,
    /// reinserted with the read taken off. One not charged goes round again with its
    /// counter as it is.
    fn verdict(&mut self, band: Band, q: Queue, freq: u8, total: usize) -> Option<u8> {
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
    fn evict(&mut self, ctx: &Ctx, h: u64, l: Loc, band: Band, q: Queue, total: usize) {
        let items = self.len();
        self.ghost.insert(h, items, band, q, total);
        self.remove(ctx, h, l, Why::Evict);
    }

    /// Walks the items of segment `sid` (taken from queue `q`): removes the expired,
    /// evicts the cold (unless `compact`), copies the survivors out to `moved`.
    fn walk(&mut self, ctx: &Ctx, q: Queue, sid: usize, compact: bool) {
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
    fn place_survivors(&mut self, ctx: &Ctx, q: Queue, dest: Queue, sid: usize) -> Evicted {
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
            self.chunk_mut(new)[..total].copy_from_slice(&moved[at..at + total]);
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
    fn evict_big(&mut self, ctx: &Ctx, q: Queue, sid: usize, compact: bool) -> Evicted {
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
                let c = self.chunk(l);
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
                let c = self.chunk(l);
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

/// Leases: a reply streaming a large value reads it from the item's own segment a
/// piece at a time instead of copying it whole into the connection's buffer (see
/// `store::lease`). A leased segment is never reused or dropped: when its item goes
/// (replaced, deleted, evicted, expired) it becomes an orphan, out of every queue and
/// still counted in the budget, until the last lease on it ends. Its value bytes are
/// not written while it is pinned: a live item's value never changes in place (only
/// its header does), and an orphan is not written at all.
impl Shard {
    /// Whether segment `sid` is pinned by a lease (a token no lease holds any more is
    /// forgotten).
    fn pinned(&mut self, sid: usize) -> bool {
        if self.pins.is_empty() {
            return false;
        }
        let sid = sid as u32;
        match self.pins.get(&sid) {
            None => false,
            Some(p) if p.strong_count() > 0 => true,
            Some(_) => {
                self.pins.remove(&sid);
                false
            }
        }
    }

    /// Pins the segment of the item at `l` for a lease. Not when the item shares its
    /// segment (items that do are small, and a shared segment is rewritten when it is
    /// walked), nor when pinning it would take what connections hold past the cap
    /// ([`super::held`]; a segment pinned already costs nothing more).
    pub fn lease(&mut self, ctx: &Ctx, l: Loc) -> LeaseTry {
        let (sid, off) = split(l);
        let bytes = self.seg(sid).data.len();
        if off != 0 || bytes == SEG_BYTES {
            return LeaseTry::Shared;
        }
        let key = sid as u32;
        if let Some(pin) = self.pins.get(&key).and_then(std::sync::Weak::upgrade) {
            return LeaseTry::Pinned(key, pin);
        }
        match PinToken::take(&ctx.held, bytes, ctx.held_cap()) {
            Some(pin) => {
                self.pins.insert(key, std::sync::Arc::downgrade(&pin));
                LeaseTry::Pinned(key, pin)
            }
            None => LeaseTry::OverCap,
        }
    }

    /// The bytes of segment `sid` while `pin` pins it (None: not the segment the
    /// lease was taken on).
    pub fn leased(&self, sid: u32, pin: &std::sync::Arc<PinToken>) -> Option<&[u8]> {
        match (self.pins.get(&sid), self.segs.get(sid as usize)) {
            (Some(p), Some(Some(s))) if std::ptr::eq(p.as_ptr(), std::sync::Arc::as_ptr(pin)) => {
                Some(&s.data)
            }
            _ => None,
        }
    }

    /// Drops the orphans no lease pins any more, their bytes back to the budget.
    /// Returns how many are left.
    pub fn reap_orphans(&mut self, ctx: &Ctx) -> usize {
        let mut i = 0;
        while i < self.orphans.len() {
            let sid = self.orphans[i] as usize;
            if self.pinned(sid) {
                i += 1;
                continue;
            }
            self.orphans.swap_remove(i);
            let n = self.drop_seg(ctx, sid);
            ctx.budget_release(n);
        }
        self.orphans.len()
    }
}

/// Where a metadump walk is in one shard: segment, offset of the next item, and the
/// segment's generation then (a segment rewound or reused since starts over, so an
/// old offset is never read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpPlace {
    seg: usize,
    off: usize,
    gen: u32,
}

impl Shard {
    /// What a watcher of evictions is told about the item at `l`, which is being
    /// evicted (only when a sink is installed: one atomic load otherwise).
    fn note_eviction(&self, ctx: &Ctx, l: Loc, hd: &Hdr) {
        if let Some(sink) = ctx.eviction_sink() {
            let c = self.chunk(l);
            sink(&Self::meta_of(ctx, c, hd));
        }
    }

    fn meta_of<'c>(ctx: &Ctx, c: &'c [u8], hd: &Hdr) -> ItemMeta<'c> {
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

#[cold]
fn unreachable_seg() -> ! {
    // Every location in the index points to a live segment; reaching here is a bug.
    panic!("store: item location points to a dropped segment")
}

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
    fn snap_copy_seg(&self, w: &mut SnapWalk, sid: usize, out: &mut SnapBuf) {
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
