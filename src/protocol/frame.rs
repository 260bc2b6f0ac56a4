//! What the protocols' framing shares: memcached's limits and its one rule for the
//! size of an item (from [`crate::limits`], where the store takes them too), which
//! decides "object too large" before a value arrives (text, meta and binary parsers).

pub use crate::limits::{item_size, ITEM_HEADER_SIZE, KEY_MAX_LENGTH};

/// Without a `\n` in more than this many bytes, only a multi-get may keep reading.
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;

/// Limits the parser needs to decide a request's fate without the store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest item (`-I`), for "object too large" decided before the data arrives.
    pub item_size_max: usize,
    /// Whether CAS is enabled (`-C` off): part of memcached's item size arithmetic.
    pub cas_enabled: bool,
    /// Largest frame (request line or header plus its data block) the connection can
    /// buffer now; a storage request within `-I` but larger than this is refused as
    /// out of memory before its data arrives. `usize::MAX`: no such bound.
    pub buffer_room: usize,
}

/// What a parser made of the bytes at the front of the read buffer; `R` is its
/// protocol's request type.
#[derive(Debug)]
pub enum Parse<'a, R> {
    /// Not a whole request yet: read more bytes and call again.
    Incomplete,
    /// A storage request whose line has arrived but not all of its data block: the
    /// whole frame (line and block) is this many bytes. Read more and call again.
    Partial(usize),
    /// A request, and the number of bytes it took (line and data block).
    Request(R, usize),
    /// A request that is answered with an error without reaching the store.
    Error {
        /// The reply line without `\r\n` (None when `noreply` suppresses it).
        reply: Option<&'static str>,
        /// Bytes of the buffer this took.
        consumed: usize,
        /// Data bytes after `consumed` to discard, which may not have arrived yet: the
        /// data block of a storage request refused from its line (too large, no
        /// memory, or a meta `ms` whose flags are wrong).
        swallow: usize,
        /// Key whose old value must be removed (a `set` or `ms` refused as too large
        /// or for lack of memory).
        unlink: Option<UnlinkKey<'a>>,
        /// Why a storage request was refused, when it counts in `stats`
        /// (`store_too_large` / `store_no_memory`).
        refused: Option<StoreRefusal>,
    },
    /// Close the connection without a reply.
    Close,
}

impl<'a, R> Parse<'a, R> {
    /// The same outcome with the request turned into another type.
    #[inline]
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Parse<'a, S> {
        match self {
            Parse::Incomplete => Parse::Incomplete,
            Parse::Partial(n) => Parse::Partial(n),
            Parse::Request(r, n) => Parse::Request(f(r), n),
            Parse::Error {
                reply,
                consumed,
                swallow,
                unlink,
                refused,
            } => Parse::Error {
                reply,
                consumed,
                swallow,
                unlink,
                refused,
            },
            Parse::Close => Parse::Close,
        }
    }
}

/// Where the first request line of an ASCII buffer is (rules 1 and 2 of
/// [`crate::protocol::text`]).
pub enum Line<'a> {
    /// The line (without `\r\n`, cut at a NUL) and where its bytes end.
    Whole(&'a [u8], usize),
    /// No `\n` yet: read more.
    Incomplete,
    /// No `\n` in more than [`MAX_LINE_WITHOUT_NEWLINE`] bytes, and not a multi-get.
    Close,
}

/// Finds the first request line of `buf`.
#[inline]
pub fn line(buf: &[u8]) -> Line<'_> {
    let Some(nl) = find_byte(buf, b'\n') else {
        return no_newline(buf);
    };
    let mut end = nl;
    if nl > 1 && buf[nl - 1] == b'\r' {
        end -= 1;
    }
    let mut line = &buf[..end];
    if let Some(z) = find_byte(line, 0) {
        line = &line[..z];
    }
    Line::Whole(line, nl + 1)
}

/// Rule 2: nothing ends a line yet.
fn no_newline(buf: &[u8]) -> Line<'_> {
    if buf.len() <= MAX_LINE_WITHOUT_NEWLINE {
        return Line::Incomplete;
    }
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    if spaces <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets ")) {
        Line::Incomplete
    } else {
        Line::Close
    }
}

/// Why a storage request was refused before its data arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreRefusal {
    /// The item would exceed `-I` (`SERVER_ERROR object too large for cache`).
    TooLarge,
    /// The connection cannot buffer it now ([`Limits::buffer_room`]):
    /// `SERVER_ERROR out of memory storing object`.
    NoMemory,
}

/// The key of a storage command refused as too large, whose old value must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlinkKey<'a> {
    /// The key as sent.
    Plain(&'a [u8]),
    /// A meta `b` key: base64 as sent, decoded when used.
    Base64(&'a [u8]),
}

impl UnlinkKey<'_> {
    /// The bytes as they appeared on the request line.
    pub fn raw(&self) -> &[u8] {
        match self {
            UnlinkKey::Plain(k) | UnlinkKey::Base64(k) => k,
        }
    }

    /// The stored key (None: a base64 key that does not decode).
    pub fn key(&self) -> Option<std::borrow::Cow<'_, [u8]>> {
        match self {
            UnlinkKey::Plain(k) => Some(std::borrow::Cow::Borrowed(k)),
            UnlinkKey::Base64(k) => {
                let mut buf = [0u8; KEY_MAX_LENGTH];
                let n = super::base64::base64_decode(k, &mut buf)?;
                Some(std::borrow::Cow::Owned(buf[..n].to_vec()))
            }
        }
    }
}

/// Error and status lines the parser answers with (without `\r\n`).
pub mod errors {
    /// Unknown command, wrong number of words, and some admin forms.
    pub const ERROR: &str = "ERROR";
    /// Key too long, bad number on a storage line, bad verbosity level, ...
    pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
    /// The 2 bytes after a data block were not `\r\n`.
    pub const BAD_CHUNK: &str = "CLIENT_ERROR bad data chunk";
    /// Item would exceed `-I`.
    pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
    /// No memory to receive the item (memcached: the item could not be allocated).
    pub const NO_MEMORY: &str = "SERVER_ERROR out of memory storing object";
    /// `delete <key> <x>` with x neither `0` nor `noreply`, or 3 extra words.
    pub const DELETE_USAGE: &str =
        "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";
    /// `incr`/`decr` delta not a u64.
    pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
    /// `touch`/`gat`/`gats`/`flush_all` time not a number.
    pub const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
    /// `cache_memlimit` below 8.
    pub const MEMLIMIT_TOO_SMALL: &str = "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m";
    /// `cache_memlimit` above 1000000000.
    pub const MEMLIMIT_NOT_BYTES: &str =
        "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes";
    /// `watch` with `-W` (watch disabled).
    pub const WATCH_NOT_ALLOWED: &str = "CLIENT_ERROR watch commands not allowed";
    /// `refresh_certs`: no TLS (what the reference build says without TLS set up).
    pub const TLS_NOT_ENABLED: &str = "Error TLS not enabled";
    /// `slabs reassign`: our store moves memory by itself.
    pub const SLAB_REASSIGN_DISABLED: &str = "CLIENT_ERROR slab reassignment disabled";
    /// `lru_crawler metadump` with `-X` (dumping disabled).
    pub const METADUMP_NOT_ALLOWED: &str = "ERROR metadump not allowed";
    /// `lru_crawler enable` while the crawler is already enabled.
    pub const CRAWLER_START_FAILED: &str = "ERROR failed to start lru crawler thread";
    /// `lru_crawler sleep` above one second.
    pub const CRAWLER_SLEEP: &str = "CLIENT_ERROR sleep must be one second or less";
    /// `lru tune` with hot + warm > 80.
    pub const LRU_PCTS: &str = "ERROR hot and warm pcts must not exceed 80";
    /// `lru tune` with a factor <= 0.
    pub const LRU_FACTORS: &str = "ERROR hot/warm age factors must be greater than 0";
    /// Accepted no-op admin commands.
    pub const OK: &str = "OK";
}

/// Finds `needle` in `hay`, eight bytes at a time.
#[inline]
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO.wrapping_mul(u64::from(needle));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        if let Ok(arr) = <[u8; 8]>::try_from(c) {
            let x = u64::from_le_bytes(arr) ^ pat;
            if x.wrapping_sub(LO) & !x & HI != 0 {
                return c.iter().position(|&b| b == needle).map(|p| base + p);
            }
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|p| base + p)
}
