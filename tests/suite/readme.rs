//! The README stays true: its flag table lists exactly what `ferrocache -h` lists, its
//! set-up is the two commands it promises (the second one is what `.ci/run` runs), and
//! its install and replace-memcached steps name files that exist. Its Rust examples are
//! compiled as doctests (`ReadmeDoctests` in src/lib.rs).

use crate::common;

use std::collections::BTreeSet;

use crate::help_flags::{help_flags, help_suboptions, help_text, leading_flags};

const README: &str = include_str!("../../README.md");
const CI_RUN: &str = include_str!("../../.ci/run");

/// The text of `## title` up to the next `## ` heading.
fn section(title: &str) -> &'static str {
    let head = format!("\n## {title}\n");
    let start = README
        .find(&head)
        .unwrap_or_else(|| panic!("README has no section \"## {title}\""))
        + head.len();
    let rest = &README[start..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

/// The bodies of the fenced code blocks of `text` whose info string is `lang`.
fn code_blocks(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line.trim_start().starts_with("```") => {
                let info = line.trim_start().trim_start_matches('`').trim();
                current = Some(String::new());
                if info.split(',').next() != Some(lang) {
                    // Track the block to find its end, but mark it as foreign.
                    current = Some("\u{0}".to_string());
                }
            }
            None => {}
            Some(body) if line.trim_start().starts_with("```") => {
                if !body.starts_with('\u{0}') {
                    blocks.push(std::mem::take(body));
                }
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    blocks
}

/// The first cell of each row of the first Markdown table in `text`.
fn first_cells(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .filter_map(|l| l.split('|').nth(1))
        .map(str::trim)
        .collect()
}

/// The flags in a table cell: the leading flags of each `code span`.
fn cell_flags(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| leading_flags(span.split_whitespace()))
        .collect()
}

#[test]
fn flag_table_matches_help() {
    let table: BTreeSet<String> = first_cells(section("Flags"))
        .into_iter()
        .flat_map(cell_flags)
        .collect();
    let help = help_flags(&help_text());
    let not_in_table: Vec<&String> = help.difference(&table).collect();
    let not_in_help: Vec<&String> = table.difference(&help).collect();
    assert!(
        not_in_table.is_empty() && not_in_help.is_empty(),
        "README's flag table and `ferrocache -h` differ:\n  in -h, not in the table: {not_in_table:?}\n  in the table, not in -h: {not_in_help:?}"
    );
}

#[test]
fn served_extended_options_are_in_the_table() {
    let flags = section("Flags");
    let row = flags
        .lines()
        .find(|l| l.starts_with("| `-o"))
        .expect("README's flag table has a -o row");
    for sub in help_suboptions(&help_text()) {
        assert!(
            row.contains(&sub),
            "-o {sub} (in -h) is not in README's -o row"
        );
    }
}

#[test]
fn set_up_is_two_commands_and_ci_runs_the_second() {
    let blocks = code_blocks(section("Set up"), "sh");
    let commands: Vec<String> = blocks
        .iter()
        .flat_map(|b| b.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        commands,
        [
            "cargo run --release -- -l 127.0.0.1 -u nobody",
            "cargo test --release --no-fail-fast"
        ],
        "README's set-up commands changed"
    );
    assert!(
        CI_RUN.lines().any(|l| l.trim() == commands[1]),
        ".ci/run does not run `{}`",
        commands[1]
    );
}

#[test]
fn install_steps_include_the_cli_the_unit_and_the_man_page() {
    let install = section("Install");
    let sh = code_blocks(install, "sh").join("");
    for wanted in [
        "cargo build --release",
        "target/release/ferrocache ",
        "target/release/ferrocache-cli",
        "/usr/local/bin/",
        "--man",
    ] {
        assert!(
            sh.contains(wanted),
            "README's install steps lack `{wanted}`:\n{sh}"
        );
    }
    // The unit runs the binary where the install step puts it.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/systemd/ferrocache.service"
    ))
    .expect("contrib/systemd/ferrocache.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/ferrocache "));
}

#[test]
fn replacing_debians_memcached_has_the_way_there_and_back() {
    let part = section("Replacing Debian's memcached");
    let sh = code_blocks(part, "sh").join("");
    for wanted in [
        "systemctl disable --now memcached",
        "contrib/systemd/ferrocache.service /etc/systemd/system/",
        "systemctl daemon-reload",
        "systemctl enable --now ferrocache",
        // The way back.
        "systemctl disable --now ferrocache",
        "systemctl enable --now memcached",
    ] {
        assert!(sh.contains(wanted), "the section lacks `{wanted}`:\n{sh}");
    }
    assert!(part.contains("/etc/memcached.conf"));
}

#[test]
fn client_only_feature_is_documented() {
    assert!(README.contains(r#"default-features = false, features = ["client"]"#));
    assert!(README.contains("cargo check --no-default-features --features client --lib"));
}

#[test]
fn readers_of_the_code_blocks() {
    let text = "a\n```sh\none\n```\n```rust,no_run\nx\n```\n```sh\ntwo\nthree\n```\n";
    assert_eq!(code_blocks(text, "sh"), ["one\n", "two\nthree\n"]);
    assert_eq!(code_blocks(text, "rust"), ["x\n"]);
    assert_eq!(
        cell_flags("`-V, --version` / `-h, --help`"),
        ["-V", "--version", "-h", "--help"]
    );
    assert_eq!(cell_flags("`-v`, `-vv`, `-vvv`"), ["-v", "-vv", "-vvv"]);
    assert_eq!(
        first_cells("x\n| a | b |\n|---|---|\n| `-p` | port |\n\nafter\n"),
        ["`-p`"]
    );
}

/// Every long option `ferrocache-cli --help` lists is named in the README's client
/// section (so new ones, such as the TLS options, are documented there).
#[test]
fn cli_options_are_in_the_client_section() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocache-cli"))
        .arg("--help")
        .output()
        .expect("run ferrocache-cli --help");
    assert!(out.status.success(), "ferrocache-cli --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    let part = section("Cluster client and `ferrocache-cli`");
    let options: Vec<&str> = help
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(','))
        .filter(|w| !["--help", "--version"].contains(w))
        .collect();
    for wanted in [
        "--servers",
        "--tls",
        "--cacert",
        "--cert",
        "--key",
        "--servername",
    ] {
        assert!(options.contains(&wanted), "--help lacks {wanted}:\n{help}");
    }
    for opt in options {
        assert!(
            part.contains(&format!("`{opt}")) || part.contains(&format!("{opt} ")),
            "the README's client section does not name {opt}"
        );
    }
}

/// The README's whole client program is `examples/client_quickstart.rs`, verbatim (so
/// what a reader pastes into a new `main.rs` is what CI builds and runs).
#[test]
fn the_client_program_is_the_example_verbatim() {
    let example = include_str!("../../examples/client_quickstart.rs");
    let body = example
        .split_once("\n\n")
        .map(|(_doc, body)| body)
        .expect("the example starts with its doc comment");
    let blocks = code_blocks(section("Cluster client and `ferrocache-cli`"), "rust");
    assert!(
        blocks.iter().any(|b| b == body),
        "no rust block of the client section is examples/client_quickstart.rs"
    );
    assert!(body.contains("fn main()"));
}

/// The example, built by `cargo test` with the other targets, run against a server.
#[test]
fn the_client_example_runs_against_a_server() {
    let exe = std::env::current_exe().expect("test binary");
    // target/<profile>/deps/readme-<hash> -> target/<profile>/examples/client_quickstart
    let example = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|p| p.join("examples/client_quickstart"))
        .expect("target dir");
    assert!(example.exists(), "{} was not built", example.display());
    let server = common::Server::ferrocache(&[]);
    let run = common::run_bounded(
        std::process::Command::new(&example).arg(format!("127.0.0.1:{}", server.port)),
        std::time::Duration::from_secs(30),
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "the example failed: {}{}",
        run.stdout,
        run.stderr
    );
    assert_eq!(run.stdout, "user:42 = Some(\"Ada\")\nuser:43 = None\n");
    let mut c = server.connect();
    c.send(b"get user:42\r\n");
    assert_eq!(
        c.read_until(b"END\r\n"),
        b"VALUE user:42 0 3\r\nAda\r\nEND\r\n"
    );
}

/// Warm restart signals one instance (its pid file, systemctl), never every one on the
/// host (`pidof`).
#[test]
fn no_pidof_in_the_readme() {
    assert!(!README.contains("pidof"), "README signals through pidof");
    let warm = section("Warm restart and snapshots");
    assert!(warm.contains("kill -USR1 \"$(cat /run/ferrocache/ferrocache.pid)\""));
    assert!(warm.contains("systemctl kill -s USR1 ferrocache"));
}
