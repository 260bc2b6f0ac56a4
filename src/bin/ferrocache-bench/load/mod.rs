//! `run`: a closed-loop load generator. Every connection keeps `--pipeline` requests in
//! flight and sends a new one as soon as a reply completes. Client threads each own a
//! mio `Poll` and a share of the connections; requests are batched into one write per
//! connection per wake-up, replies are parsed in place without allocation, and latency
//! (send of a request to the end of its reply) goes into a log-linear histogram.
//!
//! With `--tls` every connection is a TLS client connection (rustls): handshaken
//! blocking when opened, then driven by the same non-blocking loop through the
//! [`Stream`] trait, which the plain TCP stream implements with its socket calls alone
//! (the engine is generic over it, so the plain path is compiled as before).
//! `--handshakes` measures connection set-up instead (see `handshake.rs`).
//!
//! The engine is [`run_load`]; `compare` calls it too.

mod config;
mod worker;

pub use crate::stream::Established;
use crate::wire::{self, ReqKind};
use crate::zipf::{KeyChooser, Rng};
pub use config::*;
use std::io::{ErrorKind, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use worker::*;
pub(crate) use worker::{Shared, Totals};
/// Raises the soft open-files limit towards the hard one if `need` descriptors would
/// not fit.
pub(crate) fn ensure_fd_limit(need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < need {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, need.min(hard), hard);
        }
    }
}

fn connect(addr: SocketAddr) -> Result<std::net::TcpStream, String> {
    let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    Ok(s)
}

/// Connects to the configured server, over TLS if configured.
pub fn open(cfg: &LoadConfig) -> Result<Established, String> {
    let tcp = connect(cfg.server)?;
    match &cfg.tls {
        None => Ok(Established::Tcp(tcp)),
        Some(t) => {
            let conn = t
                .handshake(&tcp)
                .map_err(|e| format!("{}: {e}", cfg.server))?;
            Ok(Established::Tls(tcp, Box::new(conn)))
        }
    }
}

fn build_chooser(cfg: &LoadConfig) -> Result<KeyChooser, String> {
    match cfg.dist {
        Dist::Uniform => Ok(KeyChooser::uniform(cfg.keys)),
        Dist::Zipf(s) => KeyChooser::zipf(cfg.keys, s),
    }
}

/// Sets every key once (pipelined batches over a few blocking connections), so that
/// the gets of the run hit. Bounded by 120 s.
pub fn preload(cfg: &LoadConfig) -> Result<(), String> {
    let streams = 4.min(cfg.keys as usize).max(1);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut handles = Vec::new();
    for t in 0..streams {
        let cfg = cfg.clone();
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            let timeout = Some(Duration::from_secs(10));
            match open(&cfg)? {
                Established::Tcp(mut s) => {
                    s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
                    preload_stream(&mut s, &cfg, t, streams, deadline)
                }
                Established::Tls(s, conn) => {
                    s.set_read_timeout(timeout).map_err(|e| e.to_string())?;
                    let mut s = rustls::StreamOwned::new(*conn, s);
                    preload_stream(&mut s, &cfg, t, streams, deadline)
                }
            }
        }));
    }
    for h in handles {
        h.join()
            .map_err(|_| "preload thread panicked".to_string())??;
    }
    Ok(())
}

/// Preload stream `t` of `streams` over the blocking `s`.
fn preload_stream<S: Read + Write>(
    s: &mut S,
    cfg: &LoadConfig,
    t: usize,
    streams: usize,
    deadline: Instant,
) -> Result<(), String> {
    let values = value_source(cfg.value_max);
    let mut rng = Rng::new(cfg.seed ^ 0x5eed_0000 ^ t as u64);
    let mut out = Vec::with_capacity(1 << 20);
    let mut inb = vec![0u8; 1 << 16];
    let ids: Vec<u64> = (t as u64..cfg.keys).step_by(streams).collect();
    for chunk in ids.chunks(256) {
        if Instant::now() > deadline {
            return Err("preload: took longer than 120 s".into());
        }
        out.clear();
        for &id in chunk {
            let n = value_len(cfg, &mut rng);
            wire::push_set(&mut out, cfg.protocol, id, &values[..n]);
        }
        s.write_all(&out)
            .map_err(|e| format!("preload write: {e}"))?;
        let (mut start, mut end, mut left) = (0usize, 0usize, chunk.len());
        while left > 0 {
            match wire::parse_reply(cfg.protocol, ReqKind::Set, &inb[start..end]) {
                Ok(Some(r)) => {
                    start += r.len;
                    left -= 1;
                    continue;
                }
                Ok(None) => {}
                Err(e) => return Err(format!("preload: {e}")),
            }
            if start > 0 {
                inb.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            if end == inb.len() {
                inb.resize(inb.len() * 2, 0);
            }
            let n = s
                .read(&mut inb[end..])
                .map_err(|e| format!("preload read: {e}"))?;
            if n == 0 {
                return Err("preload: server closed the connection".into());
            }
            end += n;
        }
    }
    Ok(())
}

/// Runs a load as configured and returns the measured figures.
pub fn run_load(cfg: &LoadConfig) -> Result<LoadResult, String> {
    run_load_with(cfg, &mut || {})
}

/// Like [`run_load`], calling `at_measure_start` the moment the warm-up ends (e.g. to
/// sample a server's CPU time for exactly the measured window).
pub fn run_load_with(
    cfg: &LoadConfig,
    at_measure_start: &mut dyn FnMut(),
) -> Result<LoadResult, String> {
    cfg.check()?;
    ensure_fd_limit((cfg.conns + cfg.idle_conns) as u64 + 64);
    if cfg.preload {
        preload(cfg)?;
    }
    let chooser = Arc::new(build_chooser(cfg)?);
    let mut idle = Vec::with_capacity(cfg.idle_conns);
    for _ in 0..cfg.idle_conns {
        idle.push(open(cfg)?);
    }
    let threads = cfg.threads.min(cfg.conns);
    let mut per_thread: Vec<Vec<Established>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..cfg.conns {
        per_thread[i % threads].push(open(cfg)?);
    }
    let shared = Arc::new(Shared::new());
    let start = Instant::now();
    let measure_start = start + cfg.warmup;
    let deadline = measure_start + cfg.duration;
    let mut handles = Vec::new();
    for (t, streams) in per_thread.into_iter().enumerate() {
        let w = Worker {
            cfg: cfg.clone(),
            chooser: chooser.clone(),
            shared: shared.clone(),
            rng: Rng::new(cfg.seed.wrapping_mul(0x1000_0000_01b3) ^ t as u64),
            measure_start,
            deadline,
            quota: quota(cfg, t, threads),
        };
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || w.run(streams))
                .map_err(|e| format!("spawn: {e}"))?,
        );
    }
    let totals = coordinate(
        cfg,
        &shared,
        handles,
        measure_start,
        deadline,
        at_measure_start,
    )?;
    // Idle connections must still be open (the server must not have dropped them).
    for s in &mut idle {
        let r = match s {
            Established::Tcp(s) => {
                let mut b = [0u8; 1];
                let _ = s.set_nonblocking(true);
                match (&*s).read(&mut b) {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
                    Ok(0) => Err("an idle connection was closed by the server".into()),
                    Ok(_) => Err("unexpected data on an idle connection".into()),
                    Err(e) => Err(format!("idle connection: {e}")),
                }
            }
            Established::Tls(s, conn) => crate::tls::check_idle(s, conn),
        };
        if let Err(e) = r {
            shared.error(e);
        }
    }
    drop(idle);
    Ok(finish(&shared, &totals, measure_start, deadline))
}

/// Thread `t`'s share of `--max-ops` (None = no bound).
pub(crate) fn quota(cfg: &LoadConfig, t: usize, threads: usize) -> Option<u64> {
    cfg.max_ops.map(|m| {
        let base = m / threads as u64;
        base + u64::from((t as u64) < m % threads as u64)
    })
}

/// Runs the measurement hook and the progress line until every worker has ended, then
/// joins them and sums their totals.
pub(crate) fn coordinate(
    cfg: &LoadConfig,
    shared: &Shared,
    handles: Vec<std::thread::JoinHandle<Totals>>,
    measure_start: Instant,
    deadline: Instant,
    at_measure_start: &mut dyn FnMut(),
) -> Result<Totals, String> {
    let tty = std::io::stderr().is_terminal();
    let mut hook_done = false;
    let mut next_progress = measure_start + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        let now = Instant::now();
        if !hook_done && now >= measure_start {
            at_measure_start();
            hook_done = true;
        }
        if now >= next_progress && !cfg.progress {
            next_progress += Duration::from_secs(1);
        } else if now >= next_progress {
            let (n, p99) = {
                let h = shared.hist.lock();
                (h.count(), h.quantile(0.99))
            };
            let el = now.duration_since(measure_start).as_secs_f64();
            let line = format!(
                "[{:>4.0}s] {:>10.0} ops/s  p99 {:.3} ms  ops {}  errors {}",
                el,
                n as f64 / el.max(1e-9),
                p99 as f64 / 1e6,
                n,
                shared.errors.lock().0
            );
            if tty {
                eprint!("\r{line}   ");
            } else {
                eprintln!("{line}");
            }
            next_progress += Duration::from_secs(1);
        }
        // Hard bound: a stuck worker is told to stop 10 s after the deadline.
        if now > deadline + Duration::from_secs(10) {
            shared.stop.store(true, Ordering::Relaxed);
        }
        let wake = if hook_done {
            next_progress
        } else {
            measure_start.min(next_progress)
        };
        let nap = wake
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(20));
        std::thread::sleep(nap);
    }
    if !hook_done {
        at_measure_start();
    }
    if cfg.progress && tty {
        eprintln!();
    }
    let mut totals = Totals::default();
    for h in handles {
        let t = h.join().map_err(|_| "load thread panicked".to_string())?;
        totals.hits += t.hits;
        totals.misses += t.misses;
        totals.end = match (totals.end, t.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(totals)
}

/// The figures of the measured window.
pub(crate) fn finish(
    shared: &Shared,
    totals: &Totals,
    measure_start: Instant,
    deadline: Instant,
) -> LoadResult {
    let h = shared.hist.lock();
    let end = totals.end.unwrap_or(deadline).max(measure_start);
    let elapsed = end.duration_since(measure_start);
    let (errors, first_error) = shared.errors.lock().clone();
    let us = |ns: u64| ns as f64 / 1e3;
    LoadResult {
        ops: h.count(),
        elapsed,
        ops_per_sec: h.count() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: us(h.quantile(0.5)),
        p90_us: us(h.quantile(0.9)),
        p99_us: us(h.quantile(0.99)),
        p999_us: us(h.quantile(0.999)),
        max_us: us(h.max()),
        hits: totals.hits,
        misses: totals.misses,
        errors,
        first_error,
    }
}
