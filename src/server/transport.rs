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
//!   [`Transport::drained`] says when that holds. (A TLS transport, which decrypts
//!   whole records into its own buffer, will answer from that buffer instead.)
//! - **Buffered output**: a plain socket takes bytes or refuses them; nothing stays
//!   inside the transport, so [`Transport::has_buffered_output`] is false. (A TLS
//!   transport holds encrypted records the socket has not taken yet.)

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
            drained: false,
            eof_signalled: false,
        }
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
        false
    }

    /// Reads once into `buf` (retrying an interrupted call) and applies the drain rule.
    pub fn read(&mut self, buf: &mut [u8]) -> Read {
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
