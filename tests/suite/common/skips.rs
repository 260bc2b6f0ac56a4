//! Skipped tests: each skip is recorded under the target directory as it happens,
//! and `tests/zz_skip_summary.rs` (a binary of its own, run after `suite`) lists them
//! at the end of the run. Shared by both binaries: the summary includes this file
//! alone (`#[path]`), not the whole harness.

use std::io::Write;
use std::path::Path;

/// True when running under CI (tools must then be present).
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Where skipped tests are recorded for the summary at the end of the run
/// (`tests/zz_skip_summary.rs`): one file per test process under the target dir,
/// named `<cargo's pid>-<the test process's pid>.txt`.
pub fn skip_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-skips")
}

/// The process that started this test binary (cargo, for the whole run): a skip is
/// recorded with it, so the summary shows the skips of its own run only.
pub fn parent_pid() -> u32 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Records that the calling test skips (all or part of what it checks) because of
/// `why`: a notice on standard error at once, written past the test harness's output
/// capture so it shows in a normal run, and a line for the summary printed at the end
/// of `cargo test` (`tests/zz_skip_summary.rs`, which fails under `CI=true` if any test
/// skipped). The caller returns (or leaves out the part) itself.
pub fn skip(why: &str) {
    record_skip(why, false);
}

/// As [`skip`], for a check that CI may leave out too (a reference that is not
/// installed there, e.g. the spymemcached ring): listed in the summary as optional, it
/// does not fail a `CI=true` run.
pub fn skip_optional(why: &str) {
    record_skip(why, true);
}

/// The line of the skip summary, where `OPTIONAL_SKIP` marks one allowed under CI.
pub const OPTIONAL_SKIP: &str = "(optional) ";

fn record_skip(why: &str, optional: bool) {
    let why = if optional {
        format!("{OPTIONAL_SKIP}{why}")
    } else {
        why.to_string()
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_else(|| "?".into());
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("{binary}::{test}: {why}");
    // Not eprintln!: libtest captures that and shows it only when the test fails.
    // Each line goes out in one write: the tests of the run share this process.
    let _ = std::io::stderr().write_all(format!("NOTICE: skipped {line}\n").as_bytes());
    let dir = skip_dir();
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{}-{}.txt", parent_pid(), std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}
