//! Byte-exact text-protocol transcripts recorded from memcached 1.6.18.
//!
//! The goldens live in `tests/data/transcripts/*.txt` and are written by
//! `tests/tools/record_transcripts.py` (format described there). Each case runs on a fresh
//! server: `transcripts_match_ferrocache` replays them against ferrocache (a `sleep N` step
//! becomes `debugtime N` with `-o debugtime`), `transcripts_match_memcached` against the
//! installed memcached (real sleeps), so a stale golden fails too.
//!
//! `TRANSCRIPT_FILTER=<substring>` runs only the cases whose `family/name` contains it.
//!
//! Replies that cannot be byte-exact (`stats`, out-of-memory points) are checked by shape
//! in the other tests of this file.
use crate::common::transcripts::*;
use crate::common::*;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// How long a connection must stay silent after a reply for "nothing extra arrived".
const QUIET: Duration = Duration::from_millis(50);
/// How long to wait for an expected reply or close.
const PATIENCE: Duration = Duration::from_secs(5);
/// Cases run at once.
const PARALLEL: usize = 8;

#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// `Server::ferrocache` (which is memcached under `FERRO_TEST_SERVER`).
    Ours,
    /// The installed memcached.
    Reference,
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).ok();
    s.set_write_timeout(Some(PATIENCE)).ok();
    s
}

/// Whatever arrives until `quiet` passes with nothing new (bounded by PATIENCE overall),
/// waiting up to `first` for the first byte. Returns bytes and whether the peer closed.
fn read_quiet(s: &mut TcpStream, first: Duration, quiet: Duration) -> (Vec<u8>, bool) {
    read_quiet_stream(s, first, quiet, PATIENCE)
}

/// Runs one case; Err describes the first difference.
fn run_case(case: &Case, target: Target) -> Result<(), String> {
    let real_sleep = target == Target::Reference || targeting_reference();
    let mut args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    if case.has_sleep() && !real_sleep {
        args.extend(["-o", "debugtime"]);
    }
    let server = match target {
        Target::Ours => Server::ferrocache(&args),
        Target::Reference => match Server::memcached(&args) {
            Some(s) => s,
            None => return Ok(()),
        },
    };
    let mut conn = connect(server.port);
    let mut is_closed = false;
    for step in &case.steps {
        match step {
            Step::Sleep(secs) => {
                if real_sleep {
                    std::thread::sleep(Duration::from_secs(*secs));
                } else {
                    let _ = conn.write_all(format!("debugtime {secs}\r\n").as_bytes());
                    let (got, _) = read_n(&mut conn, 4, PATIENCE);
                    if got != b"OK\r\n" {
                        return Err(format!("debugtime {secs}: got {:?}", show(&got)));
                    }
                }
            }
            Step::Reconnect => {
                conn = connect(server.port);
                is_closed = false;
            }
            Step::Exchange {
                send,
                expect,
                closed,
                line,
            } => {
                if is_closed {
                    return Err(format!("line {line}: connection already closed"));
                }
                let ctx = || format!("line {line}, request {}", shorten(send));
                if let Err(e) = conn.write_all(send) {
                    if !*closed {
                        return Err(format!("{}: send failed: {e}", ctx()));
                    }
                }
                if case.cas_shape() {
                    let (got, c) = read_quiet(&mut conn, PATIENCE, QUIET * 4);
                    if digits_as_pattern(&got) != digits_as_pattern(expect) || c != *closed {
                        return Err(format!(
                            "{}: expected (digits as pattern) {}{}, got {}{}",
                            ctx(),
                            shorten(expect),
                            if *closed { " then close" } else { "" },
                            shorten(&got),
                            if c { " then close" } else { "" }
                        ));
                    }
                    is_closed = c;
                    continue;
                }
                let (got, c) = read_n(&mut conn, expect.len(), PATIENCE);
                if got != *expect {
                    return Err(format!(
                        "{}:\n  expected {}\n  got      {}{}",
                        ctx(),
                        shorten(expect),
                        shorten(&got),
                        if c {
                            " (then close)"
                        } else {
                            " (then nothing)"
                        }
                    ));
                }
                let (extra, c) = if c {
                    (Vec::new(), true)
                } else if *closed {
                    read_quiet(&mut conn, PATIENCE, PATIENCE)
                } else {
                    read_quiet(&mut conn, QUIET, QUIET)
                };
                if !extra.is_empty() {
                    return Err(format!(
                        "{}: after the expected {} came extra {}",
                        ctx(),
                        shorten(expect),
                        shorten(&extra)
                    ));
                }
                if c != *closed {
                    return Err(format!(
                        "{}: expected the connection {}",
                        ctx(),
                        if *closed { "closed" } else { "open" }
                    ));
                }
                is_closed = c;
            }
        }
    }
    Ok(())
}

fn run_all(target: Target) {
    run_all_cases("", PARALLEL, |case| run_case(case, target));
}

#[test]
fn transcripts_match_ferrocache() {
    run_all(Target::Ours);
}

#[test]
fn transcripts_match_memcached() {
    if !require_tool(MEMCACHED) {
        return;
    }
    run_all(Target::Reference);
}

#[test]
fn golden_format_roundtrips() {
    assert_eq!(
        unescape("a\\r\\n\\0\\\\\\x7f\\{z*3}", "t"),
        b"a\r\n\0\\\x7fzzz"
    );
    let cases = parse_file(
        "t",
        "== c\nargs -C\n> set a 0 0 1\\r\\n\n> x\\r\\n\n< STORED\\r\\n\n> get b\\r\\n\n<\n\
         sleep 2\n> quit\\r\\n\nclosed\nreconnect\n",
    );
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].args, ["-C"]);
    assert_eq!(cases[0].steps.len(), 5);
    match &cases[0].steps[0] {
        Step::Exchange { send, expect, .. } => {
            assert_eq!(send, b"set a 0 0 1\r\nx\r\n");
            assert_eq!(expect, b"STORED\r\n");
        }
        s => panic!("{s:?}"),
    }
}

// ---------------------------------------------------------------------------
// Shape tests: replies that are not byte-exact.
// ---------------------------------------------------------------------------

/// Splits a stats reply into (name, value) and checks the framing.
fn stat_lines(raw: &[u8], what: &str) -> Vec<(String, String)> {
    assert!(raw.ends_with(b"END\r\n"), "{what}: {}", show(raw));
    let text = String::from_utf8(raw.to_vec()).expect("stats are ASCII");
    let body = &text[..text.len() - 5];
    let mut out = Vec::new();
    for l in body.split_terminator("\r\n") {
        let mut it = l.splitn(3, ' ');
        match (it.next(), it.next(), it.next()) {
            (Some("STAT"), Some(k), Some(v)) if !k.is_empty() => {
                out.push((k.to_string(), v.to_string()))
            }
            _ => panic!("{what}: bad line {l:?}"),
        }
    }
    assert!(!body.contains('\n') || body.ends_with("\r\n"), "{what}");
    out
}

fn is_number(v: &str) -> bool {
    !v.is_empty()
        && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        && v.chars().filter(|&c| c == '.').count() <= 1
        && !v.starts_with('.')
}

fn stats_raw(c: &mut Client, cmd: &str) -> Vec<u8> {
    c.send(cmd.as_bytes());
    c.read_until(b"END\r\n")
}

#[test]
fn stats_general_shape() {
    let s = Server::ferrocache(&[]);
    let mut c = s.connect();
    c.roundtrip(b"set a 0 0 1\r\nx\r\n", b"STORED\r\n");
    c.roundtrip(b"get a b\r\n", b"VALUE a 0 1\r\nx\r\nEND\r\n");
    let st = stat_lines(&stats_raw(&mut c, "stats\r\n"), "stats");
    let get = |k: &str| {
        st.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("stats lacks {k}"))
    };
    assert_eq!(get("version"), "1.6.18");
    assert_eq!(get("pid"), s.pid().to_string());
    for k in [
        "cmd_get",
        "get_hits",
        "get_misses",
        "cmd_set",
        "curr_items",
        "total_items",
    ] {
        assert!(is_number(&get(k)), "{k}");
    }
    assert_eq!(get("cmd_get"), "2");
    assert_eq!(get("get_hits"), "1");
    assert_eq!(get("get_misses"), "1");
    assert_eq!(get("cmd_set"), "1");
    assert_eq!(get("curr_items"), "1");
    assert_eq!(get("limit_maxbytes"), "67108864");
    for k in [
        "uptime",
        "time",
        "pointer_size",
        "rusage_user",
        "rusage_system",
        "curr_connections",
        "total_connections",
        "bytes",
        "evictions",
        "threads",
        "bytes_read",
        "bytes_written",
    ] {
        assert!(is_number(&get(k)), "{k} = {}", get(k));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let t: i64 = get("time").parse().unwrap_or(0);
    assert!((t - now).abs() <= 3, "time {t} vs {now}");
    // memcached's names, in memcached's order: every name we print is one of
    // memcached's and they come in the same relative order (we leave out the ones that
    // describe memcached internals we do not have, such as libevent or the LRU
    // maintainer).
    if let Some(m) = Server::memcached(&[]) {
        let mut mc = m.connect();
        let ref_names: Vec<String> = stat_lines(&stats_raw(&mut mc, "stats\r\n"), "ref")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut pos = 0;
        // Ours, after memcached's: the snapshot and restore figures, the cluster
        // configuration's (ElastiCache's names).
        let ours = |n: &str| {
            [
                "snapshot_",
                "snapshots_",
                "restore_",
                "cluster_config_",
                "cmd_config_",
                "curr_config",
                // Which ferrocache this is (issue #25), last.
                "ferrocache_",
            ]
            .iter()
            .any(|p| n.starts_with(p))
        };
        for (name, _) in st.iter().filter(|(n, _)| !ours(n)) {
            match ref_names[pos..].iter().position(|r| r == name) {
                Some(i) => pos += i + 1,
                None => panic!(
                    "stats name {name} is not memcached's, or out of memcached's order: {ref_names:?}"
                ),
            }
        }
        assert!(st.len() >= 40, "only {} stats", st.len());
    }
}

#[test]
fn stats_groups_shape() {
    let s = Server::ferrocache(&[]);
    let mut c = s.connect();
    c.roundtrip(b"set a 0 0 5\r\nhello\r\n", b"STORED\r\n");
    let reference = Server::memcached(&[]);
    let mut rc = reference.as_ref().map(|m| {
        let mut mc = m.connect();
        mc.roundtrip(b"set a 0 0 5\r\nhello\r\n", b"STORED\r\n");
        mc
    });
    for group in ["settings", "items", "slabs", "sizes", "conns"] {
        let cmd = format!("stats {group}\r\n");
        let st = stat_lines(&stats_raw(&mut c, &cmd), group);
        assert!(!st.is_empty(), "stats {group} is empty");
        if let Some(mc) = rc.as_mut() {
            let want = stat_lines(&stats_raw(mc, &cmd), group);
            // Compare names with the numbers inside them (slab class, fd) as a pattern.
            let pat = |v: &[(String, String)]| -> Vec<String> {
                let mut n: Vec<String> = v
                    .iter()
                    .map(|(k, _)| {
                        String::from_utf8_lossy(&digits_as_pattern(k.as_bytes())).into_owned()
                    })
                    .collect();
                n.dedup();
                n
            };
            if group != "conns" && group != "slabs" {
                // memcached's names in memcached's order; the ones describing
                // memcached internals we do not have are left out.
                let (ours, theirs) = (pat(&st), pat(&want));
                let mut pos = 0;
                for name in &ours {
                    match theirs[pos..].iter().position(|t| t == name) {
                        Some(i) => pos += i + 1,
                        None => panic!("stats {group}: {name} not in memcached's order {theirs:?}"),
                    }
                }
            }
        }
    }
    let items = stat_lines(&stats_raw(&mut c, "stats items\r\n"), "items");
    let number = items
        .iter()
        .find(|(k, _)| k.starts_with("items:") && k.ends_with(":number"))
        .map(|(_, v)| v.clone());
    assert_eq!(number.as_deref(), Some("1"), "{items:?}");
    let settings = stat_lines(&stats_raw(&mut c, "stats settings\r\n"), "settings");
    let get = |k: &str| {
        settings
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("maxbytes"), Some("67108864"));
    assert_eq!(get("item_size_max"), Some("1048576"));
    assert_eq!(get("cas_enabled"), Some("yes"));
    assert_eq!(get("tcpport"), Some(s.port.to_string().as_str()));
    // `stats reset` and `stats detail dump` are in the goldens; conns lists our socket.
    let conns = stat_lines(&stats_raw(&mut c, "stats conns\r\n"), "conns");
    assert!(
        conns.iter().any(|(k, _)| k.ends_with(":state")),
        "{conns:?}"
    );
}

/// `-M` with a small `-m`: stores fail with memcached's error instead of evicting, and
/// the failed key's old value is removed. Where the limit bites depends on the allocator,
/// so this is a shape test.
#[test]
fn out_of_memory_with_evictions_disabled() {
    let s = Server::ferrocache(&["-m", "8", "-M"]);
    let mut c = s.connect();
    let value = vec![b'x'; 100_000];
    let store = |c: &mut Client, key: &str| -> String {
        let mut req = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        c.send(&req);
        String::from_utf8_lossy(&c.read_until(b"\r\n")).into_owned()
    };
    let mut stored = 0;
    let mut failed = None;
    for i in 0..400 {
        let r = store(&mut c, &format!("f{i}"));
        if r == "STORED\r\n" {
            stored += 1;
        } else {
            failed = Some(r);
            break;
        }
    }
    assert!(stored >= 40, "only {stored} 100 KB items fit in 8 MB");
    assert_eq!(
        failed.as_deref(),
        Some("SERVER_ERROR out of memory storing object\r\n"),
        "after {stored} items"
    );
    // Replacing an existing key now fails too, and its old value is gone.
    assert_eq!(
        store(&mut c, "f0"),
        "SERVER_ERROR out of memory storing object\r\n"
    );
    c.roundtrip(b"get f0\r\n", b"END\r\n");
    // The connection stays usable and nothing was evicted.
    c.roundtrip(b"version\r\n", b"VERSION 1.6.18\r\n");
    let evictions = c.stat("evictions");
    assert_eq!(evictions.as_deref(), Some("0"));
}
