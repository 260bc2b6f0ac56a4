//! `--metrics-listen`: a tiny HTTP/1.x server for Prometheus on a thread of its own
//! (its own `mio` poll; never a worker), serving [`crate::server::stats::metrics::render`].
//!
//! ```text
//!   accept ─▶ Reading: head into a buffer (≤ HEAD_MAX) ─▶ parse ─▶ Writing: response
//!     │          │ too long: 431 · deadline: 408                       │ all sent
//!     │          └ bad request line/header: 400 · method: 405 ·        ▼
//!     │            path: 404 · version: 505             Draining: shutdown(write), read
//!     └ MAX_CONNS open already: 503                     and drop input ≤ 1 s, close
//! ```
//!
//! `GET /metrics` and `HEAD /metrics` (a query string is ignored), HTTP/1.0 and 1.1;
//! every response has `Connection: close` and the connection is closed after it (no
//! keep-alive: a scrape is one request). Memory is bounded: at most [`MAX_CONNS`]
//! connections, each holding at most [`HEAD_MAX`] bytes of request and one response;
//! a client has `-o metrics_timeout` seconds to send its request and as long again to
//! read the response.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::server::shared::Shared;

/// Largest request head (request line and headers) read: beyond it, 431.
pub const HEAD_MAX: usize = 8 << 10;
/// Connections served at once; more get 503 and are closed.
pub const MAX_CONNS: usize = 16;
/// Turned-away connections kept while their 503 leaves (beyond them: closed at once).
const MAX_REJECTS: usize = 16;
/// How long a closed connection's input is read and dropped, so that what the client
/// still sends does not turn the close into a reset that loses the response.
const DRAIN: Duration = Duration::from_secs(1);

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// Where a connection is.
enum State {
    /// Reading the request head.
    Reading,
    /// Sending the response (from `sent`).
    Writing { sent: usize },
    /// Response sent, write side shut: dropping input until the client closes.
    Draining,
}

struct HttpConn {
    stream: TcpStream,
    /// Turned away (503): does not count against [`MAX_CONNS`].
    rejected: bool,
    buf: Vec<u8>,
    state: State,
    deadline: Instant,
}

/// The metrics listener and its connections.
pub(crate) struct MetricsServer {
    poll: Poll,
    listener: TcpListener,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    conns: Vec<Option<HttpConn>>,
    timeout: Duration,
}

impl MetricsServer {
    /// Binds `host:port` (the first address it resolves to).
    pub(crate) fn bind(host: &str, port: u16, shared: Arc<Shared>) -> std::io::Result<Self> {
        let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
            std::io::Error::new(ErrorKind::NotFound, "the host resolves to no address")
        })?;
        let mut listener = TcpListener::bind(addr)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let timeout = Duration::from_secs(u64::from(shared.config.metrics_timeout_secs.max(1)));
        Ok(MetricsServer {
            poll,
            listener,
            waker,
            shared,
            conns: (0..MAX_CONNS + MAX_REJECTS).map(|_| None).collect(),
            timeout,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Wakes the thread (to see that the server stops).
    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Serves until the server stops.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        while !self.shared.net.stopping.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = self
                .conns
                .iter()
                .flatten()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min();
            if let Err(e) = self.poll.poll(&mut events, wait) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::error!("metrics: poll failed: {e}");
                return;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(i) => self.drive(i),
                }
            }
            self.expire();
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("metrics: accept failed: {e}");
                    return;
                }
            };
            let active = self.conns.iter().flatten().filter(|c| !c.rejected).count();
            let rejected = active >= MAX_CONNS;
            let Some(slot) = self.conns.iter().position(Option::is_none) else {
                // Full even for turning away: close at once.
                continue;
            };
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            let mut conn = HttpConn {
                stream,
                rejected,
                buf: Vec::new(),
                state: State::Reading,
                deadline: Instant::now() + self.timeout,
            };
            if rejected {
                let busy = response(503, "Service Unavailable", &[], b"busy\n", false);
                start_reply(&mut conn, busy, DRAIN);
            }
            self.conns[slot] = Some(conn);
            self.drive(slot);
        }
    }

    /// Closes connections past their deadline: 408 for one still sending its request.
    fn expire(&mut self) {
        let now = Instant::now();
        for i in 0..self.conns.len() {
            let Some(c) = &mut self.conns[i] else {
                continue;
            };
            if c.deadline > now {
                continue;
            }
            if matches!(c.state, State::Reading) {
                let r = response(408, "Request Timeout", &[], b"request timeout\n", false);
                let _ = c.stream.write(&r);
            }
            self.close(i);
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut c) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn drive(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let keep = match c.state {
            State::Reading => read_request(c, &self.shared, self.timeout),
            _ => true,
        };
        let keep = keep && send_and_drain(c);
        if !keep {
            self.close(i);
        }
    }
}

/// Reads what has arrived; once the head is complete (or cannot be), puts the
/// response in the buffer and moves to `Writing`. False: close now.
fn read_request(c: &mut HttpConn, shared: &Shared, timeout: Duration) -> bool {
    let mut chunk = [0u8; 2048];
    loop {
        match c.stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                let room = (HEAD_MAX + 1).saturating_sub(c.buf.len());
                c.buf.extend_from_slice(&chunk[..n.min(room)]);
                if let Some(end) = head_end(&c.buf) {
                    let reply = answer(&c.buf[..end], shared);
                    return start_reply(c, reply, timeout);
                }
                if c.buf.len() > HEAD_MAX {
                    let body = b"request head too large\n";
                    let reply = response(431, "Request Header Fields Too Large", &[], body, false);
                    return start_reply(c, reply, timeout);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

fn start_reply(c: &mut HttpConn, reply: Vec<u8>, timeout: Duration) -> bool {
    c.buf = reply;
    c.state = State::Writing { sent: 0 };
    c.deadline = Instant::now() + timeout;
    true
}

/// Sends the response, then drains input. False: close now.
fn send_and_drain(c: &mut HttpConn) -> bool {
    if let State::Writing { sent } = &mut c.state {
        while *sent < c.buf.len() {
            match c.stream.write(&c.buf[*sent..]) {
                Ok(0) => return false,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let _ = c.stream.shutdown(Shutdown::Write);
        c.buf = Vec::new();
        c.state = State::Draining;
        c.deadline = Instant::now() + DRAIN;
    }
    if matches!(c.state, State::Draining) {
        let mut sink = [0u8; 2048];
        loop {
            match c.stream.read(&mut sink) {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
    true
}

/// Where the head ends (after its blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    // Empty lines before the request line are skipped (RFC 9112 2.2).
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let b = &buf[start..];
    (0..b.len()).find_map(|i| {
        if b[i..].starts_with(b"\r\n\r\n") {
            Some(start + i + 4)
        } else if b[i..].starts_with(b"\n\n") {
            Some(start + i + 2)
        } else {
            None
        }
    })
}

/// The response to a complete request head.
fn answer(head: &[u8], shared: &Shared) -> Vec<u8> {
    match parse_head(head) {
        Err((code, reason)) => {
            let allow: &[(&str, &str)] = if code == 405 {
                &[("Allow", "GET, HEAD")]
            } else {
                &[]
            };
            let body = format!("{reason}\n");
            response(code, reason, allow, body.as_bytes(), false)
        }
        Ok(head_only) => {
            // A bug while rendering costs this response, not the thread.
            let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::server::stats::metrics::render(shared)
            }));
            match rendered {
                Ok(body) => response(200, "OK", &[], body.as_bytes(), head_only),
                Err(_) => {
                    log::error!("metrics: internal error rendering /metrics");
                    let body = b"internal error\n";
                    response(500, "Internal Server Error", &[], body, false)
                }
            }
        }
    }
}

/// Checks a request head; `Ok(true)` for `HEAD /metrics`, `Ok(false)` for `GET`.
fn parse_head(head: &[u8]) -> Result<bool, (u16, &'static str)> {
    const BAD: (u16, &str) = (400, "Bad Request");
    let text = std::str::from_utf8(head).map_err(|_| BAD)?;
    let mut lines = text
        .trim_start_matches(['\r', '\n'])
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(BAD)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD);
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method) || target.is_empty() || target.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(BAD);
    }
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, _)) = line.split_once(':') else {
            return Err(BAD);
        };
        if !token(name) || line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(BAD);
        }
    }
    match version {
        "HTTP/1.0" | "HTTP/1.1" => {}
        v if v.len() == 8
            && v.starts_with("HTTP/")
            && v.as_bytes()[5].is_ascii_digit()
            && v.as_bytes()[6] == b'.'
            && v.as_bytes()[7].is_ascii_digit() =>
        {
            return Err((505, "HTTP Version Not Supported"))
        }
        _ => return Err(BAD),
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err((405, "Method Not Allowed")),
    };
    // Origin form, or absolute form (`http://host:port/metrics`).
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path != "/metrics" {
        return Err((404, "Not Found"));
    }
    Ok(head_only)
}

/// A whole response; `head_only` leaves the body out (its length stays).
fn response(
    code: u16,
    reason: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 160);
    let content_type = if code == 200 {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let _ = write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_are_checked_in_order() {
        let p = |s: &str| parse_head(s.as_bytes()).map_err(|e| e.0);
        assert_eq!(p("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(false));
        assert_eq!(p("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Ok(true));
        assert_eq!(p("\r\nGET http://h:1/metrics HTTP/1.1\n\n"), Ok(false));
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Err(404));
        assert_eq!(p("POST /metrics HTTP/1.1\r\n\r\n"), Err(405));
        assert_eq!(p("GET /metrics HTTP/2.0\r\n\r\n"), Err(505));
        for bad in [
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics FTP/1.1\r\n\r\n",
            "GET /met\u{7f}rics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(p(bad), Err(400), "{bad:?}");
        }
        assert_eq!(
            parse_head(b"GET /\xff HTTP/1.1\r\n\r\n").map_err(|e| e.0),
            Err(400)
        );
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.1\n\n"), Some(20));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
