//! The last test binary of a `cargo test` run (cargo runs integration tests in the
//! order of their names: `suite`, then this; hence `zz_`): prints which tests skipped
//! and why, from the records `common::skip` left under the target directory during this
//! run (those of other runs are removed), and fails under `CI=true` if any test skipped
//! (but for the optional checks, `common::skip_optional`). A binary of its own because
//! it must run after every test of `suite` has finished.
//!
//! Run alone (`cargo test --test zz_skip_summary`) it reports the skips of that
//! invocation only, that is none.

/// The skip records of the suite's harness (`tests/suite/common/skips.rs`) alone:
/// this binary neither starts servers nor links more of the harness.
#[allow(dead_code)]
#[path = "suite/common/skips.rs"]
mod common;

use std::io::Write;

#[test]
fn skipped_tests_are_listed_at_the_end_of_the_run() {
    let dir = common::skip_dir();
    let run = format!("{}-", common::parent_pid());
    let mut lines: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&run) {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                lines.extend(text.lines().map(str::to_string));
            }
            // Read once: the next run starts clean (stale ones from other runs too).
            let _ = std::fs::remove_file(e.path());
        }
    }
    lines.sort();
    let mut report = String::new();
    if lines.is_empty() {
        report.push_str("\n== skip summary: no test skipped\n");
    } else {
        report.push_str(&format!(
            "\n== skip summary: {} skipped (a missing tool or module; .ci/run installs them):\n",
            lines.len()
        ));
        for l in &lines {
            report.push_str(&format!("   SKIPPED {l}\n"));
        }
    }
    // Past libtest's capture, so it shows in a normal run.
    let _ = std::io::stderr().write_all(report.as_bytes());
    let required = lines
        .iter()
        .filter(|l| !l.contains(common::OPTIONAL_SKIP))
        .count();
    assert!(
        required == 0 || !common::in_ci(),
        "tests skipped under CI=true:{report}"
    );
}
