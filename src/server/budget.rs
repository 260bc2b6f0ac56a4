//! One budget for all connection memory: read buffers, values being received,
//! replies waiting to be sent (`-o conn_buffer_limit=<megabytes>`).
//!
//! ```text
//!   MemBudget (server-wide)     limit ─────────────────────────────┐
//!     used: AtomicUsize  ◀── charged in ≥ SLACK steps ── WorkerMem (one per worker)
//!                                                         actual = pooled buffers
//!                                                                + Σ session buffers
//! ```
//!
//! Every connection may always hold its *floor* — a 16 KiB read buffer while it has
//! input and [`OUT_FLOOR`] of replies — even when the budget is spent, so every
//! connection keeps making progress. Beyond the floor it asks the budget:
//!
//! - **A value (or binary body) larger than the read buffer** is reserved whole when
//!   its request line or header arrives, as memcached allocates the item up front.
//!   If the budget cannot cover it, the store lends the bytes from `-m`
//!   (`store::loan`, evicting as memcached's allocation would); if that is spent too,
//!   the request is refused the way memcached refuses
//!   a store it cannot allocate — `SERVER_ERROR out of memory storing object`
//!   (binary: `Out of memory`), the data swallowed as it arrives, a `set`'s old value
//!   unlinked — and counted. A connection that has not authenticated (`-S`, `-Y`)
//!   gets no budget: its requests must fit the floor.
//! - **A request line longer than the read buffer** (a huge multi-get) grows the
//!   buffer step by step while the budget allows; when it does not, the connection is
//!   closed and counted.
//! - **Replies** beyond [`OUT_FLOOR`] may wait for a client only while the budget
//!   has room (at most [`OUT_HIGH`] per connection): a connection over its share
//!   stops reading and executing until the client reads (a multi-get is suspended
//!   between keys). A value longer than the share is streamed from the store a
//!   piece at a time (`store::lease`), so a reply holds one piece of it.
//!
//! Accounting is per worker without atomics on the request path: a worker keeps what
//! its buffers hold (`actual`) and what it has charged to the server-wide counter
//! (`charged`), and settles the difference when it exceeds [`SLACK`]. Reservations
//! for values are charged at once, with a compare-and-swap against the limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The read buffer a connection borrows while it has input (and the floor of what
/// it may hold).
pub const READ_BUF: usize = 16 << 10;
/// Read buffers a worker keeps for reuse.
const POOL_MAX: usize = 64;

/// Replies a connection may always have waiting, budget or not.
pub const OUT_FLOOR: usize = 32 << 10;
/// Most replies one connection may have waiting, however much budget is free.
pub const OUT_HIGH: usize = 4 << 20;
/// How far a worker's own count may drift from what it has charged server-wide.
pub const SLACK: usize = 256 << 10;

/// The server-wide budget.
#[derive(Debug)]
pub struct MemBudget {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    /// Values refused for lack of budget.
    pub refused_values: AtomicU64,
    /// Connections closed because a request line could not get a larger buffer.
    pub closed_lines: AtomicU64,
    /// Times a connection stopped serving because its replies used its share.
    pub output_stalls: AtomicU64,
}

impl MemBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemBudget {
        MemBudget {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refused_values: AtomicU64::new(0),
            closed_lines: AtomicU64::new(0),
            output_stalls: AtomicU64::new(0),
        }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now (all workers, within their slack).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Most bytes ever charged at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        let now = self.used.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Charges `n` bytes if that stays within the limit.
    fn try_add(&self, n: usize) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            });
        match ok {
            Ok(before) => {
                self.peak.fetch_max(before + n, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

/// What one worker's buffers hold, for `stats` (written by the worker only, read by
/// whoever asks).
#[derive(Debug, Default)]
pub struct BufferStats {
    /// Read buffers held by connections.
    pub read_count: AtomicUsize,
    /// Their bytes.
    pub read_bytes: AtomicUsize,
    /// Bytes of spare read buffers kept for reuse.
    pub read_free_bytes: AtomicUsize,
    /// Connections with a reply buffer.
    pub resp_count: AtomicUsize,
    /// Reply buffer bytes.
    pub resp_bytes: AtomicUsize,
}

/// A worker's share of the accounting.
#[derive(Debug)]
pub struct WorkerMem {
    global: Arc<MemBudget>,
    /// Bytes this worker's buffers hold (as last reported by its connections).
    actual: usize,
    /// Bytes this worker has charged to `global`.
    charged: usize,
    stats: Arc<BufferStats>,
}

/// Moves an atomic tally by `delta` (only its owner writes it).
fn tally(a: &AtomicUsize, add: usize, sub: usize) {
    let v = a.load(Ordering::Relaxed);
    a.store((v + add).saturating_sub(sub), Ordering::Relaxed);
}

impl WorkerMem {
    /// A worker's accounting against `global`, published in `stats`.
    pub fn new(global: Arc<MemBudget>, stats: Arc<BufferStats>) -> WorkerMem {
        WorkerMem {
            global,
            actual: 0,
            charged: 0,
            stats,
        }
    }

    /// A connection's read buffer went from `old` to `new` bytes of capacity.
    pub fn read_buffer(&mut self, old: usize, new: usize) {
        let s = &self.stats;
        tally(&s.read_bytes, new, old);
        tally(&s.read_count, usize::from(new > 0), usize::from(old > 0));
        self.changed(old, new);
    }

    /// A connection's reply buffer went from `old` to `new` bytes of capacity.
    pub fn reply_buffer(&mut self, old: usize, new: usize) {
        let s = &self.stats;
        tally(&s.resp_bytes, new, old);
        tally(&s.resp_count, usize::from(new > 0), usize::from(old > 0));
        self.changed(old, new);
    }

    /// The spare read buffers went from `old` to `new` bytes.
    pub fn spare_buffers(&mut self, old: usize, new: usize) {
        tally(&self.stats.read_free_bytes, new, old);
        self.changed(old, new);
    }

    fn changed(&mut self, old: usize, new: usize) {
        if new > old {
            self.grew(new - old);
        } else {
            self.shrank(old - new);
        }
    }

    /// The server-wide budget.
    pub fn global(&self) -> &MemBudget {
        &self.global
    }

    /// Buffers grew by `n` bytes.
    fn grew(&mut self, n: usize) {
        self.actual += n;
        if self.actual > self.charged + SLACK {
            self.global.add(self.actual - self.charged);
            self.charged = self.actual;
        }
    }

    /// Buffers shrank by `n` bytes.
    fn shrank(&mut self, n: usize) {
        self.actual = self.actual.saturating_sub(n);
        if self.charged > self.actual + SLACK {
            self.global.sub(self.charged - self.actual);
            self.charged = self.actual;
        }
    }

    /// Bytes the budget can still give (server-wide, counting this worker's
    /// unsettled growth).
    pub fn room(&self) -> usize {
        let pending = self.actual.saturating_sub(self.charged);
        self.global
            .limit
            .saturating_sub(self.global.used().saturating_add(pending))
    }

    /// Reserves `n` bytes at once (a value about to be received); false when the
    /// budget cannot cover them. On success the caller grows its read buffer by `n`
    /// and reports it with [`WorkerMem::read_buffer`], which then charges nothing
    /// more for those bytes.
    pub fn reserve(&mut self, n: usize) -> bool {
        let pending = self.actual.saturating_sub(self.charged);
        if !self.global.try_add(n + pending) {
            return false;
        }
        // Charged ahead of `actual`: the coming growth settles against it.
        self.charged = self.actual.max(self.charged) + n;
        true
    }
}

impl Drop for WorkerMem {
    fn drop(&mut self) {
        self.global.sub(self.charged);
    }
}

/// A worker's connection buffers: spare read buffers that connections borrow while
/// they have input and give back when idle, and the worker's accounting against the
/// server-wide buffer budget (which counts the spare buffers too).
pub struct WorkerBuffers {
    free: Vec<Vec<u8>>,
    /// This worker's share of the buffer budget.
    pub mem: WorkerMem,
}

impl WorkerBuffers {
    /// No spare buffers yet.
    pub fn new(mem: WorkerMem) -> WorkerBuffers {
        WorkerBuffers {
            free: Vec::new(),
            mem,
        }
    }

    /// A read buffer of [`READ_BUF`] bytes: a spare one, or a new one.
    pub fn take(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(b) => {
                // It leaves the pool; the connection counts it from now on.
                let n = self.free.len();
                self.mem.spare_buffers((n + 1) * READ_BUF, n * READ_BUF);
                b
            }
            None => vec![0; READ_BUF],
        }
    }

    /// Takes a read buffer back for reuse (kept only if it has not grown).
    pub fn give(&mut self, buf: Vec<u8>) {
        // Grown buffers (a large value or a long multi-get) are not kept.
        if buf.len() == READ_BUF && buf.capacity() == READ_BUF && self.free.len() < POOL_MAX {
            let n = self.free.len();
            self.mem.spare_buffers(n * READ_BUF, (n + 1) * READ_BUF);
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_changes_settle_in_steps_and_reservations_respect_the_limit() {
        let g = Arc::new(MemBudget::new(1 << 20));
        let st = Arc::new(BufferStats::default());
        let mut w = WorkerMem::new(g.clone(), st.clone());
        w.read_buffer(0, 16 << 10);
        assert_eq!(g.used(), 0, "within the slack nothing is charged");
        assert_eq!(w.room(), (1 << 20) - (16 << 10));
        w.reply_buffer(0, SLACK);
        assert_eq!(g.used(), SLACK + (16 << 10));
        assert!(w.reserve(512 << 10));
        assert_eq!(g.used(), SLACK + (528 << 10));
        // The read buffer grows into the reservation: nothing more is charged.
        w.read_buffer(16 << 10, 528 << 10);
        assert_eq!(g.used(), SLACK + (528 << 10));
        assert!(!w.reserve(512 << 10), "over the limit");
        assert_eq!(st.read_bytes.load(Ordering::Relaxed), 528 << 10);
        assert_eq!(st.read_count.load(Ordering::Relaxed), 1);
        w.read_buffer(528 << 10, 16 << 10);
        w.reply_buffer(SLACK, 0);
        // Settled down to what is held, give or take the slack.
        assert!(g.used() >= 16 << 10 && g.used() <= (16 << 10) + SLACK);
        let mut other = WorkerMem::new(g.clone(), Arc::default());
        assert!(other.reserve(700 << 10));
        assert!(w.room() < 100 << 10);
        drop(other);
        drop(w);
        assert_eq!(g.used(), 0);
        assert!(g.peak() >= (1 << 20) - (100 << 10));
    }
}
