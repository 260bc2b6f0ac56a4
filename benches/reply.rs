//! Reply composition micro-benchmarks (`ferrocache::protocol::text::reply`): appending
//! replies to a connection's write buffer. The buffer is reused (cleared, capacity kept)
//! as a connection's is, so the figures are copy and formatting cost, not allocation.
//!
//! Run with `cargo bench --bench reply`. Figures are time per reply.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocache::protocol::text::reply;

mod common;

fn bench_reply(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply");
    let key = b"key:00000001";
    let mut out: Vec<u8> = Vec::with_capacity(64 << 10);

    for (name, len) in [("value_100B", 100usize), ("value_16KiB", 16 << 10)] {
        let data = vec![b'v'; len];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                reply::value(&mut out, black_box(key), 0, black_box(&data), None);
                black_box(&out);
            })
        });
    }

    // A `gets` hit: the header also carries a CAS unique.
    let data = vec![b'v'; 100];
    g.throughput(Throughput::Bytes(100));
    g.bench_function("value_100B_cas", |b| {
        b.iter(|| {
            out.clear();
            reply::value(
                &mut out,
                black_box(key),
                0,
                black_box(&data),
                Some(123_456_789),
            );
            black_box(&out);
        })
    });

    // incr/decr replies: a small and the longest (20-digit) number.
    g.throughput(Throughput::Elements(1));
    for (name, n) in [("number_small", 42u64), ("number_u64_max", u64::MAX)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                reply::number(&mut out, black_box(n));
                black_box(&out);
            })
        });
    }

    // The reply to a 10-key get with 100-byte values: 10 VALUE blocks and END.
    let keys: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("key:{i:08}").into_bytes())
        .collect();
    g.bench_function("get_10_keys_100B", |b| {
        b.iter(|| {
            out.clear();
            for k in &keys {
                reply::value(&mut out, black_box(k), 0, black_box(&data), None);
            }
            reply::end(&mut out);
            black_box(&out);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_reply
}
criterion_main!(benches);
