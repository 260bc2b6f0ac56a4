//! Micro-benchmarks of the request hot path, without sockets: parsing pipelined text
//! requests, and store get/set. Run with `cargo bench --bench hot_path`. Every loop is
//! bounded by a count; figures are printed as ns per operation. (The side-by-side
//! comparison with memcached is a separate, load-generator based benchmark.)

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use ferrocache::protocol::text::{parse, Limits, Parse};
use ferrocache::store::{Clock, Store, StoreConfig, StoreOp};

fn report(name: &str, ops: u64, start: Instant) {
    let ns = start.elapsed().as_nanos() as f64 / ops as f64;
    println!("{name:<32} {ns:>8.1} ns/op  ({ops} ops)");
}

fn bench_parse() {
    let mut buf = Vec::new();
    for i in 0..1000 {
        if i % 10 == 0 {
            buf.extend_from_slice(format!("set key:{i:08} 0 0 100\r\n").as_bytes());
            buf.extend_from_slice(&[b'x'; 100]);
            buf.extend_from_slice(b"\r\n");
        } else {
            buf.extend_from_slice(format!("get key:{i:08}\r\n").as_bytes());
        }
    }
    let limits = Limits {
        item_size_max: 1 << 20,
        cas_enabled: true,
    };
    let rounds = 2000u64;
    let start = Instant::now();
    let mut n = 0u64;
    for _ in 0..rounds {
        let mut pos = 0;
        while pos < buf.len() {
            match parse(black_box(&buf[pos..]), &limits) {
                Parse::Request(cmd, used) => {
                    black_box(&cmd);
                    pos += used;
                    n += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    report("parse (90% get / 10% set)", n, start);
}

fn bench_store() {
    let store = Store::new(
        StoreConfig {
            mem_limit: 256 << 20,
            ..StoreConfig::default()
        },
        Arc::new(Clock::new()),
    );
    let keys: Vec<Vec<u8>> = (0..100_000)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    let value = [b'v'; 100];
    let start = Instant::now();
    for k in &keys {
        store.store(StoreOp::Set, k, 0, 0, &value);
    }
    report("store set (100 B)", keys.len() as u64, start);
    let mut out = Vec::with_capacity(256);
    let rounds = 10u64;
    let start = Instant::now();
    for _ in 0..rounds {
        for k in &keys {
            out.clear();
            let _ = store.get(k, |it| out.extend_from_slice(it.value));
            black_box(&out);
        }
    }
    report("store get hit (100 B)", rounds * keys.len() as u64, start);
}

fn main() {
    bench_parse();
    bench_store();
}
