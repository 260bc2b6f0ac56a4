//! Overload and fault suite: connections closed in every careless or hostile way,
//! partial uploads, clients that never read, huge multi-gets and authentication
//! floods. Every scenario is bounded in count and time, runs on loopback against a
//! server the test starts, and asserts the same invariants afterwards:
//!
//! - no connection is leaked: `curr_connections` and the server's open descriptors
//!   return to what they were before;
//! - a fresh client is answered quickly (p99 of a few hundred round trips);
//! - the server's RSS stays under the stated bound while the load is on;
//! - a sentinel value stored at the start is intact.
//!
//! `FERRO_TEST_SERVER=/usr/bin/memcached cargo test --release --test overload` runs
//! the scenarios that use no ferrocache-only option against memcached 1.6.18, which is
//! how the figures beside memcached's in the closing notes were taken.
mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Open descriptors of a process (sockets, epoll, pipes...).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The sentinel every scenario stores first and checks last.
const SENTINEL: &[u8] = b"set sentinel 7 0 10\r\nstill-here\r\n";

fn store_sentinel(s: &Server) {
    let mut c = s.connect();
    c.roundtrip(SENTINEL, b"STORED\r\n");
}

fn check_sentinel(s: &Server) {
    let mut c = s.connect();
    c.roundtrip(
        b"get sentinel\r\n",
        b"VALUE sentinel 7 10\r\nstill-here\r\nEND\r\n",
    );
}

/// What the server looks like with no client but the one asking.
struct Baseline {
    fds: usize,
    curr: u64,
}

fn baseline(s: &Server) -> Baseline {
    let mut c = s.connect();
    let curr = c.stat("curr_connections").and_then(|v| v.parse().ok());
    // The asking connection is one descriptor; measure while it is open.
    let fds = open_fds(s.pid());
    Baseline {
        fds,
        curr: curr.expect("curr_connections"),
    }
}

/// Waits (bounded) until the server is back at `base`; panics with what leaked.
fn assert_no_leak(s: &Server, base: &Baseline, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = (0, 0);
    while Instant::now() < deadline {
        let mut c = s.connect();
        let curr: u64 = c
            .stat("curr_connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        let fds = open_fds(s.pid());
        drop(c);
        if curr == base.curr && fds == base.fds {
            return;
        }
        last = (curr, fds);
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what}: connections leaked: curr_connections {} (was {}), open fds {} (was {})",
        last.0, base.curr, last.1, base.fds
    );
}

/// A binary SETQ of `key` = `value` (a quiet store: no reply on success).
fn setq(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0x11];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(8); // extras: flags + expiry
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&((8 + key.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&[0; 12]); // opaque, cas
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// How a test client ends its connection.
#[derive(Clone, Copy, Debug)]
enum End {
    /// close(): FIN.
    Fin,
    /// SO_LINGER 0 + close(): RST.
    Rst,
    /// shutdown(SHUT_WR), then read until the server closes.
    HalfClose,
}

fn end(mut s: TcpStream, how: End) {
    match how {
        End::Fin => drop(s),
        End::Rst => {
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        }
        End::HalfClose => {
            let _ = s.shutdown(Shutdown::Write);
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
}

/// Requests that get no reply, or are cut short, before the client goes away.
fn silent_requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("noreply set", b"set k 0 0 1 noreply\r\nx\r\n".to_vec()),
        ("quiet binary set", setq(b"k", b"x")),
        ("partial line", b"get ke".to_vec()),
        ("partial value", b"set k 0 0 100\r\nabc".to_vec()),
    ]
}

/// Opens `n` connections (each answered once, so the server has accepted it), sends
/// `payload` on all of them in a burst, then ends them all `how`.
fn burst(s: &Server, n: usize, payload: &[u8], how: End, greet: &str) {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = s.connect();
        if !greet.is_empty() {
            // The whole reply is read: unread bytes would turn a close into a reset.
            c.line(greet);
        }
        conns.push(c.stream);
    }
    for c in conns.iter_mut() {
        let _ = c.write_all(payload);
    }
    match how {
        End::HalfClose => {
            for c in &conns {
                let _ = c.shutdown(Shutdown::Write);
            }
            for c in conns {
                end(c, End::HalfClose);
            }
        }
        _ => {
            for c in conns {
                end(c, how);
            }
        }
    }
}

/// Every way of ending a connection after a request that gets no reply leaves no
/// socket behind (the lockout of issue #10: EPOLLRDHUP reported with the last bytes
/// and never read).
#[test]
fn no_close_pattern_leaks_a_connection() {
    let s = Server::ferrocache(&["-c", "4096"]);
    store_sentinel(&s);
    let base = baseline(&s);
    for (name, payload) in silent_requests() {
        for how in [End::Fin, End::Rst, End::HalfClose] {
            for _ in 0..4 {
                burst(&s, 250, &payload, how, "version\r\n");
            }
            assert_no_leak(&s, &base, &format!("{name} then {how:?}"));
        }
    }
    check_sentinel(&s);
}
