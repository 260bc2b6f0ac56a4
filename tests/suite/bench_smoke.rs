//! The benchmark tool runs: `ferrocache-bench run` against a ferrocache started here,
//! and `ferrocache-bench compare --smoke` against memcached and ferrocache; over TLS,
//! `run --tls` and `compare --tls` against memcached -Z. No assertions on speed, only
//! that the tool works and reports no errors.

use crate::common;
use crate::common::*;
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

/// The path of `name` on `PATH` (the bench runs it from there), or a path that
/// `require_tool` then reports missing.
fn on_path(name: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{name} (not on PATH)"))
}

/// `compare --tls` with memcached 1.6.18 in both slots (so it runs before ferrocache
/// has `-Z`): the report's shape, workloads a, b (with ferrocache's plain TCP run) and
/// h (handshakes), the TLS targets, the JSON file; no errors.
#[test]
fn compare_tls_smoke_memcached_in_both_slots() {
    if !require_tool(MEMCACHED) || !require_tool(&on_path("openssl")) {
        return;
    }
    let dir = Scratch::new("bench-tls");
    let json = dir.path("compare.json");
    let run = run_bounded(
        Command::new(BENCH)
            .args([
                "compare",
                "--tls",
                "--workloads",
                "a,b,h",
                "--rounds",
                "1",
                "--duration",
                "0.5",
                "--warmup",
                "0.2",
                "--json",
                &json,
            ])
            .env("FERROCACHE", MEMCACHED)
            .env("MEMCACHED", MEMCACHED),
        Duration::from_secs(90),
    );
    let out = &run.stdout;
    assert!(
        run.status.map(|s| s.success()).unwrap_or(false),
        "status {:?}\nstdout: {}\nstderr: {}",
        run.status,
        out,
        run.stderr
    );
    let has = |l: &str| out.lines().any(|x| x.trim_start().starts_with(l));
    assert!(has("TLS: servers with -Z, self-signed P-256"), "{out}");
    for w in ["workload a:", "workload b:", "workload h: handshakes"] {
        assert!(has(w), "{w} missing: {out}");
    }
    // Both servers negotiated TLS, once per workload.
    for server in ["memcached -Z", "ferrocache -Z"] {
        let n = out
            .lines()
            .filter(|l| l.trim_start().starts_with(server) && l.contains("negotiated TLSv1_"))
            .count();
        assert_eq!(n, 3, "{server} negotiated lines: {out}");
    }
    // One round line per server and workload, each with ops and no errors; (b) also
    // on ferrocache over plain TCP.
    let rounds: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("round 1 "))
        .collect();
    assert_eq!(rounds.len(), 7, "{out}");
    assert_eq!(
        rounds
            .iter()
            .filter(|l| l.contains("ferrocache tcp"))
            .count(),
        1,
        "{out}"
    );
    for l in &rounds {
        assert!(l.trim_end().ends_with("errors 0"), "{l}");
        let ops: f64 = l
            .split_whitespace()
            .zip(l.split_whitespace().skip(1))
            .find(|(_, unit)| *unit == "ops/s")
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or_else(|| panic!("no ops/s in {l}"));
        assert!(ops > 0.0, "{l}");
    }
    assert!(has("medians (b)"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("medians (b)") && l.contains("-Z / tcp")),
        "{out}"
    );
    assert!(has("summary: ratios ferrocache -Z / memcached -Z"), "{out}");
    assert!(has("targets of TLS (memcached -Z = 1.0)"), "{out}");
    for t in [
        "server CPU/request (a), TLS",
        "ops/s (b), TLS",
        "server CPU per full handshake (h)",
        "TLS CPU/request over own plain TCP (b)",
    ] {
        let l = out
            .lines()
            .find(|l| l.trim_start().starts_with(t))
            .unwrap_or_else(|| panic!("target {t} missing: {out}"));
        assert!(
            l.trim_end().ends_with("met") || l.trim_end().ends_with("NOT MET"),
            "{l}"
        );
    }
    for n in ["a", "b", "h"] {
        assert!(
            has(&format!("generator core busy in ({n}), ferrocache -Z %")),
            "{out}"
        );
    }
    let j = std::fs::read_to_string(&json).expect("--json file");
    for k in [
        "\"tls\":true",
        "\"ferrocache_tcp\":",
        "\"tls_params\":\"TLSv1_",
    ] {
        assert!(j.contains(k), "{k} missing from {j}");
    }
}

/// `run --tls` (requests, and `--handshakes`) against memcached -Z with the test PKI.
#[test]
fn run_tls_and_handshakes_against_memcached() {
    let pki = common::tls::Pki::new("bench-run-tls");
    let opt = format!(
        "ssl_chain_cert={},ssl_key={}",
        pki.server_cert, pki.server_key
    );
    let Some(mc) = Server::memcached(&["-Z", "-o", &opt]) else {
        return;
    };
    let addr = format!("127.0.0.1:{}", mc.port);
    for extra in [&["--pipeline", "8"][..], &["--handshakes"][..]] {
        let mut args = vec![
            "run",
            "--server",
            &addr,
            "--tls",
            "--cacert",
            &pki.ca,
            "--conns",
            "4",
            "--keys",
            "1000",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--json",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let run = run_bounded(Command::new(BENCH).args(&args), Duration::from_secs(30));
        assert!(
            run.status.map(|s| s.success()).unwrap_or(false),
            "{extra:?}: status {:?}\nstdout: {}\nstderr: {}",
            run.status,
            run.stdout,
            run.stderr
        );
        let line = run.stdout.trim();
        assert!(json_u64(line, "ops").unwrap_or(0) > 0, "{extra:?}: {line}");
        assert_eq!(json_u64(line, "errors"), Some(0), "{extra:?}: {line}");
    }
    // A certificate the client does not trust fails the run, with the reason.
    let other = common::tls::Pki::new("bench-run-tls-other");
    let run = run_bounded(
        Command::new(BENCH).args([
            "run",
            "--server",
            &addr,
            "--tls",
            "--cacert",
            &other.ca,
            "--duration",
            "0.2",
            "--warmup",
            "0",
            "--quiet",
        ]),
        Duration::from_secs(30),
    );
    assert_ne!(run.status.and_then(|s| s.code()), Some(0), "{}", run.stdout);
    assert!(run.stderr.contains("handshake"), "{}", run.stderr);
}
