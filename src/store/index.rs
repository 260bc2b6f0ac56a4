//! The index of a shard: four `hashbrown` tables of 4-byte item locations, keys
//! compared (and rehashed) in item memory. Which table holds a key and the hash it is
//! filed under; the tables themselves are the shard's (`Shard::find`, `Shard::link`).

use super::ctx::Ctx;
use super::item;
use super::segment::{bytes_at, Loc, Seg};

/// Number of hash tables in a shard's index.
pub(super) const SUBTABLES: usize = 4;
/// Upper bounds (of 24 hash bits) of the sub-tables' shares of the keys: shares grow by
/// 2^(1/4) from one table to the next (0.189, 0.225, 0.268, 0.318), so the tables double
/// at different item counts and the index is never all at half load right after a
/// doubling (the index costs 7.3-9.2 bytes per item at any count instead of 5.7-11.4).
pub(super) const SUB_BOUNDS: [u32; SUBTABLES - 1] = [3_174_369, 6_949_350, 11_438_586];

/// Which sub-table holds a key: bits 32..56 of its hash (the shard uses the top bits,
/// the table the low 32).
#[inline]
pub(super) fn sub_of(h: u64) -> usize {
    let u = ((h >> 32) as u32) & 0x00FF_FFFF;
    usize::from(u >= SUB_BOUNDS[0])
        + usize::from(u >= SUB_BOUNDS[1])
        + usize::from(u >= SUB_BOUNDS[2])
}

/// The hash a table files a key under (from the low 32 bits of the key hash).
#[inline]
pub(super) fn table_hash(h: u64) -> u64 {
    let t = h as u32 as u64;
    (t | (t << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// True when the item at `l` has this key.
#[inline]
pub(super) fn key_is(segs: &[Option<Seg>], l: Loc, key: &[u8], cas_on: bool) -> bool {
    match bytes_at(segs, l) {
        Some(c) => {
            let at = item::key_at(c, cas_on);
            c[1] as usize == key.len() && c.get(at..at + key.len()) == Some(key)
        }
        None => false,
    }
}

/// The table hash of the item at `l`, for rehashing (reads the key in item memory).
#[inline]
pub(super) fn rehash(segs: &[Option<Seg>], ctx: &Ctx, l: Loc) -> u64 {
    match bytes_at(segs, l) {
        Some(c) => {
            let at = item::key_at(c, ctx.cas_on);
            let klen = c[1] as usize;
            table_hash(ctx.hash(c.get(at..at + klen).unwrap_or_default()))
        }
        None => 0,
    }
}

/// Buckets of a hashbrown table of this capacity (its control bytes and slots).
pub(super) fn buckets(cap: usize) -> usize {
    match cap {
        0 => 0,
        1..=7 => cap + 1,
        _ => (cap * 8 / 7).next_power_of_two(),
    }
}
