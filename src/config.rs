//! Command line and `memcached.conf`: memcached's flags, names, defaults and errors.
//!
//! PLACEHOLDER interface; the parser is being written.

use std::path::PathBuf;

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

/// Everything the server needs from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP port (`-p`, 0 = off).
    pub port: u16,
    /// UDP port (`-U`, 0 = off).
    pub udp_port: u16,
    /// Interfaces to listen on (`-l`), each maybe with `:port`. Empty = all.
    pub listen: Vec<String>,
    /// Unix socket path (`-s`): disables TCP.
    pub unix_socket: Option<PathBuf>,
    /// Unix socket permission mask (`-a`, octal).
    pub unix_mask: u32,
    /// Item memory in megabytes (`-m`).
    pub memory_limit_mb: u64,
    /// Max simultaneous connections (`-c`).
    pub max_conns: usize,
    /// Worker threads (`-t`).
    pub threads: usize,
    /// Max requests per event per connection (`-R`).
    pub reqs_per_event: usize,
    /// Protocol (`-B`).
    pub protocol: ProtocolMode,
    /// Max item size in bytes (`-I`).
    pub item_size_max: usize,
    /// Return errors instead of evicting (`-M`).
    pub disable_evictions: bool,
    /// Disable CAS (`-C`).
    pub disable_cas: bool,
    /// Slab growth factor (`-f`).
    pub growth_factor: f64,
    /// Minimum chunk space (`-n`).
    pub chunk_min: usize,
    /// Listen backlog (`-b`).
    pub backlog: i32,
    /// Disable `flush_all` (`-F`).
    pub disable_flush_all: bool,
    /// Enable `shutdown` (`-A`).
    pub enable_shutdown: bool,
    /// User to run as (`-u`).
    pub user: Option<String>,
    /// Pid file (`-P`).
    pub pid_file: Option<PathBuf>,
    /// Run as a daemon (`-d`).
    pub daemonize: bool,
    /// Verbosity (`-v` count).
    pub verbose: u8,
    /// Per-prefix stats delimiter (`-D`).
    pub prefix_delimiter: u8,
    /// Per-prefix stats on from the start (`-D` given).
    pub detail_enabled: bool,
    /// `-o debugtime`: serve the `debugtime` command.
    pub debugtime: bool,
    /// `-o idle_timeout` seconds (0 = none).
    pub idle_timeout: u32,
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
            idle_timeout: 0,
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

/// Parses the command line (without the program name).
pub fn parse_args(_args: &[String]) -> Invocation {
    Invocation::Run(Box::default())
}

impl Config {
    /// Log level for `-v` / `-vv` / `-vvv`.
    pub fn log_level(&self) -> log::LevelFilter {
        match self.verbose {
            0 => log::LevelFilter::Warn,
            1 => log::LevelFilter::Info,
            2 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }

    /// `stats settings` lines, in memcached's order, for the settings we have.
    pub fn settings_stats(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}
