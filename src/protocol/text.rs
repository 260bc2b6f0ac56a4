//! memcached 1.6.18's text (ASCII) protocol: framing, parsing and reply composition.
//!
//! [`parse`] looks at the front of a connection's read buffer and answers with one
//! [`Parse`]; it is pure (no I/O, clock or store) and allocates nothing. Frame rules,
//! as memcached's `try_read_command_ascii` / `process_command_ascii` apply them:
//!
//! 1. **Line.** A request line ends at the first `\n`. One `\r` before it is dropped,
//!    except when the `\r` is the line's only byte (`"\r\n"` is the one-byte command
//!    `"\r"`). The line is also cut at its first NUL byte (memcached uses C strings).
//! 2. **No `\n` yet.** With at most 2048 bytes buffered: [`Parse::Incomplete`]. With
//!    more: unless the buffer starts with at most 100 spaces and then `"get "` or
//!    `"gets "` (a big multi-get, keep reading), [`Parse::Close`].
//! 3. **Tokens.** Words are separated by single spaces `' '` only (runs of spaces are
//!    one separator; a tab is part of a word). At most 23 words are split off; the
//!    rest of a longer line stays one unsplit remainder, which only multi-gets read
//!    (as more keys). Commands are case-sensitive. An empty line, a blank line or a
//!    first word shorter than 2 bytes is `ERROR`.
//! 4. **Arity.** Each command accepts a fixed range of word counts; outside it the reply
//!    is `ERROR` (never suppressed by `noreply`). A trailing word `noreply` (the last
//!    word, wherever it falls) suppresses the error replies a command gives after its
//!    arity check, and its normal reply (the executor's job).
//! 5. **Keys.** A key longer than 250 bytes is `CLIENT_ERROR bad command line format`
//!    (for multi-gets: any key, anywhere in the line; the whole reply is that error).
//! 6. **Data block.** A storage command (`set add replace append prepend cas`) is
//!    followed by exactly `<bytes>` bytes and `\r\n`. If those two bytes are anything
//!    else, `<bytes> + 2` bytes are consumed anyway and the reply is
//!    `CLIENT_ERROR bad data chunk`; parsing resumes right after them. A block that
//!    would make an item larger than `-I` (memcached's arithmetic: 48-byte header +
//!    key + 1 + 4 if flags != 0 + bytes + 2 + 8 with CAS > item_size_max) is refused
//!    from the line alone: `SERVER_ERROR object too large for cache`, the `<bytes> + 2`
//!    data bytes are swallowed as they arrive, and a `set` unlinks the key's old value.
//!    A bad number on the line is `CLIENT_ERROR bad command line format` and *nothing*
//!    is swallowed: the data line is then read as a command (usually `ERROR`).
//!    A block within `-I` whose frame (line + block) is larger than the connection may
//!    buffer now ([`Limits::buffer_room`]) is refused the same way with
//!    `SERVER_ERROR out of memory storing object` (memcached's answer when it cannot
//!    allocate the item); one that fits, not all here yet, is [`Parse::Partial`] with
//!    the frame's length, so the connection can make room for it at once.
//! 7. **HTTP.** A line whose command is unknown and whose last word starts with
//!    `HTTP/` closes the connection silently.
//!
//! Numbers follow memcached's `safe_strto*` helpers byte for byte (see `num.rs`),
//! including C's leading whitespace, `+`/`-`, and 32-bit truncation of flags, exptime
//! and length.
//!
//! What needs the store or configuration (`-F`, `-A`, stats groups, CAS clashes,
//! out of memory, ...) is left to the executor, which gets a [`Command`].

pub mod auth;
mod keys;
pub mod reply;
#[cfg(test)]
mod tests;
pub mod watch_flags;

use super::frame;
pub use super::frame::{
    errors, Limits, StoreRefusal, UnlinkKey, ITEM_HEADER_SIZE, KEY_MAX_LENGTH,
    MAX_LINE_WITHOUT_NEWLINE,
};
use crate::num;
/// Which storage command: the store's own operation type (`set`, `add`, `replace`,
/// `append`, `prepend`, `cas` with the client's unique), so the executor hands it over
/// unchanged.
pub use crate::op::StoreOp;

pub use keys::Keys;

/// Which `shutdown` form was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// `shutdown`
    Immediate,
    /// `shutdown graceful`
    Graceful,
    /// Anything else: `CLIENT_ERROR invalid shutdown mode` once shutdown is enabled.
    Invalid,
}

/// The argument of `debugtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugTimeArg {
    /// `p`: pause the clock.
    Pause,
    /// `r`: resume the clock.
    Resume,
    /// A number of seconds to move the clock by.
    Shift(i64),
}

/// One parsed text-protocol request.
#[derive(Debug)]
pub enum Command<'a> {
    /// `get`/`gets <key>*`
    Get {
        /// The keys.
        keys: Keys<'a>,
        /// `gets`: return CAS uniques.
        cas: bool,
    },
    /// `gat`/`gats <exptime> <key>*`
    Gat {
        /// New expiry as the client sent it.
        exptime: i64,
        /// The keys.
        keys: Keys<'a>,
        /// `gats`: return CAS uniques.
        cas: bool,
    },
    /// `set`/`add`/`replace`/`append`/`prepend`/`cas` with its data block.
    Store {
        /// Which command.
        cmd: StoreOp,
        /// The key.
        key: &'a [u8],
        /// Client flags.
        flags: u32,
        /// Expiry as the client sent it.
        exptime: i64,
        /// The data block, without its trailing `\r\n`.
        data: &'a [u8],
        /// Suppress the reply.
        noreply: bool,
    },
    /// `delete <key> [0] [noreply]`
    Delete {
        /// The key.
        key: &'a [u8],
        /// Suppress the reply.
        noreply: bool,
    },
    /// `incr`/`decr <key> <delta> [noreply]`
    Arith {
        /// The key.
        key: &'a [u8],
        /// true for incr.
        incr: bool,
        /// The amount.
        delta: u64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`
    Touch {
        /// The key.
        key: &'a [u8],
        /// New expiry as the client sent it.
        exptime: i64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`. memcached counts `cmd_flush` and applies `-F`
    /// ("CLIENT_ERROR flush_all not allowed") before it looks at the delay, so a bad
    /// delay reaches the executor too.
    FlushAll {
        /// Delay as the client sent it, truncated to i32 like memcached (0 when absent;
        /// `<= 0` means now). `None`: the delay is not a number; after the `-F` check
        /// reply `CLIENT_ERROR invalid exptime argument` (unless `noreply`).
        delay: Option<i64>,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `version`
    Version,
    /// `verbosity <level> [noreply]`
    Verbosity {
        /// The level as sent (memcached clamps it to 2).
        level: u32,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `quit`
    Quit,
    /// `refresh_certs [noreply]`: reload the TLS certificates (`-Z`).
    RefreshCerts {
        /// Suppress the `OK` (an error is still sent, as memcached does).
        noreply: bool,
    },
    /// `shutdown [graceful]` (any other form too: memcached checks `-A` first).
    Shutdown {
        /// Which form.
        mode: ShutdownMode,
    },
    /// `cache_memlimit <megabytes> [noreply]`; values below 8 or above 1000000000 are
    /// already answered by the parser.
    CacheMemlimit {
        /// New limit in megabytes (8..=1000000000).
        megabytes: u64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `slabs automove <0|1|2>` or `slabs automove ratio <r>` (bad forms are answered
    /// by the parser).
    SlabsAutomove {
        /// The new level, or
        level: Option<u32>,
        /// the new ratio.
        ratio: Option<f64>,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `stats [group [args]]`: the words after `stats`.
    Stats {
        /// The rest of the line without leading/trailing spaces (e.g. `b"settings"`,
        /// `b"detail dump"`, `b""`); split it into words with [`Keys`].
        args: &'a [u8],
    },
    /// `snapshot [<name>]` (ours): write an online snapshot into `--snapshot-dir`.
    Snapshot {
        /// The file name asked for (`None`: a name with the time in it).
        name: Option<&'a [u8]>,
        /// More words than a name (answered `ERROR`).
        bad: bool,
    },
    /// `debugtime p|r|<seconds>` (memcached's debug builds only; answer `ERROR` when
    /// not enabled). A non-number is already answered `ERROR` by the parser.
    DebugTime {
        /// What to do with the clock.
        arg: DebugTimeArg,
    },
    /// `lru_crawler ...`.
    LruCrawler(CrawlerCmd<'a>),
    /// `config get|set|delete <key>`: ElastiCache's cluster configuration (auto
    /// discovery; see [`super::cluster`]).
    Config(ConfigCmd<'a>),
    /// `watch [types]`: `flags` None when a word is not an event type (`ERROR`).
    Watch {
        /// The event types asked for ([`watch_flags`]).
        flags: Option<u16>,
        /// Suppress error replies.
        noreply: bool,
    },
}

/// A `config` subcommand (ElastiCache's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigCmd<'a> {
    /// `config get <key>`
    Get {
        /// The configuration key (`cluster`).
        key: &'a [u8],
    },
    /// `config set <key> <flags> <bytes> [noreply]` and its data block.
    Set {
        /// The configuration key.
        key: &'a [u8],
        /// The flags as sent (not stored: `config get` answers flags 0, as ElastiCache).
        flags: u32,
        /// The payload, without its `\r\n`.
        data: &'a [u8],
        /// Suppress the reply.
        noreply: bool,
    },
    /// `config delete <key> [noreply]`
    Delete {
        /// The configuration key.
        key: &'a [u8],
        /// Suppress the reply.
        noreply: bool,
    },
}

/// An `lru_crawler` subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlerCmd<'a> {
    /// `crawl <classes>`: reclaim expired items (`all`, or ids separated by commas).
    Crawl(&'a [u8]),
    /// `metadump <classes>`: one line per valid item (`all`, `hash`, or ids).
    Metadump(&'a [u8]),
    /// `tocrawl <n>`: items examined per class in a crawl (0: all).
    ToCrawl(u32),
    /// `sleep <microseconds>` (at most one second) between crawl batches.
    Sleep(u32),
    /// `enable`
    Enable,
    /// `disable`
    Disable,
}

/// What the text parser made of the bytes at the front of the read buffer.
pub type Parse<'a> = frame::Parse<'a, Command<'a>>;

use errors::*;

/// Most words memcached splits a line into, counting its terminal token.
const MAX_TOKENS: usize = 24;

/// A request line split as memcached's `tokenize_command` does.
struct Tokens<'a> {
    /// Up to 23 words.
    words: [&'a [u8]; MAX_TOKENS - 1],
    /// How many words.
    n: usize,
    /// Byte offset in the line just past each word.
    ends: [usize; MAX_TOKENS - 1],
}

impl<'a> Tokens<'a> {
    fn split(line: &'a [u8]) -> Self {
        let mut t = Tokens {
            words: [&[]; MAX_TOKENS - 1],
            n: 0,
            ends: [0; MAX_TOKENS - 1],
        };
        let mut s = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b' ' {
                if s != i {
                    t.words[t.n] = &line[s..i];
                    t.ends[t.n] = i;
                    t.n += 1;
                    if t.n == MAX_TOKENS - 1 {
                        return t;
                    }
                }
                s = i + 1;
            }
        }
        if s < line.len() {
            t.words[t.n] = &line[s..];
            t.ends[t.n] = line.len();
            t.n += 1;
        }
        t
    }

    /// memcached's `ntokens` (words + the terminal token).
    #[inline]
    fn count(&self) -> usize {
        self.n + 1
    }

    /// Word `i`, or empty.
    #[inline]
    fn w(&self, i: usize) -> &'a [u8] {
        if i < self.n {
            self.words[i]
        } else {
            &[]
        }
    }

    /// `set_noreply_maybe`: is the last word `noreply`?
    #[inline]
    fn noreply(&self) -> bool {
        self.n > 0 && self.words[self.n - 1] == b"noreply"
    }

    /// `config set <key> <flags> <bytes> [noreply]` as the words of a storage line
    /// (`<key> <flags> 0 <bytes> [noreply]`, after a command word), so the data block
    /// is framed by the one storage rule.
    fn config_set_as_storage(&self) -> Self {
        let mut t = Tokens {
            words: [&[]; MAX_TOKENS - 1],
            n: 0,
            ends: [0; MAX_TOKENS - 1],
        };
        let words = [self.w(1), self.w(2), self.w(3), b"0", self.w(4), self.w(5)];
        let n = (self.n + 1).min(words.len());
        t.words[..n].copy_from_slice(&words[..n]);
        t.n = n;
        t
    }

    /// The rest of the line after word `i`.
    #[inline]
    fn after(&self, line: &'a [u8], i: usize) -> &'a [u8] {
        let at = if i < self.n { self.ends[i] } else { line.len() };
        line.get(at..).unwrap_or(&[])
    }
}

/// An error reply taking `consumed` bytes, suppressed when `noreply`.
#[inline]
fn err<'a>(reply: &'static str, noreply: bool, consumed: usize) -> Parse<'a> {
    Parse::Error {
        reply: if noreply { None } else { Some(reply) },
        consumed,
        swallow: 0,
        unlink: None,
        refused: None,
    }
}

/// Parses one request from the front of `buf`. See the module documentation for the
/// frame rules; the connection then acts on the result:
/// - [`Parse::Incomplete`]: read more and call again with the same front;
/// - [`Parse::Request`]: execute, advance by its length;
/// - [`Parse::Error`]: write `reply` + `\r\n` if any, advance `consumed`, discard
///   `swallow` further bytes (across reads), unlink `unlink` if any;
/// - [`Parse::Close`]: close without a reply.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parse<'a> {
    match frame::line(buf) {
        frame::Line::Whole(line, next) => parse_line(buf, line, next, limits),
        frame::Line::Incomplete => Parse::Incomplete,
        frame::Line::Close => Parse::Close,
    }
}

/// Dispatches a whole line (`next`: where the line's bytes end in `buf`).
pub fn parse_line<'a>(buf: &'a [u8], line: &'a [u8], next: usize, limits: &Limits) -> Parse<'a> {
    let t = Tokens::split(line);
    let n = t.count();
    let cmd = t.w(0);
    if n < 2 || cmd.len() < 2 {
        return err(ERROR, false, next);
    }
    let arity = |ok: bool| {
        if ok {
            None
        } else {
            Some(err(ERROR, false, next))
        }
    };
    macro_rules! want {
        ($ok:expr) => {
            if let Some(e) = arity($ok) {
                return e;
            }
        };
    }
    let first = cmd[0];
    if first == b'm' && cmd.len() == 2 {
        // The meta commands are the front door's (`ascii`); other `m?` are unknown.
        return err(ERROR, false, next);
    }
    match first {
        b'g' => {
            want!(n >= 3);
            match cmd {
                b"get" => get(&t, line, next, false),
                b"gets" => get(&t, line, next, true),
                b"gat" => gat(&t, line, next, false),
                b"gats" => gat(&t, line, next, true),
                _ => err(ERROR, false, next),
            }
        }
        b's' => match cmd {
            b"set" => {
                want!(n == 6 || n == 7);
                storage(StoreOp::Set, &t, buf, next, limits)
            }
            b"stats" => {
                let args = t.after(line, 0);
                let s = args.iter().take_while(|&&b| b == b' ').count();
                let e = args.iter().rev().take_while(|&&b| b == b' ').count();
                let args = args.get(s..args.len().saturating_sub(e)).unwrap_or(&[]);
                Parse::Request(Command::Stats { args }, next)
            }
            b"shutdown" => {
                let mode = if n == 2 {
                    ShutdownMode::Immediate
                } else if n == 3 && t.w(1) == b"graceful" {
                    ShutdownMode::Graceful
                } else {
                    ShutdownMode::Invalid
                };
                Parse::Request(Command::Shutdown { mode }, next)
            }
            b"slabs" => slabs(&t, next),
            b"snapshot" => Parse::Request(
                Command::Snapshot {
                    name: (n == 3).then(|| t.w(1)),
                    bad: n > 3,
                },
                next,
            ),
            _ => err(ERROR, false, next),
        },
        b'a' => match cmd {
            b"add" | b"append" => {
                want!(n == 6 || n == 7);
                let c = if cmd == b"add" {
                    StoreOp::Add
                } else {
                    StoreOp::Append
                };
                storage(c, &t, buf, next, limits)
            }
            _ => err(ERROR, false, next),
        },
        b'c' => match cmd {
            b"cas" => {
                want!(n == 7 || n == 8);
                storage(StoreOp::Cas(0), &t, buf, next, limits)
            }
            b"cache_memlimit" => {
                want!(n == 3 || n == 4);
                memlimit(&t, next)
            }
            b"config" => config(&t, buf, next, limits),
            _ => err(ERROR, false, next),
        },
        b'i' => match cmd {
            b"incr" => {
                want!(n == 4 || n == 5);
                arith(&t, next, true)
            }
            _ => err(ERROR, false, next),
        },
        b'd' => match cmd {
            b"delete" => {
                want!((3..=5).contains(&n));
                delete(&t, next)
            }
            b"decr" => {
                want!(n == 4 || n == 5);
                arith(&t, next, false)
            }
            b"debugtime" => debugtime(&t, next),
            _ => err(ERROR, false, next),
        },
        b't' => match cmd {
            b"touch" => {
                want!(n == 4 || n == 5);
                touch(&t, next)
            }
            _ => err(ERROR, false, next),
        },
        _ => match cmd {
            b"replace" | b"prepend" => {
                want!(n == 6 || n == 7);
                let c = if cmd == b"replace" {
                    StoreOp::Replace
                } else {
                    StoreOp::Prepend
                };
                storage(c, &t, buf, next, limits)
            }
            b"bget" => {
                want!(n >= 3);
                get(&t, line, next, false)
            }
            b"flush_all" => {
                want!((2..=4).contains(&n));
                let noreply = t.noreply();
                let delay = if n != if noreply { 3 } else { 2 } {
                    num::strtol(t.w(1)).map(i64::from)
                } else {
                    Some(0)
                };
                Parse::Request(Command::FlushAll { delay, noreply }, next)
            }
            b"version" => Parse::Request(Command::Version, next),
            b"quit" => Parse::Request(Command::Quit, next),
            b"verbosity" => {
                want!(n == 3 || n == 4);
                let noreply = t.noreply();
                match num::strtoul(t.w(1)) {
                    Some(level) => Parse::Request(Command::Verbosity { level, noreply }, next),
                    None => err(BAD_FORMAT, noreply, next),
                }
            }
            b"lru_crawler" => lru_crawler(&t, next),
            b"watch" => watch(&t, next),
            b"lru" => {
                want!(n >= 3);
                lru(&t, next)
            }
            b"refresh_certs" => Parse::Request(
                Command::RefreshCerts {
                    noreply: t.noreply(),
                },
                next,
            ),
            _ => {
                if t.w(t.n - 1).starts_with(b"HTTP/") {
                    Parse::Close
                } else {
                    err(ERROR, false, next)
                }
            }
        },
    }
}

/// Checks that no key in a multi-get's key list is too long.
#[inline]
fn keys_ok(keys: &[u8]) -> bool {
    Keys(keys).all(|k| k.len() <= KEY_MAX_LENGTH)
}

/// `get`/`gets`/`bget <key>+`
fn get<'a>(t: &Tokens<'a>, line: &'a [u8], next: usize, cas: bool) -> Parse<'a> {
    let keys = t.after(line, 0);
    if !keys_ok(keys) {
        return err(BAD_FORMAT, false, next);
    }
    Parse::Request(
        Command::Get {
            keys: Keys(keys),
            cas,
        },
        next,
    )
}

/// `gat`/`gats <exptime> <key>*`
fn gat<'a>(t: &Tokens<'a>, line: &'a [u8], next: usize, cas: bool) -> Parse<'a> {
    let Some(exptime) = num::strtol(t.w(1)) else {
        return err(BAD_EXPTIME, false, next);
    };
    let keys = t.after(line, 1);
    if !keys_ok(keys) {
        return err(BAD_FORMAT, false, next);
    }
    Parse::Request(
        Command::Gat {
            exptime: i64::from(exptime),
            keys: Keys(keys),
            cas,
        },
        next,
    )
}

/// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]` and
/// `cas <key> <flags> <exptime> <bytes> <cas> [noreply]`, plus the data block.
fn storage<'a>(
    cmd: StoreOp,
    t: &Tokens<'a>,
    buf: &'a [u8],
    next: usize,
    limits: &Limits,
) -> Parse<'a> {
    let noreply = t.noreply();
    let key = t.w(1);
    if key.len() > KEY_MAX_LENGTH {
        return err(BAD_FORMAT, noreply, next);
    }
    let (Some(flags), Some(exptime), Some(vlen)) = (
        num::strtoul(t.w(2)),
        num::strtol(t.w(3)),
        num::strtol(t.w(4)),
    ) else {
        return err(BAD_FORMAT, noreply, next);
    };
    let cmd = match cmd {
        StoreOp::Cas(_) => match num::strtoull(t.w(5)) {
            Some(unique) => StoreOp::Cas(unique),
            None => return err(BAD_FORMAT, noreply, next),
        },
        c => c,
    };
    let Ok(vlen) = usize::try_from(vlen) else {
        return err(BAD_FORMAT, noreply, next);
    };
    if vlen > i32::MAX as usize - 2 {
        return err(BAD_FORMAT, noreply, next);
    }
    let total = vlen + 2;
    let too_large =
        super::frame::item_size(key.len(), flags, total, limits.cas_enabled) > limits.item_size_max;
    let frame = next + total;
    if too_large || (frame > buf.len() && frame > limits.buffer_room) {
        return Parse::Error {
            reply: match (noreply, too_large) {
                (true, _) => None,
                (false, true) => Some(TOO_LARGE),
                (false, false) => Some(errors::NO_MEMORY),
            },
            consumed: next,
            swallow: total,
            unlink: if cmd == StoreOp::Set {
                Some(UnlinkKey::Plain(key))
            } else {
                None
            },
            refused: Some(if too_large {
                StoreRefusal::TooLarge
            } else {
                StoreRefusal::NoMemory
            }),
        };
    }
    let Some(block) = buf.get(next..frame) else {
        return Parse::Partial(frame);
    };
    let (data, crlf) = block.split_at(vlen);
    if crlf != b"\r\n" {
        return err(BAD_CHUNK, noreply, next + total);
    }
    Parse::Request(
        Command::Store {
            cmd,
            key,
            flags,
            exptime: i64::from(exptime),
            data,
            noreply,
        },
        next + total,
    )
}

/// `config get <key>`, `config set <key> <flags> <bytes> [noreply]` + data block,
/// `config delete <key> [noreply]`; anything else is `ERROR`. A refused data block is
/// swallowed as a `set`'s, but never unlinks an item.
fn config<'a>(t: &Tokens<'a>, buf: &'a [u8], next: usize, limits: &Limits) -> Parse<'a> {
    let n = t.count();
    let key = t.w(2);
    let noreply = t.noreply();
    match t.w(1) {
        _ if n < 4 => err(ERROR, false, next),
        b"get" if n == 4 => {
            if key.len() > KEY_MAX_LENGTH {
                return err(BAD_FORMAT, false, next);
            }
            Parse::Request(Command::Config(ConfigCmd::Get { key }), next)
        }
        b"delete" if n == 4 || (n == 5 && noreply) => {
            if key.len() > KEY_MAX_LENGTH {
                return err(BAD_FORMAT, noreply, next);
            }
            Parse::Request(Command::Config(ConfigCmd::Delete { key, noreply }), next)
        }
        b"set" if n == 6 || (n == 7 && noreply) => {
            match storage(StoreOp::Set, &t.config_set_as_storage(), buf, next, limits) {
                Parse::Request(
                    Command::Store {
                        key,
                        flags,
                        data,
                        noreply,
                        ..
                    },
                    used,
                ) => Parse::Request(
                    Command::Config(ConfigCmd::Set {
                        key,
                        flags,
                        data,
                        noreply,
                    }),
                    used,
                ),
                Parse::Request(_, used) => err(ERROR, false, used),
                Parse::Error {
                    reply,
                    consumed,
                    swallow,
                    ..
                } => Parse::Error {
                    reply,
                    consumed,
                    swallow,
                    unlink: None,
                    refused: None,
                },
                other => other,
            }
        }
        _ => err(ERROR, false, next),
    }
}

/// `delete <key> [0] [noreply]`
fn delete<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    let n = t.count();
    let mut noreply = false;
    if n > 3 {
        let hold_is_zero = t.w(2) == b"0";
        noreply = t.noreply();
        let valid = (n == 4 && (hold_is_zero || noreply)) || (n == 5 && hold_is_zero && noreply);
        if !valid {
            return err(DELETE_USAGE, noreply, next);
        }
    }
    let key = t.w(1);
    if key.len() > KEY_MAX_LENGTH {
        return err(BAD_FORMAT, noreply, next);
    }
    Parse::Request(Command::Delete { key, noreply }, next)
}

/// `incr|decr <key> <delta> [noreply]`
fn arith<'a>(t: &Tokens<'a>, next: usize, incr: bool) -> Parse<'a> {
    let noreply = t.noreply();
    let key = t.w(1);
    if key.len() > KEY_MAX_LENGTH {
        return err(BAD_FORMAT, noreply, next);
    }
    match num::strtoull(t.w(2)) {
        Some(delta) => Parse::Request(
            Command::Arith {
                key,
                incr,
                delta,
                noreply,
            },
            next,
        ),
        None => err(BAD_DELTA, noreply, next),
    }
}

/// `touch <key> <exptime> [noreply]`
fn touch<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    let noreply = t.noreply();
    let key = t.w(1);
    if key.len() > KEY_MAX_LENGTH {
        return err(BAD_FORMAT, noreply, next);
    }
    match num::strtol(t.w(2)) {
        Some(exptime) => Parse::Request(
            Command::Touch {
                key,
                exptime: i64::from(exptime),
                noreply,
            },
            next,
        ),
        None => err(BAD_EXPTIME, noreply, next),
    }
}

/// `cache_memlimit <megabytes> [noreply]`
fn memlimit<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    let noreply = t.noreply();
    match num::strtoul(t.w(1)) {
        None => err(ERROR, noreply, next),
        Some(m) if m < 8 => err(MEMLIMIT_TOO_SMALL, noreply, next),
        Some(m) if m > 1_000_000_000 => err(MEMLIMIT_NOT_BYTES, noreply, next),
        Some(m) => Parse::Request(
            Command::CacheMemlimit {
                megabytes: u64::from(m),
                noreply,
            },
            next,
        ),
    }
}

/// `debugtime p|r|<seconds>`
fn debugtime<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    if t.count() < 3 {
        return err(ERROR, false, next);
    }
    let arg = match t.w(1) {
        b"p" => DebugTimeArg::Pause,
        b"r" => DebugTimeArg::Resume,
        w => match num::strtoll(w) {
            Some(s) => DebugTimeArg::Shift(s),
            None => return err(ERROR, false, next),
        },
    };
    Parse::Request(Command::DebugTime { arg }, next)
}

/// `slabs reassign <src> <dst>` | `slabs automove <0|1|2>` | `slabs automove ratio <r>`:
/// validated as memcached does; reassign is refused, automove accepted as a no-op.
fn slabs<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    let n = t.count();
    if n == 5 && t.w(1) == b"reassign" {
        return err(SLAB_REASSIGN_DISABLED, false, next);
    }
    if n >= 4 && t.w(1) == b"automove" {
        let noreply = t.noreply();
        if t.w(2) == b"ratio" {
            return match num::strtod(t.w(3)) {
                Some(r) if n >= 5 => Parse::Request(
                    Command::SlabsAutomove {
                        level: None,
                        ratio: Some(r),
                        noreply,
                    },
                    next,
                ),
                _ => err(ERROR, noreply, next),
            };
        }
        return match num::strtoul(t.w(2)) {
            None => err(BAD_FORMAT, noreply, next),
            Some(level @ 0..=2) => Parse::Request(
                Command::SlabsAutomove {
                    level: Some(level),
                    ratio: None,
                    noreply,
                },
                next,
            ),
            Some(_) => err(ERROR, noreply, next),
        };
    }
    err(ERROR, false, next)
}

/// `lru_crawler crawl|metadump <classes>`, `tocrawl|sleep <n>`, `enable|disable`, as
/// memcached's `process_lru_crawler_command` splits them (no `noreply`: a trailing
/// `noreply` is one word too many). Numbers are checked here; classes, `-X` and the
/// crawler's state by the executor.
fn lru_crawler<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    let n = t.count();
    let sub = t.w(1);
    let cmd = if n == 4 {
        match sub {
            b"crawl" => CrawlerCmd::Crawl(t.w(2)),
            b"metadump" => CrawlerCmd::Metadump(t.w(2)),
            b"tocrawl" => match num::strtoul(t.w(2)) {
                Some(v) => CrawlerCmd::ToCrawl(v),
                None => return err(BAD_FORMAT, false, next),
            },
            b"sleep" => match num::strtoul(t.w(2)) {
                None => return err(BAD_FORMAT, false, next),
                Some(s) if s > 1_000_000 => return err(CRAWLER_SLEEP, false, next),
                Some(s) => CrawlerCmd::Sleep(s),
            },
            _ => return err(ERROR, false, next),
        }
    } else if n == 3 {
        match sub {
            b"enable" => CrawlerCmd::Enable,
            b"disable" => CrawlerCmd::Disable,
            _ => return err(ERROR, false, next),
        }
    } else {
        return err(ERROR, false, next);
    };
    Parse::Request(Command::LruCrawler(cmd), next)
}

/// `watch [type ...] [noreply]`: the event types as memcached's
/// `process_watch_command` reads them (every word after `watch`; none means
/// `fetchers`). An unknown word, `noreply` included, makes `flags` `None`: the
/// executor answers `ERROR` after its `-W` check.
fn watch<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    let noreply = t.noreply();
    let flags = if t.n > 1 {
        let mut f = 0u16;
        let mut ok = true;
        for i in 1..t.n {
            match watch_flag(t.w(i)) {
                Some(b) => f |= b,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        ok.then_some(f)
    } else {
        Some(watch_flags::FETCHERS)
    };
    Parse::Request(Command::Watch { flags, noreply }, next)
}

/// The bit of one `watch` event type name.
fn watch_flag(w: &[u8]) -> Option<u16> {
    use watch_flags::*;
    Some(match w {
        b"rawcmds" => RAWCMDS,
        b"evictions" => EVICTIONS,
        b"fetchers" => FETCHERS,
        b"mutations" => MUTATIONS,
        b"sysevents" => SYSEVENTS,
        b"connevents" => CONNEVENTS,
        b"proxyreqs" => PROXYREQS,
        b"proxyevents" => PROXYEVENTS,
        b"proxyuser" => PROXYUSER,
        _ => return None,
    })
}

/// `lru tune|mode|temp_ttl ...`: validated as memcached does, accepted as no-ops.
fn lru<'a>(t: &Tokens<'a>, next: usize) -> Parse<'a> {
    let n = t.count();
    let noreply = t.noreply();
    match t.w(1) {
        b"tune" if n >= 7 => {
            match (
                num::strtoul(t.w(2)),
                num::strtoul(t.w(3)),
                num::strtod(t.w(4)),
                num::strtod(t.w(5)),
            ) {
                (Some(hot), Some(warm), Some(hot_factor), Some(factor)) => {
                    if hot.wrapping_add(warm) > 80 {
                        err(LRU_PCTS, noreply, next)
                    } else if factor <= 0.0 || hot_factor <= 0.0 {
                        err(LRU_FACTORS, noreply, next)
                    } else {
                        err(OK, noreply, next)
                    }
                }
                _ => err(ERROR, noreply, next),
            }
        }
        b"mode" if n >= 4 => match t.w(2) {
            b"flat" | b"segmented" => err(OK, noreply, next),
            _ => err(ERROR, noreply, next),
        },
        b"temp_ttl" if n >= 4 => match num::strtol(t.w(2)) {
            Some(_) => err(OK, noreply, next),
            None => err(ERROR, noreply, next),
        },
        _ => err(ERROR, noreply, next),
    }
}
