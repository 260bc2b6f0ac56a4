//! `insight` subcommand: how right `stats sizing` and `stats hotkeys` are (issue #17).
//!
//! For each workload (default `zipf0.99-wide,zipf1.2-wide`: Zipf keys, values 50 B..8 KiB
//! skewed small, see `trace.rs`) one deterministic trace is replayed as a cache-aside
//! client (multi-get of a batch of distinct keys; each miss then `set … noreply`) against
//! a fresh ferrocache at `--base` MiB (default 16), which reads `stats sizing` and
//! `stats hotkeys 10` at the end; then against fresh servers really run at each of
//! `--check` (default 32,64) MiB. Reported per workload:
//! - the miss ratio the client saw at each real size, the estimate the `--base` server
//!   made for that size (`sizing:<k>x:miss_ratio`, `k = size / base`), and the absolute
//!   error; the base size itself too (`1x` against the base run);
//! - hot-key recall: how many of the trace's true 10 most requested keys are among the
//!   10 the base server lists.
//!
//! Miss ratios are over the whole trace (compulsory misses included) on both sides:
//! the server's estimate counts every lookup since it started. Bounded: `--requests`
//! per run (default 1,000,000), `--timeout` seconds per run.

use crate::servers::{Kind, ServerProc};
use crate::textconn::{Conn, ServerFlags};
use crate::trace::{Req, Trace, Workload, MAX_VALUE};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Options of `insight`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workloads, comma separated (as `hitratio --workloads`).
    #[arg(long, default_value = "zipf0.99-wide,zipf1.2-wide")]
    workloads: String,
    /// Requests per run.
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Key space of every workload.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// The size (MiB) whose server estimates the others.
    #[arg(long, default_value_t = 16)]
    base: usize,
    /// Sizes (MiB) really run and compared with the estimates; each must be the base
    /// size times 0.25, 0.5, 1, 2, 4 or 8.
    #[arg(long, value_delimiter = ',', default_values_t = [32usize, 64])]
    check: Vec<usize>,
    /// Server worker threads (`-t`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the traces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct keys per pipelined multi-get at most.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Longest allowed replay per run, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Also print the ten keys the server listed (count, error, rate) and the trace's
    /// true top 12, on standard error.
    #[arg(long)]
    show_hot: bool,
    /// Extra server flags.
    #[command(flatten)]
    flags: ServerFlags,
}

/// One replay's result.
struct Run {
    misses: u64,
    requests: u64,
    stats: HashMap<String, String>,
}

impl Run {
    fn miss_ratio(&self) -> f64 {
        self.misses as f64 / self.requests.max(1) as f64
    }
}

/// Appends `key:%010d` of `id` (the hitratio traces' keys).
fn push_key(buf: &mut Vec<u8>, id: u32) {
    buf.extend_from_slice(format!("key:{id:010}").as_bytes());
}

/// `stats <group>` as name/value pairs.
fn stats_group(c: &mut Conn, group: &str) -> Result<HashMap<String, String>, String> {
    c.send(format!("stats {group}\r\n").as_bytes())?;
    let mut out = HashMap::new();
    let mut line = Vec::new();
    loop {
        c.read_line(&mut line)?;
        if line == b"END" {
            return Ok(out);
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        let mut f = text.splitn(3, ' ');
        match (f.next(), f.next(), f.next()) {
            (Some("STAT"), Some(k), Some(v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            _ => return Err(format!("stats {group}: unexpected line {text:?}")),
        }
    }
}

/// Replays `trace` cache-aside against a fresh ferrocache at `mem` MiB; with
/// `groups`, reads those stats groups at the end (merged into one map).
fn replay(args: &Args, trace: &Trace, mem: usize, groups: &[&str]) -> Result<Run, String> {
    let extra = args.flags.for_kind(Kind::Ferrocache);
    let server = ServerProc::start(Kind::Ferrocache, args.threads, mem, &extra, None)?;
    let mut c = Conn::connect(server.addr, Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let pat: Vec<u8> = (0..MAX_VALUE).map(|j| b'a' + (j % 26) as u8).collect();
    let mut run = Run {
        misses: 0,
        requests: 0,
        stats: HashMap::new(),
    };
    let mut out: Vec<u8> = Vec::with_capacity(args.batch * 64);
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut i = 0;
    let reqs = &trace.reqs;
    let mut in_batch: HashSet<u32> = HashSet::new();
    let mut batch: Vec<&Req> = Vec::with_capacity(args.batch);
    let mut hits: HashSet<Vec<u8>> = HashSet::new();
    while i < reqs.len() {
        if Instant::now() > deadline {
            return Err(format!("{}: -m {mem}: over --timeout", trace.name));
        }
        batch.clear();
        in_batch.clear();
        while i < reqs.len() && batch.len() < args.batch.max(1) && in_batch.insert(reqs[i].key) {
            batch.push(&reqs[i]);
            i += 1;
        }
        out.extend_from_slice(b"get");
        for r in &batch {
            out.push(b' ');
            push_key(&mut out, r.key);
        }
        out.extend_from_slice(b"\r\n");
        c.send(&out)?;
        out.clear();
        hits.clear();
        loop {
            c.read_line(&mut line)?;
            if line == b"END" {
                break;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let mut f = text.split(' ');
            let (Some("VALUE"), Some(k), Some(_), Some(n)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(format!("unexpected reply line {text:?}"));
            };
            let n: usize = n.parse().map_err(|_| format!("bad length in {text:?}"))?;
            c.read_exact(n + 2, &mut data)?;
            hits.insert(k.as_bytes().to_vec());
        }
        let mut key = Vec::with_capacity(16);
        for r in &batch {
            run.requests += 1;
            key.clear();
            push_key(&mut key, r.key);
            if hits.contains(&key) {
                continue;
            }
            run.misses += 1;
            out.extend_from_slice(b"set ");
            out.extend_from_slice(&key);
            out.extend_from_slice(format!(" 0 0 {} noreply\r\n", r.vlen).as_bytes());
            out.extend_from_slice(&pat[..r.vlen as usize]);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !out.is_empty() {
        c.send(&out)?;
    }
    for g in groups {
        run.stats.extend(stats_group(&mut c, g)?);
    }
    drop(c);
    drop(server);
    Ok(run)
}

/// The trace's `n` most requested keys (ties: the lower id first).
fn true_top(trace: &Trace, n: usize) -> Vec<u32> {
    let mut counts: HashMap<u32, u64> = HashMap::new();
    for r in &trace.reqs {
        *counts.entry(r.key).or_default() += 1;
    }
    let mut v: Vec<(u32, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().take(n).map(|(k, _)| k).collect()
}

/// The scale name (`2x`, ...) of `size` against `base`, if simulated.
fn scale_name(size: usize, base: usize) -> Option<&'static str> {
    let names = ["0.25x", "0.5x", "1x", "2x", "4x", "8x"];
    let scales = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
    let r = size as f64 / base as f64;
    scales
        .iter()
        .position(|&s| (s - r).abs() < 1e-9)
        .map(|i| names[i])
}

/// Runs `insight`.
pub fn main(args: Args) -> Result<(), String> {
    for &m in &args.check {
        if scale_name(m, args.base).is_none() {
            return Err(format!(
                "--check {m}: not 0.25, 0.5, 1, 2, 4 or 8 times --base {}",
                args.base
            ));
        }
    }
    let workloads = Workload::parse_list(&args.workloads, Some(args.keys))?;
    let mut worst = 0.0f64;
    for w in &workloads {
        let trace = w.generate(args.requests, args.seed)?;
        eprintln!("insight: {} at -m {} ...", trace.name, args.base);
        let base = replay(&args, &trace, args.base, &["sizing", "hotkeys 10"])?;
        let est = |name: &str| -> Option<f64> {
            base.stats
                .get(&format!("sizing:{name}:miss_ratio"))
                .and_then(|v| v.parse().ok())
        };
        println!(
            "{} ({}), {} requests",
            trace.name,
            trace.describe,
            trace.reqs.len()
        );
        println!(
            "  sizing: sample rate {}, {} sampled lookups of {}, {} sampled keys at 8x, {} bytes",
            base.stats.get("sizing_sample_rate").map_or("?", |s| s),
            base.stats.get("sizing_sampled_lookups").map_or("?", |s| s),
            base.stats.get("sizing_lookups").map_or("?", |s| s),
            base.stats.get("sizing_sampled_keys").map_or("?", |s| s),
            base.stats.get("sizing_memory").map_or("?", |s| s),
        );
        println!(
            "  {:>6}  {:>10}  {:>10}  {:>8}",
            "-m", "real", "estimate", "error"
        );
        let mut rows = vec![(args.base, base.miss_ratio())];
        for &m in &args.check {
            eprintln!("insight: {} at -m {m} ...", trace.name);
            let r = replay(&args, &trace, m, &[])?;
            rows.push((m, r.miss_ratio()));
        }
        for (m, real) in rows {
            let name = scale_name(m, args.base).unwrap_or("?");
            match est(name) {
                Some(e) => {
                    let err = (e - real).abs();
                    if m != args.base {
                        worst = worst.max(err);
                    }
                    println!(
                        "  {m:>6}  {real:>10.4}  {e:>10.4}  {err:>8.4}   ({name} of -m {})",
                        args.base
                    );
                }
                None => println!("  {m:>6}  {real:>10.4}  {:>10}", "n/a"),
            }
        }
        let top = true_top(&trace, 10);
        if args.show_hot {
            for r in 1..=10 {
                let g = |f: &str| {
                    base.stats
                        .get(&format!("hotkey:{r}:{f}"))
                        .cloned()
                        .unwrap_or_default()
                };
                eprintln!(
                    "listed {r}: {} count {} error {} rate {}",
                    g("key"),
                    g("count"),
                    g("error"),
                    g("rate")
                );
            }
            eprintln!("true: {:?}", true_top(&trace, 12));
        }
        let listed: HashSet<String> = (1..=10)
            .filter_map(|r| base.stats.get(&format!("hotkey:{r}:key")).cloned())
            .collect();
        let missing: Vec<usize> = top
            .iter()
            .enumerate()
            .filter(|(_, &k)| !listed.contains(&format!("key:{k:010}")))
            .map(|(r, _)| r + 1)
            .collect();
        println!(
            "  hot keys: {}/10 of the true top 10 in stats hotkeys 10 (true ranks missed: {missing:?}; sketches {} bytes)",
            10 - missing.len(),
            base.stats.get("hotkeys_memory").map_or("?", |s| s)
        );
    }
    println!("worst sizing error at the checked sizes: {worst:.4}");
    Ok(())
}
