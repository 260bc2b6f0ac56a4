//! Request encoding and allocation-free reply parsing for the load generator: the
//! memcached text protocol and the binary protocol (GET, SET, and GETKQ... + NOOP for
//! multi-gets). Keys are `key:%08d`.

/// Wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// memcached text (ASCII) protocol.
    Text,
    /// memcached binary protocol.
    Binary,
}

/// What a request in flight expects as its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqKind {
    /// A get of this many keys (1 = single get).
    Get(u16),
    /// A set.
    Set,
}

/// A complete reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Bytes of the reply.
    pub len: usize,
    /// Keys found (gets).
    pub hits: u32,
    /// Keys not found (gets).
    pub misses: u32,
}

const BIN_REQ: u8 = 0x80;
const BIN_RES: u8 = 0x81;
const OP_GET: u8 = 0x00;
const OP_SET: u8 = 0x01;
const OP_NOOP: u8 = 0x0a;
const OP_GETKQ: u8 = 0x0d;
const HDR: usize = 24;

/// Length of a `key:%08d` key.
pub const KEY_LEN: usize = 12;

/// The key of index `id` (`key:%08d`; ids above 99,999,999 wrap).
#[inline]
pub fn key_bytes(id: u64) -> [u8; KEY_LEN] {
    let mut k = *b"key:00000000";
    let mut v = id % 100_000_000;
    for i in (4..KEY_LEN).rev() {
        k[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    k
}

#[inline]
fn push_decimal(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[inline]
fn bin_header(out: &mut Vec<u8>, opcode: u8, keylen: u16, extlen: u8, bodylen: u32) {
    out.push(BIN_REQ);
    out.push(opcode);
    out.extend_from_slice(&keylen.to_be_bytes());
    out.push(extlen);
    out.extend_from_slice(&[0, 0, 0]); // datatype, vbucket
    out.extend_from_slice(&bodylen.to_be_bytes());
    out.extend_from_slice(&[0; 12]); // opaque, cas
}

/// Appends a get of `ids` (one request; several keys = multi-get).
#[inline]
pub fn push_get(out: &mut Vec<u8>, proto: Protocol, ids: &[u64]) {
    match proto {
        Protocol::Text => {
            out.extend_from_slice(b"get");
            for &id in ids {
                out.push(b' ');
                out.extend_from_slice(&key_bytes(id));
            }
            out.extend_from_slice(b"\r\n");
        }
        Protocol::Binary if ids.len() == 1 => {
            bin_header(out, OP_GET, KEY_LEN as u16, 0, KEY_LEN as u32);
            out.extend_from_slice(&key_bytes(ids[0]));
        }
        Protocol::Binary => {
            for &id in ids {
                bin_header(out, OP_GETKQ, KEY_LEN as u16, 0, KEY_LEN as u32);
                out.extend_from_slice(&key_bytes(id));
            }
            bin_header(out, OP_NOOP, 0, 0, 0);
        }
    }
}

/// Appends a set of key `id` to `value` (flags 0, no expiry).
#[inline]
pub fn push_set(out: &mut Vec<u8>, proto: Protocol, id: u64, value: &[u8]) {
    match proto {
        Protocol::Text => {
            out.extend_from_slice(b"set ");
            out.extend_from_slice(&key_bytes(id));
            out.extend_from_slice(b" 0 0 ");
            push_decimal(out, value.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        Protocol::Binary => {
            let body = 8 + KEY_LEN + value.len();
            bin_header(out, OP_SET, KEY_LEN as u16, 8, body as u32);
            out.extend_from_slice(&[0; 8]); // flags, exptime
            out.extend_from_slice(&key_bytes(id));
            out.extend_from_slice(value);
        }
    }
}

#[inline]
fn find_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Parses the reply to a request of `kind` at the start of `buf`. `Ok(None)` = not
/// complete yet; `Err` = protocol error (with a short description).
#[inline]
pub fn parse_reply(proto: Protocol, kind: ReqKind, buf: &[u8]) -> Result<Option<Reply>, String> {
    match proto {
        Protocol::Text => parse_text(kind, buf),
        Protocol::Binary => parse_binary(kind, buf),
    }
}

fn text_error(line: &[u8]) -> String {
    let l = &line[..line.len().min(80)];
    format!("unexpected reply line {:?}", String::from_utf8_lossy(l))
}

fn parse_text(kind: ReqKind, buf: &[u8]) -> Result<Option<Reply>, String> {
    match kind {
        ReqKind::Set => {
            let Some(lf) = find_lf(buf) else {
                return Ok(None);
            };
            if &buf[..=lf] == b"STORED\r\n" {
                Ok(Some(Reply {
                    len: lf + 1,
                    hits: 0,
                    misses: 0,
                }))
            } else {
                Err(text_error(&buf[..=lf]))
            }
        }
        ReqKind::Get(n) => {
            let mut pos = 0;
            let mut hits = 0u32;
            loop {
                let rest = &buf[pos..];
                let Some(lf) = find_lf(rest) else {
                    return Ok(None);
                };
                let line = &rest[..=lf];
                if line == b"END\r\n" {
                    let misses = (n as u32).saturating_sub(hits);
                    return Ok(Some(Reply {
                        len: pos + lf + 1,
                        hits,
                        misses,
                    }));
                }
                if !line.starts_with(b"VALUE ") || lf < 2 || line[lf - 1] != b'\r' {
                    return Err(text_error(line));
                }
                // Byte count = last field of "VALUE key flags bytes [cas]"; our gets
                // carry no cas, so it is the fourth field.
                let body = &line[6..lf - 1];
                let bytes_field = body
                    .split(|&c| c == b' ')
                    .nth(2)
                    .ok_or_else(|| text_error(line))?;
                let mut bytes: usize = 0;
                if bytes_field.is_empty() || bytes_field.len() > 10 {
                    return Err(text_error(line));
                }
                for &c in bytes_field {
                    if !c.is_ascii_digit() {
                        return Err(text_error(line));
                    }
                    bytes = bytes * 10 + (c - b'0') as usize;
                }
                let data_end = lf + 1 + bytes;
                if rest.len() < data_end + 2 {
                    return Ok(None);
                }
                if &rest[data_end..data_end + 2] != b"\r\n" {
                    return Err("value not followed by CRLF".into());
                }
                hits += 1;
                if hits > n as u32 {
                    return Err("more values than keys requested".into());
                }
                pos += data_end + 2;
            }
        }
    }
}

/// One binary response packet at the start of `b`: (opcode, status, total length).
fn bin_packet(b: &[u8]) -> Result<Option<(u8, u16, usize)>, String> {
    if b.len() < HDR {
        return Ok(None);
    }
    if b[0] != BIN_RES {
        return Err(format!("bad binary response magic 0x{:02x}", b[0]));
    }
    let body = u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
    if b.len() < HDR + body {
        return Ok(None);
    }
    Ok(Some((b[1], u16::from_be_bytes([b[6], b[7]]), HDR + body)))
}

fn parse_binary(kind: ReqKind, buf: &[u8]) -> Result<Option<Reply>, String> {
    match kind {
        ReqKind::Set => match bin_packet(buf)? {
            None => Ok(None),
            Some((OP_SET, 0, len)) => Ok(Some(Reply {
                len,
                hits: 0,
                misses: 0,
            })),
            Some((op, st, _)) => Err(format!("set: opcode 0x{op:02x} status 0x{st:04x}")),
        },
        ReqKind::Get(1) => match bin_packet(buf)? {
            None => Ok(None),
            Some((OP_GET, st, len)) if st == 0 || st == 1 => Ok(Some(Reply {
                len,
                hits: (st == 0) as u32,
                misses: (st == 1) as u32,
            })),
            Some((op, st, _)) => Err(format!("get: opcode 0x{op:02x} status 0x{st:04x}")),
        },
        ReqKind::Get(n) => {
            let mut pos = 0;
            let mut hits = 0u32;
            loop {
                match bin_packet(&buf[pos..])? {
                    None => return Ok(None),
                    Some((OP_NOOP, 0, len)) => {
                        return Ok(Some(Reply {
                            len: pos + len,
                            hits,
                            misses: (n as u32).saturating_sub(hits),
                        }))
                    }
                    Some((OP_GETKQ, 0, len)) => {
                        hits += 1;
                        if hits > n as u32 {
                            return Err("more values than keys requested".into());
                        }
                        pos += len;
                    }
                    Some((op, st, _)) => {
                        return Err(format!("multi-get: opcode 0x{op:02x} status 0x{st:04x}"))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(&key_bytes(42), b"key:00000042");
        assert_eq!(&key_bytes(12345678), b"key:12345678");
    }

    #[test]
    fn text_requests_and_replies() {
        let mut out = Vec::new();
        push_get(&mut out, Protocol::Text, &[1, 2]);
        push_set(&mut out, Protocol::Text, 3, b"abc");
        assert_eq!(
            out,
            b"get key:00000001 key:00000002\r\nset key:00000003 0 0 3\r\nabc\r\n".to_vec()
        );
        let r = b"VALUE key:00000001 0 3\r\nabc\r\nEND\r\nSTORED\r\n";
        let g = parse_reply(Protocol::Text, ReqKind::Get(2), r)
            .unwrap()
            .unwrap();
        assert_eq!((g.len, g.hits, g.misses), (34, 1, 1));
        let s = parse_reply(Protocol::Text, ReqKind::Set, &r[g.len..])
            .unwrap()
            .unwrap();
        assert_eq!(s.len, 8);
        for cut in 0..g.len {
            assert_eq!(
                parse_reply(Protocol::Text, ReqKind::Get(2), &r[..cut]),
                Ok(None)
            );
        }
        assert!(parse_reply(Protocol::Text, ReqKind::Set, b"SERVER_ERROR x\r\n").is_err());
        assert!(parse_reply(Protocol::Text, ReqKind::Get(1), b"ERROR\r\n").is_err());
    }

    #[test]
    fn binary_replies() {
        let mut miss = vec![BIN_RES, OP_GET, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9];
        miss.extend_from_slice(&[0; 12]);
        miss.extend_from_slice(b"Not found");
        let r = parse_reply(Protocol::Binary, ReqKind::Get(1), &miss)
            .unwrap()
            .unwrap();
        assert_eq!((r.len, r.hits, r.misses), (33, 0, 1));
        let mut m = vec![BIN_RES, OP_GETKQ, 0, 1, 4, 0, 0, 0, 0, 0, 0, 6];
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&[0, 0, 0, 0, b'k', b'v']);
        m.extend_from_slice(&[BIN_RES, OP_NOOP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&[0; 12]);
        let r = parse_reply(Protocol::Binary, ReqKind::Get(3), &m)
            .unwrap()
            .unwrap();
        assert_eq!((r.len, r.hits, r.misses), (54, 1, 2));
        assert_eq!(
            parse_reply(Protocol::Binary, ReqKind::Get(3), &m[..40]),
            Ok(None)
        );
    }
}
