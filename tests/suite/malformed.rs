//! A battery of malformed text-protocol requests.
//!
//! Every case is sent on its own connection to one long-running ferrocache and one
//! long-running memcached 1.6.18 (when installed). The reply is reduced to its class: the
//! reply lines without data blocks, repeats collapsed, plus whether the server closed the
//! connection. ferrocache must give memcached's class, computed live; without memcached,
//! the class memcached gave when the case was written (kept in the table) is used.
//! After every case a witness connection opened at the start reads back its stored item,
//! and at the end the server process must still be alive.
use crate::common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Silence that ends a reply.
const QUIET: Duration = Duration::from_millis(200);
/// Upper bound for one case's reply.
const LIMIT: Duration = Duration::from_secs(8);

/// How the client ends its part of a case.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// Keep the connection open and read the reply.
    Read,
    /// Close right after sending (truncated request); only the probe is compared.
    Close,
}

struct Case {
    name: &'static str,
    /// Pieces sent with a short pause between them.
    chunks: Vec<Vec<u8>>,
    end: End,
    /// Sent on a fresh connection after the case; its class is compared too.
    probe: Option<&'static [u8]>,
    /// Class memcached 1.6.18 gave (used when memcached is not installed).
    expect: &'static str,
    /// Binary-protocol bytes: until ferrocache speaks binary, an error or a close is enough.
    binary: bool,
    /// How long to wait for the first reply byte.
    first: Duration,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>, expect: &'static str) -> Case {
    Case {
        name,
        chunks: vec![bytes.into()],
        end: End::Read,
        probe: None,
        expect,
        binary: false,
        first: QUIET,
    }
}

impl Case {
    fn probe(mut self, p: &'static [u8]) -> Case {
        self.probe = Some(p);
        self
    }
    fn then_close(mut self) -> Case {
        self.end = End::Close;
        self
    }
    fn slow(mut self) -> Case {
        self.first = Duration::from_secs(4);
        self
    }
    fn binary(mut self) -> Case {
        self.binary = true;
        self
    }
    fn chunks(mut self, c: Vec<Vec<u8>>) -> Case {
        self.chunks = c;
        self
    }
}

fn rep(b: &[u8], n: usize) -> Vec<u8> {
    b.repeat(n)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn cases() -> Vec<Case> {
    let hundred_k_keys: Vec<u8> = {
        let mut v = b"get".to_vec();
        for i in 0..100_000 {
            v.extend_from_slice(format!(" mk{i}").as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    let mut junk = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..512 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = (x & 0x7f) as u8;
        junk.push(if b == b'\n' || b == 0 { b'.' } else { b });
    }
    junk.extend_from_slice(b"\r\n");
    let mut hi_junk: Vec<u8> = (0..300u32).map(|i| 0xa0 + (i % 90) as u8).collect();
    hi_junk.extend_from_slice(b"\r\n");
    let mut bin_header = vec![0x80u8, 0xff, 0, 0, 0, 0, 0, 0];
    bin_header.extend_from_slice(&[0; 16]);
    let mut bin_get = vec![0x80u8, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    bin_get.extend_from_slice(&[0; 8]);
    bin_get.push(b'a');
    let mut bin_huge = vec![0x80u8, 0x01, 0, 1, 8, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff];
    bin_huge.extend_from_slice(&[0; 12]);

    vec![
        case("garbage-word", b"asdkjh qwe zxc\r\n".to_vec(), "ERROR"),
        case("garbage-random-ascii", junk, "ERROR"),
        case("garbage-high-bytes", hi_junk, "ERROR"),
        case("nul-bytes-line", b"\0\0\0\0\r\n".to_vec(), "ERROR"),
        case("nul-in-command", b"ver\0sion\r\n".to_vec(), "ERROR"),
        case(
            "nul-in-key",
            b"set nul\0key 0 0 1\r\nx\r\n".to_vec(),
            "ERROR",
        )
        .probe(b"get nul\0key\r\n"),
        case("nul-only-no-newline", vec![0u8; 3000], "close"),
        case("line-3000-no-newline", rep(b"z", 3000), "close"),
        case(
            "line-3000-with-newline",
            cat(&[&rep(b"z", 3000), b"\r\n"]),
            "ERROR",
        ),
        case(
            "line-100k-with-newline",
            cat(&[&rep(b"q", 100_000), b"\r\n"]),
            "close",
        ),
        case(
            "only-spaces-line",
            cat(&[&rep(b" ", 500), b"\r\n"]),
            "ERROR",
        ),
        case("only-spaces-3000", rep(b" ", 3000), "close"),
        case("only-cr", rep(b"\r", 50), ""),
        case("many-crlf", rep(b"\r\n", 20), "ERROR"),
        case(
            "huge-length-4g",
            b"set big1 0 0 4000000000\r\n".to_vec(),
            "CLIENT_ERROR bad command line format",
        )
        .probe(b"get big1\r\n"),
        case(
            "huge-length-int-max",
            b"set big2 0 0 2147483647\r\n".to_vec(),
            "CLIENT_ERROR bad command line format",
        ),
        case(
            "huge-length-then-data",
            cat(&[b"set big3 0 0 300000000\r\n", &rep(b"d", 100_000)]),
            "",
        )
        .probe(b"get big3\r\n"),
        case(
            "big-length-then-close",
            b"set big4 0 0 1000000\r\nabc".to_vec(),
            "",
        )
        .then_close()
        .probe(b"get big4\r\n"),
        case(
            "negative-length",
            b"set neg 0 0 -5\r\nhello\r\n".to_vec(),
            "CLIENT_ERROR bad command line format|ERROR",
        )
        .probe(b"get neg\r\n"),
        case(
            "negative-flags",
            b"set neg2 -1 0 1\r\nx\r\n".to_vec(),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "non-numeric-flags",
            b"set nn1 x 0 1\r\nx\r\n".to_vec(),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "non-numeric-exptime",
            b"set nn2 0 y 1\r\nx\r\n".to_vec(),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "non-numeric-length",
            b"set nn3 0 0 z\r\nx\r\n".to_vec(),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "huge-flags",
            b"set nn4 99999999999999999999 0 1\r\nx\r\n".to_vec(),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "non-numeric-delta",
            b"incr nn5 abc\r\n".to_vec(),
            "CLIENT_ERROR invalid numeric delta argument",
        ),
        case(
            "huge-delta",
            b"incr nn5 99999999999999999999999999\r\n".to_vec(),
            "CLIENT_ERROR invalid numeric delta argument",
        ),
        case(
            "non-numeric-cas",
            b"cas nn6 0 0 1 zz\r\nx\r\n".to_vec(),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "non-numeric-touch",
            b"touch nn7 soon\r\n".to_vec(),
            "CLIENT_ERROR invalid exptime argument",
        ),
        case(
            "non-numeric-gat",
            b"gat soon nn7\r\n".to_vec(),
            "CLIENT_ERROR invalid exptime argument",
        ),
        case(
            "non-numeric-verbosity",
            b"verbosity loud\r\n".to_vec(),
            "CLIENT_ERROR bad command line format",
        ),
        case(
            "non-numeric-memlimit",
            b"cache_memlimit lots\r\n".to_vec(),
            "ERROR",
        ),
        case(
            "key-251-set",
            cat(&[b"set ", &rep(b"K", 251), b" 0 0 1\r\nx\r\n"]),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "key-10000-set",
            cat(&[b"set ", &rep(b"K", 10_000), b" 0 0 1\r\nx\r\n"]),
            "CLIENT_ERROR bad command line format|ERROR",
        ),
        case(
            "key-10000-get",
            cat(&[b"get ", &rep(b"K", 10_000), b"\r\n"]),
            "CLIENT_ERROR bad command line format",
        ),
        case(
            "key-control-chars",
            b"set c\x01\x02 0 0 1\r\nx\r\n".to_vec(),
            "STORED",
        )
        .probe(b"get c\x01\x02\r\n"),
        case("truncated-set-line", b"set tr1 0 0".to_vec(), "")
            .then_close()
            .probe(b"get tr1\r\n"),
        case("truncated-set-data", b"set tr2 0 0 10\r\nabc".to_vec(), "")
            .then_close()
            .probe(b"get tr2\r\n"),
        case(
            "truncated-set-no-crlf",
            b"set tr3 0 0 3\r\nabc".to_vec(),
            "",
        )
        .then_close()
        .probe(b"get tr3\r\n"),
        case("truncated-get", b"get tr1".to_vec(), "")
            .then_close()
            .probe(b"version\r\n"),
        case("truncated-incr", b"incr".to_vec(), "")
            .then_close()
            .probe(b"version\r\n"),
        case(
            "bad-data-chunk",
            b"set bd 0 0 2\r\nabcdef\r\n".to_vec(),
            "CLIENT_ERROR bad data chunk|ERROR",
        )
        .probe(b"get bd\r\n"),
        case(
            "binary-junk",
            cat(&[&[0x80u8, 0x99, 0x42], &rep(b"\xfe", 40)]),
            "",
        )
        .binary(),
        case("binary-unknown-opcode", bin_header, "\u{81}").binary(),
        case("binary-get", bin_get, "\u{81}").binary(),
        case("binary-huge-body", bin_huge, "").binary(),
        case("binary-lone-0x80", vec![0x80u8], "").binary(),
        case(
            "http-get",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            "close",
        ),
        case(
            "http-post",
            b"POST /submit HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            "close",
        ),
        case("http-head-lower", b"head / http/1.1\r\n".to_vec(), "ERROR"),
        case("http-no-version", b"GET /\r\n".to_vec(), "ERROR"),
        case("get-100k-keys", hundred_k_keys, "END").slow(),
        case("get-tabs", b"get\tk1\tk2\r\n".to_vec(), "ERROR"),
        case(
            "too-many-tokens",
            cat(&[b"set tm 0 0 1", &rep(b" x", 30), b"\r\nx\r\n"]),
            "ERROR",
        ),
        case(
            "pipelined-garbage-then-valid",
            b"blah\r\n\0\0\r\nversion\r\n".to_vec(),
            "ERROR|VERSION 1.6.18",
        ),
        case("stats-garbage-arg", b"stats \x01\x02\r\n".to_vec(), "ERROR"),
        case("one-byte-at-a-time", Vec::new(), "VERSION 1.6.18")
            .chunks(b"version\r\n".iter().map(|&b| vec![b]).collect()),
        case("set-split-in-header", Vec::new(), "STORED")
            .chunks(vec![
                b"set sp 0 ".to_vec(),
                b"0 3\r".to_vec(),
                b"\nab".to_vec(),
                b"c\r\n".to_vec(),
            ])
            .probe(b"get sp\r\n"),
    ]
}

/// Reads until quiet or close; returns bytes and whether the peer closed.
fn read_reply(s: &mut TcpStream, first: Duration) -> (Vec<u8>, bool) {
    read_quiet_stream(s, first, QUIET, LIMIT)
}

/// The class of a reply: its lines minus data blocks, repeats collapsed, `|`-joined, then
/// `close` if the server closed. A binary reply is reduced to its magic byte.
fn classify(bytes: &[u8], closed: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    if bytes.first() == Some(&0x81) {
        parts.push("\u{81}".to_string());
    } else {
        let mut rest = bytes;
        while !rest.is_empty() {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| p + 2)
                .unwrap_or(rest.len());
            let line = String::from_utf8_lossy(&rest[..end]).trim_end().to_string();
            rest = &rest[end..];
            if let Some(len) = line
                .strip_prefix("VALUE ")
                .and_then(|v| v.split(' ').nth(2))
                .and_then(|n| n.parse::<usize>().ok())
            {
                rest = rest.get(len + 2..).unwrap_or(&[]);
                parts.push("VALUE".to_string());
                continue;
            }
            if parts.last() != Some(&line) {
                parts.push(line);
            }
        }
    }
    if closed {
        parts.push("close".to_string());
    }
    parts.join("|")
}

/// What one server did with one case.
#[derive(Debug, PartialEq)]
struct Outcome {
    class: String,
    probe: Option<String>,
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).ok();
    s.set_write_timeout(Some(LIMIT)).ok();
    s
}

fn exercise(port: u16, c: &Case) -> Outcome {
    let mut s = connect(port);
    let mut write_failed = false;
    for (i, chunk) in c.chunks.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        if s.write_all(chunk).is_err() {
            write_failed = true;
            break;
        }
    }
    let class = match c.end {
        End::Close => {
            let _ = s.shutdown(Shutdown::Both);
            String::new()
        }
        End::Read => {
            let (bytes, closed) = read_reply(&mut s, c.first);
            classify(&bytes, closed || write_failed)
        }
    };
    drop(s);
    let probe = c.probe.map(|p| {
        // Give the server a moment to process the close of the previous connection.
        std::thread::sleep(Duration::from_millis(30));
        let mut s = connect(port);
        s.write_all(p).expect("probe send");
        let (bytes, closed) = read_reply(&mut s, QUIET);
        classify(&bytes, closed)
    });
    Outcome { class, probe }
}

const WITNESS_VALUE: &[u8] = b"the witness value survives every malformed case";

/// A connection that stored an item before the battery; checks it after each case.
struct Witness {
    conn: Client,
    expect: Vec<u8>,
}

impl Witness {
    fn new(port: u16) -> Witness {
        let mut conn = Client::connect(port);
        let mut req = format!("set witness 77 0 {}\r\n", WITNESS_VALUE.len()).into_bytes();
        req.extend_from_slice(WITNESS_VALUE);
        req.extend_from_slice(b"\r\n");
        conn.roundtrip(&req, b"STORED\r\n");
        let mut expect = format!("VALUE witness 77 {}\r\n", WITNESS_VALUE.len()).into_bytes();
        expect.extend_from_slice(WITNESS_VALUE);
        expect.extend_from_slice(b"\r\nEND\r\n");
        Witness { conn, expect }
    }

    fn check(&mut self, after: &str) -> Result<(), String> {
        self.conn.send(b"get witness\r\n");
        let mut got = vec![0u8; self.expect.len()];
        self.conn
            .stream
            .read_exact(&mut got)
            .map_err(|e| format!("witness after {after}: {e}"))?;
        if got != self.expect {
            return Err(format!("witness after {after}: got {}", show(&got)));
        }
        Ok(())
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Runs every case against one server; witness failures are returned as errors.
fn battery(server: &Server, cases: &[Case]) -> (Vec<Outcome>, Vec<String>) {
    let mut witness = Witness::new(server.port);
    let mut outcomes = Vec::new();
    let mut errors = Vec::new();
    for c in cases {
        outcomes.push(exercise(server.port, c));
        if let Err(e) = witness.check(c.name) {
            errors.push(e);
            witness = Witness::new(server.port);
        }
    }
    if !alive(server.pid()) {
        errors.push("server process is gone at the end".to_string());
    } else {
        let mut c = server.connect();
        if !c.line("version\r\n").starts_with("VERSION ") {
            errors.push("version fails at the end".to_string());
        }
    }
    (outcomes, errors)
}

fn acceptable_binary(ours: &Outcome) -> bool {
    let c = &ours.class;
    c.ends_with("close") || c.starts_with('\u{81}') || c.contains("ERROR")
}

#[test]
fn malformed_requests_match_memcached_class() {
    let cases = cases();
    let (ours, reference) = std::thread::scope(|sc| {
        let reference = sc.spawn(|| {
            Server::memcached(&[]).map(|m| {
                let (o, errs) = battery(&m, &cases);
                assert!(errs.is_empty(), "memcached itself: {errs:?}");
                o
            })
        });
        let server = Server::ferrocache(&[]);
        let ours = battery(&server, &cases);
        (ours, reference.join().expect("reference thread"))
    });
    let (ours, mut failures) = ours;
    let mut stale = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let want = match reference.as_ref() {
            Some(r) => {
                let live = &r[i];
                if live.class != c.expect {
                    stale.push(format!(
                        "{}: table says {:?}, memcached gives {:?}",
                        c.name, c.expect, live.class
                    ));
                }
                Outcome {
                    class: live.class.clone(),
                    probe: live.probe.clone(),
                }
            }
            None => Outcome {
                class: c.expect.to_string(),
                probe: ours[i].probe.clone(),
            },
        };
        let got = &ours[i];
        eprintln!("{:<32} ours {:?} probe {:?}", c.name, got.class, got.probe);
        let class_ok = got.class == want.class || (c.binary && acceptable_binary(got));
        if !class_ok || got.probe != want.probe {
            failures.push(format!(
                "{}: memcached {:?} probe {:?}; ours {:?} probe {:?}",
                c.name, want.class, want.probe, got.class, got.probe
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "expected classes in the table are stale:\n{}",
        stale.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} of {} malformed cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} malformed cases passed", cases.len());
}

#[test]
fn classify_reduces_replies() {
    assert_eq!(classify(b"ERROR\r\nERROR\r\n", false), "ERROR");
    assert_eq!(
        classify(b"VALUE a 0 5\r\nEND\r\n\r\nEND\r\n", true),
        "VALUE|END|close"
    );
    assert_eq!(classify(b"", true), "close");
    assert_eq!(classify(b"", false), "");
    assert_eq!(classify(b"\x81\x00", false), "\u{81}");
}
