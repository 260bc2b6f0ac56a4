//! What the SASL pieces share: SCRAM's hashes and key derivation, the iteration
//! limits, constant-time comparison, memcached's success body.

use sasl::secret::{Pbkdf2Sha1, Pbkdf2Sha256};

/// Iteration count used when a SCRAM exchange is served from a plain password,
/// and the default of `ferrocache passwd` (RFC 7677's minimum recommendation).
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Largest iteration count accepted in a credentials file or by `passwd`: each
/// authentication attempt costs this many HMACs.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Largest credentials file read, in bytes.
pub(crate) const MAX_FILE_BYTES: u64 = 64 << 20;

/// The body memcached sends with a successful `SASL_AUTH`/`SASL_STEP`.
pub const AUTHENTICATED: &[u8] = b"Authenticated";

/// The salt length `ferrocache passwd` and on-the-fly derivation use, in bytes.
pub(crate) const SALT_LEN: usize = 16;

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
    pub(crate) fn key_len(self) -> usize {
        match self {
            ScramHash::Sha256 => 32,
            ScramHash::Sha1 => 20,
        }
    }

    /// PBKDF2 of `password` with this hash; `None` only if the `sasl` crate refuses.
    pub(crate) fn derive(self, password: &str, salt: &[u8], iterations: u32) -> Option<Vec<u8>> {
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
