//! memcached's limits that the protocols, the store and the client share: the longest
//! key, the item header counted in "too large", and the one rule for an item's size.
//!
//! A bottom module: it imports nothing from the crate, so the store knows these rules
//! without knowing any wire format (`protocol::frame` re-exports them for the parsers).

/// Longest key memcached accepts (`KEY_MAX_LENGTH`).
pub const KEY_MAX_LENGTH: usize = 250;
/// memcached's `sizeof(item)` on 64-bit hosts: the header counted in "too large".
pub const ITEM_HEADER_SIZE: usize = 48;

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
