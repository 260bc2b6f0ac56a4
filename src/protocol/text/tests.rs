//! Unit tests: every expectation below was checked against a live memcached 1.6.18
//! (`-I 1m`, CAS on unless said otherwise) by sending the same bytes.

use super::*;
// Through the ASCII front door, as a connection parses (meta lines included).
use crate::protocol::ascii::{parse, Parse, Request};

const L: Limits = Limits {
    item_size_max: 1024 * 1024,
    cas_enabled: true,
    buffer_room: usize::MAX,
};

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A compact, comparable rendering of a parse result.
fn show(p: &Parse<'_>) -> String {
    match p {
        Parse::Incomplete => "Incomplete".into(),
        Parse::Partial(n) => format!("Partial({n})"),
        Parse::Close => "Close".into(),
        Parse::Error {
            reply,
            consumed,
            swallow,
            unlink,
            refused,
        } => format!(
            "Error({:?}, {consumed}, {swallow}, {:?}{})",
            reply,
            unlink.map(|u| s(u.raw())),
            if *refused == Some(StoreRefusal::NoMemory) {
                ", no memory"
            } else {
                ""
            }
        ),
        Parse::Request(Request::Text(c), n) => format!("Req({}, {n})", cmd(c)),
        Parse::Request(Request::Meta(r), n) => {
            format!("Req(Meta {:?} {:?}, {n})", r.kind, s(r.key()))
        }
    }
}

fn cmd(c: &Command<'_>) -> String {
    match c {
        Command::Get { keys, cas } => {
            format!("Get{} [{}]", if *cas { "s" } else { "" }, keylist(*keys))
        }
        Command::Gat { exptime, keys, cas } => format!(
            "Gat{} {exptime} [{}]",
            if *cas { "s" } else { "" },
            keylist(*keys)
        ),
        Command::Store {
            cmd,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => format!(
            "Store {cmd:?} {} {flags} {exptime} {:?} {noreply}",
            s(key),
            s(data)
        ),
        Command::Delete { key, noreply } => format!("Delete {} {noreply}", s(key)),
        Command::Arith {
            key,
            incr,
            delta,
            noreply,
        } => format!("Arith {} {incr} {delta} {noreply}", s(key)),
        Command::Touch {
            key,
            exptime,
            noreply,
        } => format!("Touch {} {exptime} {noreply}", s(key)),
        Command::Stats { args } => format!("Stats {:?}", s(args)),
        other => format!("{other:?}"),
    }
}

fn keylist(k: Keys<'_>) -> String {
    k.map(s).collect::<Vec<_>>().join(",")
}

fn p(input: &[u8]) -> String {
    show(&parse(input, &L))
}

fn pl(input: &[u8], l: &Limits) -> String {
    show(&parse(input, l))
}

fn e(reply: Option<&str>, consumed: usize) -> String {
    show(&Parse::Error {
        reply: reply.map(|r| -> &'static str { Box::leak(r.to_string().into_boxed_str()) }),
        consumed,
        swallow: 0,
        unlink: None,
        refused: None,
    })
}

fn error(input: &[u8], reply: &str) {
    assert_eq!(p(input), e(Some(reply), input.len()), "{:?}", s(input));
}

fn silent(input: &[u8]) {
    assert_eq!(p(input), e(None, input.len()), "{:?}", s(input));
}

#[test]
fn line_ends_and_empty_lines() {
    error(b"\r\n", ERROR);
    error(b"\n", ERROR);
    error(b"\r\r\n", ERROR);
    error(b" \r\n", ERROR);
    error(b"   \n", ERROR);
    error(b"x\r\n", ERROR);
    assert_eq!(p(b"version\r\n"), "Req(Version, 9)");
    assert_eq!(p(b"version\n"), "Req(Version, 8)");
    assert_eq!(p(b"version foo bar\r\n"), "Req(Version, 17)");
    assert_eq!(p(b"version\x00junk\r\n"), "Req(Version, 14)");
    error(b"\x00version\r\n", ERROR);
    error(b"VERSION\r\n", ERROR);
    error(b"version\t\r\n", ERROR);
    assert_eq!(p(b"quit foo\r\n"), "Req(Quit, 10)");
    assert_eq!(p(b""), "Incomplete");
    assert_eq!(p(b"version\r"), "Incomplete");
    assert_eq!(p(b"get a"), "Incomplete");
}

#[test]
fn tokens_split_on_spaces_only() {
    assert_eq!(p(b"get a\tb\r\n"), "Req(Get [a\tb], 9)");
    assert_eq!(p(b"get  a   b \r\n"), "Req(Get [a,b], 13)");
    assert_eq!(p(b"get a\x00b\r\n"), "Req(Get [a], 9)");
    assert_eq!(p(b"get a\rb\r\n"), "Req(Get [a\rb], 9)");
    assert_eq!(p(b"  get a\r\n"), "Req(Get [a], 9)");
    error(b"get\r\n", ERROR);
    error(b"get \r\n", ERROR);
    error(b"gets\r\n", ERROR);
    error(b"gx k\r\n", ERROR);
    assert_eq!(p(b"bget k\r\n"), "Req(Get [k], 8)");
    error(b"bget\r\n", ERROR);
    assert_eq!(p(b"gets a b\r\n"), "Req(Gets [a,b], 10)");
}

#[test]
fn long_multiget_lines() {
    // More than 23 words: the remainder is read as more keys.
    let mut line = b"get".to_vec();
    for i in 0..100 {
        line.extend_from_slice(format!(" k{i}").as_bytes());
    }
    line.extend_from_slice(b"\r\n");
    let r = parse(&line, &L);
    match r {
        Parse::Request(Request::Text(Command::Get { keys, cas: false }), n) => {
            assert_eq!(n, line.len());
            assert_eq!(keys.count(), 100);
        }
        other => panic!("{other:?}"),
    }
    // A too-long key anywhere fails the whole multi-get.
    let long = vec![b'k'; 251];
    let mut line = b"get".to_vec();
    for _ in 0..30 {
        line.extend_from_slice(b" a");
    }
    line.push(b' ');
    line.extend_from_slice(&long);
    line.extend_from_slice(b" a\r\n");
    error(&line, BAD_FORMAT);
    // 250 is fine.
    let mut line = b"get ".to_vec();
    line.extend_from_slice(&long[..250]);
    line.extend_from_slice(b"\r\n");
    assert!(p(&line).starts_with("Req(Get "));
    // Exactly 23 words and then spaces.
    let mut line = b"get".to_vec();
    for _ in 0..22 {
        line.extend_from_slice(b" a");
    }
    line.extend_from_slice(b"   \r\n");
    match parse(&line, &L) {
        Parse::Request(Request::Text(Command::Get { keys, .. }), _) => assert_eq!(keys.count(), 22),
        other => panic!("{other:?}"),
    }
}

#[test]
fn key_too_long_everywhere() {
    let k = "k".repeat(251);
    let bad = |line: String| error(line.as_bytes(), BAD_FORMAT);
    bad(format!("get {k}\r\n"));
    bad(format!("gets a {k}\r\n"));
    bad(format!("gat 1 {k}\r\n"));
    bad(format!("set {k} 0 0 1\r\n"));
    bad(format!("set {k} x 0 1\r\n"));
    bad(format!("delete {k}\r\n"));
    bad(format!("incr {k} 1\r\n"));
    bad(format!("incr {k} x\r\n"));
    bad(format!("touch {k} x\r\n"));
    error(format!("gat x {k}\r\n").as_bytes(), BAD_EXPTIME);
    error(format!("delete {k} 1\r\n").as_bytes(), DELETE_USAGE);
    silent(format!("delete {k} noreply\r\n").as_bytes());
    silent(format!("set {k} 0 0 1 noreply\r\n").as_bytes());
    let ok = format!("set {} 0 0 1\r\nx\r\n", "k".repeat(250));
    assert!(p(ok.as_bytes()).starts_with("Req(Store Set"));
}

#[test]
fn storage_commands() {
    assert_eq!(
        p(b"set k 5 100 3\r\nabc\r\n"),
        "Req(Store Set k 5 100 \"abc\" false, 20)"
    );
    assert_eq!(
        p(b"set k 0 0 3 noreply\r\nabc\r\nget k\r\n"),
        "Req(Store Set k 0 0 \"abc\" true, 26)"
    );
    assert_eq!(
        p(b"add k 0 0 0\r\n\r\n"),
        "Req(Store Add k 0 0 \"\" false, 15)"
    );
    assert_eq!(
        p(b"replace k 0 -1 1\r\nx\r\n"),
        "Req(Store Replace k 0 -1 \"x\" false, 21)"
    );
    assert_eq!(
        p(b"append k 0 0 1\r\nx\r\n"),
        "Req(Store Append k 0 0 \"x\" false, 19)"
    );
    assert_eq!(
        p(b"prepend k 0 0 1\r\nx\r\n"),
        "Req(Store Prepend k 0 0 \"x\" false, 20)"
    );
    assert_eq!(
        p(b"cas k 0 0 1 99 noreply\r\nx\r\n"),
        "Req(Store Cas(99) k 0 0 \"x\" true, 27)"
    );
    // The data block may contain anything, including "\r\n".
    assert_eq!(
        p(b"set k 0 0 4\r\n\r\n\r\n\r\n"),
        "Req(Store Set k 0 0 \"\\r\\n\\r\\n\" false, 19)"
    );
    // Waiting for the block.
    assert_eq!(p(b"set k 0 0 3\r\n"), "Partial(18)");
    assert_eq!(p(b"set k 0 0 3\r\nabc"), "Partial(18)");
    assert_eq!(p(b"set k 0 0 3\r\nabc\r"), "Partial(18)");
    // A 6th word that is not noreply is ignored; a 7th is an arity error.
    assert_eq!(
        p(b"set k 0 0 1 2\r\nx\r\n"),
        "Req(Store Set k 0 0 \"x\" false, 18)"
    );
    error(b"set k 0 0 1 noreply junk\r\n", ERROR);
    error(b"set k 0 0\r\n", ERROR);
    error(b"cas k 0 0 1\r\n", ERROR);
    error(b"cas k 0 0 1 abc\r\n", BAD_FORMAT);
    error(b"cas k 0 0 1 -1\r\n", BAD_FORMAT);
    // One \r of "\r\r\n" is kept and is whitespace after the number.
    assert_eq!(
        p(b"set k 0 0 1\r\r\nx\r\n"),
        "Req(Store Set k 0 0 \"x\" false, 17)"
    );
    assert_eq!(
        p(b"set k 0 0 1 \r\nx\r\n"),
        "Req(Store Set k 0 0 \"x\" false, 17)"
    );
    assert_eq!(
        p(b"set k\t 1 0 1\r\nx\r\n"),
        "Req(Store Set k\t 1 0 \"x\" false, 17)"
    );
}

#[test]
fn storage_numbers() {
    assert_eq!(
        p(b"set k 4294967296 0 1\r\nx\r\n"),
        "Req(Store Set k 0 0 \"x\" false, 25)"
    );
    assert_eq!(
        p(b"set k 4294967297 0 1\r\nx\r\n"),
        "Req(Store Set k 1 0 \"x\" false, 25)"
    );
    assert_eq!(
        p(b"set k +5 0 1\r\nx\r\n"),
        "Req(Store Set k 5 0 \"x\" false, 17)"
    );
    assert_eq!(
        p(b"set k 5\t 0 1\r\nx\r\n"),
        "Req(Store Set k 5 0 \"x\" false, 17)"
    );
    assert_eq!(
        p(b"set k 5\tjunk 0 1\r\nx\r\n"),
        "Req(Store Set k 5 0 \"x\" false, 21)"
    );
    // A length of 2^32 + 1 is truncated to 1, as memcached does.
    assert_eq!(
        p(b"set k 0 0 4294967297\r\nx\r\n"),
        "Req(Store Set k 0 0 \"x\" false, 25)"
    );
    assert_eq!(
        p(b"set k 0 4294967295 1\r\nx\r\n"),
        "Req(Store Set k 0 -1 \"x\" false, 25)"
    );
    error(b"set k -1 0 1\r\n", BAD_FORMAT);
    error(b"set k 5x 0 1\r\n", BAD_FORMAT);
    error(b"set k 0 x 1\r\n", BAD_FORMAT);
    error(b"set k 0 99999999999999999999 1\r\n", BAD_FORMAT);
    // Negative or huge length: error, nothing swallowed (the data line is read next).
    assert_eq!(p(b"set k 0 0 -1\r\nabc\r\n"), e(Some(BAD_FORMAT), 14));
    error(b"set k 0 0 2147483646\r\n", BAD_FORMAT);
    error(b"set k 0 0 2147483648\r\n", BAD_FORMAT); // -2^31 after truncation
                                                    // noreply (the last word) silences these errors.
    assert_eq!(p(b"set k 0 0 noreply\r\nabc\r\n"), e(None, 19));
    silent(b"set k 0 0 -1 noreply\r\n");
}

#[test]
fn bad_data_chunk() {
    // <bytes> + 2 are consumed whatever they are; parsing resumes after them.
    assert_eq!(
        p(b"set k 0 0 3\r\nabcde\r\nget k\r\n"),
        e(Some(BAD_CHUNK), 18)
    );
    assert_eq!(p(b"set k 0 0 3 noreply\r\nabcde\r\n"), e(None, 26));
    assert_eq!(p(b"set k 0 0 3\r\nabc\nget k\r\n"), e(Some(BAD_CHUNK), 18));
    // What follows: "\r\n" alone is the command "\r" -> ERROR; "et k" -> ERROR.
    error(b"\r\n", ERROR);
    error(b"et k\r\n", ERROR);
}

#[test]
fn too_large_boundaries() {
    // Largest accepted <bytes> measured on memcached 1.6.18 for each setting.
    let cases: &[(usize, bool, usize, u32, usize)] = &[
        (1 << 20, true, 1, 0, 1048516),
        (1 << 20, true, 1, 1, 1048512),
        (1 << 20, true, 10, 0, 1048507),
        (1 << 20, true, 250, 1, 1048263),
        (1 << 20, false, 1, 0, 1048524),
        (1 << 20, false, 10, 1, 1048511),
        (1 << 20, false, 250, 0, 1048275),
        (2 << 20, true, 1, 0, 2097092),
        (2 << 20, true, 250, 1, 2096839),
        (2 << 20, false, 1, 1, 2097096),
        (2 << 20, false, 250, 0, 2096851),
        (512 << 10, true, 1, 0, 524228),
        (512 << 10, true, 250, 1, 523975),
    ];
    for &(max, cas, nkey, flags, vmax) in cases {
        let l = Limits {
            item_size_max: max,
            cas_enabled: cas,
            buffer_room: usize::MAX,
        };
        let key = "k".repeat(nkey);
        let ok = format!("set {key} {flags} 0 {vmax}\r\n");
        assert_eq!(
            pl(ok.as_bytes(), &l),
            format!("Partial({})", ok.len() + vmax + 2),
            "{max} {cas} {nkey} {flags}"
        );
        for cmd in ["set", "add", "cas"] {
            let extra = if cmd == "cas" { " 1" } else { "" };
            let line = format!("{cmd} {key} {flags} 0 {}{extra}\r\n", vmax + 1);
            let unlink = if cmd == "set" {
                Some(key.clone())
            } else {
                None
            };
            assert_eq!(
                pl(line.as_bytes(), &l),
                format!(
                    "Error({:?}, {}, {}, {:?})",
                    Some(TOO_LARGE),
                    line.len(),
                    vmax + 3,
                    unlink
                )
            );
        }
    }
    // noreply silences the reply but still swallows and unlinks.
    assert_eq!(
        p(b"set k 0 0 2000000 noreply\r\n"),
        "Error(None, 27, 2000002, Some(\"k\"))"
    );
}

#[test]
fn delete_forms() {
    assert_eq!(p(b"delete k\r\n"), "Req(Delete k false, 10)");
    assert_eq!(p(b"delete k 0\r\n"), "Req(Delete k false, 12)");
    assert_eq!(p(b"delete k noreply\r\n"), "Req(Delete k true, 18)");
    assert_eq!(p(b"delete k 0 noreply\r\n"), "Req(Delete k true, 20)");
    assert_eq!(p(b"delete noreply\r\n"), "Req(Delete noreply false, 16)");
    error(b"delete k 1\r\n", DELETE_USAGE);
    error(b"delete k 0 0\r\n", DELETE_USAGE);
    silent(b"delete k 1 noreply\r\n");
    error(b"delete\r\n", ERROR);
    error(b"delete a b c d\r\n", ERROR);
}

#[test]
fn arith_forms() {
    assert_eq!(p(b"incr k 1\r\n"), "Req(Arith k true 1 false, 10)");
    assert_eq!(p(b"decr k 5 noreply\r\n"), "Req(Arith k false 5 true, 18)");
    assert_eq!(p(b"incr k 1 2\r\n"), "Req(Arith k true 1 false, 12)");
    assert_eq!(
        p(b"incr k 18446744073709551615\r\n"),
        "Req(Arith k true 18446744073709551615 false, 29)"
    );
    error(b"incr k\r\n", ERROR);
    error(b"incr k 1 2 3\r\n", ERROR);
    error(b"incr k abc\r\n", BAD_DELTA);
    error(b"incr k -1\r\n", BAD_DELTA);
    error(b"decr k 18446744073709551616\r\n", BAD_DELTA);
    silent(b"incr k abc noreply\r\n");
}

#[test]
fn touch_and_gat_forms() {
    assert_eq!(p(b"touch k 10\r\n"), "Req(Touch k 10 false, 12)");
    assert_eq!(p(b"touch k 10 x\r\n"), "Req(Touch k 10 false, 14)");
    assert_eq!(p(b"touch k -1 noreply\r\n"), "Req(Touch k -1 true, 20)");
    error(b"touch k\r\n", ERROR);
    error(b"touch k abc\r\n", BAD_EXPTIME);
    silent(b"touch k abc noreply\r\n");
    error(b"gat\r\n", ERROR);
    assert_eq!(p(b"gat 10\r\n"), "Req(Gat 10 [], 8)");
    assert_eq!(p(b"gat 10 a b\r\n"), "Req(Gat 10 [a,b], 12)");
    assert_eq!(p(b"gats -1 a\r\n"), "Req(Gats -1 [a], 11)");
    error(b"gat abc k\r\n", BAD_EXPTIME);
    // get-family commands have no noreply.
    error(b"gat abc noreply\r\n", BAD_EXPTIME);
}

#[test]
fn verbosity_forms() {
    error(b"verbosity\r\n", ERROR);
    assert_eq!(
        p(b"verbosity 1\r\n"),
        "Req(Verbosity { level: 1, noreply: false }, 13)"
    );
    assert_eq!(
        p(b"verbosity 1 2\r\n"),
        "Req(Verbosity { level: 1, noreply: false }, 15)"
    );
    assert_eq!(
        p(b"verbosity 1 noreply\r\n"),
        "Req(Verbosity { level: 1, noreply: true }, 21)"
    );
    assert_eq!(
        p(b"verbosity 4294967296\r\n"),
        "Req(Verbosity { level: 0, noreply: false }, 22)"
    );
    silent(b"verbosity noreply\r\n");
    error(b"verbosity foo bar my\r\n", ERROR);
    error(b"verbosity foo\r\n", BAD_FORMAT);
    error(b"verbosity -1\r\n", BAD_FORMAT);
}

#[test]
fn flush_all_forms() {
    let f =
        |d: &str, nr: bool, n: usize| format!("Req(FlushAll {{ delay: {d}, noreply: {nr} }}, {n})");
    assert_eq!(p(b"flush_all\r\n"), f("Some(0)", false, 11));
    assert_eq!(p(b"flush_all 0\r\n"), f("Some(0)", false, 13));
    assert_eq!(p(b"flush_all -1\r\n"), f("Some(-1)", false, 14));
    assert_eq!(p(b"flush_all noreply\r\n"), f("Some(0)", true, 19));
    assert_eq!(p(b"flush_all 10 noreply\r\n"), f("Some(10)", true, 22));
    assert_eq!(p(b"flush_all 10 foo\r\n"), f("Some(10)", false, 18));
    assert_eq!(p(b"flush_all 4294967296\r\n"), f("Some(0)", false, 22));
    assert_eq!(p(b"flush_all abc\r\n"), f("None", false, 15));
    assert_eq!(
        p(b"flush_all 99999999999999999999\r\n"),
        f("None", false, 32)
    );
    assert_eq!(p(b"flush_all noreply noreply\r\n"), f("None", true, 27));
    error(b"flush_all 1 2 3\r\n", ERROR);
}

#[test]
fn memlimit_forms() {
    error(b"cache_memlimit\r\n", ERROR);
    error(b"cache_memlimit abc\r\n", ERROR);
    error(b"cache_memlimit -5\r\n", ERROR);
    silent(b"cache_memlimit abc noreply\r\n");
    error(b"cache_memlimit 1\r\n", MEMLIMIT_TOO_SMALL);
    error(b"cache_memlimit 2000000000\r\n", MEMLIMIT_NOT_BYTES);
    error(b"cache_memlimit 1 2 3\r\n", ERROR);
    assert_eq!(
        p(b"cache_memlimit 100\r\n"),
        "Req(CacheMemlimit { megabytes: 100, noreply: false }, 20)"
    );
    assert_eq!(
        p(b"cache_memlimit 10 20\r\n"),
        "Req(CacheMemlimit { megabytes: 10, noreply: false }, 22)"
    );
    assert_eq!(
        p(b"cache_memlimit 100 noreply\r\n"),
        "Req(CacheMemlimit { megabytes: 100, noreply: true }, 28)"
    );
}

#[test]
fn shutdown_stats_debugtime() {
    assert_eq!(p(b"shutdown\r\n"), "Req(Shutdown { mode: Immediate }, 10)");
    assert_eq!(
        p(b"shutdown graceful\r\n"),
        "Req(Shutdown { mode: Graceful }, 19)"
    );
    assert_eq!(
        p(b"shutdown foo\r\n"),
        "Req(Shutdown { mode: Invalid }, 14)"
    );
    assert_eq!(
        p(b"shutdown graceful x\r\n"),
        "Req(Shutdown { mode: Invalid }, 21)"
    );
    assert_eq!(p(b"stats\r\n"), "Req(Stats \"\", 7)");
    assert_eq!(
        p(b"stats  detail dump \r\n"),
        "Req(Stats \"detail dump\", 21)"
    );
    assert_eq!(p(b"stats noreply\r\n"), "Req(Stats \"noreply\", 15)");
    error(b"stats\tx\r\n", ERROR);
    assert_eq!(
        p(b"debugtime 5\r\n"),
        "Req(DebugTime { arg: Shift(5) }, 13)"
    );
    assert_eq!(
        p(b"debugtime -5\r\n"),
        "Req(DebugTime { arg: Shift(-5) }, 14)"
    );
    assert_eq!(p(b"debugtime p\r\n"), "Req(DebugTime { arg: Pause }, 13)");
    assert_eq!(
        p(b"debugtime r x\r\n"),
        "Req(DebugTime { arg: Resume }, 15)"
    );
    error(b"debugtime\r\n", ERROR);
    error(b"debugtime x\r\n", ERROR);
}

#[test]
fn meta_and_unserved_commands() {
    assert_eq!(p(b"mn\r\n"), "Req(Meta Noop \"\", 4)");
    assert_eq!(p(b"mg k v\r\n"), "Req(Meta Get \"k\", 8)");
    error(b"me\r\n", BAD_FORMAT);
    error(b"mx\r\n", ERROR);
    // Served by the executor: "Error TLS not enabled" without -Z.
    assert_eq!(
        p(b"refresh_certs\r\n"),
        "Req(RefreshCerts { noreply: false }, 15)"
    );
    assert_eq!(
        p(b"refresh_certs noreply\r\n"),
        "Req(RefreshCerts { noreply: true }, 23)"
    );
    error(b"extstore item_size 5\r\n", ERROR);
    error(b"misbehave\r\n", ERROR);
    error(b"debugitem\r\n", ERROR);
    error(b"slabs\r\n", ERROR);
    error(b"slabs reassign 1 2\r\n", SLAB_REASSIGN_DISABLED);
    assert_eq!(
        p(b"slabs automove 1\r\n"),
        "Req(SlabsAutomove { level: Some(1), ratio: None, noreply: false }, 18)"
    );
    error(b"slabs automove 3\r\n", ERROR);
    assert_eq!(
        p(b"slabs automove ratio 0.5\r\n"),
        "Req(SlabsAutomove { level: None, ratio: Some(0.5), noreply: false }, 26)"
    );
    silent(b"slabs automove x noreply\r\n");
    error(b"lru\r\n", ERROR);
    error(b"lru foo\r\n", ERROR);
    error(b"lru mode flat\r\n", OK);
    error(b"lru temp_ttl x\r\n", ERROR);
    error(b"lru tune 10 80 0.1 2.0\r\n", LRU_PCTS);
    error(b"lru tune 10 20 0 2.0\r\n", LRU_FACTORS);
    error(b"lru tune 10 20 0.1 2.0\r\n", OK);
}

#[test]
fn http_and_junk() {
    assert_eq!(p(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "Close");
    assert_eq!(p(b"HTTP/1.1\r\n"), "Close");
    error(b"foo HTTP/1.0 x\r\n", ERROR);
    error(b"foo\r\n", ERROR);
    error(b"x HTTP/1.1\r\n", ERROR);
    // A get-family line ending in HTTP/ is still a get.
    assert_eq!(p(b"get / HTTP/1.1\r\n"), "Req(Get [/,HTTP/1.1], 16)");
}

#[test]
fn the_2048_byte_rule() {
    let mut b = vec![b'x'; 2048];
    assert_eq!(p(&b), "Incomplete");
    b.push(b'x');
    assert_eq!(p(&b), "Close");
    let mut set = b"set ".to_vec();
    set.extend(vec![b'x'; 3000]);
    assert_eq!(p(&set), "Close");
    for prefix in [&b"get "[..], b"gets ", b"   get "] {
        let mut g = prefix.to_vec();
        g.extend(b"a ".repeat(1500));
        assert_eq!(p(&g), "Incomplete");
    }
    let mut g = vec![b' '; 101];
    g.extend(b"get ".iter().chain(b"a ".repeat(1500).iter()));
    assert_eq!(p(&g), "Close");
    let mut g = vec![b' '; 100];
    g.extend(b"get ".iter().chain(b"a ".repeat(1500).iter()));
    assert_eq!(p(&g), "Incomplete");
    // "get" must be followed by a space.
    let mut g = b"get".to_vec();
    g.extend(vec![b'x'; 2100]);
    assert_eq!(p(&g), "Close");
    // A long line that is complete is parsed normally.
    let mut g = b"get".to_vec();
    g.extend(vec![b' '; 3000]);
    g.extend(b"a\r\n");
    assert_eq!(p(&g), format!("Req(Get [a], {})", g.len()));
    let k = "k".repeat(3000);
    error(format!("set {k} 0 0 1\r\n").as_bytes(), BAD_FORMAT);
}

/// Feeds `chunks` to a connection-like loop and records every event.
fn run(chunks: &[&[u8]]) -> Vec<String> {
    let mut rbuf: Vec<u8> = Vec::new();
    let mut pos = 0;
    let mut swallow = 0usize;
    let mut events = Vec::new();
    for chunk in chunks {
        rbuf.extend_from_slice(chunk);
        loop {
            if swallow > 0 {
                let n = swallow.min(rbuf.len() - pos);
                pos += n;
                swallow -= n;
                if swallow > 0 {
                    break;
                }
            }
            let r = parse(&rbuf[pos..], &L);
            match r {
                Parse::Incomplete | Parse::Partial(_) => break,
                Parse::Close => {
                    events.push("Close".to_string());
                    return events;
                }
                Parse::Request(ref r, n) => {
                    events.push(match r {
                        Request::Text(c) => cmd(c),
                        Request::Meta(m) => format!("Meta {:?} {:?}", m.kind, s(m.key())),
                    });
                    pos += n;
                }
                Parse::Error {
                    reply,
                    consumed,
                    swallow: sw,
                    unlink,
                    ..
                } => {
                    events.push(format!("{reply:?} {:?}", unlink.map(|u| s(u.raw()))));
                    pos += consumed;
                    swallow = sw;
                }
            }
        }
    }
    events
}

#[test]
fn pipelining_split_at_every_offset() {
    let mut input = Vec::new();
    input.extend_from_slice(b"set a 1 2 3\r\nabc\r\nget a b\r\n");
    input.extend_from_slice(b"set big 0 0 1048576\r\n");
    input.extend(vec![b'z'; 1048576]);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(b"set k 0 0 3\r\nabcde\r\ndelete a noreply\r\n\n");
    input.extend_from_slice(b"incr n 5\r\ngets a  b\r\ncas a 0 0 1 7\r\nx\r\n");
    input.extend_from_slice(b"touch a 1\r\nflush_all\r\nversion\r\nmn\r\nquit\r\n");
    let whole = run(&[&input]);
    assert_eq!(
        whole,
        vec![
            "Store Set a 1 2 \"abc\" false",
            "Get [a,b]",
            "Some(\"SERVER_ERROR object too large for cache\") Some(\"big\")",
            "Some(\"CLIENT_ERROR bad data chunk\") None",
            "Some(\"ERROR\") None",
            "Delete a true",
            "Some(\"ERROR\") None",
            "Arith n true 5 false",
            "Gets [a,b]",
            "Store Cas(7) a 0 0 \"x\" false",
            "Touch a 1 false",
            "FlushAll { delay: Some(0), noreply: false }",
            "Version",
            "Meta Noop \"\"",
            "Quit",
        ]
    );
    // Split at every offset outside the big block, and a few inside it.
    let big_start = 27 + 21;
    let big_end = big_start + 1048578;
    let offsets =
        (0..=input.len()).filter(|&i| i <= big_start + 3 || i >= big_end - 3 || i % 65536 == 0);
    for i in offsets {
        let (a, b) = input.split_at(i);
        assert_eq!(run(&[a, b]), whole, "split at {i}");
    }
    // Byte by byte (outside the big block, which is fed in one piece).
    let mut chunks: Vec<&[u8]> = input[..big_start].chunks(1).collect();
    chunks.push(&input[big_start..big_end]);
    chunks.extend(input[big_end..].chunks(1));
    assert_eq!(run(&chunks), whole);
}

#[test]
fn random_bytes_never_panic() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words: &[&[u8]] = &[
        b"get",
        b"gets",
        b"gat",
        b"set",
        b"cas",
        b"add",
        b"delete",
        b"incr",
        b"decr",
        b"touch",
        b"flush_all",
        b"verbosity",
        b"stats",
        b"cache_memlimit",
        b"noreply",
        b"mg",
        b"lru",
        b"slabs",
        b"lru_crawler",
        b"0",
        b"1",
        b"-1",
        b"5",
        b"4294967297",
        b"k",
        b"\r\n",
        b"\n",
        b" ",
        b"  ",
        b"\t",
        b"\0",
        b"\r",
        b"HTTP/",
        b"18446744073709551616",
    ];
    let small = Limits {
        item_size_max: 200,
        cas_enabled: false,
        buffer_room: 120,
    };
    for round in 0..20_000 {
        let len = (next() % 200) as usize;
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let r = next();
            if r % 3 == 0 {
                buf.push((r >> 8) as u8);
            } else {
                buf.extend_from_slice(words[(r >> 8) as usize % words.len()]);
            }
        }
        if round % 100 == 0 {
            buf.extend(vec![b'x'; 2100]);
        }
        let limits = if round % 2 == 0 { L } else { small };
        let mut pos = 0;
        let mut steps = 0;
        while pos < buf.len() {
            steps += 1;
            assert!(steps <= buf.len() + 1, "no progress");
            match parse(&buf[pos..], &limits) {
                Parse::Partial(frame) => {
                    assert!(frame > buf.len() - pos && frame <= limits.buffer_room);
                    break;
                }
                Parse::Incomplete | Parse::Close => break,
                Parse::Request(_, n) => {
                    assert!(n > 0 && n <= buf.len() - pos);
                    pos += n;
                }
                Parse::Error {
                    consumed, swallow, ..
                } => {
                    assert!(consumed > 0 && consumed <= buf.len() - pos);
                    pos += consumed;
                    pos = (pos + swallow).min(buf.len());
                }
            }
        }
    }
}

/// Rough speed check: `cargo test --release --lib parse_speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn parse_speed() {
    let mut buf = Vec::new();
    for i in 0..1000 {
        buf.extend_from_slice(
            format!("get key:{i:08}\r\nset key:{i:08} 0 0 10\r\n0123456789\r\n").as_bytes(),
        );
    }
    let t = std::time::Instant::now();
    let mut reqs = 0u64;
    for _ in 0..1000 {
        let mut pos = 0;
        while let Parse::Request(_, n) = parse(&buf[pos..], &L) {
            pos += n;
            reqs += 1;
        }
    }
    let el = t.elapsed();
    println!(
        "{reqs} requests in {el:?}: {:.1} ns/request",
        el.as_nanos() as f64 / reqs as f64
    );
}

#[test]
fn a_value_larger_than_the_buffer_room_is_refused_as_out_of_memory() {
    let room = Limits {
        buffer_room: 100,
        ..L
    };
    // Frame = line (14) + 80 + 2 = 96: fits, awaited whole.
    assert_eq!(pl(b"set k 0 0 80\r\n", &room), "Partial(96)");
    // 14 + 90 + 2 = 106 > 100: refused before the data arrives, a set's old value goes.
    assert_eq!(
        pl(b"set k 0 0 90\r\nabc", &room),
        "Error(Some(\"SERVER_ERROR out of memory storing object\"), 14, 92, Some(\"k\"), no memory)"
    );
    assert_eq!(
        pl(b"add k 0 0 90 noreply\r\n", &room),
        "Error(None, 22, 92, None, no memory)"
    );
    // Already all here: served whatever the room.
    let mut whole = b"set k 0 0 90\r\n".to_vec();
    whole.extend(vec![b'v'; 90]);
    whole.extend(b"\r\n");
    assert!(pl(&whole, &room).starts_with("Req(Store Set k 0 0 \"vvv"));
    // Too large wins over out of memory.
    assert_eq!(
        pl(b"set k 0 0 2000000\r\n", &room),
        "Error(Some(\"SERVER_ERROR object too large for cache\"), 19, 2000002, Some(\"k\"))"
    );
}

#[test]
fn lru_crawler_and_watch_forms() {
    error(b"lru_crawler\r\n", ERROR);
    error(b"lru_crawler foo\r\n", ERROR);
    error(b"lru_crawler foo bar\r\n", ERROR);
    error(b"lru_crawler crawl all noreply\r\n", ERROR);
    error(b"lru_crawler metadump\r\n", ERROR);
    error(b"lru_crawler sleep 2000000\r\n", CRAWLER_SLEEP);
    error(b"lru_crawler sleep x\r\n", BAD_FORMAT);
    error(b"lru_crawler tocrawl x\r\n", BAD_FORMAT);
    error(b"lru_crawler tocrawl -1\r\n", BAD_FORMAT);
    assert_eq!(p(b"lru_crawler enable\r\n"), "Req(LruCrawler(Enable), 20)");
    assert_eq!(
        p(b"lru_crawler disable\r\n"),
        "Req(LruCrawler(Disable), 21)"
    );
    assert_eq!(
        p(b"lru_crawler crawl  1,2\r\n"),
        "Req(LruCrawler(Crawl([49, 44, 50])), 24)"
    );
    assert_eq!(
        p(b"lru_crawler metadump all\r\n"),
        "Req(LruCrawler(Metadump([97, 108, 108])), 26)"
    );
    assert_eq!(
        p(b"lru_crawler sleep 5\r\n"),
        "Req(LruCrawler(Sleep(5)), 21)"
    );
    assert_eq!(
        p(b"lru_crawler tocrawl 0\r\n"),
        "Req(LruCrawler(ToCrawl(0)), 23)"
    );
    assert_eq!(
        p(b"watch\r\n"),
        "Req(Watch { flags: Some(4), noreply: false }, 7)"
    );
    assert_eq!(
        p(b"watch fetchers mutations evictions connevents\r\n"),
        "Req(Watch { flags: Some(46), noreply: false }, 47)"
    );
    assert_eq!(
        p(b"watch noreply\r\n"),
        "Req(Watch { flags: None, noreply: true }, 15)"
    );
    assert_eq!(
        p(b"watch fetchers bogus\r\n"),
        "Req(Watch { flags: None, noreply: false }, 22)"
    );
}
