//! A connection's SASL session: `PLAIN` and `SCRAM-SHA-1/256` over the `sasl`
//! crate's server mechanisms, against an [`AuthDb`].

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::{ChannelBinding, Identity};
use sasl::secret::{Pbkdf2Sha1, Pbkdf2Sha256, Plain};
use sasl::server::mechanisms::{Plain as PlainMech, Scram};
use sasl::server::{Mechanism, Provider, ProviderError, Response, Validator, ValidatorError};

use super::db::*;
use super::kdf::{Job as KdfJob, Notify};
use super::scram::*;

/// Adapter giving the `sasl` crate's server mechanisms access to an [`AuthDb`].
#[derive(Clone)]
pub(crate) struct DbProvider(AuthDb);

impl Validator<Plain> for DbProvider {
    fn validate(&self, identity: &Identity, value: &Plain) -> Result<(), ValidatorError> {
        match identity {
            Identity::Username(u) if self.0.check_password(u, &value.0) => Ok(()),
            _ => Err(ValidatorError::AuthenticationFailed),
        }
    }
}

impl Provider<Pbkdf2Sha256> for DbProvider {
    fn provide(&self, identity: &Identity) -> Result<Pbkdf2Sha256, ProviderError> {
        let s = self
            .0
            .scram_secret(identity, ScramHash::Sha256)
            .ok_or(ProviderError::AuthenticationFailed)?;
        Ok(Pbkdf2Sha256 {
            salt: s.salt,
            iterations: s.iterations,
            digest: s.key,
        })
    }
}

impl Validator<Pbkdf2Sha256> for DbProvider {
    fn validate(&self, identity: &Identity, _: &Pbkdf2Sha256) -> Result<(), ValidatorError> {
        // Not called by the SCRAM server (it checks the proof itself); required by the trait.
        self.0
            .entry(identity)
            .map(|_| ())
            .ok_or(ValidatorError::AuthenticationFailed)
    }
}

impl Provider<Pbkdf2Sha1> for DbProvider {
    fn provide(&self, identity: &Identity) -> Result<Pbkdf2Sha1, ProviderError> {
        let s = self
            .0
            .scram_secret(identity, ScramHash::Sha1)
            .ok_or(ProviderError::AuthenticationFailed)?;
        Ok(Pbkdf2Sha1 {
            salt: s.salt,
            iterations: s.iterations,
            digest: s.key,
        })
    }
}

impl Validator<Pbkdf2Sha1> for DbProvider {
    fn validate(&self, identity: &Identity, _: &Pbkdf2Sha1) -> Result<(), ValidatorError> {
        // Not called by the SCRAM server (it checks the proof itself); required by the trait.
        self.0
            .entry(identity)
            .map(|_| ())
            .ok_or(ValidatorError::AuthenticationFailed)
    }
}

/// The outcome of one SASL exchange step, for the binary protocol to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// More to do: answer status 0x21 (auth continue) with this body; the client
    /// replies with `SASL_STEP`.
    Continue(Vec<u8>),
    /// Authenticated: answer status 0 with this body ([`AUTHENTICATED`], as memcached).
    Success(Vec<u8>),
    /// Failed (wrong credentials, unknown user or mechanism, malformed message, or a
    /// step after the exchange ended): answer status 0x20 `Auth failure.`. The
    /// connection may retry with a new `SASL_AUTH`.
    Failure,
    /// The password's check waits for its turn in the derivation queue (only for
    /// an exchange started with a notify, on a server that defers derivations): no
    /// answer yet; the notify is called when [`AuthSession::poll`] has it.
    Pending,
}

pub(crate) enum State {
    /// PLAIN started with no initial response: the next step carries it.
    PlainWaiting,
    /// SCRAM started with no initial response: the next step is the client-first message.
    ScramWaiting(ScramHash),
    /// SCRAM waiting for the client-final message, which must start with the bytes
    /// kept here (`c=<channel binding>,r=<nonce>,`, see [`final_prefix`]).
    Scram256(Box<Scram<Sha256, DbProvider>>, Vec<u8>),
    /// As `Scram256`.
    Scram1(Box<Scram<Sha1, DbProvider>>, Vec<u8>),
    /// The server-final message was sent as a challenge (memcached with Cyrus SASL
    /// sends it with "continue"); an empty step completes the exchange.
    AwaitAck(String),
    /// A PLAIN password waits for its derivation: the job, the user and password.
    PlainQueued(Arc<KdfJob>, String, String),
    Done,
}

/// One SASL exchange on one connection. Start it with `SASL_AUTH`
/// ([`AuthSession::start`]), feed each `SASL_STEP` to [`AuthSession::step`].
pub struct AuthSession {
    pub(crate) db: AuthDb,
    pub(crate) state: State,
    pub(crate) user: Option<String>,
    /// Set by [`AuthSession::start_notified`]: PLAIN derivations are queued.
    pub(crate) notify: Option<Notify>,
    /// The connection failed an exchange before (its derivations queue behind
    /// first attempts).
    pub(crate) retry: bool,
}

impl std::fmt::Debug for AuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSession")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl AuthSession {
    /// Starts an exchange for mechanism `mech` (the `SASL_AUTH` key, matched
    /// case-insensitively against [`AuthDb::mechanisms`]) with the client's initial
    /// response `initial` (the `SASL_AUTH` value; may be empty).
    pub fn start(db: &AuthDb, mech: &[u8], initial: &[u8]) -> (AuthSession, Step) {
        Self::start_notified(db, mech, initial, None, false)
    }

    /// [`AuthSession::start`] for a server connection: with `notify`, and a database
    /// that defers derivations, a PLAIN password that needs PBKDF2 is queued
    /// ([`Step::Pending`]; `notify` is called when [`AuthSession::poll`] has the
    /// answer). `retry`: this connection failed an exchange before.
    pub fn start_notified(
        db: &AuthDb,
        mech: &[u8],
        initial: &[u8],
        notify: Option<Notify>,
        retry: bool,
    ) -> (AuthSession, Step) {
        let mut s = AuthSession {
            db: db.clone(),
            state: State::Done,
            user: None,
            notify,
            retry,
        };
        let offered = db
            .mechanisms()
            .split(' ')
            .any(|m| m.as_bytes().eq_ignore_ascii_case(mech));
        let state = if !offered {
            None
        } else if mech.eq_ignore_ascii_case(b"PLAIN") {
            Some(State::PlainWaiting)
        } else if mech.eq_ignore_ascii_case(b"SCRAM-SHA-256") {
            Some(State::ScramWaiting(ScramHash::Sha256))
        } else if mech.eq_ignore_ascii_case(b"SCRAM-SHA-1") {
            Some(State::ScramWaiting(ScramHash::Sha1))
        } else {
            None
        };
        let Some(state) = state else {
            return (s, Step::Failure);
        };
        s.state = state;
        if initial.is_empty() {
            // The client sends its first message in the next step.
            return (s, Step::Continue(Vec::new()));
        }
        let step = s.step(initial);
        (s, step)
    }

    /// Feeds one client message (a `SASL_STEP` value) to the exchange.
    pub fn step(&mut self, data: &[u8]) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Done => Step::Failure,
            State::PlainWaiting => self.plain(data),
            State::ScramWaiting(hash) => self.scram_first(hash, data),
            // RFC 5802 §5.1: the client-final message must repeat the channel binding
            // header and the combined nonce; the sasl crate rebuilds the signed
            // message from its own copies and checks neither.
            State::Scram256(_, prefix) | State::Scram1(_, prefix) if !data.starts_with(&prefix) => {
                Step::Failure
            }
            State::Scram256(mut m, _) => self.scram_final(m.respond(data)),
            State::Scram1(mut m, _) => self.scram_final(m.respond(data)),
            State::AwaitAck(user) => {
                if data.is_empty() {
                    self.user = Some(user);
                    Step::Success(AUTHENTICATED.to_vec())
                } else {
                    Step::Failure
                }
            }
            // A step while the password is checked: the exchange fails.
            State::PlainQueued(..) => Step::Failure,
        }
    }

    /// After [`Step::Pending`]: the answer once the derivation is done (`None`
    /// while it waits). A password that matched is remembered, as
    /// [`AuthDb::check_password`] does.
    pub fn poll(&mut self) -> Option<Step> {
        let State::PlainQueued(job, ..) = &self.state else {
            return None;
        };
        let matched = job.result()?;
        let State::PlainQueued(_, user, password) = std::mem::replace(&mut self.state, State::Done)
        else {
            return None;
        };
        if !matched {
            return Some(Step::Failure);
        }
        self.db.remember_verified(&user, &password);
        self.user = Some(user);
        Some(Step::Success(AUTHENTICATED.to_vec()))
    }

    /// Whether a PLAIN password waits for its derivation.
    pub fn is_pending(&self) -> bool {
        matches!(self.state, State::PlainQueued(..))
    }

    /// The authenticated user, once a step returned [`Step::Success`].
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the exchange is over (succeeded or failed); further steps fail.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn plain(&mut self, data: &[u8]) -> Step {
        // authzid NUL authcid NUL password. The sasl crate ignores authzid; we allow
        // only none or the user itself (no proxy authorization).
        let mut parts = data.split(|&b| b == 0);
        let (Some(authzid), Some(authcid), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Step::Failure;
        };
        if !authzid.is_empty() && authzid != authcid {
            return Step::Failure;
        }
        if let (Some(queue), Some(notify)) = (self.db.inner.queue.get(), self.notify.clone()) {
            // As the sasl crate's PLAIN: user and password are UTF-8.
            let mut parts = data.split(|&b| b == 0).skip(1);
            let (Some(Ok(user)), Some(Ok(password))) = (
                parts.next().map(std::str::from_utf8),
                parts.next().map(std::str::from_utf8),
            ) else {
                return Step::Failure;
            };
            let db = self.db.clone();
            return match db.check_password_queued(queue, user, password, self.retry, notify) {
                Ok(true) => {
                    self.user = Some(user.to_string());
                    Step::Success(AUTHENTICATED.to_vec())
                }
                Ok(false) => Step::Failure,
                Err(job) => {
                    self.state = State::PlainQueued(job, user.to_string(), password.to_string());
                    Step::Pending
                }
            };
        }
        let mut mech = PlainMech::new(DbProvider(self.db.clone()));
        match mech.respond(data) {
            Ok(Response::Success(Identity::Username(u), _)) => {
                self.user = Some(u);
                Step::Success(AUTHENTICATED.to_vec())
            }
            _ => Step::Failure,
        }
    }

    fn scram_first(&mut self, hash: ScramHash, data: &[u8]) -> Step {
        // gs2 header: "n,," (client does no channel binding), "y,," (client could but
        // thinks we cannot) or "p=..." (binding required: we offer no -PLUS, refuse).
        // sasl 0.5's server only accepts "n" when configured *with* channel binding and
        // only "y" when configured without; with empty tls-unique data the message it
        // checks ("c=" of the header plus no binding data) is the same as for "n,,".
        let cb = match data.first() {
            Some(b'n') => ChannelBinding::TlsUnique(Vec::new()),
            Some(b'y') => ChannelBinding::None,
            _ => return Step::Failure,
        };
        if !authzid_ok(data) {
            return Step::Failure;
        }
        let provider = DbProvider(self.db.clone());
        let (result, state) = match hash {
            ScramHash::Sha256 => {
                let mut m = Box::new(Scram::<Sha256, _>::new(provider, cb));
                (m.respond(data), State::Scram256(m, Vec::new()))
            }
            ScramHash::Sha1 => {
                let mut m = Box::new(Scram::<Sha1, _>::new(provider, cb));
                (m.respond(data), State::Scram1(m, Vec::new()))
            }
        };
        match result {
            Ok(Response::Proceed(challenge)) => {
                let Some(prefix) = final_prefix(data, &challenge) else {
                    return Step::Failure;
                };
                self.state = match state {
                    State::Scram256(m, _) => State::Scram256(m, prefix),
                    State::Scram1(m, _) => State::Scram1(m, prefix),
                    other => other,
                };
                Step::Continue(challenge)
            }
            _ => Step::Failure,
        }
    }

    fn scram_final(&mut self, result: Result<Response, sasl::server::MechanismError>) -> Step {
        match result {
            Ok(Response::Success(Identity::Username(u), server_final)) => {
                self.state = State::AwaitAck(u);
                Step::Continue(server_final)
            }
            _ => Step::Failure,
        }
    }
}

/// What a SCRAM client-final message must start with: `c=` and the base64 of the
/// client-first message's gs2 header (we do no channel binding, so nothing follows
/// it), then `r=` and the combined nonce the server-first message (`challenge`)
/// announced. `None` if either message is malformed.
pub(crate) fn final_prefix(client_first: &[u8], challenge: &[u8]) -> Option<Vec<u8>> {
    // gs2 header: everything up to and including the second comma ("n,," / "n,a=x,").
    let first_comma = client_first.iter().position(|&b| b == b',')?;
    let second = first_comma
        + 1
        + client_first[first_comma + 1..]
            .iter()
            .position(|&b| b == b',')?;
    let gs2 = &client_first[..=second];
    let nonce = challenge
        .split(|&b| b == b',')
        .find_map(|f| f.strip_prefix(b"r="))?;
    let mut prefix = b"c=".to_vec();
    prefix.extend_from_slice(BASE64.encode(gs2).as_bytes());
    prefix.extend_from_slice(b",r=");
    prefix.extend_from_slice(nonce);
    prefix.push(b',');
    Some(prefix)
}

/// A SCRAM client-first message's authzid (`n,a=NAME,n=USER,...`) must be absent or
/// equal to the user: the `sasl` crate ignores it and we do no proxy authorization.
pub(crate) fn authzid_ok(data: &[u8]) -> bool {
    let mut fields = data.split(|&b| b == b',');
    let _cb = fields.next();
    let Some(authzid) = fields.next() else {
        return false;
    };
    if authzid.is_empty() {
        return true;
    }
    let Some(name) = authzid.strip_prefix(b"a=") else {
        return false;
    };
    let user = fields.next().and_then(|f| f.strip_prefix(b"n="));
    user == Some(name)
}

/// How many failed `SASL_AUTH`/`SASL_STEP` exchanges one connection may make before
/// the server closes it and logs the failures (memcached itself never closes; the
/// issue asks for a bound so one connection cannot guess passwords forever).
pub const MAX_FAILURES_PER_CONNECTION: u32 = 5;
