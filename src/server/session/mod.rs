//! One client's protocol state, free of I/O: bytes in, replies out.
//!
//! ```text
//!            input(ctx) ─▶ &mut [u8] ── the transport reads into it ── commit_input(n)
//!   rbuf: [ consumed | unprocessed input ........ | free ]
//!         0          rpos                          rend  len
//!                        │ process(ctx): frame → parse → execute (store) → compose
//!                        ▼
//!   wbuf: [ sent | to send ]    output() ─▶ &[u8] ── the transport writes it ── commit_output(n)
//!         0      wpos     len
//! ```
//!
//! A `Session` never touches a socket or a timer: the connection (`crate::server::net::conn`) moves
//! bytes between it and its transport, and tests feed it bytes directly. It holds:
//!
//! - **framing**: `Undecided` until the first byte says text or binary (or `-B`
//!   decides), then for good;
//! - **authentication** (`-S`, `-Y`), kept by `auth::ConnAuth`;
//! - the states memcached keeps between requests: a data block being swallowed after
//!   a refusal (and the reply that follows it), a suspended multi-get, the replies a
//!   binary connection has already "sent" (what it still gets when closed for a bad
//!   magic byte), memcached's one reply slot for `-Y` refusals;
//! - the two streams a request can start: an `lru_crawler metadump` produced a batch
//!   at a time while few reply bytes wait ([`crate::server::admin::dump::DUMP_LOW`]), and `watch`, after which the
//!   input is dropped and queued log lines are the only output.
//!
//! [`Session::process`] serves every complete request in the buffer and says why it
//! stopped ([`Stop`]): more input needed, its turn used up (`-R` requests or
//! [`TURN_BYTES`] of replies), too many replies waiting, or close. Buffers are
//! counted against the worker's share of the buffer budget (see [`crate::server::budget`]):
//! a value larger than the read buffer is reserved whole when its request line
//! arrives (or borrowed from `-m`, `store::loan`), or refused as memcached refuses a
//! store it cannot allocate; a value longer than the replies may hold is streamed
//! from the store a piece at a time (`store::lease`).

pub mod auth;
mod streams;
mod turn;

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::ProtocolMode;
use crate::latency::Family;
use crate::protocol::ascii::{self, Parse, Request};
use crate::protocol::binary;
use crate::protocol::frame::{Limits, StoreRefusal};
use crate::protocol::meta::MetaKind;
use crate::protocol::text;
use crate::server::admin::dump::Dump;
use crate::server::admin::watch::WatchHandle;
use crate::server::budget::{WorkerBuffers, WorkerMem, OUT_FLOOR, OUT_HIGH, READ_BUF};
use crate::server::exec::binary as binary_exec;
use crate::server::exec::meta as meta_exec;
use crate::server::exec::text::{self as exec, ExecCtx};
use crate::server::flow::{Flow, ReplyRoom, Streamed};
use crate::server::observe::{family_of, Obs, Proto};
use crate::server::shared::{ConnInfo, Shared};
use crate::server::stats::vlog;
use crate::stats::Counters;
use crate::store::Loan;
use auth::{AsciiStep, ConnAuth};
pub use turn::{Ctx, Stop, ST_MWRITE, ST_NREAD, ST_PARSE, ST_SWALLOW, ST_WAITING, TURN_BYTES};

/// Largest read buffer a connection that has not authenticated may have: room for a
/// binary header with the longest key the header can announce.
const RBUF_PREAUTH_MAX: usize = 24 + 255 + 65_535;

/// Which protocol the connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No byte has arrived yet.
    Undecided,
    Text,
    Binary,
}

/// One connection's protocol state and buffers.
pub struct Session {
    /// Connection id in logs, `stats conns` and watch lines (the socket's fd).
    id: RawFd,
    /// What `stats conns` shows.
    info: Arc<ConnInfo>,
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    /// Bytes of the read buffer paid for by the item budget, not the buffer budget:
    /// room for a value the buffer budget could not cover (see `store::loan`).
    loan: Option<Loan>,
    /// Read and reply buffer bytes reported to the worker's accounting (the read
    /// buffer's capacity less its loan, the reply buffer's capacity).
    bytes: (usize, usize),
    wbuf: Vec<u8>,
    wpos: usize,
    /// End of the replies memcached would already have sent in this batch (it
    /// transmits at once after a binary error reply or a NOOP, and at a `-R`
    /// yield): what a binary connection closed for a bad magic byte still gets.
    flush_mark: usize,
    /// Requests served, reply bytes sent and request bytes taken in this turn.
    served: usize,
    turn_out: usize,
    turn_in: usize,
    swallow: usize,
    after_swallow: Option<&'static str>,
    bin_after_swallow: Option<(binary::Header, binary::Status)>,
    skip_keys: usize,
    framing: Framing,
    closing: bool,
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
    /// A large value being streamed from the store (its reply head is in `wbuf`).
    stream: Option<ValueStream>,
    /// Set once the connection is a watcher.
    watch: Option<WatchHandle>,
}

impl Session {
    /// A new connection's session on this server; `id` names it (its fd).
    pub fn new(id: RawFd, info: Arc<ConnInfo>, shared: &Shared) -> Session {
        Session {
            id,
            info,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            loan: None,
            bytes: (0, 0),
            wbuf: Vec::new(),
            wpos: 0,
            flush_mark: 0,
            served: 0,
            turn_out: 0,
            turn_in: 0,
            swallow: 0,
            after_swallow: None,
            bin_after_swallow: None,
            skip_keys: 0,
            framing: Framing::Undecided,
            closing: false,
            auth: ConnAuth::new(shared),
            ascii_auth_reply_at: None,
            unflushed: false,
            dump: None,
            stream: None,
            watch: None,
        }
    }

    /// The connection's id (its fd).
    pub fn id(&self) -> RawFd {
        self.id
    }

    /// What `stats conns` shows of this connection.
    pub fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }

    /// Whether a request waits for a queued password check: the worker drives the
    /// connection again when its waker fires.
    pub fn is_waiting(&self) -> bool {
        self.auth.is_waiting()
    }

    /// Starts a worker turn: the per-turn limits count from zero.
    pub fn begin_turn(&mut self) {
        self.served = 0;
        self.turn_out = 0;
        self.turn_in = 0;
    }

    /// Bytes of a refused data block still to be swallowed.
    #[doc(hidden)]
    pub fn swallowing(&self) -> usize {
        self.swallow
    }

    /// Request bytes taken in during this turn.
    pub fn turn_in(&self) -> usize {
        self.turn_in
    }

    /// Room for the next read, after moving unprocessed input to the front or growing
    /// the buffer for a request line longer than it (while the budget allows). `None`:
    /// the line cannot grow further; the connection is to be closed (and is counted).
    pub fn input(&mut self, ctx: &mut Ctx<'_>) -> Option<&mut [u8]> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        if self.rbuf.is_empty() {
            self.rbuf = ctx.bufs.take();
        }
        if self.rend == self.rbuf.len() {
            if self.rpos > 0 {
                self.compact();
            } else {
                // A request line longer than the buffer (a huge multi-get; values
                // were given their room when their line arrived): grow while the
                // budget allows.
                let cap = if self.trusted() {
                    max_request(ctx.shared)
                } else {
                    RBUF_PREAUTH_MAX
                };
                let new_len = (self.rbuf.len() * 2).min(cap);
                let more = new_len.saturating_sub(self.rbuf.len());
                if more == 0 || more > ctx.bufs.mem.room() {
                    let global = ctx.bufs.mem.global();
                    global.closed_lines.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "conn {}: request line longer than {} bytes and no buffer budget \
                         left ({} of {} bytes in use); closing",
                        self.id,
                        self.rbuf.len(),
                        global.used(),
                        global.limit()
                    );
                    return None;
                }
                self.rbuf.reserve_exact(more);
                self.rbuf.resize(new_len, 0);
                self.account(&mut ctx.bufs.mem);
            }
        }
        Some(&mut self.rbuf[self.rend..])
    }

    /// `n` bytes were read into the room [`Session::input`] gave.
    pub fn commit_input(&mut self, n: usize) {
        debug_assert!(self.rend + n <= self.rbuf.len());
        self.rend = (self.rend + n).min(self.rbuf.len());
        self.turn_in += n;
    }

    /// Replies waiting to be sent.
    pub fn output(&self) -> &[u8] {
        &self.wbuf[self.wpos..]
    }

    /// How many reply bytes wait.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// The first `n` bytes of [`Session::output`] were sent.
    pub fn commit_output(&mut self, n: usize) {
        self.wpos = (self.wpos + n).min(self.wbuf.len());
        self.turn_out += n;
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.unflushed = false;
            self.wpos = 0;
            self.flush_mark = 0;
            self.ascii_auth_reply_at = None;
        }
    }

    /// Drops the replies memcached would not have sent yet (those after the last
    /// binary error reply, NOOP or `-R` yield), as it does when a binary connection
    /// breaks: what is left of [`Session::output`] is what the client still gets.
    pub fn discard_unflushed(&mut self) {
        let mark = self.flush_mark.clamp(self.wpos, self.wbuf.len());
        self.wbuf.truncate(mark);
    }

    /// Replies this connection may have waiting now: its floor, plus what the
    /// budget still has room for (beyond everything held, this connection's replies
    /// included), at most [`OUT_HIGH`]. When the budget is spent, every connection is
    /// down to its floor: one that does not read stops, one that reads drains.
    pub fn out_cap(&self, mem: &WorkerMem) -> usize {
        OUT_FLOOR.saturating_add(mem.room()).min(OUT_HIGH)
    }

    /// Replies this connection may have waiting at most: its floor plus all the
    /// budget has room for (the cap on copying a value that cannot be streamed).
    pub fn out_most(&self, mem: &WorkerMem) -> usize {
        OUT_FLOOR.saturating_add(mem.room())
    }

    /// The budget stopped this connection: while it waits it holds what it must
    /// send, not a doubled capacity.
    pub fn shrink_output(&mut self) {
        self.drop_sent();
        self.wbuf.shrink_to_fit();
    }

    /// Records the connection's state for `stats conns`.
    pub fn set_state(&self, s: u32) {
        self.info.state.store(s, Ordering::Relaxed);
    }

    /// Reports a change of the buffer capacities to the worker's accounting.
    pub fn account(&mut self, mem: &mut WorkerMem) {
        let lent = self.loan.as_ref().map_or(0, Loan::bytes);
        let now = (
            self.rbuf.capacity().saturating_sub(lent),
            self.wbuf.capacity(),
        );
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
        // A lease left unfinished is dropped: its segment is freed by the crawler.
        self.stream = None;
        self.rbuf = Vec::new();
        self.loan = None;
        self.wbuf = Vec::new();
        self.account(mem);
    }

    /// The connection waits for its next readiness event with everything sent:
    /// an idle connection holds no read buffer (memcached does the same), so
    /// thousands of idle clients cost little memory, and a reply buffer that grew
    /// for large replies goes back to the budget.
    pub fn idle(&mut self, bufs: &mut WorkerBuffers) {
        if self.rpos == self.rend && !self.rbuf.is_empty() {
            bufs.give(std::mem::take(&mut self.rbuf));
            // A grown buffer is not kept: what it borrowed goes back.
            self.loan = None;
            self.rpos = 0;
            self.rend = 0;
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > OUT_FLOOR {
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

    /// Drops the read buffer and what it holds (a watcher's input is never served).
    pub fn drop_input(&mut self) {
        self.rbuf = Vec::new();
        self.loan = None;
        self.rpos = 0;
        self.rend = 0;
    }

    /// Whether the reply turn is used up.
    pub fn turn_spent(&self) -> bool {
        self.turn_out >= TURN_BYTES
    }

    /// Whether this connection may use the budget beyond its floor (not before it
    /// has authenticated).
    fn trusted(&self) -> bool {
        !self.auth.ascii_pending() && self.auth.gate() != binary::SaslGate::Unauthenticated
    }

    /// Removes the bytes already sent from the front of the reply buffer, so what
    /// is buffered is only what waits.
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

    /// Moves unprocessed input to the front of the read buffer.
    fn compact(&mut self) {
        self.rbuf.copy_within(self.rpos..self.rend, 0);
        self.rend -= self.rpos;
        self.rpos = 0;
    }

    /// Serves the complete requests in the read buffer, writing their replies.
    pub fn process(&mut self, ctx: &mut Ctx<'_>) -> Stop {
        self.drop_sent();
        let stop = self.serve(ctx);
        if stop == Stop::Wait {
            // What this connection holds itself must not be what it waits for.
            self.give_back_loan(ctx.bufs);
        }
        match stop {
            // memcached transmits what it has at a yield.
            Stop::Yield => self.flush_mark = self.wbuf.len(),
            // Nothing more is served once a close was decided.
            Stop::Close { .. } => self.closing = true,
            _ => {}
        }
        stop
    }

    /// Serves requests until one of the [`Stop`] reasons: streams first, then what
    /// the buffer holds, one request at a time (binary, `-Y` authentication, text or
    /// meta).
    fn serve(&mut self, ctx: &mut Ctx<'_>) -> Stop {
        if self.closing {
            return Stop::Close { flush: true };
        }
        if let Some(stop) = self.resume_auth(ctx.counters) {
            return stop;
        }
        let cfg = &ctx.shared.config;
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
            if let Some(stop) = self.pump(ctx) {
                return stop;
            }
            limits.buffer_room = self.buffer_room(ctx, std::mem::take(&mut no_room));
            let out_cap = self.out_cap(&ctx.bufs.mem);
            if let Some(stop) = self.next_request(ctx.shared, out_cap) {
                return stop;
            }
            if !touched {
                touched = true;
                self.set_state(ST_PARSE);
                let now = ctx.shared.clock.now();
                self.info.last_cmd.store(now, Ordering::Relaxed);
            }
            if self.framing == Framing::Undecided {
                self.framing = self.decide_framing(ctx.shared);
            }
            let step = if self.framing == Framing::Binary {
                self.serve_binary(ctx, &limits)
            } else {
                self.serve_ascii(ctx, &limits, out_cap)
            };
            match step {
                Some(Ok(())) => {}
                Some(Err(stop)) => return stop,
                None => no_room = true,
            }
        }
    }

    /// A request waiting for a queued password check: its answer, if it is in.
    fn resume_auth(&mut self, counters: &Counters) -> Option<Stop> {
        if !self.auth.is_waiting() {
            return None;
        }
        match self.auth.resume(counters, &mut self.wbuf, self.id) {
            None => Some(Stop::Waiting),
            Some(flow) => {
                self.flush_mark = self.wbuf.len();
                (flow == Flow::Close).then_some(Stop::Close { flush: true })
            }
        }
    }

    /// Moves a dump or a streamed value on; `Some` while it must go on first.
    fn pump(&mut self, ctx: &Ctx<'_>) -> Option<Stop> {
        if self.dump.is_some() {
            if let Some(stop) = self.pump_dump(ctx.shared) {
                return Some(stop);
            }
        }
        if self.stream.is_some() {
            return self.pump_stream(ctx);
        }
        None
    }

    /// Room a request's value may take: the read buffer, and (trusted, and not
    /// refused once already) what the budget and the store can lend.
    fn buffer_room(&self, ctx: &Ctx<'_>, no_room: bool) -> usize {
        let held = self.rbuf.len().max(READ_BUF);
        if no_room || !self.trusted() {
            held
        } else {
            // A value may also be received into memory lent by the store.
            held.saturating_add(ctx.bufs.mem.room())
                .saturating_add(ctx.shared.store.lendable())
                .min(max_request(ctx.shared))
        }
    }

    /// Swallows what is left of a refused data block (then sends the refusal), and
    /// says whether a next request may be served now: not without input, with too
    /// many replies waiting, or once the turn is used up.
    fn next_request(&mut self, shared: &Shared, out_cap: usize) -> Option<Stop> {
        if self.swallow > 0 {
            let k = self.swallow.min(self.rend - self.rpos);
            self.rpos += k;
            self.swallow -= k;
            if self.swallow > 0 {
                return Some(Stop::NeedInput);
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
            return Some(Stop::NeedInput);
        }
        if self.wbuf.len() > out_cap {
            return Some(Stop::Blocked);
        }
        // -R requests, or a turn's worth of reply bytes: let the others go first.
        if self.served >= shared.config.reqs_per_event
            || (self.served > 0 && self.turn_out + self.wbuf.len() > TURN_BYTES)
        {
            return Some(Stop::Yield);
        }
        None
    }

    /// Serves one text or meta request (or a `-Y` authentication). `Some(Ok)`: go
    /// on; `Some(Err)`: stop; `None`: a value could not get its room from the budget
    /// (parse again without).
    fn serve_ascii(
        &mut self,
        ctx: &mut Ctx<'_>,
        limits: &Limits,
        out_cap: usize,
    ) -> Option<Result<(), Stop>> {
        let shared = ctx.shared;
        self.served += 1;
        if self.auth.ascii_pending() {
            return Some(self.ascii_auth(shared, ctx.counters).map_or(Ok(()), Err));
        }
        let input = &self.rbuf[self.rpos..self.rend];
        let parsed = ascii::parse(input, limits);
        if vlog::on() && matches!(parsed, Parse::Request(..) | Parse::Error { .. }) {
            vlog::request(self.id, input);
        }
        match parsed {
            Parse::Incomplete => {
                self.served -= 1;
                Some(Err(Stop::NeedInput))
            }
            Parse::Partial(frame) => {
                self.served -= 1;
                if self.make_room(frame, ctx) {
                    Some(Err(Stop::NeedInput))
                } else {
                    None
                }
            }
            Parse::Close => Some(Err(Stop::Close { flush: true })),
            Parse::Error {
                reply,
                consumed,
                swallow,
                unlink,
                refused,
            } => {
                // The seam unlinks the old value, counts and watches the refusal.
                let key = unlink.as_ref().and_then(|k| k.key());
                if key.is_some() || refused.is_some() {
                    // `mg`, `ms`, ...: two letters from `m`.
                    let meta = input.first() == Some(&b'm') && input.get(2) == Some(&b' ');
                    let proto = if meta { Proto::Meta } else { Proto::Text };
                    let obs = self.observer(ctx, proto);
                    obs.refused(key.as_deref(), refused);
                }
                self.refuse(ctx, reply, swallow, refused);
                self.rpos += consumed;
                self.swallow = swallow;
                Some(Ok(()))
            }
            Parse::Request(req, used) => {
                // Timed from here (parsed) to the reply queued; a multi-get resumed
                // after back-pressure was counted (and timed) in its first pass.
                let family = family_of(&req);
                let timer = match family {
                    Some(f) if self.skip_keys == 0 => {
                        ctx.counters.latency.begin(f, shared.config.latency_sample)
                    }
                    _ => None,
                };
                let flushes = match &req {
                    Request::Text(cmd) => {
                        matches!(cmd, text::Command::Get { .. } | text::Command::Gat { .. })
                    }
                    Request::Meta(m) => m.kind == MetaKind::Noop,
                };
                let mut ectx = ExecCtx {
                    skip: std::mem::take(&mut self.skip_keys),
                    out_cap: out_cap.min(TURN_BYTES),
                    pipelined: self.unflushed,
                    dump: None,
                    watch: None,
                    room: ReplyRoom {
                        cap: out_cap,
                        most: self.out_most(&ctx.bufs.mem),
                        streamed: None,
                        wait: false,
                    },
                };
                let before = self.wbuf.len();
                let proto = match &req {
                    Request::Text(_) => Proto::Text,
                    Request::Meta(_) => Proto::Meta,
                };
                let obs = self.observer(ctx, proto);
                let wbuf = &mut self.wbuf;
                let run = |ectx: &mut ExecCtx| match req {
                    Request::Text(cmd) => exec::execute(cmd, shared, &obs, wbuf, ectx),
                    Request::Meta(m) => meta_exec::execute(&m, shared, &obs, wbuf, &mut ectx.room),
                };
                let flow = if vlog::on() {
                    vlog::with_conn(self.id, || run(&mut ectx))
                } else {
                    run(&mut ectx)
                };
                if let (Some(f), Some(t)) = (family, timer) {
                    ctx.counters.latency.end(f, t);
                }
                if flushes {
                    self.unflushed = false;
                } else if self.wbuf.len() > before {
                    self.unflushed = true;
                }
                Some(self.after_ascii(ctx, &mut ectx, flow, used))
            }
        }
    }

    /// The reply of a text request refused by the parser: now, or once its data
    /// block of `swallow` bytes is gone.
    fn refuse(
        &mut self,
        ctx: &Ctx<'_>,
        reply: Option<&'static str>,
        swallow: usize,
        refused: Option<StoreRefusal>,
    ) {
        if swallow > 0 {
            self.after_swallow = reply;
        } else if let Some(r) = reply {
            if vlog::on() {
                vlog::line('>', self.id, r.as_bytes());
            }
            self.wbuf.extend_from_slice(r.as_bytes());
            self.wbuf.extend_from_slice(b"\r\n");
            self.unflushed = true;
        }
        refused_value(ctx, refused);
    }

    /// What a text or meta request left for the connection: a dump or watch to
    /// start, a value to stream, a suspended multi-get, a close.
    fn after_ascii(
        &mut self,
        ctx: &Ctx<'_>,
        ectx: &mut ExecCtx,
        flow: Flow,
        used: usize,
    ) -> Result<(), Stop> {
        if let Some(d) = ectx.dump.take() {
            self.dump = Some(d);
        }
        if let Some(v) = ectx.room.streamed.take() {
            self.stream = Some(ValueStream { value: v, sent: 0 });
        }
        if let Some(flags) = ectx.watch.take() {
            self.rpos += used;
            return Err(self.start_watch(flags, ctx));
        }
        match flow {
            Flow::Continue => {
                self.rpos += used;
                Ok(())
            }
            Flow::Close => {
                self.rpos += used;
                self.closing = true;
                Err(Stop::Close { flush: true })
            }
            Flow::Suspend { keys_done } => {
                self.skip_keys = keys_done;
                if ectx.room.wait {
                    self.served -= 1;
                    return Err(Stop::Wait);
                }
                Err(Stop::Blocked)
            }
            Flow::Wait => {
                self.rpos += used;
                Err(Stop::Waiting)
            }
        }
    }

    /// What this connection's executors observe through.
    fn observer<'a>(&self, ctx: &Ctx<'a>, proto: Proto) -> Obs<'a> {
        Obs {
            shared: ctx.shared,
            counters: ctx.counters,
            conn: self.id,
            proto,
            tap: ctx.tap,
        }
    }

    /// Text or binary, from the first byte (or the `-B` setting).
    fn decide_framing(&self, shared: &Shared) -> Framing {
        let cfg = &shared.config;
        let first = self.rbuf[self.rpos];
        let framing = match (cfg.protocol, first) {
            (ProtocolMode::Ascii, _) => Framing::Text,
            (_, 0x80) => Framing::Binary,
            // As memcached: a binary-only connection waits for a whole header and
            // closes on its bad magic.
            (ProtocolMode::Binary, _) => Framing::Binary,
            _ => Framing::Text,
        };
        if cfg.protocol == ProtocolMode::Auto && vlog::on() {
            let name = if framing == Framing::Binary {
                "binary"
            } else {
                "ascii"
            };
            vlog::raw(&format!("{}: Client using the {name} protocol", self.id));
        }
        framing
    }

    /// Serves one binary request (or error). `Some(Ok)`: go on; `Some(Err)`: stop;
    /// `None`: a body could not get its room from the budget (parse again without).
    fn serve_binary(&mut self, ctx: &mut Ctx<'_>, limits: &Limits) -> Option<Result<(), Stop>> {
        let shared = ctx.shared;
        let counters = ctx.counters;
        let input = &self.rbuf[self.rpos..self.rend];
        match binary::parse_gated(input, limits, self.auth.gate()) {
            binary::Parse::Incomplete => Some(Err(Stop::NeedInput)),
            binary::Parse::Partial(frame) => {
                if self.make_room(frame, ctx) {
                    Some(Err(Stop::NeedInput))
                } else {
                    None
                }
            }
            binary::Parse::Close => Some(Err(Stop::Close { flush: false })),
            binary::Parse::Error {
                header,
                status,
                consumed,
                swallow,
                close,
                unlink,
            } => {
                self.served += 1;
                if swallow > 0 {
                    // As memcached: the error leaves once the body is gone.
                    self.bin_after_swallow = Some((header, status));
                } else {
                    binary::write_error(&mut self.wbuf, &header, status);
                    self.flush_mark = self.wbuf.len();
                }
                let refusal = match status {
                    binary::Status::E2big => Some(StoreRefusal::TooLarge),
                    binary::Status::Enomem => Some(StoreRefusal::NoMemory),
                    _ => None,
                };
                if let Some(key) = unlink {
                    self.observer(ctx, Proto::Binary)
                        .refused(Some(key), refusal);
                }
                refused_value(ctx, refusal);
                self.rpos += consumed;
                self.swallow = swallow;
                if close {
                    self.closing = true;
                    return Some(Err(Stop::Close { flush: true }));
                }
                Some(Ok(()))
            }
            binary::Parse::Request(req, used) => {
                self.served += 1;
                self.rpos += used;
                let timer = counters
                    .latency
                    .begin(Family::Binary, shared.config.latency_sample);
                let start = self.wbuf.len();
                // memcached transmits at once after these and after an error reply.
                let flushes = matches!(req.cmd, binary::Command::Noop | binary::Command::Quit);
                let mut room = ReplyRoom {
                    cap: self.out_cap(&ctx.bufs.mem),
                    most: self.out_most(&ctx.bufs.mem),
                    streamed: None,
                    wait: false,
                };
                let flow = match req.cmd {
                    binary::Command::SaslListMechs
                    | binary::Command::SaslAuth { .. }
                    | binary::Command::SaslStep { .. } => {
                        self.auth
                            .binary(&req, shared, counters, &mut self.wbuf, self.id, ctx.waker)
                    }
                    _ => {
                        let obs = self.observer(ctx, Proto::Binary);
                        binary_exec::execute(req, shared, &obs, &mut self.wbuf, &mut room)
                    }
                };
                if room.wait {
                    // Nothing was done: the request runs again later.
                    self.served -= 1;
                    self.rpos -= used;
                    return Some(Err(Stop::Wait));
                }
                if let Some(v) = room.streamed {
                    self.stream = Some(ValueStream { value: v, sent: 0 });
                }
                if let Some(t) = timer {
                    counters.latency.end(Family::Binary, t);
                }
                if flushes || binary::is_error_reply(self.wbuf.get(start..)) {
                    self.flush_mark = self.wbuf.len();
                }
                if flow == Flow::Close {
                    self.closing = true;
                    return Some(Err(Stop::Close { flush: true }));
                }
                if flow == Flow::Wait {
                    return Some(Err(Stop::Waiting));
                }
                Some(Ok(()))
            }
        }
    }

    /// Serves one request of a `-Y` connection that has not authenticated yet; `None`
    /// to go on with the next request.
    fn ascii_auth(&mut self, shared: &Shared, c: &Counters) -> Option<Stop> {
        let input = &self.rbuf[self.rpos..self.rend];
        let slot = &mut self.ascii_auth_reply_at;
        let (wbuf, wpos) = (&mut self.wbuf, self.wpos);
        let step = self
            .auth
            .ascii_request(input, shared, c, wbuf, wpos, slot, self.id);
        match step {
            AsciiStep::NeedInput => Some(Stop::NeedInput),
            AsciiStep::Close => Some(Stop::Close { flush: true }),
            AsciiStep::Done { flow, consumed } => {
                self.rpos += consumed;
                self.closing = flow == Flow::Close;
                self.closing.then_some(Stop::Close { flush: true })
            }
        }
    }

    /// Copies the next pieces of the value being streamed into the reply buffer while
    /// it holds less than the connection's share (at most a turn's worth); `None` once
    /// the value and its trailer are in (the next requests are served), else why to
    /// stop now: a client that does not read holds one piece, not the value.
    fn pump_stream(&mut self, ctx: &Ctx<'_>) -> Option<Stop> {
        let store = &ctx.shared.store;
        let limit = self.out_cap(&ctx.bufs.mem).min(TURN_BYTES);
        loop {
            let st = self.stream.as_mut()?;
            let len = st.value.lease.len();
            if st.sent < len {
                if self.wbuf.len() >= limit {
                    return Some(Stop::WaitWritable);
                }
                if self.turn_out >= TURN_BYTES {
                    // Others get their turn; the worker comes back.
                    return Some(Stop::Yield);
                }
                let piece = limit - self.wbuf.len();
                let got = store.read_lease(&st.value.lease, st.sent, piece, &mut self.wbuf);
                if got == 0 {
                    // The lease lost its segment (a bug): never send a wrong value.
                    log::error!("conn {}: a streamed value is gone; closing", self.id);
                    self.stream = None;
                    self.closing = true;
                    return Some(Stop::Close { flush: false });
                }
                st.sent += got;
                continue;
            }
            self.wbuf.extend_from_slice(st.value.trailer);
            if let Some(st) = self.stream.take() {
                store.end_lease(st.value.lease);
            }
            return None;
        }
    }

    /// Moves the unprocessed input to a read buffer of the usual size when it fits one,
    /// giving back what the grown buffer borrowed from the store.
    fn give_back_loan(&mut self, bufs: &mut WorkerBuffers) {
        if self.loan.is_none() || self.rend - self.rpos > READ_BUF {
            return;
        }
        let mut fresh = bufs.take();
        let n = self.rend - self.rpos;
        fresh[..n].copy_from_slice(&self.rbuf[self.rpos..self.rend]);
        self.rbuf = fresh;
        self.rpos = 0;
        self.rend = n;
        self.loan = None;
        self.account(&mut bufs.mem);
    }

    /// Makes the read buffer able to hold a frame of `frame` bytes starting at the
    /// unprocessed input: by moving that input to the front, or by growing the buffer
    /// with a reservation from the buffer budget, or else with bytes the store lends
    /// from `-m` (evicting, as memcached allocates a value's item: stalled uploads
    /// that spent the buffer budget do not refuse everyone else's values). False when
    /// neither can cover it.
    fn make_room(&mut self, frame: usize, ctx: &mut Ctx<'_>) -> bool {
        if frame <= self.rbuf.len() - self.rpos {
            return true;
        }
        if frame <= self.rbuf.len() {
            self.compact();
            return true;
        }
        let more = frame - self.rbuf.len();
        if !self.trusted() {
            return false;
        }
        if !ctx.bufs.mem.reserve(more) {
            let Some(l) = ctx.shared.store.lend(more) else {
                return false;
            };
            match &mut self.loan {
                Some(held) => held.absorb(l),
                None => self.loan = Some(l),
            }
        }
        self.compact();
        self.rbuf.reserve_exact(more);
        self.rbuf.resize(frame, 0);
        // The growth settles against the reservation (or is the loan's).
        self.account(&mut ctx.bufs.mem);
        true
    }
}

/// A value streamed from the store into the reply buffer: the lease and how much of
/// the value is in.
struct ValueStream {
    value: Streamed,
    sent: usize,
}

/// Counts a value refused for lack of buffer room (`read_buf_oom`-like figures of
/// the budget).
fn refused_value(ctx: &Ctx<'_>, refused: Option<StoreRefusal>) {
    if refused == Some(StoreRefusal::NoMemory) {
        let global = ctx.bufs.mem.global();
        global.refused_values.fetch_add(1, Ordering::Relaxed);
    }
}

/// Largest buffered request before a connection is dropped: one item plus room for a
/// very long multi-get line.
fn max_request(shared: &Shared) -> usize {
    shared.config.item_size_max + (8 << 20)
}
