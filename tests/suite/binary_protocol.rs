//! The binary protocol, compared live and byte for byte with memcached 1.6.18: every
//! opcode quiet and not, error paths, malformed packets, and libmemcached's
//! `memccapable` conformance checker. Each case runs on a fresh ferrocache and a fresh
//! memcached with the same arguments, so CAS uniques line up and are compared exactly.
use crate::common::*;

use std::process::Command;
use std::time::Duration;

const MEMCAPABLE: &str = "/usr/bin/memccapable";

const GET: u8 = 0x00;
const SET: u8 = 0x01;
const ADD: u8 = 0x02;
const REPLACE: u8 = 0x03;
const DELETE: u8 = 0x04;
const INCR: u8 = 0x05;
const DECR: u8 = 0x06;
const QUIT: u8 = 0x07;
const FLUSH: u8 = 0x08;
const GETQ: u8 = 0x09;
const NOOP: u8 = 0x0a;
const VERSION: u8 = 0x0b;
const GETK: u8 = 0x0c;
const GETKQ: u8 = 0x0d;
const APPEND: u8 = 0x0e;
const PREPEND: u8 = 0x0f;
const STAT: u8 = 0x10;
const SETQ: u8 = 0x11;
const ADDQ: u8 = 0x12;
const REPLACEQ: u8 = 0x13;
const DELETEQ: u8 = 0x14;
const INCRQ: u8 = 0x15;
const DECRQ: u8 = 0x16;
const QUITQ: u8 = 0x17;
const FLUSHQ: u8 = 0x18;
const APPENDQ: u8 = 0x19;
const PREPENDQ: u8 = 0x1a;
const TOUCH: u8 = 0x1c;
const GAT: u8 = 0x1d;
const GATQ: u8 = 0x1e;
const SASL_LIST: u8 = 0x20;
const SASL_AUTH: u8 = 0x21;
const SASL_STEP: u8 = 0x22;
const GATK: u8 = 0x23;
const GATKQ: u8 = 0x24;

/// A request packet with explicit lengths taken from the parts.
fn pkt(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32, cas: u64) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    raw(
        op,
        key.len() as u16,
        extras.len() as u8,
        body as u32,
        opaque,
        cas,
        &[extras, key, value].concat(),
    )
}

/// A request packet with lengths as given (possibly lying) and `payload` after it.
fn raw(
    op: u8,
    keylen: u16,
    extlen: u8,
    bodylen: u32,
    opaque: u32,
    cas: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0x80, op];
    p.extend_from_slice(&keylen.to_be_bytes());
    p.push(extlen);
    p.push(0);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&bodylen.to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&cas.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn set_ex(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn set(op: u8, key: &str, value: &str, flags: u32, opaque: u32, cas: u64) -> Vec<u8> {
    pkt(
        op,
        key.as_bytes(),
        &set_ex(flags, 0),
        value.as_bytes(),
        opaque,
        cas,
    )
}

fn keyed(op: u8, key: &str, opaque: u32) -> Vec<u8> {
    pkt(op, key.as_bytes(), &[], &[], opaque, 0)
}

fn arith(
    op: u8,
    key: &str,
    delta: u64,
    initial: u64,
    exptime: u32,
    opaque: u32,
    cas: u64,
) -> Vec<u8> {
    let ex = [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ]
    .concat();
    pkt(op, key.as_bytes(), &ex, &[], opaque, cas)
}

fn touchlike(op: u8, key: &str, exptime: u32, opaque: u32) -> Vec<u8> {
    pkt(op, key.as_bytes(), &exptime.to_be_bytes(), &[], opaque, 0)
}

fn simple(op: u8, opaque: u32) -> Vec<u8> {
    pkt(op, &[], &[], &[], opaque, 0)
}

const SYNC_OPAQUE: u32 = 0x5eed_f00d;

/// What a step waits for.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// A NOOP is appended; read until its reply (deterministic and fast).
    Sync,
    /// Read until the connection is quiet or closed.
    Quiet,
}

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    steps: Vec<(Vec<u8>, Wait)>,
}

fn case(name: &'static str, steps: Vec<Vec<u8>>) -> Case {
    Case {
        name,
        args: &[],
        steps: steps.into_iter().map(|s| (s, Wait::Sync)).collect(),
    }
}

fn quiet_case(name: &'static str, steps: Vec<Vec<u8>>) -> Case {
    Case {
        name,
        args: &[],
        steps: steps.into_iter().map(|s| (s, Wait::Quiet)).collect(),
    }
}

/// Runs a case's steps on one connection; per step the bytes received and whether the
/// server closed. A second connection then checks the server still answers.
fn run(server: &Server, c: &Case) -> Vec<(Vec<u8>, bool)> {
    let text_only = c.args.contains(&"ascii");
    if !text_only {
        // A sentinel item stored by another client before the case runs.
        let mut first = server.connect();
        first.send(&set(SET, "sentinel", "intact", 0, 0, 0));
        first.read_exact(24);
    }
    let mut cl = server.connect();
    let noop_reply = {
        let mut r = vec![0x81, NOOP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        r.extend_from_slice(&SYNC_OPAQUE.to_be_bytes());
        r.extend_from_slice(&[0; 8]);
        r
    };
    let mut out = Vec::new();
    for (bytes, wait) in &c.steps {
        match wait {
            Wait::Sync => {
                let mut b = bytes.clone();
                b.extend_from_slice(&simple(NOOP, SYNC_OPAQUE));
                cl.send(&b);
                let got = cl.read_until(&noop_reply);
                let body = got[..got.len().saturating_sub(24)].to_vec();
                out.push((body, false));
            }
            Wait::Quiet => {
                if cl.stream.write_all_ok(bytes) {
                    let (got, closed) = read_quiet_stream(
                        &mut cl.stream,
                        Duration::from_millis(400),
                        Duration::from_millis(80),
                        Duration::from_secs(10),
                    );
                    out.push((got, closed));
                } else {
                    out.push((Vec::new(), true));
                }
            }
        }
    }
    let mut other = server.connect();
    if c.args.contains(&"ascii") {
        assert_eq!(other.line("version\r\n"), "VERSION 1.6.18\r\n");
        return out;
    }
    other.roundtrip(&simple(VERSION, 7), &{
        let mut r = vec![0x81, VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 7];
        r.extend_from_slice(&[0; 8]);
        r.extend_from_slice(b"1.6.18");
        r
    });
    // Stored data survives whatever the case sent (unless it flushed).
    other.send(&keyed(GET, "sentinel", 8));
    let head = other.read_exact(24);
    let blen = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let body = other.read_exact(blen);
    if !c.name.contains("flush") {
        assert_eq!(&body[..], b"\0\0\0\0intact", "{}: sentinel lost", c.name);
    }
    out.push(([head, body].concat(), false));
    out
}

trait WriteOk {
    fn write_all_ok(&mut self, b: &[u8]) -> bool;
}

impl WriteOk for std::net::TcpStream {
    fn write_all_ok(&mut self, b: &[u8]) -> bool {
        use std::io::Write;
        self.write_all(b).is_ok()
    }
}

/// Splits a reply stream into packets for readable failure messages.
fn packets(b: &[u8]) -> String {
    let mut s = String::new();
    let mut rest = b;
    while rest.len() >= 24 && rest[0] == 0x81 {
        let body = u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize;
        let end = (24 + body).min(rest.len());
        s.push_str(&format!(
            "\n  op={:02x} status={:04x} ext={} key={} body={} opaque={:08x} cas={} | {}",
            rest[1],
            u16::from_be_bytes([rest[6], rest[7]]),
            rest[4],
            u16::from_be_bytes([rest[2], rest[3]]),
            body,
            u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]),
            u64::from_be_bytes(rest[16..24].try_into().unwrap_or([0; 8])),
            show(&rest[24..end])
        ));
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        s.push_str(&format!("\n  trailing: {}", show(rest)));
    }
    s
}

fn compare(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in &cases {
        let Some(reference) = Server::memcached(c.args) else {
            return;
        };
        let want = run(&reference, c);
        drop(reference);
        let ours = Server::ferrocache(c.args);
        let got = run(&ours, c);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if w != g {
                failures.push(format!(
                    "{} step {i}: memcached (closed={}):{}\nferrocache (closed={}):{}",
                    c.name,
                    w.1,
                    packets(&w.0),
                    g.1,
                    packets(&g.0)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn keyless_and_storage_opcodes_match_memcached() {
    compare(vec![
        case("noop-version", vec![simple(NOOP, 1), simple(VERSION, 2)]),
        case(
            "set-get-all-forms",
            vec![
                set(SET, "a", "hello", 0xdeadbeef, 1, 0),
                [
                    keyed(GET, "a", 2),
                    keyed(GETQ, "a", 3),
                    keyed(GETK, "a", 4),
                    keyed(GETKQ, "a", 5),
                ]
                .concat(),
                [
                    keyed(GET, "zz", 6),
                    keyed(GETQ, "zz", 7),
                    keyed(GETK, "zz", 8),
                    keyed(GETKQ, "zz", 9),
                ]
                .concat(),
                [set(SETQ, "b", "x", 0, 10, 0), keyed(GET, "b", 11)].concat(),
                set(SET, "empty", "", 0, 12, 0),
                keyed(GETK, "empty", 13),
            ],
        ),
        case(
            "cas-rules",
            vec![
                set(SET, "c", "v1", 0, 1, 0),
                set(SET, "c", "v2", 0, 2, 2), // right CAS (fresh server)
                set(SET, "c", "v3", 0, 3, 999), // wrong
                set(SETQ, "c", "v3", 0, 4, 999),
                set(SET, "nokey", "v", 0, 5, 1),
                set(ADD, "c", "v", 0, 6, 3),
                set(REPLACE, "c", "v4", 0, 7, 3),
                set(REPLACE, "c", "v4", 0, 8, 3),
                keyed(GET, "c", 9),
            ],
        ),
        case(
            "add-replace",
            vec![
                set(ADD, "k", "1", 0, 1, 0),
                set(ADD, "k", "2", 0, 2, 0),
                set(ADDQ, "k", "2", 0, 3, 0),
                set(ADDQ, "k2", "2", 0, 4, 0),
                set(REPLACE, "k", "3", 5, 5, 0),
                set(REPLACE, "nope", "3", 0, 6, 0),
                set(REPLACEQ, "nope", "3", 0, 7, 0),
                set(REPLACEQ, "k", "4", 0, 8, 0),
                [keyed(GETK, "k", 9), keyed(GETK, "k2", 10)].concat(),
            ],
        ),
        case(
            "append-prepend",
            vec![
                pkt(APPEND, b"ap", &[], b"x", 1, 0),
                pkt(PREPEND, b"ap", &[], b"x", 2, 0),
                pkt(APPENDQ, b"ap", &[], b"x", 3, 0),
                pkt(PREPENDQ, b"ap", &[], b"x", 4, 0),
                set(SET, "ap", "mid", 7, 5, 0),
                pkt(APPEND, b"ap", &[], b"-end", 6, 0),
                pkt(PREPEND, b"ap", &[], b"start-", 7, 0),
                pkt(APPENDQ, b"ap", &[], b"!", 8, 0),
                pkt(PREPENDQ, b"ap", &[], b"!", 9, 0),
                pkt(APPEND, b"ap", &[], b"c", 10, 12345),
                keyed(GET, "ap", 11),
            ],
        ),
        case(
            "delete",
            vec![
                set(SET, "d", "1", 0, 1, 0),
                keyed(DELETE, "d", 2),
                keyed(DELETE, "d", 3),
                keyed(DELETEQ, "d", 4),
                set(SET, "d", "1", 0, 5, 0),
                keyed(DELETEQ, "d", 6),
                set(SET, "d", "1", 0, 7, 0),
                pkt(DELETE, b"d", &[], &[], 8, 77),
                pkt(DELETE, b"d", &[], &[], 9, 3),
                keyed(GET, "d", 10),
            ],
        ),
        case(
            "incr-decr",
            vec![
                arith(INCR, "n", 5, 10, 0, 1, 0),
                arith(INCR, "n", 5, 10, 0, 2, 0),
                arith(DECR, "n", 100, 10, 0, 3, 0),
                arith(INCRQ, "n", 1, 0, 0, 4, 0),
                arith(DECRQ, "n", 1, 0, 0, 5, 0),
                arith(INCR, "none", 1, 0, 0xffff_ffff, 6, 0),
                arith(DECRQ, "none", 1, 0, 0xffff_ffff, 7, 0),
                arith(INCRQ, "q", 1, 42, 0, 8, 0),
                keyed(GET, "q", 9),
                set(SET, "t", "text", 0, 10, 0),
                arith(INCR, "t", 1, 0, 0, 11, 0),
                set(SET, "m", "18446744073709551615", 0, 12, 0),
                arith(INCR, "m", 2, 0, 0, 13, 0),
                arith(INCR, "m", 1, 0, 0, 14, 99),
                arith(INCR, "n", 1, 0, 0, 15, 2),
                arith(DECR, "n", 1, 0, 0, 16, 0),
            ],
        ),
        case(
            "flush",
            vec![
                set(SET, "f", "1", 0, 1, 0),
                simple(FLUSH, 2),
                keyed(GET, "f", 3),
                // Read the flushed sentinel now, so both servers unlink it here: the
                // delayed flush below moves the flush point ahead again, and an item
                // flushed but not yet reclaimed is then valid again, until the
                // background crawler of either server happens to reclaim it (a race
                // with the servers' clocks, and `run` reads the sentinel at the end).
                keyed(GET, "sentinel", 20),
                set(SET, "f", "1", 0, 4, 0),
                simple(FLUSHQ, 5),
                keyed(GET, "f", 6),
                pkt(FLUSH, &[], &100u32.to_be_bytes(), &[], 7, 0),
                pkt(FLUSHQ, &[], &100u32.to_be_bytes(), &[], 8, 0),
                set(SET, "f", "1", 0, 9, 0),
                keyed(GET, "f", 10),
            ],
        ),
        case(
            "expiry-values",
            vec![
                pkt(SET, b"e1", &set_ex(0, 0xffff_ffff), b"v", 1, 0),
                pkt(SET, b"e2", &set_ex(0, 1 << 31), b"v", 2, 0),
                pkt(SET, b"e3", &set_ex(0, 100), b"v", 3, 0),
                [
                    keyed(GET, "e1", 5),
                    keyed(GET, "e2", 6),
                    keyed(GET, "e3", 7),
                ]
                .concat(),
                touchlike(GAT, "e3", 0xffff_fff0, 9),
                touchlike(GAT, "e3", 1_000_000_000, 10),
                keyed(GET, "e3", 11),
            ],
        ),
        case(
            "touch-gat",
            vec![
                set(SET, "g", "val", 3, 1, 0),
                touchlike(TOUCH, "g", 100, 2),
                touchlike(GAT, "g", 100, 3),
                touchlike(GATQ, "g", 100, 4),
                touchlike(GATK, "g", 100, 5),
                touchlike(GATKQ, "g", 100, 6),
                touchlike(TOUCH, "x", 100, 7),
                touchlike(GAT, "x", 100, 8),
                touchlike(GATQ, "x", 100, 9),
                touchlike(GATK, "x", 100, 10),
                touchlike(GATKQ, "x", 100, 11),
            ],
        ),
        case(
            "sasl-off-and-unknown",
            vec![
                simple(SASL_LIST, 1),
                pkt(SASL_AUTH, b"PLAIN", &[], b"\0u\0p", 2, 0),
                pkt(SASL_STEP, b"PLAIN", &[], b"xx", 3, 0),
                simple(0x1b, 4),
                simple(0x40, 5),
                simple(0xff, 6),
            ],
        ),
        case(
            "stat-groups",
            vec![
                pkt(STAT, b"conns", &[], &[], 1, 0),
                pkt(STAT, b"bogus", &[], &[], 2, 0),
                pkt(STAT, b"reset", &[], &[], 3, 0),
                pkt(STAT, b"detail on", &[], &[], 4, 0),
                pkt(STAT, b"detail off", &[], &[], 5, 0),
                pkt(STAT, b"detail what", &[], &[], 6, 0),
                pkt(STAT, b"cachedump 1 1", &[], &[], 7, 0),
                pkt(STAT, b"detail on", &[], &[], 8, 0),
                [
                    set(SET, "p:x", "1", 0, 9, 0),
                    keyed(GET, "p:x", 10),
                    keyed(GETQ, "p:y", 11),
                    keyed(DELETE, "p:x", 12),
                ]
                .concat(),
                pkt(STAT, b"detail dump", &[], &[], 13, 0),
                pkt(STAT, b"sizes", &[], &[], 14, 0),
            ],
        ),
    ]);
}

#[test]
fn quit_and_protocol_errors_match_memcached() {
    compare(vec![
        quiet_case("quit", vec![[simple(NOOP, 1), simple(QUIT, 2)].concat()]),
        quiet_case("quitq", vec![[simple(NOOP, 1), simple(QUITQ, 2)].concat()]),
        quiet_case("quit-with-body", vec![pkt(QUIT, b"", &[], b"x", 1, 0)]),
        quiet_case(
            "bad-magic-later",
            vec![simple(NOOP, 1), [0x81u8; 24].to_vec()],
        ),
        // A bad magic byte in the same batch as executed requests: memcached sends
        // the replies it had transmitted already (after a NOOP, STAT or an error
        // reply; a keyed GETK miss and STAT do not transmit), drops the rest, closes.
        quiet_case(
            "bad-magic-after-batch",
            vec![[
                set(SET, "k", "v", 0, 1, 0),
                keyed(GET, "k", 2),
                [0x81u8; 24].to_vec(),
            ]
            .concat()],
        ),
        quiet_case(
            "bad-magic-after-noop",
            vec![[
                set(SET, "k", "v", 0, 1, 0),
                simple(NOOP, 2),
                keyed(GETQ, "k", 3),
                simple(NOOP, 4),
                keyed(GETK, "k", 5),
                [0x81u8; 24].to_vec(),
            ]
            .concat()],
        ),
        quiet_case(
            "bad-magic-after-errors",
            vec![[
                set(SET, "k", "v", 0, 1, 0),
                keyed(GET, "missing", 2),
                keyed(GETQ, "k", 3),
                keyed(GETK, "missing", 4),
                keyed(DELETE, "missing", 5),
                keyed(GETKQ, "k", 6),
                [0x81u8; 24].to_vec(),
            ]
            .concat()],
        ),
        quiet_case(
            "bad-magic-after-stat",
            vec![[
                keyed(GETK, "missing", 1),
                pkt(STAT, b"no-such-group", &[], &[], 2, 0),
                keyed(GETK, "missing", 3),
                [0x81u8; 24].to_vec(),
            ]
            .concat()],
        ),
        quiet_case("keylen-over-body", vec![raw(GET, 5, 0, 2, 1, 0, b"abcde")]),
        quiet_case(
            "ext-plus-key-over-body",
            vec![raw(SET, 2, 8, 9, 1, 0, b"0123456789")],
        ),
        quiet_case("key-too-long", vec![keyed(GET, &"k".repeat(251), 1)]),
        quiet_case("get-with-extras", vec![pkt(GET, b"k", b"ee", &[], 1, 0)]),
        quiet_case("get-no-key", vec![simple(GET, 1)]),
        quiet_case("set-no-extras", vec![pkt(SET, b"k", &[], b"v", 1, 0)]),
        quiet_case(
            "incr-short-extras",
            vec![pkt(INCR, b"k", &[0; 8], &[], 1, 0)],
        ),
        quiet_case("version-with-key", vec![keyed(VERSION, "k", 1)]),
        quiet_case("noop-with-body", vec![pkt(NOOP, &[], &[], b"x", 1, 0)]),
        quiet_case(
            "flush-bad-extras",
            vec![pkt(FLUSH, &[], &[0; 2], &[], 1, 0)],
        ),
        quiet_case("stat-with-extras", vec![pkt(STAT, &[], &[0; 4], &[], 1, 0)]),
        quiet_case("touch-no-extras", vec![keyed(TOUCH, "k", 1)]),
        quiet_case(
            "delete-with-value",
            vec![pkt(DELETE, b"k", &[], b"v", 1, 0)],
        ),
        quiet_case(
            "append-with-extras",
            vec![pkt(APPEND, b"k", &[0; 8], b"v", 1, 0)],
        ),
        quiet_case(
            "unknown-opcode-swallows-body",
            vec![
                [raw(0x50, 0, 4, 4, 1, 0, &[1, 2, 3, 4]), simple(NOOP, 2)].concat(),
                simple(NOOP, 3),
            ],
        ),
        quiet_case(
            "sasl-list-with-body",
            vec![pkt(SASL_LIST, b"k", &[], &[], 1, 0)],
        ),
        quiet_case("truncated-header", vec![vec![0x80, 0x00, 0x00]]),
        quiet_case(
            "set-too-large-swallowed",
            vec![
                set(SET, "big", "old", 0, 1, 0),
                raw(SET, 3, 8, 11 + 2_000_000, 2, 0, b"\0\0\0\0\0\0\0\0big"),
                vec![b'x'; 2_000_000],
                [keyed(GET, "big", 3), simple(NOOP, 4)].concat(),
            ],
        ),
        quiet_case(
            "append-too-large",
            vec![
                set(SET, "ap", "old", 0, 1, 0),
                [
                    raw(APPENDQ, 2, 0, 2 + 1_048_577, 2, 0, b"ap"),
                    vec![b'y'; 1_048_577],
                    keyed(GET, "ap", 3),
                ]
                .concat(),
            ],
        ),
        quiet_case(
            "largest-value-stored",
            vec![[
                raw(SET, 1, 8, 9 + 1_048_500, 1, 0, b"\0\0\0\0\0\0\0\0v"),
                vec![b'z'; 1_048_500],
                set(SET, "w", "1", 0, 2, 0),
                keyed(GET, "v", 3),
                keyed(GETK, &"k".repeat(250), 4),
            ]
            .concat()],
        ),
    ]);
}

/// An item stored already expired (absolute time in the past): memcached replies with
/// the CAS it assigned, and so do we (the store returns the CAS it gives an item, under
/// the same lock as the store itself).
#[test]
fn cas_of_items_stored_already_expired() {
    compare(vec![case(
        "expired-on-arrival",
        vec![
            pkt(SET, b"e4", &set_ex(0, 1_000_000_000), b"v", 4, 0),
            keyed(GET, "e4", 8),
            arith(INCR, "e5", 1, 1, 1_000_000_000, 12, 0),
            keyed(GET, "e5", 13),
        ],
    )]);
}

#[test]
fn restricted_protocol_modes_match_memcached() {
    let mut cases = vec![
        quiet_case("binary-only-rejects-text", vec![b"version\r\n".to_vec()]),
        quiet_case("binary-only-serves-binary", vec![simple(VERSION, 1)]),
        quiet_case(
            "binary-only-closes-on-long-text",
            vec![b"get aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec()],
        ),
    ];
    for c in &mut cases {
        c.args = &["-B", "binary"];
    }
    let mut ascii = vec![
        quiet_case("ascii-only-reads-binary-as-text", vec![simple(VERSION, 1)]),
        quiet_case("ascii-serves-text", vec![b"version\r\n".to_vec()]),
    ];
    for c in &mut ascii {
        c.args = &["-B", "ascii"];
    }
    let mut noflush = vec![case(
        "flush-disabled",
        vec![simple(FLUSH, 1), simple(FLUSHQ, 2)],
    )];
    noflush[0].args = &["-F"];
    let mut nocas = vec![case(
        "cas-disabled",
        vec![
            set(SET, "c", "v", 0, 1, 0),
            set(SET, "c", "v", 0, 2, 12345),
            keyed(GET, "c", 3),
        ],
    )];
    nocas[0].args = &["-C"];
    cases.extend(ascii);
    cases.extend(noflush);
    cases.extend(nocas);
    compare(cases);
}

/// The STAT packets: one per stat (key = name, value = rest of the body, CAS 0,
/// status 0, opaque echoed), ending with an empty packet; counters moved by binary
/// commands show in `stats`.
#[test]
fn stat_packets_are_well_formed_and_counters_move() {
    let server = Server::ferrocache(&[]);
    let mut c = server.connect();
    c.send(&set(SET, "a", "1", 0, 1, 0));
    c.read_exact(24);
    c.send(&[keyed(GET, "a", 2), keyed(GETQ, "nope", 3), simple(NOOP, 4)].concat());
    let got = c.read_until(&{
        let mut r = vec![0x81, NOOP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4];
        r.extend_from_slice(&[0; 8]);
        r
    });
    assert_eq!(got.len(), 24 + 4 + 1 + 24);
    for group in ["", "settings", "items", "slabs"] {
        c.send(&pkt(STAT, group.as_bytes(), &[], &[], 0xabcd, 0));
        let mut stats = Vec::new();
        for _ in 0..10_000 {
            let h = c.read_exact(24);
            assert_eq!(&h[..2], &[0x81, STAT]);
            assert_eq!(&h[4..8], &[0, 0, 0, 0], "extlen, datatype, status");
            assert_eq!(&h[12..24], &[0, 0, 0xab, 0xcd, 0, 0, 0, 0, 0, 0, 0, 0]);
            let klen = u16::from_be_bytes([h[2], h[3]]) as usize;
            let blen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
            if blen == 0 {
                assert_eq!(klen, 0);
                break;
            }
            let body = c.read_exact(blen);
            assert!(klen > 0 && klen <= blen);
            stats.push((
                String::from_utf8_lossy(&body[..klen]).into_owned(),
                String::from_utf8_lossy(&body[klen..]).into_owned(),
            ));
        }
        if group.is_empty() {
            let get = |n: &str| stats.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            assert_eq!(get("version").as_deref(), Some("1.6.18"));
            assert_eq!(get("cmd_get").as_deref(), Some("2"));
            assert_eq!(get("get_hits").as_deref(), Some("1"));
            assert_eq!(get("get_misses").as_deref(), Some("1"));
            assert_eq!(get("cmd_set").as_deref(), Some("1"));
            // Same names, same order as the text `stats`.
            let text: Vec<String> = server
                .connect()
                .stats("")
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let bin: Vec<String> = stats.iter().map(|(k, _)| k.clone()).collect();
            assert_eq!(bin, text);
        }
        if group == "items" {
            assert!(stats
                .iter()
                .any(|(k, v)| k.ends_with(":number") && v == "1"));
        }
    }
    // The general group's names are memcached's.
    let Some(reference) = Server::memcached(&[]) else {
        return;
    };
    let names = |port: u16| -> Vec<String> {
        let mut c = Client::connect(port);
        c.send(&simple(STAT, 1));
        let mut v = Vec::new();
        for _ in 0..10_000 {
            let h = c.read_exact(24);
            let klen = u16::from_be_bytes([h[2], h[3]]) as usize;
            let blen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
            if blen == 0 {
                break;
            }
            let body = c.read_exact(blen);
            v.push(String::from_utf8_lossy(&body[..klen]).into_owned());
        }
        v
    };
    let theirs = names(reference.port);
    let ours = names(server.port);
    let missing: Vec<&String> = theirs.iter().filter(|n| !ours.contains(n)).collect();
    println!("stat names memcached has and we lack: {missing:?}");
}

/// A pipelined batch of quiet hits and misses plus NOOP: all replies, in order.
#[test]
fn pipelined_batch_matches_memcached() {
    let mut batch = Vec::new();
    for i in 0..200u32 {
        batch.extend(set(
            SETQ,
            &format!("k{i}"),
            &"v".repeat(i as usize),
            i,
            i,
            0,
        ));
    }
    for i in 0..400u32 {
        let op = [GETQ, GETKQ, GET, GETK][(i % 4) as usize];
        batch.extend(keyed(op, &format!("k{i}"), 1000 + i));
    }
    let mut c = case("pipeline", vec![batch]);
    c.steps[0].1 = Wait::Sync;
    compare(vec![c]);
}

/// Random sequences of valid requests over a small key space, same bytes from both.
#[test]
fn random_command_sequences_match_memcached() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases = Vec::new();
    for _ in 0..4 {
        let mut steps = Vec::new();
        for s in 0..30u32 {
            let mut batch = Vec::new();
            for j in 0..8u32 {
                let r = next();
                let key = format!("k{}", r % 5);
                let opaque = s * 100 + j;
                let val = format!("{}", (r >> 8) % 1000);
                let cas = if (r >> 20) % 4 == 0 {
                    (r >> 24) % 40
                } else {
                    0
                };
                let p = match (r >> 32) % 17 {
                    0 => set(SET, &key, &val, (r >> 40) as u32 % 3, opaque, cas),
                    1 => set(SETQ, &key, &val, 0, opaque, cas),
                    2 => set(ADD, &key, &val, 0, opaque, cas),
                    3 => set(REPLACEQ, &key, &val, 0, opaque, 0),
                    4 => pkt(APPEND, key.as_bytes(), &[], val.as_bytes(), opaque, cas),
                    5 => pkt(PREPENDQ, key.as_bytes(), &[], b"1", opaque, 0),
                    6 => keyed(GET, &key, opaque),
                    7 => keyed(GETKQ, &key, opaque),
                    8 => keyed(GETK, &key, opaque),
                    9 => pkt(DELETE, key.as_bytes(), &[], &[], opaque, cas),
                    10 => keyed(DELETEQ, &key, opaque),
                    11 => arith(INCR, &key, r % 7, 5, 0, opaque, cas),
                    12 => arith(DECRQ, &key, r % 7, 5, 0xffff_ffff, opaque, 0),
                    13 => touchlike(GATK, &key, 1000, opaque),
                    14 => touchlike(TOUCH, &key, 0, opaque),
                    15 => touchlike(GATQ, &key, 0, opaque),
                    _ => simple(NOOP, opaque),
                };
                batch.extend(p);
            }
            steps.push(batch);
        }
        cases.push(case("random", steps));
    }
    compare(cases);
}

fn memcapable(flags: &[&str], expect: usize) {
    if !require_tool(MEMCAPABLE) {
        return;
    }
    let server = Server::ferrocache(&[]);
    let port = server.port.to_string();
    let mut args = flags.to_vec();
    args.extend(["-h", "127.0.0.1", "-p", &port, "-t", "2"]);
    let run = run_bounded(
        Command::new(MEMCAPABLE).args(&args),
        Duration::from_secs(120),
    );
    let mut results = Vec::new();
    let mut rest = run.stdout.as_str();
    while rest.starts_with("ascii ") || rest.starts_with("binary ") {
        let Some(name) = rest.get(..40) else { break };
        let tail = &rest[40..];
        let ok = tail.starts_with("[pass]\n");
        results.push((name.trim_end().to_string(), ok));
        rest = if ok { &tail["[pass]\n".len()..] } else { tail };
    }
    let pass = results.iter().filter(|(_, ok)| *ok).count();
    println!(
        "memcapable {flags:?}: {pass} passed, {} failed",
        expect - pass.min(expect)
    );
    assert_eq!(
        (results.len(), pass),
        (expect, expect),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.status.map(|s| s.success()).unwrap_or(false));
}

#[test]
fn memcapable_binary_passes_all_27() {
    memcapable(&["-b"], 27);
}

#[test]
fn memcapable_passes_all_54() {
    memcapable(&[], 54);
}

/// A header announcing a body of 2 GiB or more (4 GiB here): memcached's discard count
/// is an `int`, so nothing is discarded, `Too large.` comes at once (an `APPEND` too),
/// the next request on the connection is served, and bytes that are no request (the
/// value a client would send) close it. A bit under 2 GiB is discarded as it arrives,
/// with the reply held until then.
#[test]
fn a_header_announcing_a_4_gib_body_is_too_large_at_once() {
    let huge = |op: u8, extlen: u8, opaque: u32| {
        let mut payload = vec![0u8; extlen as usize];
        payload.push(b'k');
        raw(op, 1, extlen, u32::MAX, opaque, 0, &payload)
    };
    let mut cases = vec![
        quiet_case(
            "set-4gib",
            vec![
                huge(SET, 8, 1),
                simple(VERSION, 2),
                huge(SETQ, 8, 3),
                huge(APPEND, 0, 4),
                pkt(SET, b"k", &set_ex(0, 0), b"small", 5, 0),
                keyed(GET, "k", 6),
                b"the first bytes of the value".to_vec(),
            ],
        ),
        quiet_case(
            "set-2gib-minus",
            vec![raw(
                SET,
                1,
                8,
                0x8000_0000,
                7,
                0,
                &[0, 0, 0, 0, 0, 0, 0, 0, b'k'],
            )],
        ),
    ];
    cases.push(quiet_case(
        "unknown-4gib",
        vec![huge(0x40, 0, 8), simple(NOOP, 9)],
    ));
    compare(cases);
}
