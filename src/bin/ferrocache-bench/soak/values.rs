//! The values a soak writes: each encodes its key and a checksum, so every read is
//! verified.

use super::state::*;
use crate::zipf::Rng;
use std::io::Write;

/// FNV-1a 64 of `key|payload`.
pub(super) fn fnv64(key: &[u8], payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.iter().chain(b"|").chain(payload) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A value length, log-uniform over MIN_VALUE..=MAX_VALUE (median ~640 B).
pub(super) fn value_len(rng: &mut Rng) -> usize {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let v = MIN_VALUE as f64 * (MAX_VALUE as f64 / MIN_VALUE as f64).powf(u);
    (v as usize).clamp(MIN_VALUE, MAX_VALUE)
}

/// Writes a value of about `total` bytes for `key` into `out`:
/// `key|<payload len>|<fnv64 hex>|<payload>`. Returns the client flags to store it
/// with (the checksum's low 32 bits).
pub(super) fn make_value(
    key: &[u8],
    total: usize,
    rng: &mut Rng,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> u32 {
    let header = key.len() + 1 + 4 + 1 + 16 + 1;
    let plen = total.saturating_sub(header).max(1);
    scratch.clear();
    while scratch.len() < plen {
        let r = rng.next_u64().to_le_bytes();
        let take = (plen - scratch.len()).min(8);
        scratch.extend(r[..take].iter().map(|b| b'a' + b % 26));
    }
    let sum = fnv64(key, scratch);
    out.clear();
    out.extend_from_slice(key);
    let _ = write!(out, "|{plen}|{sum:016x}|");
    out.extend_from_slice(scratch);
    sum as u32
}

/// Checks a value read for `key` (and its flags, when the reader has them).
pub(super) fn verify(key: &[u8], value: &[u8], flags: Option<u32>) -> Result<(), String> {
    let mut parts = value.splitn(4, |&b| b == b'|');
    let (Some(k), Some(len), Some(sum), Some(payload)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "value of {} is not an encoded value: {}",
            show(key),
            show(value)
        ));
    };
    if k != key {
        return Err(format!(
            "value of {} belongs to key {}: {}",
            show(key),
            show(k),
            show(value)
        ));
    }
    let parsed = std::str::from_utf8(len)
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    if parsed != Some(payload.len()) {
        return Err(format!(
            "value of {}: length field {} but {} payload bytes: {}",
            show(key),
            show(len),
            payload.len(),
            show(value)
        ));
    }
    let want = fnv64(key, payload);
    let sum = std::str::from_utf8(sum)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok());
    if sum != Some(want) {
        return Err(format!(
            "value of {}: checksum mismatch (payload damaged): {}",
            show(key),
            show(value)
        ));
    }
    if let Some(f) = flags {
        if f != want as u32 {
            return Err(format!(
                "value of {}: client flags {f:#x}, written {:#x}",
                show(key),
                want as u32
            ));
        }
    }
    Ok(())
}

pub(super) fn key_of(rank: u64) -> Vec<u8> {
    format!("k:{rank}").into_bytes()
}
