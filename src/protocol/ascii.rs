//! The ASCII front door: one request line, dispatched by its exact first word to the
//! text protocol ([`text`]) or to the meta protocol ([`meta`]), which know nothing of
//! each other.
//!
//! ```text
//!   read buffer ──▶ frame::line ──▶ first word `mg ms md mn ma me` ──▶ meta::parse
//!                                   anything else ───────────────────▶ text::parse_line
//!                   (no `\n` yet: Incomplete, or Close past 2048 bytes)
//! ```

use super::frame::{self, Limits, Line};
use super::meta::{self, MetaRequest};
use super::text::{self, Command};

/// One ASCII request. A meta request is boxed: it carries its decoded key and its
/// flag words inline (~700 bytes), and inline it made every text request's parse
/// result that large (pipelined gets: +4 % CPU per request, `compare` (b)). Shrinking
/// `MetaRequest` (offsets instead of slices, the base64 key decoded when executed)
/// would remove the allocation.
#[derive(Debug)]
pub enum Request<'a> {
    /// A text-protocol command (`get`, `set`, `stats`, ...).
    Text(Command<'a>),
    /// A meta command.
    Meta(Box<MetaRequest<'a>>),
}

/// What the front door made of the bytes at the front of the read buffer.
pub type Parse<'a> = frame::Parse<'a, Request<'a>>;

/// Whether a line's first word is a meta command: exactly two bytes, `m` and one of
/// `g s d n a e` (words are separated by spaces, as the text tokenizer splits them).
#[inline]
fn is_meta(line: &[u8]) -> bool {
    let start = line.iter().position(|&b| b != b' ').unwrap_or(line.len());
    let w = &line[start..];
    let end = w.iter().position(|&b| b == b' ').unwrap_or(w.len());
    matches!(&w[..end], [b'm', b'g' | b's' | b'd' | b'n' | b'a' | b'e'])
}

/// Parses one request from the front of `buf` (see [`text`] for the frame rules and
/// [`meta`] for the meta commands').
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parse<'a> {
    match frame::line(buf) {
        Line::Whole(line, next) if is_meta(line) => {
            meta::parse(buf, line, next, limits).map(|m| Request::Meta(Box::new(m)))
        }
        Line::Whole(line, next) => text::parse_line(buf, line, next, limits).map(Request::Text),
        Line::Incomplete => Parse::Incomplete,
        Line::Close => Parse::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        item_size_max: 1 << 20,
        cas_enabled: true,
        buffer_room: usize::MAX,
    };

    #[test]
    fn dispatch_by_the_exact_first_word() {
        assert!(matches!(
            parse(b"mn\r\n", &L),
            Parse::Request(Request::Meta(_), 4)
        ));
        assert!(matches!(
            parse(b"  mg k v\r\n", &L),
            Parse::Request(Request::Meta(_), 10)
        ));
        assert!(matches!(
            parse(b"get k\r\n", &L),
            Parse::Request(Request::Text(_), 7)
        ));
        // Not meta: longer words, other letters.
        assert!(matches!(
            parse(b"mgx k\r\n", &L),
            Parse::Error {
                reply: Some("ERROR"),
                ..
            }
        ));
        assert!(matches!(
            parse(b"mx k\r\n", &L),
            Parse::Error {
                reply: Some("ERROR"),
                ..
            }
        ));
        assert!(matches!(parse(b"mg k", &L), Parse::Incomplete));
    }
}
