//! `soak`: a bounded soak test of one server. Real clients, evictions, expiries, the
//! connection fault patterns of `tests/suite/overload.rs`, SIGHUP and `flush_all` all run at
//! once for `--duration` seconds; a monitor checks the invariants every `--interval`
//! seconds and prints one line per check; the command exits non-zero if any invariant
//! failed at any time. A documented command, not run in CI.
//!
//! By default it starts ferrocache itself (`-t --threads -m --mem -c 4096`, 127.0.0.1,
//! a free port, stopped at the end); `--server HOST:PORT` soaks a running server
//! instead, and `--pid` then enables the SIGHUP, liveness, RSS and descriptor checks.
//!
//! ## Load (every thread stops at the deadline)
//!
//! - **Real clients**: four threads using the project's cluster client
//!   ([`ferrocache::client`]) against the one node: text, binary, meta and a second
//!   text, each paced to 4,000 operations a second (the rest of a small machine is
//!   the server's). Cache-aside over 200,000 Zipf(0.99) keys (`k:<rank>`), values
//!   50 B..8 KiB (log-uniform) so that the default `-m 16` evicts all the time; sets
//!   with a 1–5 s TTL or none; deletes; touches; `get_many` of 10–50 keys; incr/decr
//!   on counter keys each thread owns; over meta also stampede-safe cache-aside (`mg N
//!   R`, `md I`) on keys of its own (`m:<i>`).
//! - **pymemcache** (when `/usr/bin/python3` can import it): one child process doing
//!   get/set/delete with pymemcache's default noreply stores, closing and reopening its
//!   connection every few hundred operations; it must exit 0.
//! - **Faults**, one thread per pattern, each on raw sockets with a bounded number of
//!   connections at once and short pauses: noreply set then FIN; quiet binary SETQ then
//!   FIN; partial line then RST; partial 1 MB value then FIN or RST; half-close after a
//!   noreply request, read until EOF; never-reading clients sending 40 lines of 100-key
//!   multi-gets and holding them for 3 s; a 5,000-key multi-get line read fully;
//!   garbage (random bytes, a bad binary magic after a NOOP, SASL on a server without
//!   it, HTTP, an over-long line).
//! - **Chaos**: SIGHUP every 20 s, `flush_all` every 60 s (the first at 30 s), after
//!   which the sentinel is stored again.
//!
//! ## Invariants
//!
//! - **No corruption.** Every value written encodes its key and a checksum
//!   (`key|len|fnv64 hex|payload`, client flags = the low 32 bits of the checksum), so
//!   every value read (real clients, the 5,000-key multi-get) is verified. Also
//!   corruption: a `get_many` answer for a key not asked for; a counter whose
//!   incr/decr result is not the last value the owning thread saw ± its delta (only
//!   that thread writes it; evictions, expiry and flushes make it missing, never
//!   different); an item stored with a 1 s TTL read back 3.5 s later.
//! - **No unexpected error.** Nothing in this load makes memcached answer an error
//!   (evictions are on, values fit every buffer), and the fault threads use
//!   connections of their own, so any client error is a failure: error replies, I/O
//!   errors and timeouts (5 s), including the ones the cluster client absorbs
//!   (`get_many` and cache-aside fall back silently; seen through its node counters).
//!   Fault threads also fail on a fresh connection not answering, a half-closed
//!   connection or a bad binary magic not closed by the server within a few seconds,
//!   a malformed reply to the 5,000-key multi-get.
//! - **Alive and fast.** The server process exists and answers `version` on a fresh
//!   connection; ~200 `get sentinel` round trips on it have a p99 ≤ 10 ms.
//! - **Sentinel.** A key stored at the start (and after every flush) reads back intact,
//!   checked by the monitor and every 20 ms by a keeper thread (whose reads also keep
//!   it hot, so eviction has no reason to take it). A loss is counted, reported and
//!   the sentinel stored again.
//! - **Memory.** RSS (sampled every 250 ms) ≤ `--mem` + 64 MiB.
//! - **Connections.** Every connection the soak opens is counted while it is open
//!   (before connect until after close; a client thread and the pymemcache child count
//!   as one each). `curr_connections` must stay ≤ the most the soak held during the
//!   last second or more + the others seen at the start + 32; at the end, after all
//!   threads stopped and a settle wait of up to 10 s, it (and, with a pid, the
//!   server's open descriptors) must be exactly the baseline of the start.
//!
//! Output: a line per check (`soak t=35s ops=... corrupt=0 errors=0 curr_conns=57
//! ... sentinel=ok`), a line per failure as it happens, then the summary `soak: <secs>
//! s, <ops> ops, ...: PASS|FAIL`.
mod clients;
mod faults;
mod monitor;
mod pymemcache;
mod state;
mod values;

use crate::servers::{Kind, ServerProc};
use crate::zipf::KeyChooser;
use clients::*;
use faults::*;
use ferrocache::client::Protocol;
use monitor::*;
use pymemcache::*;
use state::*;
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Options of `soak`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit status: 0 when every invariant held for the whole run, 1 \
otherwise (each failure is printed when it happens, and the summary line says FAIL)."
)]
pub struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Memory limit in MiB: the server's `-m`, and the base of the RSS bound.
    #[arg(long, default_value_t = 16)]
    mem: u64,
    /// Worker threads of the server started here (`-t`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Seconds between invariant checks.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Soak this running server (HOST:PORT) instead of starting ferrocache.
    #[arg(long)]
    server: Option<String>,
    /// With --server: its process id, for the SIGHUP, liveness, RSS and descriptor checks.
    #[arg(long, requires = "server")]
    pid: Option<u32>,
}

/// `curr_connections` (seen by a new connection) and the server's open descriptors.
fn probe_counts(sh: &Shared) -> Result<(u64, Option<usize>), String> {
    let mut p = Probe::connect(sh, IO_TIMEOUT)?;
    let st = p.c.stats()?;
    let curr = st
        .get("curr_connections")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or("stats: no curr_connections")?;
    Ok((curr, sh.fds()))
}

/// The counts with nothing of ours open but the probe: two readings 100 ms apart agree.
fn baseline(sh: &Shared) -> Result<(u64, Option<usize>), String> {
    let mut last = probe_counts(sh)?;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        let now = probe_counts(sh)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// Runs `soak`.
pub fn main(args: Args) -> Result<(), String> {
    if args.duration == 0 || args.interval == 0 || args.threads == 0 || args.mem == 0 {
        return Err("--duration, --interval, --threads and --mem must be positive".into());
    }
    let owned = match &args.server {
        Some(_) => None,
        None => Some(ServerProc::start(
            Kind::Ferrocache,
            args.threads,
            args.mem as usize,
            &["-c", "4096"],
            None,
        )?),
    };
    let (addr, pid) = match (&owned, &args.server) {
        (Some(s), _) => (s.addr, Some(s.pid())),
        (None, Some(a)) => (
            a.to_socket_addrs()
                .map_err(|e| format!("--server {a}: {e}"))?
                .next()
                .ok_or_else(|| format!("--server {a}: no address"))?,
            args.pid,
        ),
        (None, None) => return Err("no server".into()),
    };
    let keys = KeyChooser::zipf(KEYS, ZIPF_S)?;
    let sh = Shared::new(
        addr,
        owned.as_ref(),
        pid,
        args.mem,
        Duration::from_secs(args.duration),
    );
    match &owned {
        Some(_) => println!(
            "soak: ferrocache -t {} -m {} -c 4096 on {addr} (pid {}), {} s, checks every {} s",
            args.threads,
            args.mem,
            pid.unwrap_or(0),
            args.duration,
            args.interval
        ),
        None => println!(
            "soak: server {addr} (pid {}), {} s, checks every {} s{}",
            pid.map_or("unknown".into(), |p| p.to_string()),
            args.duration,
            args.interval,
            if pid.is_none() {
                "; no --pid: no SIGHUP, liveness, RSS or descriptor checks"
            } else {
                ""
            }
        ),
    }
    {
        let mut p = Probe::connect(&sh, IO_TIMEOUT)?;
        store_sentinel(&mut p.c)?;
    }
    let (base_curr, base_fds) = baseline(&sh)?;
    // The probe itself was the soak's only connection.
    sh.others.store(base_curr as i64 - 1, Ordering::Relaxed);
    println!(
        "soak: baseline curr_connections {base_curr}{}",
        base_fds.map_or(String::new(), |f| format!(", {f} open descriptors"))
    );
    let python = pymemcache_available();
    if !python {
        println!(
            "soak: notice: /usr/bin/python3 with pymemcache not available; no pymemcache loop"
        );
    }

    std::thread::scope(|s| {
        let sh = &sh;
        let keys = &keys;
        let clients = [
            ("text-1", Protocol::Text),
            ("binary", Protocol::Binary),
            ("meta", Protocol::Meta),
            ("text-2", Protocol::Text),
        ];
        for (i, (name, proto)) in clients.into_iter().enumerate() {
            s.spawn(move || client_thread(sh, name, proto, 1 + i as u64, keys));
        }
        if python {
            s.spawn(move || pymemcache_thread(sh));
        }
        let fast = Duration::from_millis(50);
        s.spawn(move || fault_loop(sh, "noreply+FIN", fast, |r| noreply_then_fin(sh, r)));
        s.spawn(move || fault_loop(sh, "SETQ+FIN", fast, |r| setq_then_fin(sh, r)));
        s.spawn(move || {
            fault_loop(sh, "partial-line+RST", fast, |r| {
                partial_line_then_rst(sh, r)
            })
        });
        s.spawn(move || {
            fault_loop(sh, "partial-1MB", Duration::from_millis(300), |r| {
                partial_value(sh, r)
            })
        });
        s.spawn(move || fault_loop(sh, "half-close", fast, |r| half_close(sh, r)));
        s.spawn(move || {
            fault_loop(sh, "never-reader", Duration::from_millis(500), |r| {
                never_reader(sh, r, keys)
            })
        });
        s.spawn(move || {
            fault_loop(sh, "multiget-5000", Duration::from_secs(1), |r| {
                big_multiget(sh, r)
            })
        });
        s.spawn(move || {
            let mut turn = 0;
            fault_loop(sh, "garbage", Duration::from_millis(20), |r| {
                garbage(sh, r, &mut turn)
            })
        });
        s.spawn(move || chaos_thread(sh));
        s.spawn(move || keeper_thread(sh));
        s.spawn(move || monitor_thread(sh, Duration::from_secs(args.interval)));
    });

    // Everything has stopped. The end state: connections back to the baseline, the
    // sentinel intact, the server alive.
    let secs = sh.t();
    let alive = sh.alive();
    if !alive {
        sh.fail(Fail::Invariant, "end", "the server process is gone");
    }
    // Nothing to wait for when the server is gone.
    let settle = Instant::now() + Duration::from_secs(if alive { 10 } else { 0 });
    let mut last = Err(String::from("not measured"));
    while Instant::now() < settle {
        last = probe_counts(&sh);
        if matches!(&last, Ok(c) if *c == (base_curr, base_fds)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let leaked = match last {
        Ok((curr, fds)) => {
            println!(
                "soak: after the run: curr_connections {curr} (baseline {base_curr}){}",
                match (fds, base_fds) {
                    (Some(f), Some(b)) => format!(", open descriptors {f} (baseline {b})"),
                    _ => String::new(),
                }
            );
            let by_fds = match (fds, base_fds) {
                (Some(f), Some(b)) => f as i64 - b as i64,
                _ => 0,
            };
            let by_curr = curr as i64 - base_curr as i64;
            if by_curr < 0 || by_fds < 0 {
                sh.fail(
                    Fail::Invariant,
                    "end",
                    "fewer connections or descriptors than at the start (a close counted twice?)",
                );
            }
            Some(by_curr.max(by_fds).max(0) as u64)
        }
        Err(e) => {
            sh.fail(Fail::Invariant, "end", format!("counting connections: {e}"));
            None
        }
    };
    match Probe::connect(&sh, IO_TIMEOUT) {
        Ok(mut p) => {
            if let Err(e) = check_sentinel(&sh, &mut p.c, "end") {
                sh.fail(Fail::Invariant, "end", format!("get sentinel: {e}"));
            }
        }
        Err(e) if alive => sh.fail(Fail::Invariant, "end", format!("fresh connection: {e}")),
        Err(_) => {}
    }
    if let Some(rss) = sh.rss() {
        sh.max_rss.fetch_max(rss, Ordering::Relaxed);
    }

    let corrupt = sh.corrupt.load(Ordering::Relaxed);
    let errors = sh.errors.load(Ordering::Relaxed);
    let lost = sh.sentinel_losses.load(Ordering::Relaxed);
    let invariant = sh.invariant.load(Ordering::Relaxed);
    let pass = corrupt == 0 && errors == 0 && lost == 0 && invariant == 0 && leaked == Some(0);
    if !pass {
        let first = sh.first_failures.lock();
        println!(
            "soak: {} failure(s) in all ({invariant} other invariant failure(s)); the first:",
            corrupt + errors + lost + invariant
        );
        for (_, l) in first.iter() {
            println!("  {l}");
        }
    }
    let max_rss = if sh.pid.is_some() {
        format!("{:.1}", sh.max_rss.load(Ordering::Relaxed) as f64 / MIB)
    } else {
        "n/a".into()
    };
    println!(
        "soak: {secs:.0} s, {} ops, {corrupt} corrupt, {errors} errors, {} leaked connections, {lost} sentinel losses, max RSS {max_rss} MiB, worst fresh p99 {:.2} ms, {} SIGHUPs, {} flushes: {}",
        sh.ops.load(Ordering::Relaxed),
        leaked.map_or("?".into(), |l| l.to_string()),
        sh.worst_p99_us.load(Ordering::Relaxed) as f64 / 1e3,
        sh.sighups.load(Ordering::Relaxed),
        sh.flushes.load(Ordering::Relaxed),
        if pass { "PASS" } else { "FAIL" }
    );
    if pass {
        Ok(())
    } else {
        Err("soak: invariants failed".into())
    }
}
