//! `compare`: memcached and ferrocache side by side. Both servers are started with the
//! same `-t` and `-m` on 127.0.0.1, pinned to one core while this process (the load
//! generator) is pinned to another, and every selected workload runs on both in turns
//! (memcached, ferrocache, memcached, ...). Per workload: medians of ops/s, p50, p99,
//! p99.9 and server CPU time per operation for both, their ratios (ferrocache /
//! memcached), and server RSS; then one summary of the ratios against the targets.
//!
//! With `--tls` both servers run with `-Z` (memcached's TLS flags, a certificate made
//! with `openssl` at run time unless `--cert/--key` are given), every connection of
//! the load generator is a rustls client, workload (b) also runs on ferrocache without
//! TLS (its own TCP baseline), workload `h` measures full handshakes, workload `g` the
//! gets of established connections while a handshake flood of a fixed rate runs (the
//! same offered flood for both servers), and the summary holds the TLS targets.
//!
//! Servers are fresh per workload, not per round: a restart per round would repeat the
//! preload (up to 160 MB in (d)) for every round and throw away the state (e) needs to
//! reach eviction steady state, while both servers still get the same history.

use crate::cpu::{own_cpu_time, two_cpus};
use crate::load::{self, Established, LoadConfig, LoadResult};
use crate::servers::{self, Kind, ServerProc};
use crate::textconn::{json_str, ServerFlags};
use crate::tls::TlsSetup;
use crate::wire::Protocol;
use std::fmt::Write as _;
use std::time::Duration;

/// Options of `compare`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workloads to run, comma-separated, from a,b,c,d,e,f and (with --tls) h, g
    /// [default: a,b,c,d,e,f; with --tls: a,b,h,g].
    #[arg(long)]
    pub workloads: Option<String>,
    /// Server threads (-t for both servers).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Server memory in MB (-m for both; workload e always uses 64).
    #[arg(long, default_value_t = 1024)]
    pub mem: usize,
    /// Measured runs per server and workload (interleaved).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Warm-up seconds before each run.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Write every figure (rounds, medians, ratios, targets) as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Do not pin servers and load generator to separate cores.
    #[arg(long)]
    pub no_pin: bool,
    /// CI check: one round of 1 s, workloads a and b (and h with --tls), small key
    /// spaces. Fails only on errors, never on speed.
    #[arg(long)]
    pub smoke: bool,
    /// Both servers with TLS (-Z) and the load generator over TLS; adds workload h
    /// (handshakes) and ferrocache's plain TCP run of (b), and reports the TLS targets.
    #[arg(long)]
    pub tls: bool,
    /// Server certificate chain, PEM (with --tls; default: a self-signed certificate
    /// for localhost/127.0.0.1 made with openssl in a temporary directory).
    #[arg(long, requires = "tls", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// Server private key, PEM (with --cert).
    #[arg(long, requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    /// Certificates the load generator trusts, PEM (with --cert; default: --cert).
    #[arg(long, requires = "cert")]
    pub cacert: Option<std::path::PathBuf>,
    /// Name the servers' certificate must carry (with --tls).
    #[arg(long, requires = "tls", default_value = "localhost")]
    pub tls_name: String,
    /// Extra server flags per slot. With `MEMCACHED=<ferrocache binary>` two
    /// ferrocache configurations are compared: `--memcached-args "-o no_latency"
    /// --ferrocache-args "--metrics-listen 0"`.
    #[command(flatten)]
    pub flags: ServerFlags,
}

/// Connections of workload (h).
const H_CONNS: usize = 16;
/// Workload (g): established connections measured, the flood's handshakes a second
/// (what issue #24 measured against memcached -Z), and the flood's connection slots.
const G_CONNS: usize = 4;
const G_RATE: f64 = 1350.0;
const G_FLOOD_SLOTS: usize = 64;

/// Memory of workload (e), MiB.
const E_MEM_MB: usize = 64;
/// Value sizes of workload (e).
const E_VALUE: (usize, usize) = (100, 1000);

/// One workload: its name, description, and load configuration.
struct Workload {
    name: char,
    desc: String,
    mem_mb: usize,
    cfg: LoadConfig,
}

fn workload(name: char, addr: std::net::SocketAddr, smoke: bool) -> Result<Workload, String> {
    let mut c = LoadConfig::new(addr);
    // Defaults = (a): 50 connections, request/response, 90 % get, 10k keys, 100 B.
    c.conns = 50;
    c.pipeline = 1;
    c.get_ratio = 0.9;
    c.keys = 10_000;
    c.value_min = 100;
    c.value_max = 100;
    c.protocol = Protocol::Text;
    let mut mem_mb = 0; // 0 = --mem
    let desc: String = match name {
        'a' => "50 conns, request/response, 90% get / 10% set, 10k keys, 100 B values".into(),
        'b' => {
            c.conns = 10;
            c.pipeline = 16;
            c.get_ratio = 1.0;
            "pipelined gets: 10 conns x depth 16, 10k keys, 100 B values".into()
        }
        'c' => {
            c.get_ratio = 1.0;
            c.multiget = 10;
            "10-key multi-gets: 50 conns, 10k keys, 100 B values".into()
        }
        'd' => {
            c.value_min = 16 << 10;
            c.value_max = 16 << 10;
            "16 KiB values: 50 conns, 90% get / 10% set, 10k keys".into()
        }
        'e' => {
            mem_mb = E_MEM_MB;
            c.get_ratio = 0.5;
            c.value_min = E_VALUE.0;
            c.value_max = E_VALUE.1;
            // Items of ~(average value + 64 B of key and header): 10x what fits.
            let avg = (E_VALUE.0 + E_VALUE.1) / 2 + 64;
            c.keys = 10 * (E_MEM_MB as u64 * 1024 * 1024) / avg as u64;
            // Every key is set once before the rounds (about 10x the memory written):
            // the servers evict from the first measured second on, and the RSS read
            // at the end is that of a full cache.
            c.preload = true;
            format!(
                "evictions: -m {E_MEM_MB}, 50/50 get/set, {} keys (10x what fits), {}-{} B values, prefilled",
                c.keys, E_VALUE.0, E_VALUE.1
            )
        }
        'f' => {
            c.idle_conns = 1000;
            "1,000 idle connections beside 50 busy ones running (a)".into()
        }
        'h' => {
            c.conns = H_CONNS;
            c.preload = false;
            format!(
                "handshakes: {H_CONNS} conns, each in a loop: connect, full TLS handshake \
                 (no resumption), version, close"
            )
        }
        'g' => {
            c.conns = G_CONNS;
            c.get_ratio = 1.0;
            format!(
                "{G_CONNS} established conns, request/response gets, 10k keys, 100 B values, \
                 during a flood of {G_RATE} full TLS handshakes/s ({G_FLOOD_SLOTS} slots: \
                 connect, handshake, version, close)"
            )
        }
        other => {
            return Err(format!(
                "--workloads: unknown workload {other:?} (a..f, h, g)"
            ))
        }
    };
    let mut desc: String = desc;
    if smoke && name != 'h' {
        c.keys = c.keys.min(1000);
        desc.push_str(&format!(" (smoke: {} keys)", c.keys));
    }
    Ok(Workload {
        name,
        desc,
        mem_mb,
        cfg: c,
    })
}

/// One measured run on one server.
#[derive(Debug, Clone)]
struct Run {
    res: LoadResult,
    cpu_us_per_op: f64,
    /// CPU time of this process (the load generator) over the measured window, as a
    /// percentage of one core: near 100 when pinned means the generator is the limit.
    gen_cpu_pct: f64,
    /// Workload (g): handshakes a second the flood completed.
    flood_per_sec: Option<f64>,
}

/// Medians over the rounds of one server.
#[derive(Debug, Clone, Default)]
struct Medians {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    cpu_us_per_op: f64,
    gen_cpu_pct: f64,
    rss_mib: f64,
    errors: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn medians(runs: &[Run], rss: u64) -> Medians {
    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    Medians {
        ops_per_sec: m(&|r| r.res.ops_per_sec),
        p50_us: m(&|r| r.res.p50_us),
        p99_us: m(&|r| r.res.p99_us),
        p999_us: m(&|r| r.res.p999_us),
        cpu_us_per_op: m(&|r| r.cpu_us_per_op),
        gen_cpu_pct: m(&|r| r.gen_cpu_pct),
        rss_mib: rss as f64 / (1024.0 * 1024.0),
        errors: runs.iter().map(|r| r.res.errors).sum(),
    }
}

/// One server of a workload's rounds.
#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: Kind,
    /// Started with -Z and driven over TLS.
    tls: bool,
    /// Name in tables.
    label: &'static str,
    /// Key in the JSON report.
    key: &'static str,
}

/// The servers of workload `name`: memcached, then ferrocache (both -Z with --tls),
/// then with --tls for (b) ferrocache over plain TCP, its own baseline.
fn slots(tls: bool, name: char) -> Vec<Slot> {
    let s = |kind, tls, label, key| Slot {
        kind,
        tls,
        label,
        key,
    };
    if !tls {
        return vec![
            s(Kind::Memcached, false, "memcached", "memcached"),
            s(Kind::Ferrocache, false, "ferrocache", "ferrocache"),
        ];
    }
    let mut v = vec![
        s(Kind::Memcached, true, "memcached -Z", "memcached"),
        s(Kind::Ferrocache, true, "ferrocache -Z", "ferrocache"),
    ];
    if name == 'b' {
        v.push(s(
            Kind::Ferrocache,
            false,
            "ferrocache tcp",
            "ferrocache_tcp",
        ));
    }
    v
}

/// Results of one workload.
struct WorkloadResult {
    name: char,
    desc: String,
    mem_mb: usize,
    slots: Vec<Slot>,
    /// Per slot: the rounds, their medians, and (TLS) what the connection negotiated.
    runs: Vec<Vec<Run>>,
    med: Vec<Medians>,
    tls_params: Vec<Option<String>>,
}

impl WorkloadResult {
    /// ferrocache / memcached.
    fn ratio(&self, f: fn(&Medians) -> f64) -> f64 {
        ratio_of(f(&self.med[0]), f(&self.med[1]))
    }

    /// ferrocache -Z / ferrocache over plain TCP (None without that run).
    fn tls_over_tcp(&self, f: fn(&Medians) -> f64) -> Option<f64> {
        let tcp = self.med.get(2)?;
        Some(ratio_of(f(tcp), f(&self.med[1])))
    }
}

fn ratio_of(base: f64, x: f64) -> f64 {
    if base > 0.0 {
        x / base
    } else {
        f64::NAN
    }
}

/// The handshake flood of workload (g) beside `cfg`'s load: [`G_RATE`] a second
/// from [`G_FLOOD_SLOTS`] slots, over the load's warm-up and measured time.
fn flood_config(cfg: &LoadConfig) -> LoadConfig {
    let mut f = cfg.clone();
    f.conns = G_FLOOD_SLOTS;
    f.threads = 1;
    f.handshake_rate = G_RATE;
    f.warmup = Duration::ZERO;
    f.duration = cfg.warmup + cfg.duration;
    f.max_ops = None;
    f.progress = false;
    f
}

fn run_one(srv: &ServerProc, cfg: &LoadConfig, name: char) -> Result<Run, String> {
    let mut before = None;
    let mut hook = || before = Some((srv.cpu_time(), own_cpu_time(), std::time::Instant::now()));
    let flood = if name == 'g' {
        let f = flood_config(cfg);
        Some(
            std::thread::Builder::new()
                .name("flood".into())
                .spawn(move || crate::handshake::run_handshakes_with(&f, &mut || {}))
                .map_err(|e| format!("spawn: {e}"))?,
        )
    } else {
        None
    };
    let res = if name == 'h' {
        crate::handshake::run_handshakes_with(cfg, &mut hook)
    } else {
        load::run_load_with(cfg, &mut hook)
    };
    let flood_per_sec = match flood {
        Some(h) => Some(
            h.join()
                .map_err(|_| "the handshake flood panicked".to_string())?
                .map_err(|e| format!("handshake flood: {e}"))?
                .ops_per_sec,
        ),
        None => None,
    };
    let res = res?;
    let (after, own_after, end) = (srv.cpu_time(), own_cpu_time(), std::time::Instant::now());
    let (srv_before, own_before, start) = before.unwrap_or((after, own_after, end));
    let cpu = after.saturating_sub(srv_before);
    let cpu_us_per_op = if res.ops > 0 {
        cpu.as_secs_f64() * 1e6 / res.ops as f64
    } else {
        0.0
    };
    let wall = end.duration_since(start).as_secs_f64();
    let gen_cpu_pct = if wall > 0.0 {
        own_after.saturating_sub(own_before).as_secs_f64() / wall * 100.0
    } else {
        0.0
    };
    Ok(Run {
        res,
        cpu_us_per_op,
        gen_cpu_pct,
        flood_per_sec,
    })
}

fn run_workload(
    w: &Workload,
    a: &Args,
    rounds: usize,
    duration: Duration,
    warmup: Duration,
    server_cpus: Option<&str>,
    tls: Option<&TlsSetup>,
) -> Result<WorkloadResult, String> {
    let mem = if w.mem_mb > 0 { w.mem_mb } else { a.mem };
    let slots = slots(tls.is_some(), w.name);
    let tls_args = tls.map(TlsSetup::server_args).unwrap_or_default();
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let mut srv = Vec::new();
    for sl in &slots {
        let mut extra = a.flags.for_kind(sl.kind);
        srv.push(if sl.tls {
            extra.extend_from_slice(&tls_args);
            // The key is readable by root only: memcached must keep root to read it.
            ServerProc::start_as(sl.kind, a.threads, mem, &extra, server_cpus, "root")?
        } else {
            ServerProc::start(sl.kind, a.threads, mem, &extra, server_cpus)?
        });
    }
    println!(
        "\nworkload {}: {} [-t {} -m {}, {} x {:.1} s after {:.1} s warm-up]",
        w.name,
        w.desc,
        a.threads,
        mem,
        rounds,
        duration.as_secs_f64(),
        warmup.as_secs_f64()
    );
    // The configuration of slot i.
    let cfg_for = |i: usize| {
        let mut c = w.cfg.clone();
        c.server = srv[i].addr;
        c.tls = if slots[i].tls {
            tls.map(|t| t.client.clone())
        } else {
            None
        };
        c
    };
    let width = slots.iter().map(|s| s.label.len()).max().unwrap_or(10);
    let mut tls_params = Vec::new();
    for (i, sl) in slots.iter().enumerate() {
        let p = if sl.tls {
            match load::open(&cfg_for(i)).map_err(|e| format!("{}: {e}", sl.label))? {
                Established::Tls(_, conn) => Some(crate::tls::describe(&conn)),
                Established::Tcp(_) => None,
            }
        } else {
            None
        };
        if let Some(p) = &p {
            println!("  {:<width$}  negotiated {p}", sl.label);
        }
        tls_params.push(p);
    }
    if tls_params
        .iter()
        .flatten()
        .collect::<std::collections::HashSet<_>>()
        .len()
        > 1
    {
        println!(
            "  NOTE: the servers negotiated different TLS parameters; ratios compare them too"
        );
    }
    if w.cfg.preload {
        for (i, sl) in slots.iter().enumerate() {
            load::preload(&cfg_for(i)).map_err(|e| format!("{}: {e}", sl.label))?;
        }
    }
    let mut runs: Vec<Vec<Run>> = slots.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, sl) in slots.iter().enumerate() {
            let mut c = cfg_for(i);
            c.preload = false;
            c.duration = duration;
            c.warmup = warmup;
            c.seed = round as u64 + 1;
            c.progress = false;
            let r = run_one(&srv[i], &c, w.name).map_err(|e| format!("{}: {e}", sl.label))?;
            println!(
                "  round {} {:<width$} {:>9.0} ops/s  p50 {:.3}  p99 {:.3}  p99.9 {:.3} ms  \
                 srv cpu {:.2} us/op  gen core {:.0}%  hits {} misses {}  errors {}",
                round + 1,
                sl.label,
                r.res.ops_per_sec,
                r.res.p50_us / 1e3,
                r.res.p99_us / 1e3,
                r.res.p999_us / 1e3,
                r.cpu_us_per_op,
                r.gen_cpu_pct,
                r.res.hits,
                r.res.misses,
                r.res.errors
            );
            if let Some(e) = &r.res.first_error {
                println!("    first error: {e}");
            }
            if let Some(f) = r.flood_per_sec {
                println!("    flood: {f:.0} handshakes/s completed (offered {G_RATE})");
            }
            runs[i].push(r);
        }
    }
    let med = runs
        .iter()
        .zip(&srv)
        .map(|(r, s)| medians(r, s.rss_bytes()))
        .collect();
    drop(srv);
    let wr = WorkloadResult {
        name: w.name,
        desc: w.desc.clone(),
        mem_mb: mem,
        slots,
        runs,
        med,
        tls_params,
    };
    print_workload(&wr);
    Ok(wr)
}

/// A table row: label, field, scale, decimals.
type Row = (&'static str, fn(&Medians) -> f64, f64, usize);

fn print_workload(w: &WorkloadResult) {
    // Columns as wide as the plain comparison's unless the labels need more.
    let cw = w
        .slots
        .iter()
        .map(|s| s.label.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let mut head = format!("  {:<16}", format!("medians ({})", w.name));
    for sl in &w.slots {
        head.push_str(&format!(" {:>cw$}", sl.label));
    }
    head.push_str(&format!(" {:>8}", "ratio"));
    if w.med.len() > 2 {
        head.push_str(&format!(" {:>9}", "-Z / tcp"));
    }
    println!("{head}");
    let rows: [Row; 7] = [
        ("ops/s", |m| m.ops_per_sec, 1.0, 0),
        ("p50 ms", |m| m.p50_us, 1e-3, 3),
        ("p99 ms", |m| m.p99_us, 1e-3, 3),
        ("p99.9 ms", |m| m.p999_us, 1e-3, 3),
        ("srv cpu us/op", |m| m.cpu_us_per_op, 1.0, 2),
        ("srv RSS MiB", |m| m.rss_mib, 1.0, 1),
        ("gen core busy %", |m| m.gen_cpu_pct, 1.0, 0),
    ];
    for (label, f, scale, prec) in rows {
        let mut line = format!("  {label:<16}");
        for m in &w.med {
            line.push_str(&format!(" {:>cw$.prec$}", f(m) * scale));
        }
        line.push_str(&format!(" {:>8.2}", w.ratio(f)));
        if let Some(r) = w.tls_over_tcp(f) {
            line.push_str(&format!(" {r:>9.2}"));
        }
        println!("{line}");
    }
}

/// One target of the issue: description and verdict (None = not measured here).
struct Target {
    what: String,
    value: Option<f64>,
    /// How the value is printed (default: two decimals, none for information lines).
    shown: Option<String>,
    limit: String,
    met: Option<bool>,
    /// The verdict of an information line (default "(information)").
    note: Option<&'static str>,
}

impl Target {
    fn new(what: &str, value: Option<f64>, limit: String, met: Option<bool>) -> Target {
        Target {
            what: what.into(),
            value,
            shown: None,
            limit,
            met,
            note: None,
        }
    }
}

/// Generator utilization at or above which the load generator is the limit.
const GEN_BOUND_PCT: f64 = 90.0;

/// The information line "generator core busy in (n)" for ferrocache (slot 1), with the
/// other slots' figures, marked when either is generator-bound.
fn gen_target(w: &WorkloadResult) -> Target {
    let g = w.med[1].gen_cpu_pct;
    let others: Vec<String> = w
        .slots
        .iter()
        .zip(&w.med)
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .map(|(_, (sl, m))| format!("{} {:.0}%", sl.label, m.gen_cpu_pct))
        .collect();
    let bound = w.med.iter().any(|m| m.gen_cpu_pct >= GEN_BOUND_PCT);
    let mut t = Target::new(
        &format!(
            "  generator core busy in ({}), {} %",
            w.name, w.slots[1].label
        ),
        Some(g),
        format!(
            "({}; >= {GEN_BOUND_PCT:.0} = generator-bound)",
            others.join(", ")
        ),
        None,
    );
    if bound {
        t.note = Some("GENERATOR-BOUND");
    }
    t
}

/// A target on the ratio of workload `n`'s medians (`f`), `<= lim` when `le`, else
/// `>= lim`; not measured when the workload did not run.
fn ratio_target(
    results: &[WorkloadResult],
    what: &str,
    n: char,
    f: fn(&Medians) -> f64,
    le: bool,
    lim: f64,
) -> Target {
    let v = results.iter().find(|w| w.name == n).map(|w| w.ratio(f));
    Target::new(
        what,
        v,
        format!("{} {lim}", if le { "<=" } else { ">=" }),
        v.map(|v| if le { v <= lim } else { v >= lim }),
    )
}

fn targets(results: &[WorkloadResult], a: &Args, pinned: bool) -> Vec<Target> {
    let find = |n: char| results.iter().find(|w| w.name == n);
    let mut t = Vec::new();
    let mut ratio = |what: &str, n: char, f: fn(&Medians) -> f64, le: bool, lim: f64| {
        t.push(ratio_target(results, what, n, f, le, lim));
    };
    ratio("server CPU/op (a)", 'a', |m| m.cpu_us_per_op, true, 0.6);
    ratio("ops/s (a)", 'a', |m| m.ops_per_sec, false, 1.3);
    ratio("ops/s (b)", 'b', |m| m.ops_per_sec, false, 3.0);
    ratio("p99 (a)", 'a', |m| m.p99_us, true, 1.0);
    ratio("p99 (b)", 'b', |m| m.p99_us, true, 1.0);
    // The issue accepts (a) being limited by the load generator's core, if shown.
    if let Some(w) = find('a') {
        t.push(gen_target(w));
    }
    let t2 = a.threads == 2 && !pinned;
    let v = if t2 {
        find('a').map(|w| w.ratio(|m| m.ops_per_sec))
    } else {
        None
    };
    t.push(Target::new(
        "ops/s (a) -t 2 unpinned",
        v,
        if t2 {
            ">= 1.2".into()
        } else {
            ">= 1.2 (run with --threads 2 --no-pin)".into()
        },
        v.map(|v| v >= 1.2),
    ));
    let lim = 1.1 * E_MEM_MB as f64 + 32.0;
    let v = find('e').map(|w| w.med[1].rss_mib);
    t.push(Target::new(
        "ferrocache RSS MiB under (e)",
        v,
        format!("<= {lim:.1}"),
        v.map(|v| v <= lim),
    ));
    t
}

/// The targets of TLS (issue #14), memcached -Z = 1.0.
fn tls_targets(results: &[WorkloadResult]) -> Vec<Target> {
    let find = |n: char| results.iter().find(|w| w.name == n);
    let mut t = Vec::new();
    let mut ratio = |what: &str, n: char, f: fn(&Medians) -> f64, le: bool, lim: f64| {
        t.push(ratio_target(results, what, n, f, le, lim));
    };
    ratio(
        "server CPU/request (a), TLS",
        'a',
        |m| m.cpu_us_per_op,
        true,
        0.8,
    );
    ratio("ops/s (b), TLS", 'b', |m| m.ops_per_sec, false, 3.0);
    ratio(
        "server CPU per full handshake (h)",
        'h',
        |m| m.cpu_us_per_op,
        true,
        0.7,
    );
    ratio(
        "p50 of established gets during a handshake flood (g)",
        'g',
        |m| m.p50_us,
        true,
        2.0,
    );
    // ferrocache -Z against ferrocache over plain TCP, same run, (b).
    let v = find('b').and_then(|w| w.tls_over_tcp(|m| m.cpu_us_per_op));
    let mut over = Target::new(
        "TLS CPU/request over own plain TCP (b)",
        v.map(|r| r - 1.0),
        "<= +25% (ferrocache -Z / ferrocache tcp)".into(),
        v.map(|r| r - 1.0 <= 0.25),
    );
    over.shown = v.map(|r| {
        if r.is_finite() {
            format!("{:+.0}%", (r - 1.0) * 100.0)
        } else {
            "n/a".into()
        }
    });
    t.push(over);
    for n in ['a', 'b', 'h', 'g'] {
        if let Some(w) = find(n) {
            t.push(gen_target(w));
        }
    }
    t
}

fn fmt_f(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn to_json(a: &Args, pinned: bool, results: &[WorkloadResult], targets: &[Target]) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"threads\":{},\"mem_mb\":{},\"pinned\":{},\"tls\":{},\"rounds\":{},\"workloads\":[",
        a.threads,
        a.mem,
        pinned,
        a.tls,
        results.first().map(|w| w.runs[0].len()).unwrap_or(0)
    );
    for (i, w) in results.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"name\":\"{}\",\"desc\":\"{}\",\"mem_mb\":{},\"servers\":{{",
            w.name, w.desc, w.mem_mb
        );
        for (k, sl) in w.slots.iter().enumerate() {
            if k > 0 {
                o.push(',');
            }
            let m = &w.med[k];
            let _ = write!(
                o,
                "\"{}\":{{\"tls\":{},\"tls_params\":{},\"median\":{{\"ops_per_sec\":{},\
                 \"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"cpu_us_per_op\":{},\
                 \"rss_mib\":{},\"gen_cpu_pct\":{},\"errors\":{}}},\"rounds\":[",
                sl.key,
                sl.tls,
                w.tls_params[k]
                    .as_deref()
                    .map(json_str)
                    .unwrap_or_else(|| "null".into()),
                fmt_f(m.ops_per_sec),
                fmt_f(m.p50_us),
                fmt_f(m.p99_us),
                fmt_f(m.p999_us),
                fmt_f(m.cpu_us_per_op),
                fmt_f(m.rss_mib),
                fmt_f(m.gen_cpu_pct),
                m.errors
            );
            for (j, r) in w.runs[k].iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                let mut js = r.res.to_json();
                js.pop(); // '}'
                let _ = write!(
                    o,
                    "{js},\"cpu_us_per_op\":{},\"gen_cpu_pct\":{}}}",
                    fmt_f(r.cpu_us_per_op),
                    fmt_f(r.gen_cpu_pct)
                );
            }
            o.push_str("]}");
        }
        let _ = write!(
            o,
            "}},\"ratios\":{{\"ops_per_sec\":{},\"p50\":{},\"p99\":{},\"p999\":{},\
             \"cpu_per_op\":{},\"rss\":{}",
            fmt_f(w.ratio(|m| m.ops_per_sec)),
            fmt_f(w.ratio(|m| m.p50_us)),
            fmt_f(w.ratio(|m| m.p99_us)),
            fmt_f(w.ratio(|m| m.p999_us)),
            fmt_f(w.ratio(|m| m.cpu_us_per_op)),
            fmt_f(w.ratio(|m| m.rss_mib)),
        );
        if let Some(r) = w.tls_over_tcp(|m| m.cpu_us_per_op) {
            let _ = write!(o, ",\"ferrocache_tls_over_tcp_cpu_per_op\":{}", fmt_f(r));
        }
        o.push_str("}}");
    }
    o.push_str("],\"targets\":[");
    for (i, t) in targets.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "{{\"what\":{},\"value\":{},\"limit\":{},\"met\":{}}}",
            json_str(t.what.trim()),
            t.value.map(fmt_f).unwrap_or_else(|| "null".into()),
            json_str(&t.limit),
            t.met
                .map(|m| m.to_string())
                .unwrap_or_else(|| "null".into())
        );
    }
    o.push_str("]}\n");
    o
}

/// The workload names of `--workloads`.
fn parse_workloads(list: &str, tls: bool) -> Result<Vec<char>, String> {
    let mut v = Vec::new();
    for n in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mut ch = n.chars();
        match (ch.next(), ch.next()) {
            (Some(c @ ('h' | 'g')), None) if !tls => {
                return Err(format!("--workloads: {c} (handshakes) needs --tls"))
            }
            (Some(c), None) if ('a'..='f').contains(&c) || c == 'h' || c == 'g' => v.push(c),
            _ => return Err(format!("--workloads: unknown workload {n:?} (a..f, h, g)")),
        }
    }
    if v.is_empty() {
        return Err("--workloads: none given".into());
    }
    Ok(v)
}

/// Runs `compare`.
pub fn main(a: Args) -> Result<(), String> {
    let (names, rounds, duration, warmup) = if a.smoke {
        let mut v = vec!['a', 'b'];
        if a.tls {
            v.push('h');
        }
        (v, 1, 1.0, 0.3)
    } else {
        let default = if a.tls { "a,b,h,g" } else { "a,b,c,d,e,f" };
        let v = parse_workloads(a.workloads.as_deref().unwrap_or(default), a.tls)?;
        (v, a.rounds, a.duration, a.warmup)
    };
    if rounds == 0 || !(duration > 0.0 && duration <= 600.0) || !(0.0..=60.0).contains(&warmup) {
        return Err("need --rounds >= 1, 0 < --duration <= 600, 0 <= --warmup <= 60".into());
    }
    if a.threads == 0 || a.mem == 0 {
        return Err("--threads and --mem must be >= 1".into());
    }
    let placeholder = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let workloads = names
        .iter()
        .map(|&n| workload(n, placeholder, a.smoke))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = if a.tls {
        Some(TlsSetup::new(
            a.cert.as_deref(),
            a.key.as_deref(),
            a.cacert.as_deref(),
            &a.tls_name,
        )?)
    } else {
        None
    };
    let cpus = if a.no_pin { None } else { two_cpus() };
    let server_cpus = cpus.map(|(_, s)| s.to_string());
    if let Some((me, srv)) = cpus {
        servers::pin_self(&[me])?;
        println!("pinned: load generator on CPU {me}, servers on CPU {srv}");
    } else {
        println!("not pinned");
    }
    if let Some(t) = &tls {
        println!(
            "TLS: servers with -Z, {}; load generator: rustls 0.23 (ring), server name {}, \
             certificate verified, no session resumption",
            t.files.describe(),
            a.tls_name
        );
    }
    let mut results = Vec::new();
    for w in &workloads {
        results.push(run_workload(
            w,
            &a,
            rounds,
            Duration::from_secs_f64(duration),
            Duration::from_secs_f64(warmup),
            server_cpus.as_deref(),
            tls.as_ref(),
        )?);
    }
    let pinned = cpus.is_some();
    let (mc, fc) = if a.tls {
        ("memcached -Z", "ferrocache -Z")
    } else {
        ("memcached", "ferrocache")
    };
    println!("\nsummary: ratios {fc} / {mc} (medians; ops/s higher is better, the rest lower)");
    println!(
        "  {:<4} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "wl", "ops/s", "p50", "p99", "p99.9", "cpu/op", "RSS"
    );
    for w in &results {
        println!(
            "  {:<4} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10.2} {:>8.2}",
            w.name,
            w.ratio(|m| m.ops_per_sec),
            w.ratio(|m| m.p50_us),
            w.ratio(|m| m.p99_us),
            w.ratio(|m| m.p999_us),
            w.ratio(|m| m.cpu_us_per_op),
            w.ratio(|m| m.rss_mib),
        );
    }
    let ts = if a.tls {
        tls_targets(&results)
    } else {
        targets(&results, &a, pinned)
    };
    let config_note = match (a.tls, a.threads == 1 && pinned) {
        (_, true) => "",
        (true, false) => " (defined pinned at -t 1)",
        (false, false) => " (targets other than the -t 2 one are defined pinned at -t 1)",
    };
    let which = if a.tls {
        " of TLS (memcached -Z = 1.0)"
    } else {
        ""
    };
    println!("\ntargets{which}{config_note}:");
    for t in &ts {
        let (v, verdict) = match (t.value, t.met) {
            (Some(v), Some(true)) => (format!("{v:.2}"), "met"),
            (Some(v), Some(false)) => (format!("{v:.2}"), "NOT MET"),
            (Some(v), None) => (format!("{v:.0}"), t.note.unwrap_or("(information)")),
            _ => ("-".to_string(), "not measured"),
        };
        let v = t.shown.clone().unwrap_or(v);
        println!("  {:<42} {:>8}  {:<40} {}", t.what, v, t.limit, verdict);
    }
    if !a.tls {
        println!(
            "  {:<42} {:>8}  {:<40} not measured",
            "RSS/item 1M,10M; Zipf miss ratio", "-", "see `memory` and `hitratio`"
        );
    }
    if let Some(path) = &a.json {
        std::fs::write(path, to_json(&a, pinned, &results, &ts))
            .map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    drop(tls);
    let errors: u64 = results
        .iter()
        .flat_map(|w| w.med.iter().map(|m| m.errors))
        .sum();
    if errors > 0 {
        return Err(format!("{errors} errors during the comparison"));
    }
    Ok(())
}
