//! The one place where every executed operation is seen, from text, meta and binary
//! alike. An executor tells what happened as an [`Op`] (a small stack value that
//! borrows the key and, for a store, the data) and [`Obs::emit`] feeds everything that
//! watches operations:
//!
//! ```text
//!   exec::{text, meta, binary}     ── Op { kind, key, outcome, … } ──▶ observe
//!   session (refused stores)       ── Obs::refused ─────────────────▶   ├─ counters (stats.rs, per worker)
//!                                                                       ├─ miss reasons (get_expired …, evicted / never stored)
//!                                                                       ├─ prefix stats (`stats detail`)
//!                                                                       ├─ watch: item_get, item_store
//!                                                                       ├─ `-vv`: `>fd sending key`
//!                                                                       └─ the test tap (later: a replication stream)
//! ```
//!
//! What is off costs a branch: no watcher of a type is one relaxed load
//! ([`crate::server::admin::watch::WatchHub::wants`]), `stats detail off` one, `-vv` off one
//! comparison, no tap one test. Hot keys are sampled by the store itself after the
//! shard lock is released (`insight`), latency is timed per request by the session
//! ([`family_of`] names the family).
//!
//! Two things stay outside the `Op`: memcached's watch line for the lookup a mutation
//! makes first (`item_get` before `item_store`, [`Obs::before`]: its status is the
//! state before the change), and the one-line replies `-vv` logs (`reply` in the
//! executors: they are about replies, not operations).
//!
//! Counters move exactly as memcached 1.6.18 moves them per protocol, including where
//! its protocols differ (a binary store refused as too large does not count in
//! `store_too_large`; a meta delete whose CAS did not match counts a delete miss, a
//! binary one nothing); those few rules read [`Op::proto`].

use crate::latency::Family;
use crate::op::{MissCause, OpKind, Outcome, StoreOp};
use crate::protocol::ascii::Request;
use crate::protocol::frame::StoreRefusal;
use crate::protocol::text;
use crate::server::admin::watch::{GetStatus, StoreStatus, FETCHERS, MUTATIONS};
use crate::server::shared::Shared;
use crate::server::stats::vlog;
use crate::stats::{bump, Counters, PrefixEvent};
use crate::store::{ItemRef, Miss};

/// The protocol an operation came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// The classic text commands.
    Text,
    /// The meta commands (`mg ms md ma me`).
    Meta,
    /// The binary protocol.
    Binary,
}

/// One executed operation: what a replica, the counters and the watchers learn of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op<'a> {
    /// What it was.
    pub kind: OpKind,
    /// The key (empty for a flush).
    pub key: &'a [u8],
    /// How it ended.
    pub outcome: Outcome,
    /// The protocol it came in (set by [`Obs::emit`]).
    pub proto: Proto,
    /// The connection (its fd: `cfd=` of watch lines; set by [`Obs::emit`]).
    pub conn: i32,
    /// Stores: the data offered (the whole value, or what is appended/prepended).
    pub value: &'a [u8],
    /// Stores: the client flags offered.
    pub flags: u32,
    /// Stores, gat, touch: the expiry as the request gave it (seconds, or a Unix
    /// time; 0 = none); flush: the delay.
    pub exptime: i64,
    /// incr/decr: the amount; when `Created`, the initial value.
    pub amount: u64,
    /// Hits of lookups: the value's length.
    pub size: usize,
    /// Hits of lookups: the item's size class, when fetchers are watched (else 0).
    pub class: usize,
}

impl<'a> Op<'a> {
    /// An operation with nothing but its kind, key and outcome.
    #[inline]
    pub fn new(kind: OpKind, key: &'a [u8], outcome: Outcome) -> Op<'a> {
        Op {
            kind,
            key,
            outcome,
            proto: Proto::Text,
            conn: -1,
            value: &[],
            flags: 0,
            exptime: 0,
            amount: 0,
            size: 0,
            class: 0,
        }
    }

    /// A lookup's result (`size` and `class` of a hit).
    #[inline]
    pub fn lookup(kind: OpKind, key: &'a [u8], r: Result<(usize, usize), Miss>) -> Op<'a> {
        match r {
            Ok((size, class)) => Op {
                size,
                class,
                ..Op::new(kind, key, Outcome::Hit)
            },
            Err(m) => Op::new(kind, key, Outcome::Miss(miss_cause(m))),
        }
    }

    /// A store's data, flags and expiry.
    #[inline]
    pub fn with_data(mut self, value: &'a [u8], flags: u32, exptime: i64) -> Op<'a> {
        self.value = value;
        self.flags = flags;
        self.exptime = exptime;
        self
    }
}

/// The store's miss cause in the shared vocabulary.
#[inline]
pub fn miss_cause(m: Miss) -> MissCause {
    match m {
        Miss::Absent => MissCause::Absent,
        Miss::Expired => MissCause::Expired,
        Miss::Flushed => MissCause::Flushed,
    }
}

/// What sees every operation besides the server's own figures: a test's sink (and,
/// later, a replication stream). Runs on the worker, after the shard lock is released.
pub type OpTap = dyn Fn(&Op<'_>);

/// What an executor observes through: the server, this worker's counters, the
/// connection and its protocol.
pub struct Obs<'a> {
    /// Server state (store for the watch lines' look-ups, prefix stats, watch hub).
    pub shared: &'a Shared,
    /// This worker's counters.
    pub counters: &'a Counters,
    /// The connection (its fd).
    pub conn: i32,
    /// The protocol of the requests.
    pub proto: Proto,
    /// A sink told every operation (tests; `None` in the server).
    pub tap: Option<&'a OpTap>,
}

impl Obs<'_> {
    /// Whether lookups should compute the size class of a hit (fetchers watched).
    #[inline]
    pub fn fetchers(&self) -> bool {
        self.shared.observers.watch.wants(FETCHERS)
    }

    /// The lookup memcached makes before a mutation (store, delete, incr/decr,
    /// touch), which fetchers' watchers see as `item_get` with the state before
    /// the change. One load when nobody watches fetchers.
    #[inline]
    pub fn before(&self, key: &[u8]) {
        if self.fetchers() {
            self.lookup_line(key);
        }
    }

    #[cold]
    fn lookup_line(&self, key: &[u8]) {
        let store = &self.shared.store;
        let r = store.peek(key, |it| (it.value.len(), store.class_of(it)));
        let status = match r {
            Ok((size, class)) => GetStatus::Found { class, size },
            Err(m) => miss_status(miss_cause(m)),
        };
        self.shared.observers.watch.item_get(key, status, self.conn);
    }

    /// Tells everything that watches operations about `op`. Inlined, so the `Op`
    /// stays in registers unless a tap or a watcher takes it.
    #[inline(always)]
    pub fn emit(&self, mut op: Op<'_>) {
        op.proto = self.proto;
        op.conn = self.conn;
        observe(&op, self);
    }

    /// A store refused before its data was taken (too large for `-I`, or no buffer
    /// room): the old value of the key goes (memcached unlinks it), the refusal is
    /// counted and watched. The `Op` told is a `set` of the key.
    pub fn refused(&self, key: Option<&[u8]>, refusal: Option<StoreRefusal>) {
        let shared = self.shared;
        let c = self.counters;
        if let Some(key) = key {
            if self.proto != Proto::Binary
                && refusal == Some(StoreRefusal::TooLarge)
                && shared.observers.watch.wants(MUTATIONS)
            {
                shared.observers.watch.item_store(
                    key,
                    StoreStatus::TooLarge,
                    "set",
                    0,
                    0,
                    self.conn,
                    0,
                );
            }
            shared.store.unlink(key);
        }
        // The binary protocol counts neither (as before this seam).
        if self.proto != Proto::Binary {
            match refusal {
                Some(StoreRefusal::NoMemory) => bump(&c.store_no_memory, 1),
                Some(StoreRefusal::TooLarge) => bump(&c.store_too_large, 1),
                None => {}
            }
        }
        if let (Some(tap), Some(key), Some(r)) = (self.tap, key, refusal) {
            let outcome = match r {
                StoreRefusal::TooLarge => Outcome::TooLarge,
                StoreRefusal::NoMemory => Outcome::NoMemory,
            };
            let mut op = Op::new(OpKind::Store(StoreOp::Set), key, outcome);
            op.proto = self.proto;
            op.conn = self.conn;
            tap(&op);
        }
    }
}

/// Tells the tap. Out of line and given the `Op` by value, so that on the hot path
/// the `Op` is never stored whole (its fields stay in registers).
#[cold]
#[inline(never)]
fn tell(tap: &OpTap, op: Op<'_>) {
    tap(&op);
}

fn miss_status(m: MissCause) -> GetStatus {
    match m {
        MissCause::Absent => GetStatus::NotFound,
        MissCause::Expired => GetStatus::Expired,
        MissCause::Flushed => GetStatus::Flushed,
    }
}

/// The one place that bumps the operation counters, records prefix stats, queues
/// watch lines and logs `-vv` hits.
#[inline(always)]
pub fn observe(op: &Op<'_>, obs: &Obs<'_>) {
    let c = obs.counters;
    let shared = obs.shared;
    if let Some(tap) = obs.tap {
        tell(tap, *op);
    }
    let hit = matches!(op.outcome, Outcome::Hit | Outcome::Created);
    match op.kind {
        OpKind::Get | OpKind::Gat | OpKind::Inspect => {
            if op.kind == OpKind::Inspect {
                bump(&c.meta_cmds, 1);
            } else {
                // An `mg` whose reply was refused (opaque too long) found the item.
                let found = !matches!(op.outcome, Outcome::Miss(_));
                shared
                    .observers
                    .prefix
                    .record(op.key, PrefixEvent::Get(found));
                count_lookup(c, op, || shared.store.recently_evicted(op.key));
                if hit && op.proto == Proto::Text {
                    vlog::sending_key(op.key);
                }
            }
            if shared.observers.watch.wants(FETCHERS) {
                let status = match op.outcome {
                    Outcome::Miss(m) => miss_status(m),
                    // `mg N` created the item: memcached's lookup missed.
                    Outcome::Created => GetStatus::NotFound,
                    _ => GetStatus::Found {
                        class: op.class,
                        size: op.size,
                    },
                };
                shared.observers.watch.item_get(op.key, status, op.conn);
            }
        }
        OpKind::Touch => {
            bump(&c.touch_cmds, 1);
            bump(if hit { &c.touch_hits } else { &c.touch_misses }, 1);
        }
        OpKind::Store(sop) => {
            if op.outcome == Outcome::Refused {
                // `ms` with a bad data block: counted, nothing else.
                bump(&c.set_cmds, 1);
                return;
            }
            count_store(c, sop, op);
            shared.observers.prefix.record(op.key, PrefixEvent::Set);
            if shared.observers.watch.wants(MUTATIONS) {
                watch_store(shared, sop, *op);
            }
        }
        OpKind::Delete => {
            shared.observers.prefix.record(op.key, PrefixEvent::Delete);
            match op.outcome {
                Outcome::Hit => bump(&c.delete_hits, 1),
                Outcome::Miss(_) => bump(&c.delete_misses, 1),
                Outcome::Exists if op.proto == Proto::Meta => bump(&c.delete_misses, 1),
                _ => {}
            }
        }
        OpKind::Incr | OpKind::Decr => {
            let incr = op.kind == OpKind::Incr;
            match op.outcome {
                Outcome::Hit => bump(if incr { &c.incr_hits } else { &c.decr_hits }, 1),
                Outcome::Miss(_) => bump(if incr { &c.incr_misses } else { &c.decr_misses }, 1),
                Outcome::Created => {
                    // memcached's create-on-miss: a second lookup, then an `add`.
                    if shared.observers.watch.wants(FETCHERS) {
                        shared
                            .observers
                            .watch
                            .item_get(op.key, GetStatus::NotFound, op.conn);
                    }
                    if shared.observers.watch.wants(MUTATIONS) {
                        let add = Op {
                            outcome: Outcome::Stored,
                            ..*op
                        };
                        watch_store(shared, StoreOp::Add, add);
                    }
                }
                _ => {}
            }
        }
        OpKind::Flush => bump(&c.flush_cmds, 1),
    }
}

/// `cmd_get`/`get_*` or `cmd_touch`/`touch_*` of a lookup; a miss of a plain lookup
/// by cause (`get_expired`, `get_flushed`; an absent key as `get_miss_evicted` when
/// `evicted()` says it was evicted recently, else `get_miss_never_stored`, so the
/// four causes sum to `get_misses`).
#[inline(always)]
fn count_lookup(c: &Counters, op: &Op<'_>, evicted: impl FnOnce() -> bool) {
    let touch = op.kind == OpKind::Gat;
    match op.outcome {
        Outcome::Hit | Outcome::Created if touch => {
            bump(&c.touch_cmds, 1);
            bump(&c.touch_hits, 1);
        }
        Outcome::Hit | Outcome::Created => {
            bump(&c.get_cmds, 1);
            bump(&c.get_hits, 1);
        }
        Outcome::Miss(_) if touch => {
            bump(&c.touch_cmds, 1);
            bump(&c.touch_misses, 1);
        }
        Outcome::Miss(m) => {
            bump(&c.get_cmds, 1);
            bump(&c.get_misses, 1);
            match m {
                MissCause::Expired => bump(&c.get_expired, 1),
                MissCause::Flushed => bump(&c.get_flushed, 1),
                MissCause::Absent if evicted() => bump(&c.get_miss_evicted, 1),
                MissCause::Absent => bump(&c.get_miss_never_stored, 1),
            }
        }
        _ => {}
    }
}

/// A storage command as memcached counts it: `cmd_set` unless it was refused as too
/// large, the `cas_*` outcome of a `cas`, `store_too_large` / `store_no_memory`.
#[inline]
fn count_store(c: &Counters, sop: StoreOp, op: &Op<'_>) {
    if op.outcome != Outcome::TooLarge {
        bump(&c.set_cmds, 1);
    }
    if let StoreOp::Cas(_) = sop {
        match op.outcome {
            Outcome::Stored => bump(&c.cas_hits, 1),
            Outcome::Exists => bump(&c.cas_badval, 1),
            Outcome::NotFound => bump(&c.cas_misses, 1),
            _ => {}
        }
    }
    match op.outcome {
        Outcome::TooLarge if op.proto != Proto::Binary => bump(&c.store_too_large, 1),
        Outcome::NoMemory => bump(&c.store_no_memory, 1),
        _ => {}
    }
}

fn store_status(o: Outcome) -> StoreStatus {
    match o {
        Outcome::Stored => StoreStatus::Stored,
        Outcome::Exists => StoreStatus::Exists,
        Outcome::NotFound => StoreStatus::NotFound,
        Outcome::TooLarge => StoreStatus::TooLarge,
        Outcome::NoMemory => StoreStatus::NoMemory,
        _ => StoreStatus::NotStored,
    }
}

fn store_cmd_name(op: StoreOp) -> &'static str {
    match op {
        StoreOp::Set => "set",
        StoreOp::Add => "add",
        StoreOp::Replace => "replace",
        StoreOp::Append => "append",
        StoreOp::Prepend => "prepend",
        StoreOp::Cas(_) => "cas",
    }
}

/// `item_store` (mutations watched): what was stored, or what was offered when
/// nothing was.
#[cold]
#[inline(never)]
fn watch_store(shared: &Shared, sop: StoreOp, op: Op<'_>) {
    let store = &shared.store;
    let now = shared.clock.now();
    let ttl_of = |exp: u32| if exp == 0 { 0 } else { exp.wrapping_sub(now) };
    let stored = (op.outcome == Outcome::Stored)
        .then(|| {
            store
                .peek(op.key, |it| {
                    (store.class_of(it), it.value.len(), it.exptime)
                })
                .ok()
        })
        .flatten();
    let (class, size, ttl) = match (stored, op.outcome) {
        (Some((class, size, exp)), _) => (class, size, ttl_of(exp)),
        // memcached reports no item for these.
        (None, Outcome::TooLarge | Outcome::NoMemory) => (0, 0, 0),
        (None, _) => {
            let exp = shared.clock.realtime(op.exptime);
            let offered = ItemRef {
                key: op.key,
                flags: op.flags,
                value: op.value,
                cas: 0,
                exptime: exp,
            };
            (store.class_of(&offered), op.value.len(), ttl_of(exp))
        }
    };
    shared.observers.watch.item_store(
        op.key,
        store_status(op.outcome),
        store_cmd_name(sop),
        ttl,
        class,
        op.conn,
        size,
    );
}

/// The latency family of a text or meta request; `None` for the commands not timed
/// (`stats`, `version`, `flush_all`, ...). Binary requests are timed as one family.
pub fn family_of(req: &Request<'_>) -> Option<Family> {
    match req {
        Request::Meta(_) => Some(Family::Meta),
        Request::Text(cmd) => match cmd {
            text::Command::Get { .. } => Some(Family::Get),
            text::Command::Gat { .. } | text::Command::Touch { .. } => Some(Family::Touch),
            text::Command::Store { .. } => Some(Family::Set),
            text::Command::Delete { .. } => Some(Family::Delete),
            text::Command::Arith { .. } => Some(Family::IncrDecr),
            _ => None,
        },
    }
}

/// A store's outcome in the shared vocabulary.
#[inline]
pub fn store_outcome(o: crate::store::StoreOutcome) -> Outcome {
    use crate::store::StoreOutcome as S;
    match o {
        S::Stored => Outcome::Stored,
        S::NotStored => Outcome::NotStored,
        S::Exists => Outcome::Exists,
        S::NotFound => Outcome::NotFound,
        S::TooLarge => Outcome::TooLarge,
        S::OutOfMemory => Outcome::NoMemory,
    }
}

/// A lookup-like result (delete, touch) as an outcome.
pub fn outcome_of(r: Result<(), Miss>) -> Outcome {
    match r {
        Ok(()) => Outcome::Hit,
        Err(m) => Outcome::Miss(miss_cause(m)),
    }
}

/// A delete's result as an outcome.
pub fn delete_outcome(r: crate::store::DeleteOutcome) -> Outcome {
    match r {
        crate::store::DeleteOutcome::Deleted => Outcome::Hit,
        crate::store::DeleteOutcome::NotFound(m) => Outcome::Miss(miss_cause(m)),
        crate::store::DeleteOutcome::Exists => Outcome::Exists,
    }
}

/// An incr/decr result as an outcome.
pub fn delta_outcome(r: &crate::store::DeltaOutcome) -> Outcome {
    match r {
        crate::store::DeltaOutcome::Value(_) => Outcome::Hit,
        crate::store::DeltaOutcome::NotFound(m) => Outcome::Miss(miss_cause(*m)),
        crate::store::DeltaOutcome::NonNumeric => Outcome::NonNumeric,
        crate::store::DeltaOutcome::OutOfMemory => Outcome::NoMemory,
        crate::store::DeltaOutcome::Exists => Outcome::Exists,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::net::loopback::Loopback;
    use std::sync::atomic::Ordering::Relaxed;

    fn emit_all(lb: &Loopback, proto: Proto, ops: &[Op<'_>]) -> Counters {
        let counters = Counters::default();
        let obs = Obs {
            shared: &lb.shared,
            counters: &counters,
            conn: 7,
            proto,
            tap: None,
        };
        for op in ops {
            obs.emit(*op);
        }
        counters
    }

    #[test]
    fn one_rule_per_operation_and_the_few_protocol_differences() {
        let lb = Loopback::new(&[]).expect("arguments");
        let absent = Outcome::Miss(MissCause::Absent);
        let ops = [
            Op::new(OpKind::Get, b"k", Outcome::Hit),
            Op::new(OpKind::Get, b"k", absent),
            Op::new(OpKind::Get, b"k", Outcome::Miss(MissCause::Expired)),
            Op::new(OpKind::Gat, b"k", absent),
            Op::new(OpKind::Store(StoreOp::Cas(3)), b"k", Outcome::Exists),
            Op::new(OpKind::Store(StoreOp::Set), b"k", Outcome::TooLarge),
            Op::new(OpKind::Delete, b"k", Outcome::Exists),
            Op::new(OpKind::Incr, b"k", Outcome::Created),
            Op::new(OpKind::Decr, b"k", absent),
            Op::new(OpKind::Flush, b"", Outcome::Refused),
            Op::new(OpKind::Inspect, b"k", absent),
        ];
        for proto in [Proto::Text, Proto::Meta, Proto::Binary] {
            let c = emit_all(&lb, proto, &ops);
            let got = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed);
            assert_eq!((got(&c.get_cmds), got(&c.get_hits)), (3, 1));
            assert_eq!((got(&c.get_misses), got(&c.get_expired)), (2, 1));
            assert_eq!(got(&c.get_miss_never_stored), 1);
            assert_eq!((got(&c.touch_cmds), got(&c.touch_misses)), (1, 1));
            // A refused `set` is not a `cmd_set`; the `cas` is.
            assert_eq!((got(&c.set_cmds), got(&c.cas_badval)), (1, 1));
            assert_eq!(got(&c.incr_hits) + got(&c.incr_misses), 0, "created");
            assert_eq!(got(&c.decr_misses), 1);
            assert_eq!((got(&c.flush_cmds), got(&c.meta_cmds)), (1, 1));
            let binary = proto == Proto::Binary;
            assert_eq!(got(&c.store_too_large), u64::from(!binary), "{proto:?}");
            let meta = proto == Proto::Meta;
            assert_eq!(got(&c.delete_misses), u64::from(meta), "{proto:?}");
        }
    }

    #[test]
    fn an_op_is_a_small_value() {
        assert!(std::mem::size_of::<Op<'_>>() <= 112);
    }
}
