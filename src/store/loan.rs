//! Memory of `-m` lent to values being received (issue #24, point 1).
//!
//! memcached allocates an item from `-m` when a storage command's line arrives and
//! reads the value straight into it: values in flight take their memory from the
//! cache, evicting what they must. The server receives a value into its connection's
//! read buffer, which the buffer budget pays for; when that budget is spent (clients
//! that announce large values and stall can spend it), the bytes are taken from the
//! store instead, as memcached takes them: [`Store::lend`] reserves them in the item
//! budget, evicting as a store would, and the [`Loan`] gives them back when dropped
//! (the read buffer shrinks). So a client storing a value is refused only when both
//! the buffer budget and the part of `-m` values in flight may take are spent:
//!
//! ```text
//!   value of n bytes announced ─▶ buffer budget has n? ──yes──▶ receive
//!                                        │no
//!                                        ▼
//!        lent + n ≤ -m / 4 and the store frees n (evicting)? ──yes──▶ receive
//!                                        │no                               (Loan)
//!                                        ▼
//!                 SERVER_ERROR out of memory storing object (as memcached)
//! ```
//!
//! At most a quarter of `-m` is lent at once ([`super::held`]; replies that pin values
//! may hold another quarter), so stalled uploads can push at most a quarter of the
//! cache out (memcached lets them take all of it).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::held::{Held, Hold};
use super::shards::Shards;

/// Bytes of the item budget lent to a connection's read buffer; given back on drop.
#[derive(Debug)]
pub struct Loan {
    bytes: usize,
    /// The item budget's bytes in use (the store's), and what connections hold.
    used: Arc<AtomicUsize>,
    held: Arc<Held>,
}

impl Loan {
    /// Bytes lent.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `other` into this loan (one buffer grown twice).
    pub fn absorb(&mut self, mut other: Loan) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.used.fetch_sub(self.bytes, Ordering::AcqRel);
            self.held.give(Hold::Lent, self.bytes);
        }
    }
}

impl Shards {
    /// Bytes [`Store::lend`] may still give (before eviction decides).
    pub(super) fn lendable(&self) -> usize {
        let left = self
            .ctx
            .held_cap()
            .saturating_sub(self.ctx.held.bytes(Hold::Lent));
        if self.ctx.evict {
            left
        } else {
            left.min(self.ctx.limit().saturating_sub(self.ctx.used()))
        }
    }

    /// Bytes lent now.
    pub(super) fn lent(&self) -> usize {
        self.ctx.held.bytes(Hold::Lent)
    }

    /// Lends `n` bytes of the item budget for a value being received: from free
    /// budget, else freed by evicting from the shards (the one that owns the most
    /// first, locking one at a time). None when a quarter of the limit is lent
    /// already (`held.rs`) or the store cannot free them (with `-M`, only free
    /// budget is lent). Locks no shard while another is held.
    pub(super) fn lend(&self, n: usize) -> Option<Loan> {
        if !self.ctx.held.take(Hold::Lent, n, self.ctx.held_cap()) {
            return None;
        }
        let got = if self.ctx.budget_reserve(n) {
            n
        } else if self.ctx.evict {
            // Every shard is a victim: none is the caller's.
            self.reclaim(self.shards.len(), n, 0)
        } else {
            0
        };
        if got < n {
            // reclaim gave back what it held when it could not make up n.
            self.ctx.held.give(Hold::Lent, n);
            return None;
        }
        if got > n {
            self.ctx.budget_release(got - n);
        }
        Some(Loan {
            bytes: n,
            used: self.ctx.used.clone(),
            held: self.ctx.held.clone(),
        })
    }
}
