//! Cluster auto discovery end to end, against real ferrocache nodes started by the
//! test: `ClientConfig::discover` reads the node list from one node; the poller
//! applies a higher version within an interval and ignores lower or equal ones; an
//! endpoint that goes away leaves the last list in use (counted) and the client
//! recovers; SASL and TLS endpoints; `ferrocache-cli cluster show|set|add|remove`
//! with a node down; the legacy `AmazonElastiCache:cluster` key on memcached; and a
//! fleet change under load (3 nodes → a 4th added → one removed and stopped →
//! another removed and killed at once) whose misses are exactly the keys the ring
//! arithmetic moves. Run with `--nocapture` for the figures (`FLEET ...` lines).
use crate::common;
use crate::common::tls::{tls_args, Pki};
use crate::common::{free_port, is_root, run_bounded, Run, Scratch, Server, FERROCACHE};

use ferrocache::client::discovery::ConfigClient;
use ferrocache::client::ring::{Distribution, NodeSpec, Ring};
use ferrocache::client::{Client, ClientConfig, ConnOptions, Error, Protocol, SaslAuth};
use ferrocache::client::{DiscoveryStatus, TlsOptions};
use ferrocache::protocol::cluster::{ClusterConfig, ClusterNode};

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_ferrocache-cli");

// ------------------------------------------------------------------ helpers

/// `127.0.0.1:<port>`.
fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The entry ElastiCache would list for a node on `port`.
fn entry(port: u16) -> String {
    format!("localhost|127.0.0.1|{port}")
}

/// `version` and the nodes on `ports`.
fn config(version: u64, ports: &[u16]) -> ClusterConfig {
    ClusterConfig {
        version,
        nodes: ports
            .iter()
            .map(|p| ClusterNode::parse(&entry(*p)).unwrap())
            .collect(),
    }
}

/// `config set cluster` over a raw text connection; the reply line.
fn raw_set(port: u16, payload: &[u8]) -> String {
    let mut c = common::Client::connect(port);
    let mut req = format!("config set cluster 0 {}\r\n", payload.len()).into_bytes();
    req.extend_from_slice(payload);
    req.extend_from_slice(b"\r\n");
    c.send(&req);
    String::from_utf8_lossy(&c.read_until(b"\r\n")).into_owned()
}

/// Stores `version` listing `ports` on the node at `port` (asserting STORED).
fn store(port: u16, version: u64, ports: &[u16]) {
    let reply = raw_set(port, &config(version, ports).payload());
    assert_eq!(reply, "STORED\r\n", "config set on {port}");
}

/// `config delete cluster` on a node.
fn delete_config(port: u16) {
    let mut c = common::Client::connect(port);
    let reply = c.line("config delete cluster\r\n");
    assert!(
        reply == "DELETED\r\n" || reply == "NOT_FOUND\r\n",
        "config delete: {reply:?}"
    );
}

/// The version and addresses a node serves (text `config get cluster`), None when
/// it has none.
fn served_version(port: u16) -> Option<(u64, Vec<String>)> {
    let mut c = common::Client::connect(port);
    c.send(b"config get cluster\r\n");
    let reply = String::from_utf8_lossy(&c.read_until(b"END\r\n")).into_owned();
    if reply == "END\r\n" {
        return None;
    }
    let (head, rest) = reply.split_once("\r\n").expect("a CONFIG line");
    assert!(head.starts_with("CONFIG cluster 0 "), "{reply:?}");
    let payload = rest.strip_suffix("\r\nEND\r\n").expect("payload, END");
    assert_eq!(
        head[17..].parse::<usize>().ok(),
        Some(payload.len()),
        "{reply:?}"
    );
    let cfg = ClusterConfig::parse_payload(payload.as_bytes())
        .unwrap_or_else(|e| panic!("{reply:?}: {e}"));
    Some((cfg.version, cfg.nodes.iter().map(|n| n.address()).collect()))
}

fn discover(endpoint: &str, interval: Duration) -> ClientConfig {
    let mut cfg = ClientConfig::discover(endpoint)
        .expect("endpoint list")
        .with_poll_interval(interval);
    cfg.conn.connect_timeout = Duration::from_millis(500);
    cfg.conn.io_timeout = Duration::from_secs(2);
    cfg
}

fn status(c: &Client) -> DiscoveryStatus {
    c.discovery().expect("a discovering client has a status")
}

/// Waits (bounded) until `f` holds for the client's status; the time it took.
fn wait_status(c: &Client, limit: Duration, what: &str, f: impl Fn(&DiscoveryStatus) -> bool) {
    let start = Instant::now();
    while !f(&status(c)) {
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}; status {:?}",
            status(c)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn names(c: &Client) -> Vec<String> {
    c.servers().iter().map(NodeSpec::name).collect()
}

/// A ferrocache node on a port of the test's choosing (to bring one back on the
/// port it had), its list writable over the wire as every node's here.
fn node_on(port: u16, extra: &[&str]) -> Server {
    let p = port.to_string();
    let mut args = vec!["-l", "127.0.0.1", "-p", &p, "-U", "0"];
    if is_root() {
        args.extend(["-u", "nobody"]);
    }
    args.push("--cluster-config-writable");
    args.extend_from_slice(extra);
    Server::with_args(FERROCACHE, &args, port)
}

fn cli(args: &[&str]) -> Run {
    let mut cmd = Command::new(CLI);
    cmd.args(args)
        .env_remove("FERROCACHE_SERVERS")
        .env_remove("FERROCACHE_PASSWORD")
        .env("RUST_LOG", "error");
    run_bounded(&mut cmd, Duration::from_secs(20))
}

fn code(r: &Run) -> Option<i32> {
    r.status.as_ref().and_then(|s| s.code())
}

fn expect_code(r: &Run, want: i32, what: &str) {
    assert_eq!(
        code(r),
        Some(want),
        "{what}: stdout {:?} stderr {:?}",
        r.stdout,
        r.stderr
    );
}

// ------------------------------------------------------------------ discovery

#[test]
fn discovers_every_node_from_one_and_places_keys_by_the_ring() {
    let nodes: Vec<Server> = (0..3)
        .map(|_| Server::ferrocache(&["--cluster-config-writable"]))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|s| s.port).collect();
    // Only the first node holds the configuration: it is the endpoint.
    store(ports[0], 1, &ports);
    let client = Client::new(discover(&addr(ports[0]), Duration::from_secs(60))).unwrap();
    let want: Vec<String> = ports.iter().map(|p| addr(*p)).collect();
    assert_eq!(names(&client), want);
    let st = status(&client);
    assert_eq!((st.version, st.nodes.clone()), (1, want.clone()));
    assert_eq!((st.polls, st.failures, st.changes), (0, 0, 0));
    assert_eq!(st.source, addr(ports[0]));

    // Keys land where the ketama ring over the discovered addresses says.
    let ring = Ring::new(Distribution::KetamaWeighted, &client.servers());
    let mut per_node = [0usize; 3];
    for i in 0..300 {
        let key = format!("disc:{i}");
        client.set(key.as_bytes(), key.as_bytes(), 0, 0).unwrap();
        let owner = ring.locate(key.as_bytes()).unwrap();
        per_node[owner] += 1;
        let mut raw = nodes[owner].connect();
        raw.send(format!("get {key}\r\n").as_bytes());
        let reply = String::from_utf8_lossy(&raw.read_until(b"END\r\n")).into_owned();
        assert!(
            reply.starts_with("VALUE "),
            "{key} not on node {owner}: {reply:?}"
        );
    }
    assert!(per_node.iter().all(|&n| n > 50), "spread {per_node:?}");

    // A node without a configuration is no endpoint; the next one in the list is.
    let two = format!("{},{}", addr(ports[1]), addr(ports[0]));
    let client = Client::new(discover(&two, Duration::from_secs(60))).unwrap();
    assert_eq!(names(&client), want);
    assert_eq!(status(&client).source, addr(ports[0]));
    match Client::new(discover(&addr(ports[1]), Duration::from_secs(60))) {
        Err(Error::Discovery(e)) => assert!(e.contains("no cluster configuration"), "{e}"),
        other => panic!("no configuration anywhere: {other:?}"),
    }
}

#[test]
fn polls_apply_only_a_higher_version() {
    let interval = Duration::from_millis(300);
    let mut nodes: Vec<Server> = (0..3)
        .map(|_| Server::ferrocache(&["--cluster-config-writable"]))
        .collect();
    let p: Vec<u16> = nodes.iter().map(|s| s.port).collect();
    // Two endpoints: the first, then a second one that holds an older list.
    let second = Server::ferrocache(&["--cluster-config-writable"]);
    store(p[0], 5, &p[..2]);
    let endpoints = format!("{},{}", addr(p[0]), addr(second.port));
    let client = Client::new(discover(&endpoints, interval)).unwrap();
    assert_eq!(names(&client), [addr(p[0]), addr(p[1])]);

    // A higher version: seen within two intervals (one is the bound; two is slack).
    let set_at = Instant::now();
    store(p[0], 6, &p);
    wait_status(&client, interval * 2, "version 6", |s| s.version == 6);
    let took = status(&client).last_change.duration_since(set_at);
    eprintln!("DISCOVERY: version 6 applied {took:?} after the set (interval {interval:?})");
    assert_eq!(names(&client), [addr(p[0]), addr(p[1]), addr(p[2])]);
    assert_eq!(status(&client).changes, 1);

    // A server never serves a lower version, but an endpoint that replaced another
    // may: the first endpoint goes away, the second answers version 3, then 6 (equal),
    // each with another list. Both are ignored, poll after poll.
    let _ = nodes.remove(0).signal_and_wait("KILL");
    for v in [3, 6] {
        store(second.port, v, &p[2..]);
        assert_eq!(served_version(second.port).map(|s| s.0), Some(v));
        let polls = status(&client).polls;
        wait_status(&client, interval * 8, "three more polls", |s| {
            s.polls >= polls + 3
        });
        let st = status(&client);
        assert_eq!(
            (st.version, st.changes, st.failures),
            (6, 1, 0),
            "after v{v}"
        );
        assert_eq!(st.source, addr(p[0]), "after v{v}");
        assert_eq!(names(&client).len(), 3, "after v{v}");
        assert!(
            !client.refresh_cluster().unwrap(),
            "v{v} applied by refresh"
        );
    }

    // refresh_cluster applies a new version at once.
    store(second.port, 9, &[p[2], p[1]]);
    assert!(client.refresh_cluster().unwrap());
    assert_eq!(names(&client), [addr(p[2]), addr(p[1])]);
    let st = status(&client);
    assert_eq!((st.version, st.source), (9, addr(second.port)));
    // A fixed-list client has no discovery.
    let fixed = Client::new(ClientConfig::new(&addr(p[1])).unwrap()).unwrap();
    assert!(fixed.discovery().is_none());
    assert!(matches!(fixed.refresh_cluster(), Err(Error::Discovery(_))));
}

#[test]
fn endpoint_down_keeps_the_last_list_and_recovers() {
    let interval = Duration::from_millis(200);
    let data: Vec<Server> = (0..2)
        .map(|_| Server::ferrocache(&["--cluster-config-writable"]))
        .collect();
    let d: Vec<u16> = data.iter().map(|s| s.port).collect();
    let mut endpoint = Server::ferrocache(&["--cluster-config-writable"]);
    let ep = endpoint.port;
    store(ep, 4, &d);
    let client = Client::new(discover(&addr(ep), interval)).unwrap();
    client.set(b"before", b"1", 0, 0).unwrap();

    // The endpoint goes away: polls fail (the data nodes hold no configuration, so
    // no fallback either), the list stays, requests go on.
    let _ = endpoint.signal_and_wait("KILL");
    wait_status(&client, interval * 10, "two failed polls", |s| {
        s.failures >= 2
    });
    let st = status(&client);
    assert_eq!((st.version, st.fallbacks), (4, 0));
    assert_eq!(st.nodes, [addr(d[0]), addr(d[1])]);
    let err = st.last_error.clone().unwrap_or_default();
    assert!(
        err.contains(&addr(ep)),
        "last error names the endpoint: {err}"
    );
    assert!(matches!(client.refresh_cluster(), Err(Error::Discovery(_))));
    for i in 0..50 {
        let k = format!("while-down:{i}");
        client.set(k.as_bytes(), b"v", 0, 0).unwrap();
        assert_eq!(client.get(k.as_bytes()).unwrap().unwrap().value, b"v");
    }
    assert_eq!(client.get(b"before").unwrap().unwrap().value, b"1");

    // A known node that holds a newer configuration answers instead (a fallback).
    store(d[1], 5, &d);
    wait_status(&client, interval * 10, "version 5 from a node", |s| {
        s.version == 5
    });
    let st = status(&client);
    assert!(st.fallbacks >= 1, "{st:?}");
    assert_eq!(st.source, addr(d[1]));

    // The endpoint comes back (same port) with a newer list: applied.
    endpoint = node_on(ep, &[]);
    store(ep, 6, &[d[0]]);
    wait_status(&client, interval * 10, "version 6 after recovery", |s| {
        s.version == 6
    });
    assert_eq!(names(&client), [addr(d[0])]);
    let failures = status(&client).failures;
    std::thread::sleep(interval * 3);
    assert_eq!(status(&client).failures, failures, "no failures once back");
    drop(endpoint);
}

#[test]
fn legacy_key_where_config_get_is_unknown() {
    // memcached 1.6.18 answers `config get cluster` with ERROR (binary: unknown
    // command); the client then reads `AmazonElastiCache:cluster`.
    let Some(mc) = Server::memcached(&[]) else {
        return;
    };
    let other = Server::ferrocache(&["--cluster-config-writable"]);
    let payload = config(3, &[mc.port, other.port]).payload();
    let mut raw = mc.connect();
    let mut req = format!("set AmazonElastiCache:cluster 0 0 {}\r\n", payload.len()).into_bytes();
    req.extend_from_slice(&payload);
    req.extend_from_slice(b"\r\n");
    raw.roundtrip(&req, b"STORED\r\n");
    raw.roundtrip(b"config get cluster\r\n", b"ERROR\r\n");
    for protocol in [Protocol::Text, Protocol::Binary, Protocol::Meta] {
        let mut cfg = discover(&addr(mc.port), Duration::from_secs(60));
        cfg.conn.protocol = protocol;
        let client = Client::new(cfg).unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
        assert_eq!(
            names(&client),
            [addr(mc.port), addr(other.port)],
            "{protocol:?}"
        );
        assert_eq!(status(&client).version, 3);
        client.set(b"legacy", b"ok", 0, 0).unwrap();
        assert!(!client.refresh_cluster().unwrap());
    }
}

#[test]
fn drop_stops_the_poller_at_once() {
    let node = Server::ferrocache(&["--cluster-config-writable"]);
    store(node.port, 1, &[node.port]);
    let gets = |s: &Server| -> u64 {
        let mut c = s.connect();
        c.stat("cmd_config_get")
            .and_then(|v| v.parse().ok())
            .expect("stats cmd_config_get")
    };
    // A long interval: drop must not wait it out.
    let client = Client::new(discover(&addr(node.port), Duration::from_secs(60))).unwrap();
    let clone = client.clone();
    drop(client);
    assert!(clone.refresh_cluster().is_ok(), "a clone keeps it alive");
    let t = Instant::now();
    drop(clone);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "drop took {:?}",
        t.elapsed()
    );

    // A short one: after the drop the endpoint is asked no more.
    let client = Client::new(discover(&addr(node.port), Duration::from_millis(50))).unwrap();
    wait_status(&client, Duration::from_secs(5), "polls", |s| s.polls >= 3);
    drop(client);
    let after_drop = gets(&node);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        gets(&node),
        after_drop,
        "polls after the client was dropped"
    );
}

#[test]
fn sasl_endpoint() {
    let dir = Scratch::new("disc-sasl");
    let creds = dir.file("pwdb", "disco:s3cret\n");
    let nodes: Vec<Server> = (0..2)
        .map(|_| Server::ferrocache(&["-S", "--sasl-pwdb", &creds, "--cluster-config-writable"]))
        .collect();
    let p: Vec<u16> = nodes.iter().map(|s| s.port).collect();
    let conn = |pass: &str| ConnOptions {
        protocol: Protocol::Binary,
        auth: Some(SaslAuth {
            username: "disco".into(),
            password: pass.into(),
            mechanism: None,
        }),
        ..ConnOptions::default()
    };
    // Binary config set/get over an authenticated connection.
    let admin = ConfigClient::new(&conn("s3cret")).unwrap();
    let ep = NodeSpec::parse(&addr(p[0])).unwrap();
    assert_eq!(admin.get(&ep).unwrap(), None);
    admin.set(&ep, &config(2, &p)).unwrap();
    assert_eq!(admin.get(&ep).unwrap(), Some(config(2, &p)));

    let mut cfg = discover(&addr(p[0]), Duration::from_millis(200));
    cfg.conn = conn("s3cret");
    let client = Client::new(cfg.clone()).unwrap();
    assert_eq!(names(&client), [addr(p[0]), addr(p[1])]);
    client.set(b"sasl-key", b"v", 0, 0).unwrap();
    admin.set(&ep, &config(3, &p[1..])).unwrap();
    wait_status(&client, Duration::from_secs(2), "version 3", |s| {
        s.version == 3
    });
    assert_eq!(names(&client), [addr(p[1])]);

    // The wrong password: the endpoint refuses, Client::new says why.
    cfg.conn = conn("wrong");
    match Client::new(cfg) {
        Err(Error::Discovery(e)) => assert!(e.contains("authentication"), "{e}"),
        other => panic!("wrong password: {other:?}"),
    }
}

#[test]
fn tls_endpoint() {
    let pki = Pki::new("disc-tls");
    let mut args = tls_args(&pki, "");
    args.push("--cluster-config-writable".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nodes: Vec<Server> = (0..2).map(|_| Server::ferrocache(&args)).collect();
    let p: Vec<u16> = nodes.iter().map(|s| s.port).collect();
    let tls = TlsOptions::new().ca_file(&pki.ca);
    let conn = ConnOptions {
        tls: Some(tls.clone()),
        ..ConnOptions::default()
    };
    let admin = ConfigClient::new(&conn).unwrap();
    let ep = NodeSpec::parse(&addr(p[1])).unwrap();
    admin.set(&ep, &config(7, &p)).unwrap();

    let client =
        Client::new(discover(&addr(p[1]), Duration::from_millis(200)).with_tls(tls)).unwrap();
    assert_eq!(names(&client), [addr(p[0]), addr(p[1])]);
    for i in 0..20 {
        let k = format!("tls:{i}");
        client.set(k.as_bytes(), b"v", 0, 0).unwrap();
        assert_eq!(client.get(k.as_bytes()).unwrap().unwrap().value, b"v");
    }
    admin.set(&ep, &config(8, &p[..1])).unwrap();
    wait_status(&client, Duration::from_secs(2), "version 8", |s| {
        s.version == 8
    });
    assert_eq!(names(&client), [addr(p[0])]);

    // Without TLS the endpoint cannot be read.
    assert!(Client::new(discover(&addr(p[1]), Duration::from_secs(60))).is_err());
}

// ------------------------------------------------------------------ the CLI

#[test]
fn cli_cluster_show_set_add_remove() {
    let mut nodes: Vec<Server> = (0..3)
        .map(|_| Server::ferrocache(&["--cluster-config-writable"]))
        .collect();
    let p: Vec<u16> = nodes.iter().map(|s| s.port).collect();
    let servers = format!("{},{},{}", addr(p[0]), addr(p[1]), addr(p[2]));
    let with_servers = |args: &[&str]| {
        let mut all = vec!["--servers", &servers, "--timeout-ms", "500"];
        all.extend_from_slice(args);
        cli(&all)
    };
    let ep = addr(p[0]);
    let with_endpoint = |args: &[&str]| {
        let mut all = vec!["--discover", &ep, "--timeout-ms", "500"];
        all.extend_from_slice(args);
        cli(&all)
    };

    // Nothing stored yet.
    let r = with_servers(&["cluster", "show"]);
    expect_code(&r, 1, "show with no configuration");
    for port in &p {
        assert!(r
            .stdout
            .contains(&format!("{}  no configuration", addr(*port))));
    }

    // set: every node takes version 1.
    let (e0, e1, e2) = (entry(p[0]), entry(p[1]), entry(p[2]));
    let r = with_servers(&["cluster", "set", &e0, &e1, &e2]);
    expect_code(&r, 0, "set");
    for port in &p {
        assert!(
            r.stdout
                .contains(&format!("{}  STORED version 1\n", addr(*port))),
            "{}",
            r.stdout
        );
        assert_eq!(served_version(*port).unwrap().0, 1);
    }
    let r = with_endpoint(&["cluster", "show"]);
    expect_code(&r, 0, "show via the endpoint");
    assert_eq!(r.stdout, format!("version 1\n{e0}\n{e1}\n{e2}\n"));
    let r = with_servers(&["cluster", "show"]);
    expect_code(&r, 0, "show per node");
    assert!(r
        .stdout
        .contains(&format!("{}  version 1  {e0} {e1} {e2}", addr(p[2]))));

    // Every other command works with --discover.
    expect_code(&with_endpoint(&["set", "via-discovery", "hello"]), 0, "set");
    let r = with_endpoint(&["get", "via-discovery"]);
    expect_code(&r, 0, "get");
    assert_eq!(r.stdout, "hello\n");

    // add a node that is down: reported, exit 2; the others take version 2.
    let dead = free_port();
    let r = with_endpoint(&["cluster", "add", &addr(dead)]);
    expect_code(&r, 2, "add a dead node");
    assert!(
        r.stdout.contains(&format!("{}  FAILED", addr(dead))),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("1 of 4 node(s) did not take version 2"),
        "{}",
        r.stderr
    );
    for port in &p {
        assert_eq!(served_version(*port).unwrap().1.len(), 4);
    }
    assert!(with_endpoint(&["cluster", "add", &addr(p[1])])
        .stderr
        .contains("already"));

    // A current node down too: version = highest seen + 1, written to the old and
    // new lists; the down ones reported.
    let down = p[2];
    drop(nodes.remove(2));
    let r = with_endpoint(&["cluster", "remove", &addr(dead)]);
    expect_code(&r, 2, "remove with two nodes down");
    assert!(r.stdout.contains(&format!("{}  FAILED", addr(dead))));
    assert!(r.stdout.contains(&format!("{}  FAILED", addr(down))));
    assert!(r
        .stdout
        .contains(&format!("{}  STORED version 3", addr(p[1]))));
    assert!(
        r.stdout
            .ends_with(&format!("version 3\n{e0}\n{e1}\n{e2}\n")),
        "{}",
        r.stdout
    );

    // remove a live node: it gets the new version too (so its pollers learn).
    let r = with_endpoint(&["cluster", "remove", &e1]);
    expect_code(&r, 2, "remove (one node still down)");
    assert!(r
        .stdout
        .contains(&format!("{}  STORED version 4", addr(p[1]))));
    assert_eq!(
        served_version(p[1]).unwrap(),
        (4, vec![addr(p[0]), addr(down)])
    );
    assert!(with_endpoint(&["cluster", "remove", &e1])
        .stderr
        .contains("not in the list"));
    // The highest version any node holds + 1, to every node given too.
    store(p[1], 40, &[p[0]]);
    let r = with_servers(&["cluster", "set", &e0]);
    expect_code(&r, 2, "set (node 2 down)");
    for port in &p[..2] {
        let line = format!("{}  STORED version 41\n", addr(*port));
        assert!(r.stdout.contains(&line), "{}", r.stdout);
    }
    assert!(r.stdout.contains(&format!("{}  FAILED", addr(down))));
    // An endpoint whose configuration was deleted has none to show.
    delete_config(p[0]);
    let r = with_endpoint(&["cluster", "show"]);
    expect_code(&r, 1, "show after a delete");
    assert!(
        r.stderr.contains("no cluster configuration"),
        "{}",
        r.stderr
    );
    let r = cli(&["--discover", &addr(dead), "cluster", "show"]);
    expect_code(&r, 2, "show from a dead endpoint");
    let r = cli(&["cluster", "show"]);
    expect_code(&r, 2, "neither --servers nor --discover");
}

// ------------------------------------------------------------------ under load

/// What the loaders saw in one phase.
#[derive(Default)]
struct Phase {
    missed: Mutex<HashSet<usize>>,
    errors: AtomicU64,
    wrong: AtomicU64,
    ops: AtomicU64,
}

fn key(i: usize) -> String {
    format!("fleet:{i:05}")
}

/// Keys whose node differs between the rings over `a` and `b` (by node name).
fn moved(keys: usize, a: &[NodeSpec], b: &[NodeSpec]) -> HashSet<usize> {
    let (ra, rb) = (
        Ring::new(Distribution::KetamaWeighted, a),
        Ring::new(Distribution::KetamaWeighted, b),
    );
    (0..keys)
        .filter(|i| {
            let k = key(*i);
            a[ra.locate(k.as_bytes()).unwrap()].name() != b[rb.locate(k.as_bytes()).unwrap()].name()
        })
        .collect()
}

fn specs(ports: &[u16]) -> Vec<NodeSpec> {
    ports
        .iter()
        .map(|p| NodeSpec::parse(&addr(*p)).unwrap())
        .collect()
}

#[test]
fn fleet_change_under_load() {
    const KEYS: usize = 4000;
    const LOADERS: usize = 4;
    const MAX_OPS: u64 = 3_000_000; // per loader
    let interval = Duration::from_millis(500);
    let mut nodes: Vec<Option<Server>> = (0..4)
        .map(|_| Some(Server::ferrocache(&["--cluster-config-writable"])))
        .collect();
    let p: Vec<u16> = nodes.iter().map(|s| s.as_ref().unwrap().port).collect();
    let list = |ps: &[u16]| ps.iter().map(|q| entry(*q)).collect::<Vec<_>>();
    let three = format!("{},{},{}", addr(p[0]), addr(p[1]), addr(p[2]));
    let mut args = vec![
        "--servers".to_string(),
        three,
        "cluster".into(),
        "set".into(),
    ];
    args.extend(list(&p[..3]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_code(&cli(&args), 0, "initial set");

    let client = Client::new(discover(&addr(p[0]), interval)).unwrap();
    for i in 0..KEYS {
        client
            .set(key(i).as_bytes(), key(i).as_bytes(), 0, 0)
            .unwrap();
    }
    let phases: Arc<[Phase; 4]> = Arc::new(Default::default());
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sweeps: Arc<Vec<AtomicU64>> = Arc::new((0..LOADERS).map(|_| AtomicU64::new(0)).collect());
    let deadline = Instant::now() + Duration::from_secs(90);
    let loaders: Vec<_> = (0..LOADERS)
        .map(|t| {
            let (client, phases, phase, stop, sweeps) = (
                client.clone(),
                phases.clone(),
                phase.clone(),
                stop.clone(),
                sweeps.clone(),
            );
            std::thread::spawn(move || {
                let mut i = t * KEYS / LOADERS;
                for _ in 0..MAX_OPS {
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        break;
                    }
                    let ph = &phases[phase.load(Ordering::Relaxed)];
                    ph.ops.fetch_add(1, Ordering::Relaxed);
                    let k = key(i);
                    match client.get(k.as_bytes()) {
                        Ok(Some(item)) if item.value == k.as_bytes() => {}
                        Ok(Some(_)) => {
                            ph.wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None) => {
                            ph.missed.lock().unwrap().insert(i);
                            if client.set(k.as_bytes(), k.as_bytes(), 0, 0).is_err() {
                                ph.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            ph.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                    if i == KEYS {
                        i = 0;
                    }
                    if i == t * KEYS / LOADERS {
                        sweeps[t].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Waits until every loader has swept the whole key space twice more.
    let two_sweeps = || {
        let base: Vec<u64> = sweeps.iter().map(|s| s.load(Ordering::Relaxed)).collect();
        let t = Instant::now();
        while sweeps
            .iter()
            .zip(&base)
            .any(|(s, b)| s.load(Ordering::Relaxed) < b + 2)
        {
            assert!(t.elapsed() < Duration::from_secs(40), "loaders too slow");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    two_sweeps();

    // 3 → 4 nodes.
    let moved_add = moved(KEYS, &specs(&p[..3]), &specs(&p));
    phase.store(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let r = cli(&["--discover", &addr(p[0]), "cluster", "add", &entry(p[3])]);
    let cli_done = t0.elapsed();
    expect_code(&r, 0, "cluster add");
    wait_status(
        &client,
        interval + Duration::from_secs(2),
        "the 4th node",
        |s| s.version == 2,
    );
    let add_applied = status(&client).last_change.duration_since(t0);
    two_sweeps();

    // 4 → 3: the second node leaves, then stops.
    let moved_remove = moved(KEYS, &specs(&p), &specs(&[p[0], p[2], p[3]]));
    phase.store(2, Ordering::Relaxed);
    let t1 = Instant::now();
    let r = cli(&["--discover", &addr(p[0]), "cluster", "remove", &entry(p[1])]);
    let cli2_done = t1.elapsed();
    expect_code(&r, 0, "cluster remove");
    wait_status(
        &client,
        interval + Duration::from_secs(2),
        "the removal",
        |s| s.version == 3,
    );
    let remove_applied = status(&client).last_change.duration_since(t1);
    drop(nodes[1].take());
    two_sweeps();

    // 3 → 2, the hard way: the third node is stopped as soon as the CLI has written
    // the new list, before the client has polled it. Requests to it fail until the
    // client ejects it (failure_limit 2) or applies the list.
    let moved_kill = moved(KEYS, &specs(&[p[0], p[2], p[3]]), &specs(&[p[0], p[3]]));
    phase.store(3, Ordering::Relaxed);
    let t2 = Instant::now();
    let r = cli(&["--discover", &addr(p[0]), "cluster", "remove", &entry(p[2])]);
    expect_code(&r, 0, "cluster remove (then kill)");
    let _ = nodes[2].take().map(|mut s| s.signal_and_wait("KILL"));
    let killed_after = t2.elapsed();
    wait_status(
        &client,
        interval + Duration::from_secs(2),
        "the second removal",
        |s| s.version == 4,
    );
    let kill_applied = status(&client).last_change.duration_since(t2);
    two_sweeps();
    stop.store(true, Ordering::Relaxed);
    for l in loaders {
        l.join().unwrap();
    }

    let report = |n: usize, what: &str, moved: &HashSet<usize>| {
        let ph = &phases[n];
        let missed = ph.missed.lock().unwrap().clone();
        let extra = missed.difference(moved).count();
        let unseen = moved.difference(&missed).count();
        println!(
            "FLEET {what}: ops {} errors {} wrong values {} | keys missed {} / moved by the ring {} of {KEYS} \
             (missed but not moved {extra}, moved but not missed {unseen})",
            ph.ops.load(Ordering::Relaxed),
            ph.errors.load(Ordering::Relaxed),
            ph.wrong.load(Ordering::Relaxed),
            missed.len(),
            moved.len(),
        );
        (
            ph.errors.load(Ordering::Relaxed),
            ph.wrong.load(Ordering::Relaxed),
            extra,
            unseen,
        )
    };
    let none = HashSet::new();
    let steady = report(0, "3 nodes, steady", &none);
    let add = report(1, "add a 4th", &moved_add);
    let remove = report(
        2,
        "remove one, stop it once the client applied it",
        &moved_remove,
    );
    let kill = report(3, "remove one, kill it at once", &moved_kill);
    println!(
        "FLEET timing: interval {interval:?}; add: cli took {cli_done:?}, applied {add_applied:?} after the cli started; \
         remove: cli took {cli2_done:?}, applied {remove_applied:?} after the cli started; \
         remove+kill: killed {killed_after:?}, applied {kill_applied:?} after the cli started"
    );
    // The ring arithmetic: adding moves keys to the new node only, removing moves
    // only the removed node's keys.
    let own4 = Ring::new(Distribution::KetamaWeighted, &specs(&p));
    assert!(moved_add
        .iter()
        .all(|i| own4.locate(key(*i).as_bytes()) == Some(3)));
    let of_removed: HashSet<usize> = (0..KEYS)
        .filter(|i| own4.locate(key(*i).as_bytes()) == Some(1))
        .collect();
    assert_eq!(moved_remove, of_removed);
    assert!(
        moved_add.len() > KEYS / 8 && moved_add.len() < KEYS * 3 / 8,
        "{}",
        moved_add.len()
    );

    assert_eq!(steady, (0, 0, 0, 0), "before any change");
    let tolerance = LOADERS; // keys in flight at the switch
    assert_eq!((add.0, add.1), (0, 0), "errors / wrong values while adding");
    assert!(add.2 <= tolerance && add.3 <= tolerance, "add: {add:?}");
    assert!(
        remove.0 <= LOADERS as u64,
        "errors beyond the in-flight requests: {remove:?}"
    );
    assert_eq!(remove.1, 0);
    assert!(
        remove.2 <= tolerance && remove.3 <= tolerance,
        "remove: {remove:?}"
    );
    let bound = interval + Duration::from_millis(500);
    assert!(
        add_applied <= cli_done + bound,
        "add applied after {add_applied:?}"
    );
    assert!(
        remove_applied <= cli2_done + bound,
        "remove applied after {remove_applied:?}"
    );
    // Killed before the client knew: the errors are the requests that reached the
    // dead node before it was ejected or the list applied, at most one per loader
    // per failure up to the limit.
    assert!(
        kill.0 <= 2 * LOADERS as u64,
        "errors after the kill: {kill:?}"
    );
    assert_eq!(kill.1, 0);
    assert!(
        kill.2 <= tolerance && kill.3 <= tolerance,
        "remove+kill: {kill:?}"
    );
    let st = status(&client);
    assert_eq!((st.version, st.changes, st.failures), (4, 3, 0));
}
