//! Item layout inside a slab chunk, byte by byte.
//!
//! Every item lives in one chunk of one slab; all integers are little endian.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 1 | `bits`: `LIVE` 0x01 (chunk holds an item), `ACCESS` 0x02 (CLOCK reference bit, set on every read), `FETCHED` 0x04 (read at least once), `HAS_FLAGS` 0x08 (the 4-byte flags field is present) |
//! | 1  | 1 | key length (1..=255) |
//! | 2  | 4 | value length in bytes (without `\r\n`) |
//! | 6  | 4 | expiry, relative seconds (0 = never) |
//! | 10 | 4 | last access/update time, relative seconds (for `flush_all` and ages) |
//! | 14 | 4 | client flags, only when `HAS_FLAGS` (flags 0 cost nothing, as in memcached) |
//! | 14 or 18 | 8 | CAS unique, only when the store has CAS enabled (`-C` drops it) |
//! | ... | key length | key |
//! | ... | value length | value (no `\r\n` stored) |
//!
//! So the header is 14 bytes, +4 for non-zero flags, +8 with CAS (22 for the usual
//! item), against 48-56 in memcached. A free chunk has `bits == 0` and keeps the index of
//! the next free chunk of its slab at offset 2 (4 bytes).

/// The chunk holds an item.
pub const LIVE: u8 = 0x01;
/// CLOCK reference bit: set on access, cleared by the eviction hand.
pub const ACCESS: u8 = 0x02;
/// The item was read at least once since it was stored.
pub const FETCHED: u8 = 0x04;
/// The 4-byte flags field is present.
pub const HAS_FLAGS: u8 = 0x08;

/// Fixed header size.
pub const BASE: usize = 14;

#[inline]
pub(crate) fn rd32(c: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&c[at..at + 4]);
    u32::from_le_bytes(b)
}

#[inline]
pub(crate) fn wr32(c: &mut [u8], at: usize, v: u32) {
    c[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Bytes an item takes in a chunk.
#[inline]
pub fn total_size(key_len: usize, value_len: usize, flags: u32, cas: bool) -> usize {
    BASE + if flags != 0 { 4 } else { 0 } + if cas { 8 } else { 0 } + key_len + value_len
}

/// A parsed view of an item header.
#[derive(Debug, Clone, Copy)]
pub struct Hdr {
    /// The bits byte.
    pub bits: u8,
    /// Key length.
    pub klen: usize,
    /// Value length.
    pub vlen: usize,
    /// Relative expiry.
    pub exptime: u32,
    /// Last access time.
    pub time: u32,
    /// Client flags.
    pub flags: u32,
    /// CAS unique (0 when disabled).
    pub cas: u64,
    /// Offset of the key.
    pub key_at: usize,
}

impl Hdr {
    /// Reads the header of the item at the start of `c`.
    #[inline]
    pub fn read(c: &[u8], cas_on: bool) -> Hdr {
        let bits = c[0];
        let mut at = BASE;
        let flags = if bits & HAS_FLAGS != 0 {
            at += 4;
            rd32(c, BASE)
        } else {
            0
        };
        let cas = if cas_on {
            let mut b = [0u8; 8];
            b.copy_from_slice(&c[at..at + 8]);
            at += 8;
            u64::from_le_bytes(b)
        } else {
            0
        };
        Hdr {
            bits,
            klen: c[1] as usize,
            vlen: rd32(c, 2) as usize,
            exptime: rd32(c, 6),
            time: rd32(c, 10),
            flags,
            cas,
            key_at: at,
        }
    }

    /// Offset of the value.
    #[inline]
    pub fn value_at(&self) -> usize {
        self.key_at + self.klen
    }

    /// Total bytes used.
    #[inline]
    pub fn total(&self) -> usize {
        self.key_at + self.klen + self.vlen
    }

    /// Offset of the CAS field (when enabled).
    #[inline]
    pub fn cas_at(&self) -> usize {
        self.key_at - 8
    }
}

/// Writes a header for a new item; returns the key offset.
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    c: &mut [u8],
    klen: usize,
    vlen: usize,
    flags: u32,
    exptime: u32,
    time: u32,
    cas_on: bool,
    cas: u64,
) -> usize {
    c[0] = LIVE | if flags != 0 { HAS_FLAGS } else { 0 };
    c[1] = klen as u8;
    wr32(c, 2, vlen as u32);
    wr32(c, 6, exptime);
    wr32(c, 10, time);
    let mut at = BASE;
    if flags != 0 {
        wr32(c, BASE, flags);
        at += 4;
    }
    if cas_on {
        c[at..at + 8].copy_from_slice(&cas.to_le_bytes());
        at += 8;
    }
    at
}
