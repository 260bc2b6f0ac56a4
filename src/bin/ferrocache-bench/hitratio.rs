//! `hitratio` subcommand: cache-aside miss ratios of memcached and ferrocache under
//! memory pressure, swept over cache sizes (`--mem 8,16,32,64,128`) and workload shapes
//! (`--workloads`, see `trace.rs` for the list).
//!
//! **Cells.** For each workload one deterministic trace is generated (seeded by `--seed`
//! and the workload's name; the same for every cache size and both servers). Each
//! (workload, `-m`) cell starts a fresh memcached and a fresh ferrocache with the same
//! `-m` and `-t` (default 2: ferrocache's default on this 2-core machine, one worker per
//! core, which gives it 8 store shards; memcached's LRUs and slab classes are global
//! whatever `-t`; both keep their other defaults, memcached 1.6.18's `slab_reassign`,
//! `slab_automove=1`, segmented LRU and LRU crawler included) and replays the trace as a
//! cache-aside client: `get`; on a miss, `set` the key's value (with its TTL). Every
//! hit's value is checked.
//!
//! **Accounting.** Per server: misses; *first-request misses* (the first request of a key
//! in the trace: compulsory, a miss for any cache) reported apart; for TTL workloads
//! the *expiry misses*, misses of keys whose last set is at least `ttl - 1` s old
//! (expired or about to: memcached and ferrocache count expiry in whole seconds), also
//! forced on every cache; the *avoidable miss ratio* `(misses - first-request misses -
//! expiry misses) / requests`; at the end `curr_items`, `evictions`,
//! `total_malloced` (`stats slabs`), RSS, CPU. Per cell the ratios ferrocache/memcached
//! of avoidable misses and of items kept.
//!
//! **Pipelining, and how it differs from a sequential client.** One connection, the
//! trace in batches of `--batch` requests (default 64). A batch is played in rounds:
//! one multi-get (`get k1 k2 …`) of all its pending requests, in trace order (the
//! server looks the keys up one after the other, each with the bump a single `get`
//! would give); the first miss of each key in the round is then `set … noreply`, those
//! sets travelling in front of the next round's multi-get (a connection's commands run
//! in order, so they land before it). A later request in the same round of a key that
//! missed in it also got a miss (its set had not been sent yet): that answer is
//! discarded and the request stays pending for the next round, where its get follows
//! the set and gets the server's real answer (normally a hit, bumping the item as a
//! sequential client's hit would). So every request's hit or miss is the server's answer
//! to a get sent after every earlier set of that key, exactly as for a sequential
//! client; what differs is only the interleaving *across keys* within one batch: the
//! gets of a round reach the server before the sets of that round's misses (a
//! sequential client would send each set right after its get). A set can therefore
//! evict an item whose get, later in the batch, a sequential client would have missed;
//! and the hits of a round bump their items before the round's sets evict. With C items
//! in the cache, miss ratio m and batch B, at most about m·B/C of the requests can be
//! affected (-m 8 with ~20k items: ~0.2%). Measured: `--batch 1` (exactly a sequential
//! client) and `--batch 64` differ by 6 of 7,851 avoidable misses for ferrocache
//! (zipf0.99-narrow, -m 8, 200k requests), less than memcached's run-to-run variation.
//! Sets are `noreply` because memcached answers every pipelined command with a write
//! of its own (replies would make it 5x slower here); refused stores are counted by the
//! servers' `store_no_memory` + `store_too_large`. The command sequence each server
//! receives is a function of the trace alone (and of expiry, for TTL workloads). One
//! connection keeps that order deterministic (several connections would interleave by
//! timing); ferrocache spreads keys over its shards by hash, not by connection, so one
//! connection exercises its whole store.
//!
//! **Wall time.** The `ttl` workload is paced at `--ttl-rate` requests per second (the
//! client waits so that request i is not sent before i / rate seconds), so an item
//! expires after the same number of requests on both servers; the table reports the
//! worst lag behind that schedule. Other workloads run as fast as the server answers
//! (`--pace-all` paces them too): time-driven background work, such as memcached's slab
//! rebalancer (`slab_automove`, one page at a time) and its LRU maintainer, gets less
//! wall time per request on the faster server and in a faster replay.
//!
//! `--write-trace DIR` writes each workload's trace as libCacheSim `oracleGeneral`
//! (`DIR/<workload>.oracleGeneral.bin`, see `trace.rs`) and `DIR/manifest.json`, for
//! `tests/tools/libcachesim_yardstick.py`.

use crate::inproc;
use crate::replay_row::Row;
use crate::servers::{Kind, ServerProc};
use crate::textconn::{json_f64, json_str, ratio_str, stat_u64, Conn, ServerFlags};
use crate::trace::{
    push_key, value_of, value_pattern, Req, Trace, Workload, DEFAULT_WORKLOADS, KEY_LEN,
    MC_ITEM_OVERHEAD,
};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Default cache sizes (MiB).
const DEFAULT_MEM: [usize; 5] = [8, 16, 32, 64, 128];
/// Default requests per cell.
const DEFAULT_REQUESTS: u64 = 2_000_000;
/// `--quick`: cache sizes, workloads and requests.
const QUICK_MEM: [usize; 2] = [8, 32];
const QUICK_WORKLOADS: &str = "zipf0.99-wide,scan,shift-size,ttl";
/// `--sizes`: value sizes that vary (issue #23): heavy tails of several lengths with
/// popularity independent of size (the two traces of the issue among them), and values
/// up to 200 KB under uniform and skewed popularity.
const SIZES_WORKLOADS: &str = "zipf1.0-wide16k@300k,zipf0.9-wide4k@400k,zipf0.99-wide4k,\
zipf0.9-wide16k@1m,zipf0.99-wide64k@1m,zipf0-bands,zipf0.99-bands";
const SIZES_MEM: [usize; 4] = [8, 16, 32, 64];
const SIZES_REQUESTS: u64 = 1_000_000;
const QUICK_REQUESTS: u64 = 250_000;

/// Options of `hitratio`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Cache sizes in MiB (`-m`), comma separated [default: 8,16,32,64,128; --quick: 8,32;
    /// --sizes: 8,16,32,64].
    #[arg(long, value_delimiter = ',')]
    mem: Vec<usize>,
    /// Workloads, comma separated: `zipf<S>-<fixed|narrow|wide|wide4k|wide16k|wide64k|
    /// bands|uniform2k>`, scan, shift-size, shift-hot, ttl, each optionally `@<keys>`
    /// [default: the 12 zipf{0.6,0.9,0.99,1.2}-{fixed,narrow,wide} and the 4 others;
    /// --quick: zipf0.99-wide,scan,shift-size,ttl; --sizes: the heavy tails and bands].
    #[arg(long)]
    workloads: Option<String>,
    /// Requests per cell (each a get, plus a set on a miss) [default: 2000000; --quick:
    /// 250000; --sizes: 1000000].
    #[arg(long)]
    requests: Option<u64>,
    /// Smoke preset: 2 cache sizes x 4 workloads x 250k requests (about a minute).
    #[arg(long)]
    quick: bool,
    /// Value sizes that vary: heavy-tailed sizes independent of popularity and values
    /// up to 200 KB, at -m 8..64 (7 workloads x 4 sizes x 1M requests).
    #[arg(long, conflicts_with = "quick")]
    sizes: bool,
    /// Key space of every workload (default: each workload's own, 2M or 4M).
    #[arg(long)]
    keys: Option<u64>,
    /// Server worker threads (`-t`), the same for both.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seed of the traces.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests per pipelined batch (1 = a strictly sequential client).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Request rate of paced replays (the `ttl` workload; every workload with
    /// `--pace-all`), requests per second. Also the time scale of exported traces.
    #[arg(long, default_value_t = 100_000.0)]
    ttl_rate: f64,
    /// Pace every workload at `--ttl-rate`, not only `ttl`.
    #[arg(long)]
    pace_all: bool,
    /// Servers to run, comma separated.
    #[arg(long, default_value = "memcached,ferrocache")]
    servers: String,
    /// Longest allowed replay per server and cell, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Write each workload's trace (libCacheSim oracleGeneral) and a manifest.json here.
    #[arg(long)]
    write_trace: Option<String>,
    /// Only generate (and with --write-trace, write) the traces; start no server.
    #[arg(long)]
    trace_only: bool,
    /// Extra server flags.
    #[command(flatten)]
    flags: ServerFlags,
    /// Also write every figure as JSON to this file.
    #[arg(long)]
    json: Option<String>,
}

/// The settings once presets and defaults are applied.
struct Plan {
    mem: Vec<usize>,
    workloads: Vec<Workload>,
    requests: u64,
    kinds: Vec<Replayer>,
}

/// What a cell's trace is replayed on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replayer {
    /// A server process on loopback.
    Server(Kind),
    /// ferrocache's store in this process (`inproc.rs`).
    InProcess,
}

impl Replayer {
    fn name(self) -> &'static str {
        match self {
            Replayer::Server(k) => k.name(),
            Replayer::InProcess => inproc::NAME,
        }
    }
}

fn plan(args: &Args) -> Result<Plan, String> {
    let mem = if !args.mem.is_empty() {
        args.mem.clone()
    } else if args.quick {
        QUICK_MEM.to_vec()
    } else if args.sizes {
        SIZES_MEM.to_vec()
    } else {
        DEFAULT_MEM.to_vec()
    };
    if mem.iter().any(|&m| m < 2) {
        return Err("--mem: every size must be at least 2 (MiB)".into());
    }
    let list = args.workloads.clone().unwrap_or_else(|| {
        if args.quick {
            QUICK_WORKLOADS.into()
        } else if args.sizes {
            SIZES_WORKLOADS.into()
        } else {
            DEFAULT_WORKLOADS.into()
        }
    });
    let workloads = Workload::parse_list(&list, args.keys)?;
    let requests = args.requests.unwrap_or(if args.quick {
        QUICK_REQUESTS
    } else if args.sizes {
        SIZES_REQUESTS
    } else {
        DEFAULT_REQUESTS
    });
    if requests == 0 || args.batch == 0 || args.threads == 0 {
        return Err("--requests, --batch and --threads must be positive".into());
    }
    if args.batch > 1024 {
        return Err("--batch: at most 1024".into());
    }
    if requests > 200_000_000 {
        return Err("--requests: at most 200000000".into());
    }
    if !(args.ttl_rate.is_finite() && args.ttl_rate >= 1.0) {
        return Err("--ttl-rate: at least 1 request per second".into());
    }
    let mut kinds = Vec::new();
    for s in args
        .servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        kinds.push(match s {
            "memcached" => Replayer::Server(Kind::Memcached),
            "ferrocache" => Replayer::Server(Kind::Ferrocache),
            "inproc" => Replayer::InProcess,
            _ => return Err(format!("--servers: unknown server {s:?}")),
        });
    }
    if kinds.is_empty() {
        return Err("--servers: none given".into());
    }
    Ok(Plan {
        mem,
        workloads,
        requests,
        kinds,
    })
}

/// One (workload, -m) cell.
struct Cell {
    workload: String,
    mem: usize,
    requests: u64,
    distinct: u64,
    rows: Vec<Row>,
    errors: Vec<String>,
}

impl Cell {
    fn get(&self, server: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.server == server)
    }
    fn pair(&self) -> Option<(&Row, &Row)> {
        let ours = self.get("ferrocache").or_else(|| self.get(inproc::NAME))?;
        Some((self.get("memcached")?, ours))
    }
}

/// What the JSON and the trace manifest say about a workload.
struct TraceInfo {
    name: String,
    describe: String,
    requests: u64,
    distinct: u64,
    distinct_bytes: u64,
    paced: bool,
    file: Option<String>,
}

/// Runs `hitratio`.
pub fn main(args: Args) -> Result<(), String> {
    let p = plan(&args)?;
    if let Some(dir) = &args.write_trace {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {dir}: {e}"))?;
    }
    let t_start = Instant::now();
    let n_cells = p.workloads.len() * p.mem.len();
    eprintln!(
        "hitratio: {} workloads x {} cache sizes = {} cells, {} requests each, servers {}{}",
        p.workloads.len(),
        p.mem.len(),
        n_cells,
        p.requests,
        args.servers,
        if args.trace_only {
            " (traces only)"
        } else {
            ""
        }
    );
    let mut cells: Vec<Cell> = Vec::new();
    let mut infos: Vec<TraceInfo> = Vec::new();
    let mut stoppers: Stoppers = Vec::new();
    // Every server this started is stopped before returning, error or not.
    let swept = sweep(&args, &p, t_start, &mut cells, &mut infos, &mut stoppers);
    for h in stoppers {
        let _ = h.join();
    }
    swept?;
    let total = t_start.elapsed().as_secs_f64();
    if !args.trace_only {
        print_summary(&args, &p, &cells, total);
    }
    if let Some(dir) = &args.write_trace {
        let path = std::path::Path::new(dir).join("manifest.json");
        std::fs::write(&path, manifest(&args, &p, &infos))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&args, &p, &infos, &cells, total))
            .map_err(|e| format!("write {path}: {e}"))?;
    }
    let errors: Vec<String> = cells
        .iter()
        .flat_map(|c| {
            c.errors
                .iter()
                .map(move |e| format!("{} -m {}: {e}", c.workload, c.mem))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Generates each workload's trace, writes it if asked, and runs its cells.
fn sweep(
    args: &Args,
    p: &Plan,
    t_start: Instant,
    cells: &mut Vec<Cell>,
    infos: &mut Vec<TraceInfo>,
    stoppers: &mut Stoppers,
) -> Result<(), String> {
    let n_cells = p.workloads.len() * p.mem.len();
    for w in &p.workloads {
        let trace = w.generate(p.requests, args.seed)?;
        let mut info = TraceInfo {
            name: trace.name.clone(),
            describe: trace.describe.clone(),
            requests: trace.reqs.len() as u64,
            distinct: trace.distinct,
            distinct_bytes: trace.distinct_bytes,
            paced: trace.paced || args.pace_all,
            file: None,
        };
        if let Some(dir) = &args.write_trace {
            let file = format!("{}.oracleGeneral.bin", trace.name);
            let path = std::path::Path::new(dir).join(&file);
            trace.write_oracle_general(&path, args.ttl_rate)?;
            eprintln!("hitratio: wrote {}", path.display());
            info.file = Some(file);
        }
        if !args.trace_only {
            for &mem in &p.mem {
                let cell = run_cell(args, p, &trace, mem, stoppers);
                print_cell(args, &trace, &cell);
                eprintln!(
                    "hitratio: {} cells of {} done, {:.0} s so far",
                    cells.len() + 1,
                    n_cells,
                    t_start.elapsed().as_secs_f64()
                );
                cells.push(cell);
            }
        } else {
            println!(
                "{}: {} requests, {} distinct keys ({:.4} first requests), {:.1} MiB of memcached items",
                trace.name,
                trace.reqs.len(),
                trace.distinct,
                trace.distinct as f64 / trace.reqs.len().max(1) as f64,
                mib(trace.distinct_bytes)
            );
        }
        infos.push(info);
    }
    Ok(())
}

/// Servers being stopped in the background (memcached exits up to a second after
/// SIGTERM, on its next clock tick); joined before `hitratio` returns.
type Stoppers = Vec<std::thread::JoinHandle<()>>;

fn run_cell(args: &Args, p: &Plan, trace: &Trace, mem: usize, stoppers: &mut Stoppers) -> Cell {
    let mut cell = Cell {
        workload: trace.name.clone(),
        mem,
        requests: trace.reqs.len() as u64,
        distinct: trace.distinct,
        rows: Vec::new(),
        errors: Vec::new(),
    };
    let pace = (trace.paced || args.pace_all).then_some(args.ttl_rate);
    for &kind in &p.kinds {
        eprintln!(
            "hitratio: {} -m {} on {} -t {} ...",
            trace.name,
            mem,
            kind.name(),
            args.threads
        );
        let replayed = match kind {
            Replayer::Server(k) => replay(args, k, mem, trace, pace, stoppers),
            Replayer::InProcess => {
                let extra: Vec<String> = args
                    .flags
                    .for_kind(Kind::Ferrocache)
                    .into_iter()
                    .map(String::from)
                    .collect();
                inproc::replay(mem, args.threads, &extra, trace, args.ttl_rate)
            }
        };
        match replayed {
            Ok(r) => cell.rows.push(r),
            Err(e) => cell.errors.push(format!("{}: {e}", kind.name())),
        }
    }
    cell
}

/// Plays `trace` against a fresh `kind` with `-m mem`.
fn replay(
    args: &Args,
    kind: Kind,
    mem: usize,
    trace: &Trace,
    pace: Option<f64>,
    stoppers: &mut Stoppers,
) -> Result<Row, String> {
    let extra = args.flags.for_kind(kind);
    let server = ServerProc::start(kind, args.threads, mem, &extra, None)?;
    let mut c = Conn::connect(server.addr, Duration::from_secs(30))?;
    let pat = value_pattern();
    let cpu0 = server.cpu_time();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.timeout);
    let mut row = Row {
        server: kind.name(),
        requests: trace.reqs.len() as u64,
        request_bytes: trace.reqs.iter().map(|r| u64::from(r.vlen)).sum(),
        ..Row::default()
    };
    // Bytes to send: the noreply sets of the last round, then the next multi-get.
    let mut out: Vec<u8> = Vec::with_capacity(args.batch * 400);
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut keybuf = Vec::with_capacity(16);
    // Wall time (s since t0) of the last set of each key with a TTL.
    let mut last_set: HashMap<u32, f64> = HashMap::new();
    let mut pending: Vec<usize> = Vec::with_capacity(args.batch);
    let mut next: Vec<usize> = Vec::with_capacity(args.batch);
    let mut to_set: Vec<usize> = Vec::with_capacity(args.batch);
    let mut missed: HashSet<u32> = HashSet::with_capacity(args.batch * 2);
    let mut last_report = Instant::now();
    for (bi, batch) in trace.reqs.chunks(args.batch).enumerate() {
        let done = bi * args.batch;
        let now = Instant::now();
        if now > deadline {
            return Err(format!(
                "not finished within {} s ({} of {} requests)",
                args.timeout,
                done,
                trace.reqs.len()
            ));
        }
        if let Some(rate) = pace {
            let target = t0 + Duration::from_secs_f64(done as f64 / rate);
            if now < target {
                // The last batch's sets go now, not after the wait.
                if !out.is_empty() {
                    c.send(&out)?;
                    out.clear();
                }
                std::thread::sleep(target - now);
            } else {
                row.max_lag = row.max_lag.max((now - target).as_secs_f64());
            }
        }
        pending.clear();
        pending.extend(0..batch.len());
        while !pending.is_empty() {
            // One multi-get for the round: the server looks the keys up in this order,
            // exactly as it would single gets.
            out.extend_from_slice(b"get");
            for &j in &pending {
                out.push(b' ');
                push_key(&mut out, batch[j].key);
            }
            out.extend_from_slice(b"\r\n");
            c.send(&out)?;
            out.clear();
            missed.clear();
            to_set.clear();
            next.clear();
            c.read_line(&mut line)?;
            for &j in &pending {
                let r = &batch[j];
                keybuf.clear();
                push_key(&mut keybuf, r.key);
                let hit = read_value(&mut c, r, &keybuf, &pat, &mut line, &mut data)?;
                if missed.contains(&r.key) {
                    if hit {
                        return Err(format!(
                            "{}: hit before the set that follows its miss",
                            String::from_utf8_lossy(&keybuf)
                        ));
                    }
                    next.push(j);
                    continue;
                }
                if hit {
                    if r.first {
                        row.first_hits += 1;
                    }
                    continue;
                }
                row.misses += 1;
                row.miss_bytes += u64::from(r.vlen);
                if r.first {
                    row.first_misses += 1;
                } else if r.ttl > 0 {
                    let now_s = t0.elapsed().as_secs_f64();
                    if last_set
                        .get(&r.key)
                        .is_some_and(|&s| now_s - s >= r.ttl as f64 - 1.0)
                    {
                        row.expired_misses += 1;
                    }
                }
                missed.insert(r.key);
                to_set.push(j);
            }
            if line != b"END" {
                return Err(format!(
                    "unexpected reply to a multi-get of {} keys: {:?}",
                    pending.len(),
                    String::from_utf8_lossy(&line)
                ));
            }
            // The sets, noreply: they travel with the next multi-get (the server runs a
            // connection's commands in order); refusals are counted by the server's
            // store_no_memory / store_too_large.
            let now_s = t0.elapsed().as_secs_f64();
            for &j in &to_set {
                let r = &batch[j];
                out.extend_from_slice(b"set ");
                push_key(&mut out, r.key);
                let _ = write!(FmtVec(&mut out), " 0 {} {} noreply\r\n", r.ttl, r.vlen);
                out.extend_from_slice(value_of(&pat, r));
                out.extend_from_slice(b"\r\n");
                if r.ttl > 0 {
                    last_set.insert(r.key, now_s);
                }
            }
            row.deferred += next.len() as u64;
            std::mem::swap(&mut pending, &mut next);
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let n = done + batch.len();
            eprintln!(
                "  {}/{} requests, miss ratio so far {:.4}",
                n,
                trace.reqs.len(),
                row.misses as f64 / n as f64
            );
        }
    }
    if !out.is_empty() {
        c.send(&out)?;
    }
    // `stats` runs after every set sent before it.
    let st = c.stats()?;
    row.elapsed = t0.elapsed().as_secs_f64();
    row.cpu = server.cpu_time().saturating_sub(cpu0).as_secs_f64();
    row.set_failures = stat_u64(&st, "store_no_memory") + stat_u64(&st, "store_too_large");
    row.evictions = stat_u64(&st, "evictions");
    row.curr_items = stat_u64(&st, "curr_items");
    row.bytes = stat_u64(&st, "bytes");
    row.server_get_misses = stat_u64(&st, "get_misses");
    row.get_expired = stat_u64(&st, "get_expired");
    row.reclaimed = stat_u64(&st, "reclaimed");
    row.slabs_moved = stat_u64(&st, "slabs_moved");
    row.total_malloced = stats_slabs_total_malloced(&mut c)?;
    row.rss = server.rss_bytes();
    drop(c);
    // Stopped (SIGTERM, then SIGKILL after 5 s: ServerProc's drop) while the next
    // server runs; an error above drops it here, synchronously.
    stoppers.push(std::thread::spawn(move || drop(server)));
    Ok(row)
}

/// `write!` into a `Vec<u8>`.
struct FmtVec<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for FmtVec<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Within a multi-get reply whose current line is `line`: if it is the value of `key`,
/// checks it, reads the next line into `line` and returns true; otherwise (the key
/// missed) leaves `line` as it is and returns false.
fn read_value(
    c: &mut Conn,
    r: &Req,
    key: &[u8],
    pat: &[u8],
    line: &mut Vec<u8>,
    data: &mut Vec<u8>,
) -> Result<bool, String> {
    let Some(rest) = line
        .strip_prefix(b"VALUE ")
        .and_then(|x| x.strip_prefix(key))
        .and_then(|x| x.strip_prefix(b" "))
    else {
        return Ok(false);
    };
    // <flags> <bytes>
    let len: usize = std::str::from_utf8(rest)
        .ok()
        .and_then(|s| {
            let mut f = s.split(' ').filter(|x| !x.is_empty());
            let _flags = f.next()?;
            let n = f.next()?.parse().ok()?;
            f.next().is_none().then_some(n)
        })
        .ok_or_else(|| {
            format!(
                "unexpected reply to get {}: {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(line)
            )
        })?;
    c.read_exact(len + 2, data)?;
    let want = value_of(pat, r);
    if !data.ends_with(b"\r\n") || data[..len] != *want {
        return Err(format!(
            "wrong value for {} ({len} bytes, expected {})",
            String::from_utf8_lossy(key),
            want.len()
        ));
    }
    c.read_line(line)?;
    Ok(true)
}

/// `total_malloced` from `stats slabs` (0 when absent).
fn stats_slabs_total_malloced(c: &mut Conn) -> Result<u64, String> {
    c.send(b"stats slabs\r\n")?;
    let mut line = Vec::new();
    let mut total = 0;
    loop {
        c.read_line(&mut line)?;
        if line == b"END" {
            return Ok(total);
        }
        if let Some(v) = line.strip_prefix(b"STAT total_malloced ") {
            total = String::from_utf8_lossy(v).trim().parse().unwrap_or(0);
        }
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn print_cell(args: &Args, trace: &Trace, cell: &Cell) {
    let n = trace.reqs.len() as u64;
    println!();
    println!(
        "== {}  -m {} -t {}  ({} requests, batch {}, seed {}): {}",
        cell.workload, cell.mem, args.threads, n, args.batch, args.seed, trace.describe
    );
    println!(
        "distinct keys requested: {} ({:.4} of requests are first requests); {:.1} MiB of memcached items (key + value + {} B)",
        trace.distinct,
        trace.distinct as f64 / n.max(1) as f64,
        mib(trace.distinct_bytes),
        MC_ITEM_OVERHEAD
    );
    println!(
        "{:<11} {:>9} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9} {:>8} {:>9} {:>9} {:>7} {:>7} {:>8}",
        "server",
        "misses",
        "miss_ratio",
        "byte_miss",
        "first_mis",
        "avoidable",
        "avoid_rat",
        "curr_items",
        "evictions",
        "expired",
        "malloc_MB",
        "rss_MiB",
        "cpu_s",
        "wall_s",
        "max_lag"
    );
    for r in &cell.rows {
        println!(
            "{:<11} {:>9} {:>10.4} {:>10.4} {:>9} {:>9} {:>10.4} {:>10} {:>9} {:>8} {:>9.1} {:>9.1} {:>7.2} {:>7.2} {:>8.3}",
            r.server,
            r.misses,
            r.miss_ratio(),
            r.byte_miss_ratio(),
            r.first_misses,
            r.avoidable(),
            r.avoidable_ratio(),
            r.curr_items,
            r.evictions,
            r.expired_misses,
            mib(r.total_malloced),
            mib(r.rss),
            r.cpu,
            r.elapsed,
            r.max_lag
        );
        if r.first_hits > 0 || r.set_failures > 0 {
            println!(
                "  {}: {} first requests hit (a fresh server cannot have the key: bug), {} sets refused",
                r.server, r.first_hits, r.set_failures
            );
        }
    }
    for e in &cell.errors {
        println!("  error: {e}");
    }
    if let Some((m, f)) = cell.pair() {
        println!(
            "ratio ferrocache/memcached: miss_ratio {}  avoidable {}  items {}",
            ratio_str(f.miss_ratio(), m.miss_ratio()),
            ratio_str(f.avoidable() as f64, m.avoidable() as f64),
            ratio_str(f.curr_items as f64, m.curr_items as f64)
        );
    }
}

/// Ferrocache/memcached avoidable-miss ratio of a cell, when both have enough avoidable
/// misses for the ratio to mean something (at least 0.1% of requests).
fn avoid_ratio(c: &Cell) -> Option<f64> {
    let (m, f) = c.pair()?;
    let floor = (c.requests / 1000).max(1);
    (m.avoidable() >= floor || f.avoidable() >= floor)
        .then(|| f.avoidable() as f64 / m.avoidable().max(1) as f64)
}

fn print_summary(args: &Args, p: &Plan, cells: &[Cell], total: f64) {
    println!();
    println!(
        "summary: cache-aside, {} requests per cell, -t {}, batch {}, seed {}; avoidable = (misses - first-request misses - expiry misses) / requests; x = ferrocache/memcached (< 1: ferrocache misses less / keeps fewer items)",
        p.requests, args.threads, args.batch, args.seed
    );
    println!(
        "{:<16} {:>4} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>6} {:>9} {:>9} {:>6} {:>6}",
        "workload",
        "-m",
        "first",
        "mc_miss",
        "fc_miss",
        "mc_avoid",
        "fc_avoid",
        "avoid_x",
        "mc_items",
        "fc_items",
        "item_x",
        "mc_bmiss",
        "fc_bmiss",
        "mc_RSS",
        "fc_RSS"
    );
    let mut logs = Vec::new();
    let mut worst: Option<(f64, &Cell)> = None;
    let mut better = 0;
    let mut worse = 0;
    for c in cells {
        let first = c.distinct as f64 / c.requests.max(1) as f64;
        let m = c.get("memcached");
        let f = c.get("ferrocache").or_else(|| c.get(inproc::NAME));
        let fmt_ratio = |r: Option<&Row>, g: fn(&Row) -> f64| {
            r.map(|r| format!("{:.4}", g(r)))
                .unwrap_or_else(|| "-".into())
        };
        let fmt_u = |r: Option<&Row>, g: fn(&Row) -> u64| {
            r.map(|r| g(r).to_string()).unwrap_or_else(|| "-".into())
        };
        let ax = avoid_ratio(c);
        if let Some(x) = ax {
            logs.push(x.max(1e-6).ln());
            if !matches!(worst, Some((w, _)) if w >= x) {
                worst = Some((x, c));
            }
            if x < 1.0 {
                better += 1;
            } else if x > 1.0 {
                worse += 1;
            }
        }
        let ix = c
            .pair()
            .map(|(m, f)| ratio_str(f.curr_items as f64, m.curr_items as f64))
            .unwrap_or_else(|| "-".into());
        let fmt_mib = |r: Option<&Row>| {
            r.map(|r| format!("{:.1}", mib(r.rss)))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<16} {:>4} {:>7.4} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9} {:>9} {:>6} {:>8} {:>8} {:>6} {:>6}",
            c.workload,
            c.mem,
            first,
            fmt_ratio(m, Row::miss_ratio),
            fmt_ratio(f, Row::miss_ratio),
            fmt_ratio(m, Row::avoidable_ratio),
            fmt_ratio(f, Row::avoidable_ratio),
            ax.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into()),
            fmt_u(m, |r| r.curr_items),
            fmt_u(f, |r| r.curr_items),
            ix,
            fmt_ratio(m, Row::byte_miss_ratio),
            fmt_ratio(f, Row::byte_miss_ratio),
            fmt_mib(m),
            fmt_mib(f),
        );
    }
    if !logs.is_empty() {
        let g = (logs.iter().sum::<f64>() / logs.len() as f64).exp();
        println!(
            "avoidable misses ferrocache/memcached: geometric mean {:.3} over {} cells with avoidable misses; ferrocache fewer in {}, more in {}",
            g,
            logs.len(),
            better,
            worse
        );
    }
    if let Some((x, c)) = worst {
        println!(
            "worst cell: {} -m {}: avoidable misses {:.3}x memcached's",
            c.workload, c.mem, x
        );
    }
    println!("bmiss: byte miss ratio (value bytes of the misses / of all requests); RSS: resident MiB at the end (inproc: the store's segments and index); memcached gives each slab class its first 1 MiB page even beyond -m");
    println!("sweep time {total:.0} s");
}

fn row_json(r: &Row) -> String {
    format!(
        "{{\"server\": {}, \"requests\": {}, \"misses\": {}, \"miss_ratio\": {}, \"byte_miss_ratio\": {}, \"first_request_misses\": {}, \
         \"first_request_hits\": {}, \"avoidable_misses\": {}, \"avoidable_miss_ratio\": {}, \"expired_misses\": {}, \
         \"set_failures\": {}, \"deferred_gets\": {}, \"curr_items\": {}, \"evictions\": {}, \"bytes\": {}, \
         \"total_malloced\": {}, \"server_get_misses\": {}, \"get_expired\": {}, \"reclaimed\": {}, \
         \"slabs_moved\": {}, \"rss\": {}, \"cpu_seconds\": {}, \"elapsed_seconds\": {}, \"max_lag_seconds\": {}}}",
        json_str(r.server),
        r.requests,
        r.misses,
        json_f64(r.miss_ratio()),
        json_f64(r.byte_miss_ratio()),
        r.first_misses,
        r.first_hits,
        r.avoidable(),
        json_f64(r.avoidable_ratio()),
        r.expired_misses,
        r.set_failures,
        r.deferred,
        r.curr_items,
        r.evictions,
        r.bytes,
        r.total_malloced,
        r.server_get_misses,
        r.get_expired,
        r.reclaimed,
        r.slabs_moved,
        r.rss,
        json_f64(r.cpu),
        json_f64(r.elapsed),
        json_f64(r.max_lag)
    )
}

fn workloads_json(infos: &[TraceInfo], indent: &str) -> String {
    let mut s = String::new();
    for (i, t) in infos.iter().enumerate() {
        let _ = writeln!(
            s,
            "{indent}{{\"name\": {}, \"describe\": {}, \"requests\": {}, \"distinct_keys\": {}, \
             \"first_request_ratio\": {}, \"distinct_item_bytes\": {}, \"paced\": {}, \"file\": {}}}{}",
            json_str(&t.name),
            json_str(&t.describe),
            t.requests,
            t.distinct,
            json_f64(t.distinct as f64 / t.requests.max(1) as f64),
            t.distinct_bytes,
            t.paced,
            t.file.as_deref().map(json_str).unwrap_or_else(|| "null".into()),
            if i + 1 < infos.len() { "," } else { "" }
        );
    }
    s
}

fn manifest(args: &Args, p: &Plan, infos: &[TraceInfo]) -> String {
    let mut s = String::from("{\n");
    let _ = writeln!(
        s,
        "  \"format\": \"oracleGeneral\", \"record\": \"<u32 clock_time, u64 obj_id, u32 obj_size, i64 next_access_vtime> packed little endian, 24 bytes\","
    );
    let _ = writeln!(
        s,
        "  \"obj_size\": \"key + value + {MC_ITEM_OVERHEAD} (memcached 1.6 item accounting, flags 0, CAS on)\", \"key_len\": {KEY_LEN}, \"mc_item_overhead\": {MC_ITEM_OVERHEAD},"
    );
    let _ = writeln!(
        s,
        "  \"clock_rate\": {}, \"seed\": {}, \"requests\": {}, \"mem_mb\": [{}],",
        json_f64(args.ttl_rate),
        args.seed,
        p.requests,
        p.mem
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    s.push_str("  \"workloads\": [\n");
    s.push_str(&workloads_json(infos, "    "));
    s.push_str("  ]\n}\n");
    s
}

fn to_json(args: &Args, p: &Plan, infos: &[TraceInfo], cells: &[Cell], total: f64) -> String {
    let mut s = String::from("{\n  \"benchmark\": \"hitratio\",\n");
    let _ = writeln!(
        s,
        "  \"requests\": {}, \"threads\": {}, \"batch\": {}, \"seed\": {}, \"ttl_rate\": {}, \"pace_all\": {}, \
         \"mem_mb\": [{}], \"mc_item_overhead\": {MC_ITEM_OVERHEAD}, \"sweep_seconds\": {},",
        p.requests,
        args.threads,
        args.batch,
        args.seed,
        json_f64(args.ttl_rate),
        args.pace_all,
        p.mem.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "),
        json_f64(total)
    );
    s.push_str("  \"workloads\": [\n");
    s.push_str(&workloads_json(infos, "    "));
    s.push_str("  ],\n  \"cells\": [\n");
    for (i, c) in cells.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"workload\": {}, \"mem_mb\": {}, \"requests\": {}, \"first_requests\": {}, \"servers\": [",
            json_str(&c.workload),
            c.mem,
            c.requests,
            c.distinct
        );
        for (j, r) in c.rows.iter().enumerate() {
            s.push_str(if j == 0 { "\n      " } else { ",\n      " });
            s.push_str(&row_json(r));
        }
        s.push_str("\n    ]");
        if let Some((m, f)) = c.pair() {
            let _ = write!(
                s,
                ", \"ratio_miss\": {}, \"ratio_avoidable\": {}, \"ratio_items\": {}",
                json_f64(f.miss_ratio() / m.miss_ratio()),
                json_f64(f.avoidable() as f64 / m.avoidable() as f64),
                json_f64(f.curr_items as f64 / m.curr_items as f64)
            );
        }
        let errs: Vec<String> = c.errors.iter().map(|e| json_str(e)).collect();
        let _ = write!(s, ", \"errors\": [{}]}}", errs.join(", "));
        s.push_str(if i + 1 < cells.len() { ",\n" } else { "\n" });
    }
    s.push_str("  ]\n}\n");
    s
}
