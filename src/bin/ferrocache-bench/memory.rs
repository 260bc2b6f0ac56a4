//! `memory` subcommand: resident memory per stored item, memcached versus ferrocache.
//!
//! For each item count and each server (a fresh process each time, same `-t` and `-m`,
//! `-m` large enough that nothing is evicted): read VmRSS after one connection and a
//! `stats` (the baseline), store N items `key:%08d` with 100-byte values using pipelined
//! `set ... noreply` in batches that each end with `version` (a round trip, so the
//! server has processed the batch before the next one is sent), wait 1 s, read VmRSS and
//! `stats`, and check a few thousand random keys (every one must hit with its value).
//! Reported: (rss_after - rss_before) / items, rss_after / items, and the ferrocache /
//! memcached ratios.

use crate::servers::{Kind, ServerProc};
use crate::textconn::{json_f64, json_str, ratio_str, stat_u64, Conn, ServerFlags, SplitMix64};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `memory`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Item counts to measure (repeatable or comma separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000_000u64, 10_000_000])]
    items: Vec<u64>,
    /// Server worker threads (`-t`, the same for both servers).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Server memory limit in MiB (`-m`); 0 = automatic: max(1024, 400 bytes per item).
    #[arg(long, default_value_t = 0)]
    mem: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Client connections (one thread each) used for the fill.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Sets per batch (each batch ends with a `version` round trip).
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Random keys read back after the fill (all must hit with the right value).
    #[arg(long, default_value_t = 4000)]
    spot_check: usize,
    /// Longest allowed fill per server, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Extra server flags.
    #[command(flatten)]
    flags: ServerFlags,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<String>,
}

/// One server's measurement at one item count.
struct Row {
    kind: Kind,
    items: u64,
    mem_mb: usize,
    rss_before: u64,
    rss_after: u64,
    curr_items: u64,
    evictions: u64,
    fill: Duration,
    spot_hits: usize,
    spot_total: usize,
}

impl Row {
    fn delta_per_item(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.items.max(1) as f64
    }
    fn rss_per_item(&self) -> f64 {
        self.rss_after as f64 / self.items.max(1) as f64
    }
}

/// The key of item `i`.
fn key(i: u64) -> String {
    format!("key:{i:08}")
}

/// The value of item `i`: its number in 8 digits, then letters, `size` bytes in all.
fn value(i: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    let digits = format!("{i:08}");
    out.extend(digits.bytes().take(size));
    let mut j = out.len() as u64;
    while out.len() < size {
        out.push(b'a' + ((i.wrapping_add(j)) % 26) as u8);
        j += 1;
    }
}

/// Runs `memory`.
pub fn main(args: Args) -> Result<(), String> {
    if args.items.is_empty() || args.items.contains(&0) {
        return Err("--items: give one or more positive counts".into());
    }
    if args.threads == 0 || args.conns == 0 || args.batch == 0 {
        return Err("--threads, --conns and --batch must be positive".into());
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for &n in &args.items {
        let mem_mb = if args.mem > 0 {
            args.mem
        } else {
            ((n * 400).div_ceil(1 << 20) as usize).max(1024)
        };
        for kind in [Kind::Memcached, Kind::Ferrocache] {
            eprintln!(
                "memory: {} items={n} -t {} -m {mem_mb} ...",
                kind.name(),
                args.threads
            );
            match measure(&args, kind, n, mem_mb) {
                Ok(r) => {
                    if r.evictions > 0 || r.curr_items != n {
                        errors.push(format!(
                            "{} at {n} items: curr_items={} evictions={} (raise --mem?)",
                            kind.name(),
                            r.curr_items,
                            r.evictions
                        ));
                    }
                    if r.spot_hits != r.spot_total {
                        errors.push(format!(
                            "{} at {n} items: spot check {}/{} keys hit with the right value",
                            kind.name(),
                            r.spot_hits,
                            r.spot_total
                        ));
                    }
                    rows.push(r);
                }
                Err(e) => errors.push(format!("{} at {n} items: {e}", kind.name())),
            }
        }
    }
    print_table(&args, &rows);
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&args, &rows)).map_err(|e| format!("write {path}: {e}"))?;
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Starts a fresh `kind`, fills it with `n` items and measures.
fn measure(args: &Args, kind: Kind, n: u64, mem_mb: usize) -> Result<Row, String> {
    let extra = args.flags.for_kind(kind);
    let server = ServerProc::start(kind, args.threads, mem_mb, &extra, None)?;
    let io = Duration::from_secs(30);
    let mut c = Conn::connect(server.addr, io)?;
    c.stats()?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = server.rss_bytes();
    if rss_before == 0 {
        return Err(format!("cannot read VmRSS of pid {}", server.pid()));
    }

    let t0 = Instant::now();
    fill(args, server.addr, n)?;
    let fill_time = t0.elapsed();

    std::thread::sleep(Duration::from_secs(1));
    let rss_after = server.rss_bytes();
    let st = c.stats()?;
    let (spot_hits, spot_total) = spot_check(&mut c, n, args.value_size, args.spot_check)?;
    Ok(Row {
        kind,
        items: n,
        mem_mb,
        rss_before,
        rss_after,
        curr_items: stat_u64(&st, "curr_items"),
        evictions: stat_u64(&st, "evictions"),
        fill: fill_time,
        spot_hits,
        spot_total,
    })
}

/// Stores items 0..n over `args.conns` connections, each taking contiguous batches from
/// a shared counter. Fails when the fill takes longer than `--timeout` or a connection
/// makes no progress for 30 s.
fn fill(args: &Args, addr: std::net::SocketAddr, n: u64) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let batch = args.batch as u64;
    let vsize = args.value_size;
    let timeout_s = args.timeout;
    let mut handles = Vec::new();
    for _ in 0..args.conns.min(n.div_ceil(batch) as usize).max(1) {
        let (next, done, stop) = (next.clone(), done.clone(), stop.clone());
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let mut c = Conn::connect(addr, Duration::from_secs(30))?;
            let mut buf: Vec<u8> = Vec::with_capacity(batch as usize * (vsize + 48) + 16);
            let mut val = Vec::with_capacity(vsize);
            let mut line = Vec::new();
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!("fill not finished within {timeout_s} s"));
                }
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= n {
                    return Ok(());
                }
                let end = (start + batch).min(n);
                buf.clear();
                for i in start..end {
                    value(i, vsize, &mut val);
                    buf.extend_from_slice(
                        format!("set {} 0 0 {vsize} noreply\r\n", key(i)).as_bytes(),
                    );
                    buf.extend_from_slice(&val);
                    buf.extend_from_slice(b"\r\n");
                }
                buf.extend_from_slice(b"version\r\n");
                c.send(&buf)?;
                c.read_line(&mut line)?;
                if !line.starts_with(b"VERSION ") {
                    return Err(format!(
                        "unexpected reply during the fill: {:?}",
                        String::from_utf8_lossy(&line)
                    ));
                }
                done.fetch_add(end - start, Ordering::Relaxed);
            }
        }));
    }
    // Progress on stderr; flag a stall or the time limit to the fill threads.
    let t0 = Instant::now();
    let mut last = (0u64, Instant::now());
    let mut failure: Option<String> = None;
    while handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        let d = done.load(Ordering::Relaxed);
        if d != last.0 {
            last = (d, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) && failure.is_none() {
            failure = Some(format!(
                "fill stalled at {d}/{n} items (no progress for 30 s)"
            ));
            stop.store(true, Ordering::Relaxed);
        }
        if Instant::now() > deadline + Duration::from_secs(35) && failure.is_none() {
            failure = Some(format!("fill not finished within {} s", args.timeout));
            stop.store(true, Ordering::Relaxed);
        }
        if t0.elapsed().as_millis() % 5000 < 200 && t0.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "  {d}/{n} items, {:.0}/s",
                d as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert("a fill thread panicked".into());
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let d = done.load(Ordering::Relaxed);
    if d != n {
        return Err(format!("fill stored {d} of {n} items"));
    }
    Ok(())
}

/// Reads back `count` random keys with multi-gets of 100 keys; returns (hits with the
/// right value, keys asked).
fn spot_check(c: &mut Conn, n: u64, vsize: usize, count: usize) -> Result<(usize, usize), String> {
    let mut rng = SplitMix64::new(0x5eed_0f59);
    let sample: Vec<u64> = (0..count).map(|_| rng.below(n)).collect();
    let mut hits = 0usize;
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut want = Vec::new();
    for chunk in sample.chunks(100) {
        let mut req = String::from("get");
        for &i in chunk {
            req.push(' ');
            req.push_str(&key(i));
        }
        req.push_str("\r\n");
        c.send(req.as_bytes())?;
        let mut got: HashMap<String, Vec<u8>> = HashMap::new();
        loop {
            c.read_line(&mut line)?;
            if line == b"END" {
                break;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let f: Vec<&str> = text.split(' ').collect();
            let len = match (f.first(), f.get(3).and_then(|v| v.parse::<usize>().ok())) {
                (Some(&"VALUE"), Some(len)) if f.len() == 4 => len,
                _ => return Err(format!("unexpected reply to get: {text:?}")),
            };
            c.read_exact(len + 2, &mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err("value not followed by CRLF".into());
            }
            data.truncate(len);
            got.insert(f[1].to_string(), data.clone());
        }
        for &i in chunk {
            value(i, vsize, &mut want);
            if got.get(&key(i)) == Some(&want) {
                hits += 1;
            }
        }
    }
    Ok((hits, sample.len()))
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn print_table(args: &Args, rows: &[Row]) {
    println!(
        "memory: key:%08d keys (12 B), {} B values, -t {}, fresh server per run",
        args.value_size, args.threads
    );
    println!(
        "{:>10}  {:<11} {:>6} {:>10} {:>10} {:>11} {:>10} {:>10} {:>9} {:>7} {:>10} {:>11}",
        "items",
        "server",
        "-m",
        "rss_before",
        "rss_after",
        "delta/item",
        "rss/item",
        "curr_items",
        "evictions",
        "fill_s",
        "fill/s",
        "spot_check"
    );
    for r in rows {
        println!(
            "{:>10}  {:<11} {:>6} {:>7.1}MiB {:>7.1}MiB {:>9.1} B {:>8.1} B {:>10} {:>9} {:>7.2} {:>10.0} {:>11}",
            r.items,
            r.kind.name(),
            r.mem_mb,
            mib(r.rss_before),
            mib(r.rss_after),
            r.delta_per_item(),
            r.rss_per_item(),
            r.curr_items,
            r.evictions,
            r.fill.as_secs_f64(),
            r.items as f64 / r.fill.as_secs_f64().max(1e-9),
            format!("{}/{}", r.spot_hits, r.spot_total)
        );
    }
    for (n, m, f) in pairs(args, rows) {
        println!(
            "{:>10}  ratio ferrocache/memcached: delta/item {}  rss/item {}",
            n,
            ratio_str(f.delta_per_item(), m.delta_per_item()),
            ratio_str(f.rss_per_item(), m.rss_per_item())
        );
    }
}

/// (items, memcached row, ferrocache row) for every item count measured on both.
fn pairs<'a>(args: &Args, rows: &'a [Row]) -> Vec<(u64, &'a Row, &'a Row)> {
    let mut out = Vec::new();
    for &n in &args.items {
        let m = rows
            .iter()
            .find(|r| r.items == n && r.kind == Kind::Memcached);
        let f = rows
            .iter()
            .find(|r| r.items == n && r.kind == Kind::Ferrocache);
        if let (Some(m), Some(f)) = (m, f) {
            out.push((n, m, f));
        }
    }
    out
}

fn to_json(args: &Args, rows: &[Row]) -> String {
    let mut s = String::from("{\n  \"benchmark\": \"memory\",\n");
    let _ = writeln!(
        s,
        "  \"threads\": {}, \"value_size\": {}, \"key_size\": 12,",
        args.threads, args.value_size
    );
    s.push_str("  \"runs\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"server\": {}, \"items\": {}, \"mem_mb\": {}, \"rss_before\": {}, \"rss_after\": {}, \
             \"delta_per_item\": {}, \"rss_per_item\": {}, \"curr_items\": {}, \"evictions\": {}, \
             \"fill_seconds\": {}, \"spot_hits\": {}, \"spot_total\": {}}}",
            json_str(r.kind.name()),
            r.items,
            r.mem_mb,
            r.rss_before,
            r.rss_after,
            json_f64(r.delta_per_item()),
            json_f64(r.rss_per_item()),
            r.curr_items,
            r.evictions,
            json_f64(r.fill.as_secs_f64()),
            r.spot_hits,
            r.spot_total
        );
        s.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ],\n  \"ratios\": [\n");
    let p = pairs(args, rows);
    for (i, (n, m, f)) in p.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"items\": {n}, \"delta_per_item\": {}, \"rss_per_item\": {}}}",
            json_f64(f.delta_per_item() / m.delta_per_item()),
            json_f64(f.rss_per_item() / m.rss_per_item())
        );
        s.push_str(if i + 1 < p.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ]\n}\n");
    s
}
