//! examples/db_cache, the application over a real database, run as a user runs it:
//! the walk-through over SQLite and over PostgreSQL (Debian's, started by `.ci/run`
//! with `examples/db_cache/postgres.sh`), the database load the cache takes away on a
//! Zipf 0.99 read-mostly load, the stale-set race under concurrent readers and
//! writers (there with the naive pattern, not with the client's helpers), and
//! `ferrocache-bench dbload`.
use crate::common::*;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_ferrocache-bench");

/// The PostgreSQL database of `examples/db_cache/postgres.sh` (or
/// `$FERROCACHE_TEST_PG`, a libpq connection string).
fn postgres_conninfo() -> String {
    std::env::var("FERROCACHE_TEST_PG").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=ferrocache password=ferrocache dbname=ferrocache".into()
    })
}

/// The example's binary, `target/<profile>/examples/db_cache`: `cargo test` builds
/// every example first; to run this area alone, build it before
/// (`cargo build --release --example db_cache && cargo test --release --test suite
/// db_cache::`).
fn example() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary");
        // target/<profile>/deps/<test> -> target/<profile>/examples/db_cache
        let bin = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .join("examples/db_cache");
        assert!(
            bin.exists(),
            "{} is missing: `cargo test` builds it; alone, `cargo build --release --example db_cache` first",
            bin.display()
        );
        bin
    })
}

fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    let run = run_bounded(cmd, limit);
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{cmd:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// The number after `"name":` in a flat JSON object.
fn json_num(json: &str, name: &str) -> f64 {
    let pat = format!("\"{name}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + pat.len();
    let num: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e'))
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("bad {name} in {json}"))
}

/// `db_cache load --json` with `args`; its JSON line.
fn load(args: &[&str]) -> String {
    let out = run_ok(
        Command::new(example()).arg("load").args(args).arg("--json"),
        Duration::from_secs(120),
    );
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON: {out}"))
        .to_string();
    eprintln!("{line}");
    line
}

fn check_demo(out: &str) {
    eprintln!("{out}");
    for step in [
        "1. lazy",
        "2. negative",
        "3. write-through",
        "4. invalidate",
        "5. set-on-write",
    ] {
        assert!(out.contains(step), "step {step:?} missing:\n{out}");
    }
    for step in ["6. stampede", "7. sessions", "all checks passed"] {
        assert!(out.contains(step), "step {step:?} missing:\n{out}");
    }
}

/// The README's first command: SQLite, the cache in the example's process, no set-up.
#[test]
fn demo_over_sqlite() {
    let out = run_ok(&mut Command::new(example()), Duration::from_secs(120));
    check_demo(&out);
    assert!(
        out.contains("61 s later"),
        "the TTL step ran on the driven clock"
    );
}

/// The same against memcached 1.6.18 as the cache (the client's helpers are meta
/// commands memcached has too).
#[test]
fn demo_over_sqlite_with_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let out = run_ok(
        Command::new(example()).args(["--servers", &format!("127.0.0.1:{}", mc.port)]),
        Duration::from_secs(120),
    );
    check_demo(&out);
}

/// The README's PostgreSQL command, against the database `postgres.sh` made.
#[test]
fn demo_over_postgres() {
    if std::net::TcpStream::connect(("127.0.0.1", 5432)).is_err() {
        assert!(
            !in_ci(),
            "PostgreSQL is not listening on 127.0.0.1:5432 (CI=true): .ci/run starts it with examples/db_cache/postgres.sh"
        );
        eprintln!(
            "NOTICE: PostgreSQL is not listening on 127.0.0.1:5432 (sudo bash examples/db_cache/postgres.sh); skipping this test"
        );
        return;
    }
    let db = format!("postgres:{}", postgres_conninfo());
    let out = run_ok(
        Command::new(example()).args(["--db", &db]),
        Duration::from_secs(120),
    );
    assert!(out.contains("database: PostgreSQL"), "{out}");
    check_demo(&out);
}

/// Zipf 0.99, 95 % reads: with the cache the database gets at most a fifth of the
/// queries it gets without, for the same requests; no read beyond the TTL is stale.
#[test]
fn cache_takes_the_reads_off_the_database() {
    let srv = Server::ferrocache(&["-m", "64"]);
    let servers = format!("127.0.0.1:{}", srv.port);
    let common = [
        "--threads",
        "4",
        "--keys",
        "2000",
        "--zipf",
        "0.99",
        "--write-share",
        "0.05",
        "--absent-every",
        "20",
        "--max-requests",
        "60000",
        "--duration",
        "60",
    ];
    let none = load(&[&common[..], &["--pattern", "none"]].concat());
    let cached = load(&[&common[..], &["--pattern", "lease", "--servers", &servers]].concat());
    for j in [&none, &cached] {
        assert_eq!(
            json_num(j, "requests"),
            60000.0,
            "both runs are the same requests: {j}"
        );
    }
    let (q_none, q_cached) = (
        json_num(&none, "db_queries"),
        json_num(&cached, "db_queries"),
    );
    eprintln!(
        "database queries: {q_none} without the cache, {q_cached} with it ({:.1} %)",
        100.0 * q_cached / q_none
    );
    assert_eq!(q_none, 60000.0, "without a cache every request is a query");
    assert!(
        q_cached <= 0.2 * q_none,
        "with the cache {q_cached} queries, more than 20 % of {q_none}"
    );
    assert_eq!(json_num(&cached, "stale_beyond_ttl"), 0.0, "{cached}");
    assert_eq!(json_num(&cached, "stale"), 0.0, "{cached}");
    assert_eq!(json_num(&cached, "cache_errors"), 0.0, "{cached}");
}

/// The stale-set race. 48 application threads read 20 hot items and spend 125 ms
/// between reading a row and caching it; 5 % of requests update their item and then
/// invalidate (or set). The node's clock is driven (one second per 25 ms, TTL 8 s of
/// it), so a stale entry's life and a read's age are counted on the node's own
/// clock. The naive get/set caches rows older than a finished write, some read
/// longer than the TTL after it; with the lease (and with CAS write-through) no read
/// returns a row older than a finished write at all; with `md I` the old row is
/// served while one reader reloads it, never beyond the TTL.
#[test]
fn stale_set_race_naive_versus_the_clients_helpers() {
    if targeting_reference() {
        return; // the driven clock is ferrocache's -o debugtime
    }
    let srv = Server::ferrocache(&["-o", "debugtime"]);
    let servers = format!("127.0.0.1:{}", srv.port);
    let run = |pattern: &str| {
        load(&[
            "--servers",
            &servers,
            "--pattern",
            pattern,
            "--threads",
            "48",
            "--keys",
            "20",
            "--zipf",
            "0",
            "--write-share",
            "0.05",
            "--absent-every",
            "0",
            "--ttl",
            "8",
            "--render-ms",
            "125",
            "--tick-ms",
            "25",
            "--duration",
            "4",
            "--seed",
            "7",
        ])
    };
    let naive = run("naive");
    let naive_set = run("naive-set");
    let lease = run("lease");
    let write_through = run("write-through");
    let lease_stale = run("lease-stale");
    for j in [&naive, &naive_set, &lease, &write_through, &lease_stale] {
        assert_eq!(json_num(j, "cache_errors"), 0.0, "{j}");
        assert!(json_num(j, "reads") > 100.0, "too few reads to judge: {j}");
    }
    assert!(
        json_num(&naive, "stale") > 0.0,
        "naive get/set: no stale read: {naive}"
    );
    assert!(
        json_num(&naive, "stale_beyond_ttl") > 0.0,
        "naive get/set: no stale read beyond the TTL: {naive}"
    );
    assert!(
        json_num(&naive_set, "stale") > 0.0,
        "naive set-on-write: {naive_set}"
    );
    for (what, j) in [("lease", &lease), ("write-through", &write_through)] {
        assert_eq!(json_num(j, "stale"), 0.0, "{what}: a stale read: {j}");
        assert_eq!(json_num(j, "stale_beyond_ttl"), 0.0, "{what}: {j}");
    }
    // md I serves the old row to others while one reader reloads it (stale reads by
    // design, about one reload: 125 ms = 5 driven seconds), within the TTL the row
    // was cached with.
    eprintln!(
        "lease-stale: {} stale reads, the oldest {} driven seconds",
        json_num(&lease_stale, "stale"),
        json_num(&lease_stale, "max_staleness")
    );
    assert_eq!(
        json_num(&lease_stale, "stale_beyond_ttl"),
        0.0,
        "{lease_stale}"
    );
}

/// `ferrocache-bench dbload`, shortly: a table with the no-cache row and one row per
/// server and pattern.
#[test]
fn bench_dbload_prints_the_table() {
    if !require_tool(MEMCACHED) {
        return;
    }
    let app = example().display().to_string();
    let out = run_ok(
        Command::new(BENCH).args([
            "dbload",
            "--app",
            &app,
            "--keys",
            "2000",
            "--threads",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--rounds",
            "1",
            "--patterns",
            "lease",
        ]),
        Duration::from_secs(120),
    );
    eprintln!("{out}");
    for row in [
        "| none | none |",
        "| memcached | lease |",
        "| ferrocache | lease |",
    ] {
        assert!(out.contains(row), "no row {row:?}:\n{out}");
    }
}

/// The README's commands are the ones tested here, and CI starts PostgreSQL with the
/// script the README names.
#[test]
fn readme_and_ci_name_these_commands() {
    let readme = include_str!("../../README.md");
    let ci = include_str!("../../.ci/run");
    assert!(readme.contains("cargo run --release --example db_cache "));
    assert!(readme.contains("sudo bash examples/db_cache/postgres.sh"));
    assert!(ci
        .lines()
        .any(|l| l.trim() == "$SUDO bash examples/db_cache/postgres.sh"));
    let conninfo = "host=127.0.0.1 user=ferrocache password=ferrocache dbname=ferrocache";
    assert!(readme.contains(&format!("--db \"postgres:{conninfo}\"")));
    assert!(
        postgres_conninfo().contains("user=ferrocache password=ferrocache dbname=ferrocache")
            || std::env::var("FERROCACHE_TEST_PG").is_ok()
    );
}

/// The database drivers are dev-dependencies: neither the default build (server,
/// client, binaries) nor the client-only build has them in its graph.
#[test]
fn database_drivers_stay_out_of_the_builds() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for features in [
        &[][..],
        &["--no-default-features", "--features", "client"][..],
    ] {
        let tree = run_ok(
            Command::new(&cargo)
                .args(["tree", "--frozen", "--manifest-path", manifest])
                .args(features)
                .args(["--edges", "normal", "--prefix", "none"]),
            Duration::from_secs(120),
        );
        for driver in [
            "rusqlite",
            "libsqlite3-sys",
            "postgres",
            "tokio-postgres",
            "tokio",
        ] {
            assert!(
                !tree
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(driver)),
                "{features:?}: the build depends on {driver}"
            );
        }
    }
}
