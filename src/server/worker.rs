//! A worker thread: one `mio` event loop owning its connections for their whole life.
//!
//! New connections arrive in the worker's mailbox (a crossbeam queue) with a wake-up
//! through its `mio::Waker`. Each readiness event drives one connection
//! ([`Conn::drive`]); connections that stopped after `-R` requests go to a pending list
//! that is served again after the other ready connections had their turn, so one
//! pipelining client cannot starve the rest.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};

use super::budget::{WorkerBuffers, WorkerMem};
use super::conn::{Conn, Status};
use super::listener::{Mailbox, NewConn};
use super::shared::{ConnInfo, Shared};
use super::transport::Transport;
use crate::stats::Counters;

const WAKER: Token = Token(usize::MAX);
/// Seconds a TLS handshake may take before the connection is closed (and counted
/// in `ssl_handshake_errors`): a client that connects and stalls holds a
/// connection slot for at most this long.
const HANDSHAKE_SECS: u32 = 10;

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
    /// Connections that are `watch` streams: driven when the waker fires.
    watchers: Vec<usize>,
    /// TLS connections still in their handshake, with when they were accepted.
    handshaking: Vec<(usize, u32)>,
    bufs: WorkerBuffers,
}

impl Worker {
    /// A worker with its own poll and mailbox.
    pub fn new(id: usize, shared: Arc<Shared>) -> std::io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = shared.counters[id].clone();
        let mem = WorkerMem::new(shared.buffers.clone(), shared.buffer_stats[id].clone());
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
            watchers: Vec::new(),
            handshaking: Vec::new(),
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
            if self.shared.stopping.load(Ordering::Relaxed) {
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
                    }
                    Token(i) => {
                        if let Some(Some(c)) = self.conns.get_mut(i) {
                            c.readiness(ev.is_read_closed() || ev.is_error());
                        }
                        self.drive(i);
                    }
                }
            }
            for _ in 0..self.pending.len() {
                if let Some(i) = self.pending.pop_front() {
                    self.drive(i);
                }
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
            self.shared.registry.lock().insert(conn.fd, info);
            log::debug!("worker {}: new connection fd {}", self.id, conn.fd);
            self.conns[idx] = Some(conn);
            if tls_config.is_some() {
                self.handshaking.push((idx, self.shared.clock.now()));
            }
            // Data may already be waiting; edge-triggered readiness reports it, but
            // driving once now costs one read and never misses it.
            self.drive(idx);
        }
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
        match status {
            Status::Idle => {}
            Status::Pending => {
                if !self.pending.contains(&idx) {
                    self.pending.push_back(idx);
                }
            }
            Status::Close => self.close(idx),
        }
    }

    fn close(&mut self, idx: usize) {
        if let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) {
            let _ = self.poll.registry().deregister(&mut conn.transport);
            conn.release(&mut self.bufs);
            self.shared.registry.lock().remove(&conn.fd);
            self.shared
                .conns
                .curr_connections
                .fetch_sub(1, Ordering::Relaxed);
            log::debug!("worker {}: closed fd {}", self.id, conn.fd);
            self.free.push(idx);
        }
        self.pending.retain(|&i| i != idx);
        self.watchers.retain(|&i| i != idx);
        self.handshaking.retain(|&(i, _)| i != idx);
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
                c.set_close_reason(super::watch::CloseReason::IdleTimeout);
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
