//! Per-connection authentication: where a connection stands (`-S` SASL over the
//! binary protocol, `-Y` tokens over the text protocol), and the execution of the
//! requests that change it.
//!
//! ```text
//!   -S: binary::parse_gated(.., gate()) ─ SASL_LIST_MECHS / SASL_AUTH / SASL_STEP ─▶ binary()
//!        (anything but VERSION and SASL before success: AUTH_ERROR + close, in the parser)
//!   -Y: text::auth::parse_auth ─ Credentials / Refuse ─▶ ascii()  (until STORED)
//! ```
//!
//! Both count `auth_cmds` / `auth_errors` as memcached does (one per finished
//! exchange, success or failure). A connection that fails or abandons (starts a new
//! `SASL_AUTH` before finishing one) [`MAX_FAILURES_PER_CONNECTION`] exchanges is
//! closed and the failures are logged (memcached never closes; see the `auth`
//! module).
//!
//! A PLAIN password that needs PBKDF2 waits in the server's derivation queue
//! (`auth::KdfQueue`): the request answers [`Flow::Wait`], the connection serves
//! nothing more until the queue's thread wakes its worker and [`ConnAuth::resume`]
//! writes the answer. Attempts are thereby throttled per connection (one in the
//! queue at a time, a connection that failed before behind first attempts), never
//! per account.

use std::sync::Arc;

use mio::Waker;

use crate::auth::{AuthSession, Notify, Step, MAX_FAILURES_PER_CONNECTION};
use crate::protocol::binary::{
    self, write_error, write_header, write_ok, Command, Request, SaslGate, Status,
};
use crate::protocol::text::auth::{parse_auth, AuthParse};
use crate::protocol::text::auth::{AUTH_FAILURE, AUTH_SUCCESS};
use crate::server::exec::text::Flow;
use crate::server::shared::Shared;
use crate::stats::{bump, Counters};

/// One connection's authentication state.
#[derive(Debug)]
pub struct ConnAuth {
    /// SASL is on (`-S`).
    sasl: bool,
    /// ASCII tokens are on (`-Y`).
    ascii: bool,
    authenticated: bool,
    session: Option<AuthSession>,
    failures: u32,
    /// The request whose answer waits for a queued password check.
    waiting: Option<binary::Header>,
}

impl ConnAuth {
    /// The state of a new connection on this server.
    pub fn new(shared: &Shared) -> ConnAuth {
        let sasl = shared.credentials.sasl.is_some();
        let ascii = shared.credentials.ascii.is_some();
        ConnAuth {
            sasl,
            ascii,
            authenticated: !(sasl || ascii),
            session: None,
            failures: 0,
            waiting: None,
        }
    }

    /// Whether a request waits for a queued password check (the connection serves
    /// nothing else meanwhile; its worker is woken when the answer is in).
    pub fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Writes the answer of the request that waited for its password check, once
    /// it is in: `None` while it still waits.
    pub fn resume(&mut self, c: &Counters, out: &mut Vec<u8>, fd: i32) -> Option<Flow> {
        let h = self.waiting?;
        let step = self.session.as_mut()?.poll()?;
        self.waiting = None;
        Some(self.answer(step, &h, c, out, fd))
    }

    /// What the binary parser may let through.
    pub fn gate(&self) -> SaslGate {
        match (self.sasl, self.authenticated) {
            (false, _) => SaslGate::Off,
            (true, false) => SaslGate::Unauthenticated,
            (true, true) => SaslGate::Authenticated,
        }
    }

    /// Whether text requests must go through `text::auth::parse_auth` first.
    pub fn ascii_pending(&self) -> bool {
        self.ascii && !self.authenticated
    }

    /// Serves `SASL_LIST_MECHS`, `SASL_AUTH` or `SASL_STEP` (the parser yields them
    /// only with SASL on).
    pub fn binary(
        &mut self,
        req: &Request<'_>,
        shared: &Shared,
        c: &Counters,
        out: &mut Vec<u8>,
        fd: i32,
        waker: &Arc<Waker>,
    ) -> Flow {
        let Some(db) = shared.credentials.sasl.as_ref() else {
            write_error(out, &req.header, Status::UnknownCommand);
            return Flow::Continue;
        };
        let h = &req.header;
        let step = match req.cmd {
            Command::SaslListMechs => {
                write_ok(out, h, db.mechanisms().as_bytes(), 0);
                return Flow::Continue;
            }
            Command::SaslAuth { data } => {
                if self.session.as_ref().is_some_and(|s| !s.is_done()) {
                    // Starting over abandons an exchange: it counts as a failed
                    // attempt towards the bound (not in auth_errors, which memcached
                    // moves only for finished exchanges).
                    self.session = None;
                    self.failures += 1;
                    if self.failures >= MAX_FAILURES_PER_CONNECTION {
                        log::info!(
                            "conn {fd}: {} abandoned or failed SASL attempts; closing",
                            self.failures
                        );
                        write_error(out, h, Status::AuthError);
                        return Flow::Close;
                    }
                }
                let w = waker.clone();
                let notify: Notify = Arc::new(move || {
                    let _ = w.wake();
                });
                let (session, step) =
                    AuthSession::start_notified(db, req.key, data, Some(notify), self.failures > 0);
                self.session = Some(session);
                step
            }
            Command::SaslStep { data } => match self.session.as_mut() {
                Some(s) => s.step(data),
                None => Step::Failure,
            },
            _ => return Flow::Continue,
        };
        self.answer(step, h, c, out, fd)
    }

    /// Writes the answer to a SASL step (or notes that it waits).
    fn answer(
        &mut self,
        step: Step,
        h: &binary::Header,
        c: &Counters,
        out: &mut Vec<u8>,
        fd: i32,
    ) -> Flow {
        match step {
            Step::Pending => {
                self.waiting = Some(*h);
                Flow::Wait
            }
            Step::Continue(challenge) => {
                write_header(
                    out,
                    h.opcode,
                    Status::AuthContinue,
                    0,
                    0,
                    challenge.len() as u32,
                    h.opaque,
                    0,
                );
                out.extend_from_slice(&challenge);
                Flow::Continue
            }
            Step::Success(body) => {
                bump(&c.auth_cmds, 1);
                self.authenticated = true;
                let user = self.session.as_ref().and_then(|s| s.user()).unwrap_or("");
                log::info!("conn {fd}: SASL authenticated as '{user}'");
                self.session = None;
                write_ok(out, h, &body, 0);
                Flow::Continue
            }
            Step::Failure => {
                self.session = None;
                write_error(out, h, Status::AuthError);
                self.failed(c, fd, "SASL")
            }
        }
    }

    /// Serves one request of a `-Y` connection that has not authenticated yet (its
    /// bytes are `input`): memcached writes every reply before authentication into
    /// one reply slot, so within one batch (replies from `wpos` on in `out`) each
    /// such reply replaces the previous one (`slot` keeps where it starts).
    #[allow(clippy::too_many_arguments)]
    pub fn ascii_request(
        &mut self,
        input: &[u8],
        shared: &Shared,
        c: &Counters,
        out: &mut Vec<u8>,
        wpos: usize,
        slot: &mut Option<usize>,
        fd: i32,
    ) -> AsciiStep {
        let at = match *slot {
            Some(at) if at >= wpos && at <= out.len() => at,
            _ => out.len(),
        };
        let (flow, consumed) = match parse_auth(input) {
            AuthParse::Incomplete => return AsciiStep::NeedInput,
            AuthParse::Close => return AsciiStep::Close,
            AuthParse::Refuse { reply, consumed } => {
                out.truncate(at);
                out.extend_from_slice(reply.as_bytes());
                out.extend_from_slice(b"\r\n");
                (Flow::Continue, consumed)
            }
            AuthParse::Credentials {
                user,
                password,
                consumed,
            } => {
                out.truncate(at);
                (self.ascii(user, password, shared, c, out, fd), consumed)
            }
        };
        *slot = Some(at);
        AsciiStep::Done { flow, consumed }
    }

    /// Checks `-Y` credentials; appends the reply line (with `\r\n`) to `out`.
    pub fn ascii(
        &mut self,
        user: &[u8],
        password: &[u8],
        shared: &Shared,
        c: &Counters,
        out: &mut Vec<u8>,
        fd: i32,
    ) -> Flow {
        let ok = shared
            .credentials
            .ascii
            .as_ref()
            .is_some_and(|f| f.check(user, password));
        if ok {
            bump(&c.auth_cmds, 1);
            self.authenticated = true;
            log::info!(
                "conn {fd}: authenticated as '{}'",
                String::from_utf8_lossy(user)
            );
            out.extend_from_slice(AUTH_SUCCESS.as_bytes());
            out.extend_from_slice(b"\r\n");
            Flow::Continue
        } else {
            out.extend_from_slice(AUTH_FAILURE.as_bytes());
            out.extend_from_slice(b"\r\n");
            self.failed(c, fd, "ASCII")
        }
    }

    /// Counts a failed exchange; closes after too many.
    fn failed(&mut self, c: &Counters, fd: i32, what: &str) -> Flow {
        bump(&c.auth_cmds, 1);
        bump(&c.auth_errors, 1);
        self.failures += 1;
        if self.failures >= MAX_FAILURES_PER_CONNECTION {
            log::info!(
                "conn {fd}: {} failed {what} authentication attempts; closing",
                self.failures
            );
            Flow::Close
        } else {
            log::info!("conn {fd}: {what} authentication failed");
            Flow::Continue
        }
    }
}

/// What one request of a `-Y` connection that has not authenticated did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsciiStep {
    /// The request is not complete.
    NeedInput,
    /// Close the connection.
    Close,
    /// Answered; `consumed` bytes taken.
    Done {
        /// What the connection does next.
        flow: Flow,
        /// Bytes of the request.
        consumed: usize,
    },
}
