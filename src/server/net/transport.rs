//! The byte pipe under a connection: a TCP or unix socket, and the two rules that
//! depend on what the pipe is.
//!
//! ```text
//!   Conn ── read(buf) ──▶ Transport ──▶ socket        Session never sees a socket:
//!        ◀─ Read::Data(n) / WouldBlock / Closed         it gets bytes and gives bytes
//!        ── write(bytes) ▶           ──▶ socket
//!        ◀─ Write::Sent(n) / WouldBlock / Failed
//! ```
//!
//! - **The drain rule**: with edge-triggered polling a connection may stop reading
//!   only once the pipe has nothing more, or no new edge would come for what is left.
//!   For a plain socket a read shorter than the buffer offered means its receive
//!   queue is empty (saving the read that would return `EAGAIN`), unless the kernel
//!   already reported the end of the stream, which must itself still be read.
//!   Under TLS the socket's bytes are records that rustls decrypts into its own
//!   buffer: the pipe is drained only when that buffer is empty *and* the socket
//!   said `EAGAIN` or its last read was short (rustls' read, seen through
//!   `SocketIo`). [`Transport::drained`] says when the rule holds.
//! - **Buffered output**: a plain socket takes bytes or refuses them; nothing stays
//!   inside the transport. Under TLS, plaintext given to [`Transport::write`] becomes
//!   records rustls holds until the socket takes them
//!   ([`Transport::has_buffered_output`]; [`Transport::flush`] pushes them on).
//!
//! ```text
//!   TLS:  socket ─read_tls─▶ rustls ─process─▶ plaintext ─reader()─▶ read(buf)
//!         socket ◀write_tls─ rustls ◀─encrypt── writer() ◀────────── write(bytes)
//!         (the handshake runs inside the same calls: a session never sees it)
//! ```

use std::io::{self, ErrorKind, Read as _, Write as _};
use std::os::fd::{AsRawFd, RawFd};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};

/// A client socket: TCP or unix.
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
}

/// What one read gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `n` bytes (never 0).
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// End of stream.
    Closed,
    /// The socket failed (reset, ...).
    Failed,
}

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The pipe took `n` bytes (never 0).
    Sent(usize),
    /// The pipe is full: wait for the writable event.
    WouldBlock,
    /// The socket failed or took nothing.
    Failed,
}

/// A connection's pipe and what its reads have told about it.
pub struct Transport {
    socket: Stream,
    /// The TLS layer of a `-Z` listener's connection.
    tls: Option<Box<rustls::ServerConnection>>,
    /// A TLS record or handshake message was bad (the handshake failed when
    /// `handshake_failed`).
    tls_failed: bool,
    handshake_failed: bool,
    /// The last socket read under TLS returned less than rustls offered: the
    /// receive queue was empty then (the plain short-read rule, one layer down).
    tls_read_short: bool,
    /// The last read emptied the pipe (see the drain rule above).
    drained: bool,
    /// The kernel has reported the end of the stream: a short read no longer means
    /// drained (the end of stream still has to be read).
    eof_signalled: bool,
}

impl Transport {
    /// Wraps an accepted socket.
    pub fn new(socket: Stream) -> Transport {
        Transport {
            socket,
            tls: None,
            tls_failed: false,
            handshake_failed: false,
            tls_read_short: false,
            drained: false,
            eof_signalled: false,
        }
    }

    /// Wraps an accepted socket of a TLS listener; the handshake runs in the first
    /// reads and writes.
    pub fn tls(socket: Stream, conn: rustls::ServerConnection) -> Transport {
        let mut t = Transport::new(socket);
        t.tls = Some(Box::new(conn));
        t
    }

    /// Whether this is a TLS connection whose handshake has not finished.
    pub fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Whether the last failure was a TLS handshake that did not complete (bad
    /// ClientHello, no shared version or suite, refused client certificate).
    pub fn handshake_failed(&self) -> bool {
        self.handshake_failed
    }

    /// A readiness event arrived: new bytes may be waiting even if an earlier read
    /// drained the pipe. `read_closed`: the event also reports the end of the stream
    /// (EPOLLRDHUP/EPOLLHUP) or an error; no further edge will come for it.
    pub fn readiness(&mut self, read_closed: bool) {
        self.drained = false;
        self.eof_signalled |= read_closed;
    }

    /// Whether the pipe has nothing more to read until the next readiness event.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Starts over after a batch that ended because the pipe was drained.
    pub fn clear_drained(&mut self) {
        self.drained = false;
    }

    /// Whether bytes already given to [`Transport::write`] still wait inside the
    /// transport (never, for a plain socket).
    pub fn has_buffered_output(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Reads once into `buf` (retrying an interrupted call) and applies the drain rule.
    pub fn read(&mut self, buf: &mut [u8]) -> Read {
        if self.tls.is_some() {
            return self.read_tls(buf);
        }
        loop {
            let r = match &mut self.socket {
                Stream::Tcp(s) => s.read(buf),
                Stream::Unix(s) => s.read(buf),
            };
            return match r {
                Ok(0) => Read::Closed,
                Ok(n) => {
                    // A short read emptied the receive queue; anything arriving
                    // later raises a new edge.
                    self.drained = n < buf.len() && !self.eof_signalled;
                    Read::Data(n)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.drained = true;
                    Read::WouldBlock
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => Read::Failed,
            };
        }
    }

    /// Writes once from `bytes` (retrying an interrupted call).
    pub fn write(&mut self, bytes: &[u8]) -> Write {
        if self.tls.is_some() {
            return self.write_tls(bytes);
        }
        loop {
            let r = match &mut self.socket {
                Stream::Tcp(s) => s.write(bytes),
                Stream::Unix(s) => s.write(bytes),
            };
            return match r {
                Ok(0) => Write::Failed,
                Ok(n) => Write::Sent(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Write::WouldBlock,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => Write::Failed,
            };
        }
    }
}

impl Transport {
    /// Plaintext from the TLS layer: what rustls has decrypted, else records read
    /// from the socket (which may only advance the handshake).
    fn read_tls(&mut self, buf: &mut [u8]) -> Read {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Read::Failed;
        };
        loop {
            match std::io::Read::read(&mut tls.reader(), buf) {
                Ok(0) if !buf.is_empty() => return Read::Closed, // close_notify
                Ok(n) => {
                    // Drained when rustls has nothing decrypted left (it filled less
                    // than `buf`) and the last socket read was short; else read on
                    // until the socket says EAGAIN.
                    self.drained = n < buf.len() && self.tls_read_short && !self.eof_signalled;
                    return Read::Data(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The peer closed without close_notify.
                Err(_) => return Read::Closed,
            }
            let mut io = SocketIo::new(&mut self.socket);
            let got = tls.read_tls(&mut io);
            self.tls_read_short = io.short;
            match got {
                Ok(0) => return Read::Closed,
                Ok(_) => {
                    let handshaking = tls.is_handshaking();
                    if let Err(e) = tls.process_new_packets() {
                        if handshaking && crate::tls::is_certificate_failure(&e) {
                            log::info!("{}", crate::tls::handshake_failure(&e));
                        } else {
                            log::debug!("TLS error: {e}");
                        }
                        self.tls_failed = true;
                        self.handshake_failed = handshaking;
                        // The alert rustls queued for the peer, if the socket takes it.
                        let _ = flush_tls(tls, &mut self.socket);
                        return Read::Failed;
                    }
                    // Handshake messages (and key updates) go out at once.
                    if tls.wants_write() && flush_tls(tls, &mut self.socket) == Write::Failed {
                        return Read::Failed;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.drained = true;
                    return Read::WouldBlock;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Read::Failed,
            }
        }
    }

    /// Hands plaintext to the TLS layer and pushes records to the socket.
    fn write_tls(&mut self, bytes: &[u8]) -> Write {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Write::Failed;
        };
        loop {
            let taken = match std::io::Write::write(&mut tls.writer(), bytes) {
                Ok(n) => n,
                Err(_) => return Write::Failed,
            };
            let flushed = flush_tls(tls, &mut self.socket);
            if flushed == Write::Failed {
                return Write::Failed;
            }
            if taken > 0 {
                return Write::Sent(taken);
            }
            if flushed == Write::WouldBlock || bytes.is_empty() {
                return Write::WouldBlock;
            }
        }
    }

    /// Pushes records the TLS layer holds to the socket: `Sent(0)` when all went,
    /// `WouldBlock` when the socket is full (the writable event comes back).
    pub fn flush(&mut self) -> Write {
        match self.tls.as_deref_mut() {
            Some(tls) => flush_tls(tls, &mut self.socket),
            None => Write::Sent(0),
        }
    }
}

/// Writes the TLS layer's records until none is left or the socket is full.
fn flush_tls(tls: &mut rustls::ServerConnection, socket: &mut Stream) -> Write {
    while tls.wants_write() {
        match tls.write_tls(&mut SocketIo::new(socket)) {
            Ok(0) => return Write::Failed,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Write::WouldBlock,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Write::Failed,
        }
    }
    Write::Sent(0)
}

/// The socket as `std::io::Read + Write`, for rustls; notes whether a read was short.
struct SocketIo<'a> {
    stream: &'a mut Stream,
    /// The last read returned fewer bytes than offered.
    short: bool,
}

impl<'a> SocketIo<'a> {
    fn new(stream: &'a mut Stream) -> SocketIo<'a> {
        SocketIo {
            stream,
            short: false,
        }
    }
}

impl io::Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.stream {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }?;
        self.short = n < buf.len();
        Ok(n)
    }
}

impl io::Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stream {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self.stream {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // A TLS peer learns the stream ended on purpose (best effort, no waiting).
        if let Some(tls) = self.tls.as_deref_mut() {
            if !self.tls_failed && !tls.is_handshaking() {
                tls.send_close_notify();
                let _ = flush_tls(tls, &mut self.socket);
            }
        }
    }
}

impl Source for Transport {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match &mut self.socket {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match &mut self.socket {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match &mut self.socket {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        match &self.socket {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}
