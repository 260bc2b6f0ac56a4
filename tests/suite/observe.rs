//! One seam for every executed operation (`server::observe`, issue #26): the same
//! operations driven through text, meta and binary give one `Op` stream (seen in
//! process through `Loopback::tap`) and move the same counters; and the `watch
//! mutations fetchers` lines of meta and binary commands are memcached 1.6.18's
//! (compared live, times, event numbers and connection ids normalised).

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrocache::op::{MissCause, OpKind, Outcome, StoreOp};
use ferrocache::server::loopback::Loopback;
use ferrocache::server::observe::{Op, Proto};

/// An `Op` without its borrows, protocol and connection: what must be the same
/// whichever protocol carried the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    kind: OpKind,
    key: Vec<u8>,
    outcome: Outcome,
    value: Vec<u8>,
    flags: u32,
    exptime: i64,
    amount: u64,
    size: usize,
}

impl Seen {
    fn of(op: &Op<'_>) -> Seen {
        Seen {
            kind: op.kind,
            key: op.key.to_vec(),
            outcome: op.outcome,
            value: op.value.to_vec(),
            flags: op.flags,
            exptime: op.exptime,
            amount: op.amount,
            size: op.size,
        }
    }
}

const BIG: usize = 2 << 20;

/// The operations, in text.
fn text_requests() -> Vec<Vec<u8>> {
    let mut big = format!("set big 0 0 {BIG}\r\n").into_bytes();
    big.extend(vec![b'x'; BIG]);
    big.extend_from_slice(b"\r\n");
    vec![
        b"set k 5 0 3\r\nval\r\n".to_vec(),
        b"get k\r\n".to_vec(),
        b"gets nope\r\n".to_vec(),
        b"add k 0 0 2\r\nv2\r\n".to_vec(),
        b"replace k 0 0 2\r\nv2\r\n".to_vec(),
        b"append k 0 0 1\r\nA\r\n".to_vec(),
        b"prepend k 0 0 1\r\nP\r\n".to_vec(),
        b"cas k 0 0 1 1\r\nz\r\n".to_vec(),
        b"gat 100 k\r\n".to_vec(),
        b"delete k\r\n".to_vec(),
        b"delete k\r\n".to_vec(),
        b"incr n 1\r\n".to_vec(),
        b"set n 0 0 2\r\n10\r\n".to_vec(),
        b"incr n 5\r\n".to_vec(),
        b"decr n 3\r\n".to_vec(),
        big,
        b"get big\r\n".to_vec(),
    ]
}

/// The same operations, in meta commands.
fn meta_requests() -> Vec<Vec<u8>> {
    let mut big = format!("ms big {BIG}\r\n").into_bytes();
    big.extend(vec![b'x'; BIG]);
    big.extend_from_slice(b"\r\n");
    vec![
        b"ms k 3 F5\r\nval\r\n".to_vec(),
        b"mg k v f\r\n".to_vec(),
        b"mg nope v c\r\n".to_vec(),
        b"ms k 2 ME\r\nv2\r\n".to_vec(),
        b"ms k 2 MR\r\nv2\r\n".to_vec(),
        b"ms k 1 MA\r\nA\r\n".to_vec(),
        b"ms k 1 MP\r\nP\r\n".to_vec(),
        b"ms k 1 C1\r\nz\r\n".to_vec(),
        b"mg k v T100\r\n".to_vec(),
        b"md k\r\n".to_vec(),
        b"md k\r\n".to_vec(),
        b"ma n\r\n".to_vec(),
        b"ms n 2\r\n10\r\n".to_vec(),
        b"ma n D5\r\n".to_vec(),
        b"ma n MD D3\r\n".to_vec(),
        big,
        b"mg big v\r\n".to_vec(),
    ]
}

/// A binary request.
fn bin(op: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut r = vec![0x80, op];
    r.extend_from_slice(&(key.len() as u16).to_be_bytes());
    r.push(extras.len() as u8);
    r.extend_from_slice(&[0, 0, 0]);
    r.extend_from_slice(&(body as u32).to_be_bytes());
    r.extend_from_slice(&0xdead_u32.to_be_bytes());
    r.extend_from_slice(&cas.to_be_bytes());
    r.extend_from_slice(extras);
    r.extend_from_slice(key);
    r.extend_from_slice(value);
    r
}

fn store_extras(flags: u32, exptime: u32) -> Vec<u8> {
    let mut e = flags.to_be_bytes().to_vec();
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

fn arith_extras(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    let mut e = delta.to_be_bytes().to_vec();
    e.extend_from_slice(&initial.to_be_bytes());
    e.extend_from_slice(&exptime.to_be_bytes());
    e
}

const NO_CREATE: u32 = 0xffff_ffff;

/// The same operations, in binary requests.
fn binary_requests() -> Vec<Vec<u8>> {
    vec![
        bin(0x01, b"k", &store_extras(5, 0), b"val", 0),
        bin(0x00, b"k", &[], &[], 0),
        bin(0x00, b"nope", &[], &[], 0),
        bin(0x02, b"k", &store_extras(0, 0), b"v2", 0),
        bin(0x03, b"k", &store_extras(0, 0), b"v2", 0),
        bin(0x0e, b"k", &[], b"A", 0),
        bin(0x0f, b"k", &[], b"P", 0),
        bin(0x01, b"k", &store_extras(0, 0), b"z", 1),
        bin(0x1d, b"k", &100u32.to_be_bytes(), &[], 0),
        bin(0x04, b"k", &[], &[], 0),
        bin(0x04, b"k", &[], &[], 0),
        bin(0x05, b"n", &arith_extras(1, 0, NO_CREATE), &[], 0),
        bin(0x01, b"n", &store_extras(0, 0), b"10", 0),
        bin(0x05, b"n", &arith_extras(5, 0, NO_CREATE), &[], 0),
        bin(0x06, b"n", &arith_extras(3, 0, NO_CREATE), &[], 0),
        bin(0x01, b"big", &store_extras(0, 0), &vec![b'x'; BIG], 0),
        bin(0x00, b"big", &[], &[], 0),
    ]
}

/// What one protocol's requests gave: the `Op` stream and the counters.
fn run(requests: Vec<Vec<u8>>, proto: Proto) -> (Vec<Seen>, ferrocache::stats::CounterSnapshot) {
    let mut lb = Loopback::new(&["-I", "1m"]).expect("arguments");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    lb.tap(Box::new(move |op: &Op<'_>| {
        assert_eq!(op.proto, proto, "{op:?}");
        sink.lock().expect("sink").push(Seen::of(op));
    }));
    let mut s = lb.session();
    for r in requests {
        let fed = lb.feed(&mut s, &r, &mut |_| usize::MAX);
        assert!(
            !fed.closed,
            "{proto:?}: closed after {:?}",
            &r[..r.len().min(40)]
        );
    }
    let counters = ferrocache::stats::sum(lb.shared.observers.counters.iter().map(|c| &**c));
    let ops = seen.lock().expect("sink").clone();
    (ops, counters)
}

fn op(kind: OpKind, key: &str, outcome: Outcome) -> Seen {
    Seen {
        kind,
        key: key.as_bytes().to_vec(),
        outcome,
        value: Vec::new(),
        flags: 0,
        exptime: 0,
        amount: 0,
        size: 0,
    }
}

fn stored(kind: StoreOp, key: &str, outcome: Outcome, value: &str, flags: u32) -> Seen {
    Seen {
        value: value.as_bytes().to_vec(),
        flags,
        ..op(OpKind::Store(kind), key, outcome)
    }
}

fn arith(kind: OpKind, key: &str, outcome: Outcome, amount: u64) -> Seen {
    Seen {
        amount,
        ..op(kind, key, outcome)
    }
}

#[test]
fn text_meta_and_binary_give_one_op_stream() {
    let (text, tc) = run(text_requests(), Proto::Text);
    let (meta, mc) = run(meta_requests(), Proto::Meta);
    let (binary, bc) = run(binary_requests(), Proto::Binary);
    let absent = Outcome::Miss(MissCause::Absent);
    let want = vec![
        stored(StoreOp::Set, "k", Outcome::Stored, "val", 5),
        Seen {
            size: 3,
            ..op(OpKind::Get, "k", Outcome::Hit)
        },
        op(OpKind::Get, "nope", absent),
        stored(StoreOp::Add, "k", Outcome::NotStored, "v2", 0),
        stored(StoreOp::Replace, "k", Outcome::Stored, "v2", 0),
        stored(StoreOp::Append, "k", Outcome::Stored, "A", 0),
        stored(StoreOp::Prepend, "k", Outcome::Stored, "P", 0),
        stored(StoreOp::Cas(1), "k", Outcome::Exists, "z", 0),
        Seen {
            size: 4,
            exptime: 100,
            ..op(OpKind::Gat, "k", Outcome::Hit)
        },
        op(OpKind::Delete, "k", Outcome::Hit),
        op(OpKind::Delete, "k", absent),
        arith(OpKind::Incr, "n", absent, 1),
        stored(StoreOp::Set, "n", Outcome::Stored, "10", 0),
        arith(OpKind::Incr, "n", Outcome::Hit, 5),
        arith(OpKind::Decr, "n", Outcome::Hit, 3),
        op(OpKind::Store(StoreOp::Set), "big", Outcome::TooLarge),
        op(OpKind::Get, "big", absent),
    ];
    assert_eq!(text, want, "text");
    assert_eq!(meta, want, "meta");
    assert_eq!(binary, want, "binary");
    // And the counters they moved (a binary store refused as too large is not
    // counted in store_too_large, as in memcached's binary protocol before).
    for (name, c) in [("meta", &mc), ("binary", &bc)] {
        let pairs = [
            ("cmd_get", c.get_cmds, tc.get_cmds),
            ("get_hits", c.get_hits, tc.get_hits),
            ("get_misses", c.get_misses, tc.get_misses),
            ("cmd_set", c.set_cmds, tc.set_cmds),
            ("cmd_touch", c.touch_cmds, tc.touch_cmds),
            ("touch_hits", c.touch_hits, tc.touch_hits),
            ("delete_hits", c.delete_hits, tc.delete_hits),
            ("delete_misses", c.delete_misses, tc.delete_misses),
            ("incr_hits", c.incr_hits, tc.incr_hits),
            ("incr_misses", c.incr_misses, tc.incr_misses),
            ("decr_hits", c.decr_hits, tc.decr_hits),
            ("cas_badval", c.cas_badval, tc.cas_badval),
        ];
        for (stat, got, want) in pairs {
            assert_eq!(got, want, "{name} {stat}");
        }
    }
    assert_eq!((tc.get_cmds, tc.get_hits, tc.set_cmds), (3, 1, 7));
    assert_eq!((tc.store_too_large, mc.store_too_large), (1, 1));
}

/// A watcher's connection, after its `OK`.
fn watcher(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"watch mutations fetchers\r\n").expect("send");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut ok = [0u8; 4];
    s.read_exact(&mut ok).expect("OK");
    assert_eq!(&ok, b"OK\r\n");
    s
}

/// A line with `ts=`, `gid=` and `cfd=` values replaced.
fn normalise(line: &str) -> String {
    line.split(' ')
        .map(|w| match w.split_once('=') {
            Some((k @ ("ts" | "gid" | "cfd"), _)) => format!("{k}=_"),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Meta commands whose watch lines are compared (expiry times left out: the
/// servers' clocks tick apart).
const META: &[&[u8]] = &[
    b"ms mk 2 F5\r\nhi\r\n",
    b"mg mk v\r\n",
    b"mg mk s v f c\r\n",
    b"mg nope v\r\n",
    b"mg mk\r\n",
    b"ms mk 2 MA\r\nxx\r\n",
    b"ms mk 2 MP\r\nyy\r\n",
    b"ms mk 2 ME\r\nzz\r\n",
    b"ms mk 2 MR\r\nzz\r\n",
    b"ms nokey 2 MR\r\nzz\r\n",
    b"ms mk 2 C1\r\nzz\r\n",
    b"ma mk\r\n",
    b"ms mn 1\r\n5\r\n",
    b"ma mn\r\n",
    b"ma mn MD D2\r\n",
    b"ma nonum\r\n",
    b"ma nonum N0 J7\r\n",
    b"me mn\r\n",
    b"md mk\r\n",
    b"md mk\r\n",
    b"md mn q\r\nmn\r\n",
    b"mn\r\n",
];

/// Binary requests whose watch lines are compared.
fn binary_sequence() -> Vec<Vec<u8>> {
    vec![
        bin(0x01, b"bk", &store_extras(7, 0), b"val", 0),
        bin(0x00, b"bk", &[], &[], 0),
        bin(0x0c, b"bk", &[], &[], 0),
        bin(0x00, b"bnope", &[], &[], 0),
        bin(0x02, b"bk", &store_extras(0, 0), b"v2", 0),
        bin(0x03, b"bk", &store_extras(0, 0), b"v3", 0),
        bin(0x0e, b"bk", &[], b"A", 0),
        bin(0x0f, b"bk", &[], b"P", 0),
        bin(0x01, b"bk", &store_extras(0, 0), b"v4", 1),
        bin(0x1c, b"bk", &0u32.to_be_bytes(), &[], 0),
        bin(0x1d, b"bk", &0u32.to_be_bytes(), &[], 0),
        bin(0x1d, b"bnope", &0u32.to_be_bytes(), &[], 0),
        bin(0x04, b"bk", &[], &[], 0),
        bin(0x04, b"bk", &[], &[], 0),
        bin(0x05, b"bn", &arith_extras(1, 10, 0), &[], 0),
        bin(0x05, b"bn", &arith_extras(1, 10, 0), &[], 0),
    ]
}

/// Reads one binary response.
fn read_packet(s: &mut TcpStream) {
    let mut head = [0u8; 24];
    s.read_exact(&mut head).expect("response header");
    let body = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let mut rest = vec![0u8; body];
    s.read_exact(&mut rest).expect("response body");
}

/// What the watcher got (normalised lines) until it has been quiet a while.
fn drain(w: &mut TcpStream) -> Vec<String> {
    let (raw, _) = read_quiet_stream(
        w,
        Duration::from_secs(2),
        Duration::from_millis(300),
        Duration::from_secs(10),
    );
    String::from_utf8_lossy(&raw)
        .lines()
        .map(normalise)
        .collect()
}

/// The watch lines of the meta commands, then of the binary requests (read apart:
/// memcached buffers lines per worker thread, so two connections' lines may
/// interleave in any order).
fn events(port: u16) -> (Vec<String>, Vec<String>) {
    let mut w = watcher(port);
    let mut c = Client::connect(port);
    for step in META {
        c.send(step);
        let _ = c.read_until(b"\r\n");
    }
    drop(c);
    let meta = drain(&mut w);
    let mut b = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    b.set_read_timeout(Some(Duration::from_secs(5))).ok();
    for r in binary_sequence() {
        b.write_all(&r).expect("send");
        read_packet(&mut b);
    }
    drop(b);
    (meta, drain(&mut w))
}

#[test]
fn meta_and_binary_watch_lines_match_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    let (m_meta, m_bin) = events(mc.port);
    let (f_meta, f_bin) = events(fc.port);
    assert!(
        m_meta
            .iter()
            .any(|l| l.contains("type=item_store key=mk status=stored cmd=append")),
        "memcached logged meta mutations: {m_meta:?}"
    );
    assert!(
        m_bin
            .iter()
            .any(|l| l.contains("type=item_store key=bn status=stored cmd=add")),
        "memcached logged binary mutations: {m_bin:?}"
    );
    assert_eq!(f_meta, m_meta, "meta");
    assert_eq!(f_bin, m_bin, "binary");
}
