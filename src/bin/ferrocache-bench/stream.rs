//! The connection types the load engine drives: an open blocking connection
//! ([`Established`]: plain TCP or TCP after a TLS handshake) and the non-blocking byte
//! stream the engine reads and writes ([`Stream`]), implemented for plain TCP here and
//! for TLS in `tls.rs`.

use mio::net::TcpStream;
use std::io::{Read, Write};

/// An open connection, blocking: plain TCP, or TCP with a completed TLS handshake.
pub enum Established {
    /// Plain TCP.
    Tcp(std::net::TcpStream),
    /// TLS over TCP.
    Tls(std::net::TcpStream, Box<rustls::ClientConnection>),
}

/// A busy connection's byte stream as the engine drives it: non-blocking, registered
/// with a `mio` poller (edge-triggered).
pub trait Stream: mio::event::Source + Sized {
    /// The non-blocking form of an open connection.
    fn from_established(e: Established) -> Result<Self, String>;
    /// Reads into `buf` (not empty). `Ok((0, _))` = the peer closed; `Ok((n, more))`:
    /// `more` = call again before waiting for readiness (false once the socket is
    /// known to be drained); `Err(WouldBlock)` = nothing to read now.
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, bool)>;
    /// Writes (or takes for sending) some of `buf`.
    fn write_some(&mut self, buf: &[u8]) -> std::io::Result<usize>;
    /// Output taken by `write_some` but not yet on the socket.
    fn pending_output(&self) -> bool;
    /// Sends what `pending_output` holds, as far as the socket takes it.
    fn flush_pending(&mut self) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn from_established(e: Established) -> Result<TcpStream, String> {
        match e {
            Established::Tcp(s) => {
                s.set_nonblocking(true).map_err(|e| e.to_string())?;
                Ok(TcpStream::from_std(s))
            }
            Established::Tls(..) => Err("a TLS connection in a plain TCP run".into()),
        }
    }

    #[inline]
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
        let n = self.read(buf)?;
        // A short read drained the socket; epoll (edge-triggered) reports new data.
        Ok((n, n == buf.len()))
    }

    #[inline]
    fn write_some(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write(buf)
    }

    #[inline]
    fn pending_output(&self) -> bool {
        false
    }

    #[inline]
    fn flush_pending(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
