//! memcached's base64, for the meta protocol's `b` keys (decoding as memcached does:
//! bytes outside the alphabet are skipped).

/// memcached's base64 decoding (bytes outside the alphabet are skipped, the number of
/// alphabet bytes must be a non-zero multiple of four, decoding stops after the first
/// group with padding). None when it fails or decodes to nothing.
pub fn base64_decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    fn val(b: u8) -> Option<u8> {
        match b {
            b'A'..=b'Z' => Some(b - b'A'),
            b'a'..=b'z' => Some(b - b'a' + 26),
            b'0'..=b'9' => Some(b - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            b'=' => Some(0),
            _ => None,
        }
    }
    let count = src.iter().filter(|&&b| val(b).is_some()).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut block = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    let mut pos = 0;
    for &b in src {
        let Some(v) = val(b) else { continue };
        if b == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            let bytes = [
                (block[0] << 2) | (block[1] >> 4),
                (block[1] << 4) | (block[2] >> 2),
                (block[2] << 6) | block[3],
            ];
            let keep = match pad {
                0 => 3,
                1 => 2,
                2 => 1,
                _ => return None,
            };
            if pos + keep > out.len() {
                return None;
            }
            out[pos..pos + keep].copy_from_slice(&bytes[..keep]);
            pos += keep;
            n = 0;
            if pad > 0 {
                break;
            }
        }
    }
    (pos > 0).then_some(pos)
}

/// Appends the standard base64 encoding (with padding) of `src`.
pub fn base64_encode(out: &mut Vec<u8>, src: &[u8]) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in src.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        out.push(T[(b[0] >> 2) as usize]);
        out.push(T[(((b[0] & 3) << 4) | (b[1] >> 4)) as usize]);
        out.push(if c.len() > 1 {
            T[(((b[1] & 15) << 2) | (b[2] >> 6)) as usize]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            T[(b[2] & 63) as usize]
        } else {
            b'='
        });
    }
}
