//! The shards and what they share, with the locking every operation goes through:
//! one shard lock per item operation ([`Shards::with`]), run again with memory taken
//! from the other shards when its own could not find it ([`Shards::with_retry`]),
//! and the CAS counter. The operations themselves are in `read.rs`, `write.rs` and
//! `walks.rs`; the [`super::Store`] facade adds the insight.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::alloc::Mem;
use super::classes::build_classes;
use super::clock::Clock;
use super::ctx::{hash_key, Ctx, StoreConfig};
use super::item;
use super::lease::Reply;
use super::outcome::Miss;
use super::shard::Shard;
use crate::insight::Event;
use crate::limits;

/// The result of a lookup that copies every value ([`super::ReplyValue::COPY`]), which never
/// waits.
pub(super) fn copied<R>(r: Result<Reply<R>, Miss>) -> Result<R, Miss> {
    match r? {
        Reply::Done(r, _) => Ok(r),
        Reply::Wait => {
            debug_assert!(false, "a lookup that copies waited");
            Err(Miss::Absent)
        }
    }
}

/// The key hash and what an operation did, kept while its shard lock is held and
/// told to `Insight::note` after it is released.
#[derive(Default)]
pub(super) struct Seen(pub(super) std::cell::Cell<Option<(u64, Event)>>);

impl Seen {
    #[inline]
    pub(super) fn set(&self, h: u64, ev: Event) {
        self.0.set(Some((h, ev)));
    }
}

/// Times an operation runs again after taking memory from the other shards.
const RETRIES: usize = 3;

/// The sharded item memory: a power of two of shards, each behind its own lock.
pub(super) struct Shards {
    pub(super) cfg: StoreConfig,
    pub(super) ctx: Ctx,
    pub(super) cas: AtomicU64,
    shift: u32,
    pub(super) shards: Box<[Mutex<Shard>]>,
    steal_from: AtomicUsize,
    pub(super) crawler_starts: AtomicU64,
}

impl Shards {
    /// The shards of a new, empty store.
    pub(super) fn new(cfg: StoreConfig, clock: Arc<Clock>) -> Shards {
        let n = cfg.shards.max(1).next_power_of_two();
        let (sizes, page_sizes) = build_classes(&cfg);
        let nclasses = sizes.len();
        let shards = (0..n)
            .map(|i| Mutex::new(Shard::new(nclasses, i)))
            .collect();
        Shards {
            ctx: Ctx {
                cas_on: cfg.cas_enabled,
                evict: cfg.evict,
                clock,
                sizes,
                page_sizes,
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
        }
    }

    #[inline]
    pub(super) fn shard_of(&self, h: u64) -> usize {
        if self.shards.len() == 1 {
            0
        } else {
            (h >> self.shift) as usize
        }
    }

    /// The next CAS unique, modulo 2^48 as items keep it (0 is skipped: it means "none").
    pub(super) fn next_cas(&self) -> u64 {
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
    pub(super) fn with<R>(&self, key: &[u8], f: impl FnOnce(&mut Shard, u64, &Mem<'_>) -> R) -> R {
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
    pub(super) fn with_retry<R>(
        &self,
        key: &[u8],
        mut f: impl FnMut(&mut Shard, u64, &Mem<'_>) -> R,
    ) -> R {
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
    pub(super) fn steal(&self, me: usize, bytes: usize) -> usize {
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
    pub(super) fn victims(&self, me: usize) -> impl Iterator<Item = usize> + '_ {
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
    pub(super) fn reclaim(&self, me: usize, need: usize, mut held: usize) -> usize {
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

    /// Exactly memcached 1.6's boundary for "object too large for cache": its item size
    /// ([`limits::item_size`], the protocols' rule) above `-I`, or a key longer than
    /// memcached's 250 bytes.
    pub(super) fn too_large_flags(&self, key_len: usize, flags: u32, value_len: usize) -> bool {
        key_len > limits::KEY_MAX_LENGTH
            || limits::item_size(key_len, flags, value_len + 2, self.cfg.cas_enabled)
                > self.cfg.item_size_max
    }

    /// Whether `key` was evicted recently (its fingerprint is in its shard's ghost).
    pub(super) fn recently_evicted(&self, key: &[u8]) -> bool {
        let h = hash_key(key);
        self.shards[self.shard_of(h)].lock().recently_evicted(h)
    }
}
