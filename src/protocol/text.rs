//! memcached's text (ASCII) protocol: framing, parsing and reply composition.
//!
//! PLACEHOLDER interface; the parser is being written.

/// Limits the parser needs to decide a request's fate without the store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest item (`-I`), for "object too large" decided before the data arrives.
    pub item_size_max: usize,
    /// Whether CAS is enabled (`-C` off): part of memcached's item size arithmetic.
    pub cas_enabled: bool,
}

/// Which storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCmd {
    /// `set`
    Set,
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `append`
    Append,
    /// `prepend`
    Prepend,
    /// `cas` with the client's unique
    Cas(u64),
}

/// Space-separated keys of a retrieval command, borrowed from the request line.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a>(pub &'a [u8]);

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.0;
        let start = s.iter().position(|&b| b != b' ')?;
        let s = &s[start..];
        let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
        self.0 = &s[end..];
        Some(&s[..end])
    }
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
        cmd: StoreCmd,
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
    /// `flush_all [delay] [noreply]`
    FlushAll {
        /// Delay as the client sent it (0 = now).
        delay: i64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `version`
    Version,
    /// `verbosity <level> [noreply]`
    Verbosity {
        /// The level.
        level: u32,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `quit`
    Quit,
    /// `shutdown [graceful]`
    Shutdown {
        /// `shutdown graceful`.
        graceful: bool,
    },
    /// `cache_memlimit <megabytes> [noreply]`
    CacheMemlimit {
        /// New limit in megabytes.
        megabytes: u64,
        /// Suppress the reply.
        noreply: bool,
    },
    /// `stats [group [args]]`: the words after `stats`.
    Stats {
        /// The rest of the line (e.g. `b"settings"`, `b"detail dump"`, `b""`).
        args: &'a [u8],
    },
    /// `debugtime <seconds>` (only served with `-o debugtime`).
    DebugTime {
        /// Seconds to move the clock.
        seconds: i64,
    },
}

/// What the parser made of the bytes at the front of the read buffer.
#[derive(Debug)]
pub enum Parse<'a> {
    /// Not a whole request yet: read more bytes and call again.
    Incomplete,
    /// A request, and the number of bytes it took (line and data block).
    Request(Command<'a>, usize),
    /// A request that is answered with an error without reaching the store.
    Error {
        /// The reply line without `\r\n` (None when `noreply` suppresses it).
        reply: Option<&'static str>,
        /// Bytes of the buffer this took.
        consumed: usize,
        /// Data bytes after `consumed` to discard, which may not have arrived yet.
        swallow: usize,
        /// Key whose old value must be removed (a rejected `set`).
        unlink: Option<&'a [u8]>,
    },
    /// Close the connection without a reply.
    Close,
}

/// Parses one request from the front of `buf`.
pub fn parse<'a>(_buf: &'a [u8], _limits: &Limits) -> Parse<'a> {
    Parse::Close
}
