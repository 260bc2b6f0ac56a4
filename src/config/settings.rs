//! The settings a server runs with (`Config`, memcached's defaults), what the command
//! line asks for (`Invocation`), and what follows from the settings: `-m` in bytes, the
//! listen plan, `stats settings`, the buffer budget, the log level.

use std::path::PathBuf;

use super::compat;

/// memcached's slab page size (1 MiB); `slab_chunk_max` must divide it.
pub(super) const SLAB_PAGE_SIZE: usize = 1 << 20;

/// The memcached version whose behaviour we follow.
pub const MEMCACHED_VERSION: &str = "1.6.18";
/// `sysexits.h` `EX_USAGE`: memcached's exit status for most late option errors.
pub const EX_USAGE: i32 = 64;
/// `sysexits.h` `EX_NOINPUT`: a `--config` file that cannot be read.
pub const EX_NOINPUT: i32 = 66;
/// `sysexits.h` `EX_NOUSER`: `-u` names an unknown user.
pub const EX_NOUSER: i32 = 67;
/// `sysexits.h` `EX_OSERR`: an OS call failed (bind, setuid, rlimit).
pub const EX_OSERR: i32 = 71;

/// Which protocols a connection may speak (`-B`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolMode {
    /// Picked from the first byte (0x80 = binary).
    Auto,
    /// Text only.
    Ascii,
    /// Binary only.
    Binary,
}

impl ProtocolMode {
    /// memcached's name for the mode (`stats settings` `binding_protocol`).
    pub fn name(self) -> &'static str {
        match self {
            ProtocolMode::Auto => "auto-negotiate",
            ProtocolMode::Ascii => "ascii",
            ProtocolMode::Binary => "binary",
        }
    }
}

/// Everything the server needs from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port (`-p`, 0 = any free port, as in memcached). When `-U` is
    /// given without `-p`, memcached uses the UDP port for TCP too; so do we.
    pub port: u16,
    /// UDP port (`-U`, 0 = off, the default).
    pub udp_port: u16,
    /// Interfaces to listen on (`-l`, repeatable, comma lists), each maybe
    /// with `:port` (`host:port`, `[v6]:port`). Empty = all interfaces.
    /// See [`Config::listen_targets`].
    pub listen: Vec<String>,
    /// Unix socket path (`-s`): disables TCP and UDP.
    pub unix_socket: Option<PathBuf>,
    /// Unix socket permission mask (`-a`, octal; default 0700).
    pub unix_mask: u32,
    /// Item memory in megabytes (`-m`, C `atoi`: no unit suffixes; a
    /// negative value wraps like memcached's `size_t`).
    pub memory_limit_mb: u64,
    /// Max simultaneous connections (`-c`).
    pub max_conns: usize,
    /// Worker threads (`-t`, default: the number of cores).
    pub threads: usize,
    /// Max requests per event per connection (`-R`; a negative value, which
    /// memcached accepts, means 1).
    pub reqs_per_event: usize,
    /// Protocol (`-B`; `-S` makes it binary, `-Y` ascii, unless given).
    pub protocol: ProtocolMode,
    /// Max item size in bytes (`-I`, `k`/`m` suffixes; 1k..=1024m, at most
    /// half of `-m`).
    pub item_size_max: usize,
    /// Return errors instead of evicting (`-M`).
    pub disable_evictions: bool,
    /// Disable CAS (`-C`).
    pub disable_cas: bool,
    /// Slab growth factor (`-f`, > 1).
    pub growth_factor: f64,
    /// Minimum chunk space (`-n`; memcached accepts negatives, we use 1).
    pub chunk_min: usize,
    /// Listen backlog (`-b`).
    pub backlog: i32,
    /// Disable `flush_all` (`-F`).
    pub disable_flush_all: bool,
    /// Enable `shutdown` (`-A`).
    pub enable_shutdown: bool,
    /// User to run as (`-u`); see [`crate::daemon::drop_privileges`].
    pub user: Option<String>,
    /// Pid file (`-P`); see [`crate::daemon::write_pid_file`].
    pub pid_file: Option<PathBuf>,
    /// Run as a daemon (`-d`); see [`crate::daemon::daemonize`].
    pub daemonize: bool,
    /// Verbosity (`-v` count); see [`Config::log_level`].
    pub verbose: u8,
    /// Per-prefix stats delimiter (`-D`, first byte of the value).
    pub prefix_delimiter: u8,
    /// Per-prefix stats on from the start (`-D` given).
    pub detail_enabled: bool,
    /// `-o debugtime` (ours, not memcached's): serve the `debugtime` command.
    pub debugtime: bool,
    /// `-o debugtime=<seconds>`: the server clock starts this many seconds ahead of
    /// the wall clock (tests: "the server was down this long").
    pub debugtime_offset: i64,
    /// `-o idle_timeout=N` seconds (0 = none; negative values mean 0).
    pub idle_timeout: u32,
    /// Ours: hot keys, sizing and miss reasons (`stats hotkeys`, `stats sizing`,
    /// `stats misses`), each on unless `-o no_hotkeys`, `no_sizing`,
    /// `no_miss_reasons` (`no_insight`: all three).
    pub insight: crate::insight::InsightConfig,
    /// `-o maxconns_fast` (default on; `no_maxconns_fast` turns it off):
    /// over `-c`, answer `ERROR Too many open connections` and close at once.
    pub maxconns_fast: bool,
    /// `-o slab_chunk_max=BYTES` (default 512 KiB; with `-I` above 1m and no
    /// explicit value, half a 1 MiB page). Checked against `-I` like memcached.
    pub slab_chunk_max: usize,
    /// `-o hashpower=N` (0 = not given). Validated like memcached; a hint only.
    pub hashpower_init: u32,
    /// `-o read_buf_mem_limit=MB`: the budget of all connection buffers (memcached's
    /// option for its read and response buffers). `None`: not given (see
    /// [`Config::conn_buffer_limit`]); `Some(0)`: unlimited, as in memcached.
    pub read_buf_mem_limit: Option<u64>,
    /// `-X`: disable `stats cachedump` and `lru_crawler metadump`.
    pub disable_dumping: bool,
    /// `-W`: disable `watch`.
    pub disable_watch: bool,
    /// `-S`: SASL authentication required (binary protocol only). The server
    /// must implement it or refuse to start.
    pub sasl: bool,
    /// `-Y FILE`: ascii authentication tokens. The server must implement it or
    /// refuse to start.
    pub auth_file: Option<PathBuf>,
    /// `--sasl-pwdb FILE` (ours): the SASL credentials file; without it `-S` reads
    /// the file named by `$MEMCACHED_SASL_PWDB`.
    pub sasl_pwdb: Option<PathBuf>,
    /// `-Z`: TLS. The server must implement it or refuse to start.
    pub tls: bool,
    /// `-k`: lock memory (accepted, ignored).
    pub lock_memory: bool,
    /// `-r`: maximize the core file limit (accepted, ignored).
    pub enable_coredumps: bool,
    /// `-L`: large pages (accepted, ignored).
    pub large_pages: bool,
    /// `-e FILE`: warm restart: a graceful stop (SIGUSR1, `shutdown graceful`)
    /// saves the cache to FILE, a start loads it (see `store::snapshot`).
    pub memory_file: Option<PathBuf>,
    /// `--restore FILE` (ours): load this snapshot at start (kept; `-e` files are
    /// consumed).
    pub restore_file: Option<PathBuf>,
    /// `--snapshot-dir DIR` (ours): serve `snapshot <name>` and SIGUSR2, writing
    /// snapshots into DIR.
    pub snapshot_dir: Option<PathBuf>,
    /// `--cluster-config FILE` (ours): the node list `config get cluster` serves
    /// (ElastiCache's auto discovery), reloaded on SIGHUP.
    pub cluster_config: Option<PathBuf>,
    /// `--cluster-config-readonly` (ours): refuse `config set|delete cluster`, which
    /// is the default; kept so that existing command lines still start.
    pub cluster_config_readonly: bool,
    /// `--cluster-config-writable` (ours): serve `config set|delete cluster` (the
    /// fleet's list clients follow); off by default. With `-S`/`-Y` only
    /// authenticated connections reach it, as every command.
    pub cluster_config_writable: bool,
    /// `--snapshot-limit N` (ours): most snapshot files `--snapshot-dir` may hold;
    /// a `snapshot` or SIGUSR2 that would add one more is refused.
    pub snapshot_limit: u32,
    /// `-N N`: NAPI ids (accepted, ignored; must not exceed `-t`).
    pub napi_ids: u32,
    /// `--metrics-listen [HOST:]PORT` (ours): serve Prometheus `/metrics` over HTTP
    /// there, as (host, port); a bare port is 127.0.0.1's.
    pub metrics_listen: Option<(String, u16)>,
    /// `-o metrics_timeout=SECONDS` (ours): how long a `/metrics` client may take to
    /// send its request before it gets 408 (default 5).
    pub metrics_timeout_secs: u32,
    /// `-o latency_sample=N` (ours): time one request in N per worker for the
    /// latency histograms (1 = every request); `-o no_latency` sets 0: off.
    pub latency_sample: u32,
    /// Every `-o` sub-option given, in order: (name, value).
    pub extended: Vec<(String, Option<String>)>,
    /// Options accepted but not acted on, as typed (e.g. `-k`,
    /// `-o hash_algorithm=jenkins`): the server logs them as ignored.
    pub ignored: Vec<String>,
    /// Warnings memcached prints on stderr before starting anyway (e.g. for
    /// `-t 65`); the server prints each as a line (they have no newline).
    pub warnings: Vec<String>,
    /// memcached's own tuning options, kept only for `stats settings`.
    pub compat: compat::CompatSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            port: 11211,
            udp_port: 0,
            listen: Vec::new(),
            unix_socket: None,
            unix_mask: 0o700,
            memory_limit_mb: 64,
            max_conns: 1024,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(4),
            reqs_per_event: 20,
            protocol: ProtocolMode::Auto,
            item_size_max: 1 << 20,
            disable_evictions: false,
            disable_cas: false,
            growth_factor: 1.25,
            chunk_min: 48,
            backlog: 1024,
            disable_flush_all: false,
            enable_shutdown: false,
            user: None,
            pid_file: None,
            daemonize: false,
            verbose: 0,
            prefix_delimiter: b':',
            detail_enabled: false,
            debugtime: false,
            debugtime_offset: 0,
            idle_timeout: 0,
            insight: crate::insight::InsightConfig::default(),
            maxconns_fast: true,
            slab_chunk_max: SLAB_PAGE_SIZE / 2,
            read_buf_mem_limit: None,
            hashpower_init: 0,
            compat: compat::CompatSettings::default(),
            disable_dumping: false,
            disable_watch: false,
            sasl: false,
            auth_file: None,
            sasl_pwdb: None,
            tls: false,
            lock_memory: false,
            enable_coredumps: false,
            large_pages: false,
            memory_file: None,
            restore_file: None,
            snapshot_dir: None,
            cluster_config: None,
            cluster_config_readonly: false,
            cluster_config_writable: false,
            snapshot_limit: DEFAULT_SNAPSHOT_LIMIT,
            napi_ids: 0,
            metrics_listen: None,
            metrics_timeout_secs: 5,
            latency_sample: crate::latency::DEFAULT_SAMPLE,
            extended: Vec::new(),
            ignored: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Start the server.
    Run(Box<Config>),
    /// Print something and exit (`-h`, `-V`, or an error).
    Exit {
        /// Text for standard output.
        stdout: String,
        /// Text for standard error.
        stderr: String,
        /// Exit status.
        code: i32,
    },
}

impl Invocation {
    pub(super) fn error(msg: impl Into<String>, code: i32) -> Invocation {
        let mut stderr = msg.into();
        if !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        Invocation::Exit {
            stdout: String::new(),
            stderr,
            code,
        }
    }
}

/// Snapshot files `--snapshot-dir` may hold unless `--snapshot-limit` says otherwise.
pub const DEFAULT_SNAPSHOT_LIMIT: u32 = 8;

impl Config {
    /// Item memory in bytes: `-m` × 1 MiB, the one conversion of `-m`. memcached's
    /// `(size_t)atoi(optarg) * 1024 * 1024`, wrapping as its `size_t` does: `-m -1`
    /// is 2^64 − 2^20 (memcached 1.6.18's `stats settings` prints
    /// 18446744073708503040), and an `int` times 1 MiB never wraps otherwise.
    pub fn mem_limit_bytes(&self) -> usize {
        self.memory_limit_mb.wrapping_mul(1 << 20) as usize
    }

    /// Where to listen, from `-l` and `-p`: (host, port) pairs, the host
    /// without IPv6 brackets. Entries are `host`, `host:port`, `[v6]` or
    /// `[v6]:port`; a bare IPv6 address (several colons) has no port part.
    /// `None` host = all interfaces (no `-l`). Empty if `-s` is given.
    pub fn listen_targets(&self) -> Vec<(Option<String>, u16)> {
        self.listen_plan()
            .into_iter()
            .map(|(host, port, _)| (host, port))
            .collect()
    }

    /// [`Config::listen_targets`] with whether each listener speaks TLS: all of them
    /// with `-Z`, except entries written `notls:<addr>[:<port>]` (memcached's prefix,
    /// stripped; without `-Z` it changes nothing).
    pub fn listen_plan(&self) -> Vec<(Option<String>, u16, bool)> {
        if self.unix_socket.is_some() {
            return Vec::new();
        }
        if self.listen.is_empty() {
            return vec![(None, self.port, self.tls)];
        }
        self.listen
            .iter()
            .map(|entry| {
                let (entry, tls) = match entry.strip_prefix("notls:") {
                    Some(rest) => (rest, false),
                    None => (entry.as_str(), self.tls),
                };
                let (host, port) = split_host_port(entry);
                let port = port.map_or(self.port, |p| crate::num::atoi(p) as u16);
                (Some(host.to_string()), port, tls)
            })
            .collect()
    }

    /// memcached's `STAT inter` value: the `-l` list, or `NULL`.
    pub(super) fn inter(&self) -> String {
        if self.listen.is_empty() {
            "NULL".into()
        } else {
            self.listen.join(",")
        }
    }

    /// `stats settings` lines: every line memcached 1.6.18 prints, in its order.
    /// Settings of memcached's machinery we do not have are memcached's
    /// defaults or the value given with `-o` ([`compat::CompatSettings`]);
    /// facts about ferrocache are fixed (`slab_reassign no`, `lru_segmented no`,
    /// `lru_maintainer_thread no`, no extstore). The server
    /// replaces the values that change at run time: `verbosity` (`verbosity`
    /// command), `detail_enabled` (`stats detail on|off`), `slab_automove`
    /// (`slabs automove`).
    pub fn settings_stats(&self) -> Vec<(&'static str, String)> {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let c = &self.compat;
        let threads_per_udp = if self.listen.len() > 1 {
            1
        } else {
            self.threads
        };
        vec![
            ("maxbytes", self.mem_limit_bytes().to_string()),
            ("maxconns", self.max_conns.to_string()),
            ("tcpport", self.port.to_string()),
            ("udpport", self.udp_port.to_string()),
            ("inter", self.inter()),
            ("verbosity", self.verbose.to_string()),
            ("oldest", "0".into()),
            (
                "evictions",
                if self.disable_evictions { "off" } else { "on" }.into(),
            ),
            (
                "domain_socket",
                self.unix_socket
                    .as_ref()
                    .map_or("NULL".into(), |p| p.display().to_string()),
            ),
            ("umask", format!("{:o}", self.unix_mask)),
            ("shutdown_command", yes_no(self.enable_shutdown)),
            ("growth_factor", format!("{:.2}", self.growth_factor)),
            ("chunk_size", self.chunk_min.to_string()),
            ("num_threads", self.threads.to_string()),
            // memcached's rule: one thread per UDP socket with several -l
            // interfaces, else all workers.
            ("num_threads_per_udp", threads_per_udp.to_string()),
            (
                "stat_key_prefix",
                (self.prefix_delimiter as char).to_string(),
            ),
            ("detail_enabled", yes_no(self.detail_enabled)),
            ("reqs_per_event", self.reqs_per_event.to_string()),
            ("cas_enabled", yes_no(!self.disable_cas)),
            ("tcp_backlog", self.backlog.to_string()),
            ("binding_protocol", self.protocol.name().into()),
            ("auth_enabled_sasl", yes_no(self.sasl)),
            (
                "auth_enabled_ascii",
                self.auth_file
                    .as_ref()
                    .map_or("no".into(), |p| p.display().to_string()),
            ),
            ("item_size_max", self.item_size_max.to_string()),
            ("maxconns_fast", yes_no(self.maxconns_fast)),
            ("hashpower_init", self.hashpower_init.to_string()),
            // Fixed fact: there are no slab pages to reassign (memory moves between
            // item sizes by itself); `slabs reassign` says so as memcached does.
            ("slab_reassign", "no".into()),
            // The server prints the value `slabs automove` set at run time.
            ("slab_automove", c.slab_automove.to_string()),
            (
                "slab_automove_ratio",
                format!("{:.2}", c.slab_automove_ratio),
            ),
            ("slab_automove_window", c.slab_automove_window.to_string()),
            ("slab_chunk_max", self.slab_chunk_max.to_string()),
            // Fixed fact: expired items are reclaimed in the background.
            ("lru_crawler", "yes".into()),
            ("lru_crawler_sleep", c.lru_crawler_sleep.to_string()),
            ("lru_crawler_tocrawl", c.lru_crawler_tocrawl.to_string()),
            ("tail_repair_time", c.tail_repair_time.to_string()),
            ("flush_enabled", yes_no(!self.disable_flush_all)),
            ("dump_enabled", yes_no(!self.disable_dumping)),
            ("hash_algorithm", c.hash_algorithm.clone()),
            // Fixed facts: no LRU maintainer thread, no segmented LRU (S3-FIFO).
            ("lru_maintainer_thread", "no".into()),
            ("lru_segmented", "no".into()),
            ("hot_lru_pct", c.hot_lru_pct.to_string()),
            ("warm_lru_pct", c.warm_lru_pct.to_string()),
            ("hot_max_factor", format!("{:.2}", c.hot_max_factor)),
            ("warm_max_factor", format!("{:.2}", c.warm_max_factor)),
            ("temp_lru", yes_no(c.temp_lru)),
            ("temporary_ttl", c.temporary_ttl.to_string()),
            ("idle_timeout", self.idle_timeout.to_string()),
            ("watcher_logbuf_size", c.watcher_logbuf_size.to_string()),
            ("worker_logbuf_size", c.worker_logbuf_size.to_string()),
            // In bytes, as memcached prints it; ours is the whole buffer budget.
            (
                "read_buf_mem_limit",
                match self.read_buf_mem_limit {
                    Some(0) => "0".to_string(),
                    _ => self.conn_buffer_limit().to_string(),
                },
            ),
            ("track_sizes", yes_no(c.track_sizes)),
            ("inline_ascii_response", yes_no(c.inline_ascii_response)),
            // Fixed facts: no extstore (memcached's defaults, as it prints them
            // without ext_path).
            ("ext_item_size", "512".into()),
            ("ext_item_age", "4294967295".into()),
            ("ext_low_ttl", "0".into()),
            ("ext_recache_rate", "2000".into()),
            ("ext_wbuf_size", "4194304".into()),
            ("ext_compact_under", "0".into()),
            ("ext_drop_under", "0".into()),
            ("ext_max_sleep", "1000000".into()),
            ("ext_max_frag", "0.80".into()),
            (
                "slab_automove_freeratio",
                format!("{:.3}", c.slab_automove_freeratio),
            ),
            ("ext_drop_unread", "no".into()),
            // The ssl_* options as given.
            ("ssl_enabled", yes_no(self.tls)),
            (
                "ssl_chain_cert",
                c.ssl_chain_cert.clone().unwrap_or("(null)".into()),
            ),
            ("ssl_key", c.ssl_key.clone().unwrap_or("(null)".into())),
            ("ssl_verify_mode", c.ssl_verify_mode.to_string()),
            ("ssl_keyformat", c.ssl_keyformat.to_string()),
            (
                "ssl_ciphers",
                c.ssl_ciphers.clone().unwrap_or("NULL".into()),
            ),
            (
                "ssl_ca_cert",
                c.ssl_ca_cert.clone().unwrap_or("NULL".into()),
            ),
            ("ssl_wbuf_size", c.ssl_wbuf_size.to_string()),
            ("ssl_session_cache", yes_no(c.ssl_session_cache)),
            ("ssl_kernel_tls", yes_no(c.ssl_kernel_tls)),
            (
                "ssl_min_version",
                compat::CompatSettings::ssl_version_name(c.ssl_min_version).into(),
            ),
            // Fixed fact: no NAPI id grouping (memcached prints a NULL pointer
            // through glibc's printf); so is an unset memory file.
            ("num_napi_ids", "(null)".into()),
            (
                "memory_file",
                self.memory_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(null)".into()),
            ),
        ]
    }

    /// Bytes all connection buffers may hold together (read buffers, values being
    /// received, replies waiting): `-o read_buf_mem_limit` megabytes if given (0 =
    /// unlimited), else an eighth of `-m`, at least 32 MiB and at most 1 GiB.
    pub fn conn_buffer_limit(&self) -> usize {
        const MIB: u64 = 1 << 20;
        let bytes = match self.read_buf_mem_limit {
            Some(0) => return usize::MAX,
            Some(mb) => mb.saturating_mul(MIB),
            None => (self.mem_limit_bytes() as u64 / 8).clamp(32 * MIB, 1024 * MIB),
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// Log level for `-v` count: none = warn, `-v` = info, `-vv` = debug,
    /// `-vvv` and more = trace.
    pub fn log_level(&self) -> log::LevelFilter {
        Self::level_filter(self.verbose)
    }

    /// Puts a verbosity in force at run time (the `verbosity` command, or `-v` at
    /// start-up): every `log` macro and `log::log_enabled!` check from now on sees
    /// [`Config::level_filter`]`(verbose)`. The logger the binary installs passes
    /// every level (unless `RUST_LOG` narrows it), so this alone raises and lowers
    /// what is printed.
    pub fn set_runtime_verbosity(verbose: u32) {
        let v = u8::try_from(verbose).unwrap_or(u8::MAX);
        log::set_max_level(Self::level_filter(v));
    }

    /// Log level for a verbosity (the `-v` count, or the `verbosity` command).
    pub fn level_filter(verbose: u8) -> log::LevelFilter {
        match verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]`; a bare IPv6 address (more than
/// one colon) has no port.
pub(super) fn split_host_port(entry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = entry.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &rest[..end];
            let port = rest[end + 1..].strip_prefix(':');
            return (host, port);
        }
        return (entry, None);
    }
    match (entry.find(':'), entry.rfind(':')) {
        (Some(a), Some(b)) if a == b => (&entry[..a], Some(&entry[a + 1..])),
        _ => (entry, None),
    }
}
