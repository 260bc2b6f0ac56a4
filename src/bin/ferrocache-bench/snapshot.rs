//! `snapshot` subcommand: warm restart and online snapshot figures for ferrocache.
//!
//! 1. Start ferrocache with `-e DIR/cache --snapshot-dir DIR`, store N items
//!    `key:%08d` with `--value-size` byte values (pipelined `set ... noreply`).
//! 2. With `--online-secs S > 0`: run `ferrocache-bench run` (workload (a): 50
//!    connections, 90 % get, 10k keys, 100 B) for S seconds alone, then again while
//!    online snapshots are written back to back; report ops/s and p99 of both.
//! 3. RSS, then SIGUSR1: the save time is from the signal to the process's exit.
//! 4. `dd` of the same size to the same directory (`conv=fsync`): the disk's own
//!    sequential write speed; `dd` read of the snapshot file (page cache as warm as
//!    for the load).
//! 5. Start again with the same `-e`: the load time is from the start to the first
//!    accepted connection (and `restore_duration_ms` of `stats`); RSS after the load;
//!    a spot check of random keys.
//! 6. Hit ratio across a restart (`--hit-ratio-requests`): a cache-aside client
//!    (get; on a miss, set) under memory pressure (`-m 16`, Zipf 0.99 over 200k keys,
//!    200 B values) warms the cache, then the hit ratio of its last quarter of
//!    requests before SIGUSR1 is compared with that of the same number of requests
//!    right after the restart with `-e`.

use crate::textconn::{stat_u64, Conn, SplitMix64};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `snapshot`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Items to store.
    #[arg(long, default_value_t = 10_000_000)]
    items: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Server worker threads (`-t`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Server memory limit in MiB (`-m`); 0 = max(1024, 300 bytes per item).
    #[arg(long, default_value_t = 0)]
    mem: usize,
    /// Directory for the snapshot files (on the disk to measure).
    #[arg(long, default_value = "/tmp")]
    dir: String,
    /// Seconds of workload (a) without and with online snapshots (0: skip).
    #[arg(long, default_value_t = 10.0)]
    online_secs: f64,
    /// Client connections for the fill.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Requests of the cache-aside hit-ratio run before and after a restart (at
    /// `-m 16`, Zipf 0.99 over 200k keys, 200 B values; 0: skip).
    #[arg(long, default_value_t = 300_000)]
    hit_ratio_requests: u64,
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A server process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ferrocache_bin() -> String {
    crate::servers::Kind::Ferrocache.binary()
}

/// Starts ferrocache; returns it and the time until it accepted a connection.
fn start(args: &Args, mem: usize, dir: &str, port: u16) -> Result<(Proc, Duration), String> {
    let t0 = Instant::now();
    let mut cmd = Command::new(ferrocache_bin());
    cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
        .args(["-t", &args.threads.to_string(), "-m", &mem.to_string()])
        .args(["-c", "4096", "-e", &format!("{dir}/cache")])
        .args(["--snapshot-dir", dir])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if nix::unistd::Uid::effective().is_root() {
        cmd.args(["-u", "nobody"]);
    }
    let mut child = Proc(cmd.spawn().map_err(|e| format!("start ferrocache: {e}"))?);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Accepted, and answering (the backlog takes connections during the load).
        if let Ok(mut c) = Conn::connect(addr, Duration::from_secs(120)) {
            if c.stats().is_ok() {
                return Ok((child, t0.elapsed()));
            }
        }
        if let Ok(Some(st)) = child.0.try_wait() {
            return Err(format!("ferrocache exited at start: {st}"));
        }
        if Instant::now() > deadline {
            return Err("ferrocache did not answer within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn value(i: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(format!("{i}:").as_bytes());
    out.resize(size, b'v');
}

fn fill(addr: SocketAddr, n: u64, vsize: usize, conns: usize) -> Result<(), String> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let handles: Vec<_> = (0..conns.max(1))
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = Conn::connect(addr, Duration::from_secs(60))?;
                let (mut buf, mut val, mut line) = (Vec::new(), Vec::new(), Vec::new());
                loop {
                    let start = next.fetch_add(2000, Ordering::Relaxed);
                    if start >= n {
                        return Ok(());
                    }
                    buf.clear();
                    for i in start..(start + 2000).min(n) {
                        value(i, vsize, &mut val);
                        buf.extend_from_slice(
                            format!("set key:{i:08} 0 0 {vsize} noreply\r\n").as_bytes(),
                        );
                        buf.extend_from_slice(&val);
                        buf.extend_from_slice(b"\r\n");
                    }
                    buf.extend_from_slice(b"version\r\n");
                    c.send(&buf)?;
                    c.read_line(&mut line)?;
                    if !line.starts_with(b"VERSION") {
                        return Err(format!("fill: {:?}", String::from_utf8_lossy(&line)));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "fill thread panicked".to_string())??;
    }
    Ok(())
}

/// Runs `ferrocache-bench run` (workload (a)) against `port`; (ops/s, p99 µs).
fn workload_a(port: u16, secs: f64) -> Result<(f64, f64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["run", "--server", &format!("127.0.0.1:{port}")])
        .args(["--conns", "50", "--get-ratio", "0.9", "--keys", "10000"])
        .args(["--value", "100", "--duration", &secs.to_string()])
        .args(["--json", "--quiet"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> Option<f64> {
        let at = text.find(&format!("\"{name}\":"))? + name.len() + 3;
        let rest = &text[at..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].trim().parse().ok()
    };
    match (field("ops_per_sec"), field("p99_us")) {
        (Some(o), Some(p)) => Ok((o, p)),
        _ => Err(format!("run gave no figures: {text}")),
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    Err("the server did not exit".into())
}

/// `dd` with these arguments; its throughput line (bytes/s).
fn dd(args: &[&str]) -> Result<f64, String> {
    let t0 = Instant::now();
    let out = Command::new("dd")
        .args(args)
        .output()
        .map_err(|e| format!("dd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// The `snapshot` subcommand.
pub fn main(args: Args) -> Result<(), String> {
    let dir = format!(
        "{}/ferrocache-bench-snapshot-{}",
        args.dir,
        std::process::id()
    );
    std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
    }
    let mut r = if args.items > 0 {
        run(&args, &dir)
    } else {
        Ok(())
    };
    if r.is_ok() && args.hit_ratio_requests > 0 {
        r = hit_ratio_across_restart(&args, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Cache-aside requests on `c`: hits among them.
fn cache_aside(
    c: &mut Conn,
    keys: &crate::zipf::KeyChooser,
    rng: &mut crate::zipf::Rng,
    n: u64,
) -> Result<u64, String> {
    let (mut line, mut data) = (Vec::new(), Vec::new());
    let mut hits = 0;
    let value = vec![b'h'; 200];
    for _ in 0..n {
        let k = keys.sample(rng);
        c.send(format!("get hr:{k}\r\n").as_bytes())?;
        c.read_line(&mut line)?;
        if line.starts_with(b"VALUE") {
            c.read_exact(value.len() + 2, &mut data)?;
            c.read_line(&mut line)?;
            hits += 1;
        } else {
            let mut req = format!("set hr:{k} 0 0 {}\r\n", value.len()).into_bytes();
            req.extend_from_slice(&value);
            req.extend_from_slice(b"\r\n");
            c.send(&req)?;
            c.read_line(&mut line)?;
        }
    }
    Ok(hits)
}

fn hit_ratio_across_restart(args: &Args, dir: &str) -> Result<(), String> {
    let _ = std::fs::remove_file(format!("{dir}/cache"));
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let keys = crate::zipf::KeyChooser::zipf(200_000, 0.99)?;
    let mut rng = crate::zipf::Rng::new(42);
    let n = args.hit_ratio_requests;
    let tail = (n / 4).max(1);
    let (mut a, _) = start(args, 16, dir, port)?;
    let mut c = Conn::connect(addr, Duration::from_secs(60))?;
    cache_aside(&mut c, &keys, &mut rng, n - tail)?;
    let before = cache_aside(&mut c, &keys, &mut rng, tail)?;
    drop(c);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.0.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    );
    wait_exit(&mut a.0, Duration::from_secs(120))?;
    let (b, _) = start(args, 16, dir, port)?;
    let mut c = Conn::connect(addr, Duration::from_secs(60))?;
    let after = cache_aside(&mut c, &keys, &mut rng, tail)?;
    // The same requests against a cold start, for scale.
    drop(c);
    drop(b);
    let _ = std::fs::remove_file(format!("{dir}/cache"));
    let (cold, _) = start(args, 16, dir, port)?;
    let mut c = Conn::connect(addr, Duration::from_secs(60))?;
    let cold_hits = cache_aside(&mut c, &keys, &mut rng, tail)?;
    drop(c);
    drop(cold);
    let pct = |h: u64| 100.0 * h as f64 / tail as f64;
    println!(
        "hit ratio, cache-aside (-m 16, Zipf 0.99, 200k keys, 200 B), {tail} requests each: \
         before the restart {:.2} %, right after the restart with -e {:.2} % \
         (ratio {:.3}); a cold start {:.2} %",
        pct(before),
        pct(after),
        after as f64 / before.max(1) as f64,
        pct(cold_hits)
    );
    Ok(())
}

fn run(args: &Args, dir: &str) -> Result<(), String> {
    let mem = if args.mem == 0 {
        ((args.items * 300) >> 20).max(1024) as usize
    } else {
        args.mem
    };
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut a, _) = start(args, mem, dir, port)?;
    let t0 = Instant::now();
    fill(addr, args.items, args.value_size, args.conns)?;
    eprintln!(
        "filled {} items in {:.1} s",
        args.items,
        t0.elapsed().as_secs_f64()
    );
    let mut c = Conn::connect(addr, Duration::from_secs(60))?;
    if args.online_secs > 0.0 {
        let (ops0, p99_0) = workload_a(port, args.online_secs)?;
        let stop = Arc::new(AtomicBool::new(false));
        let snaps = {
            let stop = stop.clone();
            std::thread::spawn(move || -> Result<(u32, u64), String> {
                let mut c = Conn::connect(addr, Duration::from_secs(60))?;
                let mut line = Vec::new();
                let (mut n, mut ms) = (0u32, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    c.send(b"snapshot online\r\n")?;
                    c.read_line(&mut line)?;
                    if !line.starts_with(b"OK") {
                        return Err(String::from_utf8_lossy(&line).into_owned());
                    }
                    loop {
                        std::thread::sleep(Duration::from_millis(20));
                        let st = c.stats()?;
                        if stat_u64(&st, "snapshot_in_progress") == 0 {
                            ms += stat_u64(&st, "snapshot_duration_ms");
                            break;
                        }
                    }
                    n += 1;
                }
                Ok((n, ms))
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let (ops1, p99_1) = workload_a(port, args.online_secs)?;
        stop.store(true, Ordering::Relaxed);
        let (n, ms) = snaps
            .join()
            .map_err(|_| "snapshot thread panicked".to_string())??;
        println!(
            "workload (a), {} s each: without snapshots {:.0} ops/s p99 {:.0} µs; \
             during {} online snapshots (mean {} ms each) {:.0} ops/s p99 {:.0} µs; \
             ratios: ops/s {:.3}, p99 {:.3}",
            args.online_secs,
            ops0,
            p99_0,
            n,
            ms / u64::from(n.max(1)),
            ops1,
            p99_1,
            ops1 / ops0,
            p99_1 / p99_0
        );
        let _ = std::fs::remove_file(format!("{dir}/online"));
    }
    std::thread::sleep(Duration::from_secs(1));
    let st = c.stats()?;
    let items_before = stat_u64(&st, "curr_items");
    let rss_before = crate::servers::rss_of(a.0.id());
    drop(c);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.0.id() as i32),
        nix::sys::signal::Signal::SIGUSR1,
    );
    let save = wait_exit(&mut a.0, Duration::from_secs(600))?;
    let file = format!("{dir}/cache");
    let size = std::fs::metadata(&file)
        .map_err(|e| format!("{file}: {e}"))?
        .len();
    let count = size.div_ceil(1 << 20).to_string();
    let dd_file = format!("{dir}/dd");
    let dd_write = dd(&[
        "if=/dev/zero",
        &format!("of={dd_file}"),
        "bs=1M",
        &format!("count={count}"),
        "conv=fsync",
    ])?;
    let _ = std::fs::remove_file(&dd_file);
    let dd_read = dd(&[&format!("if={file}"), "of=/dev/null", "bs=1M"])?;
    let (b, load) = start(args, mem, dir, port)?;
    let mut c = Conn::connect(addr, Duration::from_secs(60))?;
    let st = c.stats()?;
    let loaded = stat_u64(&st, "restore_items_loaded");
    let restore_ms = stat_u64(&st, "restore_duration_ms");
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = crate::servers::rss_of(b.0.id());
    // Spot check: random keys hit with their value.
    let mut rng = SplitMix64::new(7);
    let (mut line, mut data, mut want) = (Vec::new(), Vec::new(), Vec::new());
    let mut hits = 0;
    // Workload (a) rewrote its own 10k keys (key:00000000..): checked above those.
    let low = if args.online_secs > 0.0 {
        10_000.min(args.items / 2)
    } else {
        0
    };
    for _ in 0..2000 {
        let i = low + rng.below(args.items - low);
        c.send(format!("get key:{i:08}\r\n").as_bytes())?;
        c.read_line(&mut line)?;
        if line.starts_with(b"VALUE") {
            c.read_exact(args.value_size + 2, &mut data)?;
            value(i, args.value_size, &mut want);
            if data[..args.value_size] == want[..] {
                hits += 1;
            }
            c.read_line(&mut line)?;
        }
    }
    let mb = mib(size);
    println!(
        "{} items ({} B values), -t {}, -m {mem}: file {mb:.0} MiB\n\
         save (SIGUSR1 to exit) {:.2} s = {:.0} MiB/s; dd write (conv=fsync) {:.2} s = {:.0} MiB/s\n\
         load (start to first reply) {:.2} s, restore_duration_ms {restore_ms} = {:.0} MiB/s; \
         dd read of the file {:.2} s = {:.0} MiB/s\n\
         items: before {items_before}, loaded {loaded}; spot check {hits}/2000 hit with their value\n\
         RSS before the stop {:.0} MiB, after the load {:.0} MiB ({:+.1} %)",
        args.items,
        args.value_size,
        args.threads,
        save.as_secs_f64(),
        mb / save.as_secs_f64(),
        dd_write,
        mb / dd_write,
        load.as_secs_f64(),
        mb / (restore_ms.max(1) as f64 / 1000.0),
        dd_read,
        mb / dd_read,
        mib(rss_before),
        mib(rss_after),
        (rss_after as f64 / rss_before.max(1) as f64 - 1.0) * 100.0
    );
    drop(b);
    Ok(())
}
