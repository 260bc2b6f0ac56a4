//! `db_cache load`: application threads reading (Zipf-popular ids) and updating items
//! through a pattern, for a bounded time and request count; what the database got,
//! what the application saw, and how stale what it was served was.
//!
//! Staleness is judged against what the writers did, recorded as they did it: for
//! every item version, when its write had finished (the UPDATE committed, then the
//! cache deleted, marked stale or written). A read that returns version v is *stale*
//! when the write of v+1 had finished before the read began: an invalidation the read
//! should have seen. Its staleness is the time from then to the read's start, and it
//! is *beyond the TTL* when that exceeds the TTL: older than the last committed write
//! for longer than the TTL allows. Both moments are taken on the safe side (the write:
//! when it returned, after its commit; the read: before the request), so a read is
//! never counted stale, or stale for longer, than it was.
//!
//! With `--tick-ms T` the cache node's clock is driven instead of running: `debugtime
//! p` stops it and one second is added every T ms (`debugtime 1`; ferrocache with `-o
//! debugtime`), and TTL and staleness are counted in those seconds, so an entry's
//! life and the reads' ages are measured with one clock.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrocache::client::{Client, ClientConfig, Protocol};

use crate::db::{is_absent, item_version, Db, DbSpec};
use crate::patterns::{Items, Pattern};

/// `db_cache load` options.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Cache nodes (`host:port,...`, loopback); none: no cache.
    #[arg(long)]
    pub servers: Option<String>,
    /// The database: `sqlite:<path>` or `postgres:<connection string>` (default: a
    /// SQLite file in a temporary directory).
    #[arg(long)]
    pub db: Option<String>,
    /// Caching pattern.
    #[arg(long, value_enum, default_value = "lease")]
    pub pattern: Pattern,
    /// Application threads (one database connection each).
    #[arg(long, default_value_t = 8)]
    pub threads: usize,
    /// Items (ids 0..keys).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Zipf exponent of the ids read and written (0: uniform).
    #[arg(long, default_value_t = 0.99)]
    pub zipf: f64,
    /// Share of requests that update their item.
    #[arg(long, default_value_t = 0.05)]
    pub write_share: f64,
    /// Every N-th id has no row (0: all present); reads of them test negative caching.
    #[arg(long, default_value_t = 20)]
    pub absent_every: u64,
    /// TTL of cached rows (seconds; with --tick-ms, driven seconds).
    #[arg(long, default_value_t = 60)]
    pub ttl: u32,
    /// TTL of cached "no such row" (0: not cached).
    #[arg(long, default_value_t = 30)]
    pub negative_ttl: u32,
    /// Payload bytes per row.
    #[arg(long, default_value_t = 200)]
    pub payload: usize,
    /// Milliseconds the application spends between reading a row and caching it.
    #[arg(long, default_value_t = 0)]
    pub render_ms: u64,
    /// Seconds measured (after the warm-up), at most 600.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring (counted nowhere).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Requests measured, at most (all threads).
    #[arg(long, default_value_t = 10_000_000)]
    pub max_requests: u64,
    /// Drive the first node's clock: one second every this many milliseconds (needs
    /// ferrocache -o debugtime). 0: the node's own clock.
    #[arg(long, default_value_t = 0)]
    pub tick_ms: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// A moment, on the wall clock and on the cache's clock (driven seconds, or 0).
#[derive(Clone, Copy, Debug)]
struct Stamp {
    at: Instant,
    tick: u64,
}

/// What the writers did to one item: per version, when its write had finished.
#[derive(Default)]
struct ItemLog {
    finished: Vec<Option<Stamp>>,
}

/// Results of one run.
#[derive(Default, Debug, Clone)]
pub struct Report {
    /// Requests measured (reads + writes).
    pub requests: u64,
    /// Reads measured.
    pub reads: u64,
    /// Reads that queried the database.
    pub db_reads: u64,
    /// Database statements of measured requests.
    pub db_queries: u64,
    /// Seconds measured.
    pub elapsed: f64,
    /// Request latency quantiles, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Reads that returned a version whose successor's write had finished before the
    /// read began.
    pub stale: u64,
    /// Of those, older than the successor's write by more than the TTL.
    pub stale_beyond_ttl: u64,
    /// Largest staleness seen (milliseconds, or driven seconds with --tick-ms).
    pub max_staleness: u64,
    /// Cache operations that failed.
    pub cache_errors: u64,
}

impl Report {
    /// Database queries per second.
    pub fn db_qps(&self) -> f64 {
        self.db_queries as f64 / self.elapsed.max(1e-9)
    }

    /// Share of reads answered without the database.
    pub fn offload(&self) -> f64 {
        1.0 - self.db_reads as f64 / (self.reads.max(1)) as f64
    }

    fn json(&self, a: &LoadArgs, db: &str) -> String {
        format!(
            "{{\"pattern\":\"{}\",\"db\":\"{}\",\"threads\":{},\"keys\":{},\"zipf\":{},\"write_share\":{},\
             \"ttl\":{},\"tick_ms\":{},\"render_ms\":{},\"requests\":{},\"reads\":{},\"db_reads\":{},\
             \"db_queries\":{},\"elapsed_s\":{:.3},\"db_qps\":{:.1},\"offload\":{:.5},\"p50_us\":{},\
             \"p99_us\":{},\"stale\":{},\"stale_beyond_ttl\":{},\"max_staleness\":{},\"cache_errors\":{}}}",
            a.pattern.name(),
            db,
            a.threads,
            a.keys,
            a.zipf,
            a.write_share,
            a.ttl,
            a.tick_ms,
            a.render_ms,
            self.requests,
            self.reads,
            self.db_reads,
            self.db_queries,
            self.elapsed,
            self.db_qps(),
            self.offload(),
            self.p50_us,
            self.p99_us,
            self.stale,
            self.stale_beyond_ttl,
            self.max_staleness,
            self.cache_errors
        )
    }
}

/// Ids drawn with Zipf popularity: a cumulative table and a binary search.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut sum = 0.0;
        let cdf = (1..=n)
            .map(|i| {
                sum += 1.0 / (i as f64).powf(s);
                sum
            })
            .collect();
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> i64 {
        let total = *self.cdf.last().unwrap_or(&1.0);
        let u = rng.unit() * total;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as i64
    }
}

/// xorshift64* seeded through splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The driven clock of the first cache node (`--tick-ms`).
struct Ticker {
    ticks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

fn debugtime(s: &mut TcpStream, r: &mut BufReader<TcpStream>, arg: &str) -> Result<(), String> {
    s.write_all(format!("debugtime {arg}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    if line != "OK\r\n" {
        return Err(format!(
            "debugtime {arg}: {line:?} (start ferrocache with -o debugtime)"
        ));
    }
    Ok(())
}

impl Ticker {
    fn start(node: &str, every: Duration) -> Result<Ticker, String> {
        let mut s = TcpStream::connect(node).map_err(|e| format!("{node}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.set_nodelay(true).ok();
        let mut r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        debugtime(&mut s, &mut r, "p")?;
        let ticks = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (ticks.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !st.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                next += every;
                debugtime(&mut s, &mut r, "1")?;
                // After the node's reply: the counter is never ahead of the node.
                t.fetch_add(1, Ordering::SeqCst);
            }
            debugtime(&mut s, &mut r, "r")
        });
        Ok(Ticker {
            ticks,
            stop,
            thread: Some(thread),
        })
    }

    fn finish(mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("ticker thread panicked".into()),
            None => Ok(()),
        }
    }
}

/// Where the run is, shared by its threads.
struct Shared<'a> {
    args: &'a LoadArgs,
    log: Vec<Mutex<ItemLog>>,
    ticks: Option<Arc<AtomicU64>>,
    requests: AtomicU64,
    measure_from: Instant,
    end: Instant,
}

impl Shared<'_> {
    fn now(&self) -> Stamp {
        Stamp {
            at: Instant::now(),
            tick: self.ticks.as_ref().map_or(0, |t| t.load(Ordering::SeqCst)),
        }
    }

    /// Staleness of a read of `version` of `id` that began at `began`, if stale:
    /// (age, beyond the TTL).
    fn judge(&self, id: i64, version: i64, began: Stamp) -> Option<(u64, bool)> {
        let log = self.log[id as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let next = (version + 1) as usize;
        let finished = log.finished.get(next).copied().flatten()?;
        if finished.at >= began.at {
            return None;
        }
        Some(if self.ticks.is_some() {
            // The node may already have been one second past the counter.
            let age = began.tick.saturating_sub(finished.tick + 1);
            (age, age > self.args.ttl as u64)
        } else {
            let age = began.at.saturating_duration_since(finished.at);
            (
                age.as_millis() as u64,
                age > Duration::from_secs(self.args.ttl as u64),
            )
        })
    }
}

/// One thread's results.
#[derive(Default)]
struct ThreadResult {
    report: Report,
    latencies: Vec<u32>,
}

fn client_for(servers: &str, threads: usize) -> Result<Client, String> {
    let mut cfg = ClientConfig::new(servers)?;
    cfg.conn.protocol = Protocol::Meta;
    cfg.conn.io_timeout = Duration::from_secs(2);
    cfg.max_idle_per_node = threads + 4;
    Client::new(cfg).map_err(|e| e.to_string())
}

fn worker(
    sh: &Shared<'_>,
    spec: &DbSpec,
    tag: &str,
    client: Option<&Client>,
    n: usize,
    zipf: &Zipf,
) -> Result<ThreadResult, String> {
    let a = sh.args;
    let mut db = Db::connect(spec, tag).map_err(|e| e.to_string())?;
    let mut items = Items {
        client,
        pattern: a.pattern,
        ttl: a.ttl,
        negative_ttl: a.negative_ttl,
        render: Duration::from_millis(a.render_ms),
        cache_errors: 0,
    };
    let mut rng = Rng::new(a.seed.wrapping_mul(1000).wrapping_add(n as u64));
    let mut out = ThreadResult::default();
    let absent = a.absent_every as i64;
    loop {
        let began = sh.now();
        if began.at >= sh.end {
            break;
        }
        let measured = began.at >= sh.measure_from;
        if measured && sh.requests.fetch_add(1, Ordering::Relaxed) >= a.max_requests {
            break;
        }
        let id = zipf.sample(&mut rng);
        let write = rng.unit() < a.write_share && !is_absent(id, absent);
        let queries = db.queries;
        let errors = items.cache_errors;
        if write {
            let row = items.write(&mut db, id).map_err(|e| e.to_string())?;
            let done = sh.now();
            let version = row
                .as_deref()
                .and_then(item_version)
                .ok_or("write: no row")? as usize;
            let mut log = sh.log[id as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if log.finished.len() <= version {
                log.finished.resize(version + 1, None);
            }
            log.finished[version] = Some(done);
        } else {
            let row = items.read(&mut db, id).map_err(|e| e.to_string())?;
            if measured {
                out.report.reads += 1;
                if db.queries > queries {
                    out.report.db_reads += 1;
                }
                if let Some(v) = row.as_deref() {
                    let version = item_version(v).ok_or("read: not an item")?;
                    if let Some((age, beyond)) = sh.judge(id, version, began) {
                        out.report.stale += 1;
                        out.report.stale_beyond_ttl += beyond as u64;
                        out.report.max_staleness = out.report.max_staleness.max(age);
                    }
                }
            }
        }
        if measured {
            out.report.requests += 1;
            out.report.db_queries += db.queries - queries;
            out.report.cache_errors += items.cache_errors - errors;
            out.latencies
                .push(began.at.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
    }
    Ok(out)
}

/// Runs the load; the report.
pub fn run(a: &LoadArgs, spec: &DbSpec, tag: &str) -> Result<Report, String> {
    if !(0.0..=600.0).contains(&a.duration) || !(0.0..=600.0).contains(&a.warmup) {
        return Err("--duration and --warmup: 0 to 600 seconds".into());
    }
    if a.threads == 0 || a.keys == 0 || a.keys > 10_000_000 {
        return Err("--threads > 0, --keys 1 to 10,000,000".into());
    }
    let client = match (&a.servers, a.pattern) {
        (_, Pattern::None) => None,
        (Some(s), _) => Some(client_for(s, a.threads)?),
        (None, p) => return Err(format!("pattern {} needs --servers", p.name())),
    };
    if let Some(c) = &client {
        c.flush_all(0).map_err(|e| format!("flush_all: {e}"))?;
    }
    let mut setup = Db::connect(spec, tag).map_err(|e| e.to_string())?;
    setup
        .create(a.keys, a.absent_every, a.payload)
        .map_err(|e| e.to_string())?;
    let ticker = match (a.tick_ms, &a.servers) {
        (0, _) => None,
        (ms, Some(s)) => {
            let first = s.split(',').next().unwrap_or_default();
            Some(Ticker::start(first, Duration::from_millis(ms))?)
        }
        (_, None) => return Err("--tick-ms needs --servers".into()),
    };
    let zipf = Zipf::new(a.keys, a.zipf);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let sh = Shared {
        args: a,
        log: (0..a.keys)
            .map(|_| Mutex::new(ItemLog::default()))
            .collect(),
        ticks: ticker.as_ref().map(|t| t.ticks.clone()),
        requests: AtomicU64::new(0),
        measure_from,
        end: measure_from + Duration::from_secs_f64(a.duration),
    };
    let results: Vec<Result<ThreadResult, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|n| {
                let (sh, zipf, client) = (&sh, &zipf, client.as_ref());
                s.spawn(move || worker(sh, spec, tag, client, n, zipf))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let elapsed = Instant::now()
        .min(sh.end)
        .saturating_duration_since(measure_from);
    if let Some(t) = ticker {
        t.finish()?;
    }
    let _ = setup.drop_tables();
    let mut r = Report {
        elapsed: elapsed.as_secs_f64(),
        ..Report::default()
    };
    let mut lat = Vec::new();
    for res in results {
        let t = res?;
        r.requests += t.report.requests;
        r.reads += t.report.reads;
        r.db_reads += t.report.db_reads;
        r.db_queries += t.report.db_queries;
        r.stale += t.report.stale;
        r.stale_beyond_ttl += t.report.stale_beyond_ttl;
        r.max_staleness = r.max_staleness.max(t.report.max_staleness);
        r.cache_errors += t.report.cache_errors;
        lat.extend(t.latencies);
    }
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0) as u64
    };
    r.p50_us = q(0.50);
    r.p99_us = q(0.99);
    Ok(r)
}

/// `db_cache load`: runs and prints the report.
pub fn main(a: &LoadArgs, spec: &DbSpec, tag: &str) -> Result<(), String> {
    let r = run(a, spec, tag)?;
    if a.json {
        println!("{}", r.json(a, spec.name()));
    } else {
        println!(
            "{} over {}: {} requests in {:.1} s, {:.0} DB queries/s, {:.1} % of reads without the DB, \
             p50 {} us, p99 {} us, stale reads {} ({} beyond the TTL), cache errors {}",
            a.pattern.name(),
            spec.name(),
            r.requests,
            r.elapsed,
            r.db_qps(),
            100.0 * r.offload(),
            r.p50_us,
            r.p99_us,
            r.stale,
            r.stale_beyond_ttl,
            r.cache_errors
        );
    }
    Ok(())
}
