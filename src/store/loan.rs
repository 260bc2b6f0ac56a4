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
use super::Store;

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

impl Store {
    /// Bytes [`Store::lend`] may still give (before eviction decides).
    pub fn lendable(&self) -> usize {
        let left = self
            .ctx
            .held_cap()
            .saturating_sub(self.ctx.held.bytes(Hold::Lent));
        if self.ctx.evict {
            left
        } else {
            left.min(self.mem_limit().saturating_sub(self.mem_used()))
        }
    }

    /// Bytes lent now.
    pub fn lent(&self) -> usize {
        self.ctx.held.bytes(Hold::Lent)
    }

    /// Lends `n` bytes of the item budget for a value being received: from free
    /// budget, else freed by evicting from the shards (the one that owns the most
    /// first, locking one at a time). None when a quarter of the limit is lent
    /// already (`held.rs`) or the store cannot free them (with `-M`, only free
    /// budget is lent). Locks no shard while another is held.
    pub fn lend(&self, n: usize) -> Option<Loan> {
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

#[cfg(test)]
mod tests {
    use super::super::{Clock, StoreConfig, StoreOp, StoreOutcome};
    use super::*;

    #[test]
    fn loans_evict_for_their_bytes_stay_within_a_quarter_and_are_given_back() {
        let cfg = StoreConfig {
            mem_limit: 16 << 20,
            shards: 4,
            ..StoreConfig::default()
        };
        let s = Store::new(cfg, Arc::new(Clock::starting_at(1_700_000_000)));
        // Fill the cache: a loan must evict for its bytes.
        for i in 0..200 {
            let key = format!("k{i}");
            s.store(StoreOp::Set, key.as_bytes(), 0, 0, &[b'x'; 100_000]);
        }
        let full = s.mem_used();
        let a = s.lend(2 << 20).expect("lent by evicting");
        assert!(s.mem_used() <= 16 << 20 && s.stats().total_malloced < full as u64);
        let b = s.lend(2 << 20).expect("a quarter of 16 MiB is 4 MiB");
        assert!(s.lend(1).is_none(), "past a quarter");
        assert_eq!(s.lendable(), 0);
        let used = s.mem_used();
        let e = s.released();
        drop(a);
        assert_eq!(s.mem_used(), used - (2 << 20));
        assert_ne!(s.released(), e);
        let mut c = s.lend(1 << 20).expect("room again");
        c.absorb(s.lend(1 << 20).expect("and again"));
        assert_eq!(c.bytes(), 2 << 20);
        assert!(s.lend(1).is_none());
        drop((b, c));
        assert_eq!(s.lent(), 0);
        assert_eq!(
            s.store(StoreOp::Set, b"after", 0, 0, b"v"),
            StoreOutcome::Stored
        );
    }
}
