//! Issue #17 part B over real sockets: `stats hotkeys`, `stats sizing` and `stats
//! misses` — their shape, hot-key recall on bounded Zipf loads, sizing estimates
//! against a real run (loose bounds; the tight ones are `ferrocache-bench insight`),
//! and get misses split by cause (never stored, expired via `debugtime`, flushed via
//! `flush_all`, evicted by filling a small `-m`).

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::common::*;

/// Ferrocache only: these groups are ours.
fn ours() -> bool {
    if targeting_reference() {
        common::skip("stats hotkeys/sizing/misses are ferrocache-only");
        return false;
    }
    true
}

fn stats_map(c: &mut Client, group: &str) -> HashMap<String, String> {
    c.stats(group).into_iter().collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> f64 {
    m.get(k)
        .unwrap_or_else(|| panic!("no row {k} in {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("row {k} is not a number: {m:?}"))
}

/// A seeded Zipf(s) sampler over `n` keys (inverse of the cumulative weights).
struct Zipf {
    cdf: Vec<f64>,
    x: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for i in 1..=n {
            acc += 1.0 / (i as f64).powf(s);
            cdf.push(acc);
        }
        for v in &mut cdf {
            *v /= acc;
        }
        Zipf { cdf, x: seed }
    }

    fn next(&mut self) -> usize {
        self.x = self
            .x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = (self.x >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Multi-gets of `keys` in batches of up to 100 distinct keys; returns the keys that
/// missed, in order (bounded by the key count and a time limit).
fn multiget(c: &mut Client, keys: &[String]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missed = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        assert!(Instant::now() < deadline, "multiget took over 60 s");
        let mut batch: Vec<&String> = Vec::new();
        let mut seen = HashSet::new();
        while i < keys.len() && batch.len() < 100 && seen.insert(&keys[i]) {
            batch.push(&keys[i]);
            i += 1;
        }
        let mut req = b"get".to_vec();
        for k in &batch {
            req.push(b' ');
            req.extend_from_slice(k.as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        c.send(&req);
        let reply = c.read_until(b"END\r\n");
        let text = String::from_utf8_lossy(&reply);
        let hits: HashSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("VALUE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        missed.extend(
            batch
                .iter()
                .filter(|k| !hits.contains(k.as_str()))
                .map(|k| k.to_string()),
        );
    }
    missed
}

/// Cache-aside over `trace` (key id, value length): multi-get batches, each miss then
/// `set … noreply`. Returns the client's miss ratio.
fn cache_aside(c: &mut Client, trace: &[(usize, usize)]) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let value = vec![b'v'; 8192];
    let mut misses = 0usize;
    let mut i = 0;
    while i < trace.len() {
        assert!(
            Instant::now() < deadline,
            "cache-aside replay took over 120 s"
        );
        let mut seen = HashSet::new();
        let start = i;
        while i < trace.len() && i - start < 64 && seen.insert(trace[i].0) {
            i += 1;
        }
        let keys: Vec<String> = trace[start..i]
            .iter()
            .map(|(k, _)| format!("sz:{k}"))
            .collect();
        let missed: HashSet<String> = multiget(c, &keys).into_iter().collect();
        misses += missed.len();
        let mut sets = Vec::new();
        for (k, len) in &trace[start..i] {
            let key = format!("sz:{k}");
            if missed.contains(&key) {
                sets.extend_from_slice(format!("set {key} 0 0 {len} noreply\r\n").as_bytes());
                sets.extend_from_slice(&value[..*len]);
                sets.extend_from_slice(b"\r\n");
            }
        }
        if !sets.is_empty() {
            c.send(&sets);
        }
    }
    // Every noreply set has been applied once a later request is answered.
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    misses as f64 / trace.len() as f64
}

#[test]
fn stats_hotkeys_rows_escape_keys_and_rate_by_the_server_clock() {
    if !ours() {
        return;
    }
    let s = Server::ferrocache(&["-t", "1", "-o", "debugtime"]);
    let mut c = s.connect();
    // A binary key with a space and a control byte, stored and read via base64 meta.
    c.roundtrip(b"ms YSBiDQ== 1 b\r\nx\r\n", b"HD\r\n");
    let mut req = b"mg YSBiDQ== b v\r\n".repeat(3200);
    req.extend_from_slice(b"mn\r\n");
    c.send(&req);
    let got = c.read_until(b"MN\r\n");
    assert_eq!(
        got,
        [b"VA 1\r\nx\r\n".repeat(3200), b"MN\r\n".to_vec()].concat()
    );
    let mut req = Vec::new();
    for i in 0..1600 {
        req.extend_from_slice(format!("get k%\u{e9}{}\r\n", i % 2).as_bytes());
    }
    req.extend_from_slice(b"mn\r\n");
    c.send(&req);
    let got = c.read_until(b"MN\r\n");
    assert_eq!(got.len(), 1600 * 5 + 4);
    // Ten seconds of server time pass: the rates are per second of it.
    c.roundtrip(b"debugtime 10\r\n", b"OK\r\n");

    let m = stats_map(&mut c, "hotkeys 3");
    assert_eq!(m["hotkeys_enabled"], "yes");
    assert_eq!(m["hotkeys_counters"], "512");
    assert!(num(&m, "hotkeys_memory") > 0.0);
    assert!(num(&m, "hotkeys_sampled") > 0.0);
    assert_eq!(m["hotkey:1:key"], "a%20b%0D", "{m:?}");
    let second: HashSet<&str> = [m["hotkey:2:key"].as_str(), m["hotkey:3:key"].as_str()]
        .into_iter()
        .collect();
    assert_eq!(
        second,
        HashSet::from(["k%25%C3%A90", "k%25%C3%A91"]),
        "{m:?}"
    );
    assert!(!m.contains_key("hotkey:4:key"), "N=3 lists 3 keys: {m:?}");
    // 3,200 requests over about 10 s (sampled 1 in 16: loose).
    let rate = num(&m, "hotkey:1:rate");
    assert!((120.0..=700.0).contains(&rate), "rate {rate}: {m:?}");
    let share = num(&m, "hotkey:1:share");
    assert!((0.45..=0.85).contains(&share), "share {share}: {m:?}");
    for r in 1..=3 {
        for f in ["key", "rate", "share", "count", "error"] {
            assert!(m.contains_key(&format!("hotkey:{r}:{f}")), "{f}: {m:?}");
        }
    }
    // The default lists at most 10; bad arguments are refused.
    let d = stats_map(&mut c, "hotkeys");
    assert!(d.contains_key("hotkey:3:key") && !d.contains_key("hotkey:4:key"));
    for bad in ["stats hotkeys 0\r\n", "stats hotkeys x\r\n"] {
        c.roundtrip(
            bad.as_bytes(),
            b"CLIENT_ERROR usage: stats hotkeys [N|on|off]\r\n",
        );
    }
    // Off at run time: nothing more is sampled.
    c.roundtrip(b"stats hotkeys off\r\n", b"OK\r\n");
    let before = num(&stats_map(&mut c, "hotkeys"), "hotkeys_sampled");
    let mut req = b"get k%\xc3\xa90\r\n".repeat(500);
    req.extend_from_slice(b"mn\r\n");
    c.send(&req);
    c.read_until(b"MN\r\n");
    let m = stats_map(&mut c, "hotkeys");
    assert_eq!(m["hotkeys_enabled"], "no");
    assert_eq!(num(&m, "hotkeys_sampled"), before);
    c.roundtrip(b"stats hotkeys on\r\n", b"OK\r\n");
    // stats reset forgets the counts.
    c.roundtrip(b"stats reset\r\n", b"RESET\r\n");
    let m = stats_map(&mut c, "hotkeys");
    assert_eq!(num(&m, "hotkeys_sampled"), 0.0);
    assert!(!m.contains_key("hotkey:1:key"));
}

#[test]
fn flags_turn_each_part_off() {
    if !ours() {
        return;
    }
    let s = Server::ferrocache(&["-o", "no_hotkeys,no_sizing"]);
    let mut c = s.connect();
    c.roundtrip(b"get a\r\n", b"END\r\n");
    assert_eq!(
        c.stats("hotkeys"),
        vec![("hotkeys_enabled".to_string(), "no".to_string())]
    );
    assert_eq!(
        c.stats("sizing"),
        vec![("sizing_enabled".to_string(), "no".to_string())]
    );
    c.roundtrip(
        b"stats hotkeys on\r\n",
        b"CLIENT_ERROR hot keys are off (-o no_hotkeys)\r\n",
    );
    assert_eq!(stats_map(&mut c, "misses")["miss_reasons_enabled"], "yes");
    let s = Server::ferrocache(&["-o", "no_insight"]);
    let mut c = s.connect();
    assert_eq!(stats_map(&mut c, "misses")["miss_reasons_enabled"], "no");
    assert_eq!(stats_map(&mut c, "hotkeys")["hotkeys_enabled"], "no");
}

#[test]
fn hot_keys_recall_the_true_top_ten_on_zipf_loads() {
    if !ours() {
        return;
    }
    for (s_exp, seed) in [(0.99, 7u64), (1.2, 11)] {
        let s = Server::ferrocache(&["-t", "2"]);
        let mut c = s.connect();
        let mut z = Zipf::new(20_000, s_exp, seed);
        let trace: Vec<usize> = (0..200_000).map(|_| z.next()).collect();
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for &k in &trace {
            *counts.entry(k).or_default() += 1;
        }
        let mut ranked: Vec<(usize, usize)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let truth: Vec<String> = ranked[..10].iter().map(|(k, _)| format!("z:{k}")).collect();
        let keys: Vec<String> = trace.iter().map(|k| format!("z:{k}")).collect();
        multiget(&mut c, &keys);
        let m = stats_map(&mut c, "hotkeys 10");
        let listed: HashSet<&str> = (1..=10)
            .filter_map(|r| m.get(&format!("hotkey:{r}:key")).map(String::as_str))
            .collect();
        let found = truth.iter().filter(|k| listed.contains(k.as_str())).count();
        eprintln!("Zipf({s_exp}): {found}/10 of the true top 10");
        // Loose (the benchmark checks 9 of 10 on 1M-request traces).
        assert!(
            found >= 8,
            "Zipf({s_exp}): {found}/10: {listed:?} vs {truth:?}"
        );
    }
}

#[test]
fn sizing_estimates_are_monotone_and_close_to_a_real_run() {
    if !ours() {
        return;
    }
    let mut z = Zipf::new(30_000, 0.9, 3);
    let trace: Vec<(usize, usize)> = (0..150_000)
        .map(|_| {
            let k = z.next();
            (k, 300 + (k * 7919) % 1200)
        })
        .collect();
    let base = Server::ferrocache(&["-t", "1", "-m", "4"]);
    let mut c = base.connect();
    let real4 = cache_aside(&mut c, &trace);
    let m = stats_map(&mut c, "sizing");
    assert_eq!(m["sizing_enabled"], "yes");
    // -m 4 starts with every key sampled; the rate halves as the minis fill up.
    let rate = num(&m, "sizing_sample_rate");
    let halvings = num(&m, "sizing_sample_halvings");
    assert_eq!(rate, 0.5f64.powf(halvings), "{m:?}");
    assert!(num(&m, "sizing_sampled_lookups") > trace.len() as f64 * rate * 0.5);
    assert!(num(&m, "sizing_lookups") >= trace.len() as f64);
    assert!(num(&m, "sizing_memory") > 0.0);
    let names = ["0.25x", "0.5x", "1x", "2x", "4x", "8x"];
    let scales = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
    let est: Vec<f64> = names
        .iter()
        .map(|n| num(&m, &format!("sizing:{n}:miss_ratio")))
        .collect();
    for (n, s) in names.iter().zip(scales) {
        assert_eq!(
            num(&m, &format!("sizing:{n}:bytes")),
            s * 4.0 * 1048576.0,
            "{n}"
        );
    }
    for w in est.windows(2) {
        // S3-FIFO has no inclusion property: allow a little noise.
        assert!(w[0] + 0.01 >= w[1], "not monotone: {est:?}");
    }
    assert!(
        est[0] > est[5] + 0.05,
        "a larger cache misses less: {est:?}"
    );
    assert!(
        (est[2] - real4).abs() < 0.05,
        "1x {} vs real {real4}",
        est[2]
    );
    drop(c);
    drop(base);
    let big = Server::ferrocache(&["-t", "1", "-m", "8"]);
    let mut c = big.connect();
    let real8 = cache_aside(&mut c, &trace);
    eprintln!("sizing: estimates {est:?}, real -m 4 {real4:.4}, -m 8 {real8:.4}");
    assert!(
        (est[3] - real8).abs() < 0.05,
        "2x estimate {} vs real -m 8 {real8}",
        est[3]
    );
}

#[test]
fn get_misses_split_by_cause_and_sum_to_get_misses() {
    if !ours() {
        return;
    }
    let s = Server::ferrocache(&["-t", "1", "-m", "2", "-o", "debugtime"]);
    let mut c = s.connect();
    let misses = |c: &mut Client| stats_map(c, "misses");
    // Never stored.
    for i in 0..5 {
        c.roundtrip(format!("get never{i}\r\n").as_bytes(), b"END\r\n");
    }
    let m = misses(&mut c);
    assert_eq!(num(&m, "get_miss_never_stored"), 5.0, "{m:?}");
    // Expired: the clock moves past the TTL.
    c.roundtrip(b"set e 0 2 1\r\nx\r\n", b"STORED\r\n");
    c.roundtrip(b"debugtime 5\r\n", b"OK\r\n");
    c.roundtrip(b"get e\r\n", b"END\r\n");
    // Flushed.
    c.roundtrip(b"set f 0 0 1\r\nx\r\n", b"STORED\r\n");
    c.roundtrip(b"flush_all\r\n", b"OK\r\n");
    c.roundtrip(b"get f\r\n", b"END\r\n");
    let m = misses(&mut c);
    assert_eq!(num(&m, "get_expired"), 1.0, "{m:?}");
    assert_eq!(num(&m, "get_flushed"), 1.0, "{m:?}");
    assert_eq!(num(&m, "get_miss_evicted"), 0.0, "{m:?}");
    // Evicted: 4 MiB of items through a 2 MiB cache, then the oldest are asked for
    // (the ghost remembers about as many evictions as the cache holds items).
    let value = vec![b'v'; 1000];
    let deadline = Instant::now() + Duration::from_secs(60);
    for chunk in 0..40 {
        assert!(Instant::now() < deadline);
        let mut req = Vec::new();
        for i in chunk * 100..(chunk + 1) * 100 {
            req.extend_from_slice(format!("set ev{i} 0 0 1000 noreply\r\n").as_bytes());
            req.extend_from_slice(&value);
            req.extend_from_slice(b"\r\n");
        }
        c.send(&req);
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    assert!(
        c.stat("evictions")
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap_or(0)
            > 1000
    );
    let oldest: Vec<String> = (0..1500).map(|i| format!("ev{i}")).collect();
    let missed = multiget(&mut c, &oldest).len();
    assert!(
        missed > 1000,
        "the oldest items should be gone: {missed} missed"
    );
    let m = misses(&mut c);
    let evicted = num(&m, "get_miss_evicted");
    let never = num(&m, "get_miss_never_stored");
    // The ghost is direct-mapped (about one slot per item): most are recognised.
    assert!(
        evicted >= missed as f64 * 0.5,
        "{evicted} of {missed}: {m:?}"
    );
    assert!(evicted <= missed as f64, "{m:?}");
    assert_eq!(never - 5.0, missed as f64 - evicted, "{m:?}");
    assert_eq!(
        num(&m, "get_misses"),
        num(&m, "get_expired") + num(&m, "get_flushed") + evicted + never,
        "{m:?}"
    );
    // Keys never stored are still told apart after the evictions.
    let fresh: Vec<String> = (0..500).map(|i| format!("fresh{i}")).collect();
    assert_eq!(multiget(&mut c, &fresh).len(), 500);
    let m2 = misses(&mut c);
    assert_eq!(num(&m2, "get_miss_never_stored"), never + 500.0, "{m2:?}");
    assert_eq!(num(&m2, "get_miss_evicted"), evicted, "{m2:?}");
    // The same through meta and binary lookups: counted alike.
    c.roundtrip(b"mg ev0 v\r\n", b"EN\r\n");
    let m3 = misses(&mut c);
    assert_eq!(
        num(&m3, "get_miss_evicted") + num(&m3, "get_miss_never_stored"),
        num(&m2, "get_miss_evicted") + num(&m2, "get_miss_never_stored") + 1.0
    );
    // With -o no_miss_reasons every absent key is "never stored".
    let s = Server::ferrocache(&["-t", "1", "-m", "2", "-o", "no_miss_reasons"]);
    let mut c = s.connect();
    for chunk in 0..40 {
        let mut req = Vec::new();
        for i in chunk * 100..(chunk + 1) * 100 {
            req.extend_from_slice(format!("set ev{i} 0 0 1000 noreply\r\n").as_bytes());
            req.extend_from_slice(&value);
            req.extend_from_slice(b"\r\n");
        }
        c.send(&req);
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    let missed = multiget(&mut c, &oldest).len();
    let m = misses(&mut c);
    assert_eq!(num(&m, "get_miss_evicted"), 0.0);
    assert_eq!(num(&m, "get_miss_never_stored"), missed as f64);
}

#[test]
fn bench_insight_reports_errors_and_recall_small() {
    if !ours() {
        return;
    }
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocache-bench"));
    cmd.args([
        "insight",
        "--requests",
        "40000",
        "--keys",
        "20000",
        "--base",
        "4",
        "--check",
        "8",
        "--workloads",
        "zipf1.2-wide",
    ])
    .env("FERROCACHE", FERROCACHE);
    let r = run_bounded(&mut cmd, Duration::from_secs(120));
    assert_eq!(
        r.status.and_then(|s| s.code()),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    let row = |m: &str| {
        r.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(m))
            .unwrap_or_else(|| panic!("no -m {m} row in:\n{}", r.stdout))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for (m, scale) in [("4", "(1x"), ("8", "(2x")] {
        let f = row(m);
        // -m real estimate error (scale of -m base)
        let real: f64 = f[1].parse().unwrap_or(-1.0);
        let est: f64 = f[2].parse().unwrap_or(-1.0);
        let err: f64 = f[3].parse().unwrap_or(-1.0);
        assert!(
            (0.0..=1.0).contains(&real) && (0.0..=1.0).contains(&est),
            "{f:?}"
        );
        assert!((err - (real - est).abs()).abs() < 1e-3, "{f:?}");
        assert!(err < 0.1, "loose: {f:?}");
        assert_eq!(f[4], scale, "{f:?}");
    }
    let hot = r
        .stdout
        .lines()
        .find(|l| l.contains("hot keys:"))
        .unwrap_or_else(|| panic!("no hot keys line in:\n{}", r.stdout));
    let found: usize = hot
        .split_whitespace()
        .nth(2)
        .and_then(|x| x.split('/').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    assert!(found >= 7, "{hot}");
    assert!(r
        .stdout
        .contains("worst sizing error at the checked sizes:"));
}
