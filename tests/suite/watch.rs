//! `watch` against memcached 1.6.18: the OK line, the event lines of a fixed command
//! sequence (times, ports and descriptors normalised), the refusals (`-W`, unknown
//! types, the watcher limit); a non-reading watcher under load stays bounded and is
//! told `skipped=` while other clients keep their latency; and memcached's `-vv`
//! connection log on standard error.

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts watching; returns the stream after its `OK`.
fn watcher(port: u16, types: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(format!("watch {types}\r\n").as_bytes())
        .expect("send");
    let mut ok = [0u8; 4];
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.read_exact(&mut ok).expect("OK");
    assert_eq!(&ok, b"OK\r\n");
    s
}

/// A line with `ts=`, `gid=`, `rport=` and `cfd=` values replaced.
fn normalise(line: &str) -> String {
    line.split(' ')
        .map(|w| match w.split_once('=') {
            Some(("ts" | "gid" | "rport" | "cfd", _)) => {
                format!("{}=_", &w[..w.find('=').unwrap_or(0)])
            }
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text commands whose events ferrocache reports as memcached does.
const SEQUENCE: &[&[u8]] = &[
    b"set foo 5 0 3\r\nbar\r\n",
    b"get foo\r\n",
    b"get nope\r\n",
    b"gets foo\r\n",
    b"touch foo 100\r\n",
    b"gat 0 foo\r\n",
    b"delete foo\r\n",
    b"delete foo\r\n",
    b"incr n 1\r\n",
    b"set n 0 100 1\r\n1\r\n",
    b"incr n 5\r\n",
    b"append n 0 0 1\r\n2\r\n",
    b"add n 0 0 1\r\n3\r\n",
    b"replace zz 0 0 1\r\n3\r\n",
    b"set sp%ce 0 0 1\r\nx\r\n",
    b"get a b c\r\n",
    b"flush_all\r\n",
    b"get n\r\n",
];

fn events(port: u16, types: &str) -> Vec<String> {
    let mut w = watcher(port, types);
    let mut c = Client::connect(port);
    for step in SEQUENCE {
        c.send(step);
        let _ = c.read_until(b"\r\n");
    }
    drop(c);
    let (raw, _) = read_quiet_stream(
        &mut w,
        Duration::from_secs(2),
        Duration::from_millis(300),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines().map(normalise).collect()
}

#[test]
fn event_lines_match_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    for types in ["", "fetchers mutations connevents", "mutations"] {
        // Fresh keys on each: flush between runs.
        for port in [mc.port, fc.port] {
            let mut c = Client::connect(port);
            assert_eq!(c.line("flush_all\r\n"), "OK\r\n");
            drop(c);
            std::thread::sleep(Duration::from_millis(1100));
        }
        let m = events(mc.port, types);
        let f = events(fc.port, types);
        assert!(!m.is_empty(), "memcached logged {types:?}");
        assert_eq!(f, m, "watch {types}");
    }
    let f = events(fc.port, "fetchers mutations connevents");
    assert!(f
        .iter()
        .any(|l| l.contains("type=item_store key=sp%25ce status=stored cmd=set ttl=0 clsid=1")));
    assert!(f[0].starts_with("ts=_ gid=_ type=conn_new rip=127.0.0.1 rport=_ transport=tcp cfd=_"));
    assert!(f
        .last()
        .is_some_and(|l| l.ends_with("transport=tcp reason=normal cfd=_")));
}

#[test]
fn watch_replies_match_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    let cases: Vec<Vec<&[u8]>> = vec![
        vec![
            b"watch bogus\r\n",
            b"watch fetchers bogus\r\n",
            b"version\r\n",
        ],
        vec![
            b"watch noreply\r\n",
            b"watch fetchers noreply\r\n",
            b"version\r\n",
        ],
        vec![b"version\r\nwatch\r\n", b"version\r\n"],
        vec![b"get x\r\nwatch fetchers\r\n", b"version\r\n"],
        vec![b"watch fetchers fetchers\r\n", b"version\r\n"],
        vec![
            b"watch rawcmds proxyreqs proxyevents proxyuser\r\n",
            b"get k\r\n",
        ],
    ];
    for steps in &cases {
        let m = transcript(mc.port, steps);
        let f = transcript(fc.port, steps);
        assert_eq!(
            f.iter().map(|r| show(&r.0)).collect::<Vec<_>>(),
            m.iter().map(|r| show(&r.0)).collect::<Vec<_>>(),
            "{:?}",
            steps.iter().map(|s| show(s)).collect::<Vec<_>>()
        );
    }
    // The 21st watcher is refused, as memcached refuses it.
    for port in [mc.port, fc.port] {
        let ws: Vec<TcpStream> = (0..20).map(|_| watcher(port, "evictions")).collect();
        let r = transcript(port, &[b"watch\r\n".as_slice()]);
        assert_eq!(
            show(&r[0].0),
            show(b"WATCHER_TOO_MANY log watcher limit reached\r\n"),
            "port {port}"
        );
        drop(ws);
        std::thread::sleep(Duration::from_millis(1500));
    }
}

#[test]
fn disabled_watch_refuses_as_memcached() {
    let Some(mc) = Server::memcached(&["-W"]) else {
        return;
    };
    let fc = Server::ferrocache(&["-W"]);
    let steps: Vec<&[u8]> = vec![
        b"watch\r\n",
        b"watch fetchers\r\n",
        b"watch bogus\r\n",
        b"watch noreply\r\n",
        b"version\r\n",
    ];
    let m = transcript(mc.port, &steps);
    let f = transcript(fc.port, &steps);
    assert_eq!(
        f.iter().map(|r| show(&r.0)).collect::<Vec<_>>(),
        m.iter().map(|r| show(&r.0)).collect::<Vec<_>>()
    );
    assert_eq!(f[0].0, b"CLIENT_ERROR watch commands not allowed\r\n");
}

#[test]
fn evictions_are_watched() {
    if targeting_reference() {
        return;
    }
    let fc = Server::ferrocache(&["-m", "8"]);
    let mut w = watcher(fc.port, "evictions");
    let mut c = fc.connect();
    let val = vec![b'e'; 1000];
    for i in 0..20_000 {
        c.send(format!("set ev{i} 0 0 1000 noreply\r\n").as_bytes());
        c.send(&val);
        c.send(b"\r\n");
    }
    assert_eq!(c.line("mn\r\n"), "MN\r\n");
    let (raw, _) = read_quiet_stream(
        &mut w,
        Duration::from_secs(2),
        Duration::from_millis(300),
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&raw);
    let lines: Vec<_> = text
        .lines()
        .filter(|l| !l.starts_with("skipped="))
        .collect();
    assert!(!lines.is_empty(), "no eviction lines");
    for l in &lines {
        let n = normalise(l);
        let rest = n
            .strip_prefix("ts=_ gid=_ type=eviction key=ev")
            .unwrap_or_else(|| panic!("{l}"));
        let fields: Vec<_> = rest.split(' ').skip(1).collect();
        assert_eq!(fields.len(), 5, "{l}");
        assert_eq!(fields[0], "fetch=no", "{l}");
        assert_eq!(fields[1], "ttl=-1", "{l}");
        assert!(
            fields[2]
                .strip_prefix("la=")
                .is_some_and(|v| v.parse::<i32>().is_ok()),
            "{l}"
        );
        assert!(
            fields[3]
                .strip_prefix("clsid=")
                .is_some_and(|v| v.parse::<u32>().is_ok_and(|c| c > 0)),
            "{l}"
        );
        assert_eq!(fields[4], "size=1000", "{l}");
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() * 99 / 100).copied().unwrap_or_default()
}

/// Latencies of `get`s from a fresh client over `dur`.
fn probe(port: u16, dur: Duration) -> Vec<Duration> {
    let mut c = Client::connect(port);
    let mut out = Vec::new();
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let t = Instant::now();
        c.send(b"get probe\r\n");
        c.read_until(b"END\r\n");
        out.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(2));
    }
    out
}

/// Four clients pipelining set+get until `stop`; each returns its operations.
fn hammer(port: u16, stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    (0..4)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut batch = Vec::new();
                    for i in 0..50 {
                        batch.extend_from_slice(
                            format!("set h{t}:{i} 0 0 5\r\nhello\r\nget h{t}:{i}\r\n").as_bytes(),
                        );
                    }
                    c.send(&batch);
                    let mut seen = 0;
                    while seen < 50 {
                        let r = c.read_until(b"END\r\n");
                        seen += r.windows(5).filter(|w| w == b"END\r\n").count();
                    }
                    n += 50;
                }
                n
            })
        })
        .collect()
}

/// A watcher that never reads, four clients hammering: the server's memory stays
/// bounded, the others keep their latency, and the watcher is told what it lost.
#[test]
fn a_stalled_watcher_under_load_is_bounded_and_told() {
    if targeting_reference() {
        return;
    }
    let fc = Server::ferrocache(&["-t", "2"]);
    let base = p99(probe(fc.port, Duration::from_secs(1)));
    // The same load without watchers, for comparison.
    let stop0 = Arc::new(AtomicBool::new(false));
    let h0 = hammer(fc.port, stop0.clone());
    let unwatched = p99(probe(fc.port, Duration::from_secs(3)));
    stop0.store(true, Ordering::Relaxed);
    let ops0: u64 = h0.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let rss0 = fc.rss_bytes();
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).ok();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], fc.port)).into())
        .expect("connect");
    let mut stalled: TcpStream = sock.into();
    stalled
        .write_all(b"watch fetchers mutations\r\n")
        .expect("send");
    std::thread::sleep(Duration::from_millis(200));
    // A second watcher that keeps reading gets lines in order.
    let reading = watcher(fc.port, "mutations");
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(Mutex::new(Vec::<u8>::new()));
    let reader = {
        let (stop, got) = (stop.clone(), got.clone());
        let mut s = reading;
        std::thread::spawn(move || {
            s.set_read_timeout(Some(Duration::from_millis(200))).ok();
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut g = got.lock().expect("lock");
                        if g.len() < 64 << 20 {
                            g.extend_from_slice(&buf[..n]);
                        }
                    }
                    Err(_) => {}
                }
            }
        })
    };
    let hammers = hammer(fc.port, stop.clone());
    let loaded = p99(probe(fc.port, Duration::from_secs(3)));
    let rss1 = fc.rss_bytes();
    stop.store(true, Ordering::Relaxed);
    let ops: u64 = hammers.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let _ = reader.join();
    eprintln!(
        "3 s of 4 hammering clients: {ops0} set+get unwatched (probe p99 {unwatched:?}), \
         {ops} with a stalled and a reading watcher (probe p99 {loaded:?}); idle p99 {base:?}; \
         RSS {} -> {} MiB",
        rss0 >> 20,
        rss1 >> 20
    );
    assert!(ops > 10_000, "the load ran ({ops})");
    assert!(
        loaded < Duration::from_millis(50),
        "p99 {loaded:?} under load"
    );
    assert!(rss1 < rss0 + (48 << 20), "RSS {rss0} -> {rss1}");
    // The reading watcher got lines, each event once (as in memcached, lines of
    // different workers may arrive out of gid order: gids put them back in order).
    let text = String::from_utf8_lossy(&got.lock().expect("lock")).into_owned();
    let gids: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(1)?.strip_prefix("gid=")?.parse().ok())
        .collect();
    assert!(
        gids.len() > 1000,
        "reading watcher got {} lines",
        gids.len()
    );
    let mut sorted = gids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), gids.len(), "each gid once");
    // The stalled watcher now reads: its buffer was full, lines were skipped, and the
    // next line that fits says how many.
    let mut c = fc.connect();
    let mut all = Vec::new();
    // Bounded in count and time; a loaded machine may need a few rounds to drain.
    let deadline = Instant::now() + Duration::from_secs(15);
    for _ in 0..50 {
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let (raw, _) = read_quiet_stream(
            &mut stalled,
            Duration::from_millis(500),
            Duration::from_millis(200),
            Duration::from_secs(20),
        );
        all.extend_from_slice(&raw);
        let text = String::from_utf8_lossy(&all).into_owned();
        if let Some(l) = text.lines().find(|l| l.starts_with("skipped=")) {
            let n: u64 = l["skipped=".len()..].parse().expect("skipped count");
            assert!(n > 0);
            assert!(
                text.starts_with("OK\r\nts="),
                "{}",
                &text[..40.min(text.len())]
            );
            // What it held while stalled: its buffer (256 KiB) and the socket's.
            assert!(
                all.len() < 2 << 20,
                "a watcher buffers a bounded amount ({})",
                all.len()
            );
            eprintln!(
                "stalled watcher: {} bytes delivered, then skipped={n}",
                all.len()
            );
            return;
        }
        // Make the next line that fits.
        assert_eq!(c.line("set after 0 0 1\r\nx\r\n"), "STORED\r\n");
    }
    panic!("no skipped= line");
}

/// Reads a child's standard error lines on a thread.
fn collect_stderr(child: &mut std::process::Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(err) = child.stderr.take() {
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).split(b'\n').map_while(Result::ok) {
                if let Ok(mut v) = l.lock() {
                    v.push(String::from_utf8_lossy(&line).into_owned());
                }
            }
        });
    }
    lines
}

/// The connection log lines (`<fd ...`, `>fd ...`, `fd: ...`), fds replaced.
fn conn_log(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let (p, rest) = if let Some(r) = l.strip_prefix('<') {
                ("<", r)
            } else if let Some(r) = l.strip_prefix('>') {
                (">", r)
            } else {
                ("", l.as_str())
            };
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let tail = &rest[digits..];
            if p.is_empty() && !tail.starts_with(": Client using") {
                return None;
            }
            if tail.contains("server listening") {
                return None;
            }
            Some(format!("{p}N{tail}"))
        })
        .collect()
}

fn vv_log(bin: &str, ours: bool) -> Vec<String> {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0", "-vv"]);
    if is_root() {
        cmd.args(["-u", "nobody"]);
    }
    if ours {
        cmd.env_remove("RUST_LOG");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let lines = collect_stderr(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{bin} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let steps: Vec<&[u8]> = vec![
        b"get foo\r\n",
        b"set foo 1 0 3\r\nbar\r\n",
        b"get foo bar\r\n",
        b"gets foo\r\n",
        b"set foo 1 0 3 noreply\r\nbaz\r\n",
        b"delete x\r\n",
        b"incr foo 1\r\n",
        b"set n 0 0 1\r\n1\r\n",
        b"incr n 5\r\n",
        b"incr n 5 noreply\r\n",
        b"touch n 10\r\n",
        b"version\r\n",
        b"bogus\r\n",
        b"delete x noreply\r\n",
        b"flush_all\r\n",
        b"quit\r\n",
    ];
    let _ = transcript(port, &steps);
    std::thread::sleep(Duration::from_millis(400));
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(100));
    let v = lines.lock().map(|v| v.clone()).unwrap_or_default();
    conn_log(&v)
}

#[test]
fn vv_connection_log_matches_memcached() {
    if targeting_reference() || !require_tool(MEMCACHED) {
        return;
    }
    let m = vv_log(MEMCACHED, false);
    let f = vv_log(&ferrocache_bin(), true);
    // The probe connection that waits for the port comes and goes first on both.
    let from_last_new = |v: &[String]| -> Vec<String> {
        let at = v
            .iter()
            .rposition(|l| l.ends_with("new auto-negotiating client connection"))
            .unwrap_or(0);
        v[at..].to_vec()
    };
    let (m, f) = (from_last_new(&m), from_last_new(&f));
    assert!(m.len() > 20, "{m:#?}");
    assert_eq!(f, m);
    assert_eq!(f[0], "<N new auto-negotiating client connection");
    assert_eq!(f[1], "N: Client using the ascii protocol");
    assert_eq!(f[2], "<N get foo");
    assert_eq!(f[3], ">N END");
}
