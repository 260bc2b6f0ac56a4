//! `hitratio` subcommand: cache-aside miss ratio over Zipf-popular keys, memcached
//! versus ferrocache, with the same small memory limit and the same request sequence.
//!
//! Request sequence: `--requests` key ranks drawn from Zipf(`--exponent`) over
//! `--keys` keys (precomputed CDF + binary search, SplitMix64 seeded by `--seed`), the
//! same for both servers. Key of rank r: `key:%08d` of r. Value size: a fixed function
//! of the key, uniform over 50..=2048 bytes by a hash of r; the content is a function of
//! r as well and every hit is checked.
//!
//! Client: cache-aside, `get`, and `set` on a miss. For speed the gets of a batch of
//! `--batch` requests are written at once, then the sets of that batch's misses are
//! written at once. Compared with a strict one-at-a-time client this changes the order
//! slightly: the sets of a batch land after all its gets, and a key requested again in
//! the same batch after a miss is counted as a hit (a sequential client would have stored
//! it in between); it is set once. Both servers see exactly the same sequence, so the
//! comparison is fair.

use crate::servers::{Kind, ServerProc};
use crate::textconn::{
    json_f64, json_str, mix64, ratio_str, stat_u64, Conn, ServerFlags, SplitMix64,
};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Smallest value size.
const MIN_VALUE: u64 = 50;
/// Largest value size.
const MAX_VALUE: u64 = 2048;

/// Options of `hitratio`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Requests (each a get, plus a set on a miss).
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Key space. The default, 2,000,000 keys of ~1.1 KB on average (~2.1 GB), is ~33x
    /// the 64 MiB limit, and the keys one run actually touches are still several times it.
    #[arg(long, default_value_t = 2_000_000)]
    keys: u64,
    /// Zipf exponent of key popularity.
    #[arg(long, default_value_t = 0.99)]
    exponent: f64,
    /// Server memory limit in MiB (`-m`).
    #[arg(long, default_value_t = 64)]
    mem: usize,
    /// Server worker threads (`-t`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seed of the request sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests per pipelined batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Longest allowed run per server, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Extra server flags.
    #[command(flatten)]
    flags: ServerFlags,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<String>,
}

/// Value size of the key of rank `r`.
fn value_size(r: u64) -> usize {
    (MIN_VALUE + mix64(r ^ 0x0123_4567_89ab_cdef) % (MAX_VALUE - MIN_VALUE + 1)) as usize
}

/// Value of the key of rank `r`.
fn value(r: u64, out: &mut Vec<u8>) {
    let n = value_size(r);
    out.clear();
    out.extend((0..n as u64).map(|j| b'a' + ((r.wrapping_mul(7).wrapping_add(j)) % 26) as u8));
}

fn key(r: u64) -> String {
    format!("key:{r:08}")
}

/// The request sequence (key ranks), drawn from Zipf(s) over `keys` keys.
fn sequence(keys: u64, s: f64, requests: u64, seed: u64) -> Vec<u32> {
    let mut cdf = Vec::with_capacity(keys as usize);
    let mut sum = 0.0f64;
    for r in 1..=keys {
        sum += (r as f64).powf(-s);
        cdf.push(sum);
    }
    for c in &mut cdf {
        *c /= sum;
    }
    let mut rng = SplitMix64::new(seed);
    let last = keys.saturating_sub(1) as usize;
    (0..requests)
        .map(|_| {
            let u = rng.next_f64();
            cdf.partition_point(|&c| c <= u).min(last) as u32
        })
        .collect()
}

/// One server's result.
struct Row {
    kind: Kind,
    misses: u64,
    requests: u64,
    set_failures: u64,
    server_get_misses: u64,
    evictions: u64,
    curr_items: u64,
    bytes: u64,
    rss: u64,
    cpu: Duration,
    elapsed: Duration,
}

impl Row {
    fn miss_ratio(&self) -> f64 {
        self.misses as f64 / self.requests.max(1) as f64
    }
}

/// Runs `hitratio`.
pub fn main(args: Args) -> Result<(), String> {
    if args.requests == 0 || args.keys == 0 || args.batch == 0 || args.threads == 0 {
        return Err("--requests, --keys, --batch and --threads must be positive".into());
    }
    if args.keys > u32::MAX as u64 {
        return Err("--keys: at most 4294967295".into());
    }
    if !(args.exponent.is_finite() && args.exponent >= 0.0) {
        return Err("--exponent: a finite number >= 0".into());
    }
    let seq = sequence(args.keys, args.exponent, args.requests, args.seed);
    // Distinct keys requested: their first request misses on any cache (the floor).
    let mut seen = vec![false; args.keys as usize];
    let mut distinct = 0u64;
    let mut distinct_bytes = 0u64;
    for &r in &seq {
        if let Some(s) = seen.get_mut(r as usize) {
            if !*s {
                *s = true;
                distinct += 1;
                distinct_bytes += value_size(r as u64) as u64 + key(r as u64).len() as u64;
            }
        }
    }
    drop(seen);

    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for kind in [Kind::Memcached, Kind::Ferrocache] {
        eprintln!(
            "hitratio: {} -t {} -m {} ({} requests)...",
            kind.name(),
            args.threads,
            args.mem,
            args.requests
        );
        match run(&args, kind, &seq) {
            Ok(r) => rows.push(r),
            Err(e) => errors.push(format!("{}: {e}", kind.name())),
        }
    }
    print_table(&args, &rows, distinct, distinct_bytes);
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&args, &rows, distinct, distinct_bytes))
            .map_err(|e| format!("write {path}: {e}"))?;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Plays `seq` against a fresh `kind`.
fn run(args: &Args, kind: Kind, seq: &[u32]) -> Result<Row, String> {
    let extra = args.flags.for_kind(kind);
    let server = ServerProc::start(kind, args.threads, args.mem, &extra, None)?;
    let mut c = Conn::connect(server.addr, Duration::from_secs(30))?;
    let cpu0 = server.cpu_time();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.timeout);
    let mut misses = 0u64;
    let mut set_failures = 0u64;
    let mut req = Vec::with_capacity(args.batch * 24);
    let mut sets = Vec::new();
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut want = Vec::new();
    let mut missed: HashSet<u32> = HashSet::new();
    let mut missed_order: Vec<u32> = Vec::new();
    let mut last_report = Instant::now();
    for (bi, batch) in seq.chunks(args.batch).enumerate() {
        if Instant::now() > deadline {
            return Err(format!(
                "not finished within {} s ({} of {} requests)",
                args.timeout,
                bi * args.batch,
                seq.len()
            ));
        }
        req.clear();
        for &r in batch {
            req.extend_from_slice(b"get ");
            req.extend_from_slice(key(r as u64).as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        c.send(&req)?;
        missed.clear();
        missed_order.clear();
        for &r in batch {
            c.read_line(&mut line)?;
            if line == b"END" {
                // A repeat within the batch after a miss: a sequential client would have
                // stored the key in between, so it counts as a hit.
                if missed.insert(r) {
                    misses += 1;
                    missed_order.push(r);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let f: Vec<&str> = text.split(' ').collect();
            let k = key(r as u64);
            let len = match (
                f.first(),
                f.get(1),
                f.get(3).and_then(|v| v.parse::<usize>().ok()),
            ) {
                (Some(&"VALUE"), Some(got), Some(len)) if f.len() == 4 && *got == k => len,
                _ => return Err(format!("unexpected reply to get {k}: {text:?}")),
            };
            c.read_exact(len + 2, &mut data)?;
            value(r as u64, &mut want);
            if !data.ends_with(b"\r\n") || data[..len] != want[..] {
                return Err(format!("wrong value for {k} ({len} bytes)"));
            }
            c.read_line(&mut line)?;
            if line != b"END" {
                return Err(format!(
                    "expected END after the value of {k}, got {:?}",
                    String::from_utf8_lossy(&line)
                ));
            }
        }
        if missed_order.is_empty() {
            continue;
        }
        sets.clear();
        for &r in &missed_order {
            value(r as u64, &mut want);
            sets.extend_from_slice(
                format!("set {} 0 0 {}\r\n", key(r as u64), want.len()).as_bytes(),
            );
            sets.extend_from_slice(&want);
            sets.extend_from_slice(b"\r\n");
        }
        c.send(&sets)?;
        for &r in &missed_order {
            c.read_line(&mut line)?;
            if line == b"STORED" {
                continue;
            }
            if line.starts_with(b"SERVER_ERROR") {
                set_failures += 1;
                continue;
            }
            return Err(format!(
                "unexpected reply to set {}: {:?}",
                key(r as u64),
                String::from_utf8_lossy(&line)
            ));
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "  {}/{} requests, miss ratio so far {:.4}",
                (bi + 1) * args.batch,
                seq.len(),
                misses as f64 / ((bi + 1) * args.batch) as f64
            );
        }
    }
    let elapsed = t0.elapsed();
    let st = c.stats()?;
    Ok(Row {
        kind,
        misses,
        requests: seq.len() as u64,
        set_failures,
        server_get_misses: stat_u64(&st, "get_misses"),
        evictions: stat_u64(&st, "evictions"),
        curr_items: stat_u64(&st, "curr_items"),
        bytes: stat_u64(&st, "bytes"),
        rss: server.rss_bytes(),
        cpu: server.cpu_time().saturating_sub(cpu0),
        elapsed,
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn print_table(args: &Args, rows: &[Row], distinct: u64, distinct_bytes: u64) {
    println!(
        "hitratio: cache-aside, Zipf({}) over {} keys, {} requests, seed {}, -m {} -t {}, values {}..{} B, batch {}",
        args.exponent,
        args.keys,
        args.requests,
        args.seed,
        args.mem,
        args.threads,
        MIN_VALUE,
        MAX_VALUE,
        args.batch
    );
    println!(
        "distinct keys requested: {distinct} ({:.1} MiB of keys+values); cold-miss floor {:.4}",
        mib(distinct_bytes),
        distinct as f64 / args.requests as f64
    );
    println!(
        "{:<11} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "server",
        "misses",
        "miss_ratio",
        "warm_miss",
        "evictions",
        "curr_items",
        "bytes_MiB",
        "rss_MiB",
        "set_fail",
        "cpu_s",
        "elapsed_s"
    );
    for r in rows {
        println!(
            "{:<11} {:>9} {:>10.4} {:>10.4} {:>10} {:>10} {:>9.1} {:>9.1} {:>9} {:>9.2} {:>9.2}",
            r.kind.name(),
            r.misses,
            r.miss_ratio(),
            warm_miss(r, distinct),
            r.evictions,
            r.curr_items,
            mib(r.bytes),
            mib(r.rss),
            r.set_failures,
            r.cpu.as_secs_f64(),
            r.elapsed.as_secs_f64()
        );
    }
    if let Some((m, f)) = pair(rows) {
        println!(
            "ratio ferrocache/memcached: miss_ratio {}  warm_miss {}",
            ratio_str(f.miss_ratio(), m.miss_ratio()),
            ratio_str(warm_miss(f, distinct), warm_miss(m, distinct))
        );
    }
}

/// Miss ratio once the cold misses (first request of each key) are taken out.
fn warm_miss(r: &Row, distinct: u64) -> f64 {
    r.misses.saturating_sub(distinct) as f64 / r.requests.saturating_sub(distinct).max(1) as f64
}

fn pair(rows: &[Row]) -> Option<(&Row, &Row)> {
    let m = rows.iter().find(|r| r.kind == Kind::Memcached)?;
    let f = rows.iter().find(|r| r.kind == Kind::Ferrocache)?;
    Some((m, f))
}

fn to_json(args: &Args, rows: &[Row], distinct: u64, distinct_bytes: u64) -> String {
    let mut s = String::from("{\n  \"benchmark\": \"hitratio\",\n");
    let _ = writeln!(
        s,
        "  \"requests\": {}, \"keys\": {}, \"exponent\": {}, \"seed\": {}, \"mem_mb\": {}, \"threads\": {}, \"batch\": {},",
        args.requests,
        args.keys,
        json_f64(args.exponent),
        args.seed,
        args.mem,
        args.threads,
        args.batch
    );
    let _ = writeln!(
        s,
        "  \"distinct_keys\": {distinct}, \"distinct_bytes\": {distinct_bytes}, \"cold_miss_floor\": {},",
        json_f64(distinct as f64 / args.requests as f64)
    );
    s.push_str("  \"servers\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"server\": {}, \"misses\": {}, \"miss_ratio\": {}, \"warm_miss_ratio\": {}, \
             \"evictions\": {}, \"curr_items\": {}, \"bytes\": {}, \"rss\": {}, \"set_failures\": {}, \
             \"server_get_misses\": {}, \"cpu_seconds\": {}, \"elapsed_seconds\": {}}}",
            json_str(r.kind.name()),
            r.misses,
            json_f64(r.miss_ratio()),
            json_f64(warm_miss(r, distinct)),
            r.evictions,
            r.curr_items,
            r.bytes,
            r.rss,
            r.set_failures,
            r.server_get_misses,
            json_f64(r.cpu.as_secs_f64()),
            json_f64(r.elapsed.as_secs_f64())
        );
        s.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ]");
    if let Some((m, f)) = pair(rows) {
        let _ = write!(
            s,
            ",\n  \"ratio_miss\": {}, \"ratio_warm_miss\": {}",
            json_f64(f.miss_ratio() / m.miss_ratio()),
            json_f64(warm_miss(f, distinct) / warm_miss(m, distinct))
        );
    }
    s.push_str("\n}\n");
    s
}
