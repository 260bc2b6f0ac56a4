//! `lru_crawler`: metadump lines and every reply form against memcached 1.6.18, `-X`,
//! memcached-tool's `dump`, `keys` and `display` against ferrocache, a 300k-key dump
//! through a client that stops reading (server memory stays bounded, other clients
//! are served), BUSY while a dump runs, and `crawl` reclaiming expired items.

use crate::common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

/// One metadump line's fields by name.
type Fields = BTreeMap<String, String>;

fn parse_dump(raw: &[u8]) -> (Vec<Fields>, bool) {
    let text = String::from_utf8_lossy(raw);
    let ended = text.ends_with("\nEND\r\n") || text == "END\r\n";
    let lines = text
        .split('\n')
        .filter(|l| l.starts_with("key="))
        .map(|l| {
            l.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    (lines, ended)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Keys with bytes memcached URL-encodes, and plain ones.
fn odd_keys() -> Vec<Vec<u8>> {
    vec![
        b"plain".to_vec(),
        b"a%b".to_vec(),
        b"slash/and:colon".to_vec(),
        b"tilde~dot.dash-under_".to_vec(),
        "k\u{e9}y".as_bytes().to_vec(),
        b"ctl\x01\x7f".to_vec(),
        b"q?x=1&y#z".to_vec(),
        b"+plus,comma;semi".to_vec(),
    ]
}

/// The same stores on a server: odd keys, flags, TTLs, some read.
fn populate(port: u16) {
    let mut c = Client::connect(port);
    for (i, k) in odd_keys().iter().enumerate() {
        let mut req = Vec::new();
        let ttl = if i % 2 == 0 { 0 } else { 1000 };
        let flags = if i % 3 == 0 { 0 } else { 7 };
        req.extend_from_slice(b"set ");
        req.extend_from_slice(k);
        req.extend_from_slice(format!(" {flags} {ttl} {}\r\n", 3 + i).as_bytes());
        req.extend_from_slice(&vec![b'v'; 3 + i]);
        req.extend_from_slice(b"\r\n");
        c.send(&req);
        assert_eq!(c.read_until(b"\r\n"), b"STORED\r\n");
    }
    c.send(b"get plain a%b\r\n");
    c.read_until(b"END\r\n");
}

fn dump(port: u16, what: &str) -> Vec<u8> {
    let mut c = Client::connect(port);
    c.send(format!("lru_crawler metadump {what}\r\n").as_bytes());
    c.read_until(b"END\r\n")
}

#[test]
fn metadump_lines_agree_with_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    populate(mc.port);
    populate(fc.port);
    let t = now();
    for what in ["all", "hash", "1"] {
        let (m, m_end) = parse_dump(&dump(mc.port, what));
        let (f, f_end) = parse_dump(&dump(fc.port, what));
        assert!(m_end && f_end, "{what}: both end with END");
        let by_key = |v: &[Fields]| -> BTreeMap<String, Fields> {
            v.iter().map(|l| (l["key"].clone(), l.clone())).collect()
        };
        let (m, f) = (by_key(&m), by_key(&f));
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            f.keys().collect::<Vec<_>>(),
            "{what}: the same keys, URL-encoded alike"
        );
        assert_eq!(m.len(), odd_keys().len());
        for (k, ml) in &m {
            let fl = &f[k];
            let names: Vec<_> = fl.keys().collect();
            assert_eq!(names, ml.keys().collect::<Vec<_>>(), "{k}: same fields");
            for field in ["size", "fetch"] {
                assert_eq!(fl[field], ml[field], "{what} {k}: {field}");
            }
            // Times and CAS differ by nature: compared in form.
            for (name, l) in [("memcached", ml), ("ferrocache", fl)] {
                let exp: i64 = l["exp"].parse().expect("exp");
                assert!(
                    exp == -1 || (exp - t - 1000).abs() <= 3,
                    "{name} {k} exp {exp}"
                );
                let la: i64 = l["la"].parse().expect("la");
                assert!((la - t).abs() <= 3, "{name} {k} la {la}");
                assert!(l["cas"].parse::<u64>().expect("cas") > 0);
                assert!(l["cls"].parse::<u32>().expect("cls") >= 1);
            }
            assert_eq!(fl["exp"] == "-1", ml["exp"] == "-1", "{k}: exp -1 alike");
        }
    }
    // The exact line for a plain key (the line layout, `\n` ends, `END\r\n`).
    let raw = dump(fc.port, "all");
    let text = String::from_utf8_lossy(&raw);
    let line = text
        .lines()
        .find(|l| l.starts_with("key=plain "))
        .expect("plain");
    let re_ok = line
        .strip_prefix("key=plain exp=-1 la=")
        .and_then(|r| r.split_once(" cas="))
        .map(|(la, rest)| la.parse::<i64>().is_ok() && rest.ends_with(" fetch=yes cls=1 size=67"))
        .unwrap_or(false);
    assert!(re_ok, "{line}");
    assert!(text.contains("key=a%25b ") && text.contains("key=k%C3%A9y "));
    assert!(text.contains("key=ctl%01%7F "));
    assert!(raw.ends_with(b"\nEND\r\n") && !text.contains("\r\nkey="));
}

#[test]
fn metadump_classes_are_those_of_stats_items() {
    let fc = Server::ferrocache(&[]);
    let mut c = fc.connect();
    for (i, size) in [10usize, 100, 1000, 5000, 20000].iter().enumerate() {
        for j in 0..5 {
            c.send(format!("set k{i}-{j} 0 0 {size}\r\n").as_bytes());
            c.send(&vec![b'x'; *size]);
            c.send(b"\r\n");
            assert_eq!(c.read_until(b"\r\n"), b"STORED\r\n");
        }
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in c.stats("items") {
        if let Some(id) = k
            .strip_prefix("items:")
            .and_then(|r| r.strip_suffix(":number"))
        {
            counts.insert(id.to_string(), v.parse().expect("number"));
        }
    }
    let (lines, ended) = parse_dump(&dump(fc.port, "all"));
    assert!(ended);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for l in &lines {
        *seen.entry(l["cls"].clone()).or_default() += 1;
    }
    assert_eq!(seen, counts, "cls= as stats items counts them");
    // A class list picks those classes only.
    let some = counts.keys().next().expect("a class").clone();
    let (only, _) = parse_dump(&dump(fc.port, &format!("{some},63")));
    assert_eq!(only.len() as u64, counts[&some]);
    assert!(only.iter().all(|l| l["cls"] == some));
}

/// Reply forms compared byte for byte with memcached, on one connection each.
#[test]
fn crawler_replies_match_memcached() {
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    let steps: Vec<&[u8]> = vec![
        b"lru_crawler\r\n",
        b"lru_crawler foo\r\n",
        b"lru_crawler foo bar\r\n",
        b"lru_crawler metadump\r\n",
        b"lru_crawler metadump all extra\r\n",
        b"lru_crawler crawl all noreply\r\n",
        b"lru_crawler mgdump all\r\n",
        b"lru_crawler metadump 0\r\n",
        b"lru_crawler metadump 64\r\n",
        b"lru_crawler metadump x\r\n",
        b"lru_crawler metadump 1,x\r\n",
        b"lru_crawler metadump ALL\r\n",
        b"lru_crawler metadump 63\r\n",
        b"lru_crawler metadump  all\r\n",
        b"lru_crawler crawl 0\r\n",
        b"lru_crawler crawl 100\r\n",
        b"lru_crawler crawl 1,-1\r\n",
        b"lru_crawler crawl ,\r\n",
        b"lru_crawler crawl 1, 2\r\n",
        b"lru_crawler crawl hash\r\n",
        b"lru_crawler sleep 100\r\n",
        b"lru_crawler sleep 2000000\r\n",
        b"lru_crawler sleep x\r\n",
        b"lru_crawler tocrawl 5\r\n",
        b"lru_crawler tocrawl x\r\n",
        b"lru_crawler tocrawl -1\r\n",
        b"lru_crawler tocrawl 0\r\n",
        b"lru_crawler enable\r\n",
        b"lru_crawler disable\r\n",
        b"lru_crawler disable\r\n",
        b"lru_crawler crawl all\r\n",
        b"lru_crawler metadump all\r\n",
        b"lru_crawler enable\r\n",
        b"version\r\nlru_crawler metadump all\r\n",
        b"set a 0 0 1\r\nx\r\nlru_crawler metadump all\r\n",
        b"mn\r\nlru_crawler metadump 63\r\n",
        b"get zz\r\nlru_crawler metadump 63\r\n",
        // Last: after a NOTSTARTED metadump memcached 1.6.18 keeps the connection
        // attached to the idle crawler, and answers every later metadump with
        // "ERROR an unknown error happened" (we do not copy that).
        b"lru_crawler metadump ,\r\n",
    ];
    let m = transcript(mc.port, &steps);
    let f = transcript(fc.port, &steps);
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(show(&f[i].0), show(&m[i].0), "reply to {:?}", show(step));
    }
    // A crawl answers OK (run on its own connection: it keeps the crawler busy for a
    // moment, which memcached may report as BUSY to a request right after).
    for port in [mc.port, fc.port] {
        let r = transcript(port, &[b"lru_crawler crawl all\r\n".as_slice()]);
        assert_eq!(r[0].0, b"OK\r\n");
    }
}

#[test]
fn disabled_dumping_refuses_as_memcached() {
    let Some(mc) = Server::memcached(&["-X"]) else {
        return;
    };
    let fc = Server::ferrocache(&["-X"]);
    let steps: Vec<&[u8]> = vec![
        b"lru_crawler metadump all\r\n",
        b"lru_crawler metadump 0\r\n",
        b"lru_crawler metadump hash\r\n",
        b"stats cachedump 1 1\r\n",
        b"lru_crawler disable\r\n",
        b"lru_crawler metadump all\r\n",
        b"lru_crawler enable\r\n",
        b"version\r\n",
    ];
    let m = transcript(mc.port, &steps);
    let f = transcript(fc.port, &steps);
    assert_eq!(
        f.iter().map(|r| show(&r.0)).collect::<Vec<_>>(),
        m.iter().map(|r| show(&r.0)).collect::<Vec<_>>()
    );
    assert_eq!(f[0].0, b"ERROR metadump not allowed\r\n");
}

/// memcached-tool as Debian ships it.
fn memcached_tool() -> Option<String> {
    for p in [
        "/usr/bin/memcached-tool",
        "/usr/share/memcached/scripts/memcached-tool",
    ] {
        if std::path::Path::new(p).exists() {
            return Some(p.to_string());
        }
    }
    require_tool("/usr/share/memcached/scripts/memcached-tool").then(String::new)
}

#[test]
fn memcached_tool_dump_keys_and_display() {
    let Some(tool) = memcached_tool() else {
        return;
    };
    let fc = Server::ferrocache(&[]);
    let mut c = fc.connect();
    let mut want = BTreeMap::new();
    for i in 0..300 {
        let key = format!("tool:{i}");
        let val = format!("value-{i}-{}", "z".repeat(i % 50));
        c.send(format!("set {key} {} 0 {}\r\n{val}\r\n", i % 5, val.len()).as_bytes());
        assert_eq!(c.read_until(b"\r\n"), b"STORED\r\n");
        want.insert(key, (i % 5, val));
    }
    let addr = format!("127.0.0.1:{}", fc.port);
    let run = |mode: &str| {
        let r = run_bounded(
            Command::new("perl").args([tool.as_str(), addr.as_str(), mode]),
            Duration::from_secs(30),
        );
        assert!(
            r.status.map(|s| s.success()).unwrap_or(false),
            "memcached-tool {mode} did not finish: {}",
            r.stderr
        );
        r
    };
    // dump: `add <key> <flags> <exp> <len>\r\n<value>\r\n` for every item.
    let out = run("dump").stdout;
    let mut got = BTreeMap::new();
    let mut lines = out.split("\r\n");
    while let Some(l) = lines.next() {
        let w: Vec<&str> = l.split(' ').collect();
        if w.len() == 5 && w[0] == "add" {
            let val = lines.next().expect("value line").to_string();
            assert_eq!(w[3], "0");
            assert_eq!(w[4].parse::<usize>().ok(), Some(val.len()));
            got.insert(
                w[1].to_string(),
                (w[2].parse::<usize>().expect("flags"), val),
            );
        }
    }
    assert_eq!(got, want, "dump gives every stored key and value");
    // keys: the metadump lines.
    let out = run("keys").stdout;
    let keys: Vec<&str> = out.lines().filter(|l| l.starts_with("key=tool")).collect();
    assert_eq!(keys.len(), 300);
    // display: one row per class with items, counts adding up.
    let out = run("display").stdout;
    let total: u64 = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(4)?.parse::<u64>().ok())
        .sum();
    assert!(out.starts_with("  #  Item_Size"), "{out}");
    assert_eq!(total, 300, "{out}");
}

fn pipelined_fill(port: u16, n: usize, vlen: usize) {
    let mut c = Client::connect(port);
    let val = vec![b'v'; vlen];
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend_from_slice(format!("set key:{i:08} 0 0 {vlen} noreply\r\n").as_bytes());
        batch.extend_from_slice(&val);
        batch.extend_from_slice(b"\r\n");
        if batch.len() > 1 << 20 {
            c.send(&batch);
            batch.clear();
        }
    }
    batch.extend_from_slice(b"mn\r\n");
    c.send(&batch);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok();
    assert_eq!(c.read_until(b"MN\r\n"), b"MN\r\n");
}

/// A 300k-key dump to a client that stops reading: the server holds a batch, not the
/// dump; other clients are served meanwhile; then every key arrives.
#[test]
fn big_metadump_to_a_slow_reader_stays_bounded() {
    if targeting_reference() {
        return;
    }
    let n = 300_000;
    let fc = Server::ferrocache(&["-m", "256"]);
    pipelined_fill(fc.port, n, 50);
    let mut probe = fc.connect();
    assert_eq!(probe.stat("curr_items").as_deref(), Some("300000"));
    let before = fc.rss_bytes();

    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).ok();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], fc.port)).into())
        .expect("connect");
    let mut slow: std::net::TcpStream = sock.into();
    slow.write_all(b"lru_crawler metadump all\r\n")
        .expect("send");
    let mut first = vec![0u8; 16 << 10];
    slow.read_exact(&mut first).expect("first bytes");
    // Stalled: the dump must wait, holding little.
    std::thread::sleep(Duration::from_millis(1500));
    let during = fc.rss_bytes();
    // Others are served at once (no shard lock held, no worker blocked), and another
    // dump is refused as busy.
    let mut worst = Duration::ZERO;
    for i in 0..200 {
        let t = Instant::now();
        probe.send(format!("get key:{:08}\r\n", i * 997).as_bytes());
        probe.read_until(b"END\r\n");
        worst = worst.max(t.elapsed());
    }
    assert!(worst < Duration::from_millis(100), "get took {worst:?}");
    let mut other = fc.connect();
    assert_eq!(
        other.line("lru_crawler metadump all\r\n"),
        "BUSY currently processing crawler request\r\n"
    );
    assert_eq!(
        other.line("lru_crawler crawl all\r\n"),
        "BUSY currently processing crawler request\r\n"
    );
    let grown = during.saturating_sub(before);
    eprintln!(
        "metadump of {n} keys: RSS {} MiB before, {} MiB while the reader stalls (+{} KiB)",
        before >> 20,
        during >> 20,
        grown >> 10
    );
    assert!(
        grown < 8 << 20,
        "server grew by {grown} bytes for a stalled dump"
    );
    // Now read it all.
    slow.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut all = first;
    let mut buf = vec![0u8; 1 << 16];
    while !all.ends_with(b"END\r\n") {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => all.extend_from_slice(&buf[..k]),
            Err(e) => panic!("dump read: {e} after {} bytes", all.len()),
        }
    }
    let (lines, ended) = parse_dump(&all);
    assert!(ended);
    let keys: std::collections::BTreeSet<_> = lines.iter().map(|l| l["key"].clone()).collect();
    assert_eq!(keys.len(), n, "every key once");
    // The connection serves requests again, and the crawler is free.
    slow.write_all(b"version\r\n").expect("send");
    let mut v = [0u8; 16];
    slow.read_exact(&mut v).expect("version");
    assert_eq!(&v, b"VERSION 1.6.18\r\n");
    assert_eq!(other.line("lru_crawler metadump 63\r\n"), "END\r\n");
}

#[test]
fn a_client_closing_mid_dump_frees_the_crawler() {
    if targeting_reference() {
        return;
    }
    let fc = Server::ferrocache(&[]);
    pipelined_fill(fc.port, 50_000, 20);
    let mut c = fc.connect();
    c.send(b"lru_crawler metadump all\r\n");
    let _ = c.read_exact(1000);
    drop(c);
    let mut other = fc.connect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        other.send(b"lru_crawler metadump 63\r\n");
        let r = other.read_until(b"\r\n");
        if r == b"END\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "crawler still busy: {}",
            show(&r)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn crawl_reclaims_expired_items() {
    if targeting_reference() {
        return;
    }
    let fc = Server::ferrocache(&[]);
    let mut c = fc.connect();
    for i in 0..2000 {
        c.send(format!("set exp{i} 0 1 2 noreply\r\nab\r\n").as_bytes());
    }
    c.send(b"set keep 0 0 1\r\nk\r\n");
    assert_eq!(c.read_until(b"\r\n"), b"STORED\r\n");
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(c.line("lru_crawler tocrawl 0\r\n"), "OK\r\n");
    assert_eq!(c.line("lru_crawler sleep 0\r\n"), "OK\r\n");
    assert_eq!(c.line("lru_crawler crawl all\r\n"), "OK\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.stat("curr_items").as_deref() != Some("1") {
        assert!(Instant::now() < deadline, "expired items not reclaimed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let settings = c.stats("settings");
    let get = |n: &str| {
        settings
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("lru_crawler").as_deref(), Some("yes"));
    assert_eq!(c.line("lru_crawler disable\r\n"), "OK\r\n");
    let settings = c.stats("settings");
    assert!(settings
        .iter()
        .any(|(k, v)| k == "lru_crawler" && v == "no"));
}
