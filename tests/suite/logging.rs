//! What the server prints on stderr, compared with memcached 1.6.18 where memcached
//! prints something comparable: the start-up facts at `-v`/`-vv`, `verbosity` raising
//! and lowering the level at run time, the stop messages of SIGTERM and SIGUSR1, the
//! SIGHUP reload of `-Y`.
use crate::common::*;

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server started by the test with stderr captured (and `RUST_LOG` unset, so the
/// server's own `-v`/`verbosity` decides what is printed). Killed on drop.
struct Logged {
    child: Option<Child>,
    port: u16,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Logged {
    /// `bin -l 127.0.0.1 -p PORT -U 0 [-u nobody] args...`, ready to serve.
    fn start(bin: &str, args: &[&str]) -> Logged {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(bin);
            cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
            if is_root() {
                cmd.args(["-u", "nobody"]);
            }
            let mut child = cmd
                .args(args)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
            let mut pipe = child.stderr.take().expect("piped stderr");
            let stderr = Arc::new(Mutex::new(String::new()));
            let sink = stderr.clone();
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
            let mut s = Logged {
                child: Some(child),
                port,
                stderr,
                reader: Some(reader),
            };
            if s.wait_ready() {
                return s;
            }
        }
        panic!("{bin} could not be started on a free port");
    }

    /// Both servers when memcached is installed and we are not aimed at it already.
    fn both(args: &[&str]) -> Vec<(&'static str, Logged)> {
        let mut v = vec![("ferrocache", Logged::start(&ferrocache_bin(), args))];
        if !targeting_reference() && require_tool(MEMCACHED) {
            v.push(("memcached", Logged::start(MEMCACHED, args)));
        }
        v
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_)))) {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("server on port {} did not come up", self.port);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// Everything printed so far.
    fn text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Polls until stderr holds a line for which `pred` is true, within `limit`.
    fn wait_line(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        for _ in 0..10_000 {
            if self.text().lines().any(&pred) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until stderr has stayed unchanged for `quiet` (bounded by 5 s); returns
    /// what it printed from byte `from` on.
    fn settle(&self, from: usize, quiet: Duration) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.text().len();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.text().len();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        self.text().get(from..).unwrap_or("").to_string()
    }

    /// Sends `kill -SIG` and waits (bounded) for the exit; then all of stderr.
    fn signal_and_wait(&mut self, sig: &str) -> (Option<ExitStatus>, String) {
        let Some(mut child) = self.child.take() else {
            return (None, self.text());
        };
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut status = None;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                status = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.text())
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// `<FD server listening (PROTOCOL)`, memcached's `-vv` line for a listener.
fn is_listening_line(line: &str, protocol: &str) -> bool {
    line.strip_prefix('<')
        .and_then(|r| r.split_once(' '))
        .is_some_and(|(fd, rest)| {
            fd.parse::<u32>().is_ok() && rest == format!("server listening ({protocol})")
        })
}

const WAIT: Duration = Duration::from_secs(5);

/// At `-v` the start-up facts: version, listeners, threads, memory, protocol, how
/// clients authenticate. Nothing at all without `-v` (as memcached, which prints
/// nothing at start-up below `-vv`).
#[test]
fn startup_facts_at_v() {
    let quiet = Logged::start(&ferrocache_bin(), &[]);
    let printed = quiet.settle(0, Duration::from_millis(300));
    assert_eq!(printed, "", "printed without -v");
    drop(quiet);

    let s = Logged::start(
        &ferrocache_bin(),
        &["-v", "-t", "3", "-m", "32", "-c", "500"],
    );
    let port = s.port;
    let want: Vec<String> = vec![
        format!("listening on tcp:127.0.0.1:{port} (auto-negotiate)"),
        "3 worker threads, at most 500 connections, 20 requests per turn".into(),
        "memory limit 32 MiB, largest item 1 MiB, evictions on, CAS on, connection buffers 32 MiB"
            .into(),
        "protocol auto-negotiate".into(),
        "authentication: none".into(),
    ];
    assert!(
        s.wait_line(WAIT, |l| l == "authentication: none"),
        "start-up facts missing: {}",
        s.text()
    );
    let text = s.text();
    println!("ferrocache -v:\n{text}");
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.starts_with("ferrocache ")
            && first.contains("(memcached 1.6.18 compatible)")
            && first.ends_with(&format!("pid {}", s.pid())),
        "version line {first:?}"
    );
    for w in &want {
        assert!(text.lines().any(|l| l == w), "no {w:?} in:\n{text}");
    }
    assert!(
        !text.lines().any(|l| is_listening_line(l, "auto-negotiate")),
        "-vv line at -v:\n{text}"
    );
    drop(s);

    // -Y: text only, and the file named.
    let dir = Scratch::new("logging-y");
    let file = dir.file("auth", "alice:pw\nbob:pw2\n");
    let s = Logged::start(&ferrocache_bin(), &["-v", "-Y", &file, "-M", "-C"]);
    let want_auth =
        format!("authentication: ASCII tokens (-Y {file}), 2 entries; SIGHUP reloads the file");
    assert!(s.wait_line(WAIT, |l| l == want_auth), "{}", s.text());
    let text = s.text();
    assert!(text.lines().any(|l| l == "protocol ascii"), "{text}");
    assert!(text.contains("evictions off, CAS off"), "{text}");
}

/// At `-vv` memcached prints `<FD server listening (auto-negotiate)` for each listener
/// (after its slab classes); so do we (after our store's layout), and neither prints it
/// at `-v`.
#[test]
fn listening_lines_at_vv_like_memcached() {
    for (name, s) in Logged::both(&["-vv"]) {
        assert!(
            s.wait_line(WAIT, |l| is_listening_line(l, "auto-negotiate")),
            "{name} -vv:\n{}",
            s.text()
        );
        let n = s
            .text()
            .lines()
            .filter(|l| is_listening_line(l, "auto-negotiate"))
            .count();
        assert_eq!(n, 1, "{name}: one listener, one line");
    }
    for (name, s) in Logged::both(&["-v"]) {
        let printed = s.settle(0, Duration::from_millis(300));
        assert!(
            !printed
                .lines()
                .any(|l| is_listening_line(l, "auto-negotiate")),
            "{name} -v:\n{printed}"
        );
    }
}

/// `verbosity 1` raises the level from 0 and `verbosity 0` lowers it again: SIGTERM then
/// prints memcached's `Exiting normally` only while the level is 1 or more, in both
/// servers.
#[test]
fn verbosity_moves_the_exit_message_like_memcached() {
    // (commands, whether "Exiting normally" is printed on SIGTERM)
    let cases: [(&[&str], bool); 4] = [
        (&[], false),
        (&["verbosity 1\r\n"], true),
        (&["verbosity 1\r\n", "verbosity 0\r\n"], false),
        (&["verbosity 2 noreply\r\n", "verbosity 1\r\n"], true),
    ];
    for (commands, printed) in cases {
        for (name, mut s) in Logged::both(&[]) {
            let mut c = s.connect();
            for cmd in commands {
                if cmd.contains("noreply") {
                    c.send(cmd.as_bytes());
                } else {
                    assert_eq!(c.line(cmd), "OK\r\n", "{name} {cmd:?}");
                }
            }
            // The settings show the level in force (noreply included).
            let level = c
                .stats("settings")
                .into_iter()
                .find(|(k, _)| k == "verbosity")
                .map(|(_, v)| v);
            let want_level = match commands.last() {
                Some(cmd) => cmd.split_whitespace().nth(1).map(str::to_string),
                None => Some("0".into()),
            };
            assert_eq!(level, want_level, "{name} after {commands:?}");
            let (status, text) = s.signal_and_wait("TERM");
            println!("{name} after {commands:?}: {text:?}");
            assert_eq!(status.and_then(|s| s.code()), Some(0), "{name}");
            assert_eq!(
                text.lines().any(|l| l == "Exiting normally"),
                printed,
                "{name} after {commands:?}:\n{text}"
            );
        }
    }
}

/// `verbosity 2` raises the level to debug: a new connection is then logged (memcached:
/// `<FD new auto-negotiating client connection`), and after `verbosity 0` it is not.
/// This is the level a `log::log_enabled!(Level::Debug)` check sees.
#[test]
fn verbosity_raises_to_debug_and_back() {
    for (name, s) in Logged::both(&[]) {
        let mut admin = s.connect();
        let quiet = Duration::from_millis(300);
        let base = s.settle(0, quiet).len();
        let _ = s.connect().line("version\r\n");
        let at0 = s.settle(base, quiet);
        assert_eq!(at0, "", "{name}: a connection logged at verbosity 0");

        assert_eq!(admin.line("verbosity 2\r\n"), "OK\r\n");
        let base = s.settle(0, quiet).len();
        let _ = s.connect().line("version\r\n");
        let at2 = s.settle(base, quiet);
        println!("{name} at verbosity 2, a new connection: {at2:?}");
        assert!(!at2.is_empty(), "{name}: nothing logged at verbosity 2");

        assert_eq!(admin.line("verbosity 0\r\n"), "OK\r\n");
        let base = s.settle(0, quiet).len();
        let _ = s.connect().line("version\r\n");
        let back = s.settle(base, quiet);
        assert_eq!(back, "", "{name}: still logging after verbosity 0");
    }
}

/// SIGUSR1 prints memcached's `Gracefully stopping` at every verbosity and exits 0;
/// SIGTERM prints nothing at verbosity 0.
#[test]
fn stop_messages_like_memcached() {
    for (sig, want) in [("USR1", true), ("TERM", false), ("INT", false)] {
        for (name, mut s) in Logged::both(&[]) {
            let (status, text) = s.signal_and_wait(sig);
            println!("{name} SIG{sig}: {status:?} {text:?}");
            assert_eq!(status.and_then(|s| s.code()), Some(0), "{name} SIG{sig}");
            assert_eq!(
                text.lines().any(|l| l == "Gracefully stopping"),
                want,
                "{name} SIG{sig}:\n{text}"
            );
            if !want {
                assert_eq!(text, "", "{name} SIG{sig} at verbosity 0");
            }
        }
    }
}

/// SIGHUP with `-Y`: the reload is logged at `-v`, a file that fails to load is warned
/// about at every verbosity (memcached says nothing either way) and the old entries
/// stay.
#[test]
fn sighup_reload_is_logged() {
    let dir = Scratch::new("logging-hup");
    let file = dir.file("auth", "alice:one\n");
    let s = Logged::start(&ferrocache_bin(), &["-Y", &file]);
    let hup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &s.pid().to_string()])
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "kill -HUP");
    };
    dir.file("auth", "alice:two\ncarol:three\n");
    hup();
    let quiet = s.settle(0, Duration::from_millis(300));
    assert_eq!(quiet, "", "a good reload logged at verbosity 0");
    let mut c = s.connect();
    c.roundtrip(b"set a 0 0 9\r\nalice two\r\n", b"STORED\r\n");
    assert_eq!(c.line("verbosity 1\r\n"), "OK\r\n");
    hup();
    let want = format!("SIGHUP: reloaded authfile {file}: 2 entries");
    assert!(s.wait_line(WAIT, |l| l == want), "{}", s.text());

    assert_eq!(c.line("verbosity 0\r\n"), "OK\r\n");
    dir.file("auth", "alice:four\nnot an entry\n");
    hup();
    let want = format!(
        "WARNING: SIGHUP: Authfile [{file}] has a malformed entry. Should be \
         'user:password'; keeping the 2 entries loaded before"
    );
    assert!(s.wait_line(WAIT, |l| l == want), "{}", s.text());
    c.roundtrip(b"version\r\n", b"VERSION ");
    let mut fresh = s.connect();
    fresh.roundtrip(b"set a 0 0 11\r\ncarol three\r\n", b"STORED\r\n");
    println!("{}", s.text());
}

/// `shutdown graceful` (with `-A`) is memcached's SIGUSR1: `Gracefully stopping` at
/// every verbosity; plain `shutdown` is its SIGINT: nothing at verbosity 0.
#[test]
fn shutdown_command_messages_like_memcached() {
    for (cmd, want) in [("shutdown graceful\r\n", true), ("shutdown\r\n", false)] {
        for (name, mut s) in Logged::both(&["-A"]) {
            let mut c = s.connect();
            c.send(cmd.as_bytes());
            // `kill -0` sends nothing: this only waits for the exit.
            let (status, text) = s.signal_and_wait("0");
            println!("{name} {cmd:?}: {status:?} {text:?}");
            assert_eq!(status.and_then(|s| s.code()), Some(0), "{name} {cmd:?}");
            assert_eq!(
                text.lines().any(|l| l == "Gracefully stopping"),
                want,
                "{name} {cmd:?}:\n{text}"
            );
        }
    }
}
