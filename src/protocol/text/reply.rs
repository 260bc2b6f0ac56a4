//! Reply composers: append memcached's text replies to a connection's write buffer.
//! No `format!`: integers are written with a small hand-rolled formatter.

/// `STORED\r\n`
pub const STORED: &[u8] = b"STORED\r\n";
/// `NOT_STORED\r\n`
pub const NOT_STORED: &[u8] = b"NOT_STORED\r\n";
/// `EXISTS\r\n`
pub const EXISTS: &[u8] = b"EXISTS\r\n";
/// `NOT_FOUND\r\n`
pub const NOT_FOUND: &[u8] = b"NOT_FOUND\r\n";
/// `DELETED\r\n`
pub const DELETED: &[u8] = b"DELETED\r\n";
/// `TOUCHED\r\n`
pub const TOUCHED: &[u8] = b"TOUCHED\r\n";
/// `OK\r\n`
pub const OK: &[u8] = b"OK\r\n";
/// `END\r\n`
pub const END: &[u8] = b"END\r\n";
/// `ERROR\r\n`
pub const ERROR: &[u8] = b"ERROR\r\n";
/// `RESET\r\n` (`stats reset`)
pub const RESET: &[u8] = b"RESET\r\n";

/// Longest decimal u64 (20 digits).
const U64_DIGITS: usize = 20;

/// Appends the decimal form of `n`.
#[inline]
pub fn u64_dec(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; U64_DIGITS];
    let mut i = U64_DIGITS;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends the decimal form of `n` (with `-` when negative).
#[inline]
pub fn i64_dec(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    u64_dec(out, n.unsigned_abs());
}

/// Appends `VALUE <key> <flags> <bytes>[ <cas>]\r\n` (the header of one `get`/`gets` hit).
#[inline]
pub fn value_header(out: &mut Vec<u8>, key: &[u8], flags: u32, bytes: usize, cas: Option<u64>) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    u64_dec(out, u64::from(flags));
    out.push(b' ');
    u64_dec(out, bytes as u64);
    if let Some(cas) = cas {
        out.push(b' ');
        u64_dec(out, cas);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one whole `get`/`gets` hit: header, data and `\r\n`.
#[inline]
pub fn value(out: &mut Vec<u8>, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    value_header(out, key, flags, data.len(), cas);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends `END\r\n`.
#[inline]
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(END);
}

/// Appends a status or error line (`text` without its `\r\n`) and `\r\n`;
/// e.g. the `reply` of a [`super::Parse::Error`].
#[inline]
pub fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a number line: the reply to a successful `incr`/`decr`.
#[inline]
pub fn number(out: &mut Vec<u8>, n: u64) {
    u64_dec(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `VERSION <version>\r\n`.
#[inline]
pub fn version(out: &mut Vec<u8>, version: &str) {
    out.extend_from_slice(b"VERSION ");
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `STAT <name> <value>\r\n` with a preformatted value.
#[inline]
pub fn stat(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name);
    out.push(b' ');
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `STAT <name> <n>\r\n`.
#[inline]
pub fn stat_u64(out: &mut Vec<u8>, name: &[u8], n: u64) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name);
    out.push(b' ');
    u64_dec(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Appends `STAT <name> <n>\r\n` for a signed value.
#[inline]
pub fn stat_i64(out: &mut Vec<u8>, name: &[u8], n: i64) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name);
    out.push(b' ');
    i64_dec(out, n);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        for n in [0u64, 1, 9, 10, 99, 100, 12345, u64::MAX, u64::MAX / 7] {
            let mut v = Vec::new();
            u64_dec(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
        for n in [0i64, -1, 5, i64::MIN, i64::MAX] {
            let mut v = Vec::new();
            i64_dec(&mut v, n);
            assert_eq!(v, n.to_string().into_bytes());
        }
    }

    #[test]
    fn composers() {
        let mut v = Vec::new();
        value(&mut v, b"k", 5, b"abc", None);
        value(&mut v, b"kk", 0, b"", Some(18446744073709551615));
        end(&mut v);
        assert_eq!(
            v,
            b"VALUE k 5 3\r\nabc\r\nVALUE kk 0 0 18446744073709551615\r\n\r\nEND\r\n".to_vec()
        );
        let mut v = Vec::new();
        number(&mut v, 42);
        line(&mut v, "CLIENT_ERROR bad data chunk");
        stat(&mut v, b"pid", b"12");
        stat_u64(&mut v, b"curr_items", 0);
        stat_i64(&mut v, b"x", -3);
        version(&mut v, "1.6.18");
        assert_eq!(
            v,
            b"42\r\nCLIENT_ERROR bad data chunk\r\nSTAT pid 12\r\nSTAT curr_items 0\r\nSTAT x -3\r\nVERSION 1.6.18\r\n"
                .to_vec()
        );
    }
}
