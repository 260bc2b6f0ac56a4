//! What the protocols' framing shares: memcached's limits and its one rule for the
//! size of an item, which decides "object too large" before a value arrives (text,
//! meta and binary parsers) and in the store.

/// Longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const KEY_MAX_LENGTH: usize = 250;
/// Without a `\n` in more than this many bytes, only a multi-get may keep reading.
pub const MAX_LINE_WITHOUT_NEWLINE: usize = 2048;
/// memcached's `sizeof(item)` on 64-bit hosts: the header counted in "too large".
pub const ITEM_HEADER_SIZE: usize = 48;

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

/// memcached's size of an item ("ITEM_ntotal"): its header, the key and its NUL, the
/// client flags when not 0, the value with its `\r\n` (`data_len`), and the CAS
/// unique when CAS is on. An item is too large when this exceeds `-I`.
#[inline]
pub fn item_size(nkey: usize, flags: u32, data_len: usize, cas: bool) -> usize {
    ITEM_HEADER_SIZE
        + nkey
        + 1
        + if flags != 0 { 4 } else { 0 }
        + data_len
        + if cas { 8 } else { 0 }
}
