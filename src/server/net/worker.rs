//! A worker thread: one `mio` event loop owning its connections for their whole life.
//!
//! New connections arrive in the worker's mailbox (a crossbeam queue) with a wake-up
//! through its `mio::Waker`. Each readiness event drives one connection
//! ([`Conn::drive`]); connections that stopped after `-R` requests go to a pending list
//! that is served again after the other ready connections had their turn, so one
//! pipelining client cannot starve the rest.
//!
//! TLS handshakes are work of another size (a signature: 0.2 ms with P-256, 0.7 ms
//! with RSA-2048) and anyone can ask for them, so they wait their turn: a readiness
//! event (or the arrival) of a connection still in its handshake queues it, and each
//! loop turn, after every established connection's event and the pending list, drives
//! queued handshakes for at most [`HANDSHAKE_TURN`] (at least one). While established
//! connections are busy, handshakes get at most [`HANDSHAKE_SHARE`] of the worker's
//! time (a budget refilled at that share of the time passing; the loop waits for it
//! in `epoll_wait`, serving established connections meanwhile). A handshake flood then
//! delays an established client's request by at most a turn's handshakes, instead of
//! by every handshake that became ready in the same `epoll_wait`, and cannot take the
//! whole worker from them.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::server::budget::{WorkerBuffers, WorkerMem};
use crate::server::net::conn::{Conn, Status};
use crate::server::net::listener::{Mailbox, NewConn};
use crate::server::net::transport::Transport;
use crate::server::shared::{ConnInfo, Shared};
use crate::stats::Counters;

const WAKER: Token = Token(usize::MAX);
/// Seconds a TLS handshake may take before the connection is closed (and counted
/// in `ssl_handshake_errors`): a client that connects and stalls holds a
/// connection slot for at most this long.
const HANDSHAKE_SECS: u32 = 10;
/// How often a worker with waiting connections looks whether the store gave memory
/// back (only then are they driven again).
const WAIT_POLL: Duration = Duration::from_millis(5);
/// Waiting connections are tried again this often even when the store gave nothing
/// back (replies other clients read free buffer budget, which may let them copy).
const WAIT_RETRY: Duration = Duration::from_millis(100);
/// Time a worker spends on queued TLS handshakes per loop turn (at least one
/// handshake is driven; established connections are served between turns).
pub const HANDSHAKE_TURN: Duration = Duration::from_micros(1000);
/// The share of a worker's time handshakes may take while established connections
/// are busy (when none is, they take what they need). Measured with RSA-2048 on one
/// pinned core under 1,350 offered handshakes/s (`compare --tls --workloads g`): at
/// 0.5 the established clients' p50 was 0.8-0.9x memcached's and 820-840
/// handshakes/s completed (memcached: 1,050); at 0.65, 1.2-1.8x and 1,020-1,190; at
/// 0.8, 7-17x; without a share (handshakes after every turn's established work),
/// 1-4x and 1,350.
pub const HANDSHAKE_SHARE: f64 = 0.5;

/// One event-loop thread.
pub struct Worker {
    id: usize,
    poll: Poll,
    waker: Arc<Waker>,
    tx: Sender<NewConn>,
    rx: Receiver<NewConn>,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    pending: VecDeque<usize>,
    /// Connections whose request waits for the store to give memory back, the
    /// store's release count when they last tried ([`crate::store::Store::released`]),
    /// and when that was.
    waiting: Vec<usize>,
    waiting_seen: u64,
    waiting_tried: Instant,
    /// Connections that are `watch` streams: driven when the waker fires.
    watchers: Vec<usize>,
    /// Connections waiting for a queued password check: driven when the waker
    /// fires (the derivation thread wakes us when an answer is in).
    auth_waiting: Vec<usize>,
    /// TLS connections still in their handshake, with when they were accepted.
    handshaking: Vec<(usize, u32)>,
    /// Handshaking connections with something to do (an event, or just accepted),
    /// driven after the established ones, [`HANDSHAKE_TURN`] per loop turn.
    hs_ready: VecDeque<usize>,
    /// `hs_queued[i]`: connection `i` is in `hs_ready`.
    hs_queued: Vec<bool>,
    /// An established connection (or the pending list) was served since the last
    /// handshake batch: handshakes then run only within their share.
    served_since_hs: bool,
    /// Handshake time the worker may still spend while established connections are
    /// busy (refilled at [`HANDSHAKE_SHARE`] of the time passing, at most
    /// [`HANDSHAKE_TURN`]; negative after a batch that overdrew it).
    hs_tokens: Duration,
    /// Overdrawn: how much `hs_tokens` is below zero.
    hs_debt: Duration,
    /// When `hs_tokens` was last refilled.
    hs_refilled: Instant,
    bufs: WorkerBuffers,
}

impl Worker {
    /// A worker with its own poll and mailbox.
    pub fn new(id: usize, shared: Arc<Shared>) -> std::io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = shared.observers.counters[id].clone();
        let mem = WorkerMem::new(
            shared.net.buffers.clone(),
            shared.net.buffer_stats[id].clone(),
        );
        Ok(Worker {
            id,
            poll,
            waker,
            tx,
            rx,
            shared,
            counters,
            conns: Vec::new(),
            free: Vec::new(),
            pending: VecDeque::new(),
            waiting: Vec::new(),
            waiting_seen: 0,
            waiting_tried: Instant::now(),
            watchers: Vec::new(),
            auth_waiting: Vec::new(),
            handshaking: Vec::new(),
            hs_ready: VecDeque::new(),
            hs_queued: Vec::new(),
            served_since_hs: false,
            hs_tokens: HANDSHAKE_TURN,
            hs_debt: Duration::ZERO,
            hs_refilled: Instant::now(),
            bufs: WorkerBuffers::new(mem),
        })
    }

    /// The waker that interrupts this worker's poll.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Where the acceptor sends new connections.
    pub fn mailbox(&self) -> Mailbox {
        Mailbox {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Runs the event loop until the server stops.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_sweep = self.shared.clock.now();
        loop {
            // Block without a timer unless something periodic needs this thread: an
            // idle-timeout sweep, or connections waiting for their next -R turn. (A
            // timed epoll_wait arms a kernel timer on every call.)
            let timeout = if !self.pending.is_empty() {
                Some(Duration::ZERO)
            } else if !self.waiting.is_empty() || !self.hs_ready.is_empty() {
                let mut t = Duration::MAX;
                if !self.waiting.is_empty() {
                    t = t.min(WAIT_POLL);
                }
                if !self.hs_ready.is_empty() {
                    t = t.min(self.handshake_wait());
                }
                Some(t)
            } else if self.shared.config.idle_timeout > 0 || !self.handshaking.is_empty() {
                Some(Duration::from_secs(1))
            } else {
                None
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::error!("worker {}: poll failed: {e}", self.id);
                break;
            }
            if self.shared.net.stopping.load(Ordering::Relaxed) {
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {
                        self.accept_new();
                        // Producers wake this worker when a watcher's queue fills.
                        for i in self.watchers.clone() {
                            self.drive(i);
                        }
                        // The derivation thread, when a password check is done.
                        for i in std::mem::take(&mut self.auth_waiting) {
                            self.drive(i);
                        }
                    }
                    Token(i) => {
                        let mut handshaking = false;
                        if let Some(Some(c)) = self.conns.get_mut(i) {
                            c.readiness(ev.is_read_closed() || ev.is_error());
                            handshaking = c.transport.is_handshaking();
                        }
                        if handshaking {
                            self.queue_handshake(i);
                        } else {
                            self.served_since_hs = true;
                            self.drive(i);
                        }
                    }
                }
            }
            for _ in 0..self.pending.len() {
                if let Some(i) = self.pending.pop_front() {
                    self.served_since_hs = true;
                    self.drive(i);
                }
            }
            self.retry_waiting();
            if !self.hs_ready.is_empty() && self.handshake_wait().is_zero() {
                self.drive_handshakes();
            }
            let now = self.shared.clock.now();
            if now != last_sweep {
                last_sweep = now;
                self.sweep_idle(now);
                self.sweep_handshakes(now);
            }
        }
        self.shutdown();
    }

    fn accept_new(&mut self) {
        while let Ok(nc) = self.rx.try_recv() {
            let NewConn {
                socket,
                peer,
                listen,
                tls,
            } = nc;
            let tls_config = match &self.shared.credentials.tls {
                Some(ctx) if tls => Some(ctx.clone()),
                _ => None,
            };
            let mut transport = match &tls_config {
                Some(ctx) => match rustls::ServerConnection::new(ctx.config()) {
                    Ok(mut c) => {
                        c.set_buffer_limit(Some(ctx.buffer_limit()));
                        Transport::tls(socket, c)
                    }
                    Err(e) => {
                        log::warn!("worker {}: TLS session for {peer}: {e}", self.id);
                        self.shared
                            .net
                            .conns
                            .curr_connections
                            .fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                },
                None => Transport::new(socket),
            };
            let idx = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.conns.push(None);
                    self.conns.len() - 1
                }
            };
            if let Err(e) = self.poll.registry().register(
                &mut transport,
                Token(idx),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                log::warn!("worker {}: register failed: {e}", self.id);
                self.free.push(idx);
                self.shared
                    .net
                    .conns
                    .curr_connections
                    .fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let info = Arc::new(ConnInfo {
                addr: peer,
                listen_addr: listen,
                last_cmd: AtomicU32::new(self.shared.clock.now()),
                state: AtomicU32::new(0),
            });
            let conn = Conn::new(transport, info.clone(), &self.shared, self.waker.clone());
            self.shared.net.registry.lock().insert(conn.fd, info);
            log::debug!("worker {}: new connection fd {}", self.id, conn.fd);
            self.conns[idx] = Some(conn);
            if tls_config.is_some() {
                self.handshaking.push((idx, self.shared.clock.now()));
                // Its ClientHello may be waiting: its turn comes after the
                // established connections'.
                self.queue_handshake(idx);
                continue;
            }
            // Data may already be waiting; edge-triggered readiness reports it, but
            // driving once now costs one read and never misses it.
            self.drive(idx);
        }
    }

    /// Queues a handshaking connection's work for [`Worker::drive_handshakes`].
    fn queue_handshake(&mut self, idx: usize) {
        if self.hs_queued.len() <= idx {
            self.hs_queued.resize(idx + 1, false);
        }
        if !self.hs_queued[idx] {
            self.hs_queued[idx] = true;
            self.hs_ready.push_back(idx);
        }
    }

    /// How long queued handshakes must wait: zero when no established connection
    /// was served since the last batch (nothing to protect) or their share has
    /// time left; else until it has.
    fn handshake_wait(&mut self) -> Duration {
        let now = Instant::now();
        let earned = now
            .duration_since(self.hs_refilled)
            .mul_f64(HANDSHAKE_SHARE);
        self.hs_refilled = now;
        if self.hs_debt > Duration::ZERO {
            let paid = earned.min(self.hs_debt);
            self.hs_debt -= paid;
            self.hs_tokens = (earned - paid).min(HANDSHAKE_TURN);
        } else {
            self.hs_tokens = (self.hs_tokens + earned).min(HANDSHAKE_TURN);
        }
        if !self.served_since_hs || self.hs_debt.is_zero() {
            Duration::ZERO
        } else {
            self.hs_debt.div_f64(HANDSHAKE_SHARE)
        }
    }

    /// Drives queued handshakes, oldest first, for at most [`HANDSHAKE_TURN`] (at
    /// least one), and charges the time to the handshakes' share.
    fn drive_handshakes(&mut self) {
        let start = Instant::now();
        while let Some(i) = self.hs_ready.pop_front() {
            if let Some(q) = self.hs_queued.get_mut(i) {
                *q = false;
            }
            self.drive(i);
            if start.elapsed() >= HANDSHAKE_TURN {
                break;
            }
        }
        let spent = start.elapsed();
        if spent > self.hs_tokens {
            // Overdrawn: at most a turn's worth of debt is kept.
            self.hs_debt = (self.hs_debt + spent - self.hs_tokens).min(HANDSHAKE_TURN);
            self.hs_tokens = Duration::ZERO;
        } else {
            self.hs_tokens -= spent;
        }
        self.served_since_hs = false;
    }

    fn drive(&mut self, idx: usize) {
        let Some(Some(conn)) = self.conns.get_mut(idx) else {
            return;
        };
        // A bug that panics while serving one connection closes that connection;
        // the worker and its other clients carry on.
        let shared = &self.shared;
        let counters = &self.counters;
        let bufs = &mut self.bufs;
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conn.drive(shared, counters, bufs)
        }))
        .unwrap_or_else(|_| {
            log::error!(
                "worker {}: internal error serving fd {}; closing it",
                self.id,
                conn.fd
            );
            Status::Close
        });
        if conn.is_watching() && !self.watchers.contains(&idx) {
            self.watchers.push(idx);
        }
        if conn.is_waiting() && !self.auth_waiting.contains(&idx) {
            self.auth_waiting.push(idx);
        }
        match status {
            Status::Idle => {}
            Status::Pending => {
                if !self.pending.contains(&idx) {
                    self.pending.push_back(idx);
                }
            }
            Status::Wait => {
                if !self.waiting.contains(&idx) {
                    self.waiting.push(idx);
                }
            }
            Status::Close => self.close(idx),
        }
    }

    /// Drives the connections waiting for the store to give memory back, once it has
    /// given some since they last tried (or the buffer budget may have room again:
    /// every [`WAIT_RETRY`] at the latest).
    fn retry_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let released = self.shared.store.released();
        if released == self.waiting_seen && self.waiting_tried.elapsed() < WAIT_RETRY {
            return;
        }
        self.waiting_seen = released;
        self.waiting_tried = Instant::now();
        for i in std::mem::take(&mut self.waiting) {
            self.drive(i);
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.transport);
            conn.release(&mut self.bufs);
            self.shared.net.registry.lock().remove(&conn.fd);
            self.shared
                .net
                .conns
                .curr_connections
                .fetch_sub(1, Ordering::Relaxed);
            log::debug!("worker {}: closed fd {}", self.id, conn.fd);
            self.free.push(idx);
        }
        self.pending.retain(|&i| i != idx);
        self.waiting.retain(|&i| i != idx);
        self.watchers.retain(|&i| i != idx);
        self.auth_waiting.retain(|&i| i != idx);
        self.handshaking.retain(|&(i, _)| i != idx);
        if self.hs_queued.get(idx).copied().unwrap_or(false) {
            self.hs_queued[idx] = false;
            self.hs_ready.retain(|&i| i != idx);
        }
    }

    /// Closes TLS connections whose handshake has taken more than
    /// [`HANDSHAKE_SECS`]; forgets those whose handshake is done.
    fn sweep_handshakes(&mut self, now: u32) {
        let mut stalled = Vec::new();
        let conns = &self.conns;
        self.handshaking
            .retain(|&(i, since)| match conns.get(i).and_then(Option::as_ref) {
                Some(c) if c.transport.is_handshaking() => {
                    if now.saturating_sub(since) >= HANDSHAKE_SECS {
                        stalled.push(i);
                    }
                    true
                }
                _ => false,
            });
        for i in stalled {
            log::info!(
                "worker {}: closing a connection whose TLS handshake took over {HANDSHAKE_SECS} s",
                self.id
            );
            if let Some(tls) = &self.shared.credentials.tls {
                tls.handshake_errors.fetch_add(1, Ordering::Relaxed);
            }
            self.close(i);
        }
    }

    fn sweep_idle(&mut self, now: u32) {
        let limit = self.shared.config.idle_timeout;
        if limit == 0 {
            return;
        }
        let idle: Vec<usize> = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.as_ref()
                    // A watcher sends no requests (memcached's logger thread owns them).
                    .filter(|c| !c.is_watching() && now.saturating_sub(c.last_cmd()) > limit)
                    .map(|_| i)
            })
            .collect();
        for i in idle {
            log::info!("worker {}: closing idle connection", self.id);
            crate::stats::bump(&self.counters.idle_kicks, 1);
            if let Some(Some(c)) = self.conns.get_mut(i) {
                c.set_close_reason(crate::server::admin::watch::CloseReason::IdleTimeout);
            }
            self.close(i);
        }
    }

    fn shutdown(&mut self) {
        for i in 0..self.conns.len() {
            if let Some(Some(c)) = self.conns.get_mut(i) {
                c.finish(&self.counters);
            }
            self.close(i);
        }
    }
}
