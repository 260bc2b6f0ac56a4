//! What a worker and a connection's [`crate::server::session::Session`] exchange on each turn:
//! what the session needs from its worker while it serves ([`Ctx`]), why it stopped
//! ([`Stop`]), the per-turn bound ([`TURN_BYTES`]) and the `stats conns` states.

use std::sync::Arc;

use mio::Waker;

use crate::server::budget::WorkerBuffers;
use crate::server::observe::OpTap;
use crate::server::shared::Shared;
use crate::stats::Counters;

/// Reply bytes one connection may produce, and request bytes it may have read, in
/// one turn before the worker serves the others (besides `-R` requests): a client
/// pulling or pushing large values through a fast socket cannot hold its worker for
/// long.
pub const TURN_BYTES: usize = 256 << 10;
/// `stats conns` state: waiting for input.
pub const ST_WAITING: u32 = 0;
/// `stats conns` state: parsing and executing.
pub const ST_PARSE: u32 = 1;
/// `stats conns` state: part of a request is buffered.
pub const ST_NREAD: u32 = 2;
/// `stats conns` state: swallowing a refused data block.
pub const ST_SWALLOW: u32 = 3;
/// `stats conns` state: waiting for the client to read replies.
pub const ST_MWRITE: u32 = 4;

/// What a session needs from its worker while it serves requests.
pub struct Ctx<'a> {
    /// Server state: settings, store, counters of all workers, watch hub.
    pub shared: &'a Shared,
    /// This worker's counters.
    pub counters: &'a Counters,
    /// This worker's spare read buffers and share of the buffer budget.
    pub bufs: &'a mut WorkerBuffers,
    /// This worker's waker (a watcher's producers wake the worker with it).
    pub waker: &'a Arc<Waker>,
    /// Told every executed operation besides the server's own observation (tests:
    /// `Loopback::tap`); `None` in the server.
    pub tap: Option<&'a OpTap>,
}

/// Why `Session::process` stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Every complete request was served; more bytes are needed.
    NeedInput,
    /// The turn is used up (`-R` requests, or [`TURN_BYTES`] of replies): let the
    /// worker serve other connections, then process again.
    Yield,
    /// Too many replies wait for the client: send some, then process again.
    Blocked,
    /// A value can be neither copied into the reply nor leased from the store now
    /// (replies pin too much of `-m`): send what is buffered and process again
    /// once the store gives memory back ([`crate::store::Store::released`]).
    Wait,
    /// A dump waits for its replies to leave: send them; process again once all
    /// have gone.
    WaitWritable,
    /// A request's answer waits for a queued password check: send what is
    /// buffered; process again when the worker is woken (see
    /// `Session::is_waiting`).
    Waiting,
    /// Close, after sending what is buffered when `flush` is true (else only what
    /// memcached would already have sent, see `Session::discard_unflushed`).
    Close {
        /// Send everything buffered first.
        flush: bool,
    },
}
