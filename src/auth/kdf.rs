//! The budget for password-hashing work (PBKDF2) that clients can trigger before they
//! have authenticated.
//!
//! Checking a `PLAIN` password against a salted entry runs PBKDF2 with the entry's
//! iteration count (milliseconds of CPU on a worker thread, which then serves no one
//! else). Anyone who can connect can ask for it, so it is bounded two ways:
//!
//! - **rate**: a token bucket of PBKDF2 iterations shared by the whole server,
//!   refilled at [`ITERATIONS_PER_SECOND`] up to [`BURST_ITERATIONS`]; an attempt
//!   that finds the bucket empty fails at once (`Auth failure.`) without hashing;
//! - **concurrency**: at most [`MAX_CONCURRENT`] derivations run at a time, so at
//!   most that many workers are busy hashing; an attempt that finds them all busy
//!   fails at once too.
//!
//! A password that was verified once is remembered as a keyed SHA-256 digest (see
//! `AuthDb::check_password`), so clients that reconnect with the right password do
//! not spend the budget; only wrong or new passwords do. SCRAM exchanges against a
//! plain password use a key derived once per user (`AuthDb::scram_secret`), so they
//! cost no PBKDF2 per attempt at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// Sustained PBKDF2 iterations per second the whole server spends on unverified
/// passwords: about 50 checks a second against entries of 4096 iterations, some
/// tens of milliseconds of CPU a second.
pub const ITERATIONS_PER_SECOND: f64 = 200_000.0;

/// Iterations the bucket holds when full (a burst of about 25 checks of 4096).
pub const BURST_ITERATIONS: f64 = 100_000.0;

/// Derivations that may run at the same time, server-wide.
pub const MAX_CONCURRENT: usize = 1;

/// The server-wide PBKDF2 budget.
#[derive(Debug)]
pub struct KdfGate {
    bucket: Mutex<(f64, Instant)>,
    running: AtomicUsize,
    refused: AtomicUsize,
}

impl Default for KdfGate {
    fn default() -> Self {
        KdfGate {
            bucket: Mutex::new((BURST_ITERATIONS, Instant::now())),
            running: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        }
    }
}

/// Permission to run one derivation; the slot is given back when it drops.
#[derive(Debug)]
pub struct KdfPermit<'a> {
    gate: &'a KdfGate,
}

impl Drop for KdfPermit<'_> {
    fn drop(&mut self) {
        self.gate.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl KdfGate {
    /// Asks to run a derivation of `iterations`; `None` when the rate or the
    /// concurrency bound says no (the caller then fails the attempt without hashing).
    /// A derivation larger than the whole burst is allowed when the bucket is full,
    /// and leaves it in debt.
    pub fn acquire(&self, iterations: u32) -> Option<KdfPermit<'_>> {
        if self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CONCURRENT).then_some(n + 1)
            })
            .is_err()
        {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let permit = KdfPermit { gate: self };
        let mut b = self.bucket.lock();
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * ITERATIONS_PER_SECOND;
        b.0 = (b.0 + refill).min(BURST_ITERATIONS);
        b.1 = now;
        if b.0 <= 0.0 {
            drop(b);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        b.0 -= f64::from(iterations);
        Some(permit)
    }

    /// Attempts refused so far (for logs and tests).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_runs_dry_and_one_derivation_runs_at_a_time() {
        let g = KdfGate::default();
        let mut granted = 0;
        for _ in 0..1000 {
            if g.acquire(4096).is_some() {
                granted += 1;
            }
        }
        // The burst plus what refills during the loop (microseconds): about 25.
        assert!((24..=30).contains(&granted), "granted {granted}");
        assert!(g.refused() >= 970);
        let g = KdfGate::default();
        let first = g.acquire(1);
        assert!(first.is_some());
        assert!(g.acquire(1).is_none(), "a second derivation while one runs");
        drop(first);
        assert!(g.acquire(1).is_some());
    }

    #[test]
    fn a_derivation_larger_than_the_burst_runs_once_from_a_full_bucket() {
        let g = KdfGate::default();
        assert!(g.acquire(1_000_000).is_some());
        assert!(g.acquire(1).is_none(), "the bucket is in debt");
    }
}
