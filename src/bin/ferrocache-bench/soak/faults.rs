//! The connection fault patterns, one thread each, on raw sockets.

use super::state::*;
use super::values::*;
use crate::zipf::{KeyChooser, Rng};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Connections per burst of the close patterns.
pub(super) const BURST: usize = 8;

/// Runs one fault pattern until the deadline: a round, then a pause. A round's
/// error is a failure (something memcached would not do).
pub(super) fn fault_loop(
    sh: &Shared,
    name: &str,
    pause: Duration,
    mut round: impl FnMut(&mut Rng) -> Result<(), String>,
) {
    let mut rng = Rng::new(fnv64(name.as_bytes(), b"fault"));
    while sh.running() {
        if let Err(e) = round(&mut rng) {
            sh.fail(Fail::Error, name, e);
        }
        sleep_while_running(sh, pause);
    }
}

/// Reads until `\r\n` (a one-line reply).
pub(super) fn read_line_raw(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) => return Err("connection closed by the server".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if got.len() > 4096 {
            return Err("reply line too long".into());
        }
    }
    Ok(got)
}

/// `BURST` connections, each greeted (a first request answered) so the server holds it.
pub(super) fn burst<'s>(
    sh: &'s Shared<'s>,
    greet: fn(&mut Raw<'s>) -> Result<(), String>,
) -> Result<Vec<Raw<'s>>, String> {
    let mut conns = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let mut c = raw(sh)?;
        greet(&mut c)?;
        conns.push(c);
    }
    Ok(conns)
}

/// `version` and its reply: the server has accepted and served this connection.
pub(super) fn greet_text(r: &mut Raw) -> Result<(), String> {
    r.s.write_all(b"version\r\n")
        .map_err(|e| format!("send version: {e}"))?;
    let line = read_line_raw(&mut r.s).map_err(|e| format!("version: {e}"))?;
    if !line.starts_with(b"VERSION ") {
        return Err(format!("version: unexpected reply {}", show(&line)));
    }
    Ok(())
}

/// A binary request packet.
pub(super) fn bin_packet(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&((extras.len() + key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// A binary NOOP and its reply: the connection speaks binary and is served.
pub(super) fn greet_binary(r: &mut Raw) -> Result<(), String> {
    r.s.write_all(&bin_packet(0x0a, b"", &[], &[]))
        .map_err(|e| format!("send NOOP: {e}"))?;
    let mut h = [0u8; 24];
    r.s.read_exact(&mut h)
        .map_err(|e| format!("NOOP reply: {e}"))?;
    if h[0] != 0x81 || h[1] != 0x0a || h[6..8] != [0, 0] {
        return Err(format!("NOOP: unexpected reply header {}", show(&h)));
    }
    Ok(())
}

/// Closes with a reset (SO_LINGER 0).
pub(super) fn reset(r: Raw) {
    let _ = socket2::SockRef::from(&r.s).set_linger(Some(Duration::ZERO));
    drop(r);
}

/// Reads until the server closes (EOF or reset) within `limit`; false on a timeout.
pub(super) fn read_until_closed(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 16 << 10];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            // Reset: closed too.
            Err(_) => return true,
        }
    }
}

/// Reads whatever arrives within `limit` (the reply to garbage), ignoring it.
pub(super) fn drain(s: &mut TcpStream, limit: Duration) {
    let _ = read_until_closed(s, limit);
}

/// noreply set, then FIN.
pub(super) fn noreply_then_fin(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let mut conns = burst(sh, greet_text)?;
    for c in &mut conns {
        let req = format!(
            "set f:noreply:{} 0 0 5 noreply\r\nhello\r\n",
            rng.below(100)
        );
        let _ = c.s.write_all(req.as_bytes());
    }
    drop(conns);
    Ok(())
}

/// Quiet binary SETQ, then FIN.
pub(super) fn setq_then_fin(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let mut conns = burst(sh, greet_binary)?;
    for c in &mut conns {
        let key = format!("f:setq:{}", rng.below(100));
        let _ =
            c.s.write_all(&bin_packet(0x11, key.as_bytes(), &[0; 8], b"quiet"));
    }
    drop(conns);
    Ok(())
}

/// Part of a request line, then RST.
pub(super) fn partial_line_then_rst(sh: &Shared, _rng: &mut Rng) -> Result<(), String> {
    let mut conns = burst(sh, greet_text)?;
    for c in &mut conns {
        let _ = c.s.write_all(b"get f:partial-li");
    }
    for c in conns {
        reset(c);
    }
    Ok(())
}

/// 600 KB of a 1 MB value, a pause, then FIN or RST (two at a time).
pub(super) fn partial_value(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let body = vec![b'p'; 600_000];
    let mut conns = Vec::with_capacity(2);
    for i in 0..2 {
        let mut c = raw(sh)?;
        greet_text(&mut c)?;
        let _ =
            c.s.write_all(format!("set f:big:{i} 0 0 1000000\r\n").as_bytes());
        let _ = c.s.write_all(&body);
        conns.push(c);
    }
    sleep_while_running(sh, Duration::from_millis(200));
    let rst = rng.below(2) == 0;
    for c in conns {
        if rst {
            reset(c);
        } else {
            drop(c);
        }
    }
    Ok(())
}

/// noreply request, shutdown(Write), then read until the server closes.
pub(super) fn half_close(sh: &Shared, _rng: &mut Rng) -> Result<(), String> {
    let mut conns = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let mut c = raw(sh)?;
        greet_text(&mut c)?;
        let _ = c.s.write_all(b"set f:half 0 0 1 noreply\r\nx\r\n");
        conns.push(c);
    }
    for c in &conns {
        let _ = c.s.shutdown(Shutdown::Write);
    }
    let mut open = 0;
    for mut c in conns {
        if !read_until_closed(&mut c.s, Duration::from_secs(5)) {
            open += 1;
        }
    }
    if open > 0 {
        return Err(format!(
            "{open} of {BURST} half-closed connections not closed by the server within 5 s"
        ));
    }
    Ok(())
}

/// Four clients send 40 lines of 100-key multi-gets of popular keys, never read,
/// and hold the connection for 3 s.
pub(super) fn never_reader(sh: &Shared, rng: &mut Rng, keys: &KeyChooser) -> Result<(), String> {
    let mut req = Vec::with_capacity(40 * 100 * 10);
    for _ in 0..40 {
        req.extend_from_slice(b"get");
        for _ in 0..100 {
            let _ = write!(req, " k:{}", keys.sample(rng));
        }
        req.extend_from_slice(b"\r\n");
    }
    let mut conns = Vec::with_capacity(4);
    for _ in 0..4 {
        let mut c = raw(sh)?;
        // The server stops reading once the replies fill this client's share.
        let _ = c.s.set_write_timeout(Some(Duration::from_millis(300)));
        let _ = c.s.write_all(&req);
        conns.push(c);
    }
    sleep_while_running(sh, Duration::from_secs(3));
    drop(conns);
    Ok(())
}

/// One `get` line of 5,000 keys (most of them missing), read fully and verified.
pub(super) fn big_multiget(sh: &Shared, rng: &mut Rng) -> Result<(), String> {
    let mut p = Probe::connect(sh, Duration::from_secs(10))?;
    let mut wanted: Vec<Vec<u8>> = (0..5000).map(|_| key_of(rng.below(KEYS))).collect();
    let mut line = b"get".to_vec();
    for k in &wanted {
        line.push(b' ');
        line.extend_from_slice(k);
    }
    line.extend_from_slice(b"\r\n");
    wanted.sort_unstable();
    p.c.send(&line)?;
    let mut reply = Vec::new();
    let mut data = Vec::new();
    loop {
        p.c.read_line(&mut reply)
            .map_err(|e| format!("5,000-key get: {e}"))?;
        if reply == b"END" {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&reply).into_owned();
        let f: Vec<&str> = text.split(' ').collect();
        let (key, flags, len) = match f.as_slice() {
            ["VALUE", k, fl, n] => match (fl.parse::<u32>(), n.parse::<usize>()) {
                (Ok(fl), Ok(n)) => (k.as_bytes().to_vec(), fl, n),
                _ => return Err(format!("5,000-key get: bad line {}", show(&reply))),
            },
            _ => return Err(format!("5,000-key get: unexpected line {}", show(&reply))),
        };
        p.c.read_exact(len + 2, &mut data)
            .map_err(|e| format!("5,000-key get: {e}"))?;
        if !data.ends_with(b"\r\n") {
            return Err(format!(
                "5,000-key get: value of {} not ended by CRLF",
                show(&key)
            ));
        }
        data.truncate(len);
        if wanted.binary_search(&key).is_err() {
            sh.fail(
                Fail::Corrupt,
                "multiget-5000",
                format!("answered key {} that was not asked for", show(&key)),
            );
        } else if let Err(m) = verify(&key, &data, Some(flags)) {
            sh.fail(Fail::Corrupt, "multiget-5000", m);
        }
    }
}

/// Garbage, one connection at a time, in turns: random bytes (not binary), a bad
/// magic after a NOOP (the NOOP is answered, then the server closes), SASL on a
/// server without it, HTTP, an over-long line.
pub(super) fn garbage(sh: &Shared, rng: &mut Rng, turn: &mut u64) -> Result<(), String> {
    *turn += 1;
    let mut c = raw(sh)?;
    match *turn % 5 {
        0 => {
            let n = 1 + rng.below(4096) as usize;
            let mut junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            if junk[0] == 0x80 {
                junk[0] = b'?'; // a text connection: the binary magic would pick opcodes
            }
            let _ = c.s.write_all(&junk);
            drain(&mut c.s, Duration::from_millis(300));
        }
        1 => {
            greet_binary(&mut c)?;
            let mut bad = bin_packet(0x0a, b"", &[], &[]);
            bad[0] = 0x81;
            let _ = c.s.write_all(&bad);
            if !read_until_closed(&mut c.s, Duration::from_secs(3)) {
                return Err("bad binary magic: connection not closed within 3 s".into());
            }
        }
        2 => {
            let _ =
                c.s.write_all(&bin_packet(0x21, b"PLAIN", &[], b"\0nobody\0guess"));
            drain(&mut c.s, Duration::from_millis(300));
        }
        3 => {
            let _ = c.s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
            drain(&mut c.s, Duration::from_millis(300));
        }
        _ => {
            let _ = c.s.write_all(&vec![b'x'; 3000]);
            let _ = c.s.write_all(b"\r\n");
            drain(&mut c.s, Duration::from_millis(300));
        }
    }
    if rng.below(2) == 0 {
        reset(c);
    }
    Ok(())
}
