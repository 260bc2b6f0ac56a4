//! `ferrocache::client` against a real cluster of ferrocache servers started by the
//! test: keys land on the node `locate` names (both protocols, three distributions),
//! failover moves exactly the dead node's keys and brings the node back after its
//! retry time, and placement agrees with twemproxy (nutcracker) and pylibmc writing to
//! and reading from the same servers.
use crate::common;
use crate::common::*;

use std::collections::{BTreeSet, HashMap};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ferrocache::client::ring::Distribution;
use ferrocache::client::{self as fc, ClientConfig, Protocol};

const NUTCRACKER: &str = "/usr/sbin/nutcracker";
const PYTHON: &str = "/usr/bin/python3";
/// Exit status the python scripts use when their client module is missing.
const SKIP_STATUS: i32 = 77;

// ---- helpers ------------------------------------------------------------------------

/// `host:port[:weight]` entries for `servers`, in order.
fn server_list(servers: &[&Server], weights: Option<&[u32]>) -> String {
    servers
        .iter()
        .enumerate()
        .map(|(i, s)| match weights {
            Some(w) => format!("127.0.0.1:{}:{}", s.port, w[i]),
            None => format!("127.0.0.1:{}", s.port),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn name_of(s: &Server) -> String {
    format!("127.0.0.1:{}", s.port)
}

fn cluster(list: &str, dist: Distribution, protocol: Protocol) -> fc::Client {
    let mut cfg = ClientConfig::new(list).expect("server list");
    cfg.distribution = dist;
    cfg.conn.protocol = protocol;
    cfg.conn.connect_timeout = Duration::from_secs(2);
    cfg.conn.io_timeout = Duration::from_secs(2);
    fc::Client::new(cfg).expect("client")
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i:05}")).collect()
}

/// Parses a text `get` reply (`VALUE k f n` blocks, then `END`) into key → value.
fn parse_values(raw: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut rest = raw;
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("unterminated reply line in {:?}", show(raw)));
        let line = std::str::from_utf8(&rest[..nl]).expect("ASCII reply line");
        rest = &rest[nl + 2..];
        if line == "END" {
            assert!(rest.is_empty(), "bytes after END: {:?}", show(rest));
            return out;
        }
        let f: Vec<&str> = line.split(' ').collect();
        assert!(
            f.len() >= 4 && f[0] == "VALUE",
            "unexpected reply line {line:?}"
        );
        let len: usize = f[3].parse().expect("value length");
        assert_eq!(&rest[len..len + 2], b"\r\n", "value not ended by CRLF");
        out.insert(f[1].to_string(), rest[..len].to_vec());
        rest = &rest[len + 2..];
    }
}

/// Reads `keys` from the memcached-protocol endpoint on `port` with raw text
/// multi-gets of 100 keys (values must not end in "END").
fn raw_get_many(port: u16, keys: &[String]) -> HashMap<String, Vec<u8>> {
    let mut conn = Client::connect(port);
    let mut out = HashMap::new();
    for chunk in keys.chunks(100) {
        conn.send(format!("get {}\r\n", chunk.join(" ")).as_bytes());
        out.extend(parse_values(&conn.read_until(b"END\r\n")));
    }
    out
}

/// For each key, the indices of the servers that hold it.
fn holders(servers: &[&Server], keys: &[String]) -> Vec<Vec<usize>> {
    let found: Vec<HashMap<String, Vec<u8>>> =
        servers.iter().map(|s| raw_get_many(s.port, keys)).collect();
    keys.iter()
        .map(|k| {
            (0..servers.len())
                .filter(|&i| found[i].contains_key(k))
                .collect()
        })
        .collect()
}

/// Raw text `set`s through the endpoint on `port`; every one must be STORED.
fn raw_set_all(port: u16, keys: &[String], value: impl Fn(&str) -> String) {
    let mut conn = Client::connect(port);
    for k in keys {
        let v = value(k);
        let line = {
            conn.send(format!("set {k} 0 0 {}\r\n{v}\r\n", v.len()).as_bytes());
            conn.read_until(b"\r\n")
        };
        assert_eq!(show(&line), show(b"STORED\r\n"), "raw set {k} via {port}");
    }
}

/// Per-node key counts, for reports.
fn spread(placement: &[usize], nodes: usize) -> Vec<usize> {
    let mut n = vec![0; nodes];
    for &p in placement {
        n[p] += 1;
    }
    n
}

/// Every key is held by exactly the server `locate_name` names, and the client reads
/// every key back.
fn assert_placed(label: &str, client: &fc::Client, servers: &[&Server], keys: &[String]) {
    let names: Vec<String> = servers.iter().map(|s| name_of(s)).collect();
    let held = holders(servers, keys);
    let mut wrong = Vec::new();
    for (k, h) in keys.iter().zip(&held) {
        let want = client.locate_name(k.as_bytes()).expect("a live node");
        let got: Vec<&str> = h.iter().map(|&i| names[i].as_str()).collect();
        if got != [want.as_str()] {
            wrong.push(format!("{k}: locate_name {want}, held by {got:?}"));
        }
        let idx = client.locate(k.as_bytes()).expect("a live node");
        assert_eq!(names[idx], want, "locate and locate_name disagree for {k}");
    }
    let per_node: Vec<usize> = (0..servers.len())
        .map(|i| held.iter().filter(|h| h.as_slice() == [i]).count())
        .collect();
    println!(
        "{label}: {} keys, per node {per_node:?}, misplaced {}",
        keys.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{label}: {} of {} keys not (only) where locate_name says, e.g. {:?}",
        wrong.len(),
        keys.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert!(
        per_node.iter().all(|&n| n > 0),
        "{label}: a node got no key: {per_node:?}"
    );
}

// ---- 1. placement -------------------------------------------------------------------

#[test]
fn data_lands_where_locate_says() {
    let (a, b, c) = (
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
    );
    let servers = [&a, &b, &c];
    let list = server_list(&servers, None);
    let cases = [
        ("kw-text", Distribution::KetamaWeighted, Protocol::Text),
        ("kw-bin", Distribution::KetamaWeighted, Protocol::Binary),
        ("ketama-text", Distribution::Ketama, Protocol::Text),
        ("rdv-bin", Distribution::Rendezvous, Protocol::Binary),
    ];
    for (prefix, dist, protocol) in cases {
        let client = cluster(&list, dist, protocol);
        client.flush_all(0).expect("flush_all");
        let ks = keys(prefix, 500);
        for k in &ks {
            client
                .set(k.as_bytes(), format!("v:{k}").as_bytes(), 7, 0)
                .unwrap_or_else(|e| panic!("{prefix}: set {k}: {e}"));
        }
        assert_placed(&format!("{dist}/{protocol:?}"), &client, &servers, &ks);
        let asked: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
        let got = client.get_many(&asked).expect("get_many");
        assert_eq!(got.len(), ks.len(), "{prefix}: get_many hits");
        for k in &ks {
            let it = &got[k.as_bytes()];
            assert_eq!(
                (it.value.as_slice(), it.flags),
                (format!("v:{k}").as_bytes(), 7)
            );
        }
        let st = client.node_status();
        assert!(
            st.iter()
                .all(|s| s.live && s.errors == 0 && s.ejections == 0),
            "{prefix}: {st:?}"
        );
    }
}

// ---- 2. failover --------------------------------------------------------------------

fn failover_client(list: &str, failure_limit: u32, retry: Duration) -> fc::Client {
    let mut cfg = ClientConfig::new(list).expect("server list");
    cfg.failure_limit = failure_limit;
    cfg.retry_timeout = retry;
    cfg.conn.connect_timeout = Duration::from_millis(200);
    cfg.conn.io_timeout = Duration::from_millis(200);
    fc::Client::new(cfg).expect("client")
}

fn failover_once(failure_limit: u32) {
    const B: usize = 1;
    let a = Server::ferrocache(&[]);
    let b = Server::ferrocache(&[]);
    let c = Server::ferrocache(&[]);
    let list = server_list(&[&a, &b, &c], None);
    // Long enough that B cannot come back while this test runs.
    let client = failover_client(&list, failure_limit, Duration::from_secs(30));
    let ks = keys(&format!("fo{failure_limit}"), 1000);
    let before: Vec<usize> = ks
        .iter()
        .map(|k| client.locate(k.as_bytes()).expect("live"))
        .collect();
    for k in &ks {
        client.set(k.as_bytes(), k.as_bytes(), 0, 0).expect("set");
    }
    let counts = spread(&before, 3);
    assert!(counts.iter().all(|&n| n > 100), "spread {counts:?}");

    drop(b); // kills and reaps B: its port now refuses connections
    let killed = Instant::now();
    let mut b_ops = 0;
    let mut errors: Vec<String> = Vec::new();
    let mut ejected_after: Option<(usize, Duration)> = None;
    for (k, &owner) in ks.iter().zip(&before) {
        let r = client.get(k.as_bytes());
        if owner != B {
            match r {
                Ok(Some(it)) => assert_eq!(it.value, k.as_bytes()),
                other => panic!("{k} lived on node {owner}, not B: {other:?}"),
            }
            continue;
        }
        b_ops += 1;
        match r {
            Ok(None) => {}
            Ok(Some(it)) => panic!("{k} (B's key) read back {it:?} with B dead"),
            Err(e) => {
                assert!(e.is_node_failure(), "{k}: not a node failure: {e}");
                assert!(
                    ejected_after.is_none(),
                    "{k}: error after B was ejected: {e}"
                );
                errors.push(e.to_string());
            }
        }
        if ejected_after.is_none() && !client.node_status()[B].live {
            ejected_after = Some((b_ops, killed.elapsed()));
        }
    }
    let (ops, took) = ejected_after.expect("B was never ejected");
    println!(
        "failure_limit {failure_limit}: B ejected by its key's operation #{ops} after \
         {took:?}; failing operations returned {errors:?}; gets of all 1000 keys took {:?}",
        killed.elapsed()
    );
    // The limit-th failure ejects B and that request is retried on the new owner (a
    // miss there); the ones before it return the I/O error.
    assert_eq!(ops, failure_limit as usize, "operations until ejection");
    assert_eq!(
        errors.len(),
        failure_limit as usize - 1,
        "errors returned: {errors:?}"
    );

    let st = client.node_status();
    println!("node_status after ejection: {st:?}");
    assert!(!st[B].live, "{st:?}");
    assert_eq!(st[B].ejections, 1, "{st:?}");
    assert_eq!(st[B].errors, u64::from(failure_limit), "{st:?}");
    assert_eq!(st[B].revivals, 0, "{st:?}");
    for i in [0, 2] {
        assert!(st[i].live, "{st:?}");
        assert_eq!(
            (st[i].failures, st[i].errors, st[i].ejections),
            (0, 0, 0),
            "{st:?}"
        );
    }

    // Exactly B's keys moved, and only to A or C.
    let after: Vec<usize> = ks
        .iter()
        .map(|k| client.locate(k.as_bytes()).expect("live"))
        .collect();
    let moved: BTreeSet<&str> = ks
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (x, y))| x != y)
        .map(|(k, _)| k.as_str())
        .collect();
    let of_b: BTreeSet<&str> = ks
        .iter()
        .zip(&before)
        .filter(|(_, &o)| o == B)
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(moved, of_b, "moved keys vs B's keys");
    assert!(after.iter().all(|&i| i != B));
    println!(
        "B's {} keys moved to A/C as {:?}",
        of_b.len(),
        spread(
            &ks.iter()
                .zip(&after)
                .filter(|(k, _)| of_b.contains(k.as_str()))
                .map(|(_, &i)| i)
                .collect::<Vec<_>>(),
            3
        )
    );

    // Sets for B's keys succeed and land on their new owner; everything reads back.
    for k in &of_b {
        client
            .set(k.as_bytes(), format!("again:{k}").as_bytes(), 0, 0)
            .unwrap_or_else(|e| panic!("set {k} after ejection: {e}"));
    }
    let asked: Vec<&[u8]> = ks.iter().map(|k| k.as_bytes()).collect();
    let got = client.get_many(&asked).expect("get_many");
    assert_eq!(got.len(), ks.len(), "get_many after failover");
    for k in &ks {
        let want = if of_b.contains(k.as_str()) {
            format!("again:{k}").into_bytes()
        } else {
            k.clone().into_bytes()
        };
        assert_eq!(got[k.as_bytes()].value, want, "{k}");
    }
    let b_keys: Vec<String> = of_b.iter().map(|k| k.to_string()).collect();
    let live = [&a, &c];
    for (k, h) in b_keys.iter().zip(holders(&live, &b_keys)) {
        let owner = client.locate(k.as_bytes()).unwrap();
        let want = if owner == 0 { 0 } else { 1 };
        assert_eq!(h, [want], "{k}: new owner {owner}");
    }
    let st = client.node_status();
    assert!(st[0].live && st[2].live && st[0].errors == 0 && st[2].errors == 0);
}

#[test]
fn failover_moves_only_the_dead_nodes_keys() {
    failover_once(1);
    failover_once(2);
}

// ---- 3. revival ---------------------------------------------------------------------

/// Restarts ferrocache on `port` (the port a killed server had), retrying briefly while
/// the port cannot be bound yet; checks that the process answering is the new one.
fn restart_on(port: u16) -> Server {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} stays taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let p = port.to_string();
    let mut args = vec!["-l", "127.0.0.1", "-p", p.as_str(), "-U", "0"];
    if is_root() {
        args.extend(["-u", "nobody"]);
    }
    let s = Server::with_args(&ferrocache_bin(), &args, port);
    let pid = s.connect().stat("pid");
    assert_eq!(
        pid,
        Some(s.pid().to_string()),
        "someone else answers on {port}"
    );
    s
}

#[test]
fn ejected_node_comes_back_after_retry_timeout() {
    const B: usize = 1;
    let retry = Duration::from_millis(1000);
    let a = Server::ferrocache(&[]);
    let b = Server::ferrocache(&[]);
    let c = Server::ferrocache(&[]);
    let b_port = b.port;
    let list = server_list(&[&a, &b, &c], None);
    let client = failover_client(&list, 2, retry);
    let ks = keys("rv", 300);
    for k in &ks {
        client.set(k.as_bytes(), k.as_bytes(), 0, 0).expect("set");
    }
    let b_keys: Vec<String> = ks
        .iter()
        .filter(|k| client.locate(k.as_bytes()) == Some(B))
        .cloned()
        .collect();
    assert!(b_keys.len() > 30, "B holds {} keys", b_keys.len());

    drop(b);
    // Eject B: its keys' operations fail until the failure limit.
    let mut started = None;
    for k in b_keys.iter().take(10) {
        let t = Instant::now();
        let _ = client.get(k.as_bytes());
        if !client.node_status()[B].live {
            started = Some(t);
            break;
        }
    }
    // B's ejection ends no earlier than this.
    let back_at = started.expect("B not ejected after 10 operations") + retry;
    let in_window = |what: &str| {
        let ok = Instant::now() < back_at;
        if !ok {
            eprintln!("NOTICE: retry time passed before {what}; not checked");
        }
        ok
    };
    let gone: Vec<&String> = b_keys
        .iter()
        .filter(|k| client.locate(k.as_bytes()) == Some(B))
        .collect();
    if in_window("the dead-B placement check") {
        assert!(gone.is_empty(), "keys still on ejected B: {gone:?}");
    }

    let b = restart_on(b_port);
    let servers = [&a, &b, &c];
    let restarted = Instant::now();
    if in_window("the checks with B restarted") {
        // Up again, but still out of the ring until its retry time.
        let probe = &b_keys[0];
        client
            .set(probe.as_bytes(), b"while-out", 0, 0)
            .expect("set while B is out");
        let owner = client.locate(probe.as_bytes()).unwrap();
        let held = holders(&servers, std::slice::from_ref(probe));
        if in_window("the ejected-placement check") {
            assert_ne!(owner, B);
            assert_eq!(held[0], [owner], "{probe} while B is out");
            let st = client.node_status();
            assert!(!st[B].live && st[B].revivals == 0, "{st:?}");
        }
    }

    // Poll until B is back; it must not be back before its retry time.
    let deadline = back_at + Duration::from_secs(5);
    let on_b = || {
        b_keys
            .iter()
            .filter(|k| client.locate(k.as_bytes()) == Some(B))
            .count()
    };
    let came_back = loop {
        // Seen after the lookups: a revival they saw happened no later than this.
        let (seen, now) = (on_b(), Instant::now());
        if seen > 0 {
            assert!(
                now >= back_at,
                "B back {:?} before its retry time",
                back_at - now
            );
            // B may have come back in the middle of the pass: all of its keys now.
            assert_eq!(on_b(), b_keys.len(), "only part of B's keys came back");
            break now;
        }
        assert!(
            now < deadline,
            "B never came back: {:?}",
            client.node_status()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "B back {:?} after its retry time ({:?} after the restart)",
        came_back - back_at,
        came_back - restarted
    );
    let st = client.node_status();
    assert!(st[B].live, "{st:?}");
    assert_eq!((st[B].ejections, st[B].revivals), (1, 1), "{st:?}");

    // Every key of B's maps to B again; writes go there.
    for k in &b_keys {
        assert_eq!(client.locate_name(k.as_bytes()), Some(name_of(&b)), "{k}");
    }
    let fresh: Vec<String> = keys("rv-new", 300)
        .into_iter()
        .filter(|k| client.locate(k.as_bytes()) == Some(B))
        .collect();
    assert!(!fresh.is_empty());
    for k in &fresh {
        client
            .set(k.as_bytes(), format!("back:{k}").as_bytes(), 0, 0)
            .unwrap_or_else(|e| panic!("set {k} on revived B: {e}"));
    }
    for (k, h) in fresh.iter().zip(holders(&servers, &fresh)) {
        assert_eq!(h, [B], "{k} after B came back");
    }
    let on_b = raw_get_many(b.port, &fresh);
    assert!(fresh
        .iter()
        .all(|k| on_b.get(k).map(Vec::as_slice) == Some(format!("back:{k}").as_bytes())));
    // B restarted empty: its old keys are misses; the others' are still hits.
    for k in &ks {
        let got = client.get(k.as_bytes()).expect("get");
        if client.locate(k.as_bytes()) == Some(B) {
            assert_eq!(got, None, "{k}: B restarted empty");
        } else {
            assert_eq!(got.map(|i| i.value), Some(k.clone().into_bytes()), "{k}");
        }
    }
    // B's original keys written again through the client land on B.
    for k in &b_keys {
        client
            .set(k.as_bytes(), format!("again:{k}").as_bytes(), 0, 0)
            .unwrap_or_else(|e| panic!("set {k} on revived B: {e}"));
    }
    let on_b = raw_get_many(b.port, &b_keys);
    let landed = b_keys
        .iter()
        .filter(|k| {
            on_b.get(k.as_str()).map(Vec::as_slice) == Some(format!("again:{k}").as_bytes())
        })
        .count();
    assert_eq!(landed, b_keys.len(), "B's keys written after the revival");
    let st = client.node_status();
    println!("node_status after revival: {st:?}");
    assert!(st.iter().all(|s| s.live), "{st:?}");
    assert_eq!(st[B].failures, 0, "a success resets the count: {st:?}");
    assert_eq!((st[B].ejections, st[B].revivals), (1, 1), "{st:?}");
}

// ---- 4. twemproxy -------------------------------------------------------------------

static NC_SEQ: AtomicU32 = AtomicU32::new(0);

/// nutcracker (twemproxy) on 127.0.0.1 in front of the given servers; killed on drop.
struct Nutcracker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nutcracker {
    /// `servers` as (port, weight), in order.
    fn start(servers: &[(u16, u32)]) -> Nutcracker {
        for _ in 0..5 {
            let dir = std::env::temp_dir().join(format!(
                "ferrocache-nc-{}-{}",
                std::process::id(),
                NC_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let port = free_port();
            let stats = free_port();
            let mut conf = format!(
                "pool:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n  \
                 auto_eject_hosts: false\n  timeout: 2000\n  servers:\n"
            );
            for (p, w) in servers {
                conf.push_str(&format!("   - 127.0.0.1:{p}:{w}\n"));
            }
            let conf_path = dir.join("nc.yml");
            std::fs::write(&conf_path, conf).expect("write nutcracker config");
            let child = Command::new(NUTCRACKER)
                .arg("-c")
                .arg(&conf_path)
                .args(["-a", "127.0.0.1", "-s", &stats.to_string(), "-o"])
                .arg(dir.join("nc.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nutcracker");
            let mut nc = Nutcracker { child, port, dir };
            if nc.wait_ready() {
                return nc;
            }
            // Dropping it kills it and removes its directory.
            eprintln!("nutcracker did not stay up on {port}:\n{}", nc.log());
        }
        panic!("nutcracker could not be started");
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                return !self.exited();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nc.log")).unwrap_or_default()
    }
}

impl Drop for Nutcracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Keys written through nutcracker are where our client says and read back through
/// it; keys our client writes read back through nutcracker.
fn agrees_with_proxy(label: &str, servers: &[&Server], weights: &[u32]) {
    let ports: Vec<(u16, u32)> = servers
        .iter()
        .zip(weights)
        .map(|(s, &w)| (s.port, w))
        .collect();
    let nc = Nutcracker::start(&ports);
    let client = cluster(
        &server_list(servers, Some(weights)),
        Distribution::KetamaWeighted,
        Protocol::Text,
    );
    client.flush_all(0).expect("flush_all");

    let via_proxy = keys(&format!("{label}:px"), 500);
    raw_set_all(nc.port, &via_proxy, |k| format!("nc:{k}"));
    let held = holders(servers, &via_proxy);
    let ours: Vec<usize> = via_proxy
        .iter()
        .map(|k| client.locate(k.as_bytes()).expect("live"))
        .collect();
    let differ: Vec<String> = via_proxy
        .iter()
        .zip(held.iter().zip(&ours))
        .filter(|(_, (h, &o))| h.as_slice() != [o])
        .map(|(k, (h, o))| format!("{k}: nutcracker put it on {h:?}, we say {o}"))
        .collect();
    println!(
        "{label}: nutcracker placed {}/{} keys where our client says (per node {:?})",
        via_proxy.len() - differ.len(),
        via_proxy.len(),
        spread(&ours, servers.len())
    );
    assert!(
        differ.is_empty(),
        "{label}: {} keys differ, e.g. {:?}\nnutcracker log:\n{}",
        differ.len(),
        &differ[..differ.len().min(10)],
        nc.log()
    );
    let asked: Vec<&[u8]> = via_proxy.iter().map(|k| k.as_bytes()).collect();
    let got = client.get_many(&asked).expect("get_many");
    let hits = via_proxy
        .iter()
        .filter(|k| {
            got.get(k.as_bytes()).map(|i| i.value.clone()) == Some(format!("nc:{k}").into_bytes())
        })
        .count();
    assert_eq!(
        hits,
        via_proxy.len(),
        "{label}: our reads of proxy-written keys"
    );

    let via_client = keys(&format!("{label}:fc"), 500);
    for k in &via_client {
        client
            .set(k.as_bytes(), format!("fc:{k}").as_bytes(), 0, 0)
            .expect("set");
    }
    let back = raw_get_many(nc.port, &via_client);
    let hits = via_client
        .iter()
        .filter(|k| back.get(k.as_str()).map(Vec::as_slice) == Some(format!("fc:{k}").as_bytes()))
        .count();
    println!(
        "{label}: nutcracker read back {hits}/{} keys our client wrote",
        via_client.len()
    );
    assert_eq!(hits, via_client.len(), "{label}: proxy reads of our keys");
}

#[test]
fn twemproxy_agrees_with_our_client() {
    if !require_tool(NUTCRACKER) {
        return;
    }
    let (a, b, c) = (
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
    );
    let servers = [&a, &b, &c];
    agrees_with_proxy("nc-equal", &servers, &[1, 1, 1]);
    agrees_with_proxy("nc-1-2-1", &servers, &[1, 2, 1]);
}

// ---- 5. pylibmc ---------------------------------------------------------------------

#[test]
fn pylibmc_writes_our_client_reads() {
    if !require_tool(PYTHON) {
        return;
    }
    let (a, b, c) = (
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
        Server::ferrocache(&[]),
    );
    let servers = [&a, &b, &c];
    let list = server_list(&servers, None);
    let client = cluster(&list, Distribution::KetamaWeighted, Protocol::Text);
    let (prefix, n) = ("plm", 500);
    // Ours first, for pylibmc to read.
    let ours = keys(&format!("{prefix}:rs"), n);
    for k in &ours {
        client
            .set(k.as_bytes(), format!("ferro:{k}").as_bytes(), 0, 0)
            .expect("set");
    }
    let script = format!(
        "{}/tests/interop/pylibmc_ketama_write.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = run_bounded(
        Command::new(PYTHON).args([script.as_str(), &list, prefix, &n.to_string()]),
        Duration::from_secs(60),
    );
    let code = run.status.and_then(|s| s.code());
    let report: String = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with("placed "))
        .map(|l| format!("{l}\n"))
        .collect();
    print!("{report}");
    eprint!("{}", run.stderr);
    if code == Some(SKIP_STATUS) {
        if in_ci() {
            panic!("pylibmc missing under CI");
        }
        common::skip("pylibmc not installed");
        return;
    }
    assert!(
        run.status.is_some(),
        "pylibmc script did not finish in 60 s"
    );
    assert!(
        code == Some(0) && report.contains(&format!("pylibmc read {n}/{n} keys")),
        "pylibmc script exit {code:?}:\n{report}{}",
        run.stderr
    );

    // pylibmc's own placement of what it wrote equals ours...
    let theirs: Vec<(String, usize)> = run
        .stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("placed ")?.split(' ');
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect();
    assert_eq!(theirs.len(), n, "placed lines");
    let same = theirs
        .iter()
        .filter(|(k, i)| client.locate(k.as_bytes()) == Some(*i))
        .count();
    println!("pylibmc ketama_weighted: Client.hash() equals our locate for {same}/{n} keys");
    assert_eq!(same, n);
    // ... and so is where the keys actually are; we read every one back.
    let written = keys(&format!("{prefix}:py"), n);
    assert_placed("pylibmc-written", &client, &servers, &written);
    let asked: Vec<&[u8]> = written.iter().map(|k| k.as_bytes()).collect();
    let got = client.get_many(&asked).expect("get_many");
    for k in &written {
        assert_eq!(
            got.get(k.as_bytes()).map(|i| i.value.clone()),
            Some(format!("pylibmc:{k}").into_bytes()),
            "{k}"
        );
    }
}

/// Many threads reading a dead node's keys at once: only the failures before the
/// ejection reach callers (at most `failure_limit - 1`); requests that fail on a node
/// a concurrent request has already ejected are retried on the new owner.
#[test]
fn concurrent_callers_see_at_most_limit_minus_one_errors() {
    let a = Server::ferrocache(&[]);
    let b = Server::ferrocache(&[]);
    let c = Server::ferrocache(&[]);
    let list = server_list(&[&a, &b, &c], None);
    let client = failover_client(&list, 2, Duration::from_secs(30));
    let ks = keys("conc", 600);
    let on_b: Vec<String> = ks
        .iter()
        .filter(|k| client.locate(k.as_bytes()) == Some(1))
        .cloned()
        .collect();
    assert!(on_b.len() > 50, "B holds some keys");
    for k in &on_b {
        client.set(k.as_bytes(), b"v", 0, 0).expect("set");
    }
    drop(b);
    let errors = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (client, on_b, errors) = (&client, &on_b, &errors);
            s.spawn(move || {
                for k in on_b.iter().skip(t).step_by(8) {
                    if client.get(k.as_bytes()).is_err() {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let status = client.node_status();
    assert!(!status[1].live, "B ejected: {status:?}");
    assert_eq!(status[1].ejections, 1);
    let seen = errors.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        seen <= 1,
        "callers saw {seen} errors for one dead node (limit 2)"
    );
}
