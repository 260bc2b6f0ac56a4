//! memcached 1.6.18's own tests (its `t/*.t`, Perl) run against ferrocache, as
//! memcached's `make test` runs them against memcached: `t/idle-timeout.t` (issue #25).
//!
//! The suite is memcached's code, so it is not in this repository: `.ci/run` fetches it
//! from Debian's source package with `tests/tools/fetch_memcached_tests.sh` into
//! `target/memcached-src`. Without it (or without Perl's Test::More) the test skips with
//! a notice, and fails under `CI=true`.
//!
//! memcached's harness starts `./memcached-debug` through `./timedrun` from its build
//! directory; the test makes one in a scratch directory: `memcached-debug` runs
//! ferrocache (leaving out `-o relaxed_privileges`, which the harness always adds and
//! which Debian's memcached 1.6.18, built without seccomp, refuses as ferrocache does),
//! `timedrun` bounds it, and `t` is memcached's directory.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PERL: &str = "/usr/bin/perl";

/// memcached's `t/` directory fetched by `.ci/run`, if there.
fn memcached_t() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()?
        .to_path_buf();
    let t = target.join("memcached-src/memcached-1.6.18/t");
    t.join("lib/MemcachedTest.pm").exists().then_some(t)
}

/// A build directory for memcached's harness, running ferrocache.
fn build_dir(t: &Path) -> Scratch {
    let dir = Scratch::new("memcached-t");
    dir.open_to_all();
    let server = dir.file(
        "memcached-debug",
        &format!(
            "#!/bin/bash\n\
             # ferrocache under memcached's test harness: -o relaxed_privileges dropped.\n\
             args=()\n\
             while [ $# -gt 0 ]; do\n\
             \x20 if [ \"$1\" = -o ] && [ \"$2\" = relaxed_privileges ]; then shift 2; continue; fi\n\
             \x20 args+=(\"$1\"); shift\n\
             done\n\
             exec {} \"${{args[@]}}\"\n",
            ferrocache_bin()
        ),
    );
    set_mode(Path::new(&server), 0o755);
    // memcached's timedrun (C) kills the server after N seconds; 120 here.
    let timedrun = dir.file(
        "timedrun",
        "#!/bin/sh\nshift\nexec timeout -s INT 120 \"$@\"\n",
    );
    set_mode(Path::new(&timedrun), 0o755);
    std::os::unix::fs::symlink(t, dir.0.join("t")).expect("link t");
    dir
}

/// Runs `t/<name>` with Perl in a harness build directory: (passed, TAP output).
fn run_t(name: &str) -> Option<(bool, String)> {
    if !require_tool(PERL) {
        return None;
    }
    let Some(t) = memcached_t() else {
        let why = "memcached's t/ not fetched (bash tests/tools/fetch_memcached_tests.sh)";
        if in_ci() {
            panic!("{why} (CI=true)");
        }
        skip(why);
        return None;
    };
    let modules = Command::new(PERL)
        .args(["-MTest::More", "-MIO::Socket::INET", "-MPOSIX", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    if !modules {
        if in_ci() {
            panic!("Perl's Test::More / IO::Socket::INET missing (CI=true)");
        }
        skip("Perl modules Test::More / IO::Socket::INET missing");
        return None;
    }
    let dir = build_dir(&t);
    let run = run_bounded(
        Command::new(PERL)
            .arg(format!("t/{name}"))
            .current_dir(&dir.0)
            .env("RUST_LOG", "warn"),
        Duration::from_secs(120),
    );
    let out = format!("{}{}", run.stdout, run.stderr);
    Some((run.status.is_some_and(|s| s.success()), out))
}

#[test]
fn memcacheds_idle_timeout_t_passes() {
    let Some((passed, out)) = run_t("idle-timeout.t") else {
        return;
    };
    println!("{out}");
    assert!(passed, "t/idle-timeout.t failed against ferrocache:\n{out}");
    assert!(out.contains("ok 11 - check stats timeout"), "{out}");
    assert!(!out.contains("not ok"), "{out}");
}
