//! What every thread of a soak shares: the limits, the run's state and counters,
//! raw connections and the sentinel.

use crate::servers::ServerProc;
use crate::textconn::Conn;
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keys of the Zipf key space (`k:0` .. `k:199999`).
pub(super) const KEYS: u64 = 200_000;
/// Zipf exponent of key popularity.
pub(super) const ZIPF_S: f64 = 0.99;
/// Smallest and largest value written by the real clients (header included).
pub(super) const MIN_VALUE: usize = 50;
pub(super) const MAX_VALUE: usize = 8192;
/// Operations per second of each real-client thread (paced, so the soak leaves CPU to
/// the server on a small machine; still enough writes to evict all the time).
pub(super) const CLIENT_RATE: u32 = 4000;
/// Counter keys per client thread.
pub(super) const COUNTERS: usize = 16;
/// Value counters start from (far from 0, so decr never clamps in practice).
pub(super) const COUNTER_START: u64 = 1_000_000;
/// An item stored with a 1 s TTL must be gone this long after it was stored.
pub(super) const EXPIRY_CHECK_AFTER: Duration = Duration::from_millis(3500);
/// Client flags of the meta cache-aside values (nonzero: placeholders have 0).
pub(super) const META_FLAGS: u32 = 0x50_4b;

/// The sentinel.
pub(super) const SENTINEL_KEY: &str = "sentinel";
pub(super) const SENTINEL_FLAGS: u32 = 7;
pub(super) const SENTINEL_VALUE: &[u8] = b"ferrocache-soak-sentinel|still-here|0123456789";

/// `curr_connections` may exceed what the soak holds by this much.
pub(super) const CONN_MARGIN: i64 = 32;
/// At least this long between the start of a connection-count window and the
/// `stats` read that ends it (closes before the window had that long to land).
pub(super) const CONN_WINDOW: Duration = Duration::from_secs(1);
/// Round trips of the fresh client per check, and their p99 limit.
pub(super) const FRESH_GETS: usize = 200;
pub(super) const FRESH_P99_LIMIT: Duration = Duration::from_millis(10);
/// RSS may exceed `--mem` by this much.
pub(super) const RSS_SLACK: u64 = 64 << 20;
/// Chaos schedule.
pub(super) const SIGHUP_EVERY: Duration = Duration::from_secs(20);
pub(super) const FLUSH_FIRST: Duration = Duration::from_secs(30);
pub(super) const FLUSH_EVERY: Duration = Duration::from_secs(60);
/// Timeouts of the soak's own connections.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Failure lines printed per kind (all are counted), and kept per kind for the end.
pub(super) const MAX_PRINTED: u64 = 30;
pub(super) const MAX_KEPT: usize = 3;

pub(super) const MIB: f64 = (1u64 << 20) as f64;

/// What kind of failure, for the counters of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fail {
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
pub(super) struct Shared<'a> {
    pub(super) addr: SocketAddr,
    /// The server process, when the soak started it.
    pub(super) server: Option<&'a ServerProc>,
    /// The server's pid, when known.
    pub(super) pid: Option<u32>,
    pub(super) rss_limit: u64,
    pub(super) start: Instant,
    pub(super) deadline: Instant,
    /// Set to end the run early (the server is gone).
    pub(super) stop: AtomicBool,
    /// Connections the soak holds open now, and the most since the monitor's reset.
    pub(super) held: AtomicI64,
    pub(super) held_peak: AtomicI64,
    /// Connections of others, from the baseline (`curr_connections` minus the probe).
    pub(super) others: AtomicI64,
    pub(super) ops: AtomicU64,
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) sentinel_losses: AtomicU64,
    pub(super) invariant: AtomicU64,
    /// Largest RSS seen in the whole run and since the last check.
    pub(super) max_rss: AtomicU64,
    pub(super) interval_rss: AtomicU64,
    pub(super) worst_p99_us: AtomicU64,
    pub(super) sighups: AtomicU64,
    pub(super) flushes: AtomicU64,
    /// Held while the sentinel is read or flushed and stored again, so a read never
    /// falls between a `flush_all` and the new sentinel.
    pub(super) sentinel: Mutex<()>,
    /// The first failures of each kind, for the end of the run.
    pub(super) first_failures: Mutex<Vec<(Fail, String)>>,
    /// Failure lines printed so far, per kind (a flood of one kind hides no other).
    pub(super) printed: [AtomicU64; 4],
}

impl<'a> Shared<'a> {
    pub(super) fn new(
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
    pub(super) fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// Seconds since the start.
    pub(super) fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Counts and prints a failure.
    pub(super) fn fail(&self, kind: Fail, who: &str, msg: impl std::fmt::Display) {
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
    pub(super) fn alive(&self) -> bool {
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
    pub(super) fn rss(&self) -> Option<u64> {
        match (self.server, self.pid) {
            (Some(s), _) => Some(s.rss_bytes()),
            (None, Some(pid)) => rss_of(pid),
            (None, None) => None,
        }
    }

    /// The server's open descriptors, when its pid is known.
    pub(super) fn fds(&self) -> Option<usize> {
        let pid = self.pid?;
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count())
    }

    pub(super) fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// RSS of a process we did not start, from /proc/PID/status.
pub(super) fn rss_of(pid: u32) -> Option<u64> {
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
pub(super) struct Held<'s>(&'s Shared<'s>);

impl<'s> Held<'s> {
    pub(super) fn new(sh: &'s Shared<'s>) -> Held<'s> {
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
pub(super) struct Raw<'s> {
    pub(super) s: TcpStream,
    pub(super) _held: Held<'s>,
}

pub(super) fn raw<'s>(sh: &'s Shared<'s>) -> Result<Raw<'s>, String> {
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
pub(super) struct Probe<'s> {
    pub(super) c: Conn,
    pub(super) _held: Held<'s>,
}

impl<'s> Probe<'s> {
    pub(super) fn connect(sh: &'s Shared<'s>, timeout: Duration) -> Result<Probe<'s>, String> {
        let held = Held::new(sh);
        let c = Conn::connect(sh.addr, timeout)?;
        Ok(Probe { c, _held: held })
    }
}

/// `get <key>` on a text connection: `(flags, value)` or None on a miss.
pub(super) fn text_get(c: &mut Conn, key: &str) -> Result<Option<(u32, Vec<u8>)>, String> {
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
pub(super) fn store_sentinel(c: &mut Conn) -> Result<(), String> {
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
pub(super) fn check_sentinel(sh: &Shared, c: &mut Conn, who: &str) -> Result<bool, String> {
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
pub(super) fn show(b: &[u8]) -> String {
    let cut = &b[..b.len().min(80)];
    let more = if b.len() > 80 { "..." } else { "" };
    format!("\"{}\"{more} ({} bytes)", cut.escape_ascii(), b.len())
}

pub(super) fn sleep_while_running(sh: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while sh.running() {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}
