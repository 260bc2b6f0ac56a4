//! `dbload` subcommand: the load a cache takes off a database. N application threads
//! (Zipf-popular reads, a share of updates) run against the database with no cache,
//! with memcached 1.6.18 and with ferrocache (same `-m`, same `-t`), through each
//! caching pattern asked for; per run the database queries per second, the share of
//! reads answered without the database, the application's p50/p99 per request, and
//! the stale reads.
//!
//! The application is `examples/db_cache` (`db_cache load`, its `load.rs` documents
//! the accounting), run as a child process per measurement: the database drivers
//! (rusqlite, postgres) are dev-dependencies of the crate, which a `[[bin]]` cannot
//! use, and making them (optional) dependencies would give the server build a
//! feature to compile and test apart. So this tool starts the servers, runs the
//! application against each, reads its JSON line and prints the table; the example
//! is built with `cargo build --release --example db_cache` (or any `cargo test`).
//! The database is a SQLite file (default) or PostgreSQL (`--db postgres:...`).
//! Loopback only; every run is bounded by `--duration` (at most 600 s) and
//! `--max-requests`.

use std::process::{Command, Stdio};

use crate::servers::{Kind, ServerProc};

/// Command line of `dbload`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The database: `sqlite:<path>` or `postgres:<connection string>` (default: a
    /// fresh SQLite file per run in a temporary directory).
    #[arg(long)]
    pub db: Option<String>,
    /// Application threads.
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// Items.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Zipf exponent.
    #[arg(long, default_value_t = 0.99)]
    pub zipf: f64,
    /// Share of requests that update their item.
    #[arg(long, default_value_t = 0.05)]
    pub write_share: f64,
    /// Every N-th id has no row (0: none).
    #[arg(long, default_value_t = 20)]
    pub absent_every: u64,
    /// TTL of cached rows, seconds (short enough that a run can see reads stale
    /// beyond it).
    #[arg(long, default_value_t = 5)]
    pub ttl: u32,
    /// Caching patterns run against each server (comma list of naive, naive-set,
    /// lease, lease-stale, write-through).
    #[arg(long, default_value = "naive,lease")]
    pub patterns: String,
    /// Seconds measured per run (at most 600).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Requests measured per run, at most.
    #[arg(long, default_value_t = 5_000_000)]
    pub max_requests: u64,
    /// Rounds (every configuration once per round, in turns); medians are printed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// `-m` of both servers (MiB).
    #[arg(long, default_value_t = 64)]
    pub memory: usize,
    /// `-t` of both servers.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// The application (default: `examples/db_cache` beside this binary, or
    /// `$DB_CACHE_APP`).
    #[arg(long)]
    pub app: Option<String>,
}

/// One measurement, as the application reported it.
#[derive(Debug, Clone, Default)]
struct Run {
    db_qps: f64,
    offload: f64,
    p50_us: f64,
    p99_us: f64,
    requests_per_s: f64,
    queries_per_request: f64,
    stale: f64,
    stale_beyond_ttl: f64,
    cache_errors: f64,
}

fn json_num(json: &str, name: &str) -> Result<f64, String> {
    let pat = format!("\"{name}\":");
    let at = json
        .find(&pat)
        .ok_or_else(|| format!("no {name} in {json}"))?
        + pat.len();
    let num: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | '+'))
        .collect();
    num.parse().map_err(|_| format!("bad {name} in {json}"))
}

fn app_path(a: &Args) -> Result<String, String> {
    if let Some(p) = a.app.clone().or_else(|| std::env::var("DB_CACHE_APP").ok()) {
        return Ok(p);
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let p = exe
        .parent()
        .map(|d| d.join("examples").join("db_cache"))
        .ok_or("no directory")?;
    if !p.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release --example db_cache`",
            p.display()
        ));
    }
    Ok(p.display().to_string())
}

/// Runs the application once: `pattern` against `servers` (None: no cache).
fn measure(a: &Args, app: &str, servers: Option<&str>, pattern: &str) -> Result<Run, String> {
    let mut cmd = Command::new(app);
    cmd.arg("load")
        .args(["--pattern", pattern])
        .args(["--threads", &a.threads.to_string()])
        .args(["--keys", &a.keys.to_string()])
        .args(["--zipf", &a.zipf.to_string()])
        .args(["--write-share", &a.write_share.to_string()])
        .args(["--absent-every", &a.absent_every.to_string()])
        .args(["--ttl", &a.ttl.to_string()])
        .args(["--duration", &a.duration.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .args(["--max-requests", &a.max_requests.to_string()])
        .arg("--json")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(s) = servers {
        cmd.args(["--servers", s]);
    }
    if let Some(db) = &a.db {
        cmd.args(["--db", db]);
    }
    let out = cmd.output().map_err(|e| format!("{app}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{app} load --pattern {pattern}: {}", out.status));
    }
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no JSON from {app}: {text}"))?;
    let elapsed = json_num(line, "elapsed_s")?.max(1e-9);
    Ok(Run {
        db_qps: json_num(line, "db_qps")?,
        offload: json_num(line, "offload")?,
        p50_us: json_num(line, "p50_us")?,
        p99_us: json_num(line, "p99_us")?,
        requests_per_s: json_num(line, "requests")? / elapsed,
        queries_per_request: json_num(line, "db_queries")? / json_num(line, "requests")?.max(1.0),
        stale: json_num(line, "stale")?,
        stale_beyond_ttl: json_num(line, "stale_beyond_ttl")?,
        cache_errors: json_num(line, "cache_errors")?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `dbload`.
pub fn main(a: Args) -> Result<(), String> {
    if !(0.0..=600.0).contains(&a.duration) || !(0.0..=600.0).contains(&a.warmup) {
        return Err("--duration and --warmup: 0 to 600 seconds".into());
    }
    if a.rounds == 0 || a.rounds > 20 {
        return Err("--rounds: 1 to 20".into());
    }
    let patterns: Vec<&str> = a.patterns.split(',').filter(|p| !p.is_empty()).collect();
    for p in &patterns {
        if ![
            "naive",
            "naive-set",
            "lease",
            "lease-stale",
            "write-through",
        ]
        .contains(p)
        {
            return Err(format!("unknown pattern {p}"));
        }
    }
    let app = app_path(&a)?;
    let memcached = ServerProc::start(Kind::Memcached, a.server_threads, a.memory, &[], None)?;
    let ferrocache = ServerProc::start(Kind::Ferrocache, a.server_threads, a.memory, &[], None)?;
    let mut configs: Vec<(String, Option<String>, &str)> = vec![("none".into(), None, "none")];
    for (kind, srv) in [
        (Kind::Memcached, &memcached),
        (Kind::Ferrocache, &ferrocache),
    ] {
        for p in &patterns {
            configs.push((kind.name().into(), Some(srv.addr.to_string()), p));
        }
    }
    let db_name = match &a.db {
        Some(d) if d.starts_with("postgres:") => "PostgreSQL",
        _ => "SQLite",
    };
    println!(
        "dbload: {} application threads, Zipf {} over {} ids (every {}th absent), {:.0} % updates, TTL {} s, \
         {db_name}; {} s measured after {} s warm-up per run, median of {} rounds; servers -m {} -t {}",
        a.threads,
        a.zipf,
        a.keys,
        a.absent_every,
        100.0 * a.write_share,
        a.ttl,
        a.duration,
        a.warmup,
        a.rounds,
        a.memory,
        a.server_threads
    );
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
    for round in 0..a.rounds {
        for (i, (server, addr, pattern)) in configs.iter().enumerate() {
            let r = measure(&a, &app, addr.as_deref(), pattern)?;
            eprintln!(
                "round {}: {server} {pattern}: {:.0} DB q/s, {:.1} % without DB, p50 {} us, p99 {} us",
                round + 1,
                r.db_qps,
                100.0 * r.offload,
                r.p50_us,
                r.p99_us
            );
            runs[i].push(r);
        }
    }
    println!(
        "| cache | pattern | DB queries/s | DB queries per request | reads without the DB | app p50 | app p99 | requests/s | stale reads | beyond the TTL | cache errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for ((server, _, pattern), rs) in configs.iter().zip(&runs) {
        let m = |f: fn(&Run) -> f64| median(rs.iter().map(f).collect());
        println!(
            "| {server} | {pattern} | {:.0} | {:.3} | {:.1} % | {:.0} µs | {:.0} µs | {:.0} | {:.0} | {:.0} | {:.0} |",
            m(|r| r.db_qps),
            m(|r| r.queries_per_request),
            100.0 * m(|r| r.offload),
            m(|r| r.p50_us),
            m(|r| r.p99_us),
            m(|r| r.requests_per_s),
            m(|r| r.stale),
            m(|r| r.stale_beyond_ttl),
            m(|r| r.cache_errors)
        );
    }
    drop(memcached);
    drop(ferrocache);
    Ok(())
}
