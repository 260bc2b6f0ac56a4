//! `hitratio --servers inproc`: a trace replayed on ferrocache's store in this process,
//! with no server and no socket.
//!
//! The store is built from the command line a server would get (`-m <mem> -t <threads>`
//! plus `--ferrocache-args`) through the server's own `store_config`, so it has the same
//! shards, limits and policy. The client is the benchmark's cache-aside client played
//! strictly in order (`--batch 1`): `get`; on a miss, `set` the key's value with its TTL.
//! The store's clock is moved by hand, one second per `--ttl-rate` requests, so TTLs
//! expire at the same request index as in a paced server replay. What it leaves out: the
//! server's background work (the expiry crawler; expired items are still reclaimed when
//! read or when their segment is evicted), and the connection buffers' memory (`rss` is
//! the store's own bytes: segments, index and ghost).
//!
//! It takes seconds where a server replay takes minutes, and gives the same answer for
//! the same trace every time: the tool for comparing eviction policies.

use crate::replay_row::Row;
use crate::trace::{push_key, value_of, value_pattern, Trace};
use ferrocache::config::{parse_args_as, Invocation};
use ferrocache::op::StoreOp;
use ferrocache::server::store_config;
use ferrocache::store::{Clock, Guard, NewItem, Store, StoreOutcome};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The name of this replay in tables and JSON.
pub const NAME: &str = "inproc";

/// Replays `trace` on a fresh in-process store configured as `ferrocache -m mem -t
/// threads <extra>`; `rate`: requests per second of store time.
pub fn replay(
    mem: usize,
    threads: usize,
    extra: &[String],
    trace: &Trace,
    rate: f64,
) -> Result<Row, String> {
    let mut argv: Vec<String> = vec![
        "-m".into(),
        mem.to_string(),
        "-t".into(),
        threads.to_string(),
    ];
    argv.extend(extra.iter().cloned());
    let cfg = match parse_args_as("ferrocache", &argv) {
        Invocation::Run(cfg) => cfg,
        Invocation::Exit { stderr, .. } => {
            return Err(format!("ferrocache {}: {}", argv.join(" "), stderr.trim()))
        }
    };
    let clock = Arc::new(Clock::starting_at(1_700_000_000));
    let store = Store::new(store_config(&cfg), Arc::clone(&clock));
    let pat = value_pattern();
    let mut row = Row {
        server: NAME,
        requests: trace.reqs.len() as u64,
        ..Row::default()
    };
    let per_sec = rate.max(1.0) as u64;
    let mut last_set: HashMap<u32, u64> = HashMap::new();
    let mut key = Vec::with_capacity(16);
    let t0 = Instant::now();
    for (i, r) in trace.reqs.iter().enumerate() {
        let i = i as u64;
        if i > 0 && i % per_sec == 0 {
            clock.advance(1);
        }
        key.clear();
        push_key(&mut key, r.key);
        row.request_bytes += u64::from(r.vlen);
        let want = value_of(&pat, r);
        match store.get(&key, |it| it.value == want) {
            Ok(true) => {
                if r.first {
                    row.first_hits += 1;
                }
                continue;
            }
            Ok(false) => return Err(format!("wrong value for {}", String::from_utf8_lossy(&key))),
            Err(_) => {}
        }
        row.misses += 1;
        row.miss_bytes += u64::from(r.vlen);
        let now_s = i / per_sec;
        if r.first {
            row.first_misses += 1;
        } else if r.ttl > 0
            && last_set
                .get(&r.key)
                .is_some_and(|&s| now_s + 1 >= s + u64::from(r.ttl))
        {
            row.expired_misses += 1;
        }
        if r.ttl > 0 {
            last_set.insert(r.key, now_s);
        }
        let item = NewItem::new(0, i64::from(r.ttl), want);
        if store.store(StoreOp::Set, &key, item, Guard::NONE).0 != StoreOutcome::Stored {
            row.set_failures += 1;
        }
    }
    let st = store.stats();
    row.elapsed = t0.elapsed().as_secs_f64();
    row.cpu = row.elapsed;
    row.evictions = st.evictions;
    row.curr_items = st.curr_items;
    row.bytes = st.bytes;
    row.total_malloced = st.total_malloced;
    row.rss = st.total_malloced + st.hash_bytes;
    Ok(row)
}
