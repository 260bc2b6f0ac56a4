//! Hit ratio under memory pressure, side by side with memcached 1.6.18: the same
//! cache-aside trace (get; on a miss, set) replayed against both at `-m 8`, with
//! Zipf-popular keys and values of several sizes. ferrocache must keep at least as many
//! items and miss no more often. (The full sweep over sizes and workload shapes is a
//! benchmark: `ferrocache-bench hitratio`, figures in BENCHMARKS.md.)
use crate::common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// xorshift64*: the trace's random source.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Value size of key `k`: 150..500 B, the same for every request of the key. (Six of
/// memcached's slab classes: with more, memcached gives each class its first 1 MiB page
/// even beyond `-m 8` and the comparison is no longer at equal memory.)
fn value_len(k: u64) -> usize {
    150 + ((k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 350) as usize
}

/// The keys of the trace: `n` requests, Zipf(`alpha`) over `keys` keys.
fn trace(n: usize, keys: usize, alpha: f64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(keys);
    let mut sum = 0.0;
    for i in 1..=keys {
        sum += 1.0 / (i as f64).powf(alpha);
        cdf.push(sum);
    }
    let mut rng = Rng(0x05EE_D0FC_AC4E);
    (0..n)
        .map(|_| {
            let u = rng.unit() * sum;
            cdf.partition_point(|&c| c < u).min(keys - 1) as u64
        })
        .collect()
}

/// Replays `keys` as cache-aside in batches: one multi-get of the batch, then a
/// `set ... noreply` of every key that missed (a key repeated within a batch is asked
/// once). Returns (misses, curr_items).
fn replay(port: u16, keys: &[u64]) -> (usize, u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let value = vec![b'v'; 1000];
    let mut misses = 0;
    let mut buf = vec![0u8; 1 << 16];
    for batch in keys.chunks(64) {
        let mut uniq: Vec<u64> = Vec::with_capacity(batch.len());
        for &k in batch {
            if !uniq.contains(&k) {
                uniq.push(k);
            }
        }
        let mut req = b"get".to_vec();
        for k in &uniq {
            req.extend_from_slice(format!(" h:{k}").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        s.write_all(&req).expect("send");
        let mut got = Vec::new();
        while !got.ends_with(b"END\r\n") {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        let hit: std::collections::HashSet<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("VALUE h:"))
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .collect();
        let mut sets = Vec::new();
        for &k in batch {
            if !hit.contains(&k) {
                misses += 1;
            }
        }
        for k in uniq.iter().filter(|k| !hit.contains(k)) {
            let len = value_len(*k);
            sets.extend_from_slice(format!("set h:{k} 0 0 {len} noreply\r\n").as_bytes());
            sets.extend_from_slice(&value[..len]);
            sets.extend_from_slice(b"\r\n");
        }
        s.write_all(&sets).expect("send sets");
    }
    s.write_all(b"stats\r\n").expect("stats");
    let mut got = Vec::new();
    while !got.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    let items = String::from_utf8_lossy(&got)
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_items "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (misses, items)
}

#[test]
fn at_m8_ferrocache_keeps_more_items_and_misses_less_than_memcached() {
    if targeting_reference() {
        return;
    }
    let keys = trace(300_000, 300_000, 0.9);
    let Some(mc) = Server::memcached(&["-m", "8", "-t", "2"]) else {
        return;
    };
    let (mc_miss, mc_items) = replay(mc.port, &keys);
    drop(mc);
    let fc = Server::ferrocache(&["-m", "8", "-t", "2"]);
    let (fc_miss, fc_items) = replay(fc.port, &keys);
    let first = {
        let mut seen = std::collections::HashSet::new();
        keys.iter().filter(|k| seen.insert(**k)).count()
    };
    let n = keys.len() as f64;
    eprintln!(
        "-m 8, Zipf(0.9), 150..500 B: memcached misses {:.4} (avoidable {:.4}), {mc_items} items; \
         ferrocache {:.4} (avoidable {:.4}), {fc_items} items",
        mc_miss as f64 / n,
        (mc_miss - first) as f64 / n,
        fc_miss as f64 / n,
        (fc_miss - first) as f64 / n,
    );
    assert!(
        fc_items >= mc_items,
        "items: ferrocache {fc_items}, memcached {mc_items}"
    );
    assert!(
        fc_miss <= mc_miss,
        "misses: ferrocache {fc_miss}, memcached {mc_miss}"
    );
}
