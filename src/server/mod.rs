//! Listeners, per-core workers and connections.
//!
//! ```text
//!                 ┌──────────── acceptor thread ────────────┐
//!   listeners ──▶ │ mio Poll: TCP (-l/-p) + unix (-s)        │  -c limit: "ERROR Too many
//!                 │ accept → round-robin to a worker         │  open connections", close
//!                 └───────┬──────────────────────────┬───────┘
//!                         │ mailbox: crossbeam queue + mio Waker
//!              ┌──────────▼─────────┐       ┌─────────▼──────────┐
//!              │ worker 0 (mio Poll)│  ...  │ worker N-1         │
//!              │ Conn: read → parse │       │                    │
//!              │ → execute → reply  │       │                    │
//!              │ one write a batch  │       │                    │
//!              └──────────┬─────────┘       └─────────┬──────────┘
//!                         └──── lock one shard, briefly ┘
//!                                  Store (store::Store)
//! ```
//!
//! A maintenance thread ticks the clock once a second and reclaims expired items in the
//! background. `Server::start` returns a [`ServerHandle`]; [`ServerHandle::wait`] blocks
//! until SIGTERM/SIGINT or the `shutdown` command, then everything stops: listeners
//! close first, workers flush what they have buffered, threads are joined.

mod binary_exec;
pub mod budget;
mod conn;
mod conn_auth;
pub mod dump;
mod exec;
mod flow;
mod listener;
pub mod loopback;
mod meta_exec;
pub mod session;
mod stats_exec;
pub mod transport;
pub mod vlog;
pub mod watch;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::auth::Credentials;
use crate::config::Config;
use crate::stats::{ConnCounters, Counters, PrefixStats};
use crate::store::{Clock, Store, StoreConfig};

pub use listener::Listeners;

/// Why the server is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT.
    Signal,
    /// The `shutdown` command.
    Command,
    /// `shutdown graceful` (memcached raises SIGUSR1 for it).
    GracefulCommand,
}

/// Names of connection states for `stats conns`, as memcached prints them.
pub const STATE_NAMES: [&str; 6] = [
    "conn_waiting",
    "conn_parse_cmd",
    "conn_nread",
    "conn_swallow",
    "conn_mwrite",
    "conn_closing",
];

/// What `stats conns` shows of one connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// Peer address, as memcached prints it (`tcp:1.2.3.4:5`, `unix:/path`).
    pub addr: String,
    /// Listener address.
    pub listen_addr: String,
    /// Relative time of the last command.
    pub last_cmd: AtomicU32,
    /// Current state name index (see [`STATE_NAMES`]).
    pub state: AtomicU32,
}

/// Everything the threads share.
pub struct Shared {
    /// Settings.
    pub config: Config,
    /// The item store.
    pub store: Store,
    /// The clock.
    pub clock: Arc<Clock>,
    /// One counter block per worker.
    pub counters: Vec<Arc<Counters>>,
    /// Connection counters.
    pub conns: ConnCounters,
    /// `stats detail`.
    pub prefix: PrefixStats,
    /// Current verbosity (`verbosity` command).
    pub verbosity: AtomicU32,
    /// `slabs automove` level and ratio (f64 bits), reported by `stats settings`:
    /// accepted as memcached accepts them, with no effect (memory follows demand).
    pub slab_automove: AtomicU32,
    /// See `slab_automove`.
    pub slab_automove_ratio: std::sync::atomic::AtomicU64,
    /// Set when stopping.
    pub stopping: AtomicBool,
    /// Open connections by fd, for `stats conns`.
    pub registry: Mutex<std::collections::BTreeMap<i32, Arc<ConnInfo>>>,
    /// Listener descriptions (fd, address) for `stats conns`.
    pub listener_info: Vec<(i32, String)>,
    /// What clients authenticate against (`-S`, `-Y`); applies to every listener.
    pub credentials: Credentials,
    /// The budget of all connection buffers (`-o read_buf_mem_limit`).
    pub buffers: Arc<budget::MemBudget>,
    /// What each worker's buffers hold, for `stats`.
    pub buffer_stats: Vec<Arc<budget::BufferStats>>,
    /// `lru_crawler` settings and state.
    pub crawler: Arc<dump::Crawler>,
    /// `watch` log streams.
    pub watch: Arc<watch::WatchHub>,
    stop_tx: Sender<StopReason>,
}

impl Shared {
    /// The state of a server with `cfg`'s settings and `cfg.threads` workers' counters,
    /// and the receiver of its stop requests; no thread is started (tests drive
    /// sessions against it in-process).
    pub fn new(
        cfg: Config,
        credentials: Credentials,
        listener_info: Vec<(i32, String)>,
    ) -> (Arc<Shared>, Receiver<StopReason>) {
        let clock = Arc::new(Clock::new());
        let store = Store::new(store_config(&cfg), clock.clone());
        let threads_n = cfg.threads.max(1);
        let counters: Vec<Arc<Counters>> = (0..threads_n).map(|_| Arc::default()).collect();
        let (stop_tx, stop_rx) = crossbeam_channel::unbounded();
        let buffers = Arc::new(budget::MemBudget::new(cfg.conn_buffer_limit()));
        let hub = Arc::new(watch::WatchHub::new(
            cfg.compat.watcher_logbuf_size as usize,
        ));
        {
            let hub = hub.clone();
            let clock = clock.clone();
            store.set_eviction_sink(Box::new(move |it| {
                if hub.wants(watch::EVICTIONS) {
                    hub.eviction(it, clock.now());
                }
            }));
        }
        let shared = Arc::new(Shared {
            crawler: Arc::new(dump::Crawler::from_settings(&cfg.compat)),
            watch: hub,
            buffers,
            buffer_stats: (0..threads_n).map(|_| Arc::default()).collect(),
            prefix: PrefixStats::new(cfg.prefix_delimiter, cfg.detail_enabled),
            verbosity: AtomicU32::new(cfg.verbose as u32),
            slab_automove: AtomicU32::new(cfg.compat.slab_automove),
            slab_automove_ratio: std::sync::atomic::AtomicU64::new(
                cfg.compat.slab_automove_ratio.to_bits(),
            ),
            config: cfg,
            store,
            clock,
            counters,
            conns: ConnCounters::default(),
            stopping: AtomicBool::new(false),
            registry: Mutex::new(Default::default()),
            listener_info,
            credentials,
            stop_tx,
        });
        (shared, stop_rx)
    }

    /// Asks the main thread to stop the server.
    pub fn request_stop(&self, why: StopReason) {
        let _ = self.stop_tx.send(why);
    }
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    stop_rx: Receiver<StopReason>,
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<mio::Waker>>,
    /// Actual bound TCP addresses (useful with port 0).
    pub local_addrs: Vec<std::net::SocketAddr>,
}

/// Builds the store settings from the command line.
pub fn store_config(cfg: &Config) -> StoreConfig {
    // A shard addresses at most 4 GiB of items (32-bit locations): big caches get more.
    let mem = (cfg.memory_limit_mb as usize).saturating_mul(1 << 20);
    let by_mem = mem.div_ceil(2 << 30).next_power_of_two();
    let shards = (cfg.threads * 4)
        .next_power_of_two()
        .max(by_mem)
        .clamp(4, 256);
    StoreConfig {
        mem_limit: (cfg.memory_limit_mb as usize).saturating_mul(1 << 20),
        item_size_max: cfg.item_size_max,
        growth_factor: cfg.growth_factor,
        chunk_min: cfg.chunk_min,
        cas_enabled: !cfg.disable_cas,
        evict: !cfg.disable_evictions,
        shards,
    }
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
        let listener_info = listeners.info();
        let (shared, stop_rx) = Shared::new(cfg, credentials, listener_info);
        let threads_n = shared.counters.len();
        let n_listeners = shared.listener_info.len() as u64;
        shared
            .conns
            .total_connections
            .store(n_listeners, Ordering::Relaxed);
        shared
            .conns
            .connection_structures
            .store(n_listeners, Ordering::Relaxed);

        let mut threads = Vec::new();
        let mut wakers = Vec::new();
        let mut mailboxes = Vec::new();
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
        })
    }
}

/// Ticks the clock and reclaims expired items, until the server stops.
fn maintenance(shared: Arc<Shared>) {
    let mut ticks = 0u64;
    while !shared.stopping.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        ticks += 1;
        if ticks % 10 == 0 {
            shared.clock.tick();
            shared.store.crawl_expired(10_000);
        }
        dump::tick(&shared);
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
        self.shared.stopping.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            let _ = w.wake();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
