//! Key → node placement of `ferrocache::client::ring`, checked key for key against the
//! real client libraries: golden CSVs made by pylibmc (libmemcached 1.0.18) and by
//! spymemcached 2.12.3, live comparisons with pylibmc's `Client.hash()` and pymemcache's
//! `RendezvousHash` (no server needed: `tests/interop/ring_reference.py`), and the
//! consistency properties of the rings.
use crate::common;
use crate::common::*;

use ferrocache::client::ring::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const PYTHON: &str = "/usr/bin/python3";
/// Exit status of ring_reference.py when its client library is missing.
const SKIP_STATUS: i32 = 77;
const THREE: &str = "127.0.0.1:21311,127.0.0.1:21312,127.0.0.1:21313";

fn manifest_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn nodes(list: &str) -> Vec<NodeSpec> {
    parse_servers(list).unwrap_or_else(|e| panic!("{list}: {e}"))
}

fn names(nodes: &[NodeSpec]) -> Vec<String> {
    nodes.iter().map(NodeSpec::name).collect()
}

fn test_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key:{i:08}")).collect()
}

// ------------------------------------------------------------------ golden files

/// Checks every key of a `key,server` CSV from tests/data/ketama; returns the count.
fn check_golden(file: &str, dist: Distribution, servers: &str) -> usize {
    let path = manifest_path("tests/data/ketama").join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("key,server"), "{file}: header");
    let nodes = nodes(servers);
    let names = names(&nodes);
    let ring = Ring::new(dist, &nodes);
    let (mut total, mut matched) = (0, 0);
    let mut bad = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (key, server) = line.split_once(',').expect("key,server");
        let got = ring.locate(key.as_bytes()).map(|i| names[i].as_str());
        total += 1;
        if got == Some(server) {
            matched += 1;
        } else if bad.len() < 5 {
            bad.push(format!("{key}: want {server}, got {got:?}"));
        }
    }
    println!("{file} ({dist}): {matched}/{total} keys match");
    assert_eq!(total, 10_000, "{file}: key count");
    assert_eq!(matched, total, "{file}: first mismatches {bad:?}");
    matched
}

#[test]
fn golden_pylibmc_ketama_classic() {
    check_golden("classic-3x127.0.0.1.csv", Distribution::Ketama, THREE);
}

#[test]
fn golden_pylibmc_ketama_weighted_equal() {
    check_golden(
        "weighted-3x127.0.0.1.csv",
        Distribution::KetamaWeighted,
        THREE,
    );
}

#[test]
fn golden_pylibmc_ketama_weighted_1_2_1() {
    check_golden(
        "weighted-1-2-1.csv",
        Distribution::KetamaWeighted,
        "127.0.0.1:21311:1 127.0.0.1:21312:2 127.0.0.1:21313:1",
    );
}

/// Made with Debian's libspymemcached-java 2.12.3: `KetamaNodeLocator(nodes,
/// DefaultHashAlgorithm.KETAMA_HASH).getPrimary(key)` for nodes from
/// `AddrUtil.getAddresses("127.0.0.1:21311 127.0.0.1:21312 127.0.0.1:21313")`
/// (`ring_reference.py spymemcached`).
#[test]
fn golden_spymemcached() {
    check_golden(
        "spymemcached-3x127.0.0.1.csv",
        Distribution::Spymemcached,
        THREE,
    );
}

/// Known answers from the real spymemcached 2.12.3 (JDK 17), for lists where its point
/// strings differ from libmemcached's: port 11211 is kept (`127.0.0.1:11211-i`, where
/// libmemcached hashes `127.0.0.1-i`) and an IPv6 literal is spelled the Java way
/// (`[0:0:0:0:0:0:0:1]:11211-i`). The leading `/` of `InetSocketAddress.toString()` is
/// stripped by `KetamaNodeKeyFormatter` (Format.SPYMEMCACHED) since spymemcached 2.5-ish;
/// libmemcached's `KETAMA_SPY` mode still hashes the old `/ip:port-i`. What was checked
/// in spymemcached's source: `KetamaNodeLocator.setKetamaNodes` (160 reps from
/// `DefaultKetamaNodeLocatorConfiguration`, 40 MD5 digests per node, 4 little-endian
/// points each, `TreeMap.put` so a later equal point replaces an earlier one),
/// `ArrayBasedCeilRing.findCeilIndex` (first point >= hash, else the first point), and
/// `DefaultHashAlgorithm.KETAMA_HASH` (MD5 of the UTF-8 key, bytes 0..4 little-endian).
#[test]
fn spymemcached_known_answers() {
    let cases = [
        (
            "127.0.0.1:11211 127.0.0.2:11211 [::1]:11211",
            "1220202210200022001120220110010021122000010102000200221121010002",
            vec![3419, 3221, 3360],
        ),
        (
            "10.0.0.1:11211 10.0.0.2:11211 10.0.0.3:11211 10.0.0.4:11211",
            "2332323022113101001011312302003302102110330210002223013011212020",
            vec![2910, 2438, 2428, 2224],
        ),
    ];
    for (list, first64, counts) in cases {
        let nodes = nodes(list);
        let spy = Ring::new(Distribution::Spymemcached, &nodes);
        let lib = Ring::new(Distribution::KetamaWeighted, &nodes);
        let keys = test_keys(10_000);
        let got: String = keys[..64]
            .iter()
            .map(|k| char::from(b'0' + spy.locate(k.as_bytes()).unwrap() as u8))
            .collect();
        assert_eq!(got, first64, "{list}: first 64 keys");
        let mut n = vec![0; nodes.len()];
        let mut differs_from_libmemcached = 0;
        for k in &keys {
            let i = spy.locate(k.as_bytes()).unwrap();
            n[i] += 1;
            differs_from_libmemcached += usize::from(lib.locate(k.as_bytes()) != Some(i));
        }
        println!("spymemcached {list}: counts {n:?}, {differs_from_libmemcached} keys differ from ketama-weighted");
        assert_eq!(n, counts, "{list}: keys per node");
        assert!(differs_from_libmemcached > 1000, "{list}: port-11211 rule");
    }
}

// ------------------------------------------------------------------ live references

/// Runs ring_reference.py; None when it is skipped. `needed_in_ci`: a missing client
/// library fails the test under CI (pylibmc and pymemcache are installed there).
fn reference(
    mode: &str,
    extra: &[&str],
    servers: &[&str],
    needed_in_ci: bool,
) -> Option<Vec<(Vec<u8>, usize)>> {
    if !require_tool(PYTHON) {
        return None;
    }
    let script = manifest_path("tests/interop/ring_reference.py");
    let run = run_bounded(
        Command::new(PYTHON)
            .arg(&script)
            .arg(mode)
            .args(extra)
            .args(servers),
        Duration::from_secs(60),
    );
    match run.status.and_then(|s| s.code()) {
        Some(0) => {}
        Some(SKIP_STATUS) => {
            assert!(
                !(needed_in_ci && in_ci()),
                "ring_reference.py {mode}: client library missing under CI: {}",
                run.stderr
            );
            let why = format!("{mode} reference: {}", run.stderr.trim());
            if needed_in_ci {
                common::skip(&why);
            } else {
                common::skip_optional(&why);
            }
            return None;
        }
        other => panic!(
            "ring_reference.py {mode} {servers:?}: exit {other:?}\n{}",
            run.stderr
        ),
    }
    let pairs: Vec<(Vec<u8>, usize)> = run
        .stdout
        .lines()
        .map(|line| {
            let (hex, idx) = line.split_once(' ').expect("hex index");
            (unhex(hex), idx.parse().expect("index"))
        })
        .collect();
    assert!(!pairs.is_empty(), "ring_reference.py {mode}: no output");
    Some(pairs)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Compares our placement with a reference's for every key.
fn compare(label: &str, dist: Distribution, servers: &[&str], pairs: &[(Vec<u8>, usize)]) {
    let nodes: Vec<NodeSpec> = servers
        .iter()
        .map(|s| NodeSpec::parse(s).unwrap())
        .collect();
    let ring = Ring::new(dist, &nodes);
    let mut bad = Vec::new();
    let mut matched = 0;
    for (key, want) in pairs {
        let got = ring.locate(key);
        if got == Some(*want) {
            matched += 1;
        } else if bad.len() < 5 {
            bad.push(format!(
                "{:?}: want {want}, got {got:?}",
                String::from_utf8_lossy(key)
            ));
        }
    }
    println!(
        "{label} {dist} {servers:?}: {matched}/{} keys match",
        pairs.len()
    );
    assert_eq!(matched, pairs.len(), "{label} {servers:?}: {bad:?}");
}

/// Server lists tried against libmemcached (pylibmc): equal and unequal weights, the
/// default port (left out of libmemcached's point strings), IPv6, a host name, one
/// server, a weight so small the node gets no points, and a larger ring.
const PYLIBMC_LISTS: &[&[&str]] = &[
    &["127.0.0.1:21311", "127.0.0.1:21312", "127.0.0.1:21313"],
    &[
        "127.0.0.1:21311:1",
        "127.0.0.1:21312:2",
        "127.0.0.1:21313:1",
    ],
    &[
        "127.0.0.1:21311:2",
        "127.0.0.1:21312:2",
        "127.0.0.1:21313:2",
    ],
    &[
        "127.0.0.1",
        "localhost:11211",
        "127.0.0.2:11212:3",
        "[::1]:11213",
        "[::1]",
    ],
    &["127.0.0.1:21311"],
    &["127.0.0.1:21311:1", "127.0.0.1:21312:1000"],
    &[
        "127.0.0.1:21311",
        "127.0.0.1:21312",
        "127.0.0.1:21313",
        "127.0.0.1:21314",
        "127.0.0.1:21315",
        "127.0.0.1:21316:7",
        "127.0.0.1:21317",
        "127.0.0.1:21318",
        "127.0.0.1:21319:3",
        "127.0.0.1:21320",
    ],
];

const REF_KEYS: &[&str] = &["--keys", "10000", "--random", "2000", "--unicode"];

fn pylibmc_check(mode: &str, dist: Distribution) {
    for servers in PYLIBMC_LISTS {
        let Some(pairs) = reference(mode, REF_KEYS, servers, true) else {
            return;
        };
        compare(mode, dist, servers, &pairs);
    }
}

#[test]
fn matches_pylibmc_ketama_weighted() {
    pylibmc_check("pylibmc-ketama-weighted", Distribution::KetamaWeighted);
}

#[test]
fn matches_pylibmc_ketama() {
    pylibmc_check("pylibmc-ketama", Distribution::Ketama);
}

#[test]
fn matches_pylibmc_modula() {
    pylibmc_check("pylibmc-modula", Distribution::Modula);
}

#[test]
fn matches_pymemcache_rendezvous() {
    let lists: &[&[&str]] = &[
        &["127.0.0.1:21311", "127.0.0.1:21312", "127.0.0.1:21313"],
        &["127.0.0.1", "localhost:21312", "[::1]:11211", "[::1]:21314"],
        &["127.0.0.1:21311"],
        &[
            "127.0.0.1:21311",
            "127.0.0.1:21312",
            "127.0.0.1:21313",
            "127.0.0.1:21314",
            "127.0.0.1:21315",
            "127.0.0.1:21316",
            "127.0.0.1:21317",
            "127.0.0.1:21318",
        ],
    ];
    for servers in lists {
        let Some(pairs) = reference("rendezvous", REF_KEYS, servers, true) else {
            return;
        };
        compare("pymemcache", Distribution::Rendezvous, servers, &pairs);
    }
}

/// Runs the real spymemcached when Debian's libspymemcached-java and a JDK are
/// installed (not part of CI, so this one only ever skips there); the golden file and
/// the known answers above always run.
#[test]
fn matches_spymemcached_when_installed() {
    let lists: &[&[&str]] = &[
        &["127.0.0.1:21311", "127.0.0.1:21312", "127.0.0.1:21313"],
        &["127.0.0.1:11211", "127.0.0.2:11211", "[::1]:11211"],
        &["127.0.0.1:11211"],
        &[
            "10.0.0.1:11211",
            "10.0.0.2:11211",
            "10.0.0.3:11211",
            "10.0.0.4:11211",
            "10.0.0.5:11211",
        ],
    ];
    for servers in lists {
        let Some(pairs) = reference("spymemcached", REF_KEYS, servers, false) else {
            return;
        };
        compare("spymemcached", Distribution::Spymemcached, servers, &pairs);
    }
}

// ------------------------------------------------------------------ hash functions

#[test]
fn hash_known_answers() {
    // MurmurHash3 x86_32 (the reference vectors; identical to pymemcache's murmur3_32).
    assert_eq!(murmur3_32(b"", 0), 0);
    assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
    assert_eq!(murmur3_32(b"a", 0), 0x3c25_69b2);
    assert_eq!(murmur3_32(b"ab", 0), 0x9bbf_d75f);
    assert_eq!(murmur3_32(b"abc", 0), 0xb3dd_93fa);
    assert_eq!(murmur3_32(b"abcd", 0), 0x43ed_676a);
    assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
    assert_eq!(murmur3_32(b"hello", 0x9747_b28c), 0x5d7f_56e8);
    assert_eq!(
        murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
        0x2e4f_f723
    );
    assert_eq!(murmur3_32(b"127.0.0.1:11211-key:00000000", 0), 0x49cb_183c);
    // Jenkins one-at-a-time (libhashkit).
    assert_eq!(one_at_a_time(b""), 0);
    assert_eq!(one_at_a_time(b"a"), 0xca2e_9442);
    assert_eq!(
        one_at_a_time(b"The quick brown fox jumps over the lazy dog"),
        0x519e_91f5
    );
    assert_eq!(one_at_a_time(b"key:00000000"), 0xa359_0dae);
    // Bytes >= 0x80 are sign-extended as libhashkit's `char` (values from libmemcached's
    // memcached_generate_hash_value(.., MEMCACHED_HASH_DEFAULT)).
    assert_eq!(one_at_a_time("caf\u{e9}".as_bytes()), 0xd99c_709e);
    assert_eq!(one_at_a_time(&[0x80, 0xff]), 0x00d2_360d);
    // MD5, first 4 bytes little-endian: MD5("") = d41d8cd9...
    assert_eq!(ketama_hash(b""), 0xd98c_1dd4);
    assert_eq!(ketama_hash(b"a"), 0xb975_c10c);
    assert_eq!(
        ketama_hash(b"The quick brown fox jumps over the lazy dog"),
        0x9d7d_109e
    );
    assert_eq!(ketama_hash(b"key:00000000"), 0xbcef_6587);
}

// ------------------------------------------------------------------ ring properties

const CONSISTENT: [Distribution; 4] = [
    Distribution::KetamaWeighted,
    Distribution::Ketama,
    Distribution::Spymemcached,
    Distribution::Rendezvous,
];

#[test]
fn removing_a_node_moves_only_its_keys() {
    let nodes = nodes(THREE);
    let keys = test_keys(20_000);
    for dist in CONSISTENT {
        let before = Ring::new(dist, &nodes);
        let after = Ring::with_live(dist, &nodes, &[true, false, true]);
        let mut moved = 0;
        let mut held = 0;
        for k in &keys {
            let b = before.locate(k.as_bytes()).unwrap();
            let a = after.locate(k.as_bytes()).unwrap();
            assert_ne!(a, 1, "{dist}: {k} placed on the dead node");
            if b == 1 {
                held += 1;
            } else {
                assert_eq!(a, b, "{dist}: {k} moved off a live node");
            }
            moved += usize::from(a != b);
        }
        println!("{dist}: removing node 1 moved {moved} keys, exactly the {held} it held");
        assert_eq!(moved, held);
        assert!(held > 20_000 / 3 / 2, "{dist}: node 1 held only {held}");
    }
    // modula is not consistent: most keys move when the node count changes.
    let before = Ring::new(Distribution::Modula, &nodes);
    let after = Ring::with_live(Distribution::Modula, &nodes, &[true, false, true]);
    let moved = keys
        .iter()
        .filter(|k| before.locate(k.as_bytes()) != after.locate(k.as_bytes()))
        .count();
    println!(
        "modula: removing node 1 moved {moved} of {} keys",
        keys.len()
    );
    assert!(moved > keys.len() / 2);
}

/// with_live equals a ring built from the live nodes only (libmemcached rebuilds the
/// continuum from the live servers; pymemcache removes the node from its hasher).
#[test]
fn with_live_equals_the_live_subset() {
    let all =
        nodes("127.0.0.1:21311 127.0.0.1:21312 127.0.0.1:21313 127.0.0.1:21314 127.0.0.1:21315");
    let live = [true, false, true, true, false];
    let subset: Vec<NodeSpec> = all
        .iter()
        .zip(live)
        .filter(|(_, l)| *l)
        .map(|(n, _)| n.clone())
        .collect();
    let back = [0, 2, 3];
    for dist in Distribution::ALL {
        let a = Ring::with_live(dist, &all, &live);
        let b = Ring::new(dist, &subset);
        for k in test_keys(5_000) {
            let want = b.locate(k.as_bytes()).map(|i| back[i]);
            assert_eq!(a.locate(k.as_bytes()), want, "{dist} {k}");
        }
    }
}

#[test]
fn weight_shifts_share() {
    let keys = test_keys(30_000);
    let share = |list: &str, dist: Distribution| {
        let nodes = nodes(list);
        let ring = Ring::new(dist, &nodes);
        let mut n = vec![0usize; nodes.len()];
        for k in &keys {
            n[ring.locate(k.as_bytes()).unwrap()] += 1;
        }
        n
    };
    let equal = share(THREE, Distribution::KetamaWeighted);
    let heavy = share(
        "127.0.0.1:21311 127.0.0.1:21312:3 127.0.0.1:21313",
        Distribution::KetamaWeighted,
    );
    println!("ketama-weighted keys per node: 1:1:1 {equal:?}, 1:3:1 {heavy:?}");
    for n in &equal {
        assert!((8_000..12_000).contains(n), "equal weights: {equal:?}");
    }
    assert!((15_000..21_000).contains(&heavy[1]), "1:3:1 {heavy:?}");
    assert!(heavy[0] < equal[0] && heavy[2] < equal[2], "{heavy:?}");
    // In ketama (pylibmc's) mode a weight > 1 switches to the weighted ring too.
    let heavy_ketama = share(
        "127.0.0.1:21311 127.0.0.1:21312:3 127.0.0.1:21313",
        Distribution::Ketama,
    );
    assert!(
        (15_000..21_000).contains(&heavy_ketama[1]),
        "{heavy_ketama:?}"
    );
    // Weights do not matter to the unweighted distributions.
    for dist in [
        Distribution::Spymemcached,
        Distribution::Modula,
        Distribution::Rendezvous,
    ] {
        assert_eq!(
            share(THREE, dist),
            share("127.0.0.1:21311 127.0.0.1:21312:3 127.0.0.1:21313", dist),
            "{dist}"
        );
    }
}

#[test]
fn empty_and_single_node_rings() {
    let one = nodes("10.0.0.9:11311:4");
    let three = nodes(THREE);
    for dist in Distribution::ALL {
        let empty = Ring::new(dist, &[]);
        assert_eq!(empty.locate(b"k"), None, "{dist}");
        assert_eq!(empty.distribution(), dist);
        let dead = Ring::with_live(dist, &three, &[false, false, false]);
        assert_eq!(dead.locate(b"k"), None, "{dist}");
        let short = Ring::with_live(dist, &three, &[]);
        assert_eq!(
            short.locate(b"k"),
            None,
            "{dist}: missing live flags = dead"
        );
        let single = Ring::new(dist, &one);
        let last = Ring::with_live(dist, &three, &[false, false, true]);
        for k in test_keys(500) {
            assert_eq!(single.locate(k.as_bytes()), Some(0), "{dist}");
            assert_eq!(last.locate(k.as_bytes()), Some(2), "{dist}");
        }
        assert_eq!(single.locate(b""), Some(0));
        // Empty and long keys are placed too.
        let ring = Ring::new(dist, &three);
        assert!(ring.locate(b"").is_some());
        assert!(ring.locate(&[b'x'; 250]).is_some());
    }
}

#[test]
fn placement_names_follow_the_list() {
    // A node's placement depends on its name, not on its position in the list.
    let a = nodes(THREE);
    let b = nodes("127.0.0.1:21313,127.0.0.1:21311,127.0.0.1:21312");
    for dist in CONSISTENT {
        let (ra, rb) = (Ring::new(dist, &a), Ring::new(dist, &b));
        let (na, nb) = (names(&a), names(&b));
        for k in test_keys(3_000) {
            let x = &na[ra.locate(k.as_bytes()).unwrap()];
            let y = &nb[rb.locate(k.as_bytes()).unwrap()];
            assert_eq!(x, y, "{dist} {k}");
        }
    }
}

// ------------------------------------------------------------------ parsing

#[test]
fn node_spec_parsing() {
    let ok = |s: &str, host: &str, port: u16, weight: u32, name: &str| {
        let n = NodeSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            n,
            NodeSpec {
                host: host.into(),
                port,
                weight
            },
            "{s}"
        );
        assert_eq!(n.name(), name, "{s}");
    };
    ok("127.0.0.1:21311", "127.0.0.1", 21311, 1, "127.0.0.1:21311");
    ok("127.0.0.1", "127.0.0.1", 11211, 1, "127.0.0.1:11211");
    ok(
        "cache-a.internal:11212:5",
        "cache-a.internal",
        11212,
        5,
        "cache-a.internal:11212",
    );
    ok(" localhost:1 ", "localhost", 1, 1, "localhost:1");
    ok("h:65535:4294967295", "h", 65535, u32::MAX, "h:65535");
    ok("[::1]:11212:3", "::1", 11212, 3, "[::1]:11212");
    ok("[::1]", "::1", 11211, 1, "[::1]:11211");
    ok("[fe80::1:2]:9000", "fe80::1:2", 9000, 1, "[fe80::1:2]:9000");

    for bad in [
        "",
        "   ",
        ":11211",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:abc",
        "127.0.0.1:+80",
        "127.0.0.1:",
        "127.0.0.1:11211:0",
        "127.0.0.1:11211:-1",
        "127.0.0.1:11211:x",
        "127.0.0.1:11211:1:9",
        "::1:11211",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[]:11211",
        "[host]:11211",
        "[::1]:1:2:3",
        "a/b:1",
    ] {
        let e = NodeSpec::parse(bad).expect_err(bad);
        assert!(e.contains("bad server"), "{bad:?}: {e}");
    }
}

#[test]
fn server_list_parsing() {
    let list = parse_servers("a:1,b:2 c:3:4\n\t[::1]:5, ,d").unwrap();
    let got: Vec<(String, u32)> = list.iter().map(|n| (n.name(), n.weight)).collect();
    assert_eq!(
        got,
        [
            ("a:1".to_string(), 1),
            ("b:2".into(), 1),
            ("c:3".into(), 4),
            ("[::1]:5".into(), 1),
            ("d:11211".into(), 1),
        ]
    );
    assert!(parse_servers("").is_err());
    assert!(parse_servers(" , \n").is_err());
    let e = parse_servers("a:1,bad:0,c").unwrap_err();
    assert!(e.contains("bad:0"), "{e}");
}

#[test]
fn distribution_names() {
    assert_eq!(Distribution::default(), Distribution::KetamaWeighted);
    let mut seen = HashMap::new();
    for d in Distribution::ALL {
        assert_eq!(d.name().parse::<Distribution>(), Ok(d));
        assert_eq!(d.name().to_uppercase().parse::<Distribution>(), Ok(d));
        assert_eq!(d.to_string(), d.name());
        assert!(seen.insert(d.name(), d).is_none());
    }
    assert_eq!(
        [
            "ketama-weighted",
            "ketama",
            "spymemcached",
            "modula",
            "rendezvous"
        ]
        .map(|s| s.parse::<Distribution>().unwrap()),
        Distribution::ALL
    );
    let e = "consistent".parse::<Distribution>().unwrap_err();
    for d in Distribution::ALL {
        assert!(e.contains(d.name()), "{e}");
    }
}
