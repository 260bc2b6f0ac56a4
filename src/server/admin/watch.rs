//! `watch`: live log streams of server events, in memcached 1.6.18's line format.
//!
//! ```text
//!  worker (any)                         WatchHub                   watcher's worker
//!  hot path: hub.wants(FETCHERS)?  ──▶  flags: AtomicU32 (union)
//!     no  → nothing built (one atomic load)
//!     yes → line built once  ──▶  each Watcher whose types match:
//!                                   bytes + line <= cap ? try_send : skipped += 1
//!                                   first line after skips carries `skipped=N`
//!                                   queue was empty → Waker::wake (once per drain)
//!                                                         ──▶ Conn (watch mode) drains the
//!                                                             queue into its reply buffer
//!                                                             while the socket takes it
//! ```
//!
//! A watcher's queue is bounded in bytes (`-o watcher_logbuf_size`, KiB, default 256,
//! as memcached): a watcher that does not read loses lines, counted, and is told how
//! many (`skipped=N`) before the next line that fits, as memcached does. Publishing
//! never blocks: the watcher list is read with `try_read` (an event that meets a
//! watcher being added or removed is dropped and counted), each queue is a bounded
//! lock-free channel, and the wake-up is an `eventfd` write at most once per drain.
//! At most 20 watchers exist at once (memcached's `WATCHER_LIMIT`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;

pub use crate::protocol::text::watch_flags::*;
use crate::store::ItemMeta;

/// Most watchers at once (memcached's `WATCHER_LIMIT`).
pub const WATCHER_LIMIT: usize = 20;
/// Default per-watcher buffer, as memcached's `LOGGER_WATCHER_BUF_SIZE`.
pub const DEFAULT_WATCHER_BUF: usize = 256 << 10;
/// Bytes a queued line is counted for beyond its text (its allocation).
const LINE_OVERHEAD: usize = 32;

/// Why a connection closed, for `type=conn_close ... reason=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A read or write failed.
    Error,
    /// The client closed, or `quit`.
    Normal,
    /// `-o idle_timeout`.
    IdleTimeout,
    /// The server is stopping.
    Shutdown,
}

impl CloseReason {
    fn name(self) -> &'static str {
        match self {
            CloseReason::Error => "error",
            CloseReason::Normal => "normal",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// What `item_get` reports of a lookup (memcached's `was_found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    /// Not there.
    NotFound,
    /// Found: its class and value length.
    Found {
        /// Size class (1-based).
        class: usize,
        /// Value bytes.
        size: usize,
    },
    /// Removed by `flush_all`.
    Flushed,
    /// Expired.
    Expired,
}

/// The outcome names of `item_store` (memcached's `status_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// `not_stored`
    NotStored,
    /// `stored`
    Stored,
    /// `exists`
    Exists,
    /// `not_found`
    NotFound,
    /// `too_large`
    TooLarge,
    /// `no_memory`
    NoMemory,
}

impl StoreStatus {
    fn name(self) -> &'static str {
        match self {
            StoreStatus::NotStored => "not_stored",
            StoreStatus::Stored => "stored",
            StoreStatus::Exists => "exists",
            StoreStatus::NotFound => "not_found",
            StoreStatus::TooLarge => "too_large",
            StoreStatus::NoMemory => "no_memory",
        }
    }
}

/// Why `watch` could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    /// 20 watchers already.
    TooMany,
}

/// One watcher: its event types and its bounded queue of lines.
pub struct Watcher {
    id: u64,
    flags: u32,
    /// Events numbered before the watcher started are not sent to it.
    min_gid: u64,
    tx: Sender<Box<[u8]>>,
    rx: Receiver<Box<[u8]>>,
    /// Bytes queued (lines plus their overhead).
    bytes: AtomicUsize,
    cap: usize,
    /// Lines lost since the last line that got through.
    skipped: AtomicU64,
    /// A wake-up is on its way (set by producers, cleared by the draining connection).
    notified: AtomicBool,
    waker: Arc<mio::Waker>,
}

impl Watcher {
    /// Moves queued lines into `out` until it holds at least `limit` bytes or the
    /// queue is empty; true when the queue is empty.
    pub fn drain_into(&self, out: &mut Vec<u8>, limit: usize) -> bool {
        self.notified.store(false, Ordering::Release);
        while out.len() < limit {
            match self.rx.try_recv() {
                Ok(line) => {
                    self.bytes
                        .fetch_sub(line.len() + LINE_OVERHEAD, Ordering::Relaxed);
                    out.extend_from_slice(&line);
                }
                Err(_) => return true,
            }
        }
        self.rx.is_empty()
    }

    /// Lines lost and not yet reported.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    fn offer(&self, line: &[u8], hub: &WatchHub) {
        let pending = self.skipped.load(Ordering::Relaxed);
        let notice = if pending > 0 { 32 } else { 0 };
        let need = line.len() + notice + LINE_OVERHEAD;
        let before = self.bytes.fetch_add(need, Ordering::Relaxed);
        if before + need > self.cap {
            self.bytes.fetch_sub(need, Ordering::Relaxed);
            self.skip(hub);
            return;
        }
        let skipped = if pending > 0 {
            self.skipped.swap(0, Ordering::Relaxed)
        } else {
            0
        };
        let msg: Box<[u8]> = if skipped > 0 {
            let mut m = Vec::with_capacity(line.len() + 32);
            let _ = writeln!(m, "skipped={skipped}");
            m.extend_from_slice(line);
            m.into_boxed_slice()
        } else {
            line.into()
        };
        let got = msg.len() + LINE_OVERHEAD;
        match self.tx.try_send(msg) {
            Ok(()) => {
                // Count what was queued exactly (the notice reserved a round figure).
                if got < need {
                    self.bytes.fetch_sub(need - got, Ordering::Relaxed);
                } else {
                    self.bytes.fetch_add(got - need, Ordering::Relaxed);
                }
                hub.sent.fetch_add(1, Ordering::Relaxed);
                if !self.notified.swap(true, Ordering::AcqRel) {
                    let _ = self.waker.wake();
                }
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.bytes.fetch_sub(need, Ordering::Relaxed);
                self.skipped.fetch_add(skipped, Ordering::Relaxed);
                self.skip(hub);
            }
        }
    }

    fn skip(&self, hub: &WatchHub) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        hub.skipped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every watcher, and the union of their event types.
pub struct WatchHub {
    flags: AtomicU32,
    gid: AtomicU64,
    watchers: RwLock<Vec<Arc<Watcher>>>,
    next_id: AtomicU64,
    buf_bytes: usize,
    /// Lines queued to watchers (memcached's `log_watcher_sent`).
    pub sent: AtomicU64,
    /// Lines lost by slow watchers (memcached's `log_watcher_skipped`), or dropped
    /// while the watcher list was being changed.
    pub skipped: AtomicU64,
}

impl WatchHub {
    /// A hub whose watchers each buffer at most `buf_bytes`.
    pub fn new(buf_bytes: usize) -> WatchHub {
        WatchHub {
            flags: AtomicU32::new(0),
            gid: AtomicU64::new(0),
            watchers: RwLock::new(Vec::new()),
            next_id: AtomicU64::new(1),
            buf_bytes: buf_bytes.max(4096),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Whether any watcher wants events of type `flag`: the only cost of watching on
    /// the request path when nobody watches.
    #[inline]
    pub fn wants(&self, flag: u16) -> bool {
        self.flags.load(Ordering::Relaxed) & u32::from(flag) != 0
    }

    /// Watchers now.
    pub fn count(&self) -> usize {
        self.watchers.read().len()
    }

    /// Adds a watcher of `flags`, woken through `waker` when lines arrive.
    pub fn add(&self, flags: u16, waker: Arc<mio::Waker>) -> Result<Arc<Watcher>, AddError> {
        let mut ws = self.watchers.write();
        if ws.len() >= WATCHER_LIMIT {
            return Err(AddError::TooMany);
        }
        // Room for the lines a full buffer holds (the byte bound is the real one).
        let (tx, rx) = crossbeam_channel::bounded((self.buf_bytes / 64).max(64));
        let w = Arc::new(Watcher {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            flags: u32::from(flags),
            // As memcached: the watcher takes a number, and sees events after it.
            min_gid: self.gid.fetch_add(1, Ordering::Relaxed) + 1,
            tx,
            rx,
            bytes: AtomicUsize::new(0),
            cap: self.buf_bytes,
            skipped: AtomicU64::new(0),
            notified: AtomicBool::new(false),
            waker,
        });
        ws.push(w.clone());
        self.flags
            .store(ws.iter().fold(0, |f, w| f | w.flags), Ordering::Relaxed);
        Ok(w)
    }

    /// Removes a watcher (its connection closed).
    pub fn remove(&self, w: &Watcher) {
        let mut ws = self.watchers.write();
        ws.retain(|x| x.id != w.id);
        self.flags
            .store(ws.iter().fold(0, |f, w| f | w.flags), Ordering::Relaxed);
    }

    /// Numbers and timestamps one event of type `flag`, lets `body` write what
    /// follows `ts=… gid=… `, and queues the line for every watcher of that type.
    /// Callers check [`WatchHub::wants`] first.
    pub fn publish(&self, flag: u16, body: impl FnOnce(&mut Vec<u8>)) {
        let Some(ws) = self.watchers.try_read() else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let flag = u32::from(flag);
        if !ws.iter().any(|w| w.flags & flag != 0) {
            return;
        }
        let gid = self.gid.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = Vec::with_capacity(160);
        // memcached prints the microseconds with %d: not zero-padded.
        let _ = write!(
            line,
            "ts={}.{} gid={gid} ",
            now.as_secs(),
            now.subsec_micros()
        );
        body(&mut line);
        line.push(b'\n');
        for w in ws.iter() {
            if w.flags & flag != 0 && gid >= w.min_gid {
                w.offer(&line, self);
            }
        }
    }

    /// `type=item_get` (fetchers).
    pub fn item_get(&self, key: &[u8], status: GetStatus, cfd: i32) {
        self.publish(FETCHERS, |l| {
            let (name, class, size) = match status {
                GetStatus::NotFound => ("not_found", 0, 0),
                GetStatus::Found { class, size } => ("found", class, size),
                GetStatus::Flushed => ("flushed", 0, 0),
                GetStatus::Expired => ("expired", 0, 0),
            };
            l.extend_from_slice(b"type=item_get key=");
            uriencode(key, l);
            let _ = write!(l, " status={name} clsid={class} cfd={cfd} size={size}");
        });
    }

    /// `type=item_store` (mutations). `ttl`: seconds left (0: none).
    #[allow(clippy::too_many_arguments)]
    pub fn item_store(
        &self,
        key: &[u8],
        status: StoreStatus,
        cmd: &str,
        ttl: u32,
        class: usize,
        cfd: i32,
        size: usize,
    ) {
        self.publish(MUTATIONS, |l| {
            l.extend_from_slice(b"type=item_store key=");
            uriencode(key, l);
            let _ = write!(
                l,
                " status={} cmd={cmd} ttl={ttl} clsid={class} cfd={cfd} size={size}",
                status.name()
            );
        });
    }

    /// `type=eviction` (evictions); `now`: the store's relative time.
    pub fn eviction(&self, it: &ItemMeta<'_>, now: u32) {
        self.publish(EVICTIONS, |l| {
            let ttl = if it.exptime > 0 {
                i64::from(it.exptime) - i64::from(now)
            } else {
                -1
            };
            l.extend_from_slice(b"type=eviction key=");
            uriencode(it.key, l);
            let _ = write!(
                l,
                " fetch={} ttl={ttl} la={} clsid={} size={}",
                if it.fetched { "yes" } else { "no" },
                now.wrapping_sub(it.time) as i32,
                it.class,
                it.value_len
            );
        });
    }

    /// `type=conn_new` / `type=conn_close` (connevents); `addr` as `stats conns`
    /// shows it (`tcp:1.2.3.4:5`, `unix:/path`).
    pub fn conn_event(&self, addr: &str, cfd: i32, close: Option<CloseReason>) {
        self.publish(CONNEVENTS, |l| {
            let (rip, rport, transport) = endpoint(addr);
            let kind = if close.is_some() {
                "conn_close"
            } else {
                "conn_new"
            };
            let _ = write!(
                l,
                "type={kind} rip={rip} rport={rport} transport={transport}"
            );
            if let Some(r) = close {
                let _ = write!(l, " reason={}", r.name());
            }
            let _ = write!(l, " cfd={cfd}");
        });
    }
}

/// (address, port, transport) of a `stats conns` address, as memcached's logger
/// prints them (unix sockets: `unix`, 0, `local`).
fn endpoint(addr: &str) -> (&str, u16, &'static str) {
    if let Some(rest) = addr.strip_prefix("tcp:") {
        // `[v6]:port` or `v4:port`.
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().unwrap_or(0)),
            None => (rest, 0),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (host, port, "tcp")
    } else if let Some(rest) = addr.strip_prefix("udp:") {
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "0"));
        (host, port.parse().unwrap_or(0), "udp")
    } else {
        ("unix", 0, "local")
    }
}

/// memcached's `uriencode`: ASCII letters, digits and `-._~` as they are, every other
/// byte as `%XX` (upper-case hex).
pub fn uriencode(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// Keeps a connection's watcher registered while it lives.
pub struct WatchHandle {
    hub: Arc<WatchHub>,
    /// The watcher.
    pub watcher: Arc<Watcher>,
}

impl WatchHandle {
    /// Registers `watcher` for removal from `hub` on drop.
    pub fn new(hub: Arc<WatchHub>, watcher: Arc<Watcher>) -> WatchHandle {
        WatchHandle { hub, watcher }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.hub.remove(&self.watcher);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waker() -> (mio::Poll, Arc<mio::Waker>) {
        let poll = mio::Poll::new().expect("poll");
        let w = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
        (poll, w)
    }

    #[test]
    fn uriencode_as_memcached() {
        let mut o = Vec::new();
        uriencode(b"a b%c/~._-Z9\xff\n", &mut o);
        assert_eq!(o, b"a%20b%25c%2F~._-Z9%FF%0A");
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("tcp:127.0.0.1:5000"), ("127.0.0.1", 5000, "tcp"));
        assert_eq!(endpoint("tcp:[::1]:7"), ("::1", 7, "tcp"));
        assert_eq!(endpoint("unix:/tmp/s"), ("unix", 0, "local"));
    }

    #[test]
    fn a_full_watcher_skips_and_says_so() {
        let (_p, wk) = waker();
        let hub = WatchHub::new(4096);
        assert!(!hub.wants(FETCHERS));
        let w = hub.add(FETCHERS, wk).expect("add");
        assert!(hub.wants(FETCHERS) && !hub.wants(MUTATIONS));
        for _ in 0..200 {
            hub.item_get(b"k", GetStatus::NotFound, 5);
        }
        assert!(w.skipped() > 0);
        let mut out = Vec::new();
        assert!(w.drain_into(&mut out, usize::MAX));
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text
            .lines()
            .all(|l| l.contains("type=item_get key=k status=not_found")));
        assert!(out.len() <= 4096);
        let lost = w.skipped();
        hub.item_get(b"k", GetStatus::Found { class: 2, size: 3 }, 5);
        out.clear();
        w.drain_into(&mut out, usize::MAX);
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with(&format!("skipped={lost}\nts=")), "{text}");
        assert!(
            text.ends_with(" status=found clsid=2 cfd=5 size=3\n"),
            "{text}"
        );
        assert_eq!(hub.count(), 1);
        hub.remove(&w);
        assert!(!hub.wants(FETCHERS));
    }

    #[test]
    fn at_most_twenty_watchers() {
        let (_p, wk) = waker();
        let hub = WatchHub::new(4096);
        let ws: Vec<_> = (0..WATCHER_LIMIT)
            .map(|_| hub.add(FETCHERS, wk.clone()).expect("add"))
            .collect();
        assert_eq!(hub.add(FETCHERS, wk.clone()).err(), Some(AddError::TooMany));
        hub.remove(&ws[0]);
        assert!(hub.add(FETCHERS, wk).is_ok());
    }
}
