//! The recorded transcripts (`tests/data/transcripts/*.txt`): their format and loader,
//! shared by the socket replay (`text_transcripts.rs`) and the in-process replay through
//! `Session` (`session_replay.rs`). The goldens are written by
//! `tests/tools/record_transcripts.py` (format described there).

#[derive(Debug)]
pub enum Step {
    /// Send bytes, expect exactly `expect` (and maybe a close) back.
    Exchange {
        send: Vec<u8>,
        expect: Vec<u8>,
        closed: bool,
        line: usize,
    },
    /// Let `secs` seconds pass.
    Sleep(u64),
    /// Drop the connection and open a new one.
    Reconnect,
}

#[derive(Debug)]
pub struct Case {
    /// `family/name`.
    pub id: String,
    /// Server arguments.
    pub args: Vec<String>,
    /// `tag` lines (`cas-shape`: compare with digit runs as a pattern).
    pub tags: Vec<String>,
    /// What to send and expect.
    pub steps: Vec<Step>,
}

impl Case {
    pub fn has_sleep(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Sleep(_)))
    }
    pub fn cas_shape(&self) -> bool {
        self.tags.iter().any(|t| t == "cas-shape")
    }
}

/// Decodes a golden line body: `\r \n \t \0 \\ \xHH \{c*N}`.
pub fn unescape(s: &str, where_: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b
            .get(i + 1)
            .unwrap_or_else(|| panic!("{where_}: trailing backslash"));
        match c {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = s.get(i + 2..i + 4).unwrap_or("");
                let v = u8::from_str_radix(hex, 16)
                    .unwrap_or_else(|_| panic!("{where_}: bad \\x escape"));
                out.push(v);
                i += 4;
                continue;
            }
            b'{' => {
                let close = s[i..]
                    .find('}')
                    .unwrap_or_else(|| panic!("{where_}: unclosed \\{{"));
                let body = &s[i + 2..i + close];
                let (ch, n) = body
                    .split_once('*')
                    .unwrap_or_else(|| panic!("{where_}: bad repeat {body}"));
                assert_eq!(ch.len(), 1, "{where_}: repeat of one char");
                let n: usize = n.parse().unwrap_or_else(|_| panic!("{where_}: bad count"));
                out.extend(std::iter::repeat(ch.as_bytes()[0]).take(n));
                i += close + 1;
                continue;
            }
            other => panic!("{where_}: unknown escape \\{}", other as char),
        }
        i += 2;
    }
    out
}

pub fn parse_file(family: &str, text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    // Whether the last exchange has started its reply part (then `>` opens a new step).
    let mut replied = true;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let where_ = format!("{family}.txt:{line_no}");
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        if let Some(name) = raw.strip_prefix("== ") {
            cases.push(Case {
                id: format!("{family}/{name}"),
                args: Vec::new(),
                tags: Vec::new(),
                steps: Vec::new(),
            });
            replied = true;
            continue;
        }
        let case = cases
            .last_mut()
            .unwrap_or_else(|| panic!("{where_}: step before the first case"));
        if let Some(a) = raw.strip_prefix("args ") {
            case.args = a.split_whitespace().map(str::to_string).collect();
        } else if let Some(t) = raw.strip_prefix("tag ") {
            case.tags.push(t.trim().to_string());
        } else if let Some(s) = raw.strip_prefix("sleep ") {
            let secs = s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{where_}: sleep"));
            case.steps.push(Step::Sleep(secs));
            replied = true;
        } else if raw == "reconnect" {
            case.steps.push(Step::Reconnect);
            replied = true;
        } else if raw == "closed" {
            match case.steps.last_mut() {
                Some(Step::Exchange { closed, .. }) => *closed = true,
                _ => panic!("{where_}: closed without a request"),
            }
            replied = true;
        } else if let Some(body) = raw.strip_prefix("> ") {
            let bytes = unescape(body, &where_);
            match case.steps.last_mut() {
                Some(Step::Exchange { send, .. }) if !replied => send.extend_from_slice(&bytes),
                _ => {
                    case.steps.push(Step::Exchange {
                        send: bytes,
                        expect: Vec::new(),
                        closed: false,
                        line: line_no,
                    });
                    replied = false;
                }
            }
        } else if raw == "<" || raw.starts_with("< ") {
            let bytes = unescape(raw.get(2..).unwrap_or(""), &where_);
            match case.steps.last_mut() {
                Some(Step::Exchange { expect, .. }) => expect.extend_from_slice(&bytes),
                _ => panic!("{where_}: reply without a request"),
            }
            replied = true;
        } else {
            panic!("{where_}: unknown line {raw:?}");
        }
    }
    cases
}

pub fn load_cases() -> Vec<Case> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/transcripts");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let filter = std::env::var("TRANSCRIPT_FILTER").unwrap_or_default();
    let mut out = Vec::new();
    for f in files {
        let family = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        out.extend(
            parse_file(&family, &text)
                .into_iter()
                .filter(|c| c.id.contains(&filter)),
        );
    }
    out
}

/// Digit runs replaced by `#`, for `cas-shape` cases.
pub fn digits_as_pattern(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_digit() {
            if out.last() != Some(&b'#') {
                out.push(b'#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub fn shorten(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b)
        .replace('\r', "\\r")
        .replace('\n', "\\n");
    if s.chars().count() > 600 {
        let head: String = s.chars().take(600).collect();
        format!("{head}…({} bytes)", b.len())
    } else {
        s
    }
}

/// Runs every case (all of `load_cases`) on `threads` threads with `run`, a panic
/// counting as a failure, and asserts none failed; `over` is said after "failed" and
/// "passed" (" over TLS").
pub fn run_all_cases(over: &str, threads: usize, run: impl Fn(&Case) -> Result<(), String> + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cases = load_cases();
    assert!(
        std::env::var("TRANSCRIPT_FILTER").is_ok() || cases.len() >= 140,
        "only {} transcript cases found",
        cases.len()
    );
    let next = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(case)));
                let err = match r {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e,
                    Err(p) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".to_string()),
                };
                failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{}: {err}", case.id));
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} transcript cases failed{over}:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!("{} transcript cases passed{over}", cases.len());
}
