//! Values streamed to a reply from the store instead of copied whole (issue #24,
//! point 2).
//!
//! A reply is normally composed under the shard lock, the value copied into the
//! connection's reply buffer. A client that asks for large values and never reads
//! would then hold a copy of each (60 such clients of 16 MB values: +939 MiB). memcached
//! sends from the item itself, holding a reference. Here a lookup for a reply
//! ([`Store::get_reply`], [`Store::meta_get_reply`]) may instead *lease* a value longer
//! than the reply may hold: the item's own segment is pinned (not reused or freed, even
//! when the item goes: see `pins.rs`), and the connection copies the value
//! out a piece at a time ([`Store::read_lease`]) as its client reads, so it holds one
//! piece, not the value. Pinned memory stays counted in `-m`; a lease is dropped when
//! the reply is done ([`Store::end_lease`]) or the connection closes (the segment is
//! then freed by the next crawler step). Pinned segments may hold at most a quarter
//! of `-m` ([`super::held`]): past that a value is copied if the reply may hold it
//! ([`ReplyValue::copy_up_to`]), else the lookup does nothing and says the request
//! must wait ([`Reply::Wait`]).
//!
//! ```text
//!   get big ─▶ lookup (lock): value longer than lease_over and in its own segment?
//!                 │yes: pin the segment ─▶ reply head written, ValueLease returned
//!                 ▼
//!   connection: while its reply buffer is low: read_lease (lock, copy a piece, unlock)
//!   item replaced/deleted/evicted meanwhile ─▶ segment orphaned, bytes unchanged
//!   end_lease (or drop + crawler) ─▶ orphan freed, bytes back to the budget
//! ```

use std::sync::Arc;

use super::held::{Held, Hold};

/// What pins a segment: leases hold it, the shard keeps a weak reference. The
/// segment's bytes are held ([`super::held`]) until the last lease drops it.
#[derive(Debug)]
pub struct PinToken {
    bytes: usize,
    held: Arc<Held>,
}

impl PinToken {
    /// A token for a segment of `bytes`, if what connections hold stays within `cap`.
    pub(super) fn take(held: &Arc<Held>, bytes: usize, cap: usize) -> Option<Arc<PinToken>> {
        held.take(Hold::Pinned, bytes, cap).then(|| {
            Arc::new(PinToken {
                bytes,
                held: held.clone(),
            })
        })
    }
}

impl Drop for PinToken {
    fn drop(&mut self) {
        self.held.give(Hold::Pinned, self.bytes);
    }
}

/// What [`super::shard::Shard::lease`] did.
pub enum LeaseTry {
    /// Pinned: the segment id and the token.
    Pinned(u32, Arc<PinToken>),
    /// The item shares its segment: it is copied.
    Shared,
    /// Replies pin a quarter of the limit already.
    OverCap,
}

/// How a lookup for a reply treats the value.
#[derive(Debug, Clone, Copy)]
pub struct ReplyValue {
    /// A value longer than this is leased when it can be.
    pub lease_over: usize,
    /// When it cannot be leased (replies pin too much), a value up to this long
    /// is copied all the same; a longer one waits ([`Reply::Wait`]).
    pub copy_up_to: usize,
}

impl ReplyValue {
    /// Every value copied (no lease).
    pub const COPY: ReplyValue = ReplyValue {
        lease_over: usize::MAX,
        copy_up_to: usize::MAX,
    };
}

/// The outcome of a lookup for a reply that found the item.
#[derive(Debug)]
pub enum Reply<R> {
    /// Served: the closure's result, and the lease when the value is to be streamed.
    Done(R, Option<ValueLease>),
    /// Nothing was done (the closure did not run, the item was not touched): the
    /// value can be neither copied nor leased now. Try again when
    /// [`Store::released`] changes.
    Wait,
}

/// A big item's value pinned for a reply that streams it.
#[derive(Debug)]
pub struct ValueLease {
    pub(super) shard: usize,
    pub(super) sid: u32,
    pub(super) pin: Arc<PinToken>,
    /// The value's offset in the segment, and its length.
    pub(super) at: usize,
    pub(super) len: usize,
}

impl ValueLease {
    pub(super) fn new(
        shard: usize,
        sid: u32,
        pin: Arc<PinToken>,
        at: usize,
        len: usize,
    ) -> ValueLease {
        ValueLease {
            shard,
            sid,
            pin,
            at,
            len,
        }
    }

    /// The value's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the value is empty (never: only long values are leased).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
