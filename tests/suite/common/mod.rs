//! Test harness: start ferrocache or the reference memcached on 127.0.0.1 with a port the
//! test picks, talk raw bytes to it, and stop it when the handle drops.

mod skips;
pub mod tls;
pub mod transcripts;

pub use skips::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Path of the ferrocache binary built by cargo for integration tests.
pub const FERROCACHE: &str = env!("CARGO_BIN_EXE_ferrocache");
/// Path of the reference server.
pub const MEMCACHED: &str = "/usr/bin/memcached";

/// The binary tests treat as "ours": `FERRO_TEST_SERVER` or the built ferrocache.
pub fn ferrocache_bin() -> String {
    std::env::var("FERRO_TEST_SERVER").unwrap_or_else(|_| FERROCACHE.to_string())
}

/// True when `FERRO_TEST_SERVER` points the tests at the reference memcached: tests of
/// ferrocache-only behaviour (e.g. `-o debugtime`) then skip.
pub fn targeting_reference() -> bool {
    std::env::var("FERRO_TEST_SERVER").is_ok()
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A free TCP port on 127.0.0.1. Ports are handed out from a per-process range and
/// checked by binding, so parallel tests in one binary never collide.
pub fn free_port() -> u16 {
    if NEXT_PORT.load(Ordering::Relaxed) == 0 {
        // Spread test binaries over the range by pid.
        let base = 20000 + (std::process::id() % 400) as u16 * 100;
        let _ = NEXT_PORT.compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..1000 {
        let p = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let p = if !(20000..=60000).contains(&p) {
            20000 + p % 1000
        } else {
            p
        };
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port found");
}

/// Checks that an external tool exists. Under CI a missing tool fails the test;
/// elsewhere the test is recorded as skipped ([`skip`]) and the caller returns.
pub fn require_tool(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if in_ci() {
        panic!("required tool {path} is missing (CI=true)");
    }
    skip(&format!("{path} not installed"));
    false
}

/// Checks that `python3` can import `module` (e.g. `prometheus_client`). Under CI a
/// missing module fails the test; elsewhere the test is recorded as skipped.
pub fn require_python_module(module: &str) -> bool {
    if !require_tool("/usr/bin/python3") {
        return false;
    }
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if in_ci() {
        panic!("python module {module} is missing (CI=true)");
    }
    skip(&format!("python module {module} not installed"));
    false
}

/// A server process started by a test; killed on drop.
pub struct Server {
    child: Option<Child>,
    /// TCP port it listens on (0 when it listens on a unix socket only).
    pub port: u16,
}

impl Server {
    /// Starts ferrocache on 127.0.0.1 with `args` added. With `FERRO_TEST_SERVER` set
    /// to another binary (e.g. /usr/bin/memcached) the tests run against that instead,
    /// which is how a test is checked against the reference.
    pub fn ferrocache(args: &[&str]) -> Server {
        Self::spawn(&ferrocache_bin(), args, true)
    }

    /// Starts memcached 1.6.18 on 127.0.0.1 with `args` added, or None if it is not
    /// installed (outside CI).
    pub fn memcached(args: &[&str]) -> Option<Server> {
        if !require_tool(MEMCACHED) {
            return None;
        }
        Some(Self::spawn(MEMCACHED, args, false))
    }

    fn spawn(bin: &str, args: &[&str], ours: bool) -> Server {
        // A port checked free can be taken by another process before the server binds
        // it; the server then exits, while the readiness probe may reach the other
        // process. So the server must still be running after it is reachable, or we
        // start it again on another port.
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
            if is_root() {
                cmd.args(["-u", "nobody"]);
            }
            cmd.args(args);
            if ours && std::env::var("RUST_LOG").is_err() {
                cmd.env("RUST_LOG", "warn");
            }
            with_sasl_conf(&mut cmd);
            cmd.stdin(Stdio::null());
            let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
            let mut s = Server {
                child: Some(child),
                port,
            };
            if s.wait_ready_own() {
                return s;
            }
        }
        panic!("{bin} could not be started on a free port");
    }

    /// Waits until the port accepts connections and our child is still alive a
    /// moment later (false: the child exited, e.g. the port was taken).
    fn wait_ready_own(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(30));
                return !self.exited();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("server on port {} did not come up", self.port);
    }

    fn exited(&mut self) -> bool {
        matches!(
            self.child.as_mut().map(|c| c.try_wait()),
            Some(Ok(Some(_))) | None
        )
    }

    /// Starts a server with a full argument list of the test's own (no `-l/-p` added);
    /// `port` says where it will listen, for readiness checks (0: do not wait).
    pub fn with_args(bin: &str, args: &[&str], port: u16) -> Server {
        let mut cmd = Command::new(bin);
        with_sasl_conf(&mut cmd);
        let child = cmd
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let s = Server {
            child: Some(child),
            port,
        };
        if port != 0 {
            s.wait_ready();
        }
        s
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("server on port {} did not come up", self.port);
    }

    /// A new client connection.
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal and waits (bounded) for the exit status.
    pub fn signal_and_wait(&mut self, sig: &str) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status();
        wait_timeout(&mut child, Duration::from_secs(10))
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let r = wait_timeout(&mut child, limit);
        if r.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        r
    }

    /// Resident set size of the server in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// True when the tests run as root (then servers get `-u nobody`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// A raw-bytes client connection with read timeouts.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
}

impl Client {
    /// Connects to 127.0.0.1:port.
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
        Client { stream }
    }

    /// Sends bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads exactly `n` bytes (panics on timeout or close).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.stream.read_exact(&mut buf).expect("read_exact");
        buf
    }

    /// Reads until the reply ends with `end` (e.g. `b"END\r\n"`), bounded by the timeout.
    pub fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !out.ends_with(end) {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!("read_until {:?}: {e}; got {:?}", show(end), show(&out)),
            }
        }
        out
    }

    /// Reads whatever arrives until the connection has been quiet for `quiet`.
    /// Returns the bytes and whether the peer closed.
    pub fn read_quiet(&mut self, quiet: Duration) -> (Vec<u8>, bool) {
        let r = read_quiet_stream(&mut self.stream, quiet, quiet, Duration::from_secs(30));
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .ok();
        r
    }

    /// Sends a request and reads a reply of exactly the expected length, then checks
    /// the bytes.
    pub fn roundtrip(&mut self, req: &[u8], expect: &[u8]) {
        self.send(req);
        let got = self.read_exact(expect.len());
        assert_eq!(show(&got), show(expect), "reply to {:?}", show(req));
    }

    /// Sends a one-line command and returns the single reply line.
    pub fn line(&mut self, req: &str) -> String {
        self.send(req.as_bytes());
        String::from_utf8_lossy(&self.read_until(b"\r\n")).into_owned()
    }

    /// `stats` as name → value pairs.
    pub fn stats(&mut self, group: &str) -> Vec<(String, String)> {
        let cmd = if group.is_empty() {
            "stats\r\n".to_string()
        } else {
            format!("stats {group}\r\n")
        };
        self.send(cmd.as_bytes());
        let raw = self.read_until(b"END\r\n");
        String::from_utf8_lossy(&raw)
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ' ');
                match (it.next(), it.next(), it.next()) {
                    (Some("STAT"), Some(k), Some(v)) => Some((k.to_string(), v.to_string())),
                    _ => None,
                }
            })
            .collect()
    }

    /// One `stats` value.
    pub fn stat(&mut self, name: &str) -> Option<String> {
        self.stats("")
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Bytes shown with `\r\n` visible, for assertion messages.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .replace('\r', "\\r")
        .replace('\n', "\\n\n")
}

/// Output of a child process run with a wall-clock bound.
pub struct Run {
    /// Exit status (None: killed at the time limit).
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `cmd` with an empty standard input, killing it after `limit`; collects stdout
/// and stderr.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Run {
    run_bounded_input(cmd, &[], limit)
}

/// A blocking byte stream whose reads can be bounded in time (a TCP socket, a TLS
/// stream over one).
pub trait TimedRead: Read {
    /// Bounds the next reads by `wait`.
    fn set_read_wait(&mut self, wait: Duration);
}

impl TimedRead for TcpStream {
    fn set_read_wait(&mut self, wait: Duration) {
        self.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .ok();
    }
}

/// Whatever arrives until `quiet` passes with nothing new (bounded by `limit` overall),
/// waiting up to `first` for the first byte. Returns bytes and whether the peer closed.
pub fn read_quiet_stream<S: TimedRead>(
    s: &mut S,
    first: Duration,
    quiet: Duration,
    limit: Duration,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let deadline = Instant::now() + limit;
    let mut wait = first;
    loop {
        s.set_read_wait(wait);
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(k) => {
                out.extend_from_slice(&buf[..k]);
                wait = quiet;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return (out, false)
            }
            Err(_) => return (out, true),
        }
        if Instant::now() > deadline {
            return (out, false);
        }
    }
}

/// Reads exactly `n` bytes, or until the peer closes, or `limit`: the bytes and
/// whether it closed.
pub fn read_n<S: TimedRead>(s: &mut S, n: usize, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let deadline = Instant::now() + limit;
    while got < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_wait(left);
        match s.read(&mut out[got..]) {
            Ok(0) => {
                out.truncate(got);
                return (out, true);
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => break,
            Err(_) => {
                out.truncate(got);
                return (out, true);
            }
        }
    }
    out.truncate(got);
    (out, false)
}

/// Runs `cmd` as `run_bounded` does, but with `input` written to its standard input
/// by a writer thread (`run_bounded` always gives the child a null stdin).
pub fn run_bounded_input(cmd: &mut Command, input: &[u8], limit: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    // A child that exits early closes the pipe: the write error is expected then.
    let t_in = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let mut status = None;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            status = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = t_in.join();
    Run {
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned(),
    }
}

/// A unique scratch directory below the system temp dir (mode 0755), removed with its
/// contents on drop.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    /// A fresh directory named after `tag`, the process and a counter.
    pub fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferrocache-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        set_mode(&dir, 0o755);
        Scratch(dir)
    }

    /// Lets anyone create files in it (a server running as nobody making a unix socket).
    pub fn open_to_all(&self) {
        set_mode(&self.0, 0o777);
    }

    /// Writes `name` (mode 0644, readable by a `-u nobody` server); returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write file");
        set_mode(&p, 0o644);
        p.to_string_lossy().into_owned()
    }

    /// The path of `name` inside, as a string.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// chmod.
pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Sends each step (one write each) on one connection and collects what came back
/// after it, and whether the server then closed (which ends the transcript).
pub fn transcript<S: AsRef<[u8]>>(port: u16, steps: &[S]) -> Vec<(Vec<u8>, bool)> {
    let mut c = Client::connect(port);
    let mut out = Vec::new();
    for step in steps {
        if c.stream.write_all(step.as_ref()).is_err() {
            out.push((Vec::new(), true));
            break;
        }
        let (bytes, closed) = read_quiet_stream(
            &mut c.stream,
            Duration::from_millis(400),
            Duration::from_millis(60),
            Duration::from_secs(10),
        );
        out.push((bytes, closed));
        if closed {
            break;
        }
    }
    out
}

/// Cyrus' sasldb tool, which memcached's SASL reads its users from.
pub const SASLPASSWD2: &str = "/usr/sbin/saslpasswd2";

thread_local! {
    /// The directory [`memcached_sasl_setup`] prepared for the servers the calling
    /// test starts. Kept per test (libtest runs each test on a thread of its own), not
    /// in the process's environment: every test of the suite shares that, and two tests
    /// setting SASL up at once would hand their servers each other's sasldb.
    static SASL_CONF_PATH: std::cell::RefCell<Option<std::path::PathBuf>> =
        const { std::cell::RefCell::new(None) };
}

/// Gives `cmd` the `SASL_CONF_PATH` the calling test set up, if any.
fn with_sasl_conf(cmd: &mut Command) {
    SASL_CONF_PATH.with(|dir| {
        if let Some(dir) = dir.borrow().as_ref() {
            cmd.env("SASL_CONF_PATH", dir);
        }
    });
}

/// Sets memcached 1.6.18's SASL up for the servers the calling test starts after it
/// (on the same thread, through [`Server`]): a fresh sasldb in `dir` holding
/// `user`/`pass`, `mech_list: plain`, and `SASL_CONF_PATH` pointing at `dir` in their
/// environment. False where memcached or saslpasswd2 is missing (outside CI).
pub fn memcached_sasl_setup(dir: &Scratch, user: &str, pass: &str) -> bool {
    if !require_tool(MEMCACHED) || !require_tool(SASLPASSWD2) {
        return false;
    }
    let db = dir.0.join("memcached-sasldb2");
    dir.file(
        "memcached.conf",
        &format!("mech_list: plain\nsasldb_path: {}\n", db.display()),
    );
    let mut child = Command::new(SASLPASSWD2)
        .args(["-a", "memcached", "-c", "-p", "-f"])
        .arg(&db)
        .arg(user)
        .stdin(Stdio::piped())
        .spawn()
        .expect("saslpasswd2");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pass.as_bytes())
        .expect("password to saslpasswd2");
    assert!(child.wait().expect("saslpasswd2").success());
    set_mode(&db, 0o644);
    SASL_CONF_PATH.with(|d| *d.borrow_mut() = Some(dir.0.clone()));
    true
}

/// A binary-protocol request packet: `op`, `key`, `extras`, `value`, `opaque` (no CAS).
pub fn binary_request(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut p = vec![0x80, op];
    p.extend_from_slice(&(key.len() as u16).to_be_bytes());
    p.push(extras.len() as u8);
    p.extend_from_slice(&[0, 0, 0]);
    p.extend_from_slice(&(body as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(key);
    p.extend_from_slice(value);
    p
}

/// Largest RSS of `pid` sampled every 20 ms while `work` runs (and once after).
pub fn peak_rss_during<T>(pid: u32, work: impl FnOnce() -> T) -> (T, u64) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let sampler = std::thread::spawn(move || {
        let mut peak = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !st.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            peak = peak.max(rss_of(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    });
    let out = work();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0).max(rss_of(pid));
    (out, peak)
}

/// Resident set size of `pid` in bytes (`VmRSS` of /proc/<pid>/status).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
