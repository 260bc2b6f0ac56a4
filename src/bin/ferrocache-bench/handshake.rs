//! Handshake load (`run --tls --handshakes`, workload `h` of `compare --tls`): each of
//! `conns` connection slots repeatedly connects, completes a full TLS handshake (no
//! resumption), sends `version\r\n`, reads the `VERSION ...` reply, sends close_notify
//! and closes, then starts over. Non-blocking, one `mio` poller per client thread like
//! the request engine; one op = one such connection, its latency from the connect call
//! to the parsed reply. With a rate (`run --handshakes --rate R`, the flood of workload
//! `g`), a free slot starts its next connection only when the schedule (R a second
//! over all threads) allows: an open-loop flood the same for every server.

use crate::hist::Hist;
use crate::load::{self, LoadConfig, LoadResult, Shared, Totals};
use crate::tls::TlsClient;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use rustls::ClientConnection;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest reply line accepted for `version`.
const MAX_REPLY: usize = 256;

/// One connection being set up.
struct Hs {
    sock: TcpStream,
    tls: ClientConnection,
    started: Instant,
    connected: bool,
    reply: Vec<u8>,
}

/// Runs the handshake load as configured (`conns`, `threads`, `warmup`, `duration`,
/// `max_ops`; `cfg.tls` must be set), calling `at_measure_start` when the warm-up ends.
pub fn run_handshakes_with(
    cfg: &LoadConfig,
    at_measure_start: &mut dyn FnMut(),
) -> Result<LoadResult, String> {
    let Some(tls) = cfg.tls.clone() else {
        return Err("the handshake load needs --tls".into());
    };
    let mut c = cfg.clone();
    c.preload = false;
    c.idle_conns = 0;
    let cfg = &c;
    // Check the configuration and that one handshake works before timing anything.
    load::open(cfg)?;
    load::ensure_fd_limit(cfg.conns as u64 + 64);
    let threads = cfg.threads.min(cfg.conns).max(1);
    let shared = Arc::new(Shared::new());
    let measure_start = Instant::now() + cfg.warmup;
    let deadline = measure_start + cfg.duration;
    let mut handles = Vec::new();
    for t in 0..threads {
        let slots = cfg.conns / threads + usize::from(t < cfg.conns % threads);
        let w = HsWorker {
            addr: cfg.server,
            tls: tls.clone(),
            shared: shared.clone(),
            slots,
            measure_start,
            deadline,
            quota: load::quota(cfg, t, threads),
            interval: (cfg.handshake_rate > 0.0)
                .then(|| Duration::from_secs_f64(threads as f64 / cfg.handshake_rate)),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("handshake-{t}"))
                .spawn(move || w.run())
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    let totals = load::coordinate(
        cfg,
        &shared,
        handles,
        measure_start,
        deadline,
        at_measure_start,
    )?;
    Ok(load::finish(&shared, &totals, measure_start, deadline))
}

struct HsWorker {
    addr: SocketAddr,
    tls: TlsClient,
    shared: Arc<Shared>,
    slots: usize,
    measure_start: Instant,
    deadline: Instant,
    quota: Option<u64>,
    /// With a rate: the time between two connection starts of this thread.
    interval: Option<Duration>,
}

impl HsWorker {
    fn run(self) -> Totals {
        let mut totals = Totals::default();
        if let Err(e) = self.run_inner(&mut totals) {
            self.shared.error(e);
        }
        totals
    }

    fn open(&self, registry: &Registry, token: Token) -> Result<Hs, String> {
        let started = Instant::now();
        let mut sock = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
        sock.set_nodelay(true)
            .map_err(|e| format!("connect: {e}"))?;
        registry
            .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        let mut tls = self.tls.connection()?;
        // Sent as soon as the handshake allows (TLS 1.3: with the client's Finished).
        tls.writer()
            .write_all(b"version\r\n")
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(Hs {
            sock,
            tls,
            started,
            connected: false,
            reply: Vec::with_capacity(64),
        })
    }

    fn run_inner(&self, totals: &mut Totals) -> Result<(), String> {
        let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let mut slots: Vec<Option<Hs>> = Vec::with_capacity(self.slots);
        // With a rate: when the next connection may start, and the slots waiting.
        let mut next_start = Instant::now();
        let mut free: Vec<usize> = Vec::new();
        for i in 0..self.slots {
            if self.quota.is_some_and(|q| i as u64 >= q) {
                slots.push(None);
                continue;
            }
            if self.interval.is_some() {
                slots.push(None);
                free.push(i);
                continue;
            }
            match self.open(poll.registry(), Token(i)) {
                Ok(h) => slots.push(Some(h)),
                Err(e) => {
                    self.shared.error(e);
                    slots.push(None);
                }
            }
        }
        let mut raw = vec![0u8; 32 << 10];
        let mut events = Events::with_capacity(1024);
        let mut local = Hist::new();
        let mut measuring = false;
        let mut measured_done: u64 = 0;
        let mut last_publish = Instant::now();
        let mut now;
        loop {
            now = Instant::now();
            if !measuring && now >= self.measure_start {
                measuring = true;
                local.clear();
            }
            if now >= self.deadline || self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            if slots.iter().all(Option::is_none) && (self.interval.is_none() || free.is_empty()) {
                break; // quota reached, or every slot failed
            }
            if measuring && now.duration_since(last_publish) >= Duration::from_millis(200) {
                self.shared.hist.lock().merge(&local);
                local.clear();
                last_publish = now;
            }
            if let Some(iv) = self.interval {
                // Start what the schedule allows (a schedule more than a second
                // behind is not caught up in a burst).
                if now.saturating_duration_since(next_start) > Duration::from_secs(1) {
                    next_start = now;
                }
                while now >= next_start {
                    let Some(i) = free.pop() else { break };
                    match self.open(poll.registry(), Token(i)) {
                        Ok(h) => slots[i] = Some(h),
                        Err(e) => self.shared.error(e),
                    }
                    next_start += iv;
                }
            }
            let mut timeout = self
                .deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            if self.interval.is_some() && !free.is_empty() {
                timeout = timeout.min(next_start.saturating_duration_since(now));
            }
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll: {e}"));
            }
            for ev in events.iter() {
                let i = ev.token().0;
                let Some(Some(h)) = slots.get_mut(i) else {
                    continue;
                };
                match drive(h, &mut raw) {
                    Ok(false) => continue,
                    Ok(true) => {
                        let end = Instant::now();
                        if measuring {
                            local
                                .record(end.saturating_duration_since(h.started).as_nanos() as u64);
                            measured_done += 1;
                        }
                        close(h, poll.registry());
                    }
                    Err(e) => {
                        let _ = poll.registry().deregister(&mut h.sock);
                        self.shared.error(e);
                        slots[i] = None;
                        continue;
                    }
                }
                // Done: start the next connection in this slot (within the quota of
                // measured handshakes, counting those in flight).
                slots[i] = None;
                let more = match self.quota {
                    Some(q) => measured_done + (slots.iter().flatten().count() as u64) < q,
                    None => true,
                };
                if more && self.interval.is_some() {
                    free.push(i); // started when the schedule says
                } else if more && Instant::now() < self.deadline {
                    match self.open(poll.registry(), Token(i)) {
                        Ok(h) => slots[i] = Some(h),
                        Err(e) => self.shared.error(e),
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
}

/// Sends close_notify (as far as the socket takes it) and closes.
fn close(h: &mut Hs, registry: &Registry) {
    h.tls.send_close_notify();
    let _ = h.tls.write_tls(&mut h.sock);
    let _ = registry.deregister(&mut h.sock);
}

/// Sends what TLS has to send, until done or the socket is full.
fn push(h: &mut Hs) -> Result<(), String> {
    while h.tls.wants_write() {
        match h.tls.write_tls(&mut h.sock) {
            Ok(0) => return Err("write returned 0".into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}

/// Advances one connection on a readiness event: Ok(true) = the reply is in.
fn drive(h: &mut Hs, raw: &mut [u8]) -> Result<bool, String> {
    if !h.connected {
        if let Some(e) = h.sock.take_error().map_err(|e| format!("connect: {e}"))? {
            return Err(format!("connect: {e}"));
        }
        match h.sock.peer_addr() {
            Ok(_) => h.connected = true,
            Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(format!("connect: {e}")),
        }
    }
    loop {
        push(h)?;
        let n = match h.sock.read(raw) {
            Ok(0) => {
                return Err(if h.tls.is_handshaking() {
                    "server closed the connection during the TLS handshake".into()
                } else {
                    "server closed the connection before replying to version".into()
                })
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        let mut rd = &raw[..n];
        while !rd.is_empty() {
            h.tls.read_tls(&mut rd).map_err(|e| format!("TLS: {e}"))?;
            h.tls
                .process_new_packets()
                .map_err(|e| format!("TLS: {e}"))?;
            let mut tmp = [0u8; MAX_REPLY];
            loop {
                match h.tls.reader().read(&mut tmp) {
                    Ok(0) => return Err("server closed the TLS session before replying".into()),
                    Ok(k) => {
                        h.reply.extend_from_slice(&tmp[..k]);
                        if h.reply.len() > MAX_REPLY {
                            return Err("reply to version longer than 256 bytes".into());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("TLS: {e}")),
                }
            }
        }
        if h.reply.ends_with(b"\r\n") {
            if h.reply.starts_with(b"VERSION ") && h.reply.len() > 10 {
                return Ok(true);
            }
            let l = String::from_utf8_lossy(&h.reply);
            return Err(format!("unexpected reply to version: {:?}", l.trim_end()));
        }
        if n < raw.len() {
            // A short read drained the socket (edge-triggered: the next data is an event).
            push(h)?;
            return Ok(false);
        }
    }
}
