//! Memory of `-m` that connections hold beyond the eviction's reach: bytes lent to
//! values being received ([`super::Loan`]) and segments pinned by values being sent
//! ([`super::ValueLease`]). Clients that never finish an upload or never read a reply
//! can hold such memory indefinitely, so each kind may hold at most a quarter of the
//! limit: the other half can always be evicted for everyone else's stores, and
//! clients that never read cannot take what stalled uploads leave for other uploads,
//! nor the reverse. Past its cap a loan is refused (the store is refused as out of
//! memory, as memcached refuses an item it cannot allocate) and a lease is not
//! granted (the reply copies the value if the connection's buffer share allows, else
//! waits for held memory to be given back: [`Held::released`] tells waiting
//! connections when to try again).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// What is held, by kind, and how often something was given back.
#[derive(Debug, Default)]
pub struct Held {
    lent: AtomicUsize,
    pinned: AtomicUsize,
    /// Bumped whenever bytes are given back.
    released: AtomicU64,
}

/// Which kind of holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Lent to a value being received.
    Lent,
    /// Pinned by a value being sent.
    Pinned,
}

impl Held {
    fn of(&self, kind: Hold) -> &AtomicUsize {
        match kind {
            Hold::Lent => &self.lent,
            Hold::Pinned => &self.pinned,
        }
    }

    /// Takes `n` bytes if what is held of `kind` stays within `cap` (or nothing of it
    /// is held yet: one value larger than the cap may always be held).
    pub fn take(&self, kind: Hold, n: usize, cap: usize) -> bool {
        self.of(kind)
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| {
                let after = t.checked_add(n)?;
                (t == 0 || after <= cap).then_some(after)
            })
            .is_ok()
    }

    /// Gives `n` bytes back.
    pub fn give(&self, kind: Hold, n: usize) {
        self.of(kind).fetch_sub(n, Ordering::AcqRel);
        self.released.fetch_add(1, Ordering::AcqRel);
    }

    /// Bytes held of `kind`.
    pub fn bytes(&self, kind: Hold) -> usize {
        self.of(kind).load(Ordering::Relaxed)
    }

    /// Changes whenever held bytes are given back.
    pub fn released(&self) -> u64 {
        self.released.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_cap_and_one_value_may_exceed_it() {
        let h = Held::default();
        assert!(
            h.take(Hold::Pinned, 100, 50),
            "the first may exceed the cap"
        );
        assert!(!h.take(Hold::Pinned, 1, 50));
        assert!(h.take(Hold::Lent, 50, 50), "the other kind has its own cap");
        assert!(!h.take(Hold::Lent, 1, 50));
        let e = h.released();
        h.give(Hold::Pinned, 100);
        assert_ne!(h.released(), e);
        assert!(h.take(Hold::Pinned, 20, 50));
        assert!(h.take(Hold::Pinned, 30, 50));
        assert!(!h.take(Hold::Pinned, 1, 50));
        assert_eq!((h.bytes(Hold::Lent), h.bytes(Hold::Pinned)), (50, 50));
    }
}
