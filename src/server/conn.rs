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
//! buffer so the batch still leaves in one write) or when the replies waiting for a
//! client that does not read use up the connection's share of the buffer budget (the
//! writable event brings it back). Every buffer is counted against that one budget
//! (see [`super::budget`]): values larger than the read buffer are reserved from it
//! whole when their request line arrives, or refused as memcached refuses a store it
//! cannot allocate.
//!
//! Two requests turn a connection into a stream: `lru_crawler metadump` (the dump is
//! produced a batch at a time, only while fewer than [`DUMP_LOW`] reply bytes wait,
//! then the connection serves its next requests) and `watch` (the connection is a
//! watcher for good: its input is read and dropped, and the lines queued for it are
//! written as the socket takes them; see [`super::watch`]).

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token, Waker};

use super::binary_exec;
use super::budget::{WorkerMem, OUT_FLOOR, OUT_HIGH};
use super::conn_auth::ConnAuth;
use super::dump::{Dump, DUMP_LOW};
use super::exec::{self, ExecCtx, Flow};
use super::meta_exec;
use super::vlog;
use super::watch::{CloseReason, WatchHandle, WatchHub, CONNEVENTS};
use super::{ConnInfo, Shared};
use crate::config::ProtocolMode;
use crate::protocol::ascii::{self, Parse, Request};
use crate::protocol::binary;
use crate::protocol::meta::MetaKind;
use crate::protocol::text::auth::{parse_auth, AuthParse};
use crate::protocol::text::{self, Limits};
use crate::stats::{bump, Counters};

const RBUF_INITIAL: usize = 16 << 10;
/// Reply bytes one connection may produce, and request bytes it may have read, in
/// one turn before the worker serves the others (besides `-R` requests): a client
/// pulling or pushing large values through a fast socket cannot hold its worker for
/// long.
const TURN_BYTES: usize = 256 << 10;
/// Largest read buffer a connection that has not authenticated may have: room for a
/// binary header with the longest key the header can announce.
const RBUF_PREAUTH_MAX: usize = 24 + 255 + 65_535;
/// Read buffers a worker keeps for reuse.
const POOL_MAX: usize = 64;
/// Log lines a watcher's connection moves from its queue to its reply buffer at once.
const WATCH_OUT: usize = 64 << 10;

/// A worker's connection buffers: spare read buffers that connections borrow while
/// they have input and give back when idle, and the worker's accounting against the
/// server-wide buffer budget (which counts the spare buffers too).
pub struct WorkerBuffers {
    free: Vec<Vec<u8>>,
    /// This worker's share of the buffer budget.
    pub mem: WorkerMem,
}

impl WorkerBuffers {
    /// No spare buffers yet.
    pub fn new(mem: WorkerMem) -> WorkerBuffers {
        WorkerBuffers {
            free: Vec::new(),
            mem,
        }
    }

    fn take(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(b) => {
                // It leaves the pool; the connection counts it from now on.
                let n = self.free.len();
                self.mem
                    .spare_buffers((n + 1) * RBUF_INITIAL, n * RBUF_INITIAL);
                b
            }
            None => vec![0; RBUF_INITIAL],
        }
    }

    fn give(&mut self, buf: Vec<u8>) {
        // Grown buffers (a large value or a long multi-get) are not kept.
        if buf.len() == RBUF_INITIAL && buf.capacity() == RBUF_INITIAL && self.free.len() < POOL_MAX
        {
            let n = self.free.len();
            self.mem
                .spare_buffers(n * RBUF_INITIAL, (n + 1) * RBUF_INITIAL);
            self.free.push(buf);
        }
    }
}

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
    /// A dump waits for the socket to take what it produced.
    WaitWritable,
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
    /// Read and reply buffer capacities this connection has reported to its
    /// worker's accounting.
    bytes: (usize, usize),
    wbuf: Vec<u8>,
    wpos: usize,
    /// End of the replies memcached would already have sent in this batch (it
    /// transmits at once after a binary error reply or a NOOP, and at a `-R`
    /// yield): what a binary connection closed for a bad magic byte still gets.
    flush_mark: usize,
    /// Reply bytes sent during the current turn (`drive`).
    turn_out: usize,
    /// Request bytes read during the current turn.
    turn_in: usize,
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
    /// Replies of earlier requests wait unsent, as memcached's `resp_has_stack`
    /// sees them (a get or `mn` sends what waits before the next request).
    unflushed: bool,
    /// The `lru_crawler metadump` being streamed.
    dump: Option<Dump>,
    /// Set once the connection is a watcher.
    watch: Option<WatchHandle>,
    hub: Arc<WatchHub>,
    /// The worker's waker (a watcher's producers wake the worker with it).
    waker: Arc<Waker>,
    /// For `type=conn_close`.
    close_reason: CloseReason,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if vlog::on() {
            vlog::line('<', self.fd, b"connection closed.");
        }
        if self.hub.wants(CONNEVENTS) {
            self.hub
                .conn_event(&self.info.addr, self.fd, Some(self.close_reason));
        }
    }
}

impl Conn {
    /// Wraps an accepted socket of a worker woken by `waker`.
    pub fn new(stream: Stream, info: Arc<ConnInfo>, shared: &Shared, waker: Arc<Waker>) -> Conn {
        let fd = stream.as_raw_fd();
        if vlog::on() {
            let what: &[u8] = match shared.config.protocol {
                ProtocolMode::Auto => b"new auto-negotiating client connection",
                ProtocolMode::Ascii => b"new ascii client connection.",
                ProtocolMode::Binary => b"new binary client connection.",
            };
            vlog::line('<', fd, what);
        }
        if shared.watch.wants(CONNEVENTS) {
            shared.watch.conn_event(&info.addr, fd, None);
        }
        Conn {
            stream,
            fd,
            info,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            bytes: (0, 0),
            wbuf: Vec::new(),
            wpos: 0,
            flush_mark: 0,
            turn_out: 0,
            turn_in: 0,
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
            unflushed: false,
            dump: None,
            watch: None,
            hub: shared.watch.clone(),
            waker,
            close_reason: CloseReason::Normal,
        }
    }

    /// The connection is a watcher (its worker drives it when woken).
    pub fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    /// What `type=conn_close` will report (idle timeout, shutdown).
    pub fn set_close_reason(&mut self, r: CloseReason) {
        self.close_reason = r;
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
        self.close_reason = CloseReason::Shutdown;
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

    /// Reports a change of this connection's buffer capacities to the worker.
    pub fn account(&mut self, mem: &mut WorkerMem) {
        let now = (self.rbuf.capacity(), self.wbuf.capacity());
        if now.0 != self.bytes.0 {
            mem.read_buffer(self.bytes.0, now.0);
        }
        if now.1 != self.bytes.1 {
            mem.reply_buffer(self.bytes.1, now.1);
        }
        self.bytes = now;
    }

    /// Gives the buffers back to the worker's accounting (the connection closes).
    pub fn release(&mut self, mem: &mut WorkerMem) {
        self.rbuf = Vec::new();
        self.wbuf = Vec::new();
        self.account(mem);
    }

    /// Replies this connection may have waiting now: its floor, plus what the
    /// budget still has room for (beyond everything held, this connection's replies
    /// included), at most [`OUT_HIGH`]. When the budget is spent, every connection is
    /// down to its floor: one that does not read stops, one that reads drains.
    fn out_cap(&self, mem: &WorkerMem) -> usize {
        OUT_FLOOR.saturating_add(mem.room()).min(OUT_HIGH)
    }

    /// Whether this connection may use the budget beyond its floor (not before it
    /// has authenticated).
    fn trusted(&self) -> bool {
        !self.auth.ascii_pending() && self.auth.gate() != binary::SaslGate::Unauthenticated
    }

    /// Reads, serves and writes until the socket would block, `-R` requests were
    /// served, or the client stops reading its replies.
    pub fn drive(
        &mut self,
        shared: &Shared,
        counters: &Counters,
        bufs: &mut WorkerBuffers,
    ) -> Status {
        let status = self.drive_batch(shared, counters, bufs);
        self.account(&mut bufs.mem);
        status
    }

    fn drive_batch(
        &mut self,
        shared: &Shared,
        counters: &Counters,
        bufs: &mut WorkerBuffers,
    ) -> Status {
        let mut served = 0usize;
        self.turn_out = 0;
        self.turn_in = 0;
        if self.watch.is_some() {
            return self.drive_watch(counters);
        }
        loop {
            // Replies are written when the batch ends (below); here only when too
            // many wait, to make room.
            let cap = self.out_cap(&bufs.mem);
            if self.wbuf.len() > cap && !self.write_out(counters) {
                return Status::Close;
            }
            if self.wbuf.len() > cap {
                if cap < OUT_HIGH {
                    // The budget, not the connection's own cap, stopped it: while it
                    // waits it holds what it must send, not a doubled capacity.
                    bufs.mem
                        .global()
                        .output_stalls
                        .fetch_add(1, Ordering::Relaxed);
                    self.wbuf.shrink_to_fit();
                }
                self.set_state(ST_MWRITE);
                return Status::Idle; // the writable event resumes us
            }
            match self.process(shared, counters, &mut served, bufs) {
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
                    // Small replies stay buffered: the batch leaves in one write once
                    // the input is drained. A turn's worth goes now, so large replies
                    // flow while others get their turn.
                    if self.wbuf.len() >= TURN_BYTES && !self.write_out(counters) {
                        return Status::Close;
                    }
                    bump(&counters.conn_yields, 1);
                    return Status::Pending;
                }
                Stop::Blocked => continue,
                Stop::WaitWritable => {
                    self.set_state(ST_MWRITE);
                    return Status::Idle; // the writable event resumes the dump
                }
                Stop::NeedInput => {}
            }
            if self.drained {
                // The last read emptied the socket: send the batch's replies in one
                // write and wait for the next readiness edge.
                self.drained = false;
                if !self.write_out(counters) {
                    return Status::Close;
                }
                self.shrink_when_idle(bufs);
                return Status::Idle;
            }
            if self.turn_in >= TURN_BYTES {
                // A client streaming a large value (or a flood) gets its turn and
                // waits for the next one: the socket is not drained, so come back.
                bump(&counters.conn_yields, 1);
                return Status::Pending;
            }
            match self.read_some(shared, counters, bufs) {
                ReadResult::Data { drained } => self.drained = drained,
                ReadResult::WouldBlock => {
                    if !self.write_out(counters) {
                        return Status::Close;
                    }
                    self.shrink_when_idle(bufs);
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
        bufs: &mut WorkerBuffers,
    ) -> ReadResult {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.rbuf.is_empty() {
            self.rbuf = bufs.take();
        }
        if self.rend == self.rbuf.len() {
            if self.rpos > 0 {
                self.compact();
            } else {
                // A request line longer than the buffer (a huge multi-get; values
                // were given their room when their line arrived): grow while the
                // budget allows.
                let cap = if self.trusted() {
                    max_request(shared)
                } else {
                    RBUF_PREAUTH_MAX
                };
                let new_len = (self.rbuf.len() * 2).min(cap);
                let more = new_len.saturating_sub(self.rbuf.len());
                if more == 0 || more > bufs.mem.room() {
                    let global = bufs.mem.global();
                    global.closed_lines.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "conn {}: request line longer than {} bytes and no buffer budget \
                         left ({} of {} bytes in use); closing",
                        self.fd,
                        self.rbuf.len(),
                        global.used(),
                        global.limit()
                    );
                    return ReadResult::Closed;
                }
                self.rbuf.reserve_exact(more);
                self.rbuf.resize(new_len, 0);
                self.account(&mut bufs.mem);
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
                    self.turn_in += n;
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
                Err(_) => {
                    self.close_reason = CloseReason::Error;
                    return ReadResult::Closed;
                }
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
                    self.turn_out += n;
                    bump(&counters.bytes_written, n as u64);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.drop_sent();
                    return true;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close_reason = CloseReason::Error;
                    return false;
                }
            }
        }
        self.wbuf.clear();
        self.unflushed = false;
        self.wpos = 0;
        self.flush_mark = 0;
        self.ascii_auth_reply_at = None;
        true
    }

    /// Removes the bytes already sent from the front of the reply buffer (after a
    /// partial write), so what is buffered is only what waits.
    fn drop_sent(&mut self) {
        let sent = self.wpos;
        if sent == 0 {
            return;
        }
        self.wbuf.drain(..sent);
        self.wpos = 0;
        self.flush_mark = self.flush_mark.saturating_sub(sent);
        self.ascii_auth_reply_at = self.ascii_auth_reply_at.and_then(|at| at.checked_sub(sent));
    }

    /// Sends the replies up to `flush_mark` only (the rest is dropped with the
    /// connection), as memcached does when a binary connection breaks.
    fn write_flushed(&mut self, counters: &Counters) {
        let mark = self.flush_mark.clamp(self.wpos, self.wbuf.len());
        self.wbuf.truncate(mark);
        self.write_out(counters);
    }

    /// Moves unprocessed input to the front of the read buffer.
    fn compact(&mut self) {
        self.rbuf.copy_within(self.rpos..self.rend, 0);
        self.rend -= self.rpos;
        self.rpos = 0;
    }

    fn shrink_when_idle(&mut self, bufs: &mut WorkerBuffers) {
        if self.rpos == self.rend && !self.rbuf.is_empty() {
            // Nothing buffered: an idle connection holds no read buffer (memcached
            // does the same), so thousands of idle clients cost little memory.
            bufs.give(std::mem::take(&mut self.rbuf));
            self.rpos = 0;
            self.rend = 0;
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > OUT_FLOOR {
            // A reply buffer that grew for large replies goes back to the budget.
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
    fn process(
        &mut self,
        shared: &Shared,
        counters: &Counters,
        served: &mut usize,
        bufs: &mut WorkerBuffers,
    ) -> Stop {
        if self.closing {
            return Stop::Close { flush: true };
        }
        let cfg = &shared.config;
        let mut limits = Limits {
            item_size_max: cfg.item_size_max,
            cas_enabled: !cfg.disable_cas,
            buffer_room: 0,
        };
        let mut touched = false;
        // Set when a value could not get its room from the budget: the request is
        // parsed again with only the present buffer as room, which refuses it.
        let mut no_room = false;
        loop {
            if self.dump.is_some() {
                if let Some(stop) = self.pump_dump(shared, counters) {
                    return stop;
                }
            }
            let held = self.rbuf.len().max(RBUF_INITIAL);
            limits.buffer_room = if std::mem::take(&mut no_room) || !self.trusted() {
                held
            } else {
                held.saturating_add(bufs.mem.room())
                    .min(max_request(shared))
            };
            let out_cap = self.out_cap(&bufs.mem);
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
            if self.wbuf.len() > out_cap {
                return Stop::Blocked;
            }
            // -R requests, or a turn's worth of reply bytes: let the others go first.
            if *served >= cfg.reqs_per_event
                || (*served > 0 && self.turn_out + self.wbuf.len() > TURN_BYTES)
            {
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
                    if cfg.protocol == ProtocolMode::Auto && vlog::on() {
                        let name = if p == Proto::Binary {
                            "binary"
                        } else {
                            "ascii"
                        };
                        vlog::raw(&format!("{}: Client using the {name} protocol", self.fd));
                    }
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
                    binary::Parse::Partial(frame) => {
                        *served -= 1;
                        if self.make_room(frame, bufs) {
                            return Stop::NeedInput;
                        }
                        no_room = true;
                        continue;
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
                        if status == binary::Status::Enomem {
                            bufs.mem
                                .global()
                                .refused_values
                                .fetch_add(1, Ordering::Relaxed);
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
            let parsed = ascii::parse(input, &limits);
            if vlog::on() && matches!(parsed, Parse::Request(..) | Parse::Error { .. }) {
                vlog_request(self.fd, input);
            }
            match parsed {
                Parse::Incomplete => {
                    *served -= 1;
                    return Stop::NeedInput;
                }
                Parse::Partial(frame) => {
                    *served -= 1;
                    if self.make_room(frame, bufs) {
                        return Stop::NeedInput;
                    }
                    no_room = true;
                }
                Parse::Close => return Stop::Close { flush: true },
                Parse::Error {
                    reply,
                    consumed,
                    swallow,
                    unlink,
                    refused,
                } => {
                    if swallow > 0 {
                        self.after_swallow = reply;
                    } else if let Some(r) = reply {
                        if vlog::on() {
                            vlog::line('>', self.fd, r.as_bytes());
                        }
                        self.wbuf.extend_from_slice(r.as_bytes());
                        self.wbuf.extend_from_slice(b"\r\n");
                        self.unflushed = true;
                    }
                    if let Some(key) = unlink.as_ref().and_then(|k| k.key()) {
                        if refused == Some(text::StoreRefusal::TooLarge)
                            && shared.watch.wants(super::watch::MUTATIONS)
                        {
                            shared.watch.item_store(
                                &key,
                                super::watch::StoreStatus::TooLarge,
                                "set",
                                0,
                                0,
                                self.fd,
                                0,
                            );
                        }
                        shared.store.unlink(&key);
                    }
                    match refused {
                        Some(text::StoreRefusal::NoMemory) => {
                            bump(&counters.store_no_memory, 1);
                            bufs.mem
                                .global()
                                .refused_values
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        Some(text::StoreRefusal::TooLarge) => bump(&counters.store_too_large, 1),
                        None => {}
                    }
                    self.rpos += consumed;
                    self.swallow = swallow;
                }
                Parse::Request(req, used) => {
                    let flushes = match &req {
                        Request::Text(cmd) => {
                            matches!(cmd, text::Command::Get { .. } | text::Command::Gat { .. })
                        }
                        Request::Meta(m) => m.kind == MetaKind::Noop,
                    };
                    let mut ctx = ExecCtx {
                        skip: std::mem::take(&mut self.skip_keys),
                        out_cap: out_cap.min(TURN_BYTES),
                        fd: self.fd,
                        pipelined: self.unflushed,
                        dump: None,
                        watch: None,
                    };
                    let before = self.wbuf.len();
                    let wbuf = &mut self.wbuf;
                    let run = |ctx: &mut ExecCtx| match req {
                        Request::Text(cmd) => exec::execute(cmd, shared, counters, wbuf, ctx),
                        Request::Meta(m) => meta_exec::execute(&m, shared, counters, wbuf),
                    };
                    let flow = if vlog::on() {
                        vlog::with_conn(self.fd, || run(&mut ctx))
                    } else {
                        run(&mut ctx)
                    };
                    if flushes {
                        self.unflushed = false;
                    } else if self.wbuf.len() > before {
                        self.unflushed = true;
                    }
                    if let Some(d) = ctx.dump.take() {
                        self.dump = Some(d);
                    }
                    if let Some(flags) = ctx.watch.take() {
                        self.rpos += used;
                        return self.start_watch(flags);
                    }
                    match flow {
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

/// Logs a text request line for `-vv` (`<fd line`, without its `\r\n`).
fn vlog_request(fd: RawFd, input: &[u8]) {
    let end = input
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .unwrap_or(input.len());
    let mut line = &input[..end];
    if line.len() > 1 && line.ends_with(b"\r") {
        line = &line[..line.len() - 1];
    }
    vlog::line('<', fd, line);
}

impl Conn {
    /// Produces the dump being streamed while few reply bytes wait; `None` once it
    /// is complete (the next requests are served), else why to stop now.
    fn pump_dump(&mut self, shared: &Shared, counters: &Counters) -> Option<Stop> {
        let started = shared.clock.process_started();
        let cas_on = !shared.config.disable_cas;
        loop {
            if self.wbuf.len() >= DUMP_LOW {
                if !self.write_out(counters) {
                    return Some(Stop::Close { flush: false });
                }
                if self.wbuf.len() >= DUMP_LOW {
                    return Some(Stop::WaitWritable);
                }
            }
            if self.turn_out >= TURN_BYTES {
                // Others get their turn; the worker comes back.
                return Some(Stop::Yield);
            }
            let d = self.dump.as_mut()?;
            if d.step(&shared.store, started, cas_on, &mut self.wbuf) {
                self.dump = None;
                self.unflushed = true;
                return None;
            }
        }
    }

    /// `watch` accepted: registers the watcher (or says why not). Input after the
    /// request is dropped, as memcached never reads a watcher's requests.
    fn start_watch(&mut self, flags: u16) -> Stop {
        match self.hub.add(flags, self.waker.clone()) {
            Ok(w) => {
                self.wbuf.extend_from_slice(b"OK\r\n");
                self.watch = Some(WatchHandle::new(self.hub.clone(), w));
                self.rpos = self.rend;
                self.swallow = 0;
                Stop::Yield
            }
            Err(_) => {
                let r = "WATCHER_TOO_MANY log watcher limit reached";
                vlog::reply(r, false);
                self.wbuf.extend_from_slice(r.as_bytes());
                self.wbuf.extend_from_slice(b"\r\n");
                Stop::Blocked
            }
        }
    }

    /// A watcher's turn: drops what the client sends (noticing the end of the
    /// stream), then writes queued lines while the socket takes them.
    fn drive_watch(&mut self, counters: &Counters) -> Status {
        let mut scratch = [0u8; 4096];
        let mut read = 0usize;
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Status::Close,
                Ok(n) => {
                    read += n;
                    bump(&counters.bytes_read, n as u64);
                    if read >= TURN_BYTES {
                        return Status::Pending;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close_reason = CloseReason::Error;
                    return Status::Close;
                }
            }
        }
        self.rbuf = Vec::new();
        self.rpos = 0;
        self.rend = 0;
        // What the socket did not take yet goes first; while it waits the queue is
        // left alone (producers then need not wake this worker).
        if !self.write_out(counters) {
            return Status::Close;
        }
        if !self.wbuf.is_empty() {
            self.set_state(ST_MWRITE);
            return Status::Idle;
        }
        let Some(w) = self.watch.as_ref().map(|h| h.watcher.clone()) else {
            return Status::Idle;
        };
        loop {
            let empty = w.drain_into(&mut self.wbuf, WATCH_OUT);
            if !self.write_out(counters) {
                return Status::Close;
            }
            if !self.wbuf.is_empty() {
                self.set_state(ST_MWRITE);
                return Status::Idle;
            }
            if self.wbuf.capacity() > WATCH_OUT * 2 {
                self.wbuf = Vec::new();
            }
            if empty {
                self.set_state(ST_WAITING);
                return Status::Idle;
            }
            if self.turn_out >= TURN_BYTES {
                return Status::Pending;
            }
        }
    }
}

impl Conn {
    /// Makes the read buffer able to hold a frame of `frame` bytes starting at the
    /// unprocessed input: by moving that input to the front, or by growing the buffer
    /// with a reservation from the budget. False when the budget cannot cover it.
    fn make_room(&mut self, frame: usize, bufs: &mut WorkerBuffers) -> bool {
        if frame <= self.rbuf.len() - self.rpos {
            return true;
        }
        if frame <= self.rbuf.len() {
            self.compact();
            return true;
        }
        let more = frame - self.rbuf.len();
        if !self.trusted() || !bufs.mem.reserve(more) {
            return false;
        }
        self.compact();
        self.rbuf.reserve_exact(more);
        self.rbuf.resize(frame, 0);
        // The growth settles against the reservation.
        self.account(&mut bufs.mem);
        true
    }
}

/// Largest buffered request before a connection is dropped: one item plus room for a
/// very long multi-get line.
fn max_request(shared: &Shared) -> usize {
    shared.config.item_size_max + (8 << 20)
}
