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
mod authfile;
mod db;
mod kdf;
mod passwd;
mod scram;
mod session;
pub use authfile::{AuthFile, AuthFileError, LiveAuthFile};
pub use db::{format_salted, make_salted, AuthDb, PWDB_ENV};
pub use kdf::{Job as KdfJob, KdfGate, KdfQueue, Notify};
pub use passwd::passwd_main;
pub use scram::{ct_eq, ScramHash, AUTHENTICATED, DEFAULT_ITERATIONS, MAX_ITERATIONS};
pub use session::{AuthSession, Step, MAX_FAILURES_PER_CONNECTION};

#[cfg(test)]
mod tests;
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
