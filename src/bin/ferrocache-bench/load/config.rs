//! What `run` is asked to do (`Args`, `LoadConfig`) and what it measured
//! (`LoadResult`).

use crate::textconn::json_str;
use crate::tls::TlsClient;
use crate::wire::Protocol;
use crate::zipf::Rng;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Options of `run`.
#[derive(clap::Args, Debug, Clone)]
#[command(
    after_help = "Latency is measured per request, from the moment the request is \
queued for sending to the moment its complete reply has been parsed. With --pipeline > 1 it \
therefore includes the time a request waits behind the others in the pipeline. With \
--multiget K, one op is one request of K keys; hits and misses count keys.\n\n\
With --tls, connections are TLS (rustls, TLS 1.2/1.3, no session resumption) and the \
server's certificate is checked against --cacert (default: the system's roots) for \
--tls-name (default: the host of --server). With --handshakes, each of --conns \
connections in turn connects, does a full TLS handshake, sends `version`, reads the \
reply and closes, and one op is one such handshake.\n\n\
Exit status: 0 on success, 1 on any protocol error, unexpected close or zero operations."
)]
pub struct Args {
    /// Server address (loopback only).
    #[arg(long, default_value = "127.0.0.1:11211")]
    pub server: String,
    /// Busy connections.
    #[arg(long, default_value_t = 50)]
    pub conns: usize,
    /// Client threads (each with its own poller).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Fraction of requests that are gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    pub get_ratio: f64,
    /// Keys per get request (1 = single get; more = multi-get).
    #[arg(long, default_value_t = 1)]
    pub multiget: u16,
    /// Key space: keys key:00000000 .. key:N-1.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Key popularity: uniform or zipf:S (Zipf exponent S).
    #[arg(long, default_value = "uniform")]
    pub dist: String,
    /// Value size in bytes: N, or MIN-MAX (uniform in the range).
    #[arg(long, default_value = "100")]
    pub value: String,
    /// Protocol: text or binary.
    #[arg(long, default_value = "text")]
    pub protocol: String,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Stop after this many measured operations (0 = no limit but the duration).
    #[arg(long, default_value_t = 0)]
    pub max_ops: u64,
    /// Extra connections opened and kept idle during the run.
    #[arg(long, default_value_t = 0)]
    pub idle_conns: usize,
    /// Do not set every key once before the run (by default gets hit).
    #[arg(long)]
    pub no_preload: bool,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the result as one JSON object on stdout (instead of the table).
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Connect over TLS.
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the certificates to trust (with --tls; default: the system's roots).
    #[arg(long, requires = "tls")]
    pub cacert: Option<std::path::PathBuf>,
    /// Name the server's certificate must carry (with --tls; default: the host of
    /// --server).
    #[arg(long, requires = "tls")]
    pub tls_name: Option<String>,
    /// Measure handshakes: connect, TLS handshake, `version`, close, repeated on each
    /// connection (with --tls).
    #[arg(long, requires = "tls")]
    pub handshakes: bool,
    /// With --handshakes: start at most this many handshakes a second (0 = each
    /// connection starts the next as soon as one ends).
    #[arg(long, requires = "handshakes", default_value_t = 0.0)]
    pub rate: f64,
}

/// Key popularity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with this exponent.
    Zipf(f64),
}

/// Everything a load run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Server address (must be loopback).
    pub server: SocketAddr,
    /// Busy connections.
    pub conns: usize,
    /// Client threads.
    pub threads: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Fraction of requests that are gets.
    pub get_ratio: f64,
    /// Keys per get request.
    pub multiget: u16,
    /// Key space.
    pub keys: u64,
    /// Key popularity.
    pub dist: Dist,
    /// Smallest value size.
    pub value_min: usize,
    /// Largest value size.
    pub value_max: usize,
    /// Protocol.
    pub protocol: Protocol,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured load before.
    pub warmup: Duration,
    /// Bound on measured operations (None = duration only).
    pub max_ops: Option<u64>,
    /// Idle connections held open during the run.
    pub idle_conns: usize,
    /// Set every key once before the run.
    pub preload: bool,
    /// Random seed.
    pub seed: u64,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    /// Connect over TLS with this client (None = plain TCP).
    pub tls: Option<TlsClient>,
    /// Handshake load: handshakes started per second, all threads together (0 = as
    /// fast as the connections finish them).
    pub handshake_rate: f64,
}

impl LoadConfig {
    /// The defaults of `run` against `server`.
    pub fn new(server: SocketAddr) -> LoadConfig {
        LoadConfig {
            server,
            conns: 50,
            threads: 1,
            pipeline: 1,
            get_ratio: 0.9,
            multiget: 1,
            keys: 10_000,
            dist: Dist::Uniform,
            value_min: 100,
            value_max: 100,
            protocol: Protocol::Text,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            max_ops: None,
            idle_conns: 0,
            preload: true,
            seed: 1,
            progress: false,
            tls: None,
            handshake_rate: 0.0,
        }
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if !self.server.ip().is_loopback() {
            return Err(format!("{}: only loopback servers", self.server));
        }
        if self.conns == 0 || self.threads == 0 || self.pipeline == 0 {
            return Err("--conns, --threads and --pipeline must be >= 1".into());
        }
        if self.multiget == 0 {
            return Err("--multiget must be >= 1".into());
        }
        if self.keys == 0 || self.keys > 100_000_000 {
            return Err("--keys must be 1..=100000000 (key:%08d)".into());
        }
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return Err("--get-ratio must be within 0..1".into());
        }
        if self.value_min > self.value_max || self.value_max > 64 << 20 {
            return Err("--value: need MIN <= MAX <= 64 MiB".into());
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(3600) {
            return Err("--duration must be within (0, 3600] seconds".into());
        }
        if self.warmup > Duration::from_secs(600) {
            return Err("--warmup must be <= 600 seconds".into());
        }
        if self.pipeline > 4096 || self.conns > 100_000 || self.idle_conns > 100_000 {
            return Err("--pipeline <= 4096, --conns and --idle-conns <= 100000".into());
        }
        if !(0.0..=1_000_000.0).contains(&self.handshake_rate) {
            return Err("--rate must be within 0..=1000000".into());
        }
        Ok(())
    }
}

/// Result of a load run (measured window only).
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Completed requests.
    pub ops: u64,
    /// Measured time.
    pub elapsed: Duration,
    /// ops / elapsed.
    pub ops_per_sec: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 90th percentile latency, µs.
    pub p90_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Largest latency, µs.
    pub max_us: f64,
    /// Keys found by gets.
    pub hits: u64,
    /// Keys not found by gets.
    pub misses: u64,
    /// Protocol errors, unexpected closes and dropped idle connections.
    pub errors: u64,
    /// Description of the first error.
    pub first_error: Option<String>,
}

impl LoadResult {
    /// One JSON object with every field (latencies in µs, elapsed in seconds).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"ops\":{},\"elapsed_s\":{:.6},\"ops_per_sec\":{:.1},\"p50_us\":{:.1},\
             \"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\
             \"hits\":{},\"misses\":{},\"errors\":{},\"first_error\":{}}}",
            self.ops,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.hits,
            self.misses,
            self.errors,
            self.first_error
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".into())
        )
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        format!(
            "{:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9} {:>7}\n\
             {:>12.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>11} {:>11} {:>9} {:>7}\n",
            "ops/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "ops",
            "hits",
            "misses",
            "errors",
            self.ops_per_sec,
            self.p50_us / 1e3,
            self.p90_us / 1e3,
            self.p99_us / 1e3,
            self.p999_us / 1e3,
            self.max_us / 1e3,
            self.ops,
            self.hits,
            self.misses,
            self.errors
        )
    }
}

/// Parses `N` or `MIN-MAX`.
pub fn parse_value_size(s: &str) -> Result<(usize, usize), String> {
    let p = |x: &str| {
        x.trim()
            .parse::<usize>()
            .map_err(|_| format!("--value: bad size {s:?}"))
    };
    match s.split_once('-') {
        Some((a, b)) => Ok((p(a)?, p(b)?)),
        None => {
            let v = p(s)?;
            Ok((v, v))
        }
    }
}

pub(super) fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "text" | "ascii" => Ok(Protocol::Text),
        "binary" => Ok(Protocol::Binary),
        _ => Err(format!("--protocol: expected text or binary, got {s:?}")),
    }
}

pub(super) fn parse_dist(s: &str) -> Result<Dist, String> {
    if s == "uniform" {
        return Ok(Dist::Uniform);
    }
    if let Some(x) = s.strip_prefix("zipf:") {
        let e: f64 = x
            .parse()
            .map_err(|_| format!("--dist: bad Zipf exponent in {s:?}"))?;
        if e.is_finite() && e >= 0.0 {
            return Ok(Dist::Zipf(e));
        }
    }
    Err(format!("--dist: expected uniform or zipf:S, got {s:?}"))
}

pub(super) fn secs(name: &str, s: f64) -> Result<Duration, String> {
    if s.is_finite() && (0.0..=1e6).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!("--{name}: bad number of seconds {s}"))
    }
}

impl TryFrom<&Args> for LoadConfig {
    type Error = String;

    fn try_from(a: &Args) -> Result<LoadConfig, String> {
        let server = a
            .server
            .to_socket_addrs()
            .map_err(|e| format!("--server {}: {e}", a.server))?
            .find(|s| s.ip().is_loopback())
            .ok_or_else(|| format!("--server {}: not a loopback address", a.server))?;
        let (value_min, value_max) = parse_value_size(&a.value)?;
        let tls = if a.tls {
            let host = a
                .server
                .rsplit_once(':')
                .map(|(h, _)| h)
                .unwrap_or(&a.server)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = a.tls_name.as_deref().unwrap_or(host);
            Some(TlsClient::new(a.cacert.as_deref(), name)?)
        } else {
            None
        };
        let cfg = LoadConfig {
            server,
            conns: a.conns,
            threads: a.threads,
            pipeline: a.pipeline,
            get_ratio: a.get_ratio,
            multiget: a.multiget,
            keys: a.keys,
            dist: parse_dist(&a.dist)?,
            value_min,
            value_max,
            protocol: parse_protocol(&a.protocol)?,
            duration: secs("duration", a.duration)?,
            warmup: secs("warmup", a.warmup)?,
            max_ops: (a.max_ops > 0).then_some(a.max_ops),
            idle_conns: a.idle_conns,
            preload: !a.no_preload,
            seed: a.seed,
            progress: !a.quiet,
            tls,
            handshake_rate: a.rate,
        };
        cfg.check()?;
        Ok(cfg)
    }
}

/// The value bytes: a fixed pattern, sliced to each value's size.
pub(super) fn value_source(max: usize) -> Vec<u8> {
    (0..max).map(|i| b'a' + (i % 26) as u8).collect()
}

#[inline]
pub(super) fn value_len(cfg: &LoadConfig, rng: &mut Rng) -> usize {
    if cfg.value_min == cfg.value_max {
        cfg.value_min
    } else {
        cfg.value_min + rng.below((cfg.value_max - cfg.value_min + 1) as u64) as usize
    }
}
