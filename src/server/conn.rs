//! One client connection: its buffers, the read → parse → execute → reply loop, and
//! back-pressure.
//!
//! ```text
//!  rbuf: [ consumed | unprocessed input ........ | free ]      wbuf: [ sent | to send ]
//!        0          rpos                          rend  len          0      wpos     len
//! ```
//! `drive` alternates reading and processing until the socket has nothing more
//! (edge-triggered), then writes every reply of the batch with one write. It stops
//! early — without reading more — when `-R` requests have been served (the worker
//! comes back after other connections had their turn, and the replies wait in the
//! buffer so the batch still leaves in one write) or when more than
//! [`WBUF_HIGH`] bytes of replies wait for a client that does not read (the writable
//! event brings it back). Memory per connection is therefore bounded by the largest
//! request plus `WBUF_HIGH` plus one item.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

use super::binary_exec;
use super::conn_auth::ConnAuth;
use super::exec::{self, Flow};
use super::{ConnInfo, Shared};
use crate::config::ProtocolMode;
use crate::protocol::binary;
use crate::protocol::text::auth::{parse_auth, AuthParse};
use crate::protocol::text::{self, Limits, Parse};
use crate::stats::{bump, Counters};

/// Replies waiting beyond this many bytes stop request processing until the client
/// reads.
pub const WBUF_HIGH: usize = 4 << 20;
const RBUF_INITIAL: usize = 16 << 10;
/// Read buffers a worker keeps for reuse.
const POOL_MAX: usize = 64;

/// A worker's spare read buffers: connections borrow one while they have input and
/// give it back when idle.
#[derive(Default)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
}

impl BufPool {
    fn take(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_else(|| vec![0; RBUF_INITIAL])
    }

    fn give(&mut self, buf: Vec<u8>) {
        // Grown buffers (a large value or a long multi-get) are not kept.
        if buf.len() == RBUF_INITIAL && self.free.len() < POOL_MAX {
            self.free.push(buf);
        }
    }
}
const WBUF_IDLE_MAX: usize = 1 << 20;

/// Names of connection states for `stats conns`, as memcached prints them.
pub const STATE_NAMES: [&str; 6] = [
    "conn_waiting",
    "conn_parse_cmd",
    "conn_nread",
    "conn_swallow",
    "conn_mwrite",
    "conn_closing",
];
const ST_WAITING: u32 = 0;
const ST_PARSE: u32 = 1;
const ST_NREAD: u32 = 2;
const ST_SWALLOW: u32 = 3;
const ST_MWRITE: u32 = 4;

/// A client socket: TCP or unix.
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// What the worker should do with a connection after `drive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the socket (readable or writable).
    Idle,
    /// Stopped after `-R` requests with input left: drive again soon.
    Pending,
    /// Close it now.
    Close,
}

/// Where processing of buffered input stopped.
enum Stop {
    /// All complete requests were served; more bytes are needed.
    NeedInput,
    /// `-R` requests served.
    Yield,
    /// Too many replies are waiting for the client.
    Blocked,
    /// Close (after sending what is buffered when `flush` is true).
    Close { flush: bool },
}

/// Result of reading from the socket.
enum ReadResult {
    /// Bytes arrived; `drained`: the socket then reported it has no more.
    Data { drained: bool },
    /// Nothing to read now.
    WouldBlock,
    /// End of stream or error.
    Closed,
}

/// Which protocol this connection speaks, decided by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Text,
    Binary,
}

/// One client connection.
pub struct Conn {
    /// The socket.
    pub stream: Stream,
    /// File descriptor (connection id in `stats conns`).
    pub fd: RawFd,
    /// What `stats conns` shows.
    pub info: Arc<ConnInfo>,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    /// End of the replies memcached would already have sent in this batch (it
    /// transmits at once after a binary error reply or a NOOP, and at a `-R`
    /// yield): what a binary connection closed for a bad magic byte still gets.
    flush_mark: usize,
    swallow: usize,
    after_swallow: Option<&'static str>,
    bin_after_swallow: Option<(binary::Header, binary::Status)>,
    skip_keys: usize,
    proto: Option<Proto>,
    closing: bool,
    drained: bool,
    /// The kernel has reported the end of the stream: a short read no longer means
    /// drained (the end of stream still has to be read).
    eof_signalled: bool,
    auth: ConnAuth,
    /// Where the last `-Y` reply before authentication starts in `wbuf`: memcached
    /// reuses one reply slot for them, so within one batch each such reply
    /// replaces the previous one.
    ascii_auth_reply_at: Option<usize>,
}

impl Conn {
    /// Wraps an accepted socket.
    pub fn new(stream: Stream, info: Arc<ConnInfo>, shared: &Shared) -> Conn {
        let fd = stream.as_raw_fd();
        Conn {
            stream,
            fd,
            info,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            wbuf: Vec::new(),
            wpos: 0,
            flush_mark: 0,
            swallow: 0,
            after_swallow: None,
            bin_after_swallow: None,
            skip_keys: 0,
            proto: None,
            closing: false,
            drained: false,
            eof_signalled: false,
            auth: ConnAuth::new(shared),
            ascii_auth_reply_at: None,
        }
    }

    /// Seconds-relative time of the last request.
    pub fn last_cmd(&self) -> u32 {
        self.info.last_cmd.load(Ordering::Relaxed)
    }

    /// A readiness event arrived: new bytes may be waiting even if an earlier read
    /// drained the socket, so the next `drive` must read again. `read_closed`: the
    /// event also reports the end of the stream (EPOLLRDHUP/EPOLLHUP) or an error.
    /// No further edge will come for it, so from then on only a read that returns
    /// end of stream or `EAGAIN` counts as drained.
    pub fn readiness(&mut self, read_closed: bool) {
        self.drained = false;
        self.eof_signalled |= read_closed;
    }

    /// At shutdown: tries, for a short bounded time, to send what is buffered.
    pub fn finish(&mut self, counters: &Counters) {
        for _ in 0..100 {
            if self.pending_output() == 0 || !self.write_out(counters) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Reads, serves and writes until the socket would block, `-R` requests were
    /// served, or the client stops reading its replies.
    pub fn drive(&mut self, shared: &Shared, counters: &Counters, pool: &mut BufPool) -> Status {
        let mut served = 0usize;
        loop {
            // Replies are written when the batch ends (below); here only when too
            // many wait, to make room.
            if self.wbuf.len() > WBUF_HIGH && !self.write_out(counters) {
                return Status::Close;
            }
            if self.wbuf.len() > WBUF_HIGH {
                self.set_state(ST_MWRITE);
                return Status::Idle; // the writable event resumes us
            }
            match self.process(shared, counters, &mut served) {
                Stop::Close { flush } => {
                    if flush {
                        self.write_out(counters);
                    } else {
                        self.write_flushed(counters);
                    }
                    return Status::Close;
                }
                Stop::Yield => {
                    self.flush_mark = self.wbuf.len();
                    // Replies stay buffered: the batch leaves in one write once the
                    // input is drained (back-pressure still bounds the buffer).
                    bump(&counters.conn_yields, 1);
                    return Status::Pending;
                }
                Stop::Blocked => continue,
                Stop::NeedInput => {}
            }
            if self.drained {
                // The last read emptied the socket: send the batch's replies in one
                // write and wait for the next readiness edge.
                self.drained = false;
                if !self.write_out(counters) {
                    return Status::Close;
                }
                self.shrink_when_idle(pool);
                return Status::Idle;
            }
            match self.read_some(shared, counters, pool) {
                ReadResult::Data { drained } => self.drained = drained,
                ReadResult::WouldBlock => {
                    if !self.write_out(counters) {
                        return Status::Close;
                    }
                    self.shrink_when_idle(pool);
                    return Status::Idle;
                }
                ReadResult::Closed => {
                    // Peer closed or error: flush what we have, then close.
                    self.write_out(counters);
                    return Status::Close;
                }
            }
        }
    }

    /// Reads into the buffer until the socket is drained or the buffer is full (like
    /// memcached, so a long line that has fully arrived is parsed whole).
    fn read_some(
        &mut self,
        shared: &Shared,
        counters: &Counters,
        pool: &mut BufPool,
    ) -> ReadResult {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.rbuf.is_empty() {
            self.rbuf = pool.take();
        }
        if self.rend == self.rbuf.len() {
            if self.rpos > 0 {
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
            } else {
                let cap = max_request(shared);
                if self.rbuf.len() >= cap {
                    log::info!("conn {}: request larger than {cap} bytes; closing", self.fd);
                    return ReadResult::Closed;
                }
                let new_len = (self.rbuf.len() * 2).min(cap);
                self.rbuf.resize(new_len, 0);
            }
        }
        let mut got = false;
        while self.rend < self.rbuf.len() {
            match self.stream.read(&mut self.rbuf[self.rend..]) {
                Ok(0) if got => return ReadResult::Data { drained: false },
                Ok(0) => return ReadResult::Closed,
                Ok(n) => {
                    let offered = self.rbuf.len() - self.rend;
                    self.rend += n;
                    bump(&counters.bytes_read, n as u64);
                    got = true;
                    if n < offered && !self.eof_signalled {
                        // A short read emptied the socket's receive queue; anything
                        // arriving later raises a new edge. Skipping the read that
                        // would return EAGAIN saves one syscall per request.
                        return ReadResult::Data { drained: true };
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return if got {
                        ReadResult::Data { drained: true }
                    } else {
                        ReadResult::WouldBlock
                    };
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) if got => return ReadResult::Data { drained: false },
                Err(_) => return ReadResult::Closed,
            }
        }
        ReadResult::Data { drained: false }
    }

    /// Writes buffered replies until done or the socket would block. False on error.
    fn write_out(&mut self, counters: &Counters) -> bool {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.wpos += n;
                    bump(&counters.bytes_written, n as u64);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        self.flush_mark = 0;
        self.ascii_auth_reply_at = None;
        true
    }

    /// Sends the replies up to `flush_mark` only (the rest is dropped with the
    /// connection), as memcached does when a binary connection breaks.
    fn write_flushed(&mut self, counters: &Counters) {
        let mark = self.flush_mark.clamp(self.wpos, self.wbuf.len());
        self.wbuf.truncate(mark);
        self.write_out(counters);
    }

    fn shrink_when_idle(&mut self, pool: &mut BufPool) {
        if self.rpos == self.rend && !self.rbuf.is_empty() {
            // Nothing buffered: an idle connection holds no read buffer (memcached
            // does the same), so thousands of idle clients cost little memory.
            pool.give(std::mem::take(&mut self.rbuf));
            self.rpos = 0;
            self.rend = 0;
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > WBUF_IDLE_MAX {
            self.wbuf = Vec::new();
        }
        self.set_state(if self.swallow > 0 {
            ST_SWALLOW
        } else if self.rpos < self.rend {
            ST_NREAD
        } else {
            ST_WAITING
        });
    }

    fn set_state(&self, s: u32) {
        self.info.state.store(s, Ordering::Relaxed);
    }

    /// Serves complete requests in the read buffer.
    fn process(&mut self, shared: &Shared, counters: &Counters, served: &mut usize) -> Stop {
        if self.closing {
            return Stop::Close { flush: true };
        }
        let cfg = &shared.config;
        let limits = Limits {
            item_size_max: cfg.item_size_max,
            cas_enabled: !cfg.disable_cas,
        };
        let mut touched = false;
        loop {
            if self.swallow > 0 {
                let k = self.swallow.min(self.rend - self.rpos);
                self.rpos += k;
                self.swallow -= k;
                if self.swallow > 0 {
                    return Stop::NeedInput;
                }
                // As memcached: the refusal is sent once the data block is gone.
                if let Some(r) = self.after_swallow.take() {
                    self.wbuf.extend_from_slice(r.as_bytes());
                    self.wbuf.extend_from_slice(b"\r\n");
                }
                if let Some((header, status)) = self.bin_after_swallow.take() {
                    binary::write_error(&mut self.wbuf, &header, status);
                    self.flush_mark = self.wbuf.len();
                }
            }
            if self.rpos == self.rend {
                return Stop::NeedInput;
            }
            if self.wbuf.len() > WBUF_HIGH {
                return Stop::Blocked;
            }
            if *served >= cfg.reqs_per_event {
                return Stop::Yield;
            }
            if !touched {
                touched = true;
                self.set_state(ST_PARSE);
                self.info
                    .last_cmd
                    .store(shared.clock.now(), Ordering::Relaxed);
            }
            let input = &self.rbuf[self.rpos..self.rend];
            let proto = match self.proto {
                Some(p) => p,
                None => {
                    let p = match (cfg.protocol, input[0]) {
                        (ProtocolMode::Ascii, _) => Proto::Text,
                        (_, 0x80) => Proto::Binary,
                        // As memcached: a binary-only connection waits for a whole
                        // header and closes on its bad magic.
                        (ProtocolMode::Binary, _) => Proto::Binary,
                        _ => Proto::Text,
                    };
                    self.proto = Some(p);
                    p
                }
            };
            if proto == Proto::Binary {
                *served += 1;
                match binary::parse_gated(input, &limits, self.auth.gate()) {
                    binary::Parse::Incomplete => {
                        *served -= 1;
                        return Stop::NeedInput;
                    }
                    binary::Parse::Close => return Stop::Close { flush: false },
                    binary::Parse::Error {
                        header,
                        status,
                        consumed,
                        swallow,
                        close,
                        unlink,
                    } => {
                        if swallow > 0 {
                            // As memcached: the error leaves once the body is gone.
                            self.bin_after_swallow = Some((header, status));
                        } else {
                            binary::write_error(&mut self.wbuf, &header, status);
                            self.flush_mark = self.wbuf.len();
                        }
                        if let Some(key) = unlink {
                            shared.store.unlink(key);
                        }
                        self.rpos += consumed;
                        self.swallow = swallow;
                        if close {
                            self.closing = true;
                            return Stop::Close { flush: true };
                        }
                    }
                    binary::Parse::Request(req, used) => {
                        self.rpos += used;
                        let start = self.wbuf.len();
                        // memcached transmits at once after these and after an error reply.
                        let flushes =
                            matches!(req.cmd, binary::Command::Noop | binary::Command::Quit);
                        let flow = match req.cmd {
                            binary::Command::SaslListMechs
                            | binary::Command::SaslAuth { .. }
                            | binary::Command::SaslStep { .. } => {
                                self.auth
                                    .binary(&req, shared, counters, &mut self.wbuf, self.fd)
                            }
                            _ => binary_exec::execute(req, shared, counters, &mut self.wbuf),
                        };
                        if flushes || binary::is_error_reply(self.wbuf.get(start..)) {
                            self.flush_mark = self.wbuf.len();
                        }
                        if flow == Flow::Close {
                            self.closing = true;
                            return Stop::Close { flush: true };
                        }
                    }
                }
                continue;
            }
            *served += 1;
            if self.auth.ascii_pending() {
                match self.ascii_auth(shared, counters) {
                    Some(stop) => return stop,
                    None => continue,
                }
            }
            let input = &self.rbuf[self.rpos..self.rend];
            match text::parse(input, &limits) {
                Parse::Incomplete => {
                    *served -= 1;
                    return Stop::NeedInput;
                }
                Parse::Close => return Stop::Close { flush: true },
                Parse::Error {
                    reply,
                    consumed,
                    swallow,
                    unlink,
                } => {
                    if swallow > 0 {
                        self.after_swallow = reply;
                    } else if let Some(r) = reply {
                        self.wbuf.extend_from_slice(r.as_bytes());
                        self.wbuf.extend_from_slice(b"\r\n");
                    }
                    if let Some(key) = unlink.as_ref().and_then(|k| k.key()) {
                        shared.store.unlink(&key);
                    }
                    if swallow > 0 {
                        // Only a storage command refused as too large swallows.
                        bump(&counters.store_too_large, 1);
                    }
                    self.rpos += consumed;
                    self.swallow = swallow;
                }
                Parse::Request(cmd, used) => {
                    let skip = std::mem::take(&mut self.skip_keys);
                    match exec::execute(cmd, shared, counters, &mut self.wbuf, skip) {
                        Flow::Continue => self.rpos += used,
                        Flow::Close => {
                            self.rpos += used;
                            self.closing = true;
                            return Stop::Close { flush: true };
                        }
                        Flow::Suspend { keys_done } => {
                            self.skip_keys = keys_done;
                            return Stop::Blocked;
                        }
                    }
                }
            }
        }
    }
}

impl Conn {
    /// Serves one request of a `-Y` connection that has not authenticated yet; `None`
    /// to go on with the next request.
    fn ascii_auth(&mut self, shared: &Shared, c: &Counters) -> Option<Stop> {
        let input = &self.rbuf[self.rpos..self.rend];
        // memcached writes every reply before authentication into one reply slot.
        let slot = match self.ascii_auth_reply_at {
            Some(at) if at >= self.wpos && at <= self.wbuf.len() => at,
            _ => self.wbuf.len(),
        };
        let (flow, consumed) = match parse_auth(input) {
            AuthParse::Incomplete => return Some(Stop::NeedInput),
            AuthParse::Close => return Some(Stop::Close { flush: true }),
            AuthParse::Refuse { reply, consumed } => {
                self.wbuf.truncate(slot);
                self.wbuf.extend_from_slice(reply.as_bytes());
                self.wbuf.extend_from_slice(b"\r\n");
                (Flow::Continue, consumed)
            }
            AuthParse::Credentials {
                user,
                password,
                consumed,
            } => {
                self.wbuf.truncate(slot);
                let flow = self
                    .auth
                    .ascii(user, password, shared, c, &mut self.wbuf, self.fd);
                (flow, consumed)
            }
        };
        self.ascii_auth_reply_at = Some(slot);
        self.rpos += consumed;
        if flow == Flow::Close {
            self.closing = true;
            return Some(Stop::Close { flush: true });
        }
        None
    }
}

/// Largest buffered request before a connection is dropped: one item plus room for a
/// very long multi-get line.
fn max_request(shared: &Shared) -> usize {
    shared.config.item_size_max + (8 << 20)
}
