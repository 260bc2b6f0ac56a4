//! What every thread of a server shares ([`Shared`]), what `stats conns` shows of a
//! connection ([`ConnInfo`]), and why a server stops ([`StopReason`]).

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::admin::snapshot::{Snapshot, Snapshots};
use super::admin::{cluster, dump, watch};
use crate::auth::Credentials;
use crate::config::Config;
use crate::server::budget;
use crate::stats::{ConnCounters, Counters, PrefixStats};
use crate::store::{Clock, Store, StoreConfig};

/// Why the server is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT.
    Signal,
    /// The `shutdown` command.
    Command,
    /// `shutdown graceful` (memcached raises SIGUSR1 for it).
    GracefulCommand,
    /// SIGUSR1: memcached's graceful stop (with `-e`, the cache is saved).
    GracefulSignal,
}

impl StopReason {
    /// A graceful stop: with `-e` the cache is saved.
    pub fn graceful(self) -> bool {
        matches!(
            self,
            StopReason::GracefulCommand | StopReason::GracefulSignal
        )
    }
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

/// Everything the threads share, in the parts their users need: the settings, the
/// store and its clock (every executor), what observation feeds ([`Observers`]), the
/// connection machinery's state ([`Net`]), what operators drive besides the cache
/// ([`Admin`]) and the credentials.
pub struct Shared {
    /// Settings.
    pub config: Config,
    /// The item store.
    pub store: Store,
    /// The clock.
    pub clock: Arc<Clock>,
    /// What `observe` feeds: counters, `stats detail`, watch streams, `-vv`.
    pub observers: Observers,
    /// Connections: counts, the `stats conns` registry, buffers, the stop flag.
    pub net: Net,
    /// The crawler, snapshots, the cluster configuration, `slabs automove`.
    pub admin: Admin,
    /// What clients authenticate against (`-S`, `-Y`, `-Z`); applies to every listener.
    pub credentials: Credentials,
    stop_tx: Sender<StopReason>,
}

/// What the observation seam (`server::observe`) feeds and `stats` reads back.
pub struct Observers {
    /// One counter block per worker.
    pub counters: Vec<Arc<Counters>>,
    /// `stats detail`.
    pub prefix: PrefixStats,
    /// Current verbosity (`verbosity` command).
    pub verbosity: AtomicU32,
    /// `watch` log streams.
    pub watch: Arc<watch::WatchHub>,
    /// The last `stats hotkeys N` rows, reused for a moment.
    pub(crate) hot_rows: crate::insight::hot_rows::HotRowsCache,
}

/// The connection machinery's shared state (listeners, workers, `stats conns`).
pub struct Net {
    /// Connection counters.
    pub conns: ConnCounters,
    /// Set when stopping.
    pub stopping: AtomicBool,
    /// Open connections by fd, for `stats conns`.
    pub registry: Mutex<std::collections::BTreeMap<i32, Arc<ConnInfo>>>,
    /// Listener descriptions (fd, address) for `stats conns`.
    pub listener_info: Vec<(i32, String)>,
    /// The budget of all connection buffers (`-o read_buf_mem_limit`).
    pub buffers: Arc<budget::MemBudget>,
    /// What each worker's buffers hold, for `stats`.
    pub buffer_stats: Vec<Arc<budget::BufferStats>>,
}

/// What operators drive besides the cache.
pub struct Admin {
    /// `lru_crawler` settings and state.
    pub crawler: Arc<dump::Crawler>,
    /// Warm restart and online snapshots: progress and figures for `stats`.
    pub snapshots: Snapshots,
    /// The cluster configuration served to auto-discovery clients (`config get
    /// cluster`).
    pub cluster: cluster::ClusterState,
    /// `slabs automove` level and ratio (f64 bits), reported by `stats settings`:
    /// accepted as memcached accepts them, with no effect (memory follows demand).
    pub slab_automove: AtomicU32,
    /// See `slab_automove`.
    pub slab_automove_ratio: std::sync::atomic::AtomicU64,
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
        if cfg.debugtime_offset != 0 {
            clock.advance(cfg.debugtime_offset);
        }
        let store = Store::new(store_config(&cfg), clock.clone());
        store.enable_insight(cfg.insight);
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
        let cluster = cluster::ClusterState::new(cfg.cluster_config_writable);
        if cfg.cluster_config_writable && !cfg.sasl && cfg.auth_file.is_none() {
            log::warn!(
                "--cluster-config-writable without -S or -Y: any client that can connect \
                 can change the node list discovery clients follow"
            );
        }
        if let Some(path) = &cfg.cluster_config {
            match cluster.load_file(path) {
                Ok(v) => log::info!("cluster config {}: version {v}", path.display()),
                Err(e) => log::warn!("{e}; serving no cluster configuration"),
            }
        }
        let observers = Observers {
            counters,
            prefix: PrefixStats::new(cfg.prefix_delimiter, cfg.detail_enabled),
            verbosity: AtomicU32::new(cfg.verbose as u32),
            watch: hub,
            hot_rows: Default::default(),
        };
        let net = Net {
            conns: ConnCounters::default(),
            stopping: AtomicBool::new(false),
            registry: Mutex::new(Default::default()),
            listener_info,
            buffers,
            buffer_stats: (0..threads_n).map(|_| Arc::default()).collect(),
        };
        let admin = Admin {
            crawler: Arc::new(dump::Crawler::from_settings(&cfg.compat)),
            snapshots: Snapshots::default(),
            cluster,
            slab_automove: AtomicU32::new(cfg.compat.slab_automove),
            slab_automove_ratio: std::sync::atomic::AtomicU64::new(
                cfg.compat.slab_automove_ratio.to_bits(),
            ),
        };
        let shared = Arc::new(Shared {
            config: cfg,
            store,
            clock,
            observers,
            net,
            admin,
            credentials,
            stop_tx,
        });
        (shared, stop_rx)
    }

    /// What snapshots and warm restarts work with.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            config: &self.config,
            store: &self.store,
            clock: &self.clock,
            state: &self.admin.snapshots,
        }
    }

    /// Asks the main thread to stop the server.
    pub fn request_stop(&self, why: StopReason) {
        let _ = self.stop_tx.send(why);
    }
}

/// Builds the store settings from the command line.
pub fn store_config(cfg: &Config) -> StoreConfig {
    // A shard addresses at most 4 GiB of items (32-bit locations): big caches get more.
    let mem = cfg.mem_limit_bytes();
    let by_mem = mem.div_ceil(2 << 30).next_power_of_two();
    let shards = (cfg.threads * 4)
        .next_power_of_two()
        .max(by_mem)
        .clamp(4, 256);
    StoreConfig {
        mem_limit: mem,
        item_size_max: cfg.item_size_max,
        growth_factor: cfg.growth_factor,
        chunk_min: cfg.chunk_min,
        cas_enabled: !cfg.disable_cas,
        evict: !cfg.disable_evictions,
        shards,
    }
}
