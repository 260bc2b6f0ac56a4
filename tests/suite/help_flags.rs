//! What `ferrocache -h` lists, for the tests that hold the README and the man page to
//! it: the flags of each row and the served `-o` sub-options.

use std::collections::BTreeSet;
use std::process::Command;

/// `ferrocache -h`, as the built binary prints it.
pub fn help_text() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrocache"))
        .arg("-h")
        .output()
        .expect("run ferrocache -h");
    assert!(out.status.success(), "ferrocache -h failed: {out:?}");
    String::from_utf8(out.stdout).expect("-h is UTF-8")
}

/// The flag names at the start of `words` (`-p,` `--port=<num>` → `-p`, `--port`),
/// skipping `<placeholders>`, up to the first word that is neither.
pub fn leading_flags<'a>(words: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut flags = Vec::new();
    for word in words {
        let word = word.trim_end_matches(',');
        if word.starts_with('<') {
            continue;
        }
        if !word.starts_with('-') || word.len() < 2 {
            break;
        }
        let name = word.split('=').next().unwrap_or(word);
        flags.push(name.to_string());
    }
    flags
}

/// Every flag `-h` lists: the leading flags of each row (rows start in column 0;
/// continuation lines and the `-o` list are indented; the first line is the version).
pub fn help_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip(1)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| leading_flags(l.split_whitespace()))
        .collect()
}

/// The `-o` sub-options `-h` describes (`   - name:  text` lines).
pub fn help_suboptions(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| l.strip_prefix("   - "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn parses_help_rows() {
    let words = |s: &'static str| leading_flags(s.split_whitespace());
    assert_eq!(words("-p, --port=<num>   TCP port"), ["-p", "--port"]);
    assert_eq!(words("-D <char>     Use <char> as"), ["-D"]);
    assert_eq!(
        words("-W  --disable-watch   disable"),
        ["-W", "--disable-watch"]
    );
    assert_eq!(words("-vv   very verbose"), ["-vv"]);
    assert_eq!(
        words("-f, --slab-growth-factor=<num> chunk size"),
        ["-f", "--slab-growth-factor"]
    );
}
