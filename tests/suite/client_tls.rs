//! `ferrocache::client` and `ferrocache-cli` over TLS, against `memcached -Z` 1.6.18
//! started by the test with certificates the test makes (tests/suite/common/tls.rs): every
//! protocol, several nodes sharing one configuration, mutual TLS, refusals (wrong CA,
//! wrong name, no client certificate, a plain server, a silent peer) and SASL over TLS
//! (memcached's Cyrus sasldb, set up as tests/suite/sasl.rs does).
use crate::common;
use crate::common::tls::*;
use crate::common::*;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrocache::client::{Client, ClientConfig, Error, Protocol, SaslAuth, TlsOptions};

const CLI: &str = env!("CARGO_BIN_EXE_ferrocache-cli");
/// Bound on one refused attempt: a refusal must come well before any timeout stacking.
const REFUSAL_LIMIT: Duration = Duration::from_secs(5);

/// `-Z` with the server certificate of `pki`, and `extra` more `-o` options.
fn tls_args(pki: &Pki, extra: &str) -> Vec<String> {
    let mut opts = format!(
        "ssl_chain_cert={},ssl_key={}",
        pki.server_cert, pki.server_key
    );
    if !extra.is_empty() {
        opts.push(',');
        opts.push_str(extra);
    }
    vec!["-Z".into(), "-o".into(), opts]
}

/// memcached -Z (None: not installed, outside CI).
fn memcached_tls(pki: &Pki, extra_opts: &str, more: &[&str]) -> Option<Server> {
    let args = tls_args(pki, extra_opts);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(more);
    Server::memcached(&args)
}

/// memcached -Z requiring a client certificate signed by `pki`'s CA.
fn memcached_mtls(pki: &Pki) -> Option<Server> {
    let extra = format!("ssl_verify_mode=2,ssl_ca_cert={}", pki.ca);
    memcached_tls(pki, &extra, &[])
}

fn config(servers: &[&Server], protocol: Protocol, tls: TlsOptions) -> ClientConfig {
    let list: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let mut cfg = ClientConfig::new(&list.join(","))
        .expect("server list")
        .with_tls(tls);
    cfg.conn.protocol = protocol;
    cfg.conn.connect_timeout = Duration::from_secs(2);
    cfg.conn.io_timeout = Duration::from_secs(2);
    cfg
}

fn client(servers: &[&Server], protocol: Protocol, tls: TlsOptions) -> Client {
    Client::new(config(servers, protocol, tls)).expect("client")
}

fn trusting(pki: &Pki) -> TlsOptions {
    TlsOptions::new().ca_file(&pki.ca)
}

/// The operations the brief names, on one client, with a value large enough to take
/// many TLS records.
fn operations(c: &Client, what: &str) {
    c.flush_all(0)
        .unwrap_or_else(|e| panic!("{what}: flush: {e}"));
    assert_eq!(c.get(b"k").expect("get"), None, "{what}");
    c.set(b"k", b"v1", 7, 0).expect("set");
    let it = c.get(b"k").expect("get").expect("hit");
    assert_eq!((it.value.as_slice(), it.flags), (&b"v1"[..], 7), "{what}");
    assert!(c.delete(b"k").expect("delete"), "{what}");
    assert!(!c.delete(b"k").expect("delete again"), "{what}");
    assert_eq!(c.get(b"k").expect("get"), None, "{what}");
    c.set(b"n", b"41", 0, 0).expect("set n");
    assert_eq!(c.incr(b"n", 1).expect("incr"), Some(42), "{what}");
    assert_eq!(c.decr(b"n", 2).expect("decr"), Some(40), "{what}");
    assert_eq!(c.incr(b"absent", 1).expect("incr absent"), None, "{what}");
    let big = vec![b'z'; 300_000];
    let keys: Vec<Vec<u8>> = (0..60).map(|i| format!("tls:{i}").into_bytes()).collect();
    for (i, k) in keys.iter().enumerate() {
        let v = if i == 3 { big.clone() } else { k.clone() };
        c.set(k, &v, i as u32, 0).expect("set many");
    }
    let mut ask: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    ask.push(b"tls:absent");
    let got = c.get_many(&ask).expect("get_many");
    assert_eq!(got.len(), keys.len(), "{what}");
    for (i, k) in keys.iter().enumerate() {
        let it = &got[k];
        assert_eq!(it.flags, i as u32, "{what}");
        let want = if i == 3 { &big } else { k };
        assert!(it.value == *want, "{what}: value of {i}");
    }
    for (name, v) in c.versions() {
        assert_eq!(v.expect("version").as_str(), "1.6.18", "{what}: {name}");
    }
}

#[test]
fn text_binary_and_meta_over_tls_on_two_nodes() {
    let pki = Pki::new("ctls-ops");
    let (Some(a), Some(b)) = (memcached_tls(&pki, "", &[]), memcached_tls(&pki, "", &[])) else {
        return;
    };
    for protocol in [Protocol::Text, Protocol::Binary, Protocol::Meta] {
        let c = client(&[&a, &b], protocol, trusting(&pki));
        operations(&c, &format!("{protocol:?}"));
        // Both nodes served keys (the one TLS configuration is shared by all).
        for st in c.node_status() {
            assert!(st.requests > 0 && st.errors == 0, "{protocol:?}: {st:?}");
        }
    }
}

#[test]
fn server_name_default_explicit_and_wrong() {
    let pki = Pki::new("ctls-name");
    let Some(mc) = memcached_tls(&pki, "", &[]) else {
        return;
    };
    // Default: the host, 127.0.0.1, checked as an IP address (the certificate lists
    // it); explicit: localhost (also listed).
    for tls in [trusting(&pki), trusting(&pki).server_name("localhost")] {
        let c = client(&[&mc], Protocol::Text, tls.clone());
        c.set(b"name", b"ok", 0, 0).expect("set");
        assert_eq!(c.get(b"name").expect("get").expect("hit").value, b"ok");
    }
    let c = client(
        &[&mc],
        Protocol::Text,
        trusting(&pki).server_name("cache.example"),
    );
    let started = Instant::now();
    match c.get(b"name") {
        Err(Error::Tls(msg)) => assert!(
            msg.contains("invalid peer certificate") && msg.contains("not valid for name"),
            "{msg}"
        ),
        other => panic!("a certificate for another name must be refused: {other:?}"),
    }
    assert!(started.elapsed() < REFUSAL_LIMIT);
}

#[test]
fn wrong_ca_and_system_roots_are_refused_with_a_certificate_error() {
    let pki = Pki::new("ctls-ca");
    let other = Pki::new("ctls-ca-other");
    let Some(mc) = memcached_tls(&pki, "", &[]) else {
        return;
    };
    // Another CA; then the system's roots, which do not hold the test CA.
    for (what, tls) in [
        ("other CA", trusting(&other)),
        ("system roots", TlsOptions::new()),
    ] {
        let c = match Client::new(config(&[&mc], Protocol::Text, tls)) {
            Ok(c) => c,
            // A machine without a trust store refuses already here.
            Err(Error::Tls(msg)) if what == "system roots" => {
                common::skip(&format!("system roots case: {msg}"));
                continue;
            }
            Err(e) => panic!("{what}: {e}"),
        };
        for _ in 0..3 {
            let started = Instant::now();
            match c.set(b"k", b"v", 0, 0) {
                Err(Error::Tls(msg)) => {
                    // The other CA has the same name as ours, so its signature is
                    // what fails; against the system's roots, the issuer is unknown.
                    let why = if what == "other CA" {
                        "BadSignature"
                    } else {
                        "UnknownIssuer"
                    };
                    assert!(
                        msg.contains("invalid peer certificate") && msg.contains(why),
                        "{what}: {msg}"
                    );
                    assert!(msg.contains(&format!("127.0.0.1:{}", mc.port)), "{msg}");
                }
                other => panic!("{what}: must be refused: {other:?}"),
            }
            assert!(started.elapsed() < REFUSAL_LIMIT, "{what}");
        }
        // A refusal is not a node failure: the node stays in the ring.
        let st = &c.node_status()[0];
        assert!(st.live && st.errors == 0, "{what}: {st:?}");
    }
}

#[test]
fn mutual_tls_with_and_without_a_client_certificate() {
    let pki = Pki::new("ctls-mtls");
    let Some(mc) = memcached_mtls(&pki) else {
        return;
    };
    for protocol in [Protocol::Text, Protocol::Binary, Protocol::Meta] {
        let with = trusting(&pki).client_cert(&pki.client_cert, &pki.client_key);
        let c = client(&[&mc], protocol, with);
        c.set(b"m", b"tls", 0, 0)
            .expect("set with a client certificate");
        assert_eq!(c.get(b"m").expect("get").expect("hit").value, b"tls");
        assert_eq!(c.incr(b"absent", 1).expect("incr"), None);
    }
    // Without one: memcached ends the handshake (TLS 1.3: right after our Finished,
    // so the alert is read with the first reply). A clean TLS error, every time,
    // nothing pooled, no hang.
    for protocol in [Protocol::Text, Protocol::Binary, Protocol::Meta] {
        let c = client(&[&mc], protocol, trusting(&pki));
        for attempt in 0..3 {
            let started = Instant::now();
            match c.get(b"m") {
                Err(Error::Tls(msg)) => assert!(
                    msg.contains("CertificateRequired"),
                    "{protocol:?} #{attempt}: {msg}"
                ),
                other => {
                    panic!("{protocol:?} #{attempt}: no client certificate, refused: {other:?}")
                }
            }
            assert!(started.elapsed() < REFUSAL_LIMIT, "{protocol:?}");
        }
    }
    // A client certificate from another CA is refused as well.
    let other = Pki::new("ctls-mtls-other");
    let c = client(
        &[&mc],
        Protocol::Text,
        trusting(&pki).client_cert(&other.client_cert, &other.client_key),
    );
    assert!(
        matches!(c.get(b"m"), Err(Error::Tls(_))),
        "a client certificate of another CA"
    );
}

#[test]
fn unusable_files_fail_at_client_new() {
    let pki = Pki::new("ctls-files");
    let bad = |tls: TlsOptions| {
        let cfg = ClientConfig::new("127.0.0.1:1")
            .expect("list")
            .with_tls(tls);
        match Client::new(cfg) {
            Err(Error::Tls(msg)) => msg,
            other => panic!("expected a TLS error: {other:?}"),
        }
    };
    let missing = pki.dir.path("missing.pem");
    assert!(bad(TlsOptions::new().ca_file(&missing)).contains("missing.pem"));
    let empty = pki.dir.file("empty.pem", "not PEM at all\n");
    assert!(bad(TlsOptions::new().ca_file(&empty)).contains("no PEM certificate"));
    // A key that is not the certificate's.
    let msg = bad(trusting(&pki).client_cert(&pki.client_cert, &pki.server_key));
    assert!(msg.contains("client certificate"), "{msg}");
    let msg = bad(TlsOptions {
        cert_file: Some(pki.client_cert.clone().into()),
        ..trusting(&pki)
    });
    assert!(msg.contains("needs its key"), "{msg}");
}

#[test]
fn a_plain_server_and_a_silent_peer_give_errors_not_hangs() {
    let pki = Pki::new("ctls-plain");
    let Some(plain) = Server::memcached(&[]) else {
        return;
    };
    let mut cfg = config(&[&plain], Protocol::Text, trusting(&pki));
    cfg.conn.io_timeout = Duration::from_millis(500);
    let c = Client::new(cfg).expect("client");
    let started = Instant::now();
    match c.get(b"k") {
        // memcached reads the ClientHello as a text command: when its random bytes
        // hold a newline it answers "ERROR" (a corrupt TLS record), otherwise it waits
        // for the line's end and the handshake times out (or a close ends it).
        Err(Error::Tls(msg)) => assert!(msg.contains("corrupt message"), "{msg}"),
        Err(Error::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::UnexpectedEof
            ),
            "{e}"
        ),
        other => panic!("plain memcached: {other:?}"),
    }
    assert!(started.elapsed() < REFUSAL_LIMIT);

    // A peer that accepts and never answers: bounded by the I/O timeout.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    silent.set_nonblocking(true).expect("nonblocking");
    let holder = std::thread::spawn(move || {
        // Accepts for 1.5 s and holds what it accepted, saying nothing.
        let until = Instant::now() + Duration::from_millis(1500);
        let mut held = Vec::new();
        while Instant::now() < until {
            if let Ok(conn) = silent.accept() {
                held.push(conn);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        held.len()
    });
    let mut cfg = ClientConfig::new(&format!("127.0.0.1:{port}"))
        .expect("list")
        .with_tls(trusting(&pki));
    cfg.conn.connect_timeout = Duration::from_millis(300);
    cfg.conn.io_timeout = Duration::from_millis(300);
    let c = Client::new(cfg).expect("client");
    let started = Instant::now();
    match c.get(b"k") {
        Err(Error::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
        other => panic!("silent peer: {other:?}"),
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "handshake took {took:?}");
    assert_eq!(holder.join().expect("holder"), 1, "one connection attempt");
}

/// memcached -Z -S against a fresh sasldb holding `user`/`pass`, as tests/suite/sasl.rs sets
/// memcached's SASL up (Cyrus, `mech_list: plain`, SASL_CONF_PATH).
fn memcached_tls_sasl(pki: &Pki, user: &str, pass: &str) -> Option<Server> {
    if !memcached_sasl_setup(&pki.dir, user, pass) {
        return None;
    }
    memcached_tls(pki, "", &["-S"])
}

#[test]
fn sasl_over_tls_against_memcached() {
    let pki = Pki::new("ctls-sasl");
    let Some(mc) = memcached_tls_sasl(&pki, "tlsuser", "tls-secret") else {
        return;
    };
    let with_auth = |password: &str| {
        let mut cfg = config(&[&mc], Protocol::Binary, trusting(&pki));
        cfg.conn.auth = Some(SaslAuth {
            username: "tlsuser".into(),
            password: password.into(),
            mechanism: None,
        });
        Client::new(cfg).expect("client")
    };
    let c = with_auth("tls-secret");
    c.set(b"sasl", b"over tls", 3, 0).expect("set after SASL");
    let it = c.get(b"sasl").expect("get").expect("hit");
    assert_eq!((it.value.as_slice(), it.flags), (&b"over tls"[..], 3));
    assert_eq!(c.incr(b"absent", 1).expect("incr"), None);
    let bad = with_auth("wrong");
    assert!(matches!(bad.get(b"sasl"), Err(Error::Auth(_))));
    // No credentials: memcached refuses the request (and closes).
    let none = client(&[&mc], Protocol::Binary, trusting(&pki));
    assert!(none.get(b"sasl").is_err());
}

fn cli(port: u16, args: &[&str]) -> Run {
    let servers = format!("127.0.0.1:{port}");
    run_bounded(
        Command::new(CLI)
            .args(["--servers", &servers, "--timeout-ms", "2000"])
            .args(args),
        Duration::from_secs(20),
    )
}

fn expect_ok(r: &Run, stdout: &str, what: &str) {
    assert_eq!(
        (r.status.and_then(|s| s.code()), r.stdout.as_str()),
        (Some(0), stdout),
        "{what}: stderr {}",
        r.stderr
    );
}

fn expect_refused(r: &Run, part: &str, what: &str) {
    assert_eq!(
        r.status.and_then(|s| s.code()),
        Some(2),
        "{what}: {}",
        r.stderr
    );
    assert!(
        r.stderr.starts_with("ferrocache-cli: ") && r.stderr.contains(part),
        "{what}: {}",
        r.stderr
    );
}

#[test]
fn cli_over_tls_against_memcached() {
    let pki = Pki::new("ctls-cli");
    let (Some(mc), Some(mt)) = (memcached_tls(&pki, "", &[]), memcached_mtls(&pki)) else {
        return;
    };
    let ca = pki.ca.as_str();
    let tls = ["--tls", "--cacert", ca];
    let with = |more: &[&'static str]| -> Vec<&str> {
        let mut v = tls.to_vec();
        v.extend_from_slice(more);
        v
    };
    expect_ok(
        &cli(mc.port, &with(&["set", "greeting", "hello"])),
        "STORED\n",
        "set",
    );
    expect_ok(&cli(mc.port, &with(&["get", "greeting"])), "hello\n", "get");
    let mut binary = with(&["--binary", "incr", "absent"]);
    let r = cli(mc.port, &binary);
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.stderr);
    binary.truncate(3);
    binary.extend(["--binary", "delete", "greeting"]);
    expect_ok(&cli(mc.port, &binary), "DELETED\n", "delete, binary");
    expect_ok(
        &cli(
            mc.port,
            &with(&["--servername", "localhost", "set", "n", "9"]),
        ),
        "STORED\n",
        "--servername",
    );
    expect_ok(&cli(mc.port, &with(&["incr", "n", "1"])), "10\n", "incr");
    // No --cacert: the system's roots, which do not hold the test CA.
    expect_refused(
        &cli(mc.port, &["--tls", "get", "n"]),
        "TLS error",
        "system roots",
    );
    // Without --tls a -Z node is not spoken to in plain text.
    let r = cli(mc.port, &["get", "n"]);
    assert_eq!(r.status.and_then(|s| s.code()), Some(2), "{}", r.stderr);
    // Mutual TLS.
    let (cert, key) = (pki.client_cert.as_str(), pki.client_key.as_str());
    let mut m = tls.to_vec();
    m.extend(["--cert", cert, "--key", key, "set", "m", "mutual"]);
    expect_ok(&cli(mt.port, &m), "STORED\n", "mutual TLS set");
    expect_refused(
        &cli(mt.port, &with(&["get", "m"])),
        "TLS error",
        "no --cert",
    );
    // --cert needs --key; the TLS options need --tls.
    let r = cli(mt.port, &["--tls", "--cert", cert, "get", "m"]);
    assert_eq!(r.status.and_then(|s| s.code()), Some(2), "{}", r.stderr);
    let r = cli(mt.port, &["--cacert", ca, "get", "m"]);
    assert_eq!(r.status.and_then(|s| s.code()), Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--tls"), "{}", r.stderr);
}

#[test]
fn many_threads_share_one_tls_client() {
    let pki = Pki::new("ctls-threads");
    let Some(mc) = memcached_tls(&pki, "", &[]) else {
        return;
    };
    let c = client(&[&mc], Protocol::Meta, trusting(&pki));
    let deadline = Instant::now() + Duration::from_secs(30);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    assert!(Instant::now() < deadline, "thread {t} too slow");
                    let k = format!("t{t}:{i}");
                    c.set(k.as_bytes(), k.as_bytes(), 0, 0).expect("set");
                    let v = c.get(k.as_bytes()).expect("get").expect("hit").value;
                    assert_eq!(v, k.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(c.node_status()[0].errors, 0);
}

/// ferrocache -Z with `extra` `-o` options.
fn ferrocache_tls(pki: &Pki, extra: &str) -> Server {
    let args = tls_args(pki, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::ferrocache(&args)
}

#[test]
fn our_client_over_tls_against_ferrocache_and_a_mixed_cluster() {
    let pki = Pki::new("ctls-ferro");
    let (a, b) = (ferrocache_tls(&pki, ""), ferrocache_tls(&pki, ""));
    for protocol in [Protocol::Text, Protocol::Binary, Protocol::Meta] {
        let c = client(&[&a, &b], protocol, trusting(&pki));
        operations(&c, &format!("ferrocache {protocol:?}"));
        for st in c.node_status() {
            assert!(st.requests > 0 && st.errors == 0, "{protocol:?}: {st:?}");
        }
    }
    // One ferrocache and one memcached node behind one TLS configuration.
    if let Some(mc) = memcached_tls(&pki, "", &[]) {
        let c = client(&[&a, &mc], Protocol::Text, trusting(&pki));
        operations(&c, "mixed");
    }
    // Mutual TLS on ferrocache: with the client certificate served, without refused.
    let m = ferrocache_tls(&pki, &format!("ssl_verify_mode=2,ssl_ca_cert={}", pki.ca));
    let with = trusting(&pki).client_cert(&pki.client_cert, &pki.client_key);
    let c = client(&[&m], Protocol::Binary, with);
    c.set(b"m", b"tls", 0, 0)
        .expect("set with a client certificate");
    assert_eq!(c.get(b"m").expect("get").expect("hit").value, b"tls");
    let c = client(&[&m], Protocol::Text, trusting(&pki));
    let started = Instant::now();
    assert!(
        matches!(c.get(b"m"), Err(Error::Tls(_))),
        "served without a client certificate"
    );
    assert!(started.elapsed() < REFUSAL_LIMIT);
}

/// `ferrocache-cli --tls ... snapshot` asks a ferrocache -Z node over TLS (it used to
/// open plain TCP whatever the options said) and waits for the file.
#[test]
fn cli_snapshot_honours_tls() {
    let pki = Pki::new("ctls-snapshot");
    let dir = Scratch::new("ctls-snapshot-dir");
    dir.open_to_all();
    let mut args = tls_args(&pki, "");
    args.extend(["--snapshot-dir".to_string(), dir.path("")]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::ferrocache(&a);
    let tls = ["--tls", "--cacert", pki.ca.as_str()];
    let r = cli(s.port, &[&tls[..], &["set", "k", "v"]].concat());
    expect_ok(&r, "STORED\n", "set over TLS");
    let r = cli(
        s.port,
        &[&tls[..], &["snapshot", "over-tls.snap", "--wait", "15"]].concat(),
    );
    assert_eq!(
        r.status.and_then(|st| st.code()),
        Some(0),
        "snapshot over TLS: {} {}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("done: 1 items"), "{}", r.stdout);
    assert!(dir.0.join("over-tls.snap").exists());
    // Without --tls the TLS listener refuses the plain command: exit 2.
    let r = cli(s.port, &["snapshot", "plain.snap", "--wait", "2"]);
    assert_eq!(r.status.and_then(|st| st.code()), Some(2), "{}", r.stdout);
    assert!(!dir.0.join("plain.snap").exists());
}
