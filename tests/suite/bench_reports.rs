//! `ferrocache-bench memory` and `ferrocache-bench hitratio` end to end, small sizes,
//! against the reference memcached and the built ferrocache.

use crate::common::*;

use std::process::Command;
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_ferrocache-bench");

fn bench(args: &[&str]) -> Run {
    let mut cmd = Command::new(BENCH);
    cmd.args(args)
        .env("FERROCACHE", FERROCACHE)
        .env("MEMCACHED", MEMCACHED);
    run_bounded(&mut cmd, Duration::from_secs(60))
}

/// The line of `out` that starts (after padding) with `prefix`, if any.
fn line_with<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines().find(|l| l.trim_start().starts_with(prefix))
}

#[test]
fn memory_report_small() {
    if !require_tool(MEMCACHED) {
        return;
    }
    let r = bench(&["memory", "--items", "20000", "--mem", "64"]);
    assert_eq!(
        r.status.and_then(|s| s.code()),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    for server in ["memcached", "ferrocache"] {
        let l = line_with(&r.stdout, &format!("20000  {server}"))
            .unwrap_or_else(|| panic!("no {server} row in:\n{}", r.stdout));
        let f: Vec<&str> = l.split_whitespace().collect();
        // items server -m rss_before rss_after delta/item B rss/item B curr_items evictions ...
        assert!(f.contains(&"20000"), "{l}");
        assert_eq!(f.get(10), Some(&"0"), "evictions in {l}");
        assert_eq!(f.get(9), Some(&"20000"), "curr_items in {l}");
        assert!(l.trim_end().ends_with("4000/4000"), "spot check in {l}");
    }
    assert!(
        line_with(&r.stdout, "20000  ratio ferrocache/memcached: delta/item").is_some(),
        "{}",
        r.stdout
    );
}

#[test]
fn hitratio_report_small() {
    if !require_tool(MEMCACHED) {
        return;
    }
    let r = bench(&[
        "hitratio",
        "--quick",
        "--requests",
        "20000",
        "--keys",
        "50000",
    ]);
    assert_eq!(
        r.status.and_then(|s| s.code()),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        line_with(&r.stdout, "distinct keys requested:").is_some(),
        "{}",
        r.stdout
    );
    let mut ratios = Vec::new();
    for server in ["memcached", "ferrocache"] {
        let l = line_with(&r.stdout, &format!("{server} "))
            .unwrap_or_else(|| panic!("no {server} row in:\n{}", r.stdout));
        let ratio: f64 = l
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no miss ratio in {l}"));
        assert!(ratio > 0.0 && ratio < 1.0, "{l}");
        ratios.push(ratio);
    }
    assert!(
        line_with(&r.stdout, "ratio ferrocache/memcached: miss_ratio").is_some(),
        "{}",
        r.stdout
    );
}

#[test]
fn bad_options_fail() {
    let r = bench(&["memory", "--items", "0"]);
    assert_ne!(r.status.and_then(|s| s.code()), Some(0), "{}", r.stdout);
    let r = bench(&["hitratio", "--requests", "0"]);
    assert_ne!(r.status.and_then(|s| s.code()), Some(0), "{}", r.stdout);
    // Handshakes only over TLS; TLS options only with --tls.
    let r = bench(&["compare", "--workloads", "a,h"]);
    assert_ne!(r.status.and_then(|s| s.code()), Some(0), "{}", r.stdout);
    assert!(r.stderr.contains("needs --tls"), "{}", r.stderr);
    for args in [
        &["compare", "--cert", "/nonexistent"][..],
        &["run", "--cacert", "/nonexistent"][..],
        &["run", "--handshakes"][..],
    ] {
        let r = bench(args);
        assert_ne!(
            r.status.and_then(|s| s.code()),
            Some(0),
            "{args:?}: {}",
            r.stdout
        );
        assert!(r.stderr.contains("--tls"), "{args:?}: {}", r.stderr);
    }
}
