//! `stats` and its groups print every name memcached 1.6.18 prints, in its order, with
//! the same values where the figure means the same thing (checked live, side by side),
//! and `slabs` commands agree with `stats settings`.

use crate::common::{Client, Server};

/// Names of one stats group, with class ids and connection fds replaced by `N`, each
/// name once, in order of first appearance.
fn names(c: &mut Client, group: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, _) in c.stats(group) {
        let k = k
            .split(':')
            .map(|p| {
                if p.chars().all(|ch| ch.is_ascii_digit()) {
                    "N"
                } else {
                    p
                }
            })
            .collect::<Vec<_>>()
            .join(":");
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// The same few operations on both servers: hits and misses of every kind.
fn exercise(c: &mut Client) {
    for (req, reply) in [
        ("set a 0 0 1\r\n1\r\n", "STORED\r\n"),
        ("set big 0 0 300\r\n", ""),
        ("get a\r\n", "VALUE a 0 1\r\n1\r\nEND\r\n"),
        ("get nope\r\n", "END\r\n"),
        ("incr a 5\r\n", "6\r\n"),
        ("decr a 2\r\n", "4\r\n"),
        ("touch a 100\r\n", "TOUCHED\r\n"),
        ("gets nope\r\n", "END\r\n"),
        ("cas a 0 0 1 1\r\n9\r\n", "EXISTS\r\n"),
        ("delete big\r\n", "DELETED\r\n"),
        ("mg a v\r\n", "VA 1\r\n4\r\n"),
    ] {
        if req.starts_with("set big") {
            c.send(req.as_bytes());
            c.roundtrip(format!("{}\r\n", "b".repeat(300)).as_bytes(), b"STORED\r\n");
            continue;
        }
        c.roundtrip(req.as_bytes(), reply.as_bytes());
    }
}

#[test]
fn every_stats_group_has_memcacheds_names_in_its_order() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    let (mut m, mut f) = (mc.connect(), fc.connect());
    exercise(&mut m);
    exercise(&mut f);
    for group in ["", "settings", "slabs", "items", "sizes", "conns"] {
        let (a, b) = (names(&mut m, group), names(&mut f, group));
        let ours: Vec<&String> = b.iter().filter(|n| a.contains(n)).collect();
        let missing: Vec<&String> = a.iter().filter(|n| !b.contains(n)).collect();
        assert!(missing.is_empty(), "stats {group}: missing {missing:?}");
        assert_eq!(
            ours,
            a.iter().collect::<Vec<_>>(),
            "stats {group}: memcached's names out of order"
        );
        // Ours beyond memcached's may only follow them.
        let first_extra = b.iter().position(|n| !a.contains(n));
        if let Some(i) = first_extra {
            assert!(
                b[i..].iter().all(|n| !a.contains(n)),
                "stats {group}: a name of ours before memcached's: {:?}",
                &b[i..]
            );
        }
    }
}

/// Sums of a per-class figure over every class.
fn class_sum(c: &mut Client, group: &str, field: &str) -> u64 {
    c.stats(group)
        .into_iter()
        .filter(|(k, _)| k.rsplit(':').next() == Some(field) && k.contains(':'))
        .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
        .sum()
}

#[test]
fn per_class_counters_agree_with_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    let (mut m, mut f) = (mc.connect(), fc.connect());
    exercise(&mut m);
    exercise(&mut f);
    for field in [
        "get_hits",
        "cmd_set",
        "delete_hits",
        "incr_hits",
        "decr_hits",
        "cas_hits",
        "cas_badval",
        "touch_hits",
        "used_chunks",
    ] {
        assert_eq!(
            class_sum(&mut f, "slabs", field),
            class_sum(&mut m, "slabs", field),
            "stats slabs {field}"
        );
    }
    for field in [
        "number",
        "number_cold",
        "evicted",
        "outofmemory",
        "hits_to_cold",
    ] {
        let (ours, theirs) = (
            class_sum(&mut f, "items", field),
            class_sum(&mut m, "items", field),
        );
        // memcached counts a hit of a new item as a hit to hot; ours are all cold.
        if field == "hits_to_cold" {
            assert_eq!(ours, class_sum(&mut m, "slabs", "get_hits"), "hits_to_cold");
            continue;
        }
        if field == "number_cold" {
            assert_eq!(ours, class_sum(&mut m, "items", "number"), "number_cold");
            continue;
        }
        assert_eq!(ours, theirs, "stats items {field}");
    }
    // The general figures memcached derives from the same events.
    for name in [
        "get_hits",
        "get_misses",
        "cmd_set",
        "incr_hits",
        "cas_badval",
        "touch_hits",
    ] {
        assert_eq!(f.stat(name), m.stat(name), "stats {name}");
    }
}

#[test]
fn item_age_and_evicted_time_come_from_the_items() {
    let fc = Server::ferrocache(&["-o", "debugtime", "-m", "8"]);
    let mut c = fc.connect();
    c.roundtrip(b"set old 0 0 3\r\nabc\r\n", b"STORED\r\n");
    c.roundtrip(b"debugtime 500\r\n", b"OK\r\n");
    let age: u64 = c
        .stats("items")
        .into_iter()
        .find(|(k, _)| k.ends_with(":age"))
        .map(|(_, v)| v.parse().unwrap_or(0))
        .unwrap_or(0);
    assert!((500..510).contains(&age), "age {age}");
    // Fill -m with items of one size, let them age, then store a few more: the items
    // evicted for them are the old ones, and evicted_time says how old they were.
    let v = "x".repeat(2000);
    for i in 0..4500 {
        c.send(format!("set k{i} 0 0 2000 noreply\r\n{v}\r\n").as_bytes());
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    c.roundtrip(b"debugtime 300\r\n", b"OK\r\n");
    let evicted = |c: &mut Client| -> (u64, u64) {
        let items = c.stats("items");
        let sum = |f: &str| -> Vec<u64> {
            items
                .iter()
                .filter(|(k, _)| k.ends_with(f))
                .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
                .collect()
        };
        (
            sum(":evicted").iter().sum(),
            sum(":evicted_time").into_iter().max().unwrap_or(0),
        )
    };
    let (before, _) = evicted(&mut c);
    for i in 0..200 {
        c.send(format!("set new{i} 0 0 2000 noreply\r\n{v}\r\n").as_bytes());
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    let (after, evicted_time) = evicted(&mut c);
    assert!(after > before, "nothing evicted by the new items");
    assert!(
        (300..310).contains(&evicted_time),
        "evicted_time {evicted_time}"
    );
}

#[test]
fn settings_given_with_dash_o_are_printed_as_memcached_prints_them() {
    let opts = "hot_lru_pct=30,warm_lru_pct=30,slab_automove_ratio=0.5,lru_crawler_sleep=50,\
                temporary_ttl=90,watcher_logbuf_size=128,hash_algorithm=jenkins,\
                tail_repair_time=20,slab_automove=2,hot_max_factor=0.3,track_sizes";
    let Some(mc) = Server::memcached(&["-o", opts]) else {
        return;
    };
    let fc = Server::ferrocache(&["-o", opts]);
    let (mut m, mut f) = (mc.connect(), fc.connect());
    let (a, b) = (m.stats("settings"), f.stats("settings"));
    for name in [
        "hot_lru_pct",
        "warm_lru_pct",
        "slab_automove",
        "slab_automove_ratio",
        "lru_crawler_sleep",
        "temp_lru",
        "temporary_ttl",
        "watcher_logbuf_size",
        "hash_algorithm",
        "tail_repair_time",
        "hot_max_factor",
        "track_sizes",
        "ssl_min_version",
        "ext_max_frag",
    ] {
        let get =
            |s: &Vec<(String, String)>| s.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(get(&b), get(&a), "stats settings {name}");
    }
}

#[test]
fn slabs_commands_agree_with_stats_settings() {
    let fc = Server::ferrocache(&[]);
    let mut c = fc.connect();
    let setting = |c: &mut Client, n: &str| {
        c.stats("settings")
            .into_iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v)
    };
    // No slab pages to reassign: said in both places, in memcached's words.
    assert_eq!(setting(&mut c, "slab_reassign").as_deref(), Some("no"));
    c.roundtrip(
        b"slabs reassign 1 2\r\n",
        b"CLIENT_ERROR slab reassignment disabled\r\n",
    );
    assert_eq!(setting(&mut c, "slab_automove").as_deref(), Some("1"));
    c.roundtrip(b"slabs automove 0\r\n", b"OK\r\n");
    assert_eq!(setting(&mut c, "slab_automove").as_deref(), Some("0"));
    c.roundtrip(b"slabs automove ratio 0.4\r\n", b"OK\r\n");
    assert_eq!(
        setting(&mut c, "slab_automove_ratio").as_deref(),
        Some("0.40")
    );
    c.roundtrip(b"slabs automove 3\r\n", b"ERROR\r\n");
    assert_eq!(setting(&mut c, "slab_automove").as_deref(), Some("0"));
}

/// memcached with `-o no_slab_reassign` answers `slabs reassign` as we do.
#[test]
fn reassign_refusal_is_memcacheds() {
    let Some(mc) = Server::memcached(&["-o", "no_slab_reassign"]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    for s in [&mc, &fc] {
        let mut c = s.connect();
        c.roundtrip(
            b"slabs reassign 1 2\r\n",
            b"CLIENT_ERROR slab reassignment disabled\r\n",
        );
        c.roundtrip(b"slabs automove 2\r\n", b"OK\r\n");
        c.roundtrip(
            b"slabs automove x\r\n",
            b"CLIENT_ERROR bad command line format\r\n",
        );
    }
}

/// With `-o idle_timeout`, `stats` has memcached's `idle_kicks` in its place, and it
/// counts the connections closed for idling (memcached's `t/idle-timeout.t` runs in
/// `tests/suite/memcached_suite.rs`).
#[test]
fn idle_kicks_where_memcached_has_it_and_counting() {
    let args = ["-o", "idle_timeout=1"];
    let Some(mc) = Server::memcached(&args) else {
        return;
    };
    let fc = Server::ferrocache(&args);
    for s in [&mc, &fc] {
        let mut c = s.connect();
        let names: Vec<String> = c.stats("").into_iter().map(|(k, _)| k).collect();
        let at = names.iter().position(|n| n == "idle_kicks");
        assert!(
            at.is_some_and(|i| names[i - 1] == "auth_errors" && names[i + 1] == "bytes_read"),
            "port {}: idle_kicks not between auth_errors and bytes_read: {names:?}",
            s.port
        );
        assert_eq!(c.stat("idle_kicks").as_deref(), Some("0"));
        // One connection idles; this one keeps asking (bounded: 10 s).
        let idle = s.connect();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while c.stat("idle_kicks").as_deref() != Some("1") {
            assert!(
                std::time::Instant::now() < deadline,
                "port {}: the idle connection was not kicked",
                s.port
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        drop(idle);
    }
    // Without -o idle_timeout neither prints it.
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    for s in [&mc, &fc] {
        assert_eq!(s.connect().stat("idle_kicks"), None, "port {}", s.port);
    }
}

/// `cache_memlimit` moves `stats settings` maxbytes as it moves `limit_maxbytes`.
#[test]
fn maxbytes_follows_cache_memlimit_as_in_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    let mut seen = Vec::new();
    for s in [&mc, &fc] {
        let mut c = s.connect();
        assert_eq!(c.line("cache_memlimit 100\r\n"), "OK\r\n");
        let settings = c.stats("settings");
        let maxbytes = settings
            .iter()
            .find(|(k, _)| k == "maxbytes")
            .map(|(_, v)| v.clone());
        seen.push((maxbytes, c.stat("limit_maxbytes")));
    }
    let want = Some("104857600".to_string());
    assert_eq!(seen[0], (want.clone(), want.clone()), "memcached");
    assert_eq!(seen[1], seen[0], "ferrocache beside memcached");
}
