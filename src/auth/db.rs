//! The credentials file (`-S`): plain and salted SCRAM entries, the derived keys of
//! plain passwords, PLAIN checks within the PBKDF2 budget. The format is in the module doc of
//! [`crate::auth`].

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sasl::common::Identity;

use super::kdf::{self, Job as KdfJob, KdfGate, KdfQueue, Notify};
use super::scram::*;

/// A stored salted SCRAM secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Salted {
    pub(crate) iterations: u32,
    pub(crate) salt: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

/// What one user may log in with.
#[derive(Clone, Debug, Default)]
pub(crate) struct Entry {
    pub(crate) plain: Option<String>,
    pub(crate) sha256: Option<Salted>,
    pub(crate) sha1: Option<Salted>,
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
pub(crate) struct Inner {
    pub(crate) users: HashMap<String, Entry>,
    pub(crate) mechanisms: String,
    /// Per-process random key for the digests below and for unknown users' salts.
    pub(crate) secret: [u8; 32],
    /// SCRAM secrets derived from plain passwords, once per user and hash.
    pub(crate) derived: Mutex<HashMap<(String, ScramHash), Salted>>,
    /// Keyed digest of the last password verified by PBKDF2 per user, so a right
    /// password costs the derivation once, not at every connection.
    pub(crate) verified: Mutex<HashMap<String, [u8; 32]>>,
    /// The server-wide budget for PBKDF2 on unverified passwords.
    pub(crate) kdf: KdfGate,
    /// A server's derivation queue ([`AuthDb::defer_derivations`]): PLAIN checks
    /// wait their turn there instead of failing when the budget is spent.
    pub(crate) queue: std::sync::OnceLock<KdfQueue>,
}

/// The loaded credentials: which users exist and how each may authenticate.
/// Cheap to clone (shared); safe to use from many threads.
#[derive(Clone, Debug)]
pub struct AuthDb {
    pub(crate) inner: Arc<Inner>,
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

pub(crate) fn random_salt() -> Result<Vec<u8>, String> {
    let mut salt = vec![0u8; SALT_LEN];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no random numbers: {e}"))?;
    Ok(salt)
}

/// Parses a `$scram-...` secret field; `Err` is the message for the line.
pub(crate) fn parse_salted(field: &str) -> Result<(ScramHash, Salted), String> {
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
pub(crate) fn split_line(line: &str) -> Option<Result<(&str, &str), String>> {
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

    pub(crate) fn entry(&self, identity: &Identity) -> Option<&Entry> {
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
    pub(crate) fn check_password_queued(
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
    pub(crate) fn remember_verified(&self, user: &str, password: &str) {
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
    pub(crate) fn scram_secret(&self, identity: &Identity, hash: ScramHash) -> Option<Salted> {
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

pub(crate) fn bytes_before_newlines(bytes: &[u8], upto: usize) -> usize {
    bytes.iter().take(upto).filter(|&&b| b == b'\n').count()
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
