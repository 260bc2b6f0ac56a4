//! Hostile and careless clients that must not hurt the others (issue #24, points 1, 2
//! and 8), each beside memcached 1.6.18 under the same flags:
//!
//! - **stalled uploads**: 33 connections each send most of a 1 MB value and stop; a
//!   legitimate client's stores of 50 KB, 200 KB and 1 MB must all succeed (memcached:
//!   every one succeeds, its values in flight take their memory from `-m`);
//! - **clients that never read**: 60 connections with a 4 KiB receive buffer ask for
//!   four 16 MB values and never read; the server's RSS must stay within `-m` + 64 MiB
//!   (memcached: +0.4 MiB), over plain TCP and over TLS, and a reading client still
//!   gets the values whole; and 400 such clients of 1 MB values;
//! - **costly introspection**: three clients looping `stats items` or `stats hotkeys
//!   1000` must not make other clients' requests much slower (p50 of 8 closed-loop
//!   clients, against the same clients without the loop).
//!
//! Every scenario is bounded in count and time and runs on loopback against servers
//! the test starts. The figures are printed (`--nocapture`);
//! `FERRO_TEST_SERVER=/usr/bin/memcached` runs the same scenarios against memcached
//! as "ours" (the TLS one included).
use crate::common;
use crate::common::tls::{client_config, tls_args, Pki};
use crate::common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// A TCP connection to `port` with a small receive buffer (set before connecting, so
/// the window the server sees is small too).
fn small_window_socket(port: u16) -> TcpStream {
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(4096).ok();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    s.connect(&addr.into()).expect("connect");
    let s: TcpStream = s.into();
    s.set_write_timeout(Some(Duration::from_secs(5))).ok();
    s
}

/// Reads `get <key>`'s reply and checks it is exactly `value`.
fn get_exact(s: &mut (impl Read + ?Sized), key: &str, value: &[u8], limit: Duration) {
    let head = format!("VALUE {key} 0 {}\r\n", value.len());
    let (got, _) = read_n_from(s, head.len() + value.len() + 7, limit);
    assert_eq!(
        show(&got[..head.len().min(got.len())]),
        show(head.as_bytes()),
        "head of {key}"
    );
    assert!(
        got.len() == head.len() + value.len() + 7
            && got[head.len()..head.len() + value.len()] == *value
            && got.ends_with(b"\r\nEND\r\n"),
        "{key}: {} bytes of {}",
        got.len(),
        head.len() + value.len() + 7
    );
}

/// Reads `n` bytes (or what came within `limit`).
fn read_n_from(s: &mut (impl Read + ?Sized), n: usize, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let deadline = Instant::now() + limit;
    while got < n && Instant::now() < deadline {
        match s.read(&mut out[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    out.truncate(got);
    (out, got == n)
}

// ---------------------------------------------------------------------------------
// 1. Stalled uploads

/// Sizes of the legitimate stores and how many of each.
const LEGIT: [(usize, usize); 3] = [(50_000, 30), (200_000, 15), (1_000_000, 8)];

/// 33 connections each announce a 1,048,000-byte value, send 1,000,000 bytes of it and
/// stall; meanwhile another client stores values of each of [`LEGIT`]'s sizes. Returns
/// how many of each failed.
fn legit_failures_under_stalled_uploads(s: &Server) -> Vec<usize> {
    let chunk = vec![b'a'; 1_000_000];
    let mut attackers = Vec::new();
    for i in 0..33 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).expect("connect");
        c.set_write_timeout(Some(Duration::from_secs(10))).ok();
        c.write_all(format!("set atk{i} 0 0 1048000\r\n").as_bytes())
            .expect("attack line");
        c.write_all(&chunk).expect("attack data");
        attackers.push(c);
    }
    // Let the server take in what was sent.
    std::thread::sleep(Duration::from_millis(500));
    let mut c = s.connect();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok();
    let mut failures = Vec::new();
    for (size, n) in LEGIT {
        let value = vec![b'l'; size];
        let mut failed = 0;
        for i in 0..n {
            c.send(format!("set legit:{size}:{i} 0 0 {size}\r\n").as_bytes());
            c.send(&value);
            c.send(b"\r\n");
            if c.read_until(b"\r\n") != b"STORED\r\n" {
                failed += 1;
            }
        }
        // What was stored last reads back whole.
        if failed == 0 {
            c.send(format!("get legit:{size}:{}\r\n", n - 1).as_bytes());
            get_exact(
                &mut c.stream,
                &format!("legit:{size}:{}", n - 1),
                &value,
                Duration::from_secs(10),
            );
        }
        failures.push(failed);
    }
    drop(attackers);
    failures
}

fn show_failures(f: &[usize]) -> String {
    LEGIT
        .iter()
        .zip(f)
        .map(|((size, n), k)| format!("{k}/{n} at {} KB", size / 1000))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn stalled_uploads_do_not_starve_other_clients_stores() {
    let args = ["-m", "64", "-t", "2"];
    let ours = {
        let s = Server::ferrocache(&args);
        let f = legit_failures_under_stalled_uploads(&s);
        // The stalled uploads are still being served: the server answers and holds
        // the bound of the overload suite (-m + 64 MiB).
        let rss = s.rss_bytes();
        eprintln!(
            "33 stalled 1 MB uploads, -m 64: legitimate sets failed: ours {}; RSS {:.1} MiB",
            show_failures(&f),
            rss as f64 / MIB as f64
        );
        f
    };
    if !targeting_reference() {
        if let Some(m) = Server::memcached(&args) {
            let f = legit_failures_under_stalled_uploads(&m);
            eprintln!(
                "33 stalled 1 MB uploads, -m 64: legitimate sets failed: memcached {}",
                show_failures(&f)
            );
        }
    }
    assert_eq!(
        ours,
        vec![0; LEGIT.len()],
        "legitimate sets failed under 33 stalled uploads: {}",
        show_failures(&ours)
    );
}

// ---------------------------------------------------------------------------------
// 2. Clients that never read

/// Something a client can be: a plain socket or a TLS stream over one.
trait Pipe: Read + Write + Send {}
impl Pipe for TcpStream {}
impl Pipe for common::tls::TlsStream {}

/// Opens a client connection to a port: with a 4 KiB receive buffer when asked
/// (`true`), else an ordinary one; reads time out after 20 s.
type Dial<'a> = &'a dyn Fn(u16, bool) -> Box<dyn Pipe>;

fn plain(port: u16, small: bool) -> Box<dyn Pipe> {
    let s = if small {
        small_window_socket(port)
    } else {
        TcpStream::connect(("127.0.0.1", port)).expect("connect")
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    Box::new(s)
}

/// Stores `value` under `key` over `p` and checks the reply.
fn set_on(p: &mut dyn Pipe, key: &str, value: &[u8]) {
    let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
    p.write_all(&req).expect("send");
    p.flush().expect("flush");
    let (got, _) = read_n_from(p, 8, Duration::from_secs(20));
    assert_eq!(show(&got), "STORED\\r\\n\n", "set {key}");
}

/// `clients` connections (4 KiB receive buffers) each send `req` and never read,
/// while a reading client fetches `check` and verifies it. Returns the RSS before,
/// the peak RSS, and the reader's time.
fn non_reader_growth(
    s: &Server,
    clients: usize,
    req: &[u8],
    dial: Dial<'_>,
    check: (&str, &[u8]),
) -> (u64, u64, Duration) {
    std::thread::sleep(Duration::from_millis(200));
    let base = rss_of(s.pid());
    let (reader_time, peak) = peak_rss_during(s.pid(), || {
        let mut conns = Vec::new();
        for _ in 0..clients {
            let mut c = dial(s.port, true);
            let _ = c.write_all(req);
            let _ = c.flush();
            conns.push(c);
        }
        // Let the server produce what it will for them.
        std::thread::sleep(Duration::from_millis(1500));
        let mut r = dial(s.port, false);
        let t = Instant::now();
        r.write_all(format!("get {}\r\n", check.0).as_bytes())
            .expect("send");
        r.flush().expect("flush");
        get_exact(&mut r, check.0, check.1, Duration::from_secs(20));
        let took = t.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        drop(conns);
        took
    });
    (base, peak, reader_time)
}

/// Four values of `size` bytes, `<prefix>0`..`<prefix>3`, each filled with its own
/// byte.
fn store_values(s: &Server, dial: Dial<'_>, prefix: &str, size: usize) -> Vec<Vec<u8>> {
    let mut c = dial(s.port, false);
    (0..4u8)
        .map(|i| {
            let v = vec![b'A' + i; size];
            set_on(&mut *c, &format!("{prefix}{i}"), &v);
            v
        })
        .collect()
}

/// The scenario of the issue: `-m 256 -I 32m`, four 16 MB values, 60 clients each
/// sending `get bigN` for the four and never reading. Returns (base, peak) RSS.
fn sixty_non_readers(s: &Server, dial: Dial<'_>) -> (u64, u64) {
    let values = store_values(s, dial, "big", 16_000_000);
    let req: Vec<u8> = (0..4)
        .flat_map(|i| format!("get big{i}\r\n").into_bytes())
        .collect();
    let (base, peak, took) = non_reader_growth(s, 60, &req, dial, ("big2", &values[2]));
    eprintln!(
        "    base {:.1} MiB, peak {:.1} MiB (+{:.1}), a reader's 16 MB get {:?}",
        base as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        peak.saturating_sub(base) as f64 / MIB as f64,
        took
    );
    (base, peak)
}

const BIG_ARGS: [&str; 8] = ["-m", "256", "-I", "32m", "-c", "1024", "-t", "2"];

#[test]
fn clients_that_never_read_big_values_stay_inside_the_memory_bound() {
    eprintln!("60 non-readers of four 16 MB values, -m 256 -I 32m (plain TCP):");
    eprintln!("  ours:");
    let (_, peak) = sixty_non_readers(&Server::ferrocache(&BIG_ARGS), &plain);
    if !targeting_reference() {
        if let Some(m) = Server::memcached(&BIG_ARGS) {
            eprintln!("  memcached:");
            sixty_non_readers(&m, &plain);
        }
    }
    assert!(
        peak <= (256 + 64) * MIB,
        "peak RSS {:.1} MiB over -m + 64 MiB",
        peak as f64 / MIB as f64
    );
}

#[test]
fn tls_clients_that_never_read_big_values_stay_inside_the_memory_bound() {
    let pki = Pki::new("hostile-tls");
    let mut args: Vec<String> = BIG_ARGS.iter().map(|s| s.to_string()).collect();
    args.extend(tls_args(&pki, ""));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cfg = client_config(&pki, false, &[]);
    let tls = move |port: u16, small: bool| -> Box<dyn Pipe> {
        let tcp = if small {
            small_window_socket(port)
        } else {
            TcpStream::connect(("127.0.0.1", port)).expect("connect")
        };
        tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("handshake");
        }
        Box::new(s)
    };
    eprintln!("60 non-readers of four 16 MB values, -m 256 -I 32m, over TLS:");
    eprintln!("  ours:");
    let (_, peak) = sixty_non_readers(&Server::ferrocache(&args), &tls);
    if !targeting_reference() {
        if let Some(m) = Server::memcached(&args) {
            eprintln!("  memcached:");
            sixty_non_readers(&m, &tls);
        }
    }
    assert!(
        peak <= (256 + 64) * MIB,
        "peak RSS {:.1} MiB over -m + 64 MiB",
        peak as f64 / MIB as f64
    );
}

#[test]
fn many_clients_that_never_read_1mb_values_stay_inside_the_memory_bound() {
    let args = ["-m", "64", "-c", "1024", "-t", "2"];
    let run = |s: &Server| -> (u64, u64) {
        let values = store_values(s, &plain, "m", 1_000_000);
        let (base, peak, took) =
            non_reader_growth(s, 400, b"get m0 m1 m2 m3\r\n", &plain, ("m1", &values[1]));
        eprintln!(
            "    base {:.1} MiB, peak {:.1} MiB (+{:.1}), a reader's 1 MB get {:?}",
            base as f64 / MIB as f64,
            peak as f64 / MIB as f64,
            peak.saturating_sub(base) as f64 / MIB as f64,
            took
        );
        (base, peak)
    };
    eprintln!("400 non-readers of four 1 MB values, -m 64:");
    eprintln!("  ours:");
    let (_, peak) = run(&Server::ferrocache(&args));
    if !targeting_reference() {
        if let Some(m) = Server::memcached(&args) {
            eprintln!("  memcached:");
            run(&m);
        }
    }
    assert!(
        peak <= (64 + 64) * MIB,
        "peak RSS {:.1} MiB over -m + 64 MiB",
        peak as f64 / MIB as f64
    );
}

// ---------------------------------------------------------------------------------
// 8. Costly introspection

/// Stores 200,000 items of 100 bytes (`k<i>`) and reads the first 3,000 a few times
/// (so hot keys have something to rank).
fn fill_small(s: &Server) {
    let mut c = s.connect();
    let mut batch = Vec::new();
    for i in 0..200_000 {
        batch.extend_from_slice(format!("set k{i} 0 0 100 noreply\r\n").as_bytes());
        batch.extend_from_slice(&[b'v'; 100]);
        batch.extend_from_slice(b"\r\n");
        if batch.len() > 1 << 20 {
            c.send(&batch);
            batch.clear();
        }
    }
    for i in 0..20_000 {
        batch.extend_from_slice(format!("get k{}\r\n", i % 3000).as_bytes());
    }
    batch.extend_from_slice(b"mn\r\n");
    let mut r = c.stream.try_clone().expect("clone");
    let reader = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        r.set_read_timeout(Some(Duration::from_secs(30))).ok();
        while !tail.ends_with(b"MN\r\n") {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    let keep = tail.len().saturating_sub(8);
                    tail.drain(..keep);
                }
            }
        }
    });
    c.send(&batch);
    let _ = reader.join();
}

/// p50 (µs) of `get` round trips of 8 closed-loop clients over `dur`.
fn victims_p50(port: u16, dur: Duration) -> u64 {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                c.set_nodelay(true).ok();
                c.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut lat = Vec::new();
                let mut buf = [0u8; 512];
                let end = Instant::now() + dur;
                let mut i = t * 100;
                while Instant::now() < end && lat.len() < 200_000 {
                    let req = format!("get k{}\r\n", i % 3000);
                    i += 1;
                    let t0 = Instant::now();
                    if c.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut got = Vec::new();
                    while !got.ends_with(b"END\r\n") {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return lat,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    lat.push(t0.elapsed().as_micros() as u64);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    all.sort_unstable();
    all.get(all.len() / 2).copied().unwrap_or(0)
}

/// Other clients' p50 without and with three clients looping `cmd`, and the loops'
/// request count.
fn introspection_slowdown(s: &Server, cmd: &'static str) -> (u64, u64, u64) {
    let dur = Duration::from_millis(1500);
    let base = victims_p50(s.port, dur);
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..3)
        .map(|_| {
            let (stop, port) = (stop.clone(), s.port);
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                c.set_nodelay(true).ok();
                c.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0u64;
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if c.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
                        break;
                    }
                    let mut tail = Vec::new();
                    while !(tail.ends_with(b"END\r\n") || tail.ends_with(b"ERROR\r\n")) {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return n,
                            Ok(k) => {
                                tail.extend_from_slice(&buf[..k]);
                                let keep = tail.len().saturating_sub(8);
                                tail.drain(..keep);
                            }
                        }
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let loaded = victims_p50(s.port, dur);
    stop.store(true, Ordering::Relaxed);
    let n: u64 = loops.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    (base, loaded, n)
}

#[test]
fn introspection_loops_do_not_slow_other_clients() {
    let args = ["-m", "256", "-t", "2"];
    let mut worst = 0.0f64;
    for cmd in ["stats items", "stats hotkeys 1000"] {
        let s = Server::ferrocache(&args);
        fill_small(&s);
        // The better of two tries: the machine's other load moves a single one.
        let mut best = f64::MAX;
        for _ in 0..2 {
            let (base, loaded, n) = introspection_slowdown(&s, cmd);
            let ratio = loaded as f64 / base.max(1) as f64;
            eprintln!(
                "3 clients looping `{cmd}`: other clients' p50 {base} -> {loaded} us ({ratio:.1}x), {n} loop requests (ours)"
            );
            best = best.min(ratio);
            if best <= 4.0 {
                break;
            }
        }
        worst = worst.max(best);
        drop(s);
        if !targeting_reference() {
            if let Some(m) = Server::memcached(&args) {
                fill_small(&m);
                let (base, loaded, n) = introspection_slowdown(&m, cmd);
                eprintln!(
                    "3 clients looping `{cmd}`: other clients' p50 {base} -> {loaded} us ({:.1}x), {n} loop requests (memcached)",
                    loaded as f64 / base.max(1) as f64
                );
            }
        }
    }
    // memcached: 0.9-1.3x in the issue (and up to 2.8x on a busy 2-core machine,
    // where the loops' own reading competes for the cores). 4x is far under what
    // rendering every request cost (10x to 30x).
    assert!(
        worst <= 4.0,
        "introspection loops made other clients {worst:.1}x slower"
    );
}

/// `total_malloced` of `stats slabs`: the item memory the server holds.
fn malloced(s: &Server) -> u64 {
    s.connect()
        .stats("slabs")
        .into_iter()
        .find(|(k, _)| k == "total_malloced")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A value streamed to a slow reader is sent as it was when asked for, whole, while
/// other clients replace and delete the key and push it out of the cache; the memory
/// it pinned is given back once the reply is done, or soon after the reader leaves.
#[test]
fn a_streamed_value_stays_whole_while_it_is_replaced_and_deleted() {
    if targeting_reference() {
        eprintln!("NOTICE: total_malloced of a pinned value is ferrocache's; skipping");
        return;
    }
    let s = Server::ferrocache(&["-m", "64", "-I", "16m", "-t", "2"]);
    let mut w = s.connect();
    w.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok();
    let size = 12_000_000;
    let a: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    set_on(&mut w.stream, "big", &a);
    // Two slow readers: one will read it all, one will leave.
    let mut reader = small_window_socket(s.port);
    reader.set_read_timeout(Some(Duration::from_secs(20))).ok();
    reader.write_all(b"get big\r\n").expect("send");
    let mut leaver = small_window_socket(s.port);
    leaver.write_all(b"get big\r\n").expect("send");
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..3u8 {
        set_on(&mut w.stream, "big", &vec![b'B' + i; size]);
    }
    w.roundtrip(b"delete big\r\n", b"DELETED\r\n");
    // Push everything else out: the pinned value stays, unlisted.
    for i in 0..8 {
        set_on(&mut w.stream, &format!("fill{i}"), &vec![b'f'; 6_000_000]);
    }
    w.roundtrip(b"get big\r\n", b"END\r\n");
    let held = malloced(&s);
    assert!(held <= 64 * MIB, "item memory {held} over -m");
    get_exact(&mut reader, "big", &a, Duration::from_secs(30));
    let after_read = malloced(&s);
    drop(leaver);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after_close = malloced(&s);
    while after_close + size as u64 > after_read && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after_close = malloced(&s);
    }
    eprintln!(
        "item memory: {held} while two readers pinned the replaced value, {after_read} once one had read it, {after_close} after the other left"
    );
    assert!(
        after_close + size as u64 <= after_read || after_close + (size as u64) <= held,
        "the pinned value was not given back: {held} -> {after_read} -> {after_close}"
    );
}

/// Replies with values larger than a connection may buffer (streamed from the store)
/// are byte for byte memcached's, in the text, meta and binary protocols, and the
/// requests pipelined after them are answered after them.
#[test]
fn large_values_are_sent_byte_for_byte_as_memcached_sends_them() {
    let args = ["-m", "64", "-I", "8m", "-t", "2"];
    let size = 5_000_000usize;
    let transcript = |s: &Server| -> (Vec<u8>, Vec<u8>) {
        let v: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let mut c = s.connect();
        c.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok();
        c.send(format!("set big 7 0 {size}\r\n").as_bytes());
        c.send(&v);
        c.send(b"\r\nset small 3 0 2\r\nhi\r\n");
        assert_eq!(
            c.read_until(b"STORED\r\nSTORED\r\n"),
            b"STORED\r\nSTORED\r\n"
        );
        c.send(b"get small big small\r\ngets big\r\nmg big s v f k t\r\ngat 0 big\r\nmn\r\n");
        let text = c.read_until(b"MN\r\n");
        let mut b = s.connect();
        b.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok();
        let mut req = binary_request(0x0c, b"big", &[], &[], 1); // GETK
        req.extend(binary_request(0x0a, b"", &[], &[], 2)); // NOOP
        b.send(&req);
        let bin = b.read_exact(24 + 4 + 3 + size + 24);
        (text, bin)
    };
    let (text, bin) = transcript(&Server::ferrocache(&args));
    let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    // The text replies around the value, whatever the reference says.
    let head = b"VALUE small 3 2\r\nhi\r\nVALUE big 7 5000000\r\n";
    assert!(
        text.starts_with(head),
        "{}",
        show(&text[..80.min(text.len())])
    );
    assert_eq!(&text[head.len()..head.len() + size], &value[..]);
    assert!(
        text.ends_with(b"END\r\nMN\r\n"),
        "{}",
        show(&text[text.len() - 20..])
    );
    assert_eq!(&bin[24 + 4 + 3..24 + 4 + 3 + size], &value[..]);
    if targeting_reference() {
        return;
    }
    if let Some(m) = Server::memcached(&args) {
        let (mtext, mbin) = transcript(&m);
        assert!(
            text == mtext,
            "text replies differ: ours {} bytes, memcached {}; first difference at {:?}",
            text.len(),
            mtext.len(),
            text.iter().zip(&mtext).position(|(a, b)| a != b)
        );
        assert!(bin == mbin, "binary replies differ");
    }
}

/// Clients that never read pin what they asked for only up to a bound: 150 of them
/// asking each for another 1 MB value at `-m 64` neither refuse another client's
/// stores nor take the server past `-m` + 64 MiB.
#[test]
fn clients_that_never_read_many_values_do_not_starve_other_clients_stores() {
    let args = ["-m", "64", "-c", "1024", "-t", "2"];
    let run = |s: &Server| -> (usize, u64, u64) {
        let mut w = s.connect();
        w.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .ok();
        let base = rss_of(s.pid());
        let value = vec![b'v'; 1_000_000];
        let ((readers, failed), peak) = peak_rss_during(s.pid(), || {
            let mut readers = Vec::new();
            for i in 0..150 {
                set_on(&mut w.stream, &format!("v{i}"), &value);
                let mut r = small_window_socket(s.port);
                let _ = r.write_all(format!("get v{i}\r\n").as_bytes());
                readers.push(r);
            }
            std::thread::sleep(Duration::from_millis(500));
            let mut failed = 0;
            for i in 0..40 {
                w.send(format!("set legit{i} 0 0 {}\r\n", value.len()).as_bytes());
                w.send(&value);
                w.send(b"\r\n");
                if w.read_until(b"\r\n") != b"STORED\r\n" {
                    failed += 1;
                }
            }
            (readers, failed)
        });
        drop(readers);
        (failed, base, peak)
    };
    let (failed, base, peak) = run(&Server::ferrocache(&args));
    eprintln!(
        "150 non-readers of distinct 1 MB values, -m 64: legitimate 1 MB sets failed {failed}/40; RSS {:.1} -> {:.1} MiB (ours)",
        base as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    if !targeting_reference() {
        if let Some(m) = Server::memcached(&args) {
            let (f, b, p) = run(&m);
            eprintln!(
                "150 non-readers of distinct 1 MB values, -m 64: legitimate 1 MB sets failed {f}/40; RSS {:.1} -> {:.1} MiB (memcached)",
                b as f64 / MIB as f64,
                p as f64 / MIB as f64
            );
        }
    }
    assert_eq!(failed, 0, "legitimate sets failed");
    assert!(
        peak <= (64 + 64) * MIB,
        "peak RSS {:.1} MiB over -m + 64 MiB",
        peak as f64 / MIB as f64
    );
}

/// Past what replies may pin and copy, a request for a large value waits (it is
/// neither refused nor served from a copy beyond the bound) and is served, whole,
/// once other clients give memory back; a value pinned already is served at once.
#[test]
fn a_large_value_past_the_bound_waits_and_is_served_when_memory_comes_back() {
    if targeting_reference() {
        eprintln!("NOTICE: the pinning bound is ferrocache's; skipping");
        return;
    }
    // Replies may pin 16 MiB (-m / 4) and buffer 4 MiB (the buffer budget).
    let s = Server::ferrocache(&["-m", "64", "-I", "8m", "-o", "read_buf_mem_limit=4"]);
    let mut w = s.connect();
    w.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok();
    let values: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'p' + i; 6_000_000]).collect();
    for (i, v) in values.iter().enumerate() {
        set_on(&mut w.stream, &format!("p{i}"), v);
    }
    // Two clients pin p0 and p1 (12 MB) and never read.
    let hogs: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut h = small_window_socket(s.port);
            h.write_all(format!("get p{i}\r\n").as_bytes())
                .expect("send");
            h
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // p0 is pinned already: served at once.
    let mut r0 = s.connect();
    r0.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok();
    r0.send(b"get p0\r\n");
    get_exact(&mut r0.stream, "p0", &values[0], Duration::from_secs(10));
    // p2 would take the pins past 16 MiB and the reply past the buffer budget: it
    // waits (nothing arrives), while the connection's other requests are not lost.
    let mut r2 = s.connect();
    r2.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok();
    r2.send(b"get p2\r\nget p0\r\n");
    let mut buf = [0u8; 64];
    let early = r2.stream.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "a reply came while it had to wait: {early:?}"
    );
    // Memory comes back: the waiting request is served, then the next.
    drop(hogs);
    r2.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok();
    get_exact(&mut r2.stream, "p2", &values[2], Duration::from_secs(10));
    get_exact(&mut r2.stream, "p0", &values[0], Duration::from_secs(10));
}
