//! memcached 1.6.18's meta commands (`mg`, `ms`, `md`, `ma`, `mn`, `me`): parsing a
//! request line (and the `ms` data block) into a [`MetaRequest`]. Pure, like the text
//! parser it is called from: no I/O, no clock, no store.
//!
//! What is decided here, in memcached's order (`process_m*_command` and the flag
//! pre-parse they share):
//! 1. Fewer than 2 words (`mg` alone): `ERROR` (`me` alone: bad command line format).
//! 2. A key longer than 250 bytes: `CLIENT_ERROR bad command line format`.
//! 3. More than 19 words: `CLIENT_ERROR options flags are too long` (`mg`) or
//!    `... options flags too long` (the others).
//! 4. `ms`: a missing or bad `<datalen>` (not an `i32`, or negative):
//!    `CLIENT_ERROR bad command line format`; nothing is swallowed.
//! 5. The flags, left to right, by their first byte: a repeated flag (or a byte above
//!    126) is `CLIENT_ERROR duplicate flag`, an unknown one `CLIENT_ERROR invalid flag`
//!    (both stop at once); bad numbers (`N T R C J D`, `F`), a bad `M` length and an
//!    undecodable base64 key (`b`) are remembered and the last message wins. `md` and
//!    `ma` answer every flag error with `CLIENT_ERROR invalid or duplicate flag`.
//! 6. `ms`/`ma`: a bad mode (`M`); `md`/`ms`: an opaque (`O`) longer than 32 bytes
//!    (`mg` and `ma` find a long opaque while replying, see the executor).
//! 7. `ms`: an item larger than `-I` (`SERVER_ERROR object too large for cache`, the
//!    key's old value is unlinked). Errors of `ms` after step 4 swallow the data block.
//!
//! The flag words stay available in request order ([`MetaRequest::flag_words`]) so the
//! executor returns flags in the order they were asked for.

pub use super::base64::{base64_decode, base64_encode};
use super::frame::{errors, StoreRefusal, UnlinkKey};
use super::frame::{item_size, Limits, KEY_MAX_LENGTH};
use crate::num;

/// What the meta parser made of the bytes at the front of the read buffer.
pub type Parse<'a> = super::frame::Parse<'a, MetaRequest<'a>>;

/// Most words (command and key included) a meta request may have.
pub const MAX_WORDS: usize = 19;
/// Longest opaque token, `O` included.
pub const MAX_OPAQUE: usize = 32;

/// Error lines of the meta commands (without `\r\n`).
pub mod meta_errors {
    /// A flag byte seen twice, or above 126.
    pub const DUPLICATE: &str = "CLIENT_ERROR duplicate flag";
    /// An unknown flag.
    pub const INVALID: &str = "CLIENT_ERROR invalid flag";
    /// Any flag error of `md` and `ma`.
    pub const INVALID_OR_DUPLICATE: &str = "CLIENT_ERROR invalid or duplicate flag";
    /// A bad number after `N`, `T`, `R` or `C`.
    pub const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
    /// `M` not followed by exactly one byte.
    pub const M_LENGTH: &str = "CLIENT_ERROR incorrect length for M token";
    /// A bad number after `J`.
    pub const BAD_INITIAL: &str = "CLIENT_ERROR invalid numeric initial value";
    /// A bad number after `D`.
    pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta value";
    /// `b` with a key that is not base64.
    pub const BAD_KEY: &str = "CLIENT_ERROR error decoding key";
    /// `mg` with too many words.
    pub const MG_TOO_LONG: &str = "CLIENT_ERROR options flags are too long";
    /// `ms`, `md`, `ma` with too many words.
    pub const TOO_LONG: &str = "CLIENT_ERROR options flags too long";
    /// An `O` token longer than 32 bytes.
    pub const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
    /// `ms` with an `M` mode other than `E A P R S`.
    pub const MS_MODE: &str = "CLIENT_ERROR invalid mode for ms M token";
    /// `ma` with an `M` mode other than `I + D -`.
    pub const MA_MODE: &str = "CLIENT_ERROR invalid mode for ma M token";
}
use meta_errors::*;

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `mg <key> <flags>*`
    Get,
    /// `ms <key> <datalen> <flags>*` and its data block
    Set,
    /// `md <key> <flags>*`
    Delete,
    /// `ma <key> <flags>*`
    Arith,
    /// `mn`
    Noop,
    /// `me <key> [b]`
    Debug,
}

/// `ms` modes (`M` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// `S` (default)
    Set,
    /// `E`
    Add,
    /// `A`
    Append,
    /// `P`
    Prepend,
    /// `R`
    Replace,
}

/// What the flags of a request ask for (the values `_meta_flag_preparse` extracts).
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaFlags {
    /// `b`: the key was sent base64-encoded (and is decoded in [`MetaRequest::key`]).
    pub base64: bool,
    /// `q`: suppress the nominal reply.
    pub quiet: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `u`: do not bump the item.
    pub no_bump: bool,
    /// `I`: invalidate (mark stale).
    pub invalidate: bool,
    /// `T`: new TTL as sent.
    pub ttl: Option<i64>,
    /// `N`: vivify on miss with this TTL.
    pub vivify: Option<i64>,
    /// `R`: win the recache token when the remaining TTL is below this.
    pub recache: Option<i64>,
    /// `F`: client flags (0 when absent).
    pub client_flags: u32,
    /// `C`: compare CAS.
    pub cas: Option<u64>,
    /// `D`: delta (1 when absent).
    pub delta: u64,
    /// `J`: initial value (0 when absent).
    pub initial: u64,
    /// `M`: the mode byte (0 when absent).
    pub mode: u8,
}

/// One parsed meta request, borrowing from the read buffer.
#[derive(Debug, Clone)]
pub struct MetaRequest<'a> {
    /// Which command.
    pub kind: MetaKind,
    key_buf: [u8; KEY_MAX_LENGTH],
    key_len: usize,
    words: [&'a [u8]; MAX_WORDS],
    nwords: usize,
    first_flag: usize,
    /// Flags asked for.
    pub flags: MetaFlags,
    /// `ms` mode.
    pub mode: SetMode,
    /// `ma`: increment (true) or decrement.
    pub incr: bool,
    /// `ms`: the data block without `\r\n`.
    pub data: &'a [u8],
    /// `ms`: the data block was not followed by `\r\n` (`CLIENT_ERROR bad data chunk`).
    pub bad_chunk: bool,
}

impl<'a> MetaRequest<'a> {
    /// The key (decoded when `b` was given).
    pub fn key(&self) -> &[u8] {
        &self.key_buf[..self.key_len]
    }

    /// The flag words in request order.
    pub fn flag_words(&self) -> &[&'a [u8]] {
        &self.words[self.first_flag.min(self.nwords)..self.nwords]
    }
}

fn fail<'a>(reply: &'static str, consumed: usize) -> Parse<'a> {
    Parse::Error {
        reply: Some(reply),
        consumed,
        swallow: 0,
        unlink: None,
        refused: None,
    }
}

/// Splits a line into words on spaces; returns how many words there are (all of them)
/// and the first [`MAX_WORDS`].
fn split(line: &[u8]) -> ([&[u8]; MAX_WORDS], usize) {
    let mut words: [&[u8]; MAX_WORDS] = [&[]; MAX_WORDS];
    let mut n = 0;
    for w in line.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if n < MAX_WORDS {
            words[n] = w;
        }
        n += 1;
    }
    (words, n)
}

/// Outcome of the flag pre-parse.
enum Pre {
    Ok,
    /// Stop at once with this message (duplicate / invalid flag).
    Stop(&'static str),
    /// Errors seen; the message is the last one set (None: the command's default).
    Bad(Option<&'static str>),
}

fn preparse(req: &mut MetaRequest<'_>, raw_key: &[u8]) -> Pre {
    let mut seen = [false; 127];
    let mut bad = false;
    let mut msg: Option<&'static str> = None;
    let f = &mut req.flags;
    f.delta = 1;
    for i in req.first_flag..req.nwords {
        let w = req.words[i];
        let o = w[0];
        if o >= 127 || seen[o as usize] {
            return Pre::Stop(DUPLICATE);
        }
        seen[o as usize] = true;
        let arg = &w[1..];
        match o {
            b'b' => {
                f.base64 = true;
                match base64_decode(raw_key, &mut req.key_buf) {
                    Some(n) => req.key_len = n,
                    None => {
                        req.key_len = 0;
                        bad = true;
                        msg = Some(BAD_KEY);
                    }
                }
            }
            b'N' | b'T' | b'R' => match num::strtol(arg) {
                Some(v) => {
                    let v = Some(i64::from(v));
                    match o {
                        b'N' => f.vivify = v,
                        b'T' => f.ttl = v,
                        _ => f.recache = v,
                    }
                }
                None => {
                    bad = true;
                    msg = Some(BAD_TOKEN);
                }
            },
            b'l' | b'h' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' => {}
            b'v' => f.value = true,
            b'u' => f.no_bump = true,
            b'q' => f.quiet = true,
            b'F' => match num::strtoul(arg) {
                Some(v) => f.client_flags = v,
                None => bad = true,
            },
            b'C' => match num::strtoull(arg) {
                Some(v) => f.cas = Some(v),
                None => {
                    bad = true;
                    msg = Some(BAD_TOKEN);
                }
            },
            b'M' => {
                if w.len() != 2 {
                    bad = true;
                    msg = Some(M_LENGTH);
                } else {
                    f.mode = w[1];
                }
            }
            b'J' => match num::strtoull(arg) {
                Some(v) => f.initial = v,
                None => {
                    bad = true;
                    msg = Some(BAD_INITIAL);
                }
            },
            b'D' => match num::strtoull(arg) {
                Some(v) => f.delta = v,
                None => {
                    bad = true;
                    msg = Some(BAD_DELTA);
                }
            },
            b'I' => f.invalidate = true,
            _ => return Pre::Stop(INVALID),
        }
    }
    if bad {
        Pre::Bad(msg)
    } else {
        Pre::Ok
    }
}

/// Parses the meta request whose line is `line` (its bytes end at `next` in `buf`;
/// an `ms` data block follows there). `line` starts with a two-byte word `m?` where
/// `?` is one of `g s d n a e`.
pub fn parse<'a>(buf: &'a [u8], line: &'a [u8], next: usize, limits: &Limits) -> Parse<'a> {
    let (words, n) = split(line);
    let kind = match words[0].get(1) {
        Some(b'g') => MetaKind::Get,
        Some(b's') => MetaKind::Set,
        Some(b'd') => MetaKind::Delete,
        Some(b'a') => MetaKind::Arith,
        Some(b'n') => MetaKind::Noop,
        _ => MetaKind::Debug,
    };
    let mut req = MetaRequest {
        kind,
        key_buf: [0; KEY_MAX_LENGTH],
        key_len: 0,
        words,
        nwords: n.min(MAX_WORDS),
        first_flag: 2,
        flags: MetaFlags::default(),
        mode: SetMode::Set,
        incr: true,
        data: &[],
        bad_chunk: false,
    };
    if kind == MetaKind::Noop {
        return Parse::Request(req, next);
    }
    if n < 2 {
        return if kind == MetaKind::Debug {
            fail(errors::BAD_FORMAT, next)
        } else {
            fail(errors::ERROR, next)
        };
    }
    let raw_key = words[1];
    if raw_key.len() > KEY_MAX_LENGTH {
        return fail(errors::BAD_FORMAT, next);
    }
    req.key_buf[..raw_key.len()].copy_from_slice(raw_key);
    req.key_len = raw_key.len();
    match kind {
        MetaKind::Debug => {
            if n >= 3 && words[2] == b"b" {
                req.flags.base64 = true;
                match base64_decode(raw_key, &mut req.key_buf) {
                    Some(k) => req.key_len = k,
                    None => return fail(errors::BAD_FORMAT, next),
                }
            }
            Parse::Request(req, next)
        }
        MetaKind::Get => {
            if n > MAX_WORDS {
                return fail(MG_TOO_LONG, next);
            }
            match preparse(&mut req, raw_key) {
                Pre::Ok => Parse::Request(req, next),
                Pre::Stop(m) | Pre::Bad(Some(m)) => fail(m, next),
                Pre::Bad(None) => fail(errors::BAD_FORMAT, next),
            }
        }
        MetaKind::Delete | MetaKind::Arith => {
            if n > MAX_WORDS {
                return fail(TOO_LONG, next);
            }
            if !matches!(preparse(&mut req, raw_key), Pre::Ok) {
                return fail(INVALID_OR_DUPLICATE, next);
            }
            if kind == MetaKind::Delete {
                if opaque_too_long(&req) {
                    return fail(OPAQUE_TOO_LONG, next);
                }
            } else {
                match req.flags.mode {
                    0 | b'I' | b'+' => req.incr = true,
                    b'D' | b'-' => req.incr = false,
                    _ => return fail(MA_MODE, next),
                }
            }
            Parse::Request(req, next)
        }
        MetaKind::Set => set(buf, req, raw_key, n, next, limits),
        MetaKind::Noop => Parse::Request(req, next),
    }
}

fn opaque_too_long(req: &MetaRequest<'_>) -> bool {
    req.flag_words()
        .iter()
        .any(|w| w[0] == b'O' && w.len() > MAX_OPAQUE)
}

/// `ms <key> <datalen> <flags>*` and the data block.
fn set<'a>(
    buf: &'a [u8],
    mut req: MetaRequest<'a>,
    raw_key: &'a [u8],
    n: usize,
    next: usize,
    limits: &Limits,
) -> Parse<'a> {
    if n == 2 {
        return fail(errors::BAD_FORMAT, next);
    }
    if n > MAX_WORDS {
        return fail(TOO_LONG, next);
    }
    let Some(vlen) = num::strtol(req.words[2]) else {
        return fail(errors::BAD_FORMAT, next);
    };
    let Ok(vlen) = usize::try_from(vlen) else {
        return fail(errors::BAD_FORMAT, next);
    };
    if vlen > i32::MAX as usize - 2 {
        return fail(errors::BAD_FORMAT, next);
    }
    let total = vlen + 2;
    req.first_flag = 3;
    let refused = |msg: &'static str, unlink: Option<UnlinkKey<'a>>| -> Parse<'a> {
        // The data block is swallowed: consumed now when it is here (or small enough
        // to wait for), else discarded as it arrives.
        match next.checked_add(total) {
            Some(end) if end <= buf.len() && unlink.is_none() => fail(msg, end),
            Some(end)
                if unlink.is_none()
                    && total <= limits.item_size_max
                    && end <= limits.buffer_room =>
            {
                Parse::Partial(end)
            }
            _ => Parse::Error {
                reply: Some(msg),
                consumed: next,
                swallow: total,
                unlink,
                refused: match msg {
                    errors::TOO_LARGE => Some(StoreRefusal::TooLarge),
                    errors::NO_MEMORY => Some(StoreRefusal::NoMemory),
                    _ => None,
                },
            },
        }
    };
    match preparse(&mut req, raw_key) {
        Pre::Ok => {}
        Pre::Stop(m) | Pre::Bad(Some(m)) => return refused(m, None),
        Pre::Bad(None) => return refused(errors::BAD_FORMAT, None),
    }
    req.mode = match req.flags.mode {
        0 | b'S' => SetMode::Set,
        b'E' => SetMode::Add,
        b'A' => SetMode::Append,
        b'P' => SetMode::Prepend,
        b'R' => SetMode::Replace,
        _ => return refused(MS_MODE, None),
    };
    if opaque_too_long(&req) {
        return refused(OPAQUE_TOO_LONG, None);
    }
    let key_len = req.key_len;
    let too_large = item_size(key_len, req.flags.client_flags, total, limits.cas_enabled)
        > limits.item_size_max;
    let frame = next.saturating_add(total);
    let no_room = frame > buf.len() && frame > limits.buffer_room;
    if too_large || no_room {
        // As memcached, the old value goes (a base64 key is decoded when unlinked).
        let unlink = if req.flags.base64 {
            UnlinkKey::Base64(raw_key)
        } else {
            UnlinkKey::Plain(raw_key)
        };
        let msg = if too_large {
            errors::TOO_LARGE
        } else {
            errors::NO_MEMORY
        };
        return refused(msg, Some(unlink));
    }
    let Some(block) = buf.get(next..frame) else {
        return Parse::Partial(frame);
    };
    let (data, crlf) = block.split_at(vlen);
    req.data = data;
    req.bad_chunk = crlf != b"\r\n";
    Parse::Request(req, next + total)
}

#[cfg(test)]
mod tests;
