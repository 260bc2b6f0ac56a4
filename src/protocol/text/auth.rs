//! Framing of memcached's ASCII authentication (`-Y`), as 1.6.18's
//! `try_read_command_asciiauth` reads it. Until a connection authenticates, every
//! request is read by [`parse_auth`] instead of [`super::parse`]:
//!
//! ```text
//! set <any key> <any flags> <any exptime> <bytes>\r\n     the line (>= 5 words)
//! <user> <password>\r\n                                   exactly <bytes> + 2 bytes
//! ```
//!
//! - A line that is not `set` with at least five words and a valid `<bytes>` (5th
//!   word, memcached's `safe_strtoul`) is answered `CLIENT_ERROR unauthenticated`
//!   and consumed. So is any other command: nothing but this `set` is served.
//! - No `\n` within the first 2048 bytes closes the connection; so does a data block
//!   that cannot fit memcached's 16 KiB read buffer.
//! - The data block must end in `\r\n` (`CLIENT_ERROR bad command line termination`)
//!   and hold at least two words (`CLIENT_ERROR bad authentication token format`);
//!   the first two are the user and the password. `noreply` is not honoured.
//!
//! Like the rest of the parser this is pure: the executor checks the credentials.

use super::Tokens;
use crate::num::strtoul;

/// Longest line without a `\n` before the connection is closed.
const LINE_MAX: usize = 2048;
/// memcached's read buffer: a data block that cannot fit closes the connection.
const BLOCK_MAX: usize = 16 * 1024;

/// What [`parse_auth`] found at the front of an unauthenticated connection's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthParse<'a> {
    /// Not a whole request yet.
    Incomplete,
    /// Close the connection without a reply.
    Close,
    /// Answer `reply` (no `\r\n`) and drop `consumed` bytes.
    Refuse {
        /// memcached's error line.
        reply: &'static str,
        /// Bytes used.
        consumed: usize,
    },
    /// Credentials to check; `consumed` bytes used.
    Credentials {
        /// First word of the data block.
        user: &'a [u8],
        /// Second word.
        password: &'a [u8],
        /// Bytes used.
        consumed: usize,
    },
}

/// memcached's reply to anything before authentication.
pub const UNAUTHENTICATED: &str = "CLIENT_ERROR unauthenticated";
/// Reply to a data block not ending in `\r\n`.
pub const BAD_TERMINATION: &str = "CLIENT_ERROR bad command line termination";
/// Reply to a data block with fewer than two words.
pub const BAD_TOKEN_FORMAT: &str = "CLIENT_ERROR bad authentication token format";
/// Reply to right credentials (the connection is then served normally).
pub const AUTH_SUCCESS: &str = "STORED";
/// Reply to wrong credentials.
pub const AUTH_FAILURE: &str = "CLIENT_ERROR authentication failure";

/// Cuts a C string at its first NUL.
fn c_str(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(&[])
}

/// Parses the authentication request at the front of `buf`.
pub fn parse_auth(buf: &[u8]) -> AuthParse<'_> {
    if buf.len() < 2 {
        return AuthParse::Incomplete;
    }
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > LINE_MAX {
            AuthParse::Close
        } else {
            AuthParse::Incomplete
        };
    };
    let block_at = nl + 1;
    // The `\r` stays on the line, as in memcached; number parsing stops at it.
    let t = Tokens::split(c_str(&buf[..nl]));
    let size = match (t.count() >= 6 && t.w(0) == b"set", strtoul(t.w(4))) {
        (true, Some(n)) => n as usize,
        _ => {
            return AuthParse::Refuse {
                reply: UNAUTHENTICATED,
                consumed: block_at,
            }
        }
    };
    let need = size + 2;
    let Some(block) = buf.get(block_at..block_at + need) else {
        return if need > BLOCK_MAX && buf.len() - block_at >= BLOCK_MAX {
            AuthParse::Close
        } else {
            AuthParse::Incomplete
        };
    };
    let consumed = block_at + need;
    if &block[size..] != b"\r\n" {
        return AuthParse::Refuse {
            reply: BAD_TERMINATION,
            consumed,
        };
    }
    let words = Tokens::split(c_str(&block[..size]));
    if words.count() < 3 {
        return AuthParse::Refuse {
            reply: BAD_TOKEN_FORMAT,
            consumed,
        };
    }
    AuthParse::Credentials {
        user: words.w(0),
        password: words.w(1),
        consumed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(reply: &'static str, consumed: usize) -> AuthParse<'static> {
        AuthParse::Refuse { reply, consumed }
    }

    #[test]
    fn credentials() {
        let b = b"set a 0 0 12\r\nalice secret\r\nget a\r\n";
        assert_eq!(
            parse_auth(b),
            AuthParse::Credentials {
                user: b"alice",
                password: b"secret",
                consumed: 28
            }
        );
        // Extra words, runs of spaces, a bare `\n` line end and noreply are fine.
        let b = b"set  k 1 2 15 noreply\nbob  pw2 zzzz x\r\n";
        assert!(matches!(
            parse_auth(b),
            AuthParse::Credentials {
                user: b"bob",
                password: b"pw2",
                ..
            }
        ));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_auth(b"get foo\r\n"), refuse(UNAUTHENTICATED, 9));
        assert_eq!(parse_auth(b"x\n"), refuse(UNAUTHENTICATED, 2));
        assert_eq!(parse_auth(b"SET a 0 0 1\r\n"), refuse(UNAUTHENTICATED, 13));
        assert_eq!(parse_auth(b"set a 0 0\r\n"), refuse(UNAUTHENTICATED, 11));
        assert_eq!(parse_auth(b"set a 0 0 x\r\n"), refuse(UNAUTHENTICATED, 13));
        assert_eq!(parse_auth(b"set a 0 0 -1\r\n"), refuse(UNAUTHENTICATED, 14));
        assert_eq!(
            parse_auth(b"set a 0 0 5\r\nalice\r\n"),
            refuse(BAD_TOKEN_FORMAT, 20)
        );
        assert_eq!(
            parse_auth(b"set a 0 0 12\r\nalice secret\nX"),
            refuse(BAD_TERMINATION, 28)
        );
    }

    #[test]
    fn waiting_and_closing() {
        assert_eq!(parse_auth(b"s"), AuthParse::Incomplete);
        assert_eq!(parse_auth(b"set a 0 0 12\r"), AuthParse::Incomplete);
        assert_eq!(parse_auth(b"set a 0 0 12\r\nalice"), AuthParse::Incomplete);
        assert_eq!(parse_auth(&[b'x'; 2048]), AuthParse::Incomplete);
        assert_eq!(parse_auth(&[b'x'; 2049]), AuthParse::Close);
        let mut big = b"set a 0 0 100000\r\n".to_vec();
        big.resize(big.len() + 16 * 1024 - 1, b'y');
        assert_eq!(parse_auth(&big), AuthParse::Incomplete);
        big.push(b'y');
        assert_eq!(parse_auth(&big), AuthParse::Close);
    }
}
