//! One node's side of the cluster: its idle connections and its health.
//!
//! ```text
//!  healthy ── failure ──▶ failures += 1 ── failures == limit ──▶ ejected (until now + retry)
//!     ▲                                                              │
//!     └── success resets ◀── back in the ring (one more failure ejects again) ◀── retry time
//! ```
//!
//! This is libmemcached's `REMOVE_FAILED_SERVERS` with `server_failure_limit` and
//! `retry_timeout`: an ejected node leaves the ring (its keys move to the next points)
//! and comes back once its retry time has passed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::Result;
use super::node::{ConnOptions, NodeConn};
use super::ring::NodeSpec;
use super::tls::Connector;

/// Counters of one node, as [`super::Client::node_status`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// `host:port`.
    pub name: String,
    /// In the ring now.
    pub live: bool,
    /// Consecutive failures so far.
    pub failures: u32,
    /// Times the node was ejected.
    pub ejections: u64,
    /// Times it came back after its retry time.
    pub revivals: u64,
    /// Requests sent to it.
    pub requests: u64,
    /// Requests that failed with a node failure (I/O, protocol).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    ejected_until: Option<Instant>,
}

/// A node: spec, pool, health.
#[derive(Debug)]
pub struct Node {
    /// As configured.
    pub spec: NodeSpec,
    idle: Mutex<Vec<NodeConn>>,
    health: Mutex<Health>,
    ejections: AtomicU64,
    revivals: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
}

/// What a failure did to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Counted; the node stays.
    Counted,
    /// The node was ejected now.
    Ejected,
    /// The node had already been ejected (by a concurrent request).
    AlreadyOut,
}

impl Node {
    /// A node with no connections yet.
    pub fn new(spec: NodeSpec) -> Node {
        Node {
            spec,
            idle: Mutex::new(Vec::new()),
            health: Mutex::new(Health::default()),
            ejections: AtomicU64::new(0),
            revivals: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// An idle connection, or a new one (over TLS with `tls`).
    pub fn checkout(&self, opts: &ConnOptions, tls: Option<&Connector>) -> Result<NodeConn> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.idle.lock().pop() {
            return Ok(c);
        }
        NodeConn::connect(&self.spec, opts, tls)
    }

    /// Returns a connection that is between requests.
    pub fn checkin(&self, conn: NodeConn, max_idle: usize) {
        let mut idle = self.idle.lock();
        if idle.len() < max_idle {
            idle.push(conn);
        }
    }

    /// A request succeeded.
    pub fn succeeded(&self) {
        let mut h = self.health.lock();
        h.failures = 0;
    }

    /// A request failed with a node failure; ejects at `limit` failures.
    pub fn failed(&self, limit: u32, retry: Duration) -> Failed {
        self.errors.fetch_add(1, Ordering::Relaxed);
        // Connections opened before the failure may be dead too.
        self.idle.lock().clear();
        let mut h = self.health.lock();
        h.failures += 1;
        if h.ejected_until.is_some() {
            Failed::AlreadyOut
        } else if h.failures >= limit.max(1) {
            h.ejected_until = Some(Instant::now() + retry);
            self.ejections.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "client: node {} ejected after {} failure(s); retry in {:?}",
                self.spec.name(),
                h.failures,
                retry
            );
            Failed::Ejected
        } else {
            Failed::Counted
        }
    }

    /// Whether the node is in the ring at `now`; brings it back (one failure short
    /// of the limit) once its retry time has passed. The bool says it just came back.
    pub fn live_at(&self, now: Instant, limit: u32) -> (bool, bool) {
        let mut h = self.health.lock();
        match h.ejected_until {
            None => (true, false),
            Some(t) if now >= t => {
                h.ejected_until = None;
                h.failures = limit.max(1) - 1;
                self.revivals.fetch_add(1, Ordering::Relaxed);
                log::info!("client: node {} back in the ring", self.spec.name());
                (true, true)
            }
            Some(_) => (false, false),
        }
    }

    /// When an ejected node is due back.
    pub fn retry_at(&self) -> Option<Instant> {
        self.health.lock().ejected_until
    }

    /// Counters for reports.
    pub fn status(&self) -> NodeStatus {
        let h = self.health.lock();
        NodeStatus {
            name: self.spec.name(),
            live: h.ejected_until.is_none(),
            failures: h.failures,
            ejections: self.ejections.load(Ordering::Relaxed),
            revivals: self.revivals.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
