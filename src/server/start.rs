//! Starting and stopping a server: [`Server::bind`], [`Server::start`] (workers, the
//! acceptor, the maintenance thread) and the [`ServerHandle`] that waits for a stop and
//! joins the threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::auth::Credentials;
use crate::config::Config;
use crate::server::admin::dump::BusyGuard;
use crate::server::net::listener::{self, Listeners};
use crate::server::net::worker;
use crate::server::shared::{Shared, StopReason};

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    stop_rx: Receiver<StopReason>,
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<mio::Waker>>,
    /// Actual bound TCP addresses (useful with port 0).
    pub local_addrs: Vec<std::net::SocketAddr>,
    /// Where `/metrics` is served (`--metrics-listen`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The server.
pub struct Server;

impl Server {
    /// Binds the listeners (so bind errors surface before anything else starts).
    pub fn bind(
        cfg: &Config,
    ) -> Result<Listeners, (crate::daemon::ListenKind, crate::daemon::ListenError)> {
        Listeners::bind(cfg)
    }

    /// Starts workers, the acceptor and the maintenance thread on bound listeners.
    /// With `-S` or `-Y` the matching `credentials` must be given: the server refuses
    /// to start without them rather than serve unauthenticated.
    pub fn start(
        cfg: Config,
        listeners: Listeners,
        credentials: Credentials,
    ) -> Result<ServerHandle, String> {
        if cfg.sasl && credentials.sasl.is_none() {
            return Err("SASL (-S) requested without credentials".into());
        }
        if cfg.auth_file.is_some() && credentials.ascii.is_none() {
            return Err("ASCII authentication (-Y) requested without an auth file".into());
        }
        if let Some(db) = &credentials.sasl {
            // PLAIN checks that need PBKDF2 wait their turn on a thread of their own
            // instead of failing when the budget is spent (no account lock-out).
            db.defer_derivations()
                .map_err(|e| format!("cannot start the password-check thread: {e}"))?;
        }
        let listener_info = listeners.info();
        let (shared, stop_rx) = Shared::new(cfg, credentials, listener_info);
        // Before any worker or the acceptor runs: connections are accepted once the
        // snapshot is loaded (clients connecting meanwhile wait in the backlog).
        crate::server::admin::snapshot::restore_at_start(shared.snapshot());
        let threads_n = shared.observers.counters.len();
        let n_listeners = shared.net.listener_info.len() as u64;
        shared
            .net
            .conns
            .total_connections
            .store(n_listeners, Ordering::Relaxed);
        shared
            .net
            .conns
            .connection_structures
            .store(n_listeners, Ordering::Relaxed);

        let mut threads = Vec::new();
        let mut wakers = Vec::new();
        let mut mailboxes = Vec::new();
        // Bound before anything starts, so that a bad address stops the start.
        let metrics = match &shared.config.metrics_listen {
            Some((host, port)) => Some(
                crate::server::net::metrics_http::MetricsServer::bind(host, *port, shared.clone())
                    .map_err(|e| format!("--metrics-listen {host}:{port}: {e}"))?,
            ),
            None => None,
        };
        let metrics_addr = metrics.as_ref().and_then(|m| m.local_addr().ok());
        if let Some(m) = metrics {
            wakers.push(m.waker());
            threads.push(
                std::thread::Builder::new()
                    .name("metrics".into())
                    .spawn(move || m.run())
                    .map_err(|e| e.to_string())?,
            );
        }
        for id in 0..threads_n {
            let w = worker::Worker::new(id, shared.clone()).map_err(|e| e.to_string())?;
            wakers.push(w.waker());
            mailboxes.push(w.mailbox());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{id}"))
                    .spawn(move || w.run())
                    .map_err(|e| e.to_string())?,
            );
        }
        let local_addrs = listeners.local_addrs();
        let acceptor = listener::Acceptor::new(listeners, shared.clone(), mailboxes)
            .map_err(|e| e.to_string())?;
        wakers.push(acceptor.waker());
        threads.push(
            std::thread::Builder::new()
                .name("acceptor".into())
                .spawn(move || acceptor.run())
                .map_err(|e| e.to_string())?,
        );
        let maint = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("maintenance".into())
                .spawn(move || maintenance(maint))
                .map_err(|e| e.to_string())?,
        );
        Ok(ServerHandle {
            shared,
            stop_rx,
            threads,
            wakers,
            local_addrs,
            metrics_addr,
        })
    }
}

/// Ticks the clock and reclaims expired items, until the server stops.
fn maintenance(shared: Arc<Shared>) {
    let mut ticks = 0u64;
    while !shared.net.stopping.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        if ticks % 10 == 0 {
            shared.clock.tick();
            shared.store.crawl_expired(10_000);
        }
        start_requested_crawl(&shared);
        crate::server::admin::snapshot::start_requested(&shared, Shared::snapshot);
    }
}

/// Called by the maintenance thread: starts a requested crawl on a thread of its own.
fn start_requested_crawl(shared: &Arc<Shared>) {
    if !shared.admin.crawler.take_crawl_request() {
        return;
    }
    let guard = BusyGuard::new(shared.admin.crawler.clone());
    let sh = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("lru-crawler".into())
        .spawn(move || {
            let _guard = guard;
            let sleep = sh.admin.crawler.sleep_us.load(Ordering::Relaxed);
            let max = sh.admin.crawler.tocrawl.load(Ordering::Relaxed) as usize;
            let mut batches = 0u32;
            let freed = sh.store.crawl_pass(1000, max, &mut || {
                batches += 1;
                if sleep > 0 {
                    std::thread::sleep(Duration::from_micros(u64::from(sleep)));
                }
                !sh.net.stopping.load(Ordering::Relaxed)
            });
            log::debug!("lru_crawler crawl: {freed} expired items reclaimed in {batches} batches");
        });
    if let Err(e) = spawned {
        // The guard went with the closure and was dropped: the crawler is free again.
        log::warn!("lru_crawler crawl: cannot start a thread: {e}");
    }
}

impl ServerHandle {
    /// The shared state (for tests and the binary).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Sender the signal handler uses.
    pub fn stopper(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Blocks until a stop is requested; returns why.
    pub fn wait(&self) -> StopReason {
        self.stop_rx.recv().unwrap_or(StopReason::Signal)
    }

    /// Stops every thread: listeners close, workers flush and close connections.
    pub fn stop(self) {
        self.shared.net.stopping.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
