//! Interoperability with real clients: libmemcached's `memccapable` conformance checker,
//! pymemcache and pylibmc (text protocol), each driven against a fresh server.
use crate::common;
use crate::common::*;

use std::process::Command;
use std::time::Duration;

const MEMCAPABLE: &str = "/usr/bin/memccapable";
const PYTHON: &str = "/usr/bin/python3";
/// Exit status the python scripts use when their client module is missing.
const SKIP_STATUS: i32 = 77;

/// memcapable prints each test name padded to 40 columns on stdout, then `[pass]\n`
/// there, or `[FAIL]` on stderr (so a failed test's field runs into the next name).
/// Returns (name, passed) for every test that started.
fn memcapable_results(stdout: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = stdout;
    while rest.starts_with("ascii ") || rest.starts_with("binary ") {
        let Some(name) = rest.get(..40) else { break };
        let tail = &rest[40..];
        let ok = tail.starts_with("[pass]\n");
        out.push((name.trim_end().to_string(), ok));
        rest = if ok { &tail["[pass]\n".len()..] } else { tail };
    }
    out
}

#[test]
fn memcapable_ascii_passes_all_27() {
    if !require_tool(MEMCAPABLE) {
        return;
    }
    let server = Server::ferrocache(&[]);
    let run = run_bounded(
        Command::new(MEMCAPABLE).args([
            "-a",
            "-h",
            "127.0.0.1",
            "-p",
            &server.port.to_string(),
            "-t",
            "2",
        ]),
        Duration::from_secs(120),
    );
    let results = memcapable_results(&run.stdout);
    let pass = results.iter().filter(|(_, ok)| *ok).count();
    let failing: Vec<&str> = results
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n.as_str())
        .collect();
    println!(
        "memcapable ascii: {pass} passed, {} failed",
        27 - pass.min(27)
    );
    assert!(
        run.status.is_some(),
        "memccapable did not finish in time\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        (results.len(), pass),
        (27, 27),
        "failing: {failing:?}\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.status.map(|s| s.success()).unwrap_or(false),
        "memccapable exit {:?}\n{}",
        run.status,
        run.stderr
    );
}

/// Runs one of the python client scripts against a fresh server.
fn python_client(script: &str) {
    if !require_tool(PYTHON) {
        return;
    }
    let server = Server::ferrocache(&[]);
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = run_bounded(
        Command::new(PYTHON).args([path.as_str(), "127.0.0.1", &server.port.to_string()]),
        Duration::from_secs(60),
    );
    print!("{}", run.stdout);
    eprint!("{}", run.stderr);
    let code = run.status.and_then(|s| s.code());
    if code == Some(SKIP_STATUS) {
        if in_ci() {
            panic!("{script}: python client module missing under CI");
        }
        common::skip(&format!("{script}: client module not installed"));
        return;
    }
    assert!(run.status.is_some(), "{script} did not finish in 60 s");
    let summary = run
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or("");
    assert!(
        code == Some(0) && summary.ends_with(" 0 failed"),
        "{script} exit {code:?}, summary {summary:?}\n{}{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn pymemcache_round_trips() {
    python_client("pymemcache_check.py");
}

#[test]
fn pylibmc_text_round_trips() {
    python_client("pylibmc_check.py");
}
