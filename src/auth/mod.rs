//! SASL authentication: the credentials file and per-connection SASL sessions.
//!
//! This module is pure: it knows nothing of sockets or the binary protocol. The
//! binary protocol's `SASL_LIST_MECHS`, `SASL_AUTH` and `SASL_STEP` map onto
//! [`AuthDb::mechanisms`], [`AuthSession::start`] and [`AuthSession::step`]; a
//! [`Step`] maps onto a response status (see its documentation).
//!
//! # Credentials file
//!
//! The file is named by the `MEMCACHED_SASL_PWDB` environment variable, as in
//! memcached, and it accepts memcached's plain-text password database: one
//! `user:password` per line. memcached compares the password up to the next `:`,
//! end of line, `\r` or end of file, so anything after a second `:` is ignored
//! ("additional tokens"); so it is here. The rules:
//!
//! - Lines end with `\n`; a `\r` before it is dropped; the last line needs no newline.
//! - Empty and all-whitespace lines are skipped. A line whose first character is
//!   `#` is a comment (memcached has no comments; there `#x:y` would be user `#x`).
//! - `user:secret[:ignored...]`. The user is everything before the first `:` and
//!   must not be empty; the secret must not be empty (memcached would accept an
//!   empty password; we refuse to load one).
//! - A secret that starts with `$scram-` is a salted SCRAM entry instead of a
//!   plain password (so a plain password cannot start with `$scram-`):
//!   `$scram-sha-256$<iterations>$<salt, base64>$<salted password, base64>` or the
//!   same with `scram-sha-1`. The salted password is PBKDF2-HMAC-SHA-256 (or -SHA-1)
//!   of the password with that salt and iteration count, 32 (20) bytes: RFC 5802's
//!   `SaltedPassword`, which is what the `sasl` crate's SCRAM server needs. It is not
//!   the password, but it is enough to log in with SCRAM, so the file must stay
//!   private either way. `ferrocache passwd` writes such entries (see [`passwd_main`]).
//! - A user has either one plain password or salted entries (at most one per
//!   hash); anything else is an error, as is a malformed line. Errors name the file
//!   and the 1-based line number. A file with no entries is an error too: the
//!   server refuses to start with `-S` and no usable credentials.
//!
//! Example (bob's line is what `echo builder | ferrocache passwd bob` wrote):
//!
//! ```
//! use ferrocache::auth::{AuthDb, AuthSession, Step, AUTHENTICATED};
//! let file = "\
//! ## memcached-style plain password
//! alice:wonderland
//! bob:$scram-sha-256$4096$TFLi5/f6yEZR7LB3n9CJ7Q==$yNczvwP0CzzmVYDFyTisAJHhWHbW0bHyAhlZWh47T24=
//! ";
//! let db = AuthDb::from_str(file, "example").unwrap();
//! assert_eq!(db.mechanisms(), "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN");
//! let (_, step) = AuthSession::start(&db, b"PLAIN", b"\0bob\0builder");
//! assert_eq!(step, Step::Success(AUTHENTICATED.to_vec()));
//! let (_, step) = AuthSession::start(&db, b"PLAIN", b"\0alice\0wrong");
//! assert_eq!(step, Step::Failure);
//! ```
//!
//! # Mechanisms
//!
//! `SCRAM-SHA-256`, `SCRAM-SHA-1` and `PLAIN`, strongest first (clients built on
//! Cyrus SASL, such as libmemcached and pylibmc, take the strongest they support;
//! bmemcached only speaks `PLAIN`). A plain password serves all three (SCRAM
//! derives the salted password once per user, with a random salt and 4096
//! iterations, and keeps it); a salted entry serves the SCRAM of its hash and also
//! `PLAIN` (the password the client sends is run through PBKDF2 with the stored salt
//! and compared, within the server-wide budget of [`KdfGate`]; a password verified
//! once is then recognised by a keyed digest). Only mechanisms that at least one
//! loaded user can use are listed.
//!
//! Plain passwords and derived keys are compared in constant time ([`ct_eq`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sasl::common::scram::{Sha1, Sha256};
use sasl::common::{ChannelBinding, Identity};
use sasl::secret::{Pbkdf2Sha1, Pbkdf2Sha256, Plain};
use sasl::server::mechanisms::{Plain as PlainMech, Scram};
use sasl::server::{Mechanism, Provider, ProviderError, Response, Validator, ValidatorError};

mod authfile;
mod kdf;
mod passwd;
pub use authfile::{AuthFile, AuthFileError, LiveAuthFile};
pub use kdf::{Job as KdfJob, KdfGate, KdfQueue, Notify};
pub use passwd::passwd_main;

#[cfg(test)]
mod tests;

/// Iteration count used when a SCRAM exchange is served from a plain password,
/// and the default of `ferrocache passwd` (RFC 7677's minimum recommendation).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Largest iteration count accepted in a credentials file or by `passwd`: each
/// authentication attempt costs this many HMACs.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Largest credentials file read, in bytes.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The body memcached sends with a successful `SASL_AUTH`/`SASL_STEP`.
pub const AUTHENTICATED: &[u8] = b"Authenticated";

/// The salt length `ferrocache passwd` and on-the-fly derivation use, in bytes.
const SALT_LEN: usize = 16;

/// Compares two byte strings in time that depends only on their lengths, not on
/// where they differ. Unequal lengths return `false` at once (lengths are not secret
/// here: derived keys have a fixed length, and a password's length is all that leaks).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// A SCRAM hash a salted entry is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
    /// SCRAM-SHA-1 (RFC 5802).
    Sha1,
}

impl ScramHash {
    /// The tag in the credentials file: `scram-sha-256` or `scram-sha-1`.
    pub fn tag(self) -> &'static str {
        match self {
            ScramHash::Sha256 => "scram-sha-256",
            ScramHash::Sha1 => "scram-sha-1",
        }
    }

    /// Parses a tag as written by [`ScramHash::tag`] (case-insensitive).
    pub fn from_tag(tag: &str) -> Option<ScramHash> {
        if tag.eq_ignore_ascii_case("scram-sha-256") {
            Some(ScramHash::Sha256)
        } else if tag.eq_ignore_ascii_case("scram-sha-1") {
            Some(ScramHash::Sha1)
        } else {
            None
        }
    }

    /// Length of the salted password for this hash, in bytes.
    fn key_len(self) -> usize {
        match self {
            ScramHash::Sha256 => 32,
            ScramHash::Sha1 => 20,
        }
    }

    /// PBKDF2 of `password` with this hash; `None` only if the `sasl` crate refuses.
    fn derive(self, password: &str, salt: &[u8], iterations: u32) -> Option<Vec<u8>> {
        match self {
            ScramHash::Sha256 => Pbkdf2Sha256::derive(password, salt, iterations)
                .ok()
                .map(|s| s.digest),
            ScramHash::Sha1 => Pbkdf2Sha1::derive(password, salt, iterations)
                .ok()
                .map(|s| s.digest),
        }
    }
}

/// A stored salted SCRAM secret.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Salted {
    iterations: u32,
    salt: Vec<u8>,
    key: Vec<u8>,
}

/// What one user may log in with.
#[derive(Clone, Debug, Default)]
struct Entry {
    plain: Option<String>,
    sha256: Option<Salted>,
    sha1: Option<Salted>,
}

impl Entry {
    fn salted(&self, hash: ScramHash) -> Option<&Salted> {
        match hash {
            ScramHash::Sha256 => self.sha256.as_ref(),
            ScramHash::Sha1 => self.sha1.as_ref(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    users: HashMap<String, Entry>,
    mechanisms: String,
    /// Per-process random key for the digests below and for unknown users' salts.
    secret: [u8; 32],
    /// SCRAM secrets derived from plain passwords, once per user and hash.
    derived: Mutex<HashMap<(String, ScramHash), Salted>>,
    /// Keyed digest of the last password verified by PBKDF2 per user, so a right
    /// password costs the derivation once, not at every connection.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// The server-wide budget for PBKDF2 on unverified passwords.
    kdf: KdfGate,
    /// A server's derivation queue ([`AuthDb::defer_derivations`]): PLAIN checks
    /// wait their turn there instead of failing when the budget is spent.
    queue: std::sync::OnceLock<KdfQueue>,
}

/// The loaded credentials: which users exist and how each may authenticate.
/// Cheap to clone (shared); safe to use from many threads.
#[derive(Clone, Debug)]
pub struct AuthDb {
    inner: Arc<Inner>,
}

/// Formats one salted entry's secret field (`$scram-sha-256$4096$salt$key`).
pub fn format_salted(hash: ScramHash, iterations: u32, salt: &[u8], key: &[u8]) -> String {
    format!(
        "${}${}${}${}",
        hash.tag(),
        iterations,
        BASE64.encode(salt),
        BASE64.encode(key)
    )
}

/// Derives a salted SCRAM secret field for `password` with a fresh random salt, as
/// `ferrocache passwd` writes it.
pub fn make_salted(hash: ScramHash, password: &str, iterations: u32) -> Result<String, String> {
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(format!("iterations must be 1..={MAX_ITERATIONS}"));
    }
    let salt = random_salt()?;
    let key = hash
        .derive(password, &salt, iterations)
        .ok_or_else(|| "key derivation failed".to_string())?;
    Ok(format_salted(hash, iterations, &salt, &key))
}

fn random_salt() -> Result<Vec<u8>, String> {
    let mut salt = vec![0u8; SALT_LEN];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no random numbers: {e}"))?;
    Ok(salt)
}

/// Parses a `$scram-...` secret field; `Err` is the message for the line.
fn parse_salted(field: &str) -> Result<(ScramHash, Salted), String> {
    let mut parts = field.split('$');
    // The field starts with '$', so the first part is empty.
    let _ = parts.next();
    let tag = parts.next().unwrap_or("");
    let hash = ScramHash::from_tag(tag).ok_or_else(|| {
        format!("unknown salted entry type '{tag}' (scram-sha-256 or scram-sha-1)")
    })?;
    let (Some(iter), Some(salt), Some(key), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "a salted entry is ${}$<iterations>$<salt base64>$<salted password base64>",
            hash.tag()
        ));
    };
    let iterations: u32 = iter
        .parse()
        .ok()
        .filter(|&n| n > 0 && n <= MAX_ITERATIONS)
        .ok_or_else(|| format!("iterations '{iter}' is not a number in 1..={MAX_ITERATIONS}"))?;
    let salt = BASE64
        .decode(salt)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "the salt is not non-empty base64".to_string())?;
    let key = BASE64
        .decode(key)
        .map_err(|_| "the salted password is not base64".to_string())?;
    if key.len() != hash.key_len() {
        return Err(format!(
            "the salted password of a {} entry must be {} bytes, not {}",
            hash.tag(),
            hash.key_len(),
            key.len()
        ));
    }
    Ok((
        hash,
        Salted {
            iterations,
            salt,
            key,
        },
    ))
}

/// Splits a credentials line into user and secret field, or `None` when the line is
/// blank or a comment. Used by the loader and by `passwd` (to find a user's lines).
fn split_line(line: &str) -> Option<Result<(&str, &str), String>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    let Some((user, rest)) = line.split_once(':') else {
        return Some(Err("expected user:password".to_string()));
    };
    if user.is_empty() {
        return Some(Err("empty user name".to_string()));
    }
    let secret = rest.split(':').next().unwrap_or("");
    Some(Ok((user, secret)))
}

impl AuthDb {
    /// Reads and parses a credentials file (format in the module documentation).
    /// Errors name the file and, for bad lines, the line number.
    pub fn load(path: &str) -> Result<AuthDb, String> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{path}: {e}"))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(format!("{path}: larger than {MAX_FILE_BYTES} bytes"));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes_before_newlines(e.as_bytes(), e.utf8_error().valid_up_to());
            format!("{path}:{line}: not UTF-8")
        })?;
        Self::parse(&text, path)
    }

    /// Parses credentials from a string (tests; `name` stands for the file name in errors).
    pub fn from_str(text: &str, name: &str) -> Result<AuthDb, String> {
        Self::parse(text, name)
    }

    fn parse(text: &str, name: &str) -> Result<AuthDb, String> {
        let mut users: HashMap<String, Entry> = HashMap::new();
        for (idx, line) in text.split('\n').enumerate() {
            let n = idx + 1;
            let (user, secret) = match split_line(line) {
                None => continue,
                Some(Err(m)) => return Err(format!("{name}:{n}: {m}")),
                Some(Ok(x)) => x,
            };
            if secret.is_empty() {
                return Err(format!("{name}:{n}: empty password for user '{user}'"));
            }
            let entry = users.entry(user.to_string()).or_default();
            let dup = || {
                format!(
                    "{name}:{n}: user '{user}' already has an entry (allowed: one plain \
                     password, or one salted entry per hash)"
                )
            };
            if secret.starts_with("$scram-") {
                let (hash, salted) =
                    parse_salted(secret).map_err(|m| format!("{name}:{n}: {m}"))?;
                if entry.plain.is_some() {
                    return Err(dup());
                }
                let slot = match hash {
                    ScramHash::Sha256 => &mut entry.sha256,
                    ScramHash::Sha1 => &mut entry.sha1,
                };
                if slot.is_some() {
                    return Err(dup());
                }
                *slot = Some(salted);
            } else {
                if entry.plain.is_some() || entry.sha256.is_some() || entry.sha1.is_some() {
                    return Err(dup());
                }
                entry.plain = Some(secret.to_string());
            }
        }
        if users.is_empty() {
            return Err(format!(
                "{name}: no credentials (expected user:password lines)"
            ));
        }
        let any = |f: fn(&Entry) -> bool| users.values().any(f);
        let mut mechs = Vec::new();
        if any(|e| e.plain.is_some() || e.sha256.is_some()) {
            mechs.push("SCRAM-SHA-256");
        }
        if any(|e| e.plain.is_some() || e.sha1.is_some()) {
            mechs.push("SCRAM-SHA-1");
        }
        mechs.push("PLAIN");
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(|e| format!("no random numbers: {e}"))?;
        Ok(AuthDb {
            inner: Arc::new(Inner {
                users,
                mechanisms: mechs.join(" "),
                secret,
                derived: Mutex::new(HashMap::new()),
                verified: Mutex::new(HashMap::new()),
                kdf: KdfGate::default(),
                queue: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The space-separated mechanism list `SASL_LIST_MECHS` answers, strongest first,
    /// e.g. `SCRAM-SHA-256 SCRAM-SHA-1 PLAIN`.
    pub fn mechanisms(&self) -> &str {
        &self.inner.mechanisms
    }

    /// Number of users loaded.
    pub fn len(&self) -> usize {
        self.inner.users.len()
    }

    /// Whether no users are loaded (never true for a successfully loaded file).
    pub fn is_empty(&self) -> bool {
        self.inner.users.is_empty()
    }

    fn entry(&self, identity: &Identity) -> Option<&Entry> {
        match identity {
            Identity::Username(u) => self.inner.users.get(u),
            Identity::None => None,
        }
    }

    /// Checks a plain password for `user` (PLAIN), in constant time against a plain
    /// entry or by PBKDF2 against a salted one. A password verified by PBKDF2 before
    /// is recognised by its keyed digest without deriving again; any other costs a
    /// derivation from the server-wide budget ([`KdfGate`]), and fails without one.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(e) = self.inner.users.get(user) else {
            return false;
        };
        if let Some(p) = &e.plain {
            return ct_eq(p.as_bytes(), password.as_bytes());
        }
        for hash in [ScramHash::Sha256, ScramHash::Sha1] {
            if let Some(s) = e.salted(hash) {
                let digest = self.keyed_digest(&[&s.salt, password.as_bytes()]);
                if let Some(seen) = self.inner.verified.lock().get(user) {
                    if ct_eq(seen, &digest) {
                        return true;
                    }
                }
                let Some(_permit) = self.inner.kdf.acquire(s.iterations) else {
                    // A flood refuses thousands a second: log the first of every 1,000.
                    let n = self.inner.kdf.refused();
                    if n % 1000 == 1 {
                        log::warn!(
                            "SASL: password check for '{user}' refused: PBKDF2 budget spent \
                             ({n} refused so far)"
                        );
                    }
                    return false;
                };
                let ok = hash
                    .derive(password, &s.salt, s.iterations)
                    .is_some_and(|k| ct_eq(&k, &s.key));
                if ok {
                    self.inner.verified.lock().insert(user.to_string(), digest);
                }
                return ok;
            }
        }
        false
    }

    /// Password checks refused for lack of PBKDF2 budget so far (or, with
    /// [`AuthDb::defer_derivations`], because the queue was full).
    pub fn kdf_refused(&self) -> usize {
        self.inner.kdf.refused() + self.inner.queue.get().map_or(0, KdfQueue::refused)
    }

    /// Starts the derivation queue and its thread (a server does, once): from then
    /// on a PLAIN exchange started with a [`Notify`] ([`AuthSession::start_notified`])
    /// that needs PBKDF2 waits for its turn ([`Step::Pending`]) instead of failing
    /// when the budget is spent (see the `kdf` module).
    pub fn defer_derivations(&self) -> std::io::Result<()> {
        if self.inner.queue.get().is_none() {
            let q = KdfQueue::start()?;
            let _ = self.inner.queue.set(q);
        }
        Ok(())
    }

    /// A PLAIN check as [`AuthDb::check_password`] makes it, except that a
    /// derivation goes to the queue: `Err(job)` to wait for, or `Ok(result)`.
    fn check_password_queued(
        &self,
        queue: &KdfQueue,
        user: &str,
        password: &str,
        retry: bool,
        notify: Notify,
    ) -> Result<bool, Arc<KdfJob>> {
        let Some(e) = self.inner.users.get(user) else {
            return Ok(false);
        };
        if let Some(p) = &e.plain {
            return Ok(ct_eq(p.as_bytes(), password.as_bytes()));
        }
        for hash in [ScramHash::Sha256, ScramHash::Sha1] {
            if let Some(s) = e.salted(hash) {
                let digest = self.keyed_digest(&[&s.salt, password.as_bytes()]);
                if let Some(seen) = self.inner.verified.lock().get(user) {
                    if ct_eq(seen, &digest) {
                        return Ok(true);
                    }
                }
                let what = kdf::Derivation {
                    hash,
                    password: password.to_string(),
                    salt: s.salt.clone(),
                    iterations: s.iterations,
                    key: s.key.clone(),
                };
                return match queue.submit(what, retry, notify) {
                    Some(job) => Err(job),
                    None => {
                        let n = queue.refused();
                        if n % 1000 == 1 {
                            log::warn!(
                                "SASL: password check for '{user}' refused: the derivation \
                                 queue is full ({n} refused so far)"
                            );
                        }
                        Ok(false)
                    }
                };
            }
        }
        Ok(false)
    }

    /// Remembers that `password` was verified for `user` (after a queued check).
    fn remember_verified(&self, user: &str, password: &str) {
        let Some(e) = self.inner.users.get(user) else {
            return;
        };
        let salt = [ScramHash::Sha256, ScramHash::Sha1]
            .into_iter()
            .find_map(|h| e.salted(h));
        if let Some(s) = salt {
            let digest = self.keyed_digest(&[&s.salt, password.as_bytes()]);
            self.inner.verified.lock().insert(user.to_string(), digest);
        }
    }

    /// SHA-256 of the per-process secret followed by `parts`.
    fn keyed_digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        use sha2::{Digest, Sha256 as Sha256Hash};
        let mut h = Sha256Hash::new();
        h.update(self.inner.secret);
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    /// The salted secret for a SCRAM exchange: stored, or derived from a plain
    /// password once per user and hash (a random salt, kept for the process's life).
    ///
    /// An unknown user gets a random key and a salt that is fixed per name (a keyed
    /// digest of it), so the exchange goes on and fails at the proof, like a wrong
    /// password, and the first message does not tell whether a user exists.
    fn scram_secret(&self, identity: &Identity, hash: ScramHash) -> Option<Salted> {
        let Some(e) = self.entry(identity) else {
            let name = match identity {
                Identity::Username(u) => u.as_bytes(),
                Identity::None => b"",
            };
            let mut key = vec![0u8; hash.key_len()];
            getrandom::getrandom(&mut key).ok()?;
            let salt = self.keyed_digest(&[b"unknown-user-salt", hash.tag().as_bytes(), name]);
            return Some(Salted {
                iterations: DEFAULT_ITERATIONS,
                salt: salt[..SALT_LEN].to_vec(),
                key,
            });
        };
        if let Some(s) = e.salted(hash) {
            return Some(s.clone());
        }
        let p = e.plain.as_ref()?;
        let Identity::Username(user) = identity else {
            return None;
        };
        let mut derived = self.inner.derived.lock();
        if let Some(s) = derived.get(&(user.clone(), hash)) {
            return Some(s.clone());
        }
        let salt = random_salt().ok()?;
        let key = hash.derive(p, &salt, DEFAULT_ITERATIONS)?;
        let s = Salted {
            iterations: DEFAULT_ITERATIONS,
            salt,
            key,
        };
        derived.insert((user.clone(), hash), s.clone());
        Some(s)
    }
}

fn bytes_before_newlines(bytes: &[u8], upto: usize) -> usize {
    bytes.iter().take(upto).filter(|&&b| b == b'\n').count()
}

/// Adapter giving the `sasl` crate's server mechanisms access to an [`AuthDb`].
#[derive(Clone)]
struct DbProvider(AuthDb);

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

enum State {
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
    db: AuthDb,
    state: State,
    user: Option<String>,
    /// Set by [`AuthSession::start_notified`]: PLAIN derivations are queued.
    notify: Option<Notify>,
    /// The connection failed an exchange before (its derivations queue behind
    /// first attempts).
    retry: bool,
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
fn final_prefix(client_first: &[u8], challenge: &[u8]) -> Option<Vec<u8>> {
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
fn authzid_ok(data: &[u8]) -> bool {
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

/// What a server authenticates clients against: nothing (both `None`), SASL
/// credentials (`-S`) or an ASCII token file (`-Y`).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// `-S`: the SASL credentials.
    pub sasl: Option<AuthDb>,
    /// `-Y`: the ASCII authentication file (reloaded on SIGHUP).
    pub ascii: Option<LiveAuthFile>,
    /// `-Z`: the certificates connections are encrypted with, and the CA client
    /// certificates are verified against (reloaded by `refresh_certs` and SIGHUP).
    pub tls: Option<std::sync::Arc<crate::tls::TlsContext>>,
}

/// The environment variable naming the credentials file, as in memcached.
pub const PWDB_ENV: &str = "MEMCACHED_SASL_PWDB";

impl AuthDb {
    /// Loads the credentials a server started with `-S` uses: the file named by
    /// `flag` (a command-line option) if given, else by `$MEMCACHED_SASL_PWDB`.
    /// `Err` (no file named, unreadable, malformed or empty) means: refuse to start.
    pub fn load_for_server(flag: Option<&str>) -> Result<AuthDb, String> {
        let path = match flag {
            Some(p) => p.to_string(),
            None => std::env::var(PWDB_ENV).map_err(|_| {
                format!(
                    "-S needs credentials: give --sasl-pwdb FILE or set {PWDB_ENV} to a \
                     user:password file"
                )
            })?,
        };
        AuthDb::load(&path).map_err(|e| format!("cannot load SASL credentials: {e}"))
    }
}
