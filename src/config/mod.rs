//! Command line and `memcached.conf`: memcached 1.6.18's flags, names,
//! defaults, messages and exit codes.
//!
//! [`parse_args`] reads the command line the way memcached's `main()` does:
//! glibc `getopt_long` over the same option string and long names (see
//! `getopt`), each value converted with C's `atoi`/`atof`/`strtol` rules
//! (so `-m 64k` is 64 megabytes, as in memcached), the same per-option checks
//! while parsing and the same cross-checks afterwards, with memcached's
//! messages and exit codes (1 for most option errors, 64 = `EX_USAGE` for the
//! later checks). `--config FILE` splices a Debian-style `memcached.conf` in
//! place (see `conffile`).
//!
//! Options memcached knows but we do not act on are accepted and listed in
//! [`Config::ignored`], so the server can log them. Warnings memcached prints
//! while starting anyway are in [`Config::warnings`].

pub mod compat;
mod conffile;
mod getopt;
mod manpage;

use std::fmt::Write as _;
use std::path::PathBuf;

use getopt::{Getopt, HasArg, LongOpt};
pub use manpage::man_page;

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

/// memcached's slab page size (1 MiB); `slab_chunk_max` must divide it.
const SLAB_PAGE_SIZE: usize = 1 << 20;

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
    fn error(msg: impl Into<String>, code: i32) -> Invocation {
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

/// Our private code for `--config` (not a memcached option).
const OPT_CONFIG: char = '\u{10001}';
/// Our private code for `--sasl-pwdb` (not a memcached option).
const OPT_SASL_PWDB: char = '\u{10002}';
/// Our private code for `--restore`.
const OPT_RESTORE: char = '\u{10003}';
/// Our private code for `--snapshot-dir`.
const OPT_SNAPSHOT_DIR: char = '\u{10004}';
/// Our private code for `--cluster-config`.
const OPT_CLUSTER_CONFIG: char = '\u{10005}';
/// Our private code for `--cluster-config-readonly`.
const OPT_CLUSTER_READONLY: char = '\u{10006}';
/// Our private code for `--metrics-listen`.
const OPT_METRICS_LISTEN: char = '\u{10007}';
/// Our private code for `--cluster-config-writable`.
const OPT_CLUSTER_WRITABLE: char = '\u{10008}';
/// Our private code for `--snapshot-limit`.
const OPT_SNAPSHOT_LIMIT: char = '\u{10009}';

/// Snapshot files `--snapshot-dir` may hold unless `--snapshot-limit` says otherwise.
pub const DEFAULT_SNAPSHOT_LIMIT: u32 = 8;

/// memcached 1.6.18's `getopt` string.
const SHORTOPTS: &str = "a:AZp:s:U:m:Mc:khiVrvdl:u:P:f:n:t:D:LR:Cb:B:I:SFXWY:e:o:N:";

const fn lo(name: &'static str, has_arg: HasArg, val: char) -> LongOpt {
    LongOpt { name, has_arg, val }
}

/// memcached 1.6.18's long options, in its order (which shows in the
/// "ambiguous" message), plus our `--config` and `--sasl-pwdb`.
const LONGOPTS: &[LongOpt] = &[
    lo("unix-mask", HasArg::Required, 'a'),
    lo("enable-shutdown", HasArg::No, 'A'),
    lo("enable-ssl", HasArg::No, 'Z'),
    lo("port", HasArg::Required, 'p'),
    lo("unix-socket", HasArg::Required, 's'),
    lo("udp-port", HasArg::Required, 'U'),
    lo("memory-limit", HasArg::Required, 'm'),
    lo("disable-evictions", HasArg::No, 'M'),
    lo("conn-limit", HasArg::Required, 'c'),
    lo("lock-memory", HasArg::No, 'k'),
    lo("help", HasArg::No, 'h'),
    lo("license", HasArg::No, 'i'),
    lo("version", HasArg::No, 'V'),
    lo("enable-coredumps", HasArg::No, 'r'),
    lo("verbose", HasArg::Optional, 'v'),
    lo("daemon", HasArg::No, 'd'),
    lo("listen", HasArg::Required, 'l'),
    lo("user", HasArg::Required, 'u'),
    lo("pidfile", HasArg::Required, 'P'),
    lo("slab-growth-factor", HasArg::Required, 'f'),
    lo("slab-min-size", HasArg::Required, 'n'),
    lo("threads", HasArg::Required, 't'),
    lo("enable-largepages", HasArg::No, 'L'),
    lo("max-reqs-per-event", HasArg::Required, 'R'),
    lo("disable-cas", HasArg::No, 'C'),
    lo("listen-backlog", HasArg::Required, 'b'),
    lo("protocol", HasArg::Required, 'B'),
    lo("max-item-size", HasArg::Required, 'I'),
    lo("enable-sasl", HasArg::No, 'S'),
    lo("disable-flush-all", HasArg::No, 'F'),
    lo("disable-dumping", HasArg::No, 'X'),
    lo("disable-watch", HasArg::No, 'W'),
    lo("auth-file", HasArg::Required, 'Y'),
    lo("memory-file", HasArg::Required, 'e'),
    lo("extended", HasArg::Required, 'o'),
    lo("napi-ids", HasArg::Required, 'N'),
    lo("config", HasArg::Required, OPT_CONFIG),
    lo("sasl-pwdb", HasArg::Required, OPT_SASL_PWDB),
    lo("restore", HasArg::Required, OPT_RESTORE),
    lo("snapshot-dir", HasArg::Required, OPT_SNAPSHOT_DIR),
    lo("cluster-config", HasArg::Required, OPT_CLUSTER_CONFIG),
    lo("cluster-config-readonly", HasArg::No, OPT_CLUSTER_READONLY),
    lo("cluster-config-writable", HasArg::No, OPT_CLUSTER_WRITABLE),
    lo("snapshot-limit", HasArg::Required, OPT_SNAPSHOT_LIMIT),
    lo("metrics-listen", HasArg::Required, OPT_METRICS_LISTEN),
];

/// Every `-o` sub-option memcached 1.6.18 (Debian build: TLS and extstore,
/// no proxy) accepts (ours are [`OUR_SUBOPTS`]).
const SUBOPTS: &[&str] = &[
    "maxconns_fast",
    "hashpower",
    "no_hashexpand",
    "slab_reassign",
    "slab_automove",
    "slab_automove_ratio",
    "slab_automove_window",
    "tail_repair_time",
    "hash_algorithm",
    "lru_crawler",
    "lru_crawler_sleep",
    "lru_crawler_tocrawl",
    "lru_maintainer",
    "hot_lru_pct",
    "warm_lru_pct",
    "hot_max_factor",
    "warm_max_factor",
    "temporary_ttl",
    "idle_timeout",
    "watcher_logbuf_size",
    "worker_logbuf_size",
    "slab_sizes",
    "slab_chunk_max",
    "track_sizes",
    "no_inline_ascii_resp",
    "modern",
    "no_modern",
    "no_chunked_items",
    "no_slab_reassign",
    "no_slab_automove",
    "no_maxconns_fast",
    "inline_ascii_resp",
    "no_lru_crawler",
    "no_lru_maintainer",
    "no_drop_privileges",
    "drop_privileges",
    "resp_obj_mem_limit",
    "read_buf_mem_limit",
    "ssl_chain_cert",
    "ssl_key",
    "ssl_verify_mode",
    "ssl_keyformat",
    "ssl_ciphers",
    "ssl_ca_cert",
    "ssl_wbuf_size",
    "ssl_session_cache",
    "ssl_kernel_tls",
    "ssl_min_version",
    "sock_cookie_id",
    "ext_path",
    "ext_page_size",
    "ext_wbuf_size",
    "ext_threads",
    "ext_io_depth",
    "ext_item_size",
    "ext_item_age",
    "ext_low_ttl",
    "ext_recache_rate",
    "ext_compact_under",
    "ext_drop_under",
    "ext_max_sleep",
    "ext_max_frag",
    "ext_drop_unread",
    "slab_automove_freeratio",
];

/// memcached's extstore options (its flash tier, built into Debian's memcached): the
/// `ext_*` entries of [`SUBOPTS`] and `slab_automove_freeratio`. ferrocache serves no
/// flash tier, so a start with any of them is refused: the operator would otherwise
/// get a server with only `-m` of the capacity configured.
fn is_extstore_subopt(name: &str) -> bool {
    name.starts_with("ext_") || name == "slab_automove_freeratio"
}

/// The message a start with an extstore option stops with (exit 64, `EX_USAGE`).
fn extstore_refusal(token: &str) -> String {
    format!(
        "-o {token}: extstore (memcached's external storage) is not served by ferrocache; \
         the cache would hold only the -m memory. Remove the ext_* options (or raise -m) \
         to start."
    )
}

/// Our own `-o` sub-options (accepted and acted on, besides memcached's).
const OUR_SUBOPTS: &[&str] = &[
    "debugtime",
    "no_latency",
    "latency_sample",
    "metrics_timeout",
    "no_hotkeys",
    "no_sizing",
    "no_miss_reasons",
    "no_insight",
];

/// `-o` sub-options the server acts on; every other one is reported in
/// [`Config::ignored`].
const SUBOPTS_USED: &[&str] = &[
    "maxconns_fast",
    "no_maxconns_fast",
    "idle_timeout",
    "read_buf_mem_limit",
    "slab_chunk_max",
];

/// What parsing needs to remember besides the [`Config`] itself.
#[derive(Debug)]
struct State {
    program: String,
    /// Raw `-l` string, comma-joined like memcached's `settings.inter`.
    inter: Option<String>,
    port: i32,
    udp_port: i32,
    tcp_specified: bool,
    udp_specified: bool,
    protocol_specified: bool,
    item_size_max: i64,
    slab_chunk_changed: bool,
    hot_lru_pct: i32,
    warm_lru_pct: i32,
    temp_lru: bool,
    lru_maintainer: bool,
    napi_ids: i32,
    /// Inside a `--config` file (which may not name another one).
    in_file: bool,
}

/// What one option does to the parse.
enum Step {
    Continue,
    Stop(Invocation),
}

type OptResult = Result<Step, (String, i32)>;

/// Parses the command line (without the program name). Messages that glibc
/// prefixes with the program name use `argv[0]` of this process.
pub fn parse_args(args: &[String]) -> Invocation {
    let program = std::env::args_os()
        .next()
        .map_or_else(|| "ferrocache".into(), |p| p.to_string_lossy().into_owned());
    parse_args_as(&program, args)
}

/// [`parse_args`] with an explicit program name (for getopt's messages).
pub fn parse_args_as(program: &str, args: &[String]) -> Invocation {
    // Ours, not memcached's, and only alone, so getopt's table and messages stay
    // memcached's: `ferrocache --man` prints the man page.
    if let [only] = args {
        if only == "--man" {
            return Invocation::Exit {
                stdout: man_page(),
                stderr: String::new(),
                code: 0,
            };
        }
    }
    let mut cfg = Config::default();
    let mut st = State {
        program: program.to_string(),
        inter: None,
        port: 11211,
        udp_port: 0,
        tcp_specified: false,
        udp_specified: false,
        protocol_specified: false,
        item_size_max: 1 << 20,
        slab_chunk_changed: false,
        hot_lru_pct: 20,
        warm_lru_pct: 40,
        temp_lru: false,
        lru_maintainer: true,
        napi_ids: 0,
        in_file: false,
    };
    match cfg.apply_args(&mut st, args) {
        Ok(Step::Continue) => {}
        Ok(Step::Stop(inv)) => return inv,
        Err((msg, code)) => return Invocation::error(msg, code),
    }
    match cfg.finish(&mut st) {
        Ok(()) => Invocation::Run(Box::new(cfg)),
        Err((msg, code)) => Invocation::error(msg, code),
    }
}

/// glibc's message for an option error, then memcached's own line.
fn getopt_error(program: &str, msg: &str) -> (String, i32) {
    (format!("{program}: {msg}\nIllegal argument \"?\"\n"), 1)
}

impl Config {
    /// Runs every option of `args` through [`Config::apply_opt`].
    fn apply_args(&mut self, st: &mut State, args: &[String]) -> OptResult {
        for item in Getopt::new(args, SHORTOPTS, LONGOPTS) {
            let (opt, val) = match item {
                Ok(p) => p,
                Err(msg) => return Err(getopt_error(&st.program, &msg)),
            };
            if let Step::Stop(inv) = self.apply_opt(st, opt, val.as_deref())? {
                return Ok(Step::Stop(inv));
            }
        }
        Ok(Step::Continue)
    }

    /// Applies one option, with memcached's immediate checks.
    fn apply_opt(&mut self, st: &mut State, opt: char, val: Option<&str>) -> OptResult {
        let arg = val.unwrap_or("");
        let fail = |m: &str| Err((m.to_string(), 1));
        match opt {
            'a' => self.unix_mask = c_strtol(arg, 8) as u32,
            'A' => self.enable_shutdown = true,
            'Z' => self.tls = true,
            'p' => {
                st.port = c_atoi(arg);
                st.tcp_specified = true;
            }
            's' => self.unix_socket = Some(PathBuf::from(arg)),
            'U' => {
                st.udp_port = c_atoi(arg);
                st.udp_specified = true;
            }
            'm' => {
                // (size_t)atoi(optarg): -1 is 2^64 - 1 megabytes
                self.memory_limit_mb = c_atoi(arg) as i64 as u64;
            }
            'M' => self.disable_evictions = true,
            'c' => {
                let n = c_atoi(arg);
                if n <= 0 {
                    return fail("Maximum connections must be greater than 0");
                }
                self.max_conns = n as usize;
            }
            'k' => {
                self.lock_memory = true;
                self.ignored.push("-k".into());
            }
            'h' => {
                return Ok(Step::Stop(Invocation::Exit {
                    stdout: self.help_text(st),
                    stderr: String::new(),
                    code: 0,
                }))
            }
            'i' => {
                return Ok(Step::Stop(Invocation::Exit {
                    stdout: license_text(),
                    stderr: String::new(),
                    code: 0,
                }))
            }
            'V' => {
                return Ok(Step::Stop(Invocation::Exit {
                    stdout: version_text(),
                    stderr: String::new(),
                    code: 0,
                }))
            }
            'r' => {
                self.enable_coredumps = true;
                self.ignored.push("-r".into());
            }
            'v' => self.verbose = self.verbose.saturating_add(1),
            'd' => self.daemonize = true,
            'l' => match &mut st.inter {
                // memcached skips a value already contained in the list.
                Some(inter) if inter.contains(arg) => {}
                Some(inter) => {
                    inter.push(',');
                    inter.push_str(arg);
                }
                None => st.inter = Some(arg.to_string()),
            },
            'u' => self.user = Some(arg.to_string()),
            'P' => self.pid_file = Some(PathBuf::from(arg)),
            'f' => {
                let f = c_atof(arg);
                if f.is_nan() || f <= 1.0 {
                    return fail("Factor must be greater than 1");
                }
                self.growth_factor = f;
            }
            'n' => {
                let n = c_atoi(arg);
                if n == 0 {
                    return fail("Chunk size must be greater than 0");
                }
                self.chunk_min = n.max(1) as usize;
            }
            't' => {
                let n = c_atoi(arg);
                if n <= 0 {
                    return fail("Number of threads must be greater than 0");
                }
                if n > 64 {
                    self.warnings.push(
                        "WARNING: Setting a high number of workerthreads is not recommended.\n \
                         Set this value to the number of cores in your machine or less."
                            .into(),
                    );
                }
                self.threads = n as usize;
            }
            'D' => {
                let Some(&b) = arg.as_bytes().first() else {
                    return fail("No delimiter specified");
                };
                self.prefix_delimiter = b;
                self.detail_enabled = true;
            }
            'L' => {
                self.large_pages = true;
                self.ignored.push("-L".into());
            }
            'R' => {
                let n = c_atoi(arg);
                if n == 0 {
                    return fail("Number of requests per event must be greater than 0");
                }
                self.reqs_per_event = n.max(1) as usize;
            }
            'C' => self.disable_cas = true,
            'b' => self.backlog = c_atoi(arg),
            'B' => {
                st.protocol_specified = true;
                self.protocol = match arg {
                    "auto" => ProtocolMode::Auto,
                    "binary" => ProtocolMode::Binary,
                    "ascii" => ProtocolMode::Ascii,
                    _ => {
                        return Err((
                            format!(
                                "Invalid value for binding protocol: {arg}\n \
                                 -- should be one of auto, binary, or ascii"
                            ),
                            EX_USAGE,
                        ))
                    }
                }
            }
            'I' => st.item_size_max = parse_item_size(arg),
            'S' => self.sasl = true,
            'F' => self.disable_flush_all = true,
            'X' => self.disable_dumping = true,
            'W' => self.disable_watch = true,
            'Y' => self.auth_file = Some(PathBuf::from(arg)),
            OPT_SASL_PWDB => self.sasl_pwdb = Some(PathBuf::from(arg)),
            'e' => self.memory_file = Some(PathBuf::from(arg)),
            OPT_RESTORE => self.restore_file = Some(PathBuf::from(arg)),
            OPT_SNAPSHOT_DIR => self.snapshot_dir = Some(PathBuf::from(arg)),
            OPT_CLUSTER_CONFIG => self.cluster_config = Some(PathBuf::from(arg)),
            OPT_CLUSTER_READONLY => self.cluster_config_readonly = true,
            OPT_CLUSTER_WRITABLE => self.cluster_config_writable = true,
            OPT_SNAPSHOT_LIMIT => match arg.parse::<u32>() {
                Ok(n) if n >= 1 => self.snapshot_limit = n,
                _ => {
                    return Err((
                        format!(
                        "{}: --snapshot-limit: expected a number of files (1 or more), got '{arg}'",
                        st.program
                    ),
                        EX_USAGE,
                    ))
                }
            },
            OPT_METRICS_LISTEN => match parse_metrics_listen(arg) {
                Some(hp) => self.metrics_listen = Some(hp),
                None => {
                    return Err((
                        format!(
                            "{}: --metrics-listen: expected [<host>:]<port>, got '{arg}'",
                            st.program
                        ),
                        EX_USAGE,
                    ))
                }
            },
            'o' => self.apply_subopts(st, arg)?,
            'N' => {
                let n = c_atoi(arg);
                if n <= 0 {
                    return fail("Maximum number of NAPI IDs must be greater than 0");
                }
                st.napi_ids = n;
                self.napi_ids = n as u32;
                self.ignored.push(format!("-N {arg}"));
            }
            OPT_CONFIG => {
                if st.in_file {
                    return Err((
                        format!(
                            "{}: --config cannot be used inside a config file",
                            st.program
                        ),
                        EX_USAGE,
                    ));
                }
                return self.apply_file(st, arg);
            }
            _ => {
                return Err(getopt_error(
                    &st.program,
                    &format!("invalid option -- '{opt}'"),
                ))
            }
        }
        Ok(Step::Continue)
    }

    /// Reads `path` as a `memcached.conf` and applies its options in place.
    fn apply_file(&mut self, st: &mut State, path: &str) -> OptResult {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                format!("{}: cannot read config file {path}: {e}", st.program),
                EX_NOINPUT,
            )
        })?;
        st.in_file = true;
        let result = self.apply_conf_text(st, path, &text);
        st.in_file = false;
        result
    }

    /// Applies the options of a `memcached.conf` text; errors name the file
    /// and line (`FILE:LINE: message`).
    fn apply_conf_text(&mut self, st: &mut State, path: &str, text: &str) -> OptResult {
        for line in conffile::lines(text) {
            let at = |msg: &str| format!("{path}:{}: {msg}", line.number);
            let mut getopt = Getopt::new(&line.args, SHORTOPTS, LONGOPTS);
            for item in getopt.by_ref() {
                let (opt, val) = match item {
                    Ok(p) => p,
                    Err(msg) => return Err((at(&msg), 1)),
                };
                if opt == 'd' {
                    // Debian's conf files are read by init scripts that
                    // daemonize on their own; `-d` there is ignored.
                    continue;
                }
                match self.apply_opt(st, opt, val.as_deref()) {
                    Ok(Step::Continue) => {}
                    Ok(Step::Stop(inv)) => return Ok(Step::Stop(inv)),
                    Err((msg, code)) => return Err((at(msg.trim_end()), code)),
                }
            }
            if let Some(extra) = getopt.skipped.first() {
                return Err((at(&format!("unexpected value '{extra}'")), EX_USAGE));
            }
        }
        Ok(Step::Continue)
    }

    /// Applies `-o a=1,b,...` with memcached's checks and messages.
    fn apply_subopts(&mut self, st: &mut State, list: &str) -> Result<(), (String, i32)> {
        if list.is_empty() {
            return Ok(());
        }
        for token in list.split(',') {
            let (name, value) = match token.find('=') {
                Some(eq) => (&token[..eq], Some(&token[eq + 1..])),
                None => (token, None),
            };
            if !SUBOPTS.contains(&name) && !OUR_SUBOPTS.contains(&name) {
                return Err((format!("Illegal suboption \"{token}\""), 1));
            }
            self.apply_subopt(st, name, value)?;
            if is_extstore_subopt(name) {
                return Err((extstore_refusal(token), EX_USAGE));
            }
            self.extended
                .push((name.to_string(), value.map(str::to_string)));
            if !SUBOPTS_USED.contains(&name) && !OUR_SUBOPTS.contains(&name) {
                self.ignored.push(format!("-o {token}"));
            }
        }
        Ok(())
    }

    fn apply_subopt(
        &mut self,
        st: &mut State,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), (String, i32)> {
        let err = |m: String| Err((m, 1));
        // Options whose value memcached requires, and its message when absent.
        let missing = match name {
            "hashpower" | "tail_repair_time" | "idle_timeout" => {
                Some(format!("Missing numeric argument for {name}"))
            }
            "lru_crawler_sleep" | "lru_crawler_tocrawl" => Some(format!("Missing {name} value")),
            "ext_path" => Some("missing argument to ext_path, ie: ext_path=/d/file:5G".into()),
            "slab_automove_ratio"
            | "slab_automove_window"
            | "hash_algorithm"
            | "hot_lru_pct"
            | "warm_lru_pct"
            | "hot_max_factor"
            | "warm_max_factor"
            | "temporary_ttl"
            | "watcher_logbuf_size"
            | "worker_logbuf_size"
            | "slab_chunk_max"
            | "read_buf_mem_limit"
            | "ssl_chain_cert"
            | "ssl_key"
            | "ssl_verify_mode"
            | "ssl_keyformat"
            | "ssl_ciphers"
            | "ssl_ca_cert"
            | "ssl_wbuf_size"
            | "ssl_min_version"
            | "ext_page_size"
            | "ext_wbuf_size"
            | "ext_threads"
            | "ext_io_depth"
            | "ext_item_size"
            | "ext_item_age"
            | "ext_low_ttl"
            | "ext_recache_rate"
            | "ext_compact_under"
            | "ext_drop_under"
            | "ext_max_sleep"
            | "ext_max_frag"
            | "slab_automove_freeratio"
            | "latency_sample"
            | "metrics_timeout" => Some(format!("Missing {name} argument")),
            _ => None,
        };
        let v = match (value, missing) {
            (None, Some(m)) => return err(m),
            (Some(v), _) => v,
            (None, None) => "",
        };
        let unparsable = || Err((format!("could not parse argument to {name}"), 1));
        match name {
            "maxconns_fast" => self.maxconns_fast = true,
            "no_maxconns_fast" => self.maxconns_fast = false,
            "hashpower" => {
                let n = c_atoi(v);
                if n < 12 {
                    return err(format!("Initial hashtable multiplier of {n} is too low"));
                }
                if n > 32 {
                    return err(format!(
                        "Initial hashtable multiplier of {n} is too high\n\
                         Choose a value based on \"STAT hash_power_level\" from a running instance"
                    ));
                }
                self.hashpower_init = n as u32;
            }
            "slab_automove" if value.is_some() && !(0..=2).contains(&c_atoi(v)) => {
                return err("slab_automove must be between 0 and 2".into());
            }
            "slab_automove_ratio" if c_atof(v).is_nan() || c_atof(v) <= 0.0 || c_atof(v) > 1.0 => {
                return err("slab_automove_ratio must be > 0 and < 1".into());
            }
            "slab_automove_window" if c_atoi(v) < 3 => {
                return err("slab_automove_window must be > 2".into());
            }
            "tail_repair_time" if c_atoi(v) < 10 => {
                return err("Cannot set tail_repair_time to less than 10 seconds".into());
            }
            "hash_algorithm" if !matches!(v, "jenkins" | "murmur3" | "xxh3") => {
                return err("Unknown hash_algorithm option (jenkins, murmur3, xxh3)".into());
            }
            "lru_crawler_sleep" if !(0..=1_000_000).contains(&c_atoi(v)) => {
                return err("LRU crawler sleep must be between 0 and 1 second".into());
            }
            "lru_crawler_tocrawl" if safe_strtoul(v).is_none() => {
                return err("lru_crawler_tocrawl takes a numeric 32bit value".into());
            }
            "lru_maintainer" => st.lru_maintainer = true,
            "no_lru_maintainer" => st.lru_maintainer = false,
            "hot_lru_pct" | "warm_lru_pct" => {
                let n = c_atoi(v);
                if !(1..80).contains(&n) {
                    return err(format!("{name} must be > 1 and < 80"));
                }
                if name == "hot_lru_pct" {
                    st.hot_lru_pct = n;
                } else {
                    st.warm_lru_pct = n;
                }
            }
            "hot_max_factor" | "warm_max_factor" if c_atof(v).is_nan() || c_atof(v) <= 0.0 => {
                return err(format!("{name} must be > 0"));
            }
            "temporary_ttl" => st.temp_lru = true,
            "idle_timeout" => self.idle_timeout = c_atoi(v).max(0) as u32,
            "read_buf_mem_limit" => match safe_strtoul(v) {
                Some(n) => self.read_buf_mem_limit = Some(u64::from(n)),
                None => return unparsable(),
            },
            "watcher_logbuf_size" | "worker_logbuf_size" | "ssl_wbuf_size"
                if safe_strtoul(v).is_none() =>
            {
                return unparsable();
            }
            "slab_chunk_max" => match safe_strtol(v) {
                Some(n) if n > 0 => {
                    self.slab_chunk_max = n as usize;
                    st.slab_chunk_changed = true;
                }
                // memcached prints this and then crashes on 0; we stop.
                _ => return unparsable(),
            },
            "ssl_keyformat" if safe_strtol(v).is_none() => return unparsable(),
            "ssl_verify_mode" | "ssl_min_version" => {
                let what = if name == "ssl_verify_mode" {
                    "Invalid ssl_verify_mode. Use help to see valid options."
                } else {
                    "Invalid ssl_min_version. Use help to see valid options."
                };
                match safe_strtoul(v) {
                    None => return unparsable(),
                    Some(n) if n > 3 => return err(what.into()),
                    Some(_) => {}
                }
            }
            "resp_obj_mem_limit" => self.warnings.push(
                "DEPRECATED: resp_obj_mem_limit no longer used. See read_buf_mem_limit,".into(),
            ),
            "ext_page_size" | "ext_wbuf_size" | "ext_threads" | "ext_io_depth"
            | "ext_item_size" | "ext_item_age" | "ext_low_ttl" | "ext_recache_rate"
            | "ext_compact_under" | "ext_drop_under" | "ext_max_sleep"
                if safe_strtoul(v).is_none() =>
            {
                return unparsable();
            }
            "no_latency" => self.latency_sample = 0,
            "latency_sample" => match v.parse::<u32>() {
                Ok(n) => self.latency_sample = n,
                Err(_) => return unparsable(),
            },
            "metrics_timeout" => match v.parse::<u32>() {
                Ok(n) if n > 0 => self.metrics_timeout_secs = n,
                _ => return unparsable(),
            },
            "no_hotkeys" => self.insight.hotkeys = false,
            "no_sizing" => self.insight.sizing = false,
            "no_miss_reasons" => self.insight.miss_reasons = false,
            "no_insight" => {
                self.insight = crate::insight::InsightConfig {
                    hotkeys: false,
                    sizing: false,
                    miss_reasons: false,
                }
            }
            "debugtime" => {
                self.debugtime = true;
                if let Some(v) = value {
                    match v.parse::<i64>() {
                        Ok(n) => self.debugtime_offset = n,
                        Err(_) => return unparsable(),
                    }
                }
            }
            _ => {}
        }
        self.compat.apply(name, v);
        Ok(())
    }

    /// memcached's checks after all options are read, in its order.
    fn finish(&mut self, st: &mut State) -> Result<(), (String, i32)> {
        let usage = |m: String| Err((m, EX_USAGE));
        if st.napi_ids > 0 && st.napi_ids as usize > self.threads {
            return usage(format!(
                "Number of napi_ids({}) cannot be greater than number of threads({})",
                st.napi_ids, self.threads
            ));
        }
        let item = st.item_size_max;
        if item < 1024 {
            return usage("Item max size cannot be less than 1024 bytes.".into());
        }
        if item as u64 > self.mem_limit_bytes() as u64 / 2 {
            return usage("Cannot set item size limit higher than 1/2 of memory max.".into());
        }
        if item > 1024 * 1024 * 1024 {
            return usage("Cannot set item size limit higher than a gigabyte.".into());
        }
        self.item_size_max = item as usize;
        if self.item_size_max > SLAB_PAGE_SIZE && !st.slab_chunk_changed {
            self.slab_chunk_max = SLAB_PAGE_SIZE / 2;
        }
        let chunk = self.slab_chunk_max;
        if chunk > self.item_size_max {
            return usage(format!(
                "slab_chunk_max (bytes: {chunk}) cannot be larger than -I (item_size_max {item})"
            ));
        }
        if self.item_size_max % chunk != 0 {
            return usage(format!(
                "-I (item_size_max: {item}) must be evenly divisible by slab_chunk_max (bytes: {chunk})"
            ));
        }
        if SLAB_PAGE_SIZE % chunk != 0 {
            return usage(format!(
                "slab_chunk_max (bytes: {chunk}) must divide evenly into {SLAB_PAGE_SIZE} (slab_page_size)"
            ));
        }
        if st.hot_lru_pct + st.warm_lru_pct > 80 {
            return usage("hot_lru_pct + warm_lru_pct cannot be more than 80% combined".into());
        }
        if st.temp_lru && !st.lru_maintainer {
            return usage("temporary_ttl requires lru_maintainer to be enabled".into());
        }
        if self.sasl {
            if !st.protocol_specified {
                self.protocol = ProtocolMode::Binary;
            } else if self.protocol != ProtocolMode::Binary {
                return usage(
                    "ERROR: You cannot allow the ASCII protocol while using SASL.".into(),
                );
            }
            if st.udp_port != 0 {
                return usage(
                    "ERROR: Cannot enable UDP while using binary SASL authentication.".into(),
                );
            }
        }
        if self.auth_file.is_some() {
            if !st.protocol_specified {
                self.protocol = ProtocolMode::Ascii;
            } else if self.protocol != ProtocolMode::Ascii {
                return usage(
                    "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens."
                        .into(),
                );
            }
            if st.udp_port != 0 {
                return usage(
                    "Cannot use UDP with ascii authentication enabled (-U 0 to disable)".into(),
                );
            }
        }
        if self.cluster_config_writable && self.cluster_config_readonly {
            return usage(
                "--cluster-config-writable and --cluster-config-readonly contradict each other"
                    .into(),
            );
        }
        if st.udp_specified && st.udp_port != 0 && !st.tcp_specified {
            st.port = st.udp_port;
        }
        if st.port > 65535 {
            return usage(format!("ERROR: Invalid port number {}.", st.port));
        }
        // memcached ends up on an ephemeral port for a negative -p.
        self.port = st.port.max(0) as u16;
        // memcached hands -U to the socket layer unchecked: it wraps.
        self.udp_port = st.udp_port as u16;
        if let Some(inter) = &st.inter {
            self.listen = inter
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        if self.hashpower_init > 0 {
            // memcached sizes its item lock table from the thread count and
            // refuses a hash table that is not bigger.
            let lock_power = match self.threads {
                0..=2 => 10,
                3 => 11,
                4 => 12,
                _ => 13,
            };
            if self.hashpower_init <= lock_power {
                return Err((
                    format!(
                        "Hash table power size ({}) cannot be equal to or less than item lock table ({lock_power})\n\
                         Item lock table grows with `-t N` (worker threadcount)\n\
                         Hash table grows with `-o hashpower=N` ",
                        self.hashpower_init
                    ),
                    1,
                ));
            }
        }
        Ok(())
    }

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
                let port = port.map_or(self.port, |p| c_atoi(p) as u16);
                (Some(host.to_string()), port, tls)
            })
            .collect()
    }

    /// memcached's `STAT inter` value: the `-l` list, or `NULL`.
    fn inter(&self) -> String {
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

    /// `-h`: memcached's layout, our options only. Defaults shown are the
    /// values parsed so far, as memcached does.
    fn help_text(&self, st: &State) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", version_text().trim_end());
        let rows = self.help_rows(st.port, st.udp_port, &self.threads.to_string());
        for (flag, text) in rows {
            for (i, line) in text.lines().enumerate() {
                if i == 0 {
                    if flag.len() >= 26 {
                        let _ = writeln!(s, "{flag} {line}");
                    } else {
                        let _ = writeln!(s, "{flag:<26}{line}");
                    }
                } else {
                    let _ = writeln!(s, "{:<26}{line}", "");
                }
            }
        }
        for (name, text) in EXTENDED_HELP {
            for (i, line) in text.lines().enumerate() {
                if i == 0 {
                    let _ = writeln!(s, "   - {:<21}{line}", format!("{name}:"));
                } else {
                    let _ = writeln!(s, "{:<26}{line}", "");
                }
            }
        }
        let _ = writeln!(s, "   {EXTENDED_IGNORED}");
        s
    }

    /// The rows of `-h`, flags and text (lines broken for a terminal), the defaults
    /// taken from `self` and the arguments; the man page ([`man_page`]) is made from
    /// the same rows.
    fn help_rows(&self, port: i32, udp_port: i32, threads: &str) -> Vec<(String, String)> {
        vec![
            ("-p, --port=<num>".into(), format!("TCP port to listen on (default: {port})")),
            ("-U, --udp-port=<num>".into(), format!("UDP port to listen on (default: {udp_port}, off)")),
            ("-s, --unix-socket=<file>".into(), "UNIX socket to listen on (disables network support)".into()),
            ("-a, --unix-mask=<mask>".into(), format!("access mask for UNIX socket, in octal (default: {:o})", self.unix_mask)),
            ("-A, --enable-shutdown".into(), "enable ascii \"shutdown\" command".into()),
            ("-l, --listen=<addr>".into(), "interface to listen on (default: INADDR_ANY)\nmay be repeated, or a comma separated list; <addr>:<port> sets the port\nif TLS/SSL is enabled, 'notls' prefix can be used to\ndisable for specific listeners (-l notls:<ip>:<port>)".into()),
            ("-d, --daemon".into(), "run as a daemon".into()),
            ("-u, --user=<user>".into(), "assume identity of <username> (only when run as root)".into()),
            ("-m, --memory-limit=<num>".into(), format!("item memory in megabytes (default: {})", self.memory_limit_mb)),
            ("-M, --disable-evictions".into(), "return error on memory exhausted instead of evicting".into()),
            ("-c, --conn-limit=<num>".into(), format!("max simultaneous connections (default: {})", self.max_conns)),
            ("-v, --verbose".into(), "verbose (print errors/warnings while in event loop)".into()),
            ("-vv".into(), "very verbose (also print client commands/responses)".into()),
            ("-vvv".into(), "extremely verbose (internal state transitions)".into()),
            ("-h, --help".into(), "print this help and exit".into()),
            ("-V, --version".into(), "print version and exit".into()),
            ("-P, --pidfile=<file>".into(), "save PID in <file>, only used with -d option".into()),
            ("-f, --slab-growth-factor=<num>".into(), format!("chunk size growth factor (default: {:.2})", self.growth_factor)),
            ("-n, --slab-min-size=<bytes>".into(), format!("min space used for key+value+flags (default: {})", self.chunk_min)),
            ("-D <char>".into(), "Use <char> as the delimiter between key prefixes and IDs.\nThis is used for per-prefix stats reporting. The default is\n\":\" (colon). If this option is specified, stats collection\nis turned on automatically; if not, then it may be turned on\nby sending the \"stats detail on\" command to the server.".into()),
            ("-t, --threads=<num>".into(), format!("number of threads to use (default: {threads})")),
            ("-R, --max-reqs-per-event".into(), format!("maximum number of requests per event, limits the\nrequests processed per connection to prevent\nstarvation (default: {})", self.reqs_per_event)),
            ("-C, --disable-cas".into(), "disable use of CAS".into()),
            ("-b, --listen-backlog=<num>".into(), format!("set the backlog queue limit (default: {})", self.backlog)),
            ("-B, --protocol=<name>".into(), "protocol - one of ascii, binary, or auto (default: auto-negotiate)".into()),
            ("-I, --max-item-size=<num>".into(), "adjusts max item size\n(default: 1m, min: 1k, max: 1024m)".into()),
            ("-S, --enable-sasl".into(), "require SASL authentication (binary protocol only)".into()),
            ("-e, --memory-file=<file>".into(), "warm restart: a graceful stop (SIGUSR1) saves the\ncache to <file>, a start loads it (then removes it)".into()),
            ("--restore=<file>".into(), "load the snapshot <file> at start (the file is kept)".into()),
            ("--snapshot-dir=<dir>".into(), "serve the \"snapshot <name>\" command and SIGUSR2:\nonline snapshots written into <dir>".into()),
            ("--cluster-config=<file>".into(), "serve this node list to \"config get cluster\"\n(auto discovery: host|ip|port or host:port entries;\nreloaded on SIGHUP)".into()),
            ("--snapshot-limit=<num>".into(), format!("most snapshot files --snapshot-dir may hold; a\nsnapshot beyond them is refused (default: {DEFAULT_SNAPSHOT_LIMIT})")),
            ("--cluster-config-writable".into(), "serve \"config set|delete cluster\": let clients change\nthe node list discovery clients follow (off by\ndefault; with -S or -Y, authenticated clients only)".into()),
            ("--cluster-config-readonly".into(), "refuse \"config set|delete cluster\" (the default)".into()),
            ("--metrics-listen=<addr>".into(), "serve Prometheus metrics over HTTP (GET /metrics) on\n[<host>:]<port>; a bare port listens on 127.0.0.1".into()),
            ("--sasl-pwdb=<file>".into(), "SASL credentials (user:password lines, or salted\nentries from 'ferrocache passwd'); default:\n$MEMCACHED_SASL_PWDB".into()),
            ("-Y, --auth-file=<file>".into(), "require ASCII authentication with user:password\nlines from <file> (text protocol only)".into()),
            ("-Z, --enable-ssl".into(), "enable TLS/SSL (TLS 1.2 and 1.3; see the ssl_* options)".into()),
            ("-F, --disable-flush-all".into(), "disable flush_all command".into()),
            ("-X, --disable-dumping".into(), "disable stats cachedump and lru_crawler metadump".into()),
            ("-W  --disable-watch".into(), "disable watch commands (live logging)".into()),
            ("--config=<file>".into(), "read options from a memcached.conf file (one option\nper line, '#' comments); later options override it".into()),
            ("--man".into(), "print the manual page (roff) and exit; only as the\nsole argument: ferrocache --man | man -l -".into()),
            ("-o, --extended".into(), "comma separated list of extended options\nmost options have a 'no_' prefix to disable".into()),
        ]
    }
}

/// The served `-o` sub-options in `-h` and the man page: name and text.
const EXTENDED_HELP: &[(&str, &str)] = &[
    (
        "maxconns_fast",
        "immediately close new connections after limit (default: enabled)",
    ),
    (
        "idle_timeout",
        "timeout for idle connections. (default: 0, no timeout)",
    ),
    (
        "read_buf_mem_limit",
        "megabytes all connection buffers may hold together (read\n\
         buffers, values being received, replies waiting);\n\
         0 = unlimited (default: -m / 8, from 32 to 1024)",
    ),
    (
        "slab_chunk_max",
        "(EXPERIMENTAL) maximum slab size in bytes. (default: 524288)",
    ),
    (
        "latency_sample",
        "time one request in <n> for the latency histograms\n\
         (stats latency, /metrics); 1 = every request (default: 16)",
    ),
    (
        "no_latency",
        "no latency histograms (nothing counted or timed)",
    ),
    (
        "metrics_timeout",
        "seconds a /metrics client may take to send its request\n\
         before it gets 408 (default: 5)",
    ),
    (
        "debugtime",
        "enable the \"debugtime\" command (moves the server clock; testing only);\n\
         debugtime=<s> also starts the clock <s> seconds ahead",
    ),
    (
        "no_hotkeys",
        "do not keep the hot-key sketches (stats hotkeys)",
    ),
    (
        "no_sizing",
        "do not simulate other cache sizes (stats sizing)",
    ),
    (
        "no_miss_reasons",
        "do not split get misses into evicted / never stored",
    ),
    ("no_insight", "no_hotkeys, no_sizing and no_miss_reasons"),
    ("ssl_chain_cert", "certificate chain file in PEM format"),
    (
        "ssl_key",
        "private key file (PEM, or DER with ssl_keyformat=2)",
    ),
    (
        "ssl_keyformat",
        "private key format: 1 (PEM) or 2 (DER) (default: PEM)",
    ),
    (
        "ssl_verify_mode",
        "peer certificate verification mode, default is 0(None).\n\
         valid values are 0(None), 1(Request), 2(Require)\n\
         or 3(Once); 1-3 need ssl_ca_cert",
    ),
    (
        "ssl_ciphers",
        "TLS 1.2 cipher list (OpenSSL names, mapped to rustls)",
    ),
    ("ssl_ca_cert", "PEM format file of acceptable client CA's"),
    (
        "ssl_wbuf_size",
        "size in kilobytes of per-connection SSL output buffer\n\
         (default: 16; at least 64 KiB are used)",
    ),
    (
        "ssl_session_cache",
        "enable server-side SSL session cache, to support session\n\
         resumption",
    ),
    ("ssl_kernel_tls", "accepted; kernel TLS offload is not used"),
    (
        "ssl_min_version",
        "minimum protocol version to accept (default: tlsv1.2)\n\
         valid values are 2(tlsv1.2) or 3(tlsv1.3).",
    ),
];

/// The last line of the `-o` list in `-h`.
const EXTENDED_IGNORED: &str =
    "other memcached -o options, and -k -r -L -N, are accepted and ignored.";

/// `-V` output.
/// The `-V` line: `ferrocache X.Y.Z (memcached 1.6.18 compatible)` and a newline.
pub fn version_text() -> String {
    format!(
        "ferrocache {} (memcached {MEMCACHED_VERSION} compatible)\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// `-i` output.
fn license_text() -> String {
    format!(
        "{}\nferrocache is distributed under the BSD 3-Clause license.\n",
        version_text()
    )
}

/// `-I` value: a number with an optional `k`/`m` suffix, computed in C
/// `int` arithmetic like memcached (so `2048m` wraps negative).
fn parse_item_size(arg: &str) -> i64 {
    let (num, mult) = match arg.as_bytes().last() {
        Some(b'k' | b'K') => (&arg[..arg.len() - 1], 1024),
        Some(b'm' | b'M') => (&arg[..arg.len() - 1], 1024 * 1024),
        _ => (arg, 1),
    };
    c_atoi(num).wrapping_mul(mult) as i64
}

/// Splits `host:port`, `[v6]:port`, `[v6]`; a bare IPv6 address (more than
/// one colon) has no port.
fn split_host_port(entry: &str) -> (&str, Option<&str>) {
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

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C `strtol(s, NULL, base)` for base 8 or 10: leading spaces, a sign, the
/// longest run of digits; saturates at the `long` range; 0 if no digits.
/// Also returns how many bytes were used (0 if no digits).
fn c_strtol_end(s: &str, base: u32) -> (i64, usize) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && is_c_space(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: i128 = 0;
    while i < b.len() {
        let Some(d) = (b[i] as char).to_digit(base) else {
            break;
        };
        v = (v * base as i128 + d as i128).min(i64::MAX as i128 + 1);
        i += 1;
    }
    if i == start {
        return (0, 0);
    }
    let v = if neg { -v } else { v };
    (v.clamp(i64::MIN as i128, i64::MAX as i128) as i64, i)
}

/// C `strtol(s, NULL, base)`.
fn c_strtol(s: &str, base: u32) -> i64 {
    c_strtol_end(s, base).0
}

/// C `atoi`: glibc's `(int) strtol(s, NULL, 10)`, truncating.
fn c_atoi(s: &str) -> i32 {
    c_strtol(s, 10) as i32
}

/// C `atof` (decimal, `inf`/`nan`, and hex integers like `0x2`): the
/// longest parsable prefix after leading spaces; 0.0 if none.
fn c_atof(s: &str) -> f64 {
    let t = s.trim_start_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    let (sign, body) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let digits: String = hex.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        if !digits.is_empty() {
            return sign * u64::from_str_radix(&digits, 16).map_or(f64::INFINITY, |v| v as f64);
        }
    }
    let lower = body.to_ascii_lowercase();
    for word in ["infinity", "inf"] {
        if lower.starts_with(word) {
            return sign * f64::INFINITY;
        }
    }
    if lower.starts_with("nan") {
        return f64::NAN;
    }
    let len = body
        .char_indices()
        .take_while(|&(_, c)| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        .count();
    (1..=len)
        .rev()
        .find_map(|n| body[..n].parse::<f64>().ok())
        .map_or(0.0, |v| sign * v)
}

/// memcached's `safe_strtoul` ([`crate::num::strtoul`]) on an option's value.
fn safe_strtoul(s: &str) -> Option<u32> {
    crate::num::strtoul(s.as_bytes())
}

/// memcached's `safe_strtol` ([`crate::num::strtol`]) on an option's value.
fn safe_strtol(s: &str) -> Option<i32> {
    crate::num::strtol(s.as_bytes())
}

#[cfg(test)]
mod tests;

/// `--metrics-listen`'s value: `PORT` (127.0.0.1), `HOST:PORT` or `[V6]:PORT`.
pub fn parse_metrics_listen(arg: &str) -> Option<(String, u16)> {
    if let Ok(port) = arg.parse::<u16>() {
        return Some(("127.0.0.1".into(), port));
    }
    let (host, port) = arg.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}
