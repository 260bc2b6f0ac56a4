//! `run`: a closed-loop load generator. Every connection keeps `--pipeline` requests in
//! flight and sends a new one as soon as a reply completes. Client threads each own a
//! mio `Poll` and a share of the connections; requests are batched into one write per
//! connection per wake-up, replies are parsed in place without allocation, and latency
//! (send of a request to the end of its reply) goes into a log-linear histogram.
//!
//! With `--tls` every connection is a TLS client connection (rustls): handshaken
//! blocking when opened, then driven by the same non-blocking loop through the
//! [`Stream`] trait, which the plain TCP stream implements with its socket calls alone
//! (the engine is generic over it, so the plain path is compiled as before).
//! `--handshakes` measures connection set-up instead (see `handshake.rs`).
//!
//! The engine is [`run_load`]; `compare` calls it too.

use crate::hist::Hist;
pub use crate::stream::{Established, Stream};
use crate::textconn::json_str;
use crate::tls::{TlsClient, TlsStream};
use crate::wire::{self, Protocol, ReqKind};
use crate::zipf::{KeyChooser, Rng};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{ErrorKind, IsTerminal, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

    fn check(&self) -> Result<(), String> {
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

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "text" | "ascii" => Ok(Protocol::Text),
        "binary" => Ok(Protocol::Binary),
        _ => Err(format!("--protocol: expected text or binary, got {s:?}")),
    }
}

fn parse_dist(s: &str) -> Result<Dist, String> {
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

fn secs(name: &str, s: f64) -> Result<Duration, String> {
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

// ------------------------------------------------------------------ engine

/// State shared by the client threads and the coordinating thread.
pub(crate) struct Shared {
    /// Measured latencies so far (workers merge their local histogram periodically).
    pub(crate) hist: Mutex<Hist>,
    /// Errors so far.
    pub(crate) errors: Mutex<(u64, Option<String>)>,
    /// Set to stop every worker now.
    pub(crate) stop: AtomicBool,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            hist: Mutex::new(Hist::new()),
            errors: Mutex::new((0, None)),
            stop: AtomicBool::new(false),
        }
    }

    pub(crate) fn error(&self, e: String) {
        let mut g = self.errors.lock();
        g.0 += 1;
        if g.1.is_none() {
            g.1 = Some(e);
        }
    }
}

/// Per-worker totals.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) end: Option<Instant>,
}

/// Raises the soft open-files limit towards the hard one if `need` descriptors would
/// not fit.
pub(crate) fn ensure_fd_limit(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < need {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, need.min(hard), hard);
        }
    }
}

fn connect(addr: SocketAddr) -> Result<std::net::TcpStream, String> {
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    Ok(s)
}

/// Connects to the configured server, over TLS if configured.
pub fn open(cfg: &LoadConfig) -> Result<Established, String> {
    let tcp = connect(cfg.server)?;
    match &cfg.tls {
        None => Ok(Established::Tcp(tcp)),
        Some(t) => {
            let conn = t
                .handshake(&tcp)
                .map_err(|e| format!("{}: {e}", cfg.server))?;
            Ok(Established::Tls(tcp, Box::new(conn)))
        }
    }
}

/// The value bytes: a fixed pattern, sliced to each value's size.
fn value_source(max: usize) -> Vec<u8> {
    (0..max).map(|i| b'a' + (i % 26) as u8).collect()
}

fn build_chooser(cfg: &LoadConfig) -> Result<KeyChooser, String> {
    match cfg.dist {
        Dist::Uniform => Ok(KeyChooser::uniform(cfg.keys)),
        Dist::Zipf(s) => KeyChooser::zipf(cfg.keys, s),
    }
}

#[inline]
fn value_len(cfg: &LoadConfig, rng: &mut Rng) -> usize {
    if cfg.value_min == cfg.value_max {
        cfg.value_min
    } else {
        cfg.value_min + rng.below((cfg.value_max - cfg.value_min + 1) as u64) as usize
    }
}

/// Sets every key once (pipelined batches over a few blocking connections), so that
/// the gets of the run hit. Bounded by 120 s.
pub fn preload(cfg: &LoadConfig) -> Result<(), String> {
    let streams = 4.min(cfg.keys as usize).max(1);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut handles = Vec::new();
    for t in 0..streams {
        let cfg = cfg.clone();
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let timeout = Some(Duration::from_secs(10));
            match open(&cfg)? {
                Established::Tcp(mut s) => {
                    s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
                    preload_stream(&mut s, &cfg, t, streams, deadline)
                }
                Established::Tls(s, conn) => {
                    s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
                    let mut s = rustls::StreamOwned::new(*conn, s);
                    preload_stream(&mut s, &cfg, t, streams, deadline)
                }
            }
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| "preload thread panicked".to_string())??;
    }
    Ok(())
}

/// Preload stream `t` of `streams` over the blocking `s`.
fn preload_stream<S: Read + Write>(
    s: &mut S,
    cfg: &LoadConfig,
    t: usize,
    streams: usize,
    deadline: Instant,
) -> Result<(), String> {
    let values = value_source(cfg.value_max);
    let mut rng = Rng::new(cfg.seed ^ 0x5eed_0000 ^ t as u64);
    let mut out = Vec::with_capacity(1 << 20);
    let mut inb = vec![0u8; 1 << 16];
    let ids: Vec<u64> = (t as u64..cfg.keys).step_by(streams).collect();
    for chunk in ids.chunks(256) {
        if Instant::now() > deadline {
            return Err("preload: took longer than 120 s".into());
        }
        out.clear();
        for &id in chunk {
            let n = value_len(cfg, &mut rng);
            wire::push_set(&mut out, cfg.protocol, id, &values[..n]);
        }
        s.write_all(&out)
            .map_err(|e| format!("preload write: {e}"))?;
        let (mut start, mut end, mut left) = (0usize, 0usize, chunk.len());
        while left > 0 {
            match wire::parse_reply(cfg.protocol, ReqKind::Set, &inb[start..end]) {
                Ok(Some(r)) => {
                    start += r.len;
                    left -= 1;
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("preload: {e}")),
            }
            if start > 0 {
                inb.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            if end == inb.len() {
                inb.resize(inb.len() * 2, 0);
            }
            let n = s
                .read(&mut inb[end..])
                .map_err(|e| format!("preload read: {e}"))?;
            if n == 0 {
                return Err("preload: server closed the connection".into());
            }
            end += n;
        }
    }
    Ok(())
}

/// Runs a load as configured and returns the measured figures.
pub fn run_load(cfg: &LoadConfig) -> Result<LoadResult, String> {
    run_load_with(cfg, &mut || {})
}

/// Like [`run_load`], calling `at_measure_start` the moment the warm-up ends (e.g. to
/// sample a server's CPU time for exactly the measured window).
pub fn run_load_with(
    cfg: &LoadConfig,
    at_measure_start: &mut dyn FnMut(),
) -> Result<LoadResult, String> {
    cfg.check()?;
    ensure_fd_limit((cfg.conns + cfg.idle_conns) as u64 + 64);
    if cfg.preload {
        preload(cfg)?;
    }
    let chooser = Arc::new(build_chooser(cfg)?);
    let mut idle = Vec::with_capacity(cfg.idle_conns);
    for _ in 0..cfg.idle_conns {
        idle.push(open(cfg)?);
    }
    let threads = cfg.threads.min(cfg.conns);
    let mut per_thread: Vec<Vec<Established>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..cfg.conns {
        per_thread[i % threads].push(open(cfg)?);
    }
    let shared = Arc::new(Shared::new());
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let deadline = measure_start + cfg.duration;
    let mut handles = Vec::new();
    for (t, streams) in per_thread.into_iter().enumerate() {
        let w = Worker {
            cfg: cfg.clone(),
            chooser: chooser.clone(),
            shared: shared.clone(),
            rng: Rng::new(cfg.seed.wrapping_mul(0x1000_0000_01b3) ^ t as u64),
            measure_start,
            deadline,
            quota: quota(cfg, t, threads),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || w.run(streams))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    let totals = coordinate(
        cfg,
        &shared,
        handles,
        measure_start,
        deadline,
        at_measure_start,
    )?;
    // Idle connections must still be open (the server must not have dropped them).
    for s in &mut idle {
        let r = match s {
            Established::Tcp(s) => {
                let mut b = [0u8; 1];
                let _ = s.set_nonblocking(true);
                match (&*s).read(&mut b) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
                    Ok(0) => Err("an idle connection was closed by the server".into()),
                    Ok(_) => Err("unexpected data on an idle connection".into()),
                    Err(e) => Err(format!("idle connection: {e}")),
                }
            }
            Established::Tls(s, conn) => crate::tls::check_idle(s, conn),
        };
        if let Err(e) = r {
            shared.error(e);
        }
    }
    drop(idle);
    Ok(finish(&shared, &totals, measure_start, deadline))
}

/// Thread `t`'s share of `--max-ops` (None = no bound).
pub(crate) fn quota(cfg: &LoadConfig, t: usize, threads: usize) -> Option<u64> {
    cfg.max_ops.map(|m| {
        let base = m / threads as u64;
        base + u64::from((t as u64) < m % threads as u64)
    })
}

/// Runs the measurement hook and the progress line until every worker has ended, then
/// joins them and sums their totals.
pub(crate) fn coordinate(
    cfg: &LoadConfig,
    shared: &Shared,
    handles: Vec<std::thread::JoinHandle<Totals>>,
    measure_start: Instant,
    deadline: Instant,
    at_measure_start: &mut dyn FnMut(),
) -> Result<Totals, String> {
    let tty = std::io::stderr().is_terminal();
    let mut hook_done = false;
    let mut next_progress = measure_start + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        let now = Instant::now();
        if !hook_done && now >= measure_start {
            at_measure_start();
            hook_done = true;
        }
        if now >= next_progress && !cfg.progress {
            next_progress += Duration::from_secs(1);
        } else if now >= next_progress {
            let (n, p99) = {
                let h = shared.hist.lock();
                (h.count(), h.quantile(0.99))
            };
            let el = now.duration_since(measure_start).as_secs_f64();
            let line = format!(
                "[{:>4.0}s] {:>10.0} ops/s  p99 {:.3} ms  ops {}  errors {}",
                el,
                n as f64 / el.max(1e-9),
                p99 as f64 / 1e6,
                n,
                shared.errors.lock().0
            );
            if tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
            next_progress += Duration::from_secs(1);
        }
        // Hard bound: a stuck worker is told to stop 10 s after the deadline.
        if now > deadline + Duration::from_secs(10) {
            shared.stop.store(true, Ordering::Relaxed);
        }
        let wake = if hook_done {
            next_progress
        } else {
            measure_start.min(next_progress)
        };
        let nap = wake
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(20));
        std::thread::sleep(nap);
    }
    if !hook_done {
        at_measure_start();
    }
    if cfg.progress && tty {
        eprintln!();
    }
    let mut totals = Totals::default();
    for h in handles {
        let t = h.join().map_err(|_| "load thread panicked".to_string())?;
        totals.hits += t.hits;
        totals.misses += t.misses;
        totals.end = match (totals.end, t.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(totals)
}

/// The figures of the measured window.
pub(crate) fn finish(
    shared: &Shared,
    totals: &Totals,
    measure_start: Instant,
    deadline: Instant,
) -> LoadResult {
    let h = shared.hist.lock();
    let end = totals.end.unwrap_or(deadline).max(measure_start);
    let elapsed = end.duration_since(measure_start);
    let (errors, first_error) = shared.errors.lock().clone();
    let us = |ns: u64| ns as f64 / 1e3;
    LoadResult {
        ops: h.count(),
        elapsed,
        ops_per_sec: h.count() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: us(h.quantile(0.5)),
        p90_us: us(h.quantile(0.9)),
        p99_us: us(h.quantile(0.99)),
        p999_us: us(h.quantile(0.999)),
        max_us: us(h.max()),
        hits: totals.hits,
        misses: totals.misses,
        errors,
        first_error,
    }
}

/// One busy connection.
struct Conn<S> {
    stream: S,
    /// Pending output and how much of it has been written.
    out: Vec<u8>,
    out_pos: usize,
    /// Input buffer (always fully initialised) and the unparsed range.
    inb: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Requests in flight: when each was queued, and its kind.
    inflight: VecDeque<(Instant, ReqKind)>,
    dead: bool,
}

struct Worker {
    cfg: LoadConfig,
    chooser: Arc<KeyChooser>,
    shared: Arc<Shared>,
    rng: Rng,
    measure_start: Instant,
    deadline: Instant,
    quota: Option<u64>,
}

/// Why a connection failed.
type ConnErr = String;

impl Worker {
    fn run(mut self, streams: Vec<Established>) -> Totals {
        let mut totals = Totals::default();
        let r = if self.cfg.tls.is_some() {
            self.run_inner::<TlsStream>(streams, &mut totals)
        } else {
            self.run_inner::<TcpStream>(streams, &mut totals)
        };
        if let Err(e) = r {
            self.shared.error(e);
        }
        totals
    }

    fn run_inner<S: Stream>(
        &mut self,
        streams: Vec<Established>,
        totals: &mut Totals,
    ) -> Result<(), String> {
        let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let mut conns = Vec::with_capacity(streams.len());
        for (i, s) in streams.into_iter().enumerate() {
            let mut stream = S::from_established(s)?;
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("register: {e}"))?;
            conns.push(Conn {
                stream,
                out: Vec::with_capacity(64 << 10),
                out_pos: 0,
                inb: vec![0; (64 << 10).max(2 * self.cfg.value_max + 1024)],
                in_start: 0,
                in_end: 0,
                inflight: VecDeque::with_capacity(self.cfg.pipeline),
                dead: false,
            });
        }
        let values = value_source(self.cfg.value_max);
        let get_threshold = if self.cfg.get_ratio >= 1.0 {
            u64::MAX
        } else {
            (self.cfg.get_ratio * u64::MAX as f64) as u64
        };
        let mut local = Hist::new();
        let mut measuring = false;
        let mut measured_done: u64 = 0;
        let mut inflight_total: u64 = 0;
        let mut last_publish = Instant::now();
        let mut ids = vec![0u64; self.cfg.multiget as usize];
        let mut events = Events::with_capacity(1024);
        let mut now = Instant::now();

        // Fill every pipeline.
        for c in conns.iter_mut() {
            self.refill(
                c,
                now,
                &values,
                get_threshold,
                &mut ids,
                measured_done,
                &mut inflight_total,
            );
            if let Err(e) = flush(c) {
                self.kill(c, &mut inflight_total, e);
            }
        }

        loop {
            now = Instant::now();
            if !measuring && now >= self.measure_start {
                measuring = true;
                local.clear();
                totals.hits = 0;
                totals.misses = 0;
            }
            if now >= self.deadline || self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            if inflight_total == 0 {
                // Quota reached (or every connection dead).
                break;
            }
            if now.duration_since(last_publish) >= Duration::from_millis(200) {
                if measuring {
                    self.shared.hist.lock().merge(&local);
                    local.clear();
                }
                last_publish = now;
            }
            let timeout = self
                .deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll: {e}"));
            }
            now = Instant::now();
            for ev in events.iter() {
                let Some(c) = conns.get_mut(ev.token().0) else {
                    continue;
                };
                if c.dead {
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    let r = self.read_replies(
                        c,
                        now,
                        measuring,
                        &mut local,
                        totals,
                        &mut measured_done,
                        &mut inflight_total,
                    );
                    if let Err(e) = r {
                        self.kill(c, &mut inflight_total, e);
                        continue;
                    }
                    self.refill(
                        c,
                        now,
                        &values,
                        get_threshold,
                        &mut ids,
                        measured_done,
                        &mut inflight_total,
                    );
                }
                if c.out_pos < c.out.len() || c.stream.pending_output() {
                    if let Err(e) = flush(c) {
                        self.kill(c, &mut inflight_total, e);
                    }
                }
            }
        }
        totals.end = Some(now.min(self.deadline));
        if measuring {
            self.shared.hist.lock().merge(&local);
        }
        Ok(())
    }

    fn kill<S>(&self, c: &mut Conn<S>, inflight_total: &mut u64, e: ConnErr) {
        c.dead = true;
        *inflight_total -= c.inflight.len() as u64;
        c.inflight.clear();
        self.shared.error(e);
    }

    /// Tops the connection's pipeline up with new requests (unless the quota is used).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn refill<S>(
        &mut self,
        c: &mut Conn<S>,
        now: Instant,
        values: &[u8],
        get_threshold: u64,
        ids: &mut [u64],
        measured_done: u64,
        inflight_total: &mut u64,
    ) {
        if c.dead {
            return;
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        }
        while c.inflight.len() < self.cfg.pipeline {
            if let Some(q) = self.quota {
                if measured_done + *inflight_total >= q {
                    return;
                }
            }
            let kind = if get_threshold == u64::MAX || self.rng.next_u64() < get_threshold {
                for id in ids.iter_mut() {
                    *id = self.chooser.sample(&mut self.rng);
                }
                wire::push_get(&mut c.out, self.cfg.protocol, ids);
                ReqKind::Get(ids.len() as u16)
            } else {
                let id = self.chooser.sample(&mut self.rng);
                let n = value_len(&self.cfg, &mut self.rng);
                wire::push_set(&mut c.out, self.cfg.protocol, id, &values[..n]);
                ReqKind::Set
            };
            c.inflight.push_back((now, kind));
            *inflight_total += 1;
        }
    }

    /// Reads what is available and completes the replies it holds.
    #[allow(clippy::too_many_arguments)]
    fn read_replies<S: Stream>(
        &self,
        c: &mut Conn<S>,
        now: Instant,
        measuring: bool,
        local: &mut Hist,
        totals: &mut Totals,
        measured_done: &mut u64,
        inflight_total: &mut u64,
    ) -> Result<(), ConnErr> {
        loop {
            if c.in_end == c.inb.len() {
                if c.in_start > 0 {
                    c.inb.copy_within(c.in_start..c.in_end, 0);
                    c.in_end -= c.in_start;
                    c.in_start = 0;
                } else {
                    let n = c.inb.len() * 2;
                    c.inb.resize(n, 0);
                }
            }
            let (n, more) = match c.stream.read_some(&mut c.inb[c.in_end..]) {
                Ok((0, _)) => return Err("server closed a connection".into()),
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            c.in_end += n;
            // Parse what arrived.
            while let Some(&(sent, kind)) = c.inflight.front() {
                let buf = &c.inb[c.in_start..c.in_end];
                match wire::parse_reply(self.cfg.protocol, kind, buf)? {
                    None => break,
                    Some(r) => {
                        c.in_start += r.len;
                        c.inflight.pop_front();
                        *inflight_total -= 1;
                        if measuring {
                            local.record(now.saturating_duration_since(sent).as_nanos() as u64);
                            totals.hits += r.hits as u64;
                            totals.misses += r.misses as u64;
                            *measured_done += 1;
                        }
                    }
                }
            }
            if c.inflight.is_empty() && c.in_start < c.in_end {
                return Err("unexpected bytes after the last reply".into());
            }
            if c.in_start == c.in_end {
                c.in_start = 0;
                c.in_end = 0;
            }
            // A short read drained the socket; epoll (edge-triggered) reports new data.
            if !more {
                break;
            }
        }
        Ok(())
    }
}

/// Writes pending output until done or the socket is full.
fn flush<S: Stream>(c: &mut Conn<S>) -> Result<(), ConnErr> {
    while c.out_pos < c.out.len() {
        match c.stream.write_some(&c.out[c.out_pos..]) {
            Ok(0) => return Err("write returned 0".into()),
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    c.out.clear();
    c.out_pos = 0;
    if c.stream.pending_output() {
        c.stream
            .flush_pending()
            .map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}
