//! Server processes for comparisons: start memcached or ferrocache on 127.0.0.1 with a
//! free port, optionally pinned to given CPUs, read their CPU time and RSS from /proc,
//! and stop them (SIGTERM, then SIGKILL) when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The reference, `/usr/bin/memcached` (or `MEMCACHED` from the environment).
    Memcached,
    /// ferrocache, from the same directory as this binary (or `FERROCACHE`).
    Ferrocache,
}

impl Kind {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Memcached => "memcached",
            Kind::Ferrocache => "ferrocache",
        }
    }

    /// Path of the binary.
    pub fn binary(self) -> String {
        match self {
            Kind::Memcached => {
                std::env::var("MEMCACHED").unwrap_or_else(|_| "/usr/bin/memcached".into())
            }
            Kind::Ferrocache => std::env::var("FERROCACHE").unwrap_or_else(|_| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.join("ferrocache")))
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "ferrocache".into())
            }),
        }
    }
}

/// A running server; stopped when dropped.
pub struct ServerProc {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
}

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it next).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

impl ServerProc {
    /// Starts `kind` with `-t threads -m mem_mb` plus `extra` flags on 127.0.0.1, pinned
    /// to `cpus` (a taskset list such as "1" or "0,1"; None = unpinned). Waits until it
    /// accepts connections (at most 10 s).
    pub fn start(
        kind: Kind,
        threads: usize,
        mem_mb: usize,
        extra: &[&str],
        cpus: Option<&str>,
    ) -> Result<ServerProc, String> {
        Self::start_as(kind, threads, mem_mb, extra, cpus, "nobody")
    }

    /// Like [`ServerProc::start`], with `-u user` instead of `-u nobody` when running as
    /// root (`root` for servers that must read files only root can read, such as the
    /// TLS key of `compare --tls`).
    pub fn start_as(
        kind: Kind,
        threads: usize,
        mem_mb: usize,
        extra: &[&str],
        cpus: Option<&str>,
        user: &str,
    ) -> Result<ServerProc, String> {
        let port = free_port()?;
        let bin = kind.binary();
        let mut args: Vec<String> = vec![
            "-l".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-U".into(),
            "0".into(),
            "-t".into(),
            threads.to_string(),
            "-m".into(),
            mem_mb.to_string(),
            "-c".into(),
            "4096".into(),
        ];
        if is_root() {
            args.push("-u".into());
            args.push(user.into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cmd = match cpus {
            Some(list) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(list).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().map_err(|e| format!("start {bin}: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = ServerProc { addr, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Ok(s);
            }
            if let Ok(Some(st)) = s.child.try_wait() {
                return Err(format!("{bin} exited at start: {st}"));
            }
            if Instant::now() > deadline {
                return Err(format!("{bin} did not listen on {addr} within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Process id (taskset execs the server, so this is the server's pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU time consumed so far, from /proc/PID/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may contain spaces) start after ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let hz = clock_ticks_per_second();
        Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / hz as f64)
    }

    /// Resident set size in bytes, from /proc/PID/status.
    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.pid())
    }
}

/// Kernel clock ticks per second (USER_HZ): 100 on Linux.
fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|v| v as u64)
        .unwrap_or(100)
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pins the calling process (all its threads created afterwards) to the given CPUs.
pub fn pin_self(cpus: &[usize]) -> Result<(), String> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(|e| e.to_string())?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(|e| e.to_string())
}

/// Resident set size of process `pid` in bytes, from /proc/PID/status (0 if unknown).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
