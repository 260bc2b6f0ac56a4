//! An in-memory peer for sessions: a server's state without threads or sockets, and a
//! driver that feeds a [`Session`] its input the way a connection does. Tests replay
//! recorded transcripts through it and the fuzzer drives it; nothing in the server
//! uses it.
//!
//! ```text
//!   bytes ── arrivals (sizes chosen by the caller) ──▶ Session::input / commit_input
//!                                                        │ process(ctx) until NeedInput
//!   replies ◀── Session::output / commit_output ◀────────┘ once an arrival is served
//! ```
//!
//! An arrival is read as far as the session gives room, the session serves what is
//! buffered, and the replies are collected once the whole arrival has been read and
//! served — as `Conn` writes a batch's replies once a short read drained the socket.

use std::sync::Arc;

use crate::auth::Credentials;
use crate::config::{parse_args_as, Invocation};
use crate::server::budget::{WorkerBuffers, WorkerMem};
use crate::server::observe::OpTap;
use crate::server::session::{Ctx, Session, Stop};
use crate::server::shared::{ConnInfo, Shared};
use crate::stats::Counters;

/// One server's state and one worker's buffers, with no thread started.
pub struct Loopback {
    /// The server state the sessions share (store, settings, counters).
    pub shared: Arc<Shared>,
    counters: Arc<Counters>,
    bufs: WorkerBuffers,
    // Keeps the waker's registry alive.
    _poll: mio::Poll,
    waker: Arc<mio::Waker>,
    next_id: i32,
    tap: Option<Box<OpTap>>,
}

/// What one [`Loopback::feed`] saw.
#[derive(Debug, Default)]
pub struct Fed {
    /// Every reply byte, in order.
    pub replies: Vec<u8>,
    /// The session closed (the rest of the input was not fed).
    pub closed: bool,
    /// The largest read room the session offered.
    pub max_room: usize,
}

impl Loopback {
    /// A server started with the command-line `args` (without the program name).
    /// Errors are the command line's message.
    pub fn new(args: &[&str]) -> Result<Loopback, String> {
        Self::with_credentials(args, Credentials::default())
    }

    /// As [`Loopback::new`], authenticating against `credentials` (`-S`, `-Y`).
    pub fn with_credentials(args: &[&str], credentials: Credentials) -> Result<Loopback, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let cfg = match parse_args_as("ferrocache", &args) {
            Invocation::Run(cfg) => *cfg,
            Invocation::Exit { stderr, stdout, .. } => return Err(stderr + &stdout),
        };
        let shared = Shared::new(cfg, credentials, Vec::new()).0;
        let counters = shared.observers.counters[0].clone();
        let mem = WorkerMem::new(
            shared.net.buffers.clone(),
            shared.net.buffer_stats[0].clone(),
        );
        let poll = mio::Poll::new().map_err(|e| e.to_string())?;
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).map_err(|e| e.to_string())?;
        Ok(Loopback {
            shared,
            counters,
            bufs: WorkerBuffers::new(mem),
            _poll: poll,
            waker: Arc::new(waker),
            next_id: 100,
            tap: None,
        })
    }

    /// A new connection's session (ids count up from 101).
    pub fn session(&mut self) -> Session {
        self.next_id += 1;
        let info = Arc::new(ConnInfo {
            addr: "tcp:127.0.0.1:1".into(),
            listen_addr: "tcp:127.0.0.1:11211".into(),
            last_cmd: Default::default(),
            state: Default::default(),
        });
        Session::new(self.next_id, info, &self.shared)
    }

    /// Tells `tap` every operation the sessions execute from now on, after the
    /// server's own observation (counters, watch, ...): the one `Op` stream of
    /// `server::observe`, whichever protocol carried the request.
    pub fn tap(&mut self, tap: Box<OpTap>) {
        self.tap = Some(tap);
    }

    /// Serves `s` once more (after it closed: what it answers then).
    pub fn process(&mut self, s: &mut Session) -> Stop {
        let waker = self.waker.clone();
        let mut ctx = Ctx {
            shared: &self.shared,
            counters: &self.counters,
            bufs: &mut self.bufs,
            waker: &waker,
            tap: self.tap.as_deref(),
        };
        s.process(&mut ctx)
    }

    /// Feeds `bytes` to `s` in arrivals: `arrival(i)` is the size of the `i`-th
    /// (`usize::MAX`: all the rest). Returns the replies and whether `s` closed.
    pub fn feed(
        &mut self,
        s: &mut Session,
        bytes: &[u8],
        arrival: &mut dyn FnMut(usize) -> usize,
    ) -> Fed {
        let mut fed = Fed::default();
        let waker = self.waker.clone();
        let mut ctx = Ctx {
            shared: &self.shared,
            counters: &self.counters,
            bufs: &mut self.bufs,
            waker: &waker,
            tap: self.tap.as_deref(),
        };
        let mut pos = 0;
        let mut arrival_end = 0;
        let mut arrivals = 0;
        loop {
            s.begin_turn();
            match s.process(&mut ctx) {
                Stop::NeedInput => {}
                Stop::Yield | Stop::Blocked | Stop::WaitWritable => {
                    take_output(s, &mut fed.replies);
                    continue;
                }
                Stop::Wait => {
                    // Only other connections could give memory back: there are none.
                    take_output(s, &mut fed.replies);
                    return fed;
                }
                Stop::Waiting => {
                    // A queued password check (a server that defers derivations):
                    // its thread answers within moments.
                    take_output(s, &mut fed.replies);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    continue;
                }
                Stop::Close { flush } => {
                    if !flush {
                        s.discard_unflushed();
                    }
                    take_output(s, &mut fed.replies);
                    fed.closed = true;
                    return fed;
                }
            }
            if pos == arrival_end {
                // The arrival is read and served: the batch's replies leave.
                take_output(s, &mut fed.replies);
                if pos == bytes.len() {
                    return fed;
                }
                let size = arrival(arrivals).max(1);
                arrivals += 1;
                arrival_end = pos.saturating_add(size).min(bytes.len());
            }
            let Some(room) = s.input(&mut ctx) else {
                // A request line that may not grow further: the server closes.
                take_output(s, &mut fed.replies);
                fed.closed = true;
                return fed;
            };
            fed.max_room = fed.max_room.max(room.len());
            let n = room.len().min(arrival_end - pos);
            room[..n].copy_from_slice(&bytes[pos..pos + n]);
            s.commit_input(n);
            pos += n;
        }
    }
}

/// Moves everything the session has to send into `out`.
fn take_output(s: &mut Session, out: &mut Vec<u8>) {
    let n = s.output().len();
    out.extend_from_slice(s.output());
    s.commit_output(n);
}
