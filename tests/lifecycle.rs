//! Process lifecycle: signals, pid file, unix socket, connection limit, flag errors,
//! `--config`, `-o debugtime`, `version`, `shutdown`, running as root.
mod common;
use common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Exit of a process run to completion with a bound.
#[derive(Debug)]
struct Exited {
    code: Option<i32>,
    stderr: String,
}

impl Exited {
    fn first_line(&self) -> &str {
        self.stderr.lines().next().unwrap_or("")
    }
}

/// Runs `bin args`, expecting it to exit within `limit`; None (and killed) if it did not.
fn run_to_exit(bin: &str, args: &[String], limit: Duration) -> Option<Exited> {
    let run = run_bounded(Command::new(bin).args(args), limit);
    run.status.map(|s| Exited {
        code: s.code(),
        stderr: run.stderr,
    })
}

/// `-l LISTEN -p PORT -U 0`, plus `-u nobody` when root (and `with_user`).
fn base_args(listen: &str, port: u16, with_user: bool) -> Vec<String> {
    let mut v: Vec<String> = ["-l", listen, "-p", &port.to_string(), "-U", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if with_user && is_root() {
        v.push("-u".into());
        v.push("nobody".into());
    }
    v
}

fn tmp_path(tag: &str) -> String {
    format!("/tmp/ferro-it-{}-{}-{tag}", std::process::id(), free_port())
}

/// Removes a temporary file when dropped, also when the test panics.
struct TempFile(String);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends `get big` for a ~900 KB value, signals the server and reads the reply after
/// the signal: the reply arrives whole and the server exits 0.
fn signal_flushes_and_exits_zero(sig: &str) {
    let mut server = Server::ferrocache(&[]);
    let big: Vec<u8> = (0..900_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut c = server.connect();
    let mut req = format!("set big 0 0 {}\r\n", big.len()).into_bytes();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n");
    c.roundtrip(&req, b"STORED\r\n");

    let mut r = server.connect();
    r.send(b"get big\r\n");
    std::thread::sleep(Duration::from_millis(150));
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut got = Vec::new();
        let _ = r.stream.read_to_end(&mut got);
        got
    });
    let t = Instant::now();
    let status = server.signal_and_wait(sig);
    let elapsed = t.elapsed();
    let got = reader.join().expect("reader");
    let mut want = format!("VALUE big 0 {}\r\n", big.len()).into_bytes();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"\r\nEND\r\n");
    println!(
        "SIG{sig}: exit {status:?} after {elapsed:?}, reply {} bytes",
        got.len()
    );
    let status = status.unwrap_or_else(|| panic!("no exit within 10 s of SIG{sig}"));
    assert_eq!(status.code(), Some(0), "exit status after SIG{sig}");
    assert_eq!(got.len(), want.len(), "in-flight reply cut short");
    assert!(got == want, "in-flight reply corrupted");
}

#[test]
fn sigterm_exits_zero_after_flushing() {
    signal_flushes_and_exits_zero("TERM");
}

#[test]
fn sigint_exits_zero_after_flushing() {
    signal_flushes_and_exits_zero("INT");
}

/// SIGHUP does not stop the server (memcached ignores it too); data and connections
/// survive it.
#[test]
fn sighup_is_survived() {
    let server = Server::ferrocache(&[]);
    let mut c = server.connect();
    c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    for _ in 0..3 {
        let _ = Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_millis(200));
    c.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");
    server
        .connect()
        .roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");
}

#[test]
fn pid_file_holds_the_pid() {
    let path = tmp_path("pid");
    let _cleanup = TempFile(path.clone());
    let server = Server::ferrocache(&["-P", &path]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut content = String::new();
    while Instant::now() < deadline {
        content = std::fs::read_to_string(&path).unwrap_or_default();
        if content.ends_with('\n') {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&path);
    assert_eq!(content.trim(), server.pid().to_string(), "pid file {path}");
}

#[test]
fn unix_socket_with_mask() {
    let path = tmp_path("sock");
    let _cleanup = TempFile(path.clone());
    let mut args: Vec<String> = ["-s", &path, "-a", "0770", "-U", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if is_root() {
        args.extend(["-u".to_string(), "nobody".to_string()]);
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let _server = Server::with_args(&ferrocache_bin(), &args, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        if let Ok(s) = UnixStream::connect(&path) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "unix socket {path} never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mode = std::fs::metadata(&path)
        .expect("socket file")
        .permissions()
        .mode()
        & 0o777;
    stream
        .write_all(b"set u 5 0 3\r\nabc\r\nget u\r\n")
        .expect("send");
    let want = b"STORED\r\nVALUE u 5 3\r\nabc\r\nEND\r\n";
    let mut got = vec![0; want.len()];
    stream.read_exact(&mut got).expect("reply");
    drop(_server);
    let _ = std::fs::remove_file(&path);
    assert_eq!(show(&got), show(want));
    assert_eq!(mode, 0o770, "socket mode {mode:o}");
}

#[test]
fn connection_limit_rejects_with_error() {
    // memcached sets RLIMIT_NOFILE to -c and reserves descriptors for itself, so a tiny
    // -c cannot even start it; against the reference, a larger -c shows the same shape.
    let (args, expect_ok): (&[&str], Option<usize>) = if targeting_reference() {
        (&["-c", "40", "-t", "1"], None)
    } else {
        (&["-c", "3"], Some(3))
    };
    let server = Server::ferrocache(args);
    // Let the server notice that the readiness probe's connection closed.
    std::thread::sleep(Duration::from_millis(300));
    let mut open = Vec::new();
    let mut rejected_at = None;
    for i in 0..45 {
        let mut c = server.connect();
        let (bytes, closed) = c.read_quiet(Duration::from_millis(150));
        if !bytes.is_empty() || closed {
            assert_eq!(show(&bytes), show(b"ERROR Too many open connections\r\n"));
            let (rest, closed) = c.read_quiet(Duration::from_millis(500));
            assert!(rest.is_empty() && closed, "rejected connection not closed");
            rejected_at = Some(i);
            break;
        }
        open.push(c);
    }
    let rejected_at = rejected_at.expect("no connection was rejected");
    println!("first rejected connection: #{}", rejected_at + 1);
    match expect_ok {
        Some(n) => assert_eq!(rejected_at, n, "connections accepted before the limit"),
        None => assert!(rejected_at >= 3),
    }
    for c in open.iter_mut().take(3) {
        assert!(c.line("version\r\n").starts_with("VERSION "));
    }
    let rejected: u64 = open[0]
        .stat("rejected_connections")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(rejected >= 1, "rejected_connections = {rejected}");
}

#[test]
fn bad_flags_exit_nonzero_like_memcached() {
    if !require_tool(MEMCACHED) {
        return;
    }
    // (flags, whether ferrocache matches memcached's exit code and first stderr line)
    let cases: &[(&[&str], bool)] = &[
        (&["-c", "0"], true),
        (&["-t", "0"], true),
        (&["-B", "http"], true),
        (&["-I", "1000"], true),
        (&["-I", "256m", "-m", "64"], true),
        (&["-l", "fooble"], false),
    ];
    for (flags, exact) in cases {
        let listen = if flags.contains(&"-l") {
            "fooble"
        } else {
            "127.0.0.1"
        };
        let rest: Vec<&str> = if listen == "fooble" { &[] } else { *flags }.to_vec();
        let mut args = base_args(listen, free_port(), true);
        args.extend(rest.iter().map(|s| s.to_string()));
        let mc = run_to_exit(MEMCACHED, &args, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("memcached {flags:?} kept running"));
        let ours = run_to_exit(&ferrocache_bin(), &args, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("ferrocache {flags:?} kept running"));
        println!(
            "{flags:?}: memcached {:?} {:?} / ours {:?} {:?}",
            mc.code,
            mc.first_line(),
            ours.code,
            ours.first_line()
        );
        assert_ne!(mc.code, Some(0), "memcached {flags:?}");
        assert_ne!(ours.code, Some(0), "ferrocache {flags:?} exit");
        assert!(
            ours.code.is_some(),
            "ferrocache {flags:?} killed by a signal"
        );
        assert!(
            !ours.stderr.trim().is_empty(),
            "ferrocache {flags:?} printed no error"
        );
        if *exact {
            assert_eq!(ours.code, mc.code, "exit code for {flags:?}");
            assert_eq!(ours.first_line(), mc.first_line(), "message for {flags:?}");
        }
    }
}

#[test]
fn root_without_user_flag_refuses_like_memcached() {
    if !is_root() {
        eprintln!("NOTICE: not root; skipping");
        return;
    }
    if !require_tool(MEMCACHED) {
        return;
    }
    let args = base_args("127.0.0.1", free_port(), false);
    let mc = run_to_exit(MEMCACHED, &args, Duration::from_secs(5)).expect("memcached exits");
    let ours = run_to_exit(&ferrocache_bin(), &args, Duration::from_secs(5))
        .expect("ferrocache exits when run as root without -u");
    println!(
        "root without -u: memcached {:?} {:?} / ours {:?} {:?}",
        mc.code,
        mc.first_line(),
        ours.code,
        ours.first_line()
    );
    assert_eq!(ours.code, mc.code);
    assert_eq!(ours.first_line(), mc.first_line());
}

#[test]
fn config_file_sets_port_and_settings() {
    if targeting_reference() {
        eprintln!("NOTICE: --config is ferrocache-only; skipping");
        return;
    }
    let port = free_port();
    let path = tmp_path("conf");
    let _cleanup = TempFile(path.clone());
    let mut conf = format!(
        "# memcached default config file\n\
         # comments and blank lines are ignored\n\
         \n\
         # memory\n\
         -m 32\n\
         \n\
         -p {port}\n\
         -U 0\n\
         -l 127.0.0.1\n\
         -c 100\n"
    );
    if is_root() {
        conf.push_str("-u nobody\n");
    }
    std::fs::write(&path, conf).expect("write config");
    let server = Server::with_args(&ferrocache_bin(), &["--config", &path], port);
    let _ = std::fs::remove_file(&path);
    let mut c = server.connect();
    assert!(c.line("version\r\n").starts_with("VERSION "));
    let settings = c.stats("settings");
    let get = |k: &str| {
        settings
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(get("maxbytes"), (32u64 << 20).to_string(), "{settings:?}");
    assert_eq!(get("maxconns"), "100", "{settings:?}");
    assert_eq!(get("tcpport"), port.to_string(), "{settings:?}");
}

#[test]
fn debugtime_moves_the_clock_only_when_enabled() {
    let plain = Server::ferrocache(&[]);
    let mut c = plain.connect();
    assert_eq!(c.line("debugtime 101\r\n"), "ERROR\r\n");
    drop(plain);
    if targeting_reference() {
        eprintln!("NOTICE: -o debugtime is ferrocache-only; skipping the rest");
        return;
    }
    let server = Server::ferrocache(&["-o", "debugtime"]);
    let mut c = server.connect();
    c.roundtrip(b"set t 0 100 2\r\nhi\r\n", b"STORED\r\n");
    c.roundtrip(b"get t\r\n", b"VALUE t 0 2\r\nhi\r\nEND\r\n");
    let reply = c.line("debugtime 101\r\n");
    assert!(
        !reply.starts_with("ERROR") && !reply.contains("_ERROR"),
        "debugtime reply {reply:?}"
    );
    c.roundtrip(b"get t\r\n", b"END\r\n");
}

#[test]
fn version_is_one_six_or_later() {
    let server = Server::ferrocache(&[]);
    let mut c = server.connect();
    let line = c.line("version\r\n");
    let body = line
        .strip_prefix("VERSION ")
        .and_then(|v| v.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("version reply {line:?}"));
    assert!(!body.contains(' '), "extra words in {line:?}");
    let nums: Vec<u32> = body
        .split('.')
        .take(2)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    assert!(
        nums.len() == 2 && (nums[0], nums[1]) >= (1, 6),
        "version {body:?} is not 1.6 or later"
    );
}

#[test]
fn shutdown_needs_enable_flag() {
    let server = Server::ferrocache(&[]);
    let mut c = server.connect();
    assert_eq!(c.line("shutdown\r\n"), "ERROR: shutdown not enabled\r\n");
    assert!(c.line("version\r\n").starts_with("VERSION "));

    let mut server = Server::ferrocache(&["-A"]);
    let mut c = server.connect();
    c.send(b"shutdown\r\n");
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("server exits after shutdown");
    assert_eq!(status.code(), Some(0), "exit status after shutdown");
    let (rest, closed) = c.read_quiet(Duration::from_millis(500));
    println!("after shutdown the client got {:?}", show(&rest));
    assert!(closed, "connection not closed by shutdown");
}
