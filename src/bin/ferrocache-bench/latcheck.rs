//! `latency-check`: does ferrocache's `stats latency` agree with what a client
//! measures? (issue #17's target: the server's p99 within one histogram bucket of the
//! load generator's p99 less the network round trip.)
//!
//! The workload is chosen so that server time dominates a small reply: multi-gets of
//! `--keys` short absent keys (a ~10 KiB request line, read at once; an `END` reply).
//! One client sends them one at a time, each followed by a `set` whose request is as
//! long as the get's line: the same bytes on the wire, little server work. Its round
//! trip less the server's own time for it (the `set` p50 of `stats latency`) stands
//! for the network round trip of a request that size. ferrocache runs with `-t 1 -o
//! latency_sample=1`, pinned to another core than this process. Bounded by
//! `--requests` and `--max-seconds`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferrocache::latency::bucket_of;

use crate::servers::{self, Kind, ServerProc};

/// Options of `latency-check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Measured multi-gets (and as many reference sets).
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Absent keys per multi-get.
    #[arg(long, default_value_t = 2000)]
    pub keys: usize,
    /// Stop measuring after this many seconds, whatever the count.
    #[arg(long, default_value_t = 60.0)]
    pub max_seconds: f64,
    /// Extra server arguments, split at spaces.
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    pub server_args: String,
    /// Do not pin the server and this process to separate cores.
    #[arg(long)]
    pub no_pin: bool,
}

/// Sends `req`, reads until the reply ends with `end`; the time taken.
fn round_trip(
    s: &mut TcpStream,
    req: &[u8],
    end: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Duration, String> {
    let start = Instant::now();
    s.write_all(req).map_err(|e| e.to_string())?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(end) {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(start.elapsed())
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `stats latency` rows in microseconds, as (`<family>:<quantile>_us`, ns).
fn server_quantiles(s: &mut TcpStream) -> Result<Vec<(String, u64)>, String> {
    let mut buf = Vec::new();
    round_trip(s, b"stats latency\r\n", b"END\r\n", &mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("STAT ")?;
            let (name, v) = rest.split_once(' ')?;
            let us: f64 = v.parse().ok()?;
            Some((name.to_string(), (us * 1000.0).round() as u64))
        })
        .collect())
}

/// Runs the check and prints the table.
pub fn main(a: Args) -> Result<(), String> {
    if a.requests == 0 || a.keys == 0 {
        return Err("--requests and --keys must be above 0".into());
    }
    let cpus = servers_cpus(a.no_pin)?;
    let mut extra: Vec<&str> = vec!["-o", "latency_sample=1"];
    extra.extend(a.server_args.split_whitespace());
    let srv = ServerProc::start(Kind::Ferrocache, 1, 64, &extra, cpus.as_deref())?;
    let mut s = TcpStream::connect(srv.addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut get = b"get".to_vec();
    for i in 0..a.keys {
        get.extend_from_slice(format!(" n{i:x}").as_bytes());
    }
    get.extend_from_slice(b"\r\n");
    // A set whose request is as long as the get's line.
    let set_head = |v: usize| format!("set latency-check:ref 0 0 {v}\r\n");
    let vlen = get
        .len()
        .saturating_sub(set_head(get.len()).len() + 2)
        .max(1);
    let mut set = set_head(vlen).into_bytes();
    set.resize(set.len() + vlen, b'r');
    set.extend_from_slice(b"\r\n");
    let mut buf = Vec::new();
    for _ in 0..200.min(a.requests) {
        round_trip(&mut s, &get, b"END\r\n", &mut buf)?;
        round_trip(&mut s, &set, b"STORED\r\n", &mut buf)?;
    }
    round_trip(&mut s, b"stats reset\r\n", b"RESET\r\n", &mut buf)?;
    let limit = Duration::from_secs_f64(a.max_seconds);
    let started = Instant::now();
    let (mut gets, mut refs) = (Vec::new(), Vec::new());
    while gets.len() < a.requests && started.elapsed() < limit {
        gets.push(round_trip(&mut s, &get, b"END\r\n", &mut buf)?.as_nanos() as u64);
        refs.push(round_trip(&mut s, &set, b"STORED\r\n", &mut buf)?.as_nanos() as u64);
    }
    let server = server_quantiles(&mut s)?;
    let find = |name: &str| {
        server
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("stats latency has no {name}"))
    };
    gets.sort_unstable();
    refs.sort_unstable();
    let rtt = quantile(&refs, 0.5).saturating_sub(find("set:p50_us")?);
    println!(
        "latency-check: {} multi-gets of {} absent keys ({} bytes), one at a time; round \
         trip of a set that size less its server time: p50 {:.1} us",
        gets.len(),
        a.keys,
        get.len(),
        rtt as f64 / 1000.0
    );
    // Two readings of "less the round trip": the round trip's median (a), and its
    // own quantile (b: the reference set's client quantile less its server
    // quantile), which also takes the round trip's tail (scheduling, wake-ups) off.
    println!(
        "{:<8} {:>12} {:>16} {:>8} {:>16} {:>8} {:>12}",
        "", "client us", "(a) -rtt p50 us", "buckets", "(b) -rtt(q) us", "buckets", "server us"
    );
    let (mut p99_a, mut p99_b) = (false, false);
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let c = quantile(&gets, q);
        let est = c.saturating_sub(rtt);
        let rtt_q = quantile(&refs, q).saturating_sub(find(&format!("set:{name}_us"))?);
        let est_q = c.saturating_sub(rtt_q);
        let srv_ns = find(&format!("get:{name}_us"))?;
        let apart = (bucket_of(srv_ns) as i64 - bucket_of(est) as i64).abs();
        let apart_q = (bucket_of(srv_ns) as i64 - bucket_of(est_q) as i64).abs();
        if name == "p99" {
            (p99_a, p99_b) = (apart <= 1, apart_q <= 1);
        }
        println!(
            "{name:<8} {:>12.1} {:>16.1} {apart:>8} {:>16.1} {apart_q:>8} {:>12.1}",
            c as f64 / 1000.0,
            est as f64 / 1000.0,
            est_q as f64 / 1000.0,
            srv_ns as f64 / 1000.0,
        );
    }
    let word = |m: bool| if m { "met" } else { "not met" };
    println!(
        "target (p99 within one bucket of client p99 less the round trip): (a) {}, (b) {}",
        word(p99_a),
        word(p99_b)
    );
    drop(srv);
    Ok(())
}

/// The server's core (the second one allowed) after pinning this process to the first.
fn servers_cpus(no_pin: bool) -> Result<Option<String>, String> {
    if no_pin {
        return Ok(None);
    }
    let set =
        nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_err(|e| e.to_string())?;
    let mut it = (0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false));
    match (it.next(), it.next()) {
        (Some(me), Some(server)) => {
            servers::pin_self(&[me])?;
            Ok(Some(server.to_string()))
        }
        _ => Ok(None),
    }
}
