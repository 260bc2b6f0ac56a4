//! Text protocol parser micro-benchmarks (`ferrocache::protocol::text::parse`): one
//! request at the front of a read buffer, as a connection's read loop sees it.
//!
//! Run with `cargo bench --bench parser`. Figures are time per `parse` call, except
//! `parse_pipeline/100_mixed`, which parses a whole buffer of 100 requests per iteration
//! (criterion also prints it as requests/s).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocache::protocol::text::{parse, Command, Limits, Parse};

mod common;

const LIMITS: Limits = Limits {
    item_size_max: 1 << 20,
    cas_enabled: true,
    buffer_room: usize::MAX,
};

/// `set <key> 0 0 <len>\r\n<data>\r\n`
fn set_request(key: &str, len: usize) -> Vec<u8> {
    let mut buf = format!("set {key} 0 0 {len}\r\n").into_bytes();
    buf.resize(buf.len() + len, b'x');
    buf.extend_from_slice(b"\r\n");
    buf
}

/// Parses one request and checks it is a whole one (so a regression that turned it into
/// an error would not go unnoticed as a "fast" bench).
fn parse_one(buf: &[u8]) -> usize {
    match parse(black_box(buf), &LIMITS) {
        Parse::Request(cmd, used) => {
            black_box(&cmd);
            used
        }
        other => panic!("expected a request, got {other:?}"),
    }
}

fn bench_parser(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");

    let get1 = b"get key:00000001\r\n".to_vec();
    g.bench_function("get_1_key", |b| b.iter(|| parse_one(&get1)));

    let mut get10 = b"get".to_vec();
    for i in 0..10 {
        get10.extend_from_slice(format!(" key:{i:08}").as_bytes());
    }
    get10.extend_from_slice(b"\r\n");
    // The keys are iterated lazily by the executor; walk them here too, as it would.
    g.bench_function("get_10_keys", |b| {
        b.iter(|| match parse(black_box(&get10), &LIMITS) {
            Parse::Request(Command::Get { keys, .. }, used) => {
                let mut n = 0;
                for k in keys {
                    black_box(k);
                    n += 1;
                }
                assert_eq!(n, 10);
                used
            }
            other => panic!("expected a get, got {other:?}"),
        })
    });

    let set100 = set_request("key:00000001", 100);
    g.bench_function("set_100B", |b| b.iter(|| parse_one(&set100)));

    let set16k = set_request("key:00000001", 16 << 10);
    g.bench_function("set_16KiB", |b| b.iter(|| parse_one(&set16k)));

    // The "need more bytes" path: a request line cut short, and a whole set line whose
    // 16 KiB data block has only half arrived (the line is parsed again on every read).
    let mut partial_line = get1.clone();
    partial_line.truncate(get1.len() - 4);
    let mut partial_data = set16k.clone();
    partial_data.truncate(set16k.len() / 2);
    for (name, buf) in [
        ("incomplete_line", &partial_line),
        ("incomplete_data_16KiB", &partial_data),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| match parse(black_box(buf), &LIMITS) {
                Parse::Incomplete | Parse::Partial(_) => {}
                other => panic!("expected Incomplete or Partial, got {other:?}"),
            })
        });
    }
    g.finish();

    // 100 requests back to back: 90 gets, 10 sets of 100 bytes.
    let mut pipe = Vec::new();
    for i in 0..100 {
        if i % 10 == 9 {
            pipe.extend_from_slice(&set_request(&format!("key:{i:08}"), 100));
        } else {
            pipe.extend_from_slice(format!("get key:{i:08}\r\n").as_bytes());
        }
    }
    let mut g = c.benchmark_group("parse_pipeline");
    g.throughput(Throughput::Elements(100));
    g.bench_function("100_mixed", |b| {
        b.iter(|| {
            let mut pos = 0;
            let mut n = 0u32;
            while pos < pipe.len() {
                pos += parse_one(&pipe[pos..]);
                n += 1;
            }
            assert_eq!(n, 100);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_parser
}
criterion_main!(benches);
