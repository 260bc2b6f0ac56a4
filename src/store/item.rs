//! Item layout inside a segment, byte by byte.
//!
//! Items lie back to back in a segment, each exactly as long as its header says; all
//! integers are little endian.
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 1 | `bits`: `LIVE` 0x01 (the extent holds an item in the index), `MARKED` 0x02 (the shard's side table holds meta marks for it), `FETCHED` 0x04 (read at least once), `HAS_FLAGS` 0x08 (the flags field is present), `BIG` 0x10 (the value length has a fourth byte), `HAS_EXP` 0x20 (the expiry field is present), access counter 0xC0 (2 bits: +1 per read up to 3; S3-FIFO takes reads off at a queue's tail) |
//! | 1  | 1 | key length (1..=250) |
//! | 2  | 3 | value length in bytes (without `\r\n`), low 24 bits |
//! | 5  | 4 | last access/update time, relative seconds (for `flush_all` and ages) |
//! | 9  | 1 | value length bits 24..31, only when `BIG` (values of 16 MiB and more) |
//! | ... | 4 | expiry, relative seconds, only when `HAS_EXP` (absent = never expires) |
//! | ... | 4 | client flags, only when `HAS_FLAGS` (flags 0 cost nothing, as in memcached) |
//! | ... | 6 | CAS unique, low 48 bits, only when the store has CAS enabled (`-C` drops it) |
//! | ... | key length | key |
//! | ... | value length | value (no `\r\n` stored) |
//!
//! So the header is 9 bytes, +4 with an expiry, +4 for non-zero flags, +6 with CAS (15
//! for an item with CAS and neither expiry nor flags, 19 with an expiry), against 48-56
//! in memcached. Setting an expiry on an item stored without one (`touch`, `gat`) moves
//! it to a new extent 4 bytes longer. A dead item (replaced, deleted, evicted) keeps its
//! header with `LIVE` cleared, so a walk over the segment still steps over it; an
//! extent allocated and not yet written holds a placeholder header of its length
//! ([`write_filler`]).
//!
//! CAS uniques come from one 64-bit counter; the item keeps its low 48 bits
//! ([`CAS_BYTES`]), and the store hands out uniques modulo 2^48 (skipping 0), so what a
//! client reads back is what it compares against. That is 2.8 x 10^14 uniques (nine
//! years at a million stores a second) before uniques repeat; memcached's 64-bit
//! counter never does.

/// The extent holds an item that is in the index.
pub const LIVE: u8 = 0x01;
/// Access counter (2 bits): +1 on each read up to 3; at a queue's tail the item needs
/// enough reads to stay, which are then taken off.
pub const FREQ: u8 = 0xC0;
/// One step of the access counter.
pub const FREQ_ONE: u8 = 0x40;
/// The shard's side table holds meta-protocol marks ([`MARK_WON`], [`MARK_STALE`],
/// [`MARK_KEY_BINARY`]) for this item. Items without marks cost nothing.
pub const MARKED: u8 = 0x02;
/// Meta mark: a client was sent the recache win flag `W` (memcached's ITEM_TOKEN_SENT).
pub const MARK_WON: u8 = 0x01;
/// Meta mark: the item was invalidated and is served stale (memcached's ITEM_STALE).
pub const MARK_STALE: u8 = 0x02;
/// Meta mark: the key was stored base64-encoded (`b`), returned encoded by `k`.
pub const MARK_KEY_BINARY: u8 = 0x04;
/// The item was read at least once since it was stored.
pub const FETCHED: u8 = 0x04;
/// The 4-byte flags field is present.
pub const HAS_FLAGS: u8 = 0x08;
/// The value length has a fourth byte (at [`BASE`]).
pub const BIG: u8 = 0x10;
/// The 4-byte expiry field is present.
pub const HAS_EXP: u8 = 0x20;

/// Fixed header size.
pub const BASE: usize = 9;
/// Bytes of the stored CAS unique.
pub const CAS_BYTES: usize = 6;
/// Uniques are kept modulo 2^48.
pub const CAS_MASK: u64 = (1 << (8 * CAS_BYTES)) - 1;
/// Offset of the last access time.
pub const OFF_TIME: usize = 5;

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

/// Bytes an item takes.
#[inline]
pub fn total_size(key_len: usize, value_len: usize, flags: u32, exptime: u32, cas: bool) -> usize {
    BASE + usize::from(value_len >= 1 << 24)
        + if exptime != 0 { 4 } else { 0 }
        + if flags != 0 { 4 } else { 0 }
        + if cas { CAS_BYTES } else { 0 }
        + key_len
        + value_len
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
        let mut vlen = u32::from_le_bytes([c[2], c[3], c[4], 0]) as usize;
        let mut at = BASE;
        if bits & BIG != 0 {
            vlen |= (c[BASE] as usize) << 24;
            at += 1;
        }
        let exptime = if bits & HAS_EXP != 0 {
            at += 4;
            rd32(c, at - 4)
        } else {
            0
        };
        let flags = if bits & HAS_FLAGS != 0 {
            at += 4;
            rd32(c, at - 4)
        } else {
            0
        };
        let cas = if cas_on {
            let mut b = [0u8; 8];
            b[..CAS_BYTES].copy_from_slice(&c[at..at + CAS_BYTES]);
            at += CAS_BYTES;
            u64::from_le_bytes(b)
        } else {
            0
        };
        Hdr {
            bits,
            klen: c[1] as usize,
            vlen,
            exptime,
            time: rd32(c, OFF_TIME),
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
        self.key_at - CAS_BYTES
    }
}

/// Offset of the key of the item at the start of `c` (reads only the bits byte).
#[inline]
pub fn key_at(c: &[u8], cas_on: bool) -> usize {
    let b = c[0];
    BASE + usize::from(b & BIG != 0)
        + if b & HAS_EXP != 0 { 4 } else { 0 }
        + if b & HAS_FLAGS != 0 { 4 } else { 0 }
        + if cas_on { CAS_BYTES } else { 0 }
}

/// Bytes the item at the start of `c` takes (reads only its first bytes).
#[inline]
pub fn total_of(c: &[u8], cas_on: bool) -> usize {
    let mut vlen = u32::from_le_bytes([c[2], c[3], c[4], 0]) as usize;
    if c[0] & BIG != 0 {
        vlen |= (c[BASE] as usize) << 24;
    }
    key_at(c, cas_on) + c[1] as usize + vlen
}

/// Writes the CAS unique (low 48 bits) at `at`.
#[inline]
pub fn write_cas(c: &mut [u8], at: usize, cas: u64) {
    c[at..at + CAS_BYTES].copy_from_slice(&cas.to_le_bytes()[..CAS_BYTES]);
}

/// The fields of a new item's header ([`write_header`]).
#[derive(Debug, Clone, Copy)]
pub struct Head {
    /// Key length.
    pub klen: usize,
    /// Value length (without `\r\n`).
    pub vlen: usize,
    /// Client flags.
    pub flags: u32,
    /// Relative expiry (0 = never).
    pub exptime: u32,
    /// Last access/update time, relative.
    pub time: u32,
    /// CAS unique (written only when the store keeps CAS).
    pub cas: u64,
}

/// Writes a header for a new item (with a CAS field when `cas_on`); returns the key
/// offset.
#[inline]
pub fn write_header(c: &mut [u8], h: &Head, cas_on: bool) -> usize {
    let Head {
        klen,
        vlen,
        flags,
        exptime,
        time,
        cas,
    } = *h;
    let big = vlen >= 1 << 24;
    c[0] = LIVE
        | if flags != 0 { HAS_FLAGS } else { 0 }
        | if big { BIG } else { 0 }
        | if exptime != 0 { HAS_EXP } else { 0 };
    c[1] = klen as u8;
    c[2..5].copy_from_slice(&(vlen as u32).to_le_bytes()[..3]);
    wr32(c, OFF_TIME, time);
    let mut at = BASE;
    if big {
        c[at] = (vlen >> 24) as u8;
        at += 1;
    }
    if exptime != 0 {
        wr32(c, at, exptime);
        at += 4;
    }
    if flags != 0 {
        wr32(c, at, flags);
        at += 4;
    }
    if cas_on {
        write_cas(c, at, cas);
        at += CAS_BYTES;
    }
    at
}

/// Writes a placeholder header over an extent of `total` bytes that holds no item
/// (yet): not `LIVE`, and sized so that a walk over a segment steps over the extent.
pub fn write_filler(c: &mut [u8], total: usize, cas_on: bool) {
    let fixed = BASE + if cas_on { CAS_BYTES } else { 0 };
    let mut vlen = total.saturating_sub(fixed);
    let big = vlen >= 1 << 24;
    if big {
        vlen = vlen.saturating_sub(1);
    }
    c[0] = if big { BIG } else { 0 };
    c[1] = 0;
    c[2..5].copy_from_slice(&(vlen as u32).to_le_bytes()[..3]);
    if big {
        c[BASE] = (vlen >> 24) as u8;
    }
}

/// Offset of the expiry field (present when `HAS_EXP`), or where it goes.
#[inline]
pub fn exp_at(c: &[u8]) -> usize {
    BASE + usize::from(c[0] & BIG != 0)
}
