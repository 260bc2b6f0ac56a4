//! Item store micro-benchmarks (`ferrocache::store::Store`), without sockets.
//!
//! Run with `cargo bench --bench store`. Figures are time per store operation; the
//! `store_mt` group runs 2 threads at once and counts one operation per thread per
//! iteration (criterion's time is then wall time per pair of operations, and its
//! throughput line is total operations/s). Values are 100 bytes; a get copies the value
//! out under the shard lock, as the server does into a write buffer.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocache::store::{
    Clock, DeleteOutcome, Delta, DeltaOutcome, Guard, Miss, NewItem, Store, StoreConfig, StoreOp,
    StoreOutcome,
};

mod common;

/// Keys in the warm key set (a power of two, so the cursor wraps with a mask).
const KEYS: usize = 1 << 14;
/// Value size for every bench.
const VALUE_LEN: usize = 100;
/// Memory limit of the stores that are not meant to evict.
const BIG: usize = 256 << 20;
/// Memory limit of the eviction bench ...
const SMALL: usize = 8 << 20;
/// ... and its key space: about 4 times what fits in `SMALL` with 100-byte values.
const EVICT_KEYS: usize = 1 << 18;

fn new_store(mem_limit: usize) -> Store {
    Store::new(
        StoreConfig {
            mem_limit,
            ..StoreConfig::default()
        },
        Arc::new(Clock::new()),
    )
}

fn keys(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}:{i:08}").into_bytes())
        .collect()
}

fn set(store: &Store, key: &[u8], value: &[u8]) {
    let (r, _) = store.store(StoreOp::Set, key, NewItem::new(0, 0, value), Guard::NONE);
    assert_eq!(r, StoreOutcome::Stored);
}

/// A get that copies the value out, as the server's executor does.
fn get_copy(store: &Store, key: &[u8], out: &mut Vec<u8>) -> Result<(), Miss> {
    out.clear();
    store.get(key, |it| out.extend_from_slice(it.value))
}

/// A reproducible shuffled order of `0..n` (xorshift Fisher-Yates; no rand crate).
fn shuffled(n: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn bench_single(c: &mut Criterion) {
    let value = [b'v'; VALUE_LEN];
    let warm = keys("key", KEYS);
    let store = new_store(BIG);
    for k in &warm {
        set(&store, k, &value);
    }
    let mut out = Vec::with_capacity(VALUE_LEN);

    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));

    let mut i = 0;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) & (KEYS - 1);
            assert!(get_copy(&store, black_box(&warm[i]), &mut out).is_ok());
        })
    });

    let absent = keys("nokey", KEYS);
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            i = (i + 1) & (KEYS - 1);
            let r = get_copy(&store, black_box(&absent[i]), &mut out);
            assert_eq!(r, Err(Miss::Absent));
        })
    });

    g.bench_function("set_overwrite", |b| {
        b.iter(|| {
            i = (i + 1) & (KEYS - 1);
            set(&store, black_box(&warm[i]), &value);
        })
    });

    // New keys into a growing store (slabs are taken from the budget as it fills, no
    // eviction): every `NEW` sets start over with a fresh, empty store, made untimed.
    const NEW: usize = 100_000;
    let fresh = keys("new", NEW);
    g.bench_function("set_new_key", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(NEW);
                let s = new_store(BIG);
                let t = Instant::now();
                for k in &fresh[..n] {
                    set(&s, black_box(k), &value);
                }
                total += t.elapsed();
                drop(s);
                left -= n;
            }
            total
        })
    });

    // Deletes of present keys; the keys are stored again (untimed) between rounds.
    g.bench_function("delete", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(KEYS);
                let t = Instant::now();
                for k in &warm[..n] {
                    assert_eq!(store.delete(black_box(k), 0), DeleteOutcome::Deleted);
                }
                total += t.elapsed();
                for k in &warm[..n] {
                    set(&store, k, &value);
                }
                left -= n;
            }
            total
        })
    });

    // incr of a 10-digit counter: the new value fits in place (the common case).
    set(&store, b"counter", b"1000000000");
    g.bench_function("incr", |b| {
        b.iter(|| {
            let (r, _) = store.delta(black_box(b"counter"), Delta::Incr(1), 0);
            assert!(matches!(r, DeltaOutcome::Value(_)));
        })
    });

    // Sets in random order over a key space ~4x larger than an 8 MiB store holds, after
    // a warm-up fill: most sets are of an absent key and evict (CLOCK hand) to make room.
    let evict_keys = keys("ev", EVICT_KEYS);
    let order = shuffled(EVICT_KEYS);
    let small = new_store(SMALL);
    for k in &evict_keys {
        set(&small, k, &value);
    }
    let before = small.stats();
    let mut j = 0;
    g.bench_function("set_evicting", |b| {
        b.iter(|| {
            j = (j + 1) & (EVICT_KEYS - 1);
            set(&small, black_box(&evict_keys[order[j] as usize]), &value);
        })
    });
    let after = small.stats();
    let sets = after.total_items - before.total_items;
    if sets > 0 {
        println!(
            "store/set_evicting: {} items resident of {EVICT_KEYS} keys, {:.2} evictions per set",
            after.curr_items,
            (after.evictions - before.evictions) as f64 / sets as f64
        );
    }
    g.finish();
}

/// What the two threads of a `store_mt` bench touch.
#[derive(Clone, Copy)]
enum Keyspace {
    /// Each thread its own `KEYS` keys.
    Distinct,
    /// Both threads the same `KEYS` keys, from different starting points.
    Shared,
}

fn bench_threads(c: &mut Criterion) {
    const THREADS: usize = 2;
    let value = [b'v'; VALUE_LEN];
    let store = new_store(BIG);
    let sets: Vec<Vec<Vec<u8>>> = (0..THREADS).map(|t| keys(&format!("t{t}"), KEYS)).collect();
    for k in sets.iter().flatten() {
        set(&store, k, &value);
    }

    let mut g = c.benchmark_group("store_mt");
    // The 1-thread run is the same loop on one thread: the baseline the 2-thread
    // figures scale from, measured in the same run.
    for (name, threads, space) in [
        ("1_thread_get90_set10", 1, Keyspace::Distinct),
        (
            "2_threads_get90_set10_distinct",
            THREADS,
            Keyspace::Distinct,
        ),
        ("2_threads_get90_set10_shared", THREADS, Keyspace::Shared),
    ] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // Time from the first thread's start to the last thread's end, both
                // after a barrier, so thread spawning is not counted.
                let barrier = Barrier::new(threads);
                let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let (ks, start) = match space {
                                Keyspace::Distinct => (&sets[t], 0),
                                Keyspace::Shared => (&sets[0], t * KEYS / threads),
                            };
                            let (store, barrier, value) = (&store, &barrier, &value);
                            s.spawn(move || {
                                let mut out = Vec::with_capacity(VALUE_LEN);
                                barrier.wait();
                                let t0 = Instant::now();
                                for n in 0..iters as usize {
                                    let k = &ks[(start + n) & (KEYS - 1)];
                                    if n % 10 == 9 {
                                        set(store, black_box(k), value);
                                    } else {
                                        assert!(get_copy(store, black_box(k), &mut out).is_ok());
                                    }
                                }
                                (t0, Instant::now())
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                        .collect()
                });
                let first = spans.iter().map(|s| s.0).min();
                let last = spans.iter().map(|s| s.1).max();
                match (first, last) {
                    (Some(a), Some(z)) => z - a,
                    _ => Duration::ZERO,
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_single, bench_threads
}
criterion_main!(benches);
