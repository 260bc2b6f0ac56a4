//! Chaos (SIGHUP, `flush_all`), the sentinel keeper and the invariant monitor.

use super::state::*;
use crate::textconn::stat_u64;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// SIGHUP every 20 s, flush_all every 60 s (first at 30 s).
pub(super) fn chaos_thread(sh: &Shared) {
    let mut next_hup = sh.start + SIGHUP_EVERY;
    let mut next_flush = sh.start + FLUSH_FIRST;
    while sh.running() {
        let now = Instant::now();
        if now >= next_hup {
            next_hup += SIGHUP_EVERY;
            if let Some(pid) = sh.pid {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP) {
                    Ok(()) => sh.add(&sh.sighups, 1),
                    Err(e) => sh.fail(Fail::Invariant, "chaos", format!("SIGHUP: {e}")),
                }
            }
        }
        if now >= next_flush {
            next_flush += FLUSH_EVERY;
            match flush(sh) {
                Ok(()) => sh.add(&sh.flushes, 1),
                Err(e) => sh.fail(Fail::Error, "chaos", format!("flush_all: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// flush_all, then the sentinel again, with no sentinel read in between.
pub(super) fn flush(sh: &Shared) -> Result<(), String> {
    let mut p = Probe::connect(sh, IO_TIMEOUT)?;
    let _g = sh.sentinel.lock();
    p.c.send(b"flush_all\r\n")?;
    let mut line = Vec::new();
    p.c.read_line(&mut line)?;
    if line != b"OK" {
        return Err(format!("reply {}", show(&line)));
    }
    store_sentinel(&mut p.c)
}

/// Reads the sentinel every 20 ms (keeping it hot and checking it) and samples RSS
/// every 250 ms.
pub(super) fn keeper_thread(sh: &Shared) {
    let mut conn: Option<Probe> = None;
    let mut next_rss = Instant::now();
    while sh.running() {
        if Instant::now() >= next_rss {
            next_rss = Instant::now() + Duration::from_millis(250);
            if let Some(rss) = sh.rss() {
                sh.max_rss.fetch_max(rss, Ordering::Relaxed);
                sh.interval_rss.fetch_max(rss, Ordering::Relaxed);
            }
        }
        if conn.is_none() {
            match Probe::connect(sh, IO_TIMEOUT) {
                Ok(p) => conn = Some(p),
                Err(e) => {
                    sh.fail(Fail::Error, "keeper", e);
                    sleep_while_running(sh, Duration::from_millis(500));
                    continue;
                }
            }
        }
        let mut broken = false;
        if let Some(p) = conn.as_mut() {
            let _g = sh.sentinel.lock();
            if let Err(e) = check_sentinel(sh, &mut p.c, "keeper") {
                sh.fail(Fail::Error, "keeper", e);
                broken = true;
            }
        }
        if broken {
            conn = None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn monitor_thread(sh: &Shared, interval: Duration) {
    let mut next = sh.start + interval;
    loop {
        while Instant::now() < next {
            if !sh.running() {
                return;
            }
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
        if !sh.running() {
            return;
        }
        check_once(sh);
        next += interval;
    }
}

pub(super) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One round of invariant checks, printed as one line.
pub(super) fn check_once(sh: &Shared) {
    // Connection-count window: from now until the stats read below.
    let window = Instant::now();
    sh.held_peak
        .store(sh.held.load(Ordering::Relaxed), Ordering::Relaxed);
    let head = |sh: &Shared| {
        format!(
            "soak t={:.0}s ops={} hits={} misses={} corrupt={} errors={}",
            sh.t(),
            sh.ops.load(Ordering::Relaxed),
            sh.hits.load(Ordering::Relaxed),
            sh.misses.load(Ordering::Relaxed),
            sh.corrupt.load(Ordering::Relaxed),
            sh.errors.load(Ordering::Relaxed)
        )
    };
    if !sh.alive() {
        sh.fail(Fail::Invariant, "monitor", "the server process is gone");
        sh.stop.store(true, Ordering::Relaxed);
        println!("{} server=GONE", head(sh));
        return;
    }
    let mut p = match Probe::connect(sh, Duration::from_secs(2)) {
        Ok(p) => p,
        Err(e) => {
            sh.fail(Fail::Invariant, "monitor", format!("fresh connection: {e}"));
            println!("{} server=UNREACHABLE", head(sh));
            return;
        }
    };
    let mut line = Vec::new();
    let version =
        p.c.send(b"version\r\n")
            .and_then(|()| p.c.read_line(&mut line));
    if version.is_err() || !line.starts_with(b"VERSION ") {
        sh.fail(
            Fail::Invariant,
            "monitor",
            format!("version on a fresh connection: {version:?} {}", show(&line)),
        );
    }
    // ~200 round trips of `get sentinel`, each checked, timed.
    let mut lat = Vec::with_capacity(FRESH_GETS);
    let mut sentinel = "ok";
    {
        let _g = sh.sentinel.lock();
        for _ in 0..FRESH_GETS {
            let t = Instant::now();
            match check_sentinel(sh, &mut p.c, "monitor") {
                Ok(true) => lat.push(t.elapsed()),
                Ok(false) => sentinel = "LOST",
                Err(e) => {
                    sh.fail(Fail::Invariant, "monitor", format!("get sentinel: {e}"));
                    sentinel = "ERROR";
                    break;
                }
            }
        }
    }
    lat.sort_unstable();
    let p99 = pct(&lat, 0.99);
    sh.worst_p99_us
        .fetch_max(p99.as_micros() as u64, Ordering::Relaxed);
    if p99 > FRESH_P99_LIMIT {
        sh.fail(
            Fail::Invariant,
            "monitor",
            format!(
                "fresh client p99 {:.2} ms over {} gets (limit {} ms; p50 {:.2} ms, max {:.2} ms)",
                p99.as_secs_f64() * 1e3,
                lat.len(),
                FRESH_P99_LIMIT.as_millis(),
                pct(&lat, 0.5).as_secs_f64() * 1e3,
                lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
            ),
        );
    }
    // Connections: closes from before `window` had at least CONN_WINDOW to land.
    let wait = CONN_WINDOW.saturating_sub(window.elapsed());
    std::thread::sleep(wait);
    let mut conns = String::from("curr_conns=?");
    let mut extra = String::new();
    match p.c.stats() {
        Ok(st) => {
            let curr = stat_u64(&st, "curr_connections") as i64;
            let peak = sh.held_peak.load(Ordering::Relaxed);
            let others = sh.others.load(Ordering::Relaxed);
            if curr > peak + others + CONN_MARGIN {
                sh.fail(
                    Fail::Invariant,
                    "monitor",
                    format!(
                        "curr_connections {curr} > the soak's {peak} (most held in the last {:.1} s) + {others} others + {CONN_MARGIN}",
                        window.elapsed().as_secs_f64()
                    ),
                );
            }
            conns = format!("curr_conns={curr} held={peak}");
            extra = format!(
                " items={} evictions={} reclaimed={} read_buf_oom={}",
                stat_u64(&st, "curr_items"),
                stat_u64(&st, "evictions"),
                stat_u64(&st, "reclaimed"),
                stat_u64(&st, "read_buf_oom")
            );
        }
        Err(e) => sh.fail(Fail::Invariant, "monitor", format!("stats: {e}")),
    }
    drop(p);
    // Memory: the largest sample since the last check.
    let rss = sh
        .interval_rss
        .swap(0, Ordering::Relaxed)
        .max(sh.rss().unwrap_or(0));
    sh.max_rss.fetch_max(rss, Ordering::Relaxed);
    let rss_text = if sh.pid.is_some() {
        if rss > sh.rss_limit {
            sh.fail(
                Fail::Invariant,
                "monitor",
                format!(
                    "RSS {:.1} MiB over the bound {:.1} MiB",
                    rss as f64 / MIB,
                    sh.rss_limit as f64 / MIB
                ),
            );
        }
        format!("{:.1}MiB", rss as f64 / MIB)
    } else {
        "n/a".into()
    };
    println!(
        "{} {conns} rss={rss_text} fresh_p99={:.2}ms sentinel={sentinel}{extra}",
        head(sh),
        p99.as_secs_f64() * 1e3
    );
}
