//! Values streamed to a reply from the store instead of copied whole (issue #24,
//! point 2).
//!
//! A reply is normally composed under the shard lock, the value copied into the
//! connection's reply buffer. A client that asks for large values and never reads
//! would then hold a copy of each (60 such clients of 16 MB values: +939 MiB). memcached
//! sends from the item itself, holding a reference. Here a lookup for a reply
//! ([`Store::get_reply`], [`Store::meta_get_reply`]) may instead *lease* a value longer
//! than the reply may hold: the item's own segment is pinned (not reused or freed, even
//! when the item goes: see `shard.rs`, "Leases"), and the connection copies the value
//! out a piece at a time ([`Store::read_lease`]) as its client reads, so it holds one
//! piece, not the value. Pinned memory stays counted in `-m`; a lease is dropped when
//! the reply is done ([`Store::end_lease`]) or the connection closes (the segment is
//! then freed by the next crawler step).
//!
//! ```text
//!   get big ─▶ lookup (lock): value longer than copy_max and in its own segment?
//!                 │yes: pin the segment ─▶ reply head written, ValueLease returned
//!                 ▼
//!   connection: while its reply buffer is low: read_lease (lock, copy a piece, unlock)
//!   item replaced/deleted/evicted meanwhile ─▶ segment orphaned, bytes unchanged
//!   end_lease (or drop + crawler) ─▶ orphan freed, bytes back to the budget
//! ```

use std::sync::Arc;

use super::Store;

/// A big item's value pinned for a reply that streams it.
#[derive(Debug)]
pub struct ValueLease {
    shard: usize,
    sid: u32,
    pin: Arc<()>,
    /// The value's offset in the segment, and its length.
    at: usize,
    len: usize,
}

impl ValueLease {
    pub(super) fn new(shard: usize, sid: u32, pin: Arc<()>, at: usize, len: usize) -> ValueLease {
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

impl Store {
    /// Appends up to `max` bytes of the leased value, from offset `from`, to `out`
    /// (one shard lock). Returns the bytes appended; 0 when `from` is at the end, or
    /// when the lease does not match its segment (which would be a bug: the caller
    /// then closes the connection rather than send a wrong value).
    pub fn read_lease(
        &self,
        lease: &ValueLease,
        from: usize,
        max: usize,
        out: &mut Vec<u8>,
    ) -> usize {
        let n = max.min(lease.len.saturating_sub(from));
        if n == 0 {
            return 0;
        }
        let Some(sh) = self.shards.get(lease.shard) else {
            return 0;
        };
        let sh = sh.lock();
        let start = lease.at + from;
        match sh
            .leased(lease.sid, &lease.pin)
            .and_then(|d| d.get(start..start + n))
        {
            Some(b) => {
                out.extend_from_slice(b);
                n
            }
            None => 0,
        }
    }

    /// The reply is done with the value: the segment is unpinned, and freed at once
    /// if its item is gone and no other lease holds it.
    pub fn end_lease(&self, lease: ValueLease) {
        let shard = lease.shard;
        drop(lease);
        if let Some(sh) = self.shards.get(shard) {
            sh.lock().reap_orphans(&self.ctx);
        }
    }
}
