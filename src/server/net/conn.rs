//! One client connection: a [`Transport`] and a [`Session`], and the loop that moves
//! bytes between them.
//!
//! ```text
//!   readiness ─▶ drive: ┌─ process: session serves what is buffered ◀─────────┐
//!                       │  drained?  → write the batch's replies, idle         │
//!                       │  turn used → come back after the others (Pending)    │
//!                       └─ read: transport → session.input() ──────────────────┘
//! ```
//! `drive` alternates processing and reading until the transport has nothing more
//! (edge-triggered), then writes every reply of the batch with one write. It stops
//! early — without reading more — when the session's turn is used up (`-R` requests
//! or [`TURN_BYTES`]; the worker comes back after other connections had their turn,
//! and small replies wait so the batch still leaves in one write) or when the replies
//! waiting for a client that does not read use up the connection's share of the
//! buffer budget (the writable event brings it back). A watcher (`watch`) only has
//! its input dropped and its queued log lines written.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use mio::Waker;

use crate::config::ProtocolMode;
use crate::server::admin::watch::{CloseReason, WatchHub, CONNEVENTS};
use crate::server::budget::{WorkerBuffers, OUT_HIGH};
use crate::server::net::transport::{Read, Transport, Write};
use crate::server::session::{Ctx, Session, Stop, ST_MWRITE, ST_WAITING, TURN_BYTES};
use crate::server::shared::{ConnInfo, Shared};
use crate::server::stats::vlog;
use crate::stats::{bump, Counters};

/// What the worker should do with a connection after `drive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the socket (readable or writable).
    Idle,
    /// Stopped with its turn used up and input left: drive again soon.
    Pending,
    /// A request waits for the store to give memory back (a large value that can be
    /// neither copied nor streamed now): drive again when
    /// [`crate::store::Store::released`] changes.
    Wait,
    /// Close it now.
    Close,
}

/// One client connection.
pub struct Conn {
    /// The pipe.
    pub transport: Transport,
    /// The protocol state.
    session: Session,
    /// File descriptor (connection id in `stats conns`).
    pub fd: RawFd,
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
                .conn_event(&self.session.info().addr, self.fd, Some(self.close_reason));
        }
    }
}

impl Conn {
    /// Wraps an accepted socket of a worker woken by `waker`.
    pub fn new(
        transport: Transport,
        info: Arc<ConnInfo>,
        shared: &Shared,
        waker: Arc<Waker>,
    ) -> Conn {
        let fd = transport.as_raw_fd();
        if vlog::on() {
            let what: &[u8] = match shared.config.protocol {
                ProtocolMode::Auto => b"new auto-negotiating client connection",
                ProtocolMode::Ascii => b"new ascii client connection.",
                ProtocolMode::Binary => b"new binary client connection.",
            };
            vlog::line('<', fd, what);
        }
        if shared.observers.watch.wants(CONNEVENTS) {
            shared.observers.watch.conn_event(&info.addr, fd, None);
        }
        Conn {
            transport,
            session: Session::new(fd, info, shared),
            fd,
            hub: shared.observers.watch.clone(),
            waker,
            close_reason: CloseReason::Normal,
        }
    }

    /// The connection is a watcher (its worker drives it when woken).
    pub fn is_watching(&self) -> bool {
        self.session.is_watching()
    }

    /// A request waits for a queued password check (its worker drives it when
    /// woken).
    pub fn is_waiting(&self) -> bool {
        self.session.is_waiting()
    }

    /// What `type=conn_close` will report (idle timeout, shutdown).
    pub fn set_close_reason(&mut self, r: CloseReason) {
        self.close_reason = r;
    }

    /// Seconds-relative time of the last request.
    pub fn last_cmd(&self) -> u32 {
        self.session.info().last_cmd.load(Ordering::Relaxed)
    }

    /// A readiness event arrived (see [`Transport::readiness`]).
    pub fn readiness(&mut self, read_closed: bool) {
        self.transport.readiness(read_closed);
    }

    /// At shutdown: tries, for a short bounded time, to send what is buffered.
    pub fn finish(&mut self, counters: &Counters) {
        self.close_reason = CloseReason::Shutdown;
        for _ in 0..100 {
            let waiting = self.session.pending_output() > 0 || self.transport.has_buffered_output();
            if !waiting || !self.write_out(counters) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Gives the buffers back to the worker's accounting (the connection closes).
    pub fn release(&mut self, bufs: &mut WorkerBuffers) {
        self.session.release(&mut bufs.mem);
    }

    /// Reads, serves and writes until the transport would block, the turn is used
    /// up, or the client stops reading its replies.
    pub fn drive(
        &mut self,
        shared: &Shared,
        counters: &Counters,
        bufs: &mut WorkerBuffers,
    ) -> Status {
        self.session.begin_turn();
        let status = if self.session.is_watching() {
            self.drive_watch(counters)
        } else {
            let waker = self.waker.clone();
            let mut ctx = Ctx {
                shared,
                counters,
                bufs,
                waker: &waker,
                tap: None,
            };
            self.drive_batch(&mut ctx)
        };
        self.session.account(&mut bufs.mem);
        status
    }

    fn drive_batch(&mut self, ctx: &mut Ctx<'_>) -> Status {
        let counters = ctx.counters;
        loop {
            // Replies are written when the batch ends (below); here only when too
            // many wait, to make room.
            let cap = self.session.out_cap(&ctx.bufs.mem);
            if self.session.pending_output() > cap && !self.write_out(counters) {
                return Status::Close;
            }
            if self.session.pending_output() > cap {
                if cap < OUT_HIGH {
                    // The budget, not the connection's own cap, stopped it.
                    ctx.bufs
                        .mem
                        .global()
                        .output_stalls
                        .fetch_add(1, Ordering::Relaxed);
                    self.session.shrink_output();
                }
                self.session.set_state(ST_MWRITE);
                return Status::Idle; // the writable event resumes us
            }
            match self.session.process(ctx) {
                Stop::Close { flush } => {
                    if !flush {
                        self.session.discard_unflushed();
                    }
                    self.write_out(counters);
                    return Status::Close;
                }
                Stop::Yield => {
                    // Small replies stay buffered: the batch leaves in one write once
                    // the input is drained. A turn's worth goes now, so large replies
                    // flow while others get their turn.
                    if self.session.pending_output() >= TURN_BYTES && !self.write_out(counters) {
                        return Status::Close;
                    }
                    bump(&counters.conn_yields, 1);
                    return Status::Pending;
                }
                Stop::Blocked => continue,
                Stop::Wait => {
                    if !self.write_out(counters) {
                        return Status::Close;
                    }
                    self.session.set_state(ST_MWRITE);
                    return Status::Wait;
                }
                Stop::Waiting => {
                    // A password check is queued: send what earlier requests
                    // produced; the worker drives us again when the answer is in.
                    if !self.write_out(counters) {
                        return Status::Close;
                    }
                    return Status::Idle;
                }
                Stop::WaitWritable => {
                    if !self.write_out(counters) {
                        return Status::Close;
                    }
                    if self.session.pending_output() > 0 {
                        self.session.set_state(ST_MWRITE);
                        return Status::Idle; // the writable event resumes the dump
                    }
                    continue;
                }
                Stop::NeedInput => {}
            }
            if self.transport.drained() {
                // The last read emptied the pipe: send the batch's replies in one
                // write and wait for the next readiness edge.
                self.transport.clear_drained();
                if !self.write_out(counters) {
                    return Status::Close;
                }
                self.session.idle(ctx.bufs);
                return Status::Idle;
            }
            if self.session.turn_in() >= TURN_BYTES {
                // A client streaming a large value (or a flood) gets its turn and
                // waits for the next one: the pipe is not drained, so come back.
                bump(&counters.conn_yields, 1);
                return Status::Pending;
            }
            let Some(room) = self.session.input(ctx) else {
                self.write_out(counters);
                return Status::Close;
            };
            match self.transport.read(room) {
                Read::Data(n) => {
                    self.session.commit_input(n);
                    bump(&counters.bytes_read, n as u64);
                }
                Read::WouldBlock => {
                    if !self.write_out(counters) {
                        return Status::Close;
                    }
                    self.session.idle(ctx.bufs);
                    return Status::Idle;
                }
                Read::Closed => {
                    if self.transport.is_handshaking() {
                        // As memcached: a peer gone before the handshake ended.
                        count_handshake_error(ctx.shared);
                    }
                    // The peer closed: send what we have, then close.
                    self.write_out(counters);
                    return Status::Close;
                }
                Read::Failed => {
                    self.close_reason = CloseReason::Error;
                    if self.transport.handshake_failed() || self.transport.is_handshaking() {
                        count_handshake_error(ctx.shared);
                    }
                    self.write_out(counters);
                    return Status::Close;
                }
            }
        }
    }

    /// Writes buffered replies until done or the transport would block. False on
    /// error.
    fn write_out(&mut self, counters: &Counters) -> bool {
        while self.session.pending_output() > 0 {
            match self.transport.write(self.session.output()) {
                Write::Sent(n) => {
                    self.session.commit_output(n);
                    bump(&counters.bytes_written, n as u64);
                }
                Write::WouldBlock => return true,
                Write::Failed => {
                    self.close_reason = CloseReason::Error;
                    return false;
                }
            }
        }
        if self.transport.has_buffered_output() && self.transport.flush() == Write::Failed {
            self.close_reason = CloseReason::Error;
            return false;
        }
        true
    }

    /// A watcher's turn: drops what the client sends (noticing the end of the
    /// stream), then writes queued lines while the transport takes them.
    fn drive_watch(&mut self, counters: &Counters) -> Status {
        let mut scratch = [0u8; 4096];
        let mut read = 0usize;
        loop {
            match self.transport.read(&mut scratch) {
                Read::Data(n) => {
                    read += n;
                    bump(&counters.bytes_read, n as u64);
                    if read >= TURN_BYTES {
                        return Status::Pending;
                    }
                }
                Read::WouldBlock => break,
                Read::Closed => return Status::Close,
                Read::Failed => {
                    self.close_reason = CloseReason::Error;
                    return Status::Close;
                }
            }
        }
        self.session.drop_input();
        // What the transport did not take yet goes first; while it waits the queue
        // is left alone (producers then need not wake this worker).
        if !self.write_out(counters) {
            return Status::Close;
        }
        if self.session.pending_output() > 0 {
            self.session.set_state(ST_MWRITE);
            return Status::Idle;
        }
        loop {
            let empty = self.session.fill_watch();
            if !self.write_out(counters) {
                return Status::Close;
            }
            if self.session.pending_output() > 0 {
                self.session.set_state(ST_MWRITE);
                return Status::Idle;
            }
            if empty {
                self.session.set_state(ST_WAITING);
                return Status::Idle;
            }
            if self.session.turn_spent() {
                return Status::Pending;
            }
        }
    }
}

/// Counts a TLS handshake that did not complete (`ssl_handshake_errors`).
fn count_handshake_error(shared: &Shared) {
    if let Some(tls) = &shared.credentials.tls {
        tls.handshake_errors.fetch_add(1, Ordering::Relaxed);
    }
}
