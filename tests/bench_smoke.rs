//! The benchmark tool runs: `ferrocache-bench run` against a ferrocache started here,
//! and `ferrocache-bench compare --smoke` against memcached and ferrocache. No
//! assertions on speed, only that the tool works and reports no errors.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_ferrocache-bench");

/// The unsigned integer after `"name":` in a flat JSON object.
fn json_u64(json: &str, name: &str) -> Option<u64> {
    let pat = format!("\"{name}\":");
    let at = json.find(&pat)? + pat.len();
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[test]
fn run_reports_json_with_ops_and_no_errors() {
    let server = Server::ferrocache(&[]);
    let addr = format!("127.0.0.1:{}", server.port);
    let run = run_bounded(
        Command::new(BENCH).args([
            "run",
            "--server",
            &addr,
            "--conns",
            "8",
            "--pipeline",
            "4",
            "--keys",
            "1000",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--max-ops",
            "200000",
            "--json",
            "--quiet",
        ]),
        Duration::from_secs(20),
    );
    assert!(
        run.status.map(|s| s.success()).unwrap_or(false),
        "status {:?}\nstdout: {}\nstderr: {}",
        run.status,
        run.stdout,
        run.stderr
    );
    let line = run.stdout.trim();
    assert!(
        line.starts_with('{') && line.ends_with('}'),
        "not one JSON object: {line}"
    );
    let ops = json_u64(line, "ops").expect("ops field");
    assert!(ops > 0 && ops <= 200_000, "ops {ops}: {line}");
    assert_eq!(json_u64(line, "errors"), Some(0), "{line}");
    assert!(json_u64(line, "hits").unwrap_or(0) > 0, "{line}");
}

#[test]
fn compare_smoke_runs_both_servers() {
    if !require_tool(MEMCACHED) {
        return;
    }
    let run = run_bounded(
        Command::new(BENCH)
            .args(["compare", "--smoke"])
            .env("FERROCACHE", FERROCACHE)
            .env("MEMCACHED", MEMCACHED),
        Duration::from_secs(30),
    );
    assert!(
        run.status.map(|s| s.success()).unwrap_or(false),
        "status {:?}\nstdout: {}\nstderr: {}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("summary: ratios"), "{}", run.stdout);
    assert!(run.stdout.contains("targets"), "{}", run.stdout);
    for w in ["workload a:", "workload b:"] {
        assert!(run.stdout.contains(w), "{w} missing: {}", run.stdout);
    }
}
