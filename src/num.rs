//! Number parsing exactly as memcached's `safe_strto*` helpers (util.c) do it on a
//! 64-bit Linux host, applied to one token (memcached's tokens are NUL-terminated at
//! the token's end, so "end of string" here is the end of the slice, or a NUL byte as
//! in C: an item's value parsed by `incr` may hold one).
//!
//! A bottom module: it imports nothing from the crate. The protocols (request
//! tokens), the configuration (`-o` values) and the store (`incr`/`decr` on a value)
//! all parse with it.
//!
//! The C rules reproduced:
//! - leading C whitespace (`' '`, `\t`, `\n`, `\v`, `\f`, `\r`) is skipped, then an
//!   optional `+` or `-`, then at least one decimal digit;
//! - a value outside the C type's range (`unsigned long long`, `long`) is an error (ERANGE);
//! - after the digits the token must end or continue with a whitespace byte — and then
//!   anything may follow it (`"5\tjunk"` is 5);
//! - the unsigned parsers negate a `-` value modulo 2^64 (as `strtoul` does) and then
//!   reject it only when the result looks negative as a signed number and the token
//!   holds a `-` somewhere;
//! - `safe_strtoul` and `safe_strtol` store into 32-bit outputs, silently truncating
//!   (`4294967297` flags become 1; a length of `4294967297` becomes 1).

/// C `isspace` in the "C" locale.
#[inline]
pub fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What `strtoull`/`strtoll` saw: sign, magnitude (None on overflow of u64), digit end.
struct Scan {
    neg: bool,
    /// Magnitude, or None if it does not fit in a u64.
    mag: Option<u64>,
}

/// Scans `[space]* [+-]? digit+`, then applies the "end of token or whitespace" rule.
/// Returns None when there is no digit or junk follows the digits.
#[inline]
fn scan(tok: &[u8]) -> Option<Scan> {
    let mut i = 0;
    while i < tok.len() && c_isspace(tok[i]) {
        i += 1;
    }
    let mut neg = false;
    if let Some(&s) = tok.get(i) {
        if s == b'+' || s == b'-' {
            neg = s == b'-';
            i += 1;
        }
    }
    let start = i;
    let mut mag: Option<u64> = Some(0);
    while let Some(&d) = tok.get(i) {
        if !d.is_ascii_digit() {
            break;
        }
        mag = mag
            .and_then(|m| m.checked_mul(10))
            .and_then(|m| m.checked_add(u64::from(d - b'0')));
        i += 1;
    }
    if i == start {
        return None; // no conversion: endptr == str
    }
    match tok.get(i) {
        None | Some(0) => {}
        Some(&b) if c_isspace(b) => {}
        Some(_) => return None,
    }
    Some(Scan { neg, mag })
}

/// `safe_strtoull`: a u64.
pub fn strtoull(tok: &[u8]) -> Option<u64> {
    let s = scan(tok)?;
    let mag = s.mag?; // ERANGE
    let v = if s.neg { mag.wrapping_neg() } else { mag };
    // `strchr(str, '-')`: the whole C string, up to a NUL.
    if (v as i64) < 0 && tok.iter().take_while(|&&b| b != 0).any(|&b| b == b'-') {
        return None;
    }
    Some(v)
}

/// `safe_strtoul`: `strtoul` (64-bit) stored into a u32 (truncating).
pub fn strtoul(tok: &[u8]) -> Option<u32> {
    strtoull(tok).map(|v| v as u32)
}

/// `safe_strtoll`: an i64.
pub fn strtoll(tok: &[u8]) -> Option<i64> {
    let s = scan(tok)?;
    let mag = s.mag?;
    if s.neg {
        if mag > 1u64 << 63 {
            return None; // ERANGE
        }
        Some((mag as i64).wrapping_neg())
    } else {
        i64::try_from(mag).ok()
    }
}

/// `safe_strtol`: `strtol` (64-bit long) stored into an i32 (truncating).
pub fn strtol(tok: &[u8]) -> Option<i32> {
    strtoll(tok).map(|v| v as i32)
}

/// `safe_strtod`, approximately: leading whitespace skipped, the number must end at the
/// token's end or at whitespace. Uses Rust's float syntax (decimal, exponent, `inf`,
/// `nan`); C's hexadecimal floats are not accepted.
pub fn strtod(tok: &[u8]) -> Option<f64> {
    let mut i = 0;
    while i < tok.len() && c_isspace(tok[i]) {
        i += 1;
    }
    let rest = &tok[i..];
    let end = rest
        .iter()
        .position(|&b| c_isspace(b))
        .unwrap_or(rest.len());
    let s = std::str::from_utf8(&rest[..end]).ok()?;
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() && !s.to_ascii_lowercase().contains("inf") {
        return None; // ERANGE
    }
    Some(v)
}

// The C library's lenient conversions the command line uses (memcached reads its
// options with `atoi`, `atof` and `strtol`): a prefix is parsed, the rest ignored.

/// C `strtol(s, NULL, base)` for base 8 or 10: leading spaces, a sign, the
/// longest run of digits; saturates at the `long` range; 0 if no digits.
/// Also returns how many bytes were used (0 if no digits).
pub fn strtol_prefix(s: &str, base: u32) -> (i64, usize) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && c_isspace(b[i]) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: i128 = 0;
    while i < b.len() {
        let Some(d) = (b[i] as char).to_digit(base) else {
            break;
        };
        v = (v * base as i128 + d as i128).min(i64::MAX as i128 + 1);
        i += 1;
    }
    if i == start {
        return (0, 0);
    }
    let v = if neg { -v } else { v };
    (v.clamp(i64::MIN as i128, i64::MAX as i128) as i64, i)
}

/// C `strtol(s, NULL, base)`.
pub fn strtol_base(s: &str, base: u32) -> i64 {
    strtol_prefix(s, base).0
}

/// C `atoi`: glibc's `(int) strtol(s, NULL, 10)`, truncating.
pub fn atoi(s: &str) -> i32 {
    strtol_base(s, 10) as i32
}

/// C `atof` (decimal, `inf`/`nan`, and hex integers like `0x2`): the
/// longest parsable prefix after leading spaces; 0.0 if none.
pub fn atof(s: &str) -> f64 {
    let t = s.trim_start_matches(|c: char| c.is_ascii() && c_isspace(c as u8));
    let (sign, body) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let digits: String = hex.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        if !digits.is_empty() {
            return sign * u64::from_str_radix(&digits, 16).map_or(f64::INFINITY, |v| v as f64);
        }
    }
    let lower = body.to_ascii_lowercase();
    for word in ["infinity", "inf"] {
        if lower.starts_with(word) {
            return sign * f64::INFINITY;
        }
    }
    if lower.starts_with("nan") {
        return f64::NAN;
    }
    let len = body
        .char_indices()
        .take_while(|&(_, c)| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        .count();
    (1..=len)
        .rev()
        .find_map(|n| body[..n].parse::<f64>().ok())
        .map_or(0.0, |v| sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned() {
        assert_eq!(strtoull(b"0"), Some(0));
        assert_eq!(strtoull(b"+5"), Some(5));
        assert_eq!(strtoull(b"\t 5"), Some(5));
        assert_eq!(strtoull(b"5\t"), Some(5));
        assert_eq!(strtoull(b"5\tjunk"), Some(5));
        assert_eq!(strtoull(b"5\r"), Some(5));
        assert_eq!(strtoull(b"5x"), None);
        assert_eq!(strtoull(b""), None);
        assert_eq!(strtoull(b"-"), None);
        assert_eq!(strtoull(b"+"), None);
        assert_eq!(strtoull(b"x"), None);
        assert_eq!(strtoull(b"-1"), None);
        assert_eq!(strtoull(b"-0"), Some(0));
        assert_eq!(strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(strtoull(b"18446744073709551616"), None);
        // -(2^64-1) wraps to 1, which does not look negative: accepted like C.
        assert_eq!(strtoull(b"-18446744073709551615"), Some(1));
        assert_eq!(strtoul(b"4294967296"), Some(0));
        assert_eq!(strtoul(b"4294967297"), Some(1));
        assert_eq!(strtoul(b"-1"), None);
        // A NUL ends the C string.
        assert_eq!(strtoull(b"12\0junk"), Some(12));
        assert_eq!(strtoull(b"\0"), None);
    }

    #[test]
    fn signed() {
        assert_eq!(strtol(b"-1"), Some(-1));
        assert_eq!(strtol(b"+7"), Some(7));
        assert_eq!(strtol(b"4294967297"), Some(1));
        assert_eq!(strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(strtoll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(strtoll(b"9223372036854775808"), None);
        assert_eq!(strtoll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(strtoll(b"-9223372036854775809"), None);
        assert_eq!(strtol(b"99999999999999999999"), None);
        assert_eq!(strtol(b"1.5"), None);
        assert_eq!(strtod(b"0.5"), Some(0.5));
        assert_eq!(strtod(b"x"), None);
    }
}
