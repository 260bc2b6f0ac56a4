//! ElastiCache's auto discovery, served: `config get|set|delete cluster` (text and
//! binary opcodes 0x60/0x64/0x66), the legacy `get AmazonElastiCache:cluster`,
//! `--cluster-config` with SIGHUP reloads, `--cluster-config-writable` (changes over
//! the wire; refused without it, see `tests/suite/hostile_fleet_files.rs`), the `stats`
//! rows, the SASL / `-Y` gates, and two third-party auto-discovery clients (npm
//! `memcached-elasticache`, PyPI `django-elasticache`) against a ferrocache fleet.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{require_tool, run_bounded, show, Client, Scratch, Server};

/// `config set cluster 0 <n>` with `payload`.
fn set_req(payload: &str) -> Vec<u8> {
    format!("config set cluster 0 {}\r\n{payload}\r\n", payload.len()).into_bytes()
}

/// The exact reply of `config get cluster` for `payload`.
fn get_reply(payload: &str) -> Vec<u8> {
    format!("CONFIG cluster 0 {}\r\n{payload}\r\nEND\r\n", payload.len()).into_bytes()
}

/// Reads a `config get cluster` reply and checks its length field against the payload
/// it frames: the payload parsed as `<version>\n<entries>\n`. Returns the payload.
fn read_config(c: &mut Client) -> String {
    c.send(b"config get cluster\r\n");
    let raw = c.read_until(b"END\r\n");
    let text = String::from_utf8(raw).expect("text");
    let (head, rest) = text.split_once("\r\n").expect("a header line");
    let n: usize = head
        .strip_prefix("CONFIG cluster 0 ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("header {head:?}"));
    assert_eq!(
        rest.len(),
        n + "\r\nEND\r\n".len(),
        "length field of {text:?}"
    );
    let payload = &rest[..n];
    let (version, entries) = payload.split_once('\n').expect("version line");
    assert!(version.parse::<u64>().is_ok(), "version {version:?}");
    assert!(entries.ends_with('\n'), "entries line ends with \\n");
    for e in entries.trim_end().split(' ') {
        let parts: Vec<&str> = e.split('|').collect();
        assert_eq!(parts.len(), 3, "entry {e:?}");
        assert!(parts[2].parse::<u16>().is_ok(), "port of {e:?}");
    }
    payload.to_string()
}

fn stat(c: &mut Client, name: &str) -> String {
    c.stat(name).unwrap_or_else(|| panic!("no stat {name}"))
}

#[test]
fn text_transcript_is_byte_exact() {
    let s = Server::ferrocache(&["--cluster-config-writable"]);
    let mut c = s.connect();
    let p1 = "3\nnode1.example|10.0.0.1|11211 node2.example|10.0.0.2|11211\n";
    // Nothing stored yet: no configuration, an empty answer.
    c.roundtrip(b"config get cluster\r\n", b"END\r\n");
    // The legacy key is an ordinary key until a configuration exists.
    c.roundtrip(b"get AmazonElastiCache:cluster\r\n", b"END\r\n");
    c.roundtrip(&set_req(p1), b"STORED\r\n");
    c.roundtrip(b"config get cluster\r\n", &get_reply(p1));
    assert_eq!(read_config(&mut c), p1);
    let legacy = format!(
        "VALUE AmazonElastiCache:cluster 0 {}\r\n{p1}\r\nEND\r\n",
        p1.len()
    );
    c.roundtrip(b"get AmazonElastiCache:cluster\r\n", legacy.as_bytes());
    // Mixed with ordinary keys in one multi-get.
    c.roundtrip(b"set k 5 0 1\r\nx\r\n", b"STORED\r\n");
    let mixed = format!(
        "VALUE k 5 1\r\nx\r\nVALUE AmazonElastiCache:cluster 0 {}\r\n{p1}\r\nEND\r\n",
        p1.len()
    );
    c.roundtrip(b"get k AmazonElastiCache:cluster\r\n", mixed.as_bytes());
    // A lower version than the one in force is raised past it: versions only rise.
    c.roundtrip(&set_req("1\nnode1.example|10.0.0.1|11211\n"), b"STORED\r\n");
    c.roundtrip(
        b"config get cluster\r\n",
        &get_reply("4\nnode1.example|10.0.0.1|11211\n"),
    );
    // An empty ip is allowed (clients resolve the host).
    c.roundtrip(&set_req("9\nlocalhost||11211\n"), b"STORED\r\n");
    c.roundtrip(
        b"config get cluster\r\n",
        &get_reply("9\nlocalhost||11211\n"),
    );
    // noreply forms.
    let quiet = format!(
        "config set cluster 0 {} noreply\r\n10\na||1\r\nconfig get cluster\r\n",
        "10\na||1".len()
    );
    c.roundtrip(quiet.as_bytes(), &get_reply("10\na||1\n"));
    c.roundtrip(b"config delete cluster\r\n", b"DELETED\r\n");
    c.roundtrip(b"config delete cluster\r\n", b"NOT_FOUND\r\n");
    c.roundtrip(b"config get cluster\r\n", b"END\r\n");
    c.roundtrip(
        b"config delete cluster noreply\r\nconfig get cluster\r\n",
        b"END\r\n",
    );
    // After a delete the next configuration is still newer than any before.
    c.roundtrip(&set_req("2\na||1\n"), b"STORED\r\n");
    c.roundtrip(b"config get cluster\r\n", &get_reply("11\na||1\n"));
}

#[test]
fn bad_input_gets_errors_and_leaves_the_configuration() {
    let s = Server::ferrocache(&["--cluster-config-writable"]);
    let mut c = s.connect();
    let good = "5\nlocalhost|127.0.0.1|11211\n";
    c.roundtrip(&set_req(good), b"STORED\r\n");
    let cases: Vec<(Vec<u8>, &[u8])> = vec![
        (b"config\r\n".to_vec(), b"ERROR\r\n"),
        (b"config get\r\n".to_vec(), b"ERROR\r\n"),
        (b"config frob cluster\r\n".to_vec(), b"ERROR\r\n"),
        (b"config get cluster extra\r\n".to_vec(), b"ERROR\r\n"),
        (b"config delete cluster extra\r\n".to_vec(), b"ERROR\r\n"),
        (b"config set cluster 0\r\n".to_vec(), b"ERROR\r\n"),
        (b"config set cluster 0 5 6\r\n".to_vec(), b"ERROR\r\n"),
        (
            b"config set cluster x 5\r\n".to_vec(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        (
            b"config set cluster 0 -1\r\n".to_vec(),
            b"CLIENT_ERROR bad command line format\r\n",
        ),
        // The data block is not <bytes> long: memcached's rule for a storage command.
        (
            b"config set cluster 0 3\r\nabcdef\r\n".to_vec(),
            b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        ),
        // Not a configuration.
        (
            set_req("x\na||1\n"),
            b"CLIENT_ERROR bad cluster configuration\r\n",
        ),
        (
            set_req("7\n\n"),
            b"CLIENT_ERROR bad cluster configuration\r\n",
        ),
        (
            set_req("7\nhost:11211\n"),
            b"CLIENT_ERROR bad cluster configuration\r\n",
        ),
        (
            set_req("7\na|not-an-ip|1\n"),
            b"CLIENT_ERROR bad cluster configuration\r\n",
        ),
        (
            set_req("7\na|1.2.3.4|70000\n"),
            b"CLIENT_ERROR bad cluster configuration\r\n",
        ),
        (
            set_req("7\na\u{0}|1.2.3.4|1\n"),
            b"CLIENT_ERROR bad cluster configuration\r\n",
        ),
        (
            set_req("7\n\u{fffd}|1.2.3.4|1\n"),
            b"CLIENT_ERROR bad cluster configuration\r\n",
        ),
        (
            b"config set other 0 1\r\nx\r\n".to_vec(),
            b"CLIENT_ERROR unknown configuration key\r\n",
        ),
        (b"config get other\r\n".to_vec(), b"END\r\n"),
        (b"config delete other\r\n".to_vec(), b"NOT_FOUND\r\n"),
    ];
    for (req, want) in &cases {
        c.roundtrip(req, want);
        c.roundtrip(b"config get cluster\r\n", &get_reply(good));
    }
    // Larger than an item may be (-I 1m): refused from its line, its block swallowed.
    let big = format!("8\n{}\n", vec!["h|127.0.0.1|1"; 90_000].join(" "));
    c.roundtrip(
        &set_req(&big),
        b"SERVER_ERROR object too large for cache\r\n",
    );
    c.roundtrip(b"config get cluster\r\n", &get_reply(good));
    // More nodes than a configuration may list (1024).
    let mut c2 = s.connect();
    let many = format!("8\n{}\n", vec!["h|127.0.0.1|1"; 1025].join(" "));
    c2.roundtrip(
        &set_req(&many),
        b"CLIENT_ERROR bad cluster configuration\r\n",
    );
    let most = format!("8\n{}\n", vec!["h|127.0.0.1|1"; 1024].join(" "));
    c2.roundtrip(&set_req(&most), b"STORED\r\n");
    assert_eq!(read_config(&mut c2), most);
    // The connections keep working.
    c.roundtrip(b"version\r\n", b"VERSION 1.6.18\r\n");
}

/// A binary request packet.
fn pkt(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    common::binary_request(op, key, extras, value, opaque)
}

/// A binary response packet as memcached composes them.
fn resp(op: u8, status: u16, extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    let mut p = vec![0x81, op, 0, 0, extras.len() as u8, 0];
    p.extend_from_slice(&status.to_be_bytes());
    p.extend_from_slice(&((extras.len() + value.len()) as u32).to_be_bytes());
    p.extend_from_slice(&opaque.to_be_bytes());
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(extras);
    p.extend_from_slice(value);
    p
}

#[test]
fn binary_opcodes() {
    const GET: u8 = 0x60;
    const SET: u8 = 0x64;
    const DEL: u8 = 0x66;
    let s = Server::ferrocache(&["--cluster-config-writable"]);
    let mut c = s.connect();
    let payload = b"2\nlocalhost|127.0.0.1|11211 localhost|127.0.0.1|11212\n";
    c.roundtrip(
        &pkt(GET, b"cluster", &[], &[], 1),
        &resp(GET, 1, &[], b"Not found", 1),
    );
    // SET with a SET's extras (flags, exptime), with 4 bytes of flags, and without.
    c.roundtrip(
        &pkt(SET, b"cluster", &[0; 8], payload, 2),
        &resp(SET, 0, &[], &[], 2),
    );
    c.roundtrip(
        &pkt(GET, b"cluster", &[], &[], 3),
        &resp(GET, 0, &[0, 0, 0, 0], payload, 3),
    );
    c.roundtrip(
        &pkt(SET, b"cluster", &[0; 4], b"1\na||1\n", 4),
        &resp(SET, 0, &[], &[], 4),
    );
    c.roundtrip(
        &pkt(GET, b"cluster", &[], &[], 5),
        &resp(GET, 0, &[0; 4], b"3\na||1\n", 5),
    );
    // The text protocol sees what the binary one set.
    s.connect()
        .roundtrip(b"config get cluster\r\n", &get_reply("3\na||1\n"));
    c.roundtrip(
        &pkt(SET, b"cluster", &[], b"bogus", 6),
        &resp(SET, 4, &[], b"Invalid arguments", 6),
    );
    c.roundtrip(
        &pkt(SET, b"other", &[], b"4\na||1\n", 7),
        &resp(SET, 4, &[], b"Invalid arguments", 7),
    );
    // Malformed shapes: extras on GET, no key, a body on DELETE.
    c.roundtrip(
        &pkt(GET, b"cluster", &[0; 4], &[], 8),
        &resp(GET, 4, &[], b"Invalid arguments", 8),
    );
    let mut c = s.connect();
    c.roundtrip(
        &pkt(DEL, b"cluster", &[], &[], 9),
        &resp(DEL, 0, &[], &[], 9),
    );
    c.roundtrip(
        &pkt(DEL, b"cluster", &[], &[], 10),
        &resp(DEL, 1, &[], b"Not found", 10),
    );
    c.roundtrip(
        &pkt(GET, b"cluster", &[], &[], 11),
        &resp(GET, 1, &[], b"Not found", 11),
    );
    c.roundtrip(
        &pkt(GET, b"", &[], &[], 12),
        &resp(GET, 4, &[], b"Invalid arguments", 12),
    );
}

#[test]
fn file_sighup_readonly_and_stats() {
    let dir = Scratch::new("cluster-file");
    let file = dir.file(
        "nodes",
        "# the fleet\n127.0.0.1:11211\nnode-b.example|10.1.0.2|11211\n",
    );
    let mut s = Server::ferrocache(&["--cluster-config", &file, "--cluster-config-readonly"]);
    let mut c = s.connect();
    c.roundtrip(
        b"config get cluster\r\n",
        &get_reply("1\n127.0.0.1|127.0.0.1|11211 node-b.example|10.1.0.2|11211\n"),
    );
    assert_eq!(stat(&mut c, "cluster_config_version"), "1");
    assert_eq!(stat(&mut c, "curr_config"), "1");
    // Read-only: refused over the wire, in both protocols.
    c.roundtrip(
        &set_req("9\na||1\n"),
        b"CLIENT_ERROR cluster configuration is read-only\r\n",
    );
    c.roundtrip(
        b"config delete cluster\r\n",
        b"CLIENT_ERROR cluster configuration is read-only\r\n",
    );
    s.connect().roundtrip(
        &pkt(0x64, b"cluster", &[], b"9\na||1\n", 1),
        &resp(0x64, 5, &[], b"Not stored.", 1),
    );
    // A reload with the same list changes nothing; a changed list is version 2.
    let sighup = |s: &Server| {
        let ok = Command::new("kill")
            .args(["-HUP", &s.pid().to_string()])
            .status()
            .map(|st| st.success())
            .unwrap_or(false);
        assert!(ok, "kill -HUP");
    };
    let wait_version = |c: &mut Client, v: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stat(c, "cluster_config_version") != v {
            assert!(Instant::now() < deadline, "version {v} not reached");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    sighup(&s);
    std::fs::write(&file, "127.0.0.1:11211\n127.0.0.1:11212\n127.0.0.1:11213\n").unwrap();
    sighup(&s);
    wait_version(&mut c, "2");
    c.roundtrip(
        b"config get cluster\r\n",
        &get_reply(
            "2\n127.0.0.1|127.0.0.1|11211 127.0.0.1|127.0.0.1|11212 127.0.0.1|127.0.0.1|11213\n",
        ),
    );
    // A file naming its version sets it; a file that does not parse keeps the list.
    std::fs::write(&file, "40\n127.0.0.1:11211\n").unwrap();
    sighup(&s);
    wait_version(&mut c, "40");
    std::fs::write(&file, "127.0.0.1:notaport\n").unwrap();
    sighup(&s);
    std::fs::write(&file, "127.0.0.1:11299\n").unwrap();
    sighup(&s);
    wait_version(&mut c, "41");
    c.roundtrip(
        b"config get cluster\r\n",
        &get_reply("41\n127.0.0.1|127.0.0.1|11299\n"),
    );
    // Counters: every config get (text, legacy, binary) and every set request.
    c.send(b"get AmazonElastiCache:cluster\r\n");
    c.read_until(b"END\r\n");
    s.connect().roundtrip(
        &pkt(0x60, b"cluster", &[], &[], 2),
        &resp(0x60, 0, &[0; 4], b"41\n127.0.0.1|127.0.0.1|11299\n", 2),
    );
    assert_eq!(stat(&mut c, "cmd_config_get"), "5");
    assert_eq!(stat(&mut c, "cmd_config_set"), "2");
    // The server still answers after the reloads.
    assert!(s.signal_and_wait("TERM").is_some_and(|st| st.success()));
}

#[test]
fn a_bad_file_stops_the_start() {
    let dir = Scratch::new("cluster-bad");
    let bad = dir.file("nodes", "not a node\n");
    for arg in [bad.as_str(), "/nonexistent/cluster.conf"] {
        let run = run_bounded(
            Command::new(common::ferrocache_bin()).args([
                "-p",
                "0",
                "-U",
                "0",
                "--cluster-config",
                arg,
            ]),
            Duration::from_secs(10),
        );
        assert_eq!(
            run.status.and_then(|s| s.code()),
            Some(64),
            "{arg}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("cluster config"), "{}", run.stderr);
    }
}

#[test]
fn gated_by_authentication() {
    let dir = Scratch::new("cluster-auth");
    let authfile = dir.file("auth", "user:secret\n");
    let s = Server::ferrocache(&["-Y", &authfile, "--cluster-config-writable"]);
    let mut c = s.connect();
    // Before authenticating, `config` is refused as every other command is.
    let refused = c.line("get k\r\n");
    for req in ["config get cluster\r\n", "config delete cluster\r\n"] {
        let mut c = s.connect();
        assert_eq!(c.line(req), refused, "{req}");
    }
    let mut c = s.connect();
    c.send(b"set auth 0 0 11\r\nuser secret\r\n");
    assert_eq!(c.line(""), "STORED\r\n");
    c.roundtrip(&set_req("1\na||1\n"), b"STORED\r\n");
    c.roundtrip(b"config get cluster\r\n", &get_reply("1\na||1\n"));

    // Binary under SASL: refused before authentication.
    let creds = dir.file("sasl", "user:secret\n");
    let s = Server::ferrocache(&["-S", "--sasl-pwdb", &creds, "--cluster-config-writable"]);
    let mut c = s.connect();
    c.roundtrip(
        &pkt(0x60, b"cluster", &[], &[], 7),
        &resp(0x60, 0x20, &[], b"Auth failure.", 7),
    );
}

/// Where `.ci/run` installs the third-party clients (outside git, inside the tree).
fn interop_dir(sub: &str) -> String {
    format!("{}/target/interop/{sub}", env!("CARGO_MANIFEST_DIR"))
}

/// Three (then four) ferrocache nodes that all serve the same list.
struct Fleet {
    nodes: Vec<Server>,
}

impl Fleet {
    fn start(n: usize) -> Fleet {
        Fleet {
            nodes: (0..n)
                .map(|_| Server::ferrocache(&["--cluster-config-writable"]))
                .collect(),
        }
    }

    fn publish(&self, version: u64) {
        let entries: Vec<String> = self
            .nodes
            .iter()
            .map(|s| format!("127.0.0.1|127.0.0.1|{}", s.port))
            .collect();
        let payload = format!("{version}\n{}\n", entries.join(" "));
        for s in &self.nodes {
            s.connect().roundtrip(&set_req(&payload), b"STORED\r\n");
        }
    }

    fn items(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|s| {
                s.connect()
                    .stat("curr_items")
                    .unwrap_or_default()
                    .parse()
                    .unwrap_or(0)
            })
            .collect()
    }
}

#[test]
fn npm_memcached_elasticache_discovers_and_follows_the_fleet() {
    let modules = interop_dir("node/node_modules");
    if !require_tool("/usr/bin/node") || !require_tool(&format!("{modules}/memcached-elasticache"))
    {
        return;
    }
    let mut fleet = Fleet::start(3);
    fleet.publish(1);
    let script = format!(
        "{}/tests/interop/elasticache_discovery.js",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new("/usr/bin/node")
        .arg(&script)
        .arg(format!("127.0.0.1:{}", fleet.nodes[0].port))
        .arg("4")
        .env("NODE_PATH", &modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut next = |what: &str| -> String {
        let l = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no {what} from node; so far {lines:?}"));
        lines.push(l.clone());
        l
    };
    let first = next("discovery");
    for s in &fleet.nodes {
        assert!(first.contains(&format!("127.0.0.1:{}", s.port)), "{first}");
    }
    let phase = next("first phase");
    assert!(
        phase.contains("\"nodes\":3") && phase.contains("\"hits\":200"),
        "{phase}"
    );
    assert!(next("ready").contains("ready"));
    let before = fleet.items();
    assert!(
        before.iter().all(|&n| n > 0),
        "every node got keys: {before:?}"
    );
    // Grow the fleet; the client's next poll (300 ms) sees version 2.
    fleet
        .nodes
        .push(Server::ferrocache(&["--cluster-config-writable"]));
    fleet.publish(2);
    let grown = loop {
        let l = next("the grown fleet");
        if l.contains("\"phase\":\"grown\"") {
            break l;
        }
        assert!(!l.contains("error"), "{l}");
    };
    assert!(
        grown.contains("\"nodes\":4") && grown.contains("\"hits\":200"),
        "{grown}"
    );
    let status = child.wait().expect("node exit");
    assert!(status.success(), "node: {lines:?}");
    let after = fleet.items();
    assert!(after[3] > 0, "the added node got keys: {after:?}");
    eprintln!("memcached-elasticache: items per node before {before:?}, after growing {after:?}");
}

#[test]
fn pypi_django_elasticache_discovers_every_node() {
    let py = interop_dir("py");
    if !require_tool("/usr/bin/python3")
        || !require_tool(&format!("{py}/django_elasticache"))
        || !require_tool("/usr/lib/python3/dist-packages/django")
    {
        return;
    }
    let fleet = Fleet::start(3);
    fleet.publish(7);
    let script = format!(
        "{}/tests/interop/django_elasticache_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = run_bounded(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(format!("127.0.0.1:{}", fleet.nodes[0].port))
            .env("PYTHONPATH", &py),
        Duration::from_secs(60),
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let out = run.stdout.trim();
    assert!(out.contains("\"version\": 7"), "{out}");
    assert!(out.contains("\"hits\": 300"), "{out}");
    for s in &fleet.nodes {
        assert!(out.contains(&format!("127.0.0.1:{}", s.port)), "{out}");
    }
    let items = fleet.items();
    assert!(
        items.iter().all(|&n| n > 0),
        "keys on every node: {items:?} {out}"
    );
    assert_eq!(items.iter().sum::<u64>(), 300, "{}", show(out.as_bytes()));
}
