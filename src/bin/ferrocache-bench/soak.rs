//! `soak`: a bounded soak test of one server. Real clients, evictions, expiries, the
//! connection fault patterns of `tests/suite/overload.rs`, SIGHUP and `flush_all` all run at
//! once for `--duration` seconds; a monitor checks the invariants every `--interval`
//! seconds and prints one line per check; the command exits non-zero if any invariant
//! failed at any time. A documented command, not run in CI.
//!
//! By default it starts ferrocache itself (`-t --threads -m --mem -c 4096`, 127.0.0.1,
//! a free port, stopped at the end); `--server HOST:PORT` soaks a running server
//! instead, and `--pid` then enables the SIGHUP, liveness, RSS and descriptor checks.
//!
//! ## Load (every thread stops at the deadline)
//!
//! - **Real clients**: four threads using the project's cluster client
//!   ([`ferrocache::client`]) against the one node: text, binary, meta and a second
//!   text, each paced to 4,000 operations a second (the rest of a small machine is
//!   the server's). Cache-aside over 200,000 Zipf(0.99) keys (`k:<rank>`), values
//!   50 B..8 KiB (log-uniform) so that the default `-m 16` evicts all the time; sets
//!   with a 1–5 s TTL or none; deletes; touches; `get_many` of 10–50 keys; incr/decr
//!   on counter keys each thread owns; over meta also stampede-safe cache-aside (`mg N
//!   R`, `md I`) on keys of its own (`m:<i>`).
//! - **pymemcache** (when `/usr/bin/python3` can import it): one child process doing
//!   get/set/delete with pymemcache's default noreply stores, closing and reopening its
//!   connection every few hundred operations; it must exit 0.
//! - **Faults**, one thread per pattern, each on raw sockets with a bounded number of
//!   connections at once and short pauses: noreply set then FIN; quiet binary SETQ then
//!   FIN; partial line then RST; partial 1 MB value then FIN or RST; half-close after a
//!   noreply request, read until EOF; never-reading clients sending 40 lines of 100-key
//!   multi-gets and holding them for 3 s; a 5,000-key multi-get line read fully;
//!   garbage (random bytes, a bad binary magic after a NOOP, SASL on a server without
//!   it, HTTP, an over-long line).
//! - **Chaos**: SIGHUP every 20 s, `flush_all` every 60 s (the first at 30 s), after
//!   which the sentinel is stored again.
//!
//! ## Invariants
//!
//! - **No corruption.** Every value written encodes its key and a checksum
//!   (`key|len|fnv64 hex|payload`, client flags = the low 32 bits of the checksum), so
//!   every value read (real clients, the 5,000-key multi-get) is verified. Also
//!   corruption: a `get_many` answer for a key not asked for; a counter whose
//!   incr/decr result is not the last value the owning thread saw ± its delta (only
//!   that thread writes it; evictions, expiry and flushes make it missing, never
//!   different); an item stored with a 1 s TTL read back 3.5 s later.
//! - **No unexpected error.** Nothing in this load makes memcached answer an error
//!   (evictions are on, values fit every buffer), and the fault threads use
//!   connections of their own, so any client error is a failure: error replies, I/O
//!   errors and timeouts (5 s), including the ones the cluster client absorbs
//!   (`get_many` and cache-aside fall back silently; seen through its node counters).
//!   Fault threads also fail on a fresh connection not answering, a half-closed
//!   connection or a bad binary magic not closed by the server within a few seconds,
//!   a malformed reply to the 5,000-key multi-get.
//! - **Alive and fast.** The server process exists and answers `version` on a fresh
//!   connection; ~200 `get sentinel` round trips on it have a p99 ≤ 10 ms.
//! - **Sentinel.** A key stored at the start (and after every flush) reads back intact,
//!   checked by the monitor and every 20 ms by a keeper thread (whose reads also keep
//!   it hot, so eviction has no reason to take it). A loss is counted, reported and
//!   the sentinel stored again.
//! - **Memory.** RSS (sampled every 250 ms) ≤ `--mem` + 64 MiB.
//! - **Connections.** Every connection the soak opens is counted while it is open
//!   (before connect until after close; a client thread and the pymemcache child count
//!   as one each). `curr_connections` must stay ≤ the most the soak held during the
//!   last second or more + the others seen at the start + 32; at the end, after all
//!   threads stopped and a settle wait of up to 10 s, it (and, with a pid, the
//!   server's open descriptors) must be exactly the baseline of the start.
//!
//! Output: a line per check (`soak t=35s ops=... corrupt=0 errors=0 curr_conns=57
//! ... sentinel=ok`), a line per failure as it happens, then the summary `soak: <secs>
//! s, <ops> ops, ...: PASS|FAIL`.

use crate::servers::{Kind, ServerProc};
use crate::textconn::{stat_u64, Conn};
use crate::zipf::{KeyChooser, Rng};
use ferrocache::client::{Client, ClientConfig, Error as ClientError, Protocol};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Options of `soak`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when every invariant held for the whole run, 1 \
otherwise (each failure is printed when it happens, and the summary line says FAIL)."
)]
pub struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Memory limit in MiB: the server's `-m`, and the base of the RSS bound.
    #[arg(long, default_value_t = 16)]
    mem: u64,
    /// Worker threads of the server started here (`-t`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds between invariant checks.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Soak this running server (HOST:PORT) instead of starting ferrocache.
    #[arg(long)]
    server: Option<String>,
    /// With --server: its process id, for the SIGHUP, liveness, RSS and descriptor checks.
    #[arg(long, requires = "server")]
    pid: Option<u32>,
}

/// Keys of the Zipf key space (`k:0` .. `k:199999`).
const KEYS: u64 = 200_000;
/// Zipf exponent of key popularity.
const ZIPF_S: f64 = 0.99;
/// Smallest and largest value written by the real clients (header included).
const MIN_VALUE: usize = 50;
const MAX_VALUE: usize = 8192;
/// Operations per second of each real-client thread (paced, so the soak leaves CPU to
/// the server on a small machine; still enough writes to evict all the time).
const CLIENT_RATE: u32 = 4000;
/// Counter keys per client thread.
const COUNTERS: usize = 16;
/// Value counters start from (far from 0, so decr never clamps in practice).
const COUNTER_START: u64 = 1_000_000;
/// An item stored with a 1 s TTL must be gone this long after it was stored.
const EXPIRY_CHECK_AFTER: Duration = Duration::from_millis(3500);
/// Client flags of the meta cache-aside values (nonzero: placeholders have 0).
const META_FLAGS: u32 = 0x50_4b;

/// The sentinel.
const SENTINEL_KEY: &str = "sentinel";
const SENTINEL_FLAGS: u32 = 7;
const SENTINEL_VALUE: &[u8] = b"ferrocache-soak-sentinel|still-here|0123456789";

/// `curr_connections` may exceed what the soak holds by this much.
const CONN_MARGIN: i64 = 32;
/// At least this long between the start of a connection-count window and the
/// `stats` read that ends it (closes before the window had that long to land).
const CONN_WINDOW: Duration = Duration::from_secs(1);
/// Round trips of the fresh client per check, and their p99 limit.
const FRESH_GETS: usize = 200;
const FRESH_P99_LIMIT: Duration = Duration::from_millis(10);
/// RSS may exceed `--mem` by this much.
const RSS_SLACK: u64 = 64 << 20;
/// Chaos schedule.
const SIGHUP_EVERY: Duration = Duration::from_secs(20);
const FLUSH_FIRST: Duration = Duration::from_secs(30);
const FLUSH_EVERY: Duration = Duration::from_secs(60);
/// Timeouts of the soak's own connections.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Failure lines printed per kind (all are counted), and kept per kind for the end.
const MAX_PRINTED: u64 = 30;
const MAX_KEPT: usize = 3;

const MIB: f64 = (1u64 << 20) as f64;

// ---- shared state ----------------------------------------------------------------

/// What kind of failure, for the counters of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    /// A value that is not what was written (or should not be there any more).
    Corrupt,
    /// An error reply, I/O error or misbehaviour memcached would not show here.
    Error,
    /// The sentinel was missing or different.
    SentinelLost,
    /// Any other invariant: liveness, latency, RSS, connection counts.
    Invariant,
}

/// State shared by every thread of the run (borrowed by scoped threads).
struct Shared<'a> {
    addr: SocketAddr,
    /// The server process, when the soak started it.
    server: Option<&'a ServerProc>,
    /// The server's pid, when known.
    pid: Option<u32>,
    rss_limit: u64,
    start: Instant,
    deadline: Instant,
    /// Set to end the run early (the server is gone).
    stop: AtomicBool,
    /// Connections the soak holds open now, and the most since the monitor's reset.
    held: AtomicI64,
    held_peak: AtomicI64,
    /// Connections of others, from the baseline (`curr_connections` minus the probe).
    others: AtomicI64,
    ops: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
    sentinel_losses: AtomicU64,
    invariant: AtomicU64,
    /// Largest RSS seen in the whole run and since the last check.
    max_rss: AtomicU64,
    interval_rss: AtomicU64,
    worst_p99_us: AtomicU64,
    sighups: AtomicU64,
    flushes: AtomicU64,
    /// Held while the sentinel is read or flushed and stored again, so a read never
    /// falls between a `flush_all` and the new sentinel.
    sentinel: Mutex<()>,
    /// The first failures of each kind, for the end of the run.
    first_failures: Mutex<Vec<(Fail, String)>>,
    /// Failure lines printed so far, per kind (a flood of one kind hides no other).
    printed: [AtomicU64; 4],
}

impl<'a> Shared<'a> {
    fn new(
        addr: SocketAddr,
        server: Option<&'a ServerProc>,
        pid: Option<u32>,
        mem_mb: u64,
        duration: Duration,
    ) -> Shared<'a> {
        let start = Instant::now();
        Shared {
            addr,
            server,
            pid,
            rss_limit: (mem_mb << 20) + RSS_SLACK,
            start,
            deadline: start + duration,
            stop: AtomicBool::new(false),
            held: AtomicI64::new(0),
            held_peak: AtomicI64::new(0),
            others: AtomicI64::new(0),
            ops: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            sentinel_losses: AtomicU64::new(0),
            invariant: AtomicU64::new(0),
            max_rss: AtomicU64::new(0),
            interval_rss: AtomicU64::new(0),
            worst_p99_us: AtomicU64::new(0),
            sighups: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            sentinel: Mutex::new(()),
            first_failures: Mutex::new(Vec::new()),
            printed: Default::default(),
        }
    }

    /// Whether the load should go on.
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Seconds since the start.
    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Counts and prints a failure.
    fn fail(&self, kind: Fail, who: &str, msg: impl std::fmt::Display) {
        let (counter, label, i) = match kind {
            Fail::Corrupt => (&self.corrupt, "CORRUPTION", 0),
            Fail::Error => (&self.errors, "ERROR", 1),
            Fail::SentinelLost => (&self.sentinel_losses, "SENTINEL", 2),
            Fail::Invariant => (&self.invariant, "INVARIANT", 3),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let line = format!("soak: {label} t={:.1}s [{who}] {msg}", self.t());
        let n = self.printed[i].fetch_add(1, Ordering::Relaxed);
        if n < MAX_PRINTED {
            println!("{line}");
        } else if n == MAX_PRINTED {
            println!("soak: (further {label} failures are counted, not printed)");
        }
        let mut first = self.first_failures.lock();
        if first.iter().filter(|(k, _)| *k == kind).count() < MAX_KEPT {
            first.push((kind, line));
        }
    }

    /// Whether the server process exists and is not a zombie (true when unknown).
    fn alive(&self) -> bool {
        let Some(pid) = self.pid else {
            return true;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state is the first field after the command name in parentheses.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }

    /// The server's RSS in bytes, when its pid is known.
    fn rss(&self) -> Option<u64> {
        match (self.server, self.pid) {
            (Some(s), _) => Some(s.rss_bytes()),
            (None, Some(pid)) => rss_of(pid),
            (None, None) => None,
        }
    }

    /// The server's open descriptors, when its pid is known.
    fn fds(&self) -> Option<usize> {
        let pid = self.pid?;
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count())
    }

    fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// RSS of a process we did not start, from /proc/PID/status.
fn rss_of(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// One connection the soak holds open, counted from before its connect until after
/// its close (declare it before the socket so it is dropped after it).
struct Held<'s>(&'s Shared<'s>);

impl<'s> Held<'s> {
    fn new(sh: &'s Shared<'s>) -> Held<'s> {
        let now = sh.held.fetch_add(1, Ordering::Relaxed) + 1;
        sh.held_peak.fetch_max(now, Ordering::Relaxed);
        Held(sh)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A raw socket of a fault thread (counted while open).
struct Raw<'s> {
    s: TcpStream,
    _held: Held<'s>,
}

fn raw<'s>(sh: &'s Shared<'s>) -> Result<Raw<'s>, String> {
    let held = Held::new(sh);
    let s = TcpStream::connect_timeout(&sh.addr, IO_TIMEOUT)
        .map_err(|e| format!("connect {}: {e}", sh.addr))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(Raw { s, _held: held })
}

/// A text-protocol connection of the monitor, keeper, chaos and multi-get threads.
struct Probe<'s> {
    c: Conn,
    _held: Held<'s>,
}

impl<'s> Probe<'s> {
    fn connect(sh: &'s Shared<'s>, timeout: Duration) -> Result<Probe<'s>, String> {
        let held = Held::new(sh);
        let c = Conn::connect(sh.addr, timeout)?;
        Ok(Probe { c, _held: held })
    }
}

/// `get <key>` on a text connection: `(flags, value)` or None on a miss.
fn text_get(c: &mut Conn, key: &str) -> Result<Option<(u32, Vec<u8>)>, String> {
    c.send(format!("get {key}\r\n").as_bytes())?;
    let mut line = Vec::new();
    c.read_line(&mut line)?;
    if line == b"END" {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    let f: Vec<&str> = text.split(' ').collect();
    let (flags, len) = match f.as_slice() {
        ["VALUE", k, flags, len] if *k == key => {
            match (flags.parse::<u32>(), len.parse::<usize>()) {
                (Ok(fl), Ok(n)) => (fl, n),
                _ => return Err(format!("get {key}: bad VALUE line {text:?}")),
            }
        }
        _ => return Err(format!("get {key}: unexpected reply {text:?}")),
    };
    let mut data = Vec::new();
    c.read_exact(len + 2, &mut data)?;
    if !data.ends_with(b"\r\n") {
        return Err(format!("get {key}: value not ended by CRLF"));
    }
    data.truncate(len);
    c.read_line(&mut line)?;
    if line != b"END" {
        return Err(format!(
            "get {key}: expected END, got {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    Ok(Some((flags, data)))
}

/// Stores the sentinel (the caller holds the sentinel lock, or nothing runs yet).
fn store_sentinel(c: &mut Conn) -> Result<(), String> {
    let mut req = format!(
        "set {SENTINEL_KEY} {SENTINEL_FLAGS} 0 {}\r\n",
        SENTINEL_VALUE.len()
    )
    .into_bytes();
    req.extend_from_slice(SENTINEL_VALUE);
    req.extend_from_slice(b"\r\n");
    c.send(&req)?;
    let mut line = Vec::new();
    c.read_line(&mut line)?;
    if line != b"STORED" {
        return Err(format!(
            "storing the sentinel: {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    Ok(())
}

/// Reads the sentinel once (the caller holds the sentinel lock). A missing or
/// different sentinel is counted as a loss and stored again; Ok(false) says so.
/// Err: the connection failed.
fn check_sentinel(sh: &Shared, c: &mut Conn, who: &str) -> Result<bool, String> {
    let got = text_get(c, SENTINEL_KEY)?;
    let problem = match &got {
        Some((f, v)) if *f == SENTINEL_FLAGS && v == SENTINEL_VALUE => return Ok(true),
        None => "missing".to_string(),
        Some((f, v)) => format!("different: flags {f}, value {}", show(v)),
    };
    sh.fail(
        Fail::SentinelLost,
        who,
        format!("sentinel {problem}; storing it again"),
    );
    store_sentinel(c)?;
    Ok(false)
}

/// Bytes for a message: escaped, at most 80 of them.
fn show(b: &[u8]) -> String {
    let cut = &b[..b.len().min(80)];
    let more = if b.len() > 80 { "..." } else { "" };
    format!("\"{}\"{more} ({} bytes)", cut.escape_ascii(), b.len())
}

fn sleep_while_running(sh: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while sh.running() {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

// ---- values ----------------------------------------------------------------------

/// FNV-1a 64 of `key|payload`.
fn fnv64(key: &[u8], payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.iter().chain(b"|").chain(payload) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A value length, log-uniform over MIN_VALUE..=MAX_VALUE (median ~640 B).
fn value_len(rng: &mut Rng) -> usize {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let v = MIN_VALUE as f64 * (MAX_VALUE as f64 / MIN_VALUE as f64).powf(u);
    (v as usize).clamp(MIN_VALUE, MAX_VALUE)
}

/// Writes a value of about `total` bytes for `key` into `out`:
/// `key|<payload len>|<fnv64 hex>|<payload>`. Returns the client flags to store it
/// with (the checksum's low 32 bits).
fn make_value(
    key: &[u8],
    total: usize,
    rng: &mut Rng,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> u32 {
    let header = key.len() + 1 + 4 + 1 + 16 + 1;
    let plen = total.saturating_sub(header).max(1);
    scratch.clear();
    while scratch.len() < plen {
        let r = rng.next_u64().to_le_bytes();
        let take = (plen - scratch.len()).min(8);
        scratch.extend(r[..take].iter().map(|b| b'a' + b % 26));
    }
    let sum = fnv64(key, scratch);
    out.clear();
    out.extend_from_slice(key);
    let _ = write!(out, "|{plen}|{sum:016x}|");
    out.extend_from_slice(scratch);
    sum as u32
}

/// Checks a value read for `key` (and its flags, when the reader has them).
fn verify(key: &[u8], value: &[u8], flags: Option<u32>) -> Result<(), String> {
    let mut parts = value.splitn(4, |&b| b == b'|');
    let (Some(k), Some(len), Some(sum), Some(payload)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "value of {} is not an encoded value: {}",
            show(key),
            show(value)
        ));
    };
    if k != key {
        return Err(format!(
            "value of {} belongs to key {}: {}",
            show(key),
            show(k),
            show(value)
        ));
    }
    let parsed = std::str::from_utf8(len)
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    if parsed != Some(payload.len()) {
        return Err(format!(
            "value of {}: length field {} but {} payload bytes: {}",
            show(key),
            show(len),
            payload.len(),
            show(value)
        ));
    }
    let want = fnv64(key, payload);
    let sum = std::str::from_utf8(sum)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok());
    if sum != Some(want) {
        return Err(format!(
            "value of {}: checksum mismatch (payload damaged): {}",
            show(key),
            show(value)
        ));
    }
    if let Some(f) = flags {
        if f != want as u32 {
            return Err(format!(
                "value of {}: client flags {f:#x}, written {:#x}",
                show(key),
                want as u32
            ));
        }
    }
    Ok(())
}

fn key_of(rank: u64) -> Vec<u8> {
    format!("k:{rank}").into_bytes()
}

// ---- real clients ----------------------------------------------------------------

/// One real-client thread: its client, random state and expectations.
struct Worker<'s> {
    sh: &'s Shared<'s>,
    name: &'static str,
    client: Client,
    keys: &'s KeyChooser,
    rng: Rng,
    /// Last value seen of each of this thread's counters (None: unknown/missing).
    counters: [Option<u64>; COUNTERS],
    /// Keys stored with a 1 s TTL, and when to check that they are gone.
    expiring: VecDeque<(Vec<u8>, Instant)>,
    expiring_seq: u64,
    /// Node failures already reported (the client's node counters count them too).
    seen_node_failures: u64,
    scratch: Vec<u8>,
    value: Vec<u8>,
    meta: bool,
}

fn client_thread(
    sh: &Shared,
    name: &'static str,
    protocol: Protocol,
    seed: u64,
    keys: &KeyChooser,
) {
    // One connection at most (one thread, one idle slot): counted for the whole run.
    let _held = Held::new(sh);
    let mut cfg = match ClientConfig::new(&sh.addr.to_string()) {
        Ok(c) => c,
        Err(e) => return sh.fail(Fail::Error, name, format!("client config: {e}")),
    };
    cfg.conn.protocol = protocol;
    cfg.conn.connect_timeout = IO_TIMEOUT;
    cfg.conn.io_timeout = IO_TIMEOUT;
    cfg.max_idle_per_node = 1;
    // Never eject the only node: every failure is reported once, as itself.
    cfg.failure_limit = u32::MAX;
    cfg.retry_timeout = Duration::from_millis(100);
    let client = match Client::new(cfg) {
        Ok(c) => c,
        Err(e) => return sh.fail(Fail::Error, name, format!("client: {e}")),
    };
    let mut w = Worker {
        sh,
        name,
        client,
        keys,
        rng: Rng::new(seed),
        counters: [None; COUNTERS],
        expiring: VecDeque::new(),
        expiring_seq: 0,
        seen_node_failures: 0,
        scratch: Vec::with_capacity(MAX_VALUE),
        value: Vec::with_capacity(MAX_VALUE),
        meta: protocol == Protocol::Meta,
    };
    let mut n = 0u64;
    // Pacing: 32 operations per step of 32 / CLIENT_RATE seconds; a client that fell
    // behind (a slow server) does not catch up in a burst.
    let step = Duration::from_secs(32) / CLIENT_RATE;
    let mut next = Instant::now() + step;
    while sh.running() {
        w.op();
        n += 1;
        if n % 200 == 0 {
            w.start_expiry_probe();
        }
        if n % 64 == 0 {
            w.check_expired();
            w.check_absorbed_failures();
        }
        if n % 32 == 0 {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_millis(100) {
                next = now;
            }
            next += step;
        }
    }
    w.check_absorbed_failures();
}

impl Worker<'_> {
    fn op(&mut self) {
        match self.rng.below(100) {
            0..=54 => self.cache_aside_get(),
            55..=64 => self.multi_get(),
            65..=79 => self.set(),
            80..=85 => self.delete(),
            86..=95 => self.counter(),
            _ if self.meta => self.meta_cache_aside(),
            _ => self.touch(),
        }
    }

    fn error(&mut self, op: &str, key: &[u8], e: ClientError) {
        if e.is_node_failure() {
            self.seen_node_failures += 1;
        }
        self.sh
            .fail(Fail::Error, self.name, format!("{op} {}: {e}", show(key)));
    }

    fn corrupt(&self, op: &str, msg: String) {
        self.sh
            .fail(Fail::Corrupt, self.name, format!("{op}: {msg}"));
    }

    fn ttl(&mut self) -> u32 {
        if self.rng.below(2) == 0 {
            0
        } else {
            1 + self.rng.below(5) as u32
        }
    }

    fn zipf_key(&mut self) -> Vec<u8> {
        key_of(self.keys.sample(&mut self.rng))
    }

    /// A new encoded value for `key` in `self.value`; returns its flags.
    fn fill_value(&mut self, key: &[u8]) -> u32 {
        let len = value_len(&mut self.rng);
        make_value(key, len, &mut self.rng, &mut self.scratch, &mut self.value)
    }

    /// get; on a miss, "load" and set.
    fn cache_aside_get(&mut self) {
        let key = self.zipf_key();
        self.sh.add(&self.sh.ops, 1);
        match self.client.get(&key) {
            Ok(Some(item)) => {
                self.sh.add(&self.sh.hits, 1);
                if let Err(m) = verify(&key, &item.value, Some(item.flags)) {
                    self.corrupt("get", m);
                }
            }
            Ok(None) => {
                self.sh.add(&self.sh.misses, 1);
                let flags = self.fill_value(&key);
                let ttl = self.ttl();
                self.sh.add(&self.sh.ops, 1);
                if let Err(e) = self.client.set(&key, &self.value, flags, ttl) {
                    self.error("set (after a miss)", &key, e);
                }
            }
            Err(e) => self.error("get", &key, e),
        }
    }

    fn multi_get(&mut self) {
        let n = 10 + self.rng.below(41);
        let mut keys: Vec<Vec<u8>> = (0..n).map(|_| self.zipf_key()).collect();
        keys.sort_unstable();
        keys.dedup();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        self.sh.add(&self.sh.ops, 1);
        match self.client.get_many(&refs) {
            Ok(found) => {
                for (k, item) in &found {
                    if keys.binary_search(k).is_err() {
                        self.corrupt(
                            "get_many",
                            format!("answered key {} that was not asked for", show(k)),
                        );
                    } else if let Err(m) = verify(k, &item.value, Some(item.flags)) {
                        self.corrupt("get_many", m);
                    }
                }
                self.sh.add(&self.sh.hits, found.len() as u64);
                self.sh.add(
                    &self.sh.misses,
                    keys.len().saturating_sub(found.len()) as u64,
                );
            }
            Err(e) => {
                let first = keys.first().cloned().unwrap_or_default();
                self.error(&format!("get_many of {} keys from", keys.len()), &first, e);
            }
        }
    }

    fn set(&mut self) {
        let key = self.zipf_key();
        let flags = self.fill_value(&key);
        let ttl = self.ttl();
        self.sh.add(&self.sh.ops, 1);
        if let Err(e) = self.client.set(&key, &self.value, flags, ttl) {
            self.error("set", &key, e);
        }
    }

    fn delete(&mut self) {
        let key = self.zipf_key();
        self.sh.add(&self.sh.ops, 1);
        if let Err(e) = self.client.delete(&key) {
            self.error("delete", &key, e);
        }
    }

    fn touch(&mut self) {
        let key = self.zipf_key();
        let ttl = self.ttl();
        self.sh.add(&self.sh.ops, 1);
        if let Err(e) = self.client.touch(&key, ttl) {
            self.error("touch", &key, e);
        }
    }

    /// incr or decr one of this thread's counters and check the result against the
    /// last value seen: only this thread writes these keys.
    fn counter(&mut self) {
        let i = self.rng.below(COUNTERS as u64) as usize;
        let key = format!("c:{}:{i}", self.name).into_bytes();
        let delta = 1 + self.rng.below(9);
        let incr = self.rng.below(2) == 0;
        self.sh.add(&self.sh.ops, 1);
        let r = if incr {
            self.client.incr(&key, delta)
        } else {
            self.client.decr(&key, delta)
        };
        match r {
            Ok(Some(v)) => {
                if let Some(last) = self.counters[i] {
                    let want = if incr {
                        last.wrapping_add(delta)
                    } else {
                        last.saturating_sub(delta)
                    };
                    if v != want {
                        self.corrupt(
                            if incr { "incr" } else { "decr" },
                            format!(
                                "counter {} was {last}, {} {delta} answered {v} (expected {want})",
                                show(&key),
                                if incr { "+" } else { "-" }
                            ),
                        );
                    }
                }
                self.counters[i] = Some(v);
            }
            Ok(None) => {
                // Evicted, flushed or never created: start it again.
                self.counters[i] = None;
                self.sh.add(&self.sh.ops, 1);
                let start = COUNTER_START.to_string();
                match self.client.add(&key, start.as_bytes(), 0, 0) {
                    Ok(true) => self.counters[i] = Some(COUNTER_START),
                    Ok(false) => self.sh.fail(
                        Fail::Error,
                        self.name,
                        format!(
                            "add {}: NOT_STORED right after NOT_FOUND, and nobody else writes it",
                            show(&key)
                        ),
                    ),
                    Err(e) => self.error("add", &key, e),
                }
            }
            Err(e) => {
                self.counters[i] = None;
                self.error(if incr { "incr" } else { "decr" }, &key, e);
            }
        }
    }

    /// Over meta: stampede-safe cache-aside (`mg N R`, `ms C`) and `md I` on keys only
    /// this thread uses (plain gets would read its placeholders as empty values).
    fn meta_cache_aside(&mut self) {
        let key = format!("m:{}", self.rng.below(2000)).into_bytes();
        self.sh.add(&self.sh.ops, 1);
        if self.rng.below(10) == 0 {
            if let Err(e) = self.client.cache_aside(2).mark_stale(&key) {
                self.error("md I", &key, e);
            }
            return;
        }
        let len = value_len(&mut self.rng);
        let (rng, scratch, value) = (&mut self.rng, &mut self.scratch, &mut self.value);
        let loaded = self
            .client
            .cache_aside(2)
            .recache_window(1)
            .flags(META_FLAGS)
            .wait_for_winner(Duration::from_millis(200))
            .get_or_load(&key, || -> Result<Option<Vec<u8>>, String> {
                make_value(&key, len, rng, scratch, value);
                Ok(Some(value.clone()))
            });
        match loaded {
            Ok(Some(v)) => {
                if let Err(m) = verify(&key, &v, None) {
                    self.corrupt("cache-aside (meta)", m);
                }
            }
            Ok(None) => self.corrupt(
                "cache-aside (meta)",
                format!("{}: no value, though the loader always has one", show(&key)),
            ),
            Err(e) => self
                .sh
                .fail(Fail::Error, self.name, format!("cache-aside: {e}")),
        }
    }

    /// Stores a key with a 1 s TTL that nobody writes again; it is checked later.
    fn start_expiry_probe(&mut self) {
        self.expiring_seq += 1;
        let key = format!("x:{}:{}", self.name, self.expiring_seq).into_bytes();
        let flags = self.fill_value(&key);
        self.sh.add(&self.sh.ops, 1);
        match self.client.set(&key, &self.value, flags, 1) {
            Ok(()) => self
                .expiring
                .push_back((key, Instant::now() + EXPIRY_CHECK_AFTER)),
            Err(e) => self.error("set (1 s TTL)", &key, e),
        }
    }

    /// Keys stored with a 1 s TTL at least 3.5 s ago must be gone.
    fn check_expired(&mut self) {
        let now = Instant::now();
        while self.expiring.front().is_some_and(|(_, due)| *due <= now) {
            let Some((key, _)) = self.expiring.pop_front() else {
                break;
            };
            self.sh.add(&self.sh.ops, 1);
            match self.client.get(&key) {
                Ok(None) => {}
                Ok(Some(item)) => self.corrupt(
                    "get",
                    format!(
                        "expired item served: {} was stored with a 1 s TTL {:.1} s ago ({} bytes back)",
                        show(&key),
                        EXPIRY_CHECK_AFTER.as_secs_f64(),
                        item.value.len()
                    ),
                ),
                Err(e) => self.error("get (expired key)", &key, e),
            }
        }
    }

    /// Node failures the client absorbed (get_many reports the keys missing;
    /// cache-aside loads anyway) show only in its node counters.
    fn check_absorbed_failures(&mut self) {
        let total: u64 = self.client.node_status().iter().map(|n| n.errors).sum();
        if total > self.seen_node_failures {
            let d = total - self.seen_node_failures;
            self.seen_node_failures = total;
            self.sh.fail(
                Fail::Error,
                self.name,
                format!("{d} I/O or protocol failure(s) absorbed by the client (get_many / cache-aside)"),
            );
        }
    }
}

// ---- pymemcache ------------------------------------------------------------------

/// The pymemcache loop: argv = host, port, seconds. Values are
/// `key|len|crc32 hex|payload` and every hit is checked; exit 1 on any corruption or
/// error, 0 otherwise.
const PY_SCRIPT: &str = r#"
import random, sys, time, zlib
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheError

host, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + secs
rng = random.Random(11)
ops = hits = misses = corrupt = errors = cycles = reported = 0

def make(key, n):
    payload = rng.randbytes(n)
    return b"%s|%d|%08x|" % (key, n, zlib.crc32(payload)) + payload

def good(key, v):
    parts = v.split(b"|", 3)
    if len(parts) != 4 or parts[0] != key:
        return False
    try:
        n, c = int(parts[1]), int(parts[2], 16)
    except ValueError:
        return False
    return n == len(parts[3]) and c == zlib.crc32(parts[3])

def report(msg):
    global reported
    if reported < 20:
        print("pymemcache: " + msg, file=sys.stderr, flush=True)
        reported += 1

while time.monotonic() < deadline:
    c = Client((host, port), connect_timeout=5, timeout=5)
    cycles += 1
    try:
        for _ in range(rng.randint(200, 500)):
            key = b"py:%d" % rng.randrange(500)
            r = rng.random()
            if r < 0.5:
                v = c.get(key)
                if v is None:
                    misses += 1
                else:
                    hits += 1
                    if not good(key, v):
                        corrupt += 1
                        report("corrupt value for %r: %r" % (key, v[:80]))
            elif r < 0.9:
                c.set(key, make(key, rng.randint(20, 4000)), expire=rng.choice([0, 0, 2, 5]))
            else:
                c.delete(key)
            ops += 1
            if ops % 20 == 0:
                time.sleep(0.002)
            if time.monotonic() >= deadline:
                break
    except (MemcacheError, OSError) as e:
        errors += 1
        report("error: %r" % (e,))
        time.sleep(0.1)
    finally:
        c.close()
print("%d ops, %d connect-use-close cycles, %d hits, %d misses, %d corrupt, %d errors"
      % (ops, cycles, hits, misses, corrupt, errors), flush=True)
sys.exit(1 if corrupt or errors else 0)
"#;

/// Whether `/usr/bin/python3` can import pymemcache.
fn pymemcache_available() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import pymemcache"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process killed and reaped if it is still running when this is dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn pymemcache_thread(sh: &Shared) {
    // The child holds one connection at a time.
    let _held = Held::new(sh);
    let secs = sh.deadline.saturating_duration_since(Instant::now());
    let spawned = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PY_SCRIPT)
        .arg(sh.addr.ip().to_string())
        .arg(sh.addr.port().to_string())
        .arg(format!("{:.1}", secs.as_secs_f64()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(c) => ChildGuard(c),
        Err(e) => return sh.fail(Fail::Error, "pymemcache", format!("spawn python3: {e}")),
    };
    let limit = sh.deadline + Duration::from_secs(30);
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() > limit || sh.stop.load(Ordering::Relaxed) => {
                // Dropping the guard kills and reaps it.
                return sh.fail(
                    Fail::Error,
                    "pymemcache",
                    "the child did not finish in time; killed",
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return sh.fail(Fail::Error, "pymemcache", format!("wait: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.0.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    let out = out.trim();
    if status.success() {
        println!("soak: pymemcache: {out}");
    } else {
        sh.fail(
            Fail::Error,
            "pymemcache",
            format!("exited with {status}: {out}"),
        );
    }
}

// ---- fault patterns --------------------------------------------------------------

/// Connections per burst of the close patterns.
const BURST: usize = 8;

/// Runs one fault pattern until the deadline: a round, then a pause. A round's
/// error is a failure (something memcached would not do).
fn fault_loop(
    sh: &Shared,
    name: &str,
    pause: Duration,
    mut round: impl FnMut(&mut Rng) -> Result<(), String>,
) {
    let mut rng = Rng::new(fnv64(name.as_bytes(), b"fault"));
    while sh.running() {
        if let Err(e) = round(&mut rng) {
            sh.fail(Fail::Error, name, e);
        }
        sleep_while_running(sh, pause);
    }
}

/// Reads until `\r\n` (a one-line reply).
fn read_line_raw(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if got.len() > 4096 {
            return Err("reply line too long".into());
        }
    }
    Ok(got)
}

/// `BURST` connections, each greeted (a first request answered) so the server holds it.
fn burst<'s>(
    sh: &'s Shared<'s>,
    greet: fn(&mut Raw<'s>) -> Result<(), String>,
) -> Result<Vec<Raw<'s>>, String> {
    let mut conns = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let mut c = raw(sh)?;
        greet(&mut c)?;
        conns.push(c);
    }
    Ok(conns)
}

/// `version` and its reply: the server has accepted and served this connection.
fn greet_text(r: &mut Raw) -> Result<(), String> {
    r.s.write_all(b"version\r\n")
        .map_err(|e| format!("send version: {e}"))?;
    let line = read_line_raw(&mut r.s).map_err(|e| format!("version: {e}"))?;
    if !line.starts_with(b"VERSION ") {
        return Err(format!("version: unexpected reply {}", show(&line)));
    }
    Ok(())
}

/// A binary request packet.
fn bin_packet(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// A binary NOOP and its reply: the connection speaks binary and is served.
fn greet_binary(r: &mut Raw) -> Result<(), String> {
    r.s.write_all(&bin_packet(0x0a, b"", &[], &[]))
        .map_err(|e| format!("send NOOP: {e}"))?;
    let mut h = [0u8; 24];
    r.s.read_exact(&mut h)
        .map_err(|e| format!("NOOP reply: {e}"))?;
    if h[0] != 0x81 || h[1] != 0x0a || h[6..8] != [0, 0] {
        return Err(format!("NOOP: unexpected reply header {}", show(&h)));
    }
    Ok(())
}

/// Closes with a reset (SO_LINGER 0).
fn reset(r: Raw) {
    let _ = socket2::SockRef::from(&r.s).set_linger(Some(Duration::ZERO));
    drop(r);
}

/// Reads until the server closes (EOF or reset) within `limit`; false on a timeout.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 16 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            // Reset: closed too.
            Err(_) => return true,
        }
    }
}

/// Reads whatever arrives within `limit` (the reply to garbage), ignoring it.
fn drain(s: &mut TcpStream, limit: Duration) {
    let _ = read_until_closed(s, limit);
}

/// noreply set, then FIN.
fn noreply_then_fin(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let mut conns = burst(sh, greet_text)?;
    for c in &mut conns {
        let req = format!(
            "set f:noreply:{} 0 0 5 noreply\r\nhello\r\n",
            rng.below(100)
        );
        let _ = c.s.write_all(req.as_bytes());
    }
    drop(conns);
    Ok(())
}

/// Quiet binary SETQ, then FIN.
fn setq_then_fin(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let mut conns = burst(sh, greet_binary)?;
    for c in &mut conns {
        let key = format!("f:setq:{}", rng.below(100));
        let _ =
            c.s.write_all(&bin_packet(0x11, key.as_bytes(), &[0; 8], b"quiet"));
    }
    drop(conns);
    Ok(())
}

/// Part of a request line, then RST.
fn partial_line_then_rst(sh: &Shared, _rng: &mut Rng) -> Result<(), String> {
    let mut conns = burst(sh, greet_text)?;
    for c in &mut conns {
        let _ = c.s.write_all(b"get f:partial-li");
    }
    for c in conns {
        reset(c);
    }
    Ok(())
}

/// 600 KB of a 1 MB value, a pause, then FIN or RST (two at a time).
fn partial_value(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let body = vec![b'p'; 600_000];
    let mut conns = Vec::with_capacity(2);
    for i in 0..2 {
        let mut c = raw(sh)?;
        greet_text(&mut c)?;
        let _ =
            c.s.write_all(format!("set f:big:{i} 0 0 1000000\r\n").as_bytes());
        let _ = c.s.write_all(&body);
        conns.push(c);
    }
    sleep_while_running(sh, Duration::from_millis(200));
    let rst = rng.below(2) == 0;
    for c in conns {
        if rst {
            reset(c);
        } else {
            drop(c);
        }
    }
    Ok(())
}

/// noreply request, shutdown(Write), then read until the server closes.
fn half_close(sh: &Shared, _rng: &mut Rng) -> Result<(), String> {
    let mut conns = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let mut c = raw(sh)?;
        greet_text(&mut c)?;
        let _ = c.s.write_all(b"set f:half 0 0 1 noreply\r\nx\r\n");
        conns.push(c);
    }
    for c in &conns {
        let _ = c.s.shutdown(Shutdown::Write);
    }
    let mut open = 0;
    for mut c in conns {
        if !read_until_closed(&mut c.s, Duration::from_secs(5)) {
            open += 1;
        }
    }
    if open > 0 {
        return Err(format!(
            "{open} of {BURST} half-closed connections not closed by the server within 5 s"
        ));
    }
    Ok(())
}

/// Four clients send 40 lines of 100-key multi-gets of popular keys, never read,
/// and hold the connection for 3 s.
fn never_reader(sh: &Shared, rng: &mut Rng, keys: &KeyChooser) -> Result<(), String> {
    let mut req = Vec::with_capacity(40 * 100 * 10);
    for _ in 0..40 {
        req.extend_from_slice(b"get");
        for _ in 0..100 {
            let _ = write!(req, " k:{}", keys.sample(rng));
        }
        req.extend_from_slice(b"\r\n");
    }
    let mut conns = Vec::with_capacity(4);
    for _ in 0..4 {
        let mut c = raw(sh)?;
        // The server stops reading once the replies fill this client's share.
        let _ = c.s.set_write_timeout(Some(Duration::from_millis(300)));
        let _ = c.s.write_all(&req);
        conns.push(c);
    }
    sleep_while_running(sh, Duration::from_secs(3));
    drop(conns);
    Ok(())
}

/// One `get` line of 5,000 keys (most of them missing), read fully and verified.
fn big_multiget(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let mut p = Probe::connect(sh, Duration::from_secs(10))?;
    let mut wanted: Vec<Vec<u8>> = (0..5000).map(|_| key_of(rng.below(KEYS))).collect();
    let mut line = b"get".to_vec();
    for k in &wanted {
        line.push(b' ');
        line.extend_from_slice(k);
    }
    line.extend_from_slice(b"\r\n");
    wanted.sort_unstable();
    p.c.send(&line)?;
    let mut reply = Vec::new();
    let mut data = Vec::new();
    loop {
        p.c.read_line(&mut reply)
            .map_err(|e| format!("5,000-key get: {e}"))?;
        if reply == b"END" {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&reply).into_owned();
        let f: Vec<&str> = text.split(' ').collect();
        let (key, flags, len) = match f.as_slice() {
            ["VALUE", k, fl, n] => match (fl.parse::<u32>(), n.parse::<usize>()) {
                (Ok(fl), Ok(n)) => (k.as_bytes().to_vec(), fl, n),
                _ => return Err(format!("5,000-key get: bad line {}", show(&reply))),
            },
            _ => return Err(format!("5,000-key get: unexpected line {}", show(&reply))),
        };
        p.c.read_exact(len + 2, &mut data)
            .map_err(|e| format!("5,000-key get: {e}"))?;
        if !data.ends_with(b"\r\n") {
            return Err(format!(
                "5,000-key get: value of {} not ended by CRLF",
                show(&key)
            ));
        }
        data.truncate(len);
        if wanted.binary_search(&key).is_err() {
            sh.fail(
                Fail::Corrupt,
                "multiget-5000",
                format!("answered key {} that was not asked for", show(&key)),
            );
        } else if let Err(m) = verify(&key, &data, Some(flags)) {
            sh.fail(Fail::Corrupt, "multiget-5000", m);
        }
    }
}

/// Garbage, one connection at a time, in turns: random bytes (not binary), a bad
/// magic after a NOOP (the NOOP is answered, then the server closes), SASL on a
/// server without it, HTTP, an over-long line.
fn garbage(sh: &Shared, rng: &mut Rng, turn: &mut u64) -> Result<(), String> {
    *turn += 1;
    let mut c = raw(sh)?;
    match *turn % 5 {
        0 => {
            let n = 1 + rng.below(4096) as usize;
            let mut junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            if junk[0] == 0x80 {
                junk[0] = b'?'; // a text connection: the binary magic would pick opcodes
            }
            let _ = c.s.write_all(&junk);
            drain(&mut c.s, Duration::from_millis(300));
        }
        1 => {
            greet_binary(&mut c)?;
            let mut bad = bin_packet(0x0a, b"", &[], &[]);
            bad[0] = 0x81;
            let _ = c.s.write_all(&bad);
            if !read_until_closed(&mut c.s, Duration::from_secs(3)) {
                return Err("bad binary magic: connection not closed within 3 s".into());
            }
        }
        2 => {
            let _ =
                c.s.write_all(&bin_packet(0x21, b"PLAIN", &[], b"\0nobody\0guess"));
            drain(&mut c.s, Duration::from_millis(300));
        }
        3 => {
            let _ = c.s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
            drain(&mut c.s, Duration::from_millis(300));
        }
        _ => {
            let _ = c.s.write_all(&vec![b'x'; 3000]);
            let _ = c.s.write_all(b"\r\n");
            drain(&mut c.s, Duration::from_millis(300));
        }
    }
    if rng.below(2) == 0 {
        reset(c);
    }
    Ok(())
}

// ---- chaos, keeper, monitor --------------------------------------------------------

/// SIGHUP every 20 s, flush_all every 60 s (first at 30 s).
fn chaos_thread(sh: &Shared) {
    let mut next_hup = sh.start + SIGHUP_EVERY;
    let mut next_flush = sh.start + FLUSH_FIRST;
    while sh.running() {
        let now = Instant::now();
        if now >= next_hup {
            next_hup += SIGHUP_EVERY;
            if let Some(pid) = sh.pid {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP) {
                    Ok(()) => sh.add(&sh.sighups, 1),
                    Err(e) => sh.fail(Fail::Invariant, "chaos", format!("SIGHUP: {e}")),
                }
            }
        }
        if now >= next_flush {
            next_flush += FLUSH_EVERY;
            match flush(sh) {
                Ok(()) => sh.add(&sh.flushes, 1),
                Err(e) => sh.fail(Fail::Error, "chaos", format!("flush_all: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// flush_all, then the sentinel again, with no sentinel read in between.
fn flush(sh: &Shared) -> Result<(), String> {
    let mut p = Probe::connect(sh, IO_TIMEOUT)?;
    let _g = sh.sentinel.lock();
    p.c.send(b"flush_all\r\n")?;
    let mut line = Vec::new();
    p.c.read_line(&mut line)?;
    if line != b"OK" {
        return Err(format!("reply {}", show(&line)));
    }
    store_sentinel(&mut p.c)
}

/// Reads the sentinel every 20 ms (keeping it hot and checking it) and samples RSS
/// every 250 ms.
fn keeper_thread(sh: &Shared) {
    let mut conn: Option<Probe> = None;
    let mut next_rss = Instant::now();
    while sh.running() {
        if Instant::now() >= next_rss {
            next_rss = Instant::now() + Duration::from_millis(250);
            if let Some(rss) = sh.rss() {
                sh.max_rss.fetch_max(rss, Ordering::Relaxed);
                sh.interval_rss.fetch_max(rss, Ordering::Relaxed);
            }
        }
        if conn.is_none() {
            match Probe::connect(sh, IO_TIMEOUT) {
                Ok(p) => conn = Some(p),
                Err(e) => {
                    sh.fail(Fail::Error, "keeper", e);
                    sleep_while_running(sh, Duration::from_millis(500));
                    continue;
                }
            }
        }
        let mut broken = false;
        if let Some(p) = conn.as_mut() {
            let _g = sh.sentinel.lock();
            if let Err(e) = check_sentinel(sh, &mut p.c, "keeper") {
                sh.fail(Fail::Error, "keeper", e);
                broken = true;
            }
        }
        if broken {
            conn = None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn monitor_thread(sh: &Shared, interval: Duration) {
    let mut next = sh.start + interval;
    loop {
        while Instant::now() < next {
            if !sh.running() {
                return;
            }
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
        if !sh.running() {
            return;
        }
        check_once(sh);
        next += interval;
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One round of invariant checks, printed as one line.
fn check_once(sh: &Shared) {
    // Connection-count window: from now until the stats read below.
    let window = Instant::now();
    sh.held_peak
        .store(sh.held.load(Ordering::Relaxed), Ordering::Relaxed);
    let head = |sh: &Shared| {
        format!(
            "soak t={:.0}s ops={} hits={} misses={} corrupt={} errors={}",
            sh.t(),
            sh.ops.load(Ordering::Relaxed),
            sh.hits.load(Ordering::Relaxed),
            sh.misses.load(Ordering::Relaxed),
            sh.corrupt.load(Ordering::Relaxed),
            sh.errors.load(Ordering::Relaxed)
        )
    };
    if !sh.alive() {
        sh.fail(Fail::Invariant, "monitor", "the server process is gone");
        sh.stop.store(true, Ordering::Relaxed);
        println!("{} server=GONE", head(sh));
        return;
    }
    let mut p = match Probe::connect(sh, Duration::from_secs(2)) {
        Ok(p) => p,
        Err(e) => {
            sh.fail(Fail::Invariant, "monitor", format!("fresh connection: {e}"));
            println!("{} server=UNREACHABLE", head(sh));
            return;
        }
    };
    let mut line = Vec::new();
    let version =
        p.c.send(b"version\r\n")
            .and_then(|()| p.c.read_line(&mut line));
    if version.is_err() || !line.starts_with(b"VERSION ") {
        sh.fail(
            Fail::Invariant,
            "monitor",
            format!("version on a fresh connection: {version:?} {}", show(&line)),
        );
    }
    // ~200 round trips of `get sentinel`, each checked, timed.
    let mut lat = Vec::with_capacity(FRESH_GETS);
    let mut sentinel = "ok";
    {
        let _g = sh.sentinel.lock();
        for _ in 0..FRESH_GETS {
            let t = Instant::now();
            match check_sentinel(sh, &mut p.c, "monitor") {
                Ok(true) => lat.push(t.elapsed()),
                Ok(false) => sentinel = "LOST",
                Err(e) => {
                    sh.fail(Fail::Invariant, "monitor", format!("get sentinel: {e}"));
                    sentinel = "ERROR";
                    break;
                }
            }
        }
    }
    lat.sort_unstable();
    let p99 = pct(&lat, 0.99);
    sh.worst_p99_us
        .fetch_max(p99.as_micros() as u64, Ordering::Relaxed);
    if p99 > FRESH_P99_LIMIT {
        sh.fail(
            Fail::Invariant,
            "monitor",
            format!(
                "fresh client p99 {:.2} ms over {} gets (limit {} ms; p50 {:.2} ms, max {:.2} ms)",
                p99.as_secs_f64() * 1e3,
                lat.len(),
                FRESH_P99_LIMIT.as_millis(),
                pct(&lat, 0.5).as_secs_f64() * 1e3,
                lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            ),
        );
    }
    // Connections: closes from before `window` had at least CONN_WINDOW to land.
    let wait = CONN_WINDOW.saturating_sub(window.elapsed());
    std::thread::sleep(wait);
    let mut conns = String::from("curr_conns=?");
    let mut extra = String::new();
    match p.c.stats() {
        Ok(st) => {
            let curr = stat_u64(&st, "curr_connections") as i64;
            let peak = sh.held_peak.load(Ordering::Relaxed);
            let others = sh.others.load(Ordering::Relaxed);
            if curr > peak + others + CONN_MARGIN {
                sh.fail(
                    Fail::Invariant,
                    "monitor",
                    format!(
                        "curr_connections {curr} > the soak's {peak} (most held in the last {:.1} s) + {others} others + {CONN_MARGIN}",
                        window.elapsed().as_secs_f64()
                    ),
                );
            }
            conns = format!("curr_conns={curr} held={peak}");
            extra = format!(
                " items={} evictions={} reclaimed={} read_buf_oom={}",
                stat_u64(&st, "curr_items"),
                stat_u64(&st, "evictions"),
                stat_u64(&st, "reclaimed"),
                stat_u64(&st, "read_buf_oom")
            );
        }
        Err(e) => sh.fail(Fail::Invariant, "monitor", format!("stats: {e}")),
    }
    drop(p);
    // Memory: the largest sample since the last check.
    let rss = sh
        .interval_rss
        .swap(0, Ordering::Relaxed)
        .max(sh.rss().unwrap_or(0));
    sh.max_rss.fetch_max(rss, Ordering::Relaxed);
    let rss_text = if sh.pid.is_some() {
        if rss > sh.rss_limit {
            sh.fail(
                Fail::Invariant,
                "monitor",
                format!(
                    "RSS {:.1} MiB over the bound {:.1} MiB",
                    rss as f64 / MIB,
                    sh.rss_limit as f64 / MIB
                ),
            );
        }
        format!("{:.1}MiB", rss as f64 / MIB)
    } else {
        "n/a".into()
    };
    println!(
        "{} {conns} rss={rss_text} fresh_p99={:.2}ms sentinel={sentinel}{extra}",
        head(sh),
        p99.as_secs_f64() * 1e3
    );
}

// ---- the run -----------------------------------------------------------------------

/// `curr_connections` (seen by a new connection) and the server's open descriptors.
fn probe_counts(sh: &Shared) -> Result<(u64, Option<usize>), String> {
    let mut p = Probe::connect(sh, IO_TIMEOUT)?;
    let st = p.c.stats()?;
    let curr = st
        .get("curr_connections")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("stats: no curr_connections")?;
    Ok((curr, sh.fds()))
}

/// The counts with nothing of ours open but the probe: two readings 100 ms apart agree.
fn baseline(sh: &Shared) -> Result<(u64, Option<usize>), String> {
    let mut last = probe_counts(sh)?;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        let now = probe_counts(sh)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// Runs `soak`.
pub fn main(args: Args) -> Result<(), String> {
    if args.duration == 0 || args.interval == 0 || args.threads == 0 || args.mem == 0 {
        return Err("--duration, --interval, --threads and --mem must be positive".into());
    }
    let owned = match &args.server {
        Some(_) => None,
        None => Some(ServerProc::start(
            Kind::Ferrocache,
            args.threads,
            args.mem as usize,
            &["-c", "4096"],
            None,
        )?),
    };
    let (addr, pid) = match (&owned, &args.server) {
        (Some(s), _) => (s.addr, Some(s.pid())),
        (None, Some(a)) => (
            a.to_socket_addrs()
                .map_err(|e| format!("--server {a}: {e}"))?
                .next()
                .ok_or_else(|| format!("--server {a}: no address"))?,
            args.pid,
        ),
        (None, None) => return Err("no server".into()),
    };
    let keys = KeyChooser::zipf(KEYS, ZIPF_S)?;
    let sh = Shared::new(
        addr,
        owned.as_ref(),
        pid,
        args.mem,
        Duration::from_secs(args.duration),
    );
    match &owned {
        Some(_) => println!(
            "soak: ferrocache -t {} -m {} -c 4096 on {addr} (pid {}), {} s, checks every {} s",
            args.threads,
            args.mem,
            pid.unwrap_or(0),
            args.duration,
            args.interval
        ),
        None => println!(
            "soak: server {addr} (pid {}), {} s, checks every {} s{}",
            pid.map_or("unknown".into(), |p| p.to_string()),
            args.duration,
            args.interval,
            if pid.is_none() {
                "; no --pid: no SIGHUP, liveness, RSS or descriptor checks"
            } else {
                ""
            }
        ),
    }
    {
        let mut p = Probe::connect(&sh, IO_TIMEOUT)?;
        store_sentinel(&mut p.c)?;
    }
    let (base_curr, base_fds) = baseline(&sh)?;
    // The probe itself was the soak's only connection.
    sh.others.store(base_curr as i64 - 1, Ordering::Relaxed);
    println!(
        "soak: baseline curr_connections {base_curr}{}",
        base_fds.map_or(String::new(), |f| format!(", {f} open descriptors"))
    );
    let python = pymemcache_available();
    if !python {
        println!(
            "soak: notice: /usr/bin/python3 with pymemcache not available; no pymemcache loop"
        );
    }

    std::thread::scope(|s| {
        let sh = &sh;
        let keys = &keys;
        let clients = [
            ("text-1", Protocol::Text),
            ("binary", Protocol::Binary),
            ("meta", Protocol::Meta),
            ("text-2", Protocol::Text),
        ];
        for (i, (name, proto)) in clients.into_iter().enumerate() {
            s.spawn(move || client_thread(sh, name, proto, 1 + i as u64, keys));
        }
        if python {
            s.spawn(move || pymemcache_thread(sh));
        }
        let fast = Duration::from_millis(50);
        s.spawn(move || fault_loop(sh, "noreply+FIN", fast, |r| noreply_then_fin(sh, r)));
        s.spawn(move || fault_loop(sh, "SETQ+FIN", fast, |r| setq_then_fin(sh, r)));
        s.spawn(move || {
            fault_loop(sh, "partial-line+RST", fast, |r| {
                partial_line_then_rst(sh, r)
            })
        });
        s.spawn(move || {
            fault_loop(sh, "partial-1MB", Duration::from_millis(300), |r| {
                partial_value(sh, r)
            })
        });
        s.spawn(move || fault_loop(sh, "half-close", fast, |r| half_close(sh, r)));
        s.spawn(move || {
            fault_loop(sh, "never-reader", Duration::from_millis(500), |r| {
                never_reader(sh, r, keys)
            })
        });
        s.spawn(move || {
            fault_loop(sh, "multiget-5000", Duration::from_secs(1), |r| {
                big_multiget(sh, r)
            })
        });
        s.spawn(move || {
            let mut turn = 0;
            fault_loop(sh, "garbage", Duration::from_millis(20), |r| {
                garbage(sh, r, &mut turn)
            })
        });
        s.spawn(move || chaos_thread(sh));
        s.spawn(move || keeper_thread(sh));
        s.spawn(move || monitor_thread(sh, Duration::from_secs(args.interval)));
    });

    // Everything has stopped. The end state: connections back to the baseline, the
    // sentinel intact, the server alive.
    let secs = sh.t();
    let alive = sh.alive();
    if !alive {
        sh.fail(Fail::Invariant, "end", "the server process is gone");
    }
    // Nothing to wait for when the server is gone.
    let settle = Instant::now() + Duration::from_secs(if alive { 10 } else { 0 });
    let mut last = Err(String::from("not measured"));
    while Instant::now() < settle {
        last = probe_counts(&sh);
        if matches!(&last, Ok(c) if *c == (base_curr, base_fds)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let leaked = match last {
        Ok((curr, fds)) => {
            println!(
                "soak: after the run: curr_connections {curr} (baseline {base_curr}){}",
                match (fds, base_fds) {
                    (Some(f), Some(b)) => format!(", open descriptors {f} (baseline {b})"),
                    _ => String::new(),
                }
            );
            let by_fds = match (fds, base_fds) {
                (Some(f), Some(b)) => f as i64 - b as i64,
                _ => 0,
            };
            let by_curr = curr as i64 - base_curr as i64;
            if by_curr < 0 || by_fds < 0 {
                sh.fail(
                    Fail::Invariant,
                    "end",
                    "fewer connections or descriptors than at the start (a close counted twice?)",
                );
            }
            Some(by_curr.max(by_fds).max(0) as u64)
        }
        Err(e) => {
            sh.fail(Fail::Invariant, "end", format!("counting connections: {e}"));
            None
        }
    };
    match Probe::connect(&sh, IO_TIMEOUT) {
        Ok(mut p) => {
            if let Err(e) = check_sentinel(&sh, &mut p.c, "end") {
                sh.fail(Fail::Invariant, "end", format!("get sentinel: {e}"));
            }
        }
        Err(e) if alive => sh.fail(Fail::Invariant, "end", format!("fresh connection: {e}")),
        Err(_) => {}
    }
    if let Some(rss) = sh.rss() {
        sh.max_rss.fetch_max(rss, Ordering::Relaxed);
    }

    let corrupt = sh.corrupt.load(Ordering::Relaxed);
    let errors = sh.errors.load(Ordering::Relaxed);
    let lost = sh.sentinel_losses.load(Ordering::Relaxed);
    let invariant = sh.invariant.load(Ordering::Relaxed);
    let pass = corrupt == 0 && errors == 0 && lost == 0 && invariant == 0 && leaked == Some(0);
    if !pass {
        let first = sh.first_failures.lock();
        println!(
            "soak: {} failure(s) in all ({invariant} other invariant failure(s)); the first:",
            corrupt + errors + lost + invariant
        );
        for (_, l) in first.iter() {
            println!("  {l}");
        }
    }
    let max_rss = if sh.pid.is_some() {
        format!("{:.1}", sh.max_rss.load(Ordering::Relaxed) as f64 / MIB)
    } else {
        "n/a".into()
    };
    println!(
        "soak: {secs:.0} s, {} ops, {corrupt} corrupt, {errors} errors, {} leaked connections, {lost} sentinel losses, max RSS {max_rss} MiB, worst fresh p99 {:.2} ms, {} SIGHUPs, {} flushes: {}",
        sh.ops.load(Ordering::Relaxed),
        leaked.map_or("?".into(), |l| l.to_string()),
        sh.worst_p99_us.load(Ordering::Relaxed) as f64 / 1e3,
        sh.sighups.load(Ordering::Relaxed),
        sh.flushes.load(Ordering::Relaxed),
        if pass { "PASS" } else { "FAIL" }
    );
    if pass {
        Ok(())
    } else {
        Err("soak: invariants failed".into())
    }
}
