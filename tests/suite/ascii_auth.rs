//! memcached's ASCII authentication (`-Y FILE`), on the wire and at start-up, compared
//! with memcached 1.6.18 started by the test on the same file.
use crate::common::*;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

const AUTHFILE: &str = "alice:secret\nbob:pw:with:colons\r\n";

/// Request sequences, each on a fresh connection; one element = one write.
fn scenarios() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let v = |s: &str| s.as_bytes().to_vec();
    let mut big = b"set a 0 0 100000\r\n".to_vec();
    big.resize(big.len() + 40_000, b'y');
    vec![
        (
            "a command before auth",
            vec![v("get foo\r\n"), v("version\r\n")],
        ),
        (
            "right credentials, then commands",
            vec![
                v("set a 0 0 12\r\nalice secret\r\n"),
                v("set k 0 0 1\r\n1\r\nget k\r\n"),
            ],
        ),
        (
            "credentials and commands pipelined",
            vec![v("set a 0 0 12\r\nalice secret\r\nget k\r\nversion\r\n")],
        ),
        (
            "wrong password, refused, then right",
            vec![
                v("set a 0 0 12\r\nalice secreX\r\n"),
                v("version\r\n"),
                v("set a 0 0 12\r\nalice secret\r\n"),
                v("version\r\n"),
            ],
        ),
        (
            "password with colons, CRLF file",
            vec![
                v("set x 1 2 22\r\nbob pw:with:colons\r\n"),
                v("version\r\n"),
            ],
        ),
        ("unknown user", vec![v("set a 0 0 12\r\nmalic secret\r\n")]),
        (
            "one word only",
            vec![v("set a 0 0 5\r\nalice\r\n"), v("version\r\n")],
        ),
        (
            "bad termination",
            vec![v("set a 0 0 12\r\nalice secret\nX"), v("version\r\n")],
        ),
        (
            "bad length",
            vec![v("set a 0 0 x\r\n"), v("set a 0 0 -1\r\n")],
        ),
        (
            "too few words",
            vec![v("set a 0 0\r\n"), v("SET a 0 0 12\r\nalice secret\r\n")],
        ),
        (
            "noreply is not honoured",
            vec![v("set a 0 0 12 noreply\r\nalice secret\r\n")],
        ),
        (
            "extra words and spaces",
            vec![v("set  a 0 0 18\r\nalice secret extra\r\n")],
        ),
        (
            "bare newline line end",
            vec![v("set a 0 0 12\nalice secret\r\nversion\r\n")],
        ),
        ("an empty line", vec![v("\r\nversion\r\n")]),
        (
            "line and data in separate writes",
            vec![
                v("set a 0 0 12\r"),
                v("\n"),
                v("alice secret\r\n"),
                v("version\r\n"),
            ],
        ),
        // memcached reuses one reply slot before authentication: in one batch,
        // each reply replaces the previous one.
        (
            "pipelined refusals share one reply",
            vec![v("get a\r\nget b\r\nget c\r\n")],
        ),
        (
            "a refusal replaced by the success",
            vec![v("get foo\r\nset a 0 0 12\r\nalice secret\r\nversion\r\n")],
        ),
        (
            "a failure replaced by a refusal",
            vec![v("set a 0 0 12\r\nalice secreX\r\nversion\r\n")],
        ),
        (
            "a binary packet is text here",
            vec![vec![0x80, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'\r', b'\n']],
        ),
        ("no newline in 3000 bytes", vec![vec![b'x'; 3000]]),
        ("data block too large for the read buffer", vec![big]),
        (
            "stats after auth",
            vec![
                v("set a 0 0 12\r\nalice secret\r\n"),
                v("stats detail dump\r\n"),
            ],
        ),
    ]
}

fn auth_counters(port: u16) -> (String, String) {
    let mut c = Client::connect(port);
    c.send(b"set a 0 0 12\r\nalice secret\r\n");
    assert_eq!(c.read_until(b"\r\n"), b"STORED\r\n");
    let s = c.stats("");
    let get = |n: &str| {
        s.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    (get("auth_cmds"), get("auth_errors"))
}

#[test]
fn ascii_auth_transcripts_match_memcached() {
    let dir = Scratch::new("ref");
    let file = dir.file("auth", AUTHFILE);
    let Some(mc) = Server::memcached(&["-Y", &file]) else {
        return;
    };
    let ours = Server::ferrocache(&["-Y", &file]);
    let mut differences = Vec::new();
    for (name, steps) in scenarios() {
        let steps: Vec<&[u8]> = steps.iter().map(|s| s.as_slice()).collect();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| transcript(mc.port, &steps));
            let b = s.spawn(|| transcript(ours.port, &steps));
            (a.join().expect("memcached"), b.join().expect("ours"))
        });
        if a != b {
            differences.push(format!(
                "{name}:\n  memcached {:?}\n  ours      {:?}",
                a.iter().map(|(x, c)| (show(x), c)).collect::<Vec<_>>(),
                b.iter().map(|(x, c)| (show(x), c)).collect::<Vec<_>>()
            ));
        }
    }
    assert_eq!(
        auth_counters(mc.port),
        auth_counters(ours.port),
        "auth_cmds/auth_errors"
    );
    println!("{} scenarios compared", scenarios().len());
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn ascii_auth_gates_the_unix_socket_and_bounds_failures() {
    let dir = Scratch::new("unix");
    dir.open_to_all();
    let file = dir.file("auth", AUTHFILE);
    let sock = dir.0.join("sock").to_string_lossy().into_owned();
    let mut args = vec!["-Y", &file, "-s", &sock, "-a", "0777"];
    if is_root() {
        args.extend(["-u", "nobody"]);
    }
    let _srv = Server::with_args(FERROCACHE, &args, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let connect = || loop {
        if let Ok(s) = UnixStream::connect(&sock) {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            return s;
        }
        assert!(Instant::now() < deadline, "unix socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut s = connect();
    let line = |s: &mut UnixStream, req: &[u8]| {
        s.write_all(req).expect("send");
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n") {
            match s.read(&mut b) {
                Ok(1) => got.push(b[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    assert_eq!(
        line(&mut s, b"get k\r\n"),
        "CLIENT_ERROR unauthenticated\r\n"
    );
    assert_eq!(
        line(&mut s, b"set a 0 0 12\r\nalice secret\r\n"),
        "STORED\r\n"
    );
    assert_eq!(line(&mut s, b"set k 0 0 1\r\nv\r\n"), "STORED\r\n");
    // Five failures close the connection (memcached would let it guess forever).
    let mut s = connect();
    for i in 0..5 {
        assert_eq!(
            line(&mut s, b"set a 0 0 11\r\nalice wrong\r\n"),
            "CLIENT_ERROR authentication failure\r\n",
            "attempt {i}"
        );
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed after five failures");
    // The data stored by the first connection is intact.
    let mut s = connect();
    assert_eq!(
        line(&mut s, b"set a 0 0 12\r\nalice secret\r\n"),
        "STORED\r\n"
    );
    assert_eq!(line(&mut s, b"get k\r\n"), "VALUE k 0 1\r\n");
}

/// Starts a server that must fail; (exit code, stderr).
fn start(bin: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["-l", "127.0.0.1", "-p", &free_port().to_string(), "-U", "0"]);
    if is_root() {
        cmd.args(["-u", "nobody"]);
    }
    cmd.args(args);
    let run = run_bounded(&mut cmd, Duration::from_secs(5));
    (run.status.and_then(|s| s.code()), run.stderr)
}

#[test]
fn bad_auth_files_stop_the_server_as_memcached() {
    let dir = Scratch::new("start");
    let missing = dir.0.join("missing").to_string_lossy().into_owned();
    let blank_line = dir.file("blank", "alice:secret\n\nbob:pw\n");
    let no_colon = dir.file("nocolon", "alice\n");
    for f in [&missing, &blank_line, &no_colon] {
        let ours = start(FERROCACHE, &["-Y", f]);
        assert_eq!(ours.0, Some(1), "{f}: {}", ours.1);
        if require_tool(MEMCACHED) {
            assert_eq!(start(MEMCACHED, &["-Y", f]), ours, "{f}");
        }
    }
    // With -B binary, -Y is refused before anything else (exit 64).
    let good = dir.file("good", AUTHFILE);
    let ours = start(FERROCACHE, &["-Y", &good, "-B", "binary"]);
    assert_eq!(ours.0, Some(64));
    if require_tool(MEMCACHED) {
        assert_eq!(start(MEMCACHED, &["-Y", &good, "-B", "binary"]), ours);
    }
}
