//! SASL over the binary protocol (`-S`), on the wire.
//!
//! - Transcripts: the same packet sequences (authentication right and wrong, every
//!   opcode before authenticating, malformed SASL packets, pipelining) are sent to
//!   memcached 1.6.18 started by the test with a Cyrus sasldb (`saslpasswd2`,
//!   `mech_list: plain`) and to ferrocache; the replies must be byte-identical (the
//!   mechanism list aside: memcached's comes from Cyrus' configuration).
//! - SCRAM-SHA-256 and SCRAM-SHA-1 with the `sasl` crate's client, right and wrong
//!   password, plain and salted (`ferrocache passwd`) entries.
//! - No way around authentication: unix socket, a second TCP listener.
//! - Failure bound, counters, refusal to start without credentials.
use crate::common;
use crate::common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use sasl::client::mechanisms::Scram;
use sasl::client::Mechanism;
use sasl::common::scram::{ScramProvider, Sha1, Sha256};
use sasl::common::ChannelBinding;

const USER: &str = "testuser";
const PASS: &str = "secret123";

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const DELETE: u8 = 0x04;
const QUIT: u8 = 0x07;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const STAT: u8 = 0x10;
const LIST_MECHS: u8 = 0x20;
const AUTH: u8 = 0x21;
const STEP: u8 = 0x22;

/// A request packet.
fn pkt(op: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    common::binary_request(op, key, extras, value, 0x0102_0304)
}

fn plain(user: &str, pass: &str) -> Vec<u8> {
    format!("\0{user}\0{pass}").into_bytes()
}

fn auth_plain(user: &str, pass: &str) -> Vec<u8> {
    pkt(AUTH, b"PLAIN", &[], &plain(user, pass))
}

fn set(key: &[u8], value: &[u8]) -> Vec<u8> {
    pkt(SET, key, &[0, 0, 0, 7, 0, 0, 0, 0], value)
}

/// Response packets in `b`: (opcode, status, body) each.
fn responses(b: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while b.len() >= at + 24 {
        let h = &b[at..at + 24];
        let body_len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let end = (at + 24 + body_len).min(b.len());
        out.push((
            h[1],
            u16::from_be_bytes([h[6], h[7]]),
            b[at + 24..end].to_vec(),
        ));
        at = end;
    }
    out
}

/// ferrocache with SASL and `creds` as its credentials file.
fn ours(creds: &str, extra: &[&str]) -> Server {
    let mut args = vec!["-S", "--sasl-pwdb", creds];
    args.extend_from_slice(extra);
    Server::ferrocache(&args)
}

/// memcached 1.6.18 with SASL against a fresh sasldb holding USER/PASS, or None
/// where memcached or saslpasswd2 is missing (outside CI).
fn reference(dir: &Scratch) -> Option<Server> {
    if !memcached_sasl_setup(dir, USER, PASS) {
        return None;
    }
    Server::memcached(&["-S"])
}

fn scenarios() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let good = auth_plain(USER, PASS);
    let long_key = vec![b'k'; 300];
    let mut bad_lengths = pkt(GET, b"abc", &[], &[]);
    bad_lengths[11] = 1; // bodylen 1 < keylen 3
    let long_mech = vec![b'M'; 33];
    let big = vec![b'x'; 1_100_000];
    vec![
        (
            "version is served before auth, get is refused and closes",
            vec![pkt(VERSION, b"", &[], &[]), pkt(GET, b"k", &[], &[])],
        ),
        (
            "pipelined get + noop before auth",
            vec![[pkt(GET, b"k", &[], &[]), pkt(NOOP, b"", &[], &[])].concat()],
        ),
        ("set before auth", vec![set(b"k", b"v")]),
        ("noop before auth", vec![pkt(NOOP, b"", &[], &[])]),
        ("stat before auth", vec![pkt(STAT, b"", &[], &[])]),
        ("quit before auth", vec![pkt(QUIT, b"", &[], &[])]),
        ("delete before auth", vec![pkt(DELETE, b"k", &[], &[])]),
        (
            "unknown opcode before auth",
            vec![pkt(0x50, b"", &[], b"abcd")],
        ),
        ("key longer than body before auth", vec![bad_lengths]),
        (
            "300-byte key before auth",
            vec![pkt(GET, &long_key, &[], &[])],
        ),
        (
            "plain: right credentials, then data",
            vec![
                good.clone(),
                set(b"sasl:k", b"value"),
                pkt(GET, b"sasl:k", &[], &[]),
                pkt(DELETE, b"sasl:k", &[], &[]),
            ],
        ),
        (
            "plain with authzid = user",
            vec![
                pkt(
                    AUTH,
                    b"PLAIN",
                    &[],
                    format!("{USER}\0{USER}\0{PASS}").as_bytes(),
                ),
                pkt(NOOP, b"", &[], &[]),
            ],
        ),
        (
            "plain: wrong password, then data is refused",
            vec![auth_plain(USER, "wrong"), pkt(GET, b"k", &[], &[])],
        ),
        (
            "plain: wrong password, retry with the right one",
            vec![
                auth_plain(USER, "wrong"),
                good.clone(),
                pkt(GET, b"k", &[], &[]),
            ],
        ),
        (
            "plain: unknown user",
            vec![auth_plain("nobody-here", PASS), pkt(VERSION, b"", &[], &[])],
        ),
        ("plain: empty password", vec![auth_plain(USER, "")]),
        (
            "plain: garbage response",
            vec![pkt(AUTH, b"PLAIN", &[], b"garbage")],
        ),
        (
            "plain: no initial response, credentials in the step",
            vec![
                pkt(AUTH, b"PLAIN", &[], &[]),
                pkt(STEP, b"PLAIN", &[], &plain(USER, PASS)),
                pkt(GET, b"k", &[], &[]),
            ],
        ),
        (
            "unknown mechanism",
            vec![
                pkt(AUTH, b"CRAM-MD5", &[], &[]),
                pkt(VERSION, b"", &[], &[]),
            ],
        ),
        (
            "mechanism name over 32 bytes",
            vec![
                pkt(AUTH, &long_mech, &[], b"abc"),
                pkt(VERSION, b"", &[], &[]),
            ],
        ),
        (
            "step without auth",
            vec![
                pkt(STEP, b"PLAIN", &[], &plain(USER, PASS)),
                pkt(VERSION, b"", &[], &[]),
            ],
        ),
        (
            "list mechs with a key",
            vec![pkt(LIST_MECHS, b"x", &[], &[])],
        ),
        (
            "auth with extras",
            vec![pkt(AUTH, b"PLAIN", b"abcd", &plain(USER, PASS))],
        ),
        (
            "auth without mechanism",
            vec![pkt(AUTH, b"", &[], &plain(USER, PASS))],
        ),
        (
            "auth value larger than -I",
            vec![pkt(AUTH, b"PLAIN", &[], &big), pkt(VERSION, b"", &[], &[])],
        ),
        (
            "auth, set and get pipelined in one write",
            vec![[
                good.clone(),
                set(b"sasl:p", b"pipelined"),
                pkt(GET, b"sasl:p", &[], &[]),
            ]
            .concat()],
        ),
        (
            "text protocol on a SASL server: waits for a header, then closes",
            vec![
                b"version\r\n".to_vec(),
                b"get aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec(),
            ],
        ),
        (
            "auth split across writes",
            vec![
                good[..10].to_vec(),
                good[10..].to_vec(),
                pkt(NOOP, b"", &[], &[]),
            ],
        ),
    ]
}

/// `auth_cmds` and `auth_errors` of a server, read over an authenticated connection.
fn auth_counters(port: u16) -> (u64, u64) {
    let mut c = Client::connect(port);
    c.send(&auth_plain(USER, PASS));
    let r = responses(&c.read_exact(24 + 13));
    assert_eq!(r[0].1, 0, "auth for stats");
    c.send(&pkt(STAT, b"", &[], &[]));
    let (bytes, _) = read_quiet_stream(
        &mut c.stream,
        Duration::from_secs(2),
        Duration::from_millis(100),
        Duration::from_secs(10),
    );
    let mut b = bytes.as_slice();
    let (mut cmds, mut errors) = (None, None);
    while b.len() >= 24 {
        let keylen = u16::from_be_bytes([b[2], b[3]]) as usize;
        let body = u32::from_be_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let key = &b[24..24 + keylen];
        let val = String::from_utf8_lossy(&b[24 + keylen..24 + body]).into_owned();
        match key {
            b"auth_cmds" => cmds = val.parse().ok(),
            b"auth_errors" => errors = val.parse().ok(),
            _ => {}
        }
        b = &b[24 + body..];
    }
    (cmds.expect("auth_cmds"), errors.expect("auth_errors"))
}

#[test]
fn sasl_transcripts_match_memcached() {
    let dir = Scratch::new("ref");
    let Some(mc) = reference(&dir) else { return };
    let creds = dir.file("pwdb", &format!("{USER}:{PASS}\n"));
    let fc = ours(&creds, &[]);
    let mut differences = Vec::new();
    for (name, steps) in scenarios() {
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| transcript(mc.port, &steps));
            let b = s.spawn(|| transcript(fc.port, &steps));
            (a.join().expect("memcached side"), b.join().expect("ours"))
        });
        if a != b {
            differences.push(format!(
                "{name}:\n  memcached {:?}\n  ours      {:?}",
                a.iter().map(|(x, c)| (show(x), c)).collect::<Vec<_>>(),
                b.iter().map(|(x, c)| (show(x), c)).collect::<Vec<_>>()
            ));
        }
    }
    // The mechanism list: same framing, ours lists what our credentials allow.
    let list = |port| transcript(port, &[pkt(LIST_MECHS, b"", &[], &[])]);
    let (a, b) = (list(mc.port), list(fc.port));
    let (ra, rb) = (responses(&a[0].0), responses(&b[0].0));
    assert_eq!(ra[0].2, b"PLAIN", "memcached's mech_list");
    assert_eq!((rb[0].0, rb[0].1), (LIST_MECHS, 0));
    assert_eq!(rb[0].2, b"SCRAM-SHA-256 SCRAM-SHA-1 PLAIN");
    assert_eq!(a[0].0[..6], b[0].0[..6], "header before the body length");
    // Both servers counted the same finished exchanges.
    assert_eq!(
        auth_counters(mc.port),
        auth_counters(fc.port),
        "auth_cmds/auth_errors"
    );
    println!("{} scenarios compared", scenarios().len());
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// One SCRAM exchange over the wire (first message, final message, then the empty
/// step that acknowledges the server's signature); returns the final status.
fn scram_login<S: ScramProvider>(port: u16, user: &str, pass: &str, name: &str) -> (u16, Client) {
    let mut client = Scram::<S>::new(user, pass, ChannelBinding::Unsupported).expect("client");
    let mut c = Client::connect(port);
    c.send(&pkt(AUTH, name.as_bytes(), &[], &client.initial()));
    let r = responses(&read_packet(&mut c));
    if r[0].1 != 0x21 {
        return (r[0].1, c);
    }
    let client_final = client.response(&r[0].2).expect("client-final message");
    c.send(&pkt(STEP, name.as_bytes(), &[], &client_final));
    let r = responses(&read_packet(&mut c));
    if r[0].1 != 0x21 {
        return (r[0].1, c);
    }
    // The server proves it knows the password too.
    assert!(client.success(&r[0].2).is_ok(), "server signature");
    c.send(&pkt(STEP, name.as_bytes(), &[], b""));
    let r = responses(&read_packet(&mut c));
    if r[0].1 == 0 {
        assert_eq!(r[0].2, b"Authenticated");
    }
    (r[0].1, c)
}

fn read_packet(c: &mut Client) -> Vec<u8> {
    let mut h = c.read_exact(24);
    let body = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    h.extend(c.read_exact(body));
    h
}

fn data_roundtrip(c: &mut Client, key: &[u8]) {
    c.send(&set(key, b"scram-data"));
    assert_eq!(responses(&read_packet(c))[0].1, 0, "set after auth");
    c.send(&pkt(GET, key, &[], &[]));
    let r = responses(&read_packet(c));
    assert_eq!(r[0].1, 0);
    assert_eq!(&r[0].2[4..], b"scram-data");
}

#[test]
fn scram_with_the_sasl_crate_client() {
    let dir = Scratch::new("scram");
    // A plain entry serves SCRAM too (derived at login); a salted entry from
    // `ferrocache passwd` serves its own hash and PLAIN.
    let creds_file = dir.file("pwdb", &format!("{USER}:{PASS}\n"));
    let mut passwd = Command::new(FERROCACHE)
        .args(["passwd", "--file", &creds_file, "salty"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ferrocache passwd");
    passwd
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s4lted-pass\n")
        .expect("password");
    assert!(passwd.wait().expect("passwd").success());
    let text = std::fs::read_to_string(&creds_file).expect("read creds");
    assert!(text.contains("salty:$scram-sha-256$"), "{text}");
    assert!(!text.contains("s4lted-pass"));
    let srv = ours(&creds_file, &[]);

    for (user, pass) in [(USER, PASS), ("salty", "s4lted-pass")] {
        let (status, mut c) = scram_login::<Sha256>(srv.port, user, pass, "SCRAM-SHA-256");
        assert_eq!(status, 0, "SCRAM-SHA-256 as {user}");
        data_roundtrip(&mut c, format!("scram:{user}").as_bytes());
        let (status, mut c) = scram_login::<Sha256>(srv.port, user, "not-it", "SCRAM-SHA-256");
        assert_eq!(status, 0x20, "wrong password as {user}");
        // Still connected, still refused.
        c.send(&pkt(GET, b"k", &[], &[]));
        assert_eq!(responses(&read_packet(&mut c))[0].1, 0x20);
    }
    let (status, mut c) = scram_login::<Sha1>(srv.port, USER, PASS, "SCRAM-SHA-1");
    assert_eq!(status, 0, "SCRAM-SHA-1");
    data_roundtrip(&mut c, b"scram:sha1");
    // The salted user has no SHA-1 secret: refused.
    assert_eq!(
        scram_login::<Sha1>(srv.port, "salty", "s4lted-pass", "SCRAM-SHA-1").0,
        0x20
    );
    // PLAIN against the salted entry.
    let mut c = srv.connect();
    c.send(&auth_plain("salty", "s4lted-pass"));
    assert_eq!(responses(&read_packet(&mut c))[0].1, 0);
}

#[test]
fn no_path_around_authentication() {
    let dir = Scratch::new("paths");
    let creds = dir.file("pwdb", &format!("{USER}:{PASS}\n"));
    // Two TCP listeners.
    let (p1, p2) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{p1},127.0.0.1:{p2}");
    let mut args = vec!["-S", "--sasl-pwdb", &creds, "-l", &listen, "-U", "0"];
    if is_root() {
        args.extend(["-u", "nobody"]);
    }
    let srv = Server::with_args(FERROCACHE, &args, p1);
    for port in [p1, p2] {
        let t = transcript(port, &[set(b"k", b"v")]);
        let r = responses(&t[0].0);
        assert_eq!((r.len(), r[0].1, t[0].1), (1, 0x20, true), "port {port}");
        let t = transcript(port, &[auth_plain(USER, PASS), set(b"k", b"v")]);
        assert_eq!(responses(&t[1].0)[0].1, 0, "after auth on port {port}");
    }
    drop(srv);

    // Unix socket (the server may run as nobody: it must be able to create it).
    dir.open_to_all();
    let sock = dir.0.join("sock").to_string_lossy().into_owned();
    let mut args = vec!["-S", "--sasl-pwdb", &creds, "-s", &sock, "-a", "0777"];
    if is_root() {
        args.extend(["-u", "nobody"]);
    }
    let _srv = Server::with_args(FERROCACHE, &args, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            break s;
        }
        assert!(Instant::now() < deadline, "unix socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(&pkt(GET, b"k", &[], &[])).expect("send");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read until close");
    let r = responses(&got);
    assert_eq!(
        (r.len(), r[0].1, r[0].2.as_slice()),
        (1, 0x20, &b"Auth failure."[..])
    );
    let mut s = UnixStream::connect(&sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(&[auth_plain(USER, PASS), pkt(GET, b"k", &[], &[])].concat())
        .expect("send");
    let mut got = vec![0u8; 24 + 13 + 24 + 9];
    s.read_exact(&mut got).expect("two replies");
    let r = responses(&got);
    assert_eq!((r[0].1, r[1].1), (0, 1), "authenticated, then a miss");
}

#[test]
fn repeated_failures_close_the_connection() {
    let dir = Scratch::new("fail");
    let creds = dir.file("pwdb", &format!("{USER}:{PASS}\n"));
    let srv = ours(&creds, &[]);
    // Four failures leave the connection usable.
    let mut steps: Vec<Vec<u8>> = (0..4).map(|_| auth_plain(USER, "wrong")).collect();
    steps.push(auth_plain(USER, PASS));
    steps.push(pkt(NOOP, b"", &[], &[]));
    let t = transcript(srv.port, &steps);
    let statuses: Vec<u16> = t.iter().map(|(b, _)| responses(b)[0].1).collect();
    assert_eq!(statuses, [0x20, 0x20, 0x20, 0x20, 0, 0]);
    // The fifth failure is answered, then the connection closes.
    let steps: Vec<Vec<u8>> = (0..6).map(|_| auth_plain(USER, "wrong")).collect();
    let t = transcript(srv.port, &steps);
    assert_eq!(t.len(), 5, "closed after the fifth failure: {t:?}");
    assert!(t[4].1);
    assert_eq!(responses(&t[4].0)[0].1, 0x20);
    // Other connections are unaffected; counters saw every finished exchange.
    assert_eq!(auth_counters(srv.port), (4 + 1 + 5 + 1, 4 + 5));
}

fn start_fails(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(FERROCACHE);
    cmd.args(["-l", "127.0.0.1", "-p", &free_port().to_string(), "-U", "0"]);
    if is_root() {
        cmd.args(["-u", "nobody"]);
    }
    cmd.args(args).env_remove("MEMCACHED_SASL_PWDB");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = run_bounded(&mut cmd, Duration::from_secs(5));
    (run.status.and_then(|s| s.code()), run.stderr)
}

#[test]
fn sasl_without_credentials_refuses_to_start() {
    let dir = Scratch::new("start");
    let (code, err) = start_fails(&["-S"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("MEMCACHED_SASL_PWDB"), "{err}");
    let missing = dir.0.join("missing").to_string_lossy().into_owned();
    let (code, err) = start_fails(&["-S", "--sasl-pwdb", &missing], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("No such file"), "{err}");
    let empty = dir.file("empty", "# nobody\n");
    let (code, err) = start_fails(&["-S"], &[("MEMCACHED_SASL_PWDB", &empty)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no credentials"), "{err}");
    let bad = dir.file("bad", "no-colon-here\n");
    let (code, err) = start_fails(&["-S", "--sasl-pwdb", &bad], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(":1:"), "{err}");
}

#[test]
fn sasl_credentials_from_the_environment() {
    let dir = Scratch::new("env");
    let creds = dir.file("pwdb", &format!("{USER}:{PASS}\n"));
    let port = free_port();
    let mut child = Command::new(FERROCACHE);
    child
        .args(["-S", "-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
        .env("MEMCACHED_SASL_PWDB", &creds)
        .stdin(std::process::Stdio::null());
    if is_root() {
        child.args(["-u", "nobody"]);
    }
    let mut child = child.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = transcript(port, &[auth_plain(USER, PASS), auth_plain(USER, "x")]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(responses(&t[0].0)[0].1, 0);
    assert_eq!(responses(&t[1].0)[0].1, 0x20);
}
