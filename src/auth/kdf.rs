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
//!
//! # A server's derivations: [`KdfQueue`]
//!
//! Failing an attempt at once when the budget is spent locks the *account* out: a
//! few clients sending wrong passwords take every token the moment it refills, and
//! the user's right password never gets one (four such clients made 20 of 20
//! correct logins fail). A server therefore queues derivations instead of failing
//! them, and throttles *connections*:
//!
//! ```text
//!   PLAIN, salted entry, not verified before ─▶ Job ─▶ first attempt on the conn? ─▶ fresh queue
//!        (the connection waits; it reads                        else (it failed before) ─▶ retry queue
//!         no further request meanwhile)        kdf thread: 3 fresh : 1 retry, FIFO within each,
//!                                              paced at ITERATIONS_PER_SECOND, one at a time;
//!                     connection resumed ◀──── result + notify (the worker's waker)
//! ```
//!
//! - A connection has at most one derivation queued (it waits for the answer), so
//!   each connection gets its turn: the user's attempt waits behind at most one
//!   attempt per attacking connection, about 20 ms each at 4096 iterations.
//! - A connection whose attempt failed queues behind first attempts (a quarter of
//!   the turns), so attackers reusing connections slow down themselves.
//! - A job whose connection went away before its turn is dropped without deriving:
//!   connecting, sending a password and closing costs the queue nothing.
//! - Each queue holds at most [`QUEUE_LEN`] jobs; an attempt that finds its queue
//!   full fails at once (`Auth failure.`), as before.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
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

/// Jobs each of the two queues of a [`KdfQueue`] holds: about five seconds of
/// derivations at 4096 iterations.
pub const QUEUE_LEN: usize = 256;

/// First attempts served for each retry when both queues have jobs.
const FRESH_PER_RETRY: u32 = 3;

/// Called when a job's result is in (the waiting connection's worker wakes).
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// A derived key's check: what to derive and what it must equal.
pub(super) struct Derivation {
    /// The salted entry's hash.
    pub hash: super::scram::ScramHash,
    /// The password the client sent.
    pub password: String,
    /// The entry's salt.
    pub salt: Vec<u8>,
    /// The entry's iterations.
    pub iterations: u32,
    /// The entry's salted password.
    pub key: Vec<u8>,
}

const PENDING: u8 = 0;
const MATCHED: u8 = 1;
const WRONG: u8 = 2;

/// One queued password check.
pub struct Job {
    what: Derivation,
    result: AtomicU8,
    notify: Notify,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// `None` while the derivation waits or runs; then whether the password matched.
    pub fn result(&self) -> Option<bool> {
        match self.result.load(Ordering::Acquire) {
            PENDING => None,
            r => Some(r == MATCHED),
        }
    }
}

/// The server's derivation queue and the thread that works it off (see the module
/// documentation). The thread ends when the queue is dropped.
#[derive(Debug)]
pub struct KdfQueue {
    fresh: Sender<Arc<Job>>,
    retry: Sender<Arc<Job>>,
    refused: AtomicUsize,
}

impl KdfQueue {
    /// Starts the thread.
    pub fn start() -> std::io::Result<KdfQueue> {
        let (fresh, fresh_rx) = crossbeam_channel::bounded(QUEUE_LEN);
        let (retry, retry_rx) = crossbeam_channel::bounded(QUEUE_LEN);
        std::thread::Builder::new()
            .name("kdf".into())
            .spawn(move || work(&fresh_rx, &retry_rx))?;
        Ok(KdfQueue {
            fresh,
            retry,
            refused: AtomicUsize::new(0),
        })
    }

    /// Queues a check (`retry`: the connection failed an attempt before); `None`
    /// when that queue is full (the attempt fails at once).
    pub(super) fn submit(&self, what: Derivation, retry: bool, notify: Notify) -> Option<Arc<Job>> {
        let job = Arc::new(Job {
            what,
            result: AtomicU8::new(PENDING),
            notify,
        });
        let q = if retry { &self.retry } else { &self.fresh };
        match q.try_send(job.clone()) {
            Ok(()) => Some(job),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Checks refused because a queue was full.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The thread: takes jobs (fresh first, a retry after every [`FRESH_PER_RETRY`]),
/// skips those nobody waits for, paces the derivations at [`ITERATIONS_PER_SECOND`]
/// (bursts of [`BURST_ITERATIONS`]).
fn work(fresh: &Receiver<Arc<Job>>, retry: &Receiver<Arc<Job>>) {
    let mut tokens = BURST_ITERATIONS;
    let mut last = Instant::now();
    let mut fresh_run = 0u32;
    loop {
        let first = if fresh_run >= FRESH_PER_RETRY {
            retry.try_recv().ok().or_else(|| fresh.try_recv().ok())
        } else {
            fresh.try_recv().ok().or_else(|| retry.try_recv().ok())
        };
        let job = match first {
            Some(j) => j,
            None => {
                // Both empty: wait for either (or the end of the queue).
                crossbeam_channel::select! {
                    recv(fresh) -> j => match j { Ok(j) => j, Err(_) => return },
                    recv(retry) -> j => match j { Ok(j) => j, Err(_) => return },
                }
            }
        };
        fresh_run = if fresh_run >= FRESH_PER_RETRY {
            0
        } else {
            fresh_run + 1
        };
        if Arc::strong_count(&job) == 1 {
            continue; // its connection closed: nobody waits for the answer
        }
        let refill = |tokens: &mut f64, last: &mut Instant| {
            let now = Instant::now();
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * ITERATIONS_PER_SECOND)
                .min(BURST_ITERATIONS);
            *last = now;
        };
        refill(&mut tokens, &mut last);
        if tokens <= 0.0 {
            std::thread::sleep(Duration::from_secs_f64(-tokens / ITERATIONS_PER_SECOND));
            refill(&mut tokens, &mut last);
        }
        tokens -= f64::from(job.what.iterations);
        let w = &job.what;
        let ok = w
            .hash
            .derive(&w.password, &w.salt, w.iterations)
            .is_some_and(|k| super::scram::ct_eq(&k, &w.key));
        job.result
            .store(if ok { MATCHED } else { WRONG }, Ordering::Release);
        (job.notify)();
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

    fn derivation(password: &str) -> Derivation {
        let salt = b"0123456789abcdef".to_vec();
        let key = super::super::scram::ScramHash::Sha256
            .derive("right", &salt, 64)
            .expect("derive");
        Derivation {
            hash: super::super::scram::ScramHash::Sha256,
            password: password.into(),
            salt,
            iterations: 64,
            key,
        }
    }

    #[test]
    fn queued_checks_answer_in_turn_and_abandoned_ones_are_skipped() {
        let q = KdfQueue::start().expect("thread");
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        let notify: Notify = Arc::new(move || {
            let _ = tx.send(());
        });
        let wrong = q
            .submit(derivation("wrong"), false, notify.clone())
            .expect("queued");
        let right = q
            .submit(derivation("right"), true, notify.clone())
            .expect("queued");
        // Nobody waits for this one: skipped, never notified.
        drop(q.submit(derivation("right"), false, notify.clone()));
        for _ in 0..2 {
            rx.recv_timeout(Duration::from_secs(10)).expect("notified");
        }
        assert_eq!((wrong.result(), right.result()), (Some(false), Some(true)));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        // A derivation that puts the budget in debt: the thread rests before the
        // next, so a full queue refuses at once.
        let mut big = derivation("wrong");
        big.iterations = 400_000;
        let _big = q.submit(big, false, notify.clone()).expect("queued");
        let held: Vec<_> = (0..QUEUE_LEN + 8)
            .filter_map(|_| q.submit(derivation("wrong"), true, notify.clone()))
            .collect();
        assert!(
            held.len() <= QUEUE_LEN + 1 && q.refused() > 0,
            "{}",
            held.len()
        );
    }

    #[test]
    fn a_derivation_larger_than_the_burst_runs_once_from_a_full_bucket() {
        let g = KdfGate::default();
        assert!(g.acquire(1_000_000).is_some());
        assert!(g.acquire(1).is_none(), "the bucket is in debt");
    }
}
