//! Issue #24, the hostile and careless clients that still hurt, points 3 to 7: the
//! discovery list as an opt-in capability with followable versions, snapshot files
//! and the `snapshot` command as untrusted input, certificates checked before they
//! are swapped in, the TLS 1.3 first request and handshake floods, and wrong-password
//! floods that must not lock an account out. Every server listens on 127.0.0.1, every
//! loop is bounded, and the hostile cluster lists name loopback addresses only.

use crate::common;

use crate::common::tls::{client_config, connect_tls, tls_args, Pki, TlsStream};
use crate::common::{ferrocache_bin, free_port, run_bounded, Client, Scratch, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrocache::store::snapshot::{crc32, Header, BLOCK_HDR, RECORD_HDR};
use ferrocache::store::SnapMeta;

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn stat_u64(c: &mut Client, name: &str) -> u64 {
    c.stat(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("stat {name}"))
}

// ------------------------------------------------------------------ point 3: discovery

/// The hijack of the issue: a version no client could follow, and a host of ours.
const HIJACK: &str = "18446744073709551615\nevil|127.0.0.99|11211";

fn config_set(payload: &str) -> Vec<u8> {
    format!("config set cluster 0 {}\r\n{payload}\r\n", payload.len()).into_bytes()
}

#[test]
fn the_fleet_cannot_be_changed_over_the_wire_without_the_opt_in() {
    let s = Server::ferrocache(&[]);
    let mut c = s.connect();
    c.roundtrip(
        &config_set(HIJACK),
        b"CLIENT_ERROR cluster configuration is read-only\r\n",
    );
    c.roundtrip(
        &config_set("2\nnode|127.0.0.1|11211"),
        b"CLIENT_ERROR cluster configuration is read-only\r\n",
    );
    c.roundtrip(
        b"config delete cluster\r\n",
        b"CLIENT_ERROR cluster configuration is read-only\r\n",
    );
    c.roundtrip(b"config get cluster\r\n", b"END\r\n");
    // Binary CONFIG_SET (0x64): "Not stored.".
    let mut b = s.connect();
    b.send(&common::binary_request(
        0x64,
        b"cluster",
        &[],
        HIJACK.as_bytes(),
        9,
    ));
    let r = b.read_exact(24 + 11);
    assert_eq!(u16::from_be_bytes([r[6], r[7]]), 5, "{r:?}");
    assert_eq!(&r[24..], b"Not stored.");
    assert_eq!(stat_u64(&mut c, "cluster_config_version"), 0);

    // The CLI's change is refused by the node, and says so (exit 2).
    let cli = env!("CARGO_BIN_EXE_ferrocache-cli");
    let run = run_bounded(
        Command::new(cli).args([
            "--servers",
            &format!("127.0.0.1:{}", s.port),
            "cluster",
            "set",
            &format!("127.0.0.1:{}", s.port),
        ]),
        Duration::from_secs(20),
    );
    assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{}", run.stdout);
    assert!(run.stdout.contains("read-only"), "{}", run.stdout);

    // The opt-in and the old flag together contradict each other: refused at start.
    let run = run_bounded(
        Command::new(ferrocache_bin()).args([
            "-p",
            "0",
            "-U",
            "0",
            "--cluster-config-writable",
            "--cluster-config-readonly",
        ]),
        Duration::from_secs(10),
    );
    assert_eq!(
        run.status.and_then(|s| s.code()),
        Some(64),
        "{}",
        run.stderr
    );
}

#[test]
fn versions_that_no_client_could_follow_are_refused() {
    let s = Server::ferrocache(&["--cluster-config-writable"]);
    let mut c = s.connect();
    let too_high = b"CLIENT_ERROR cluster configuration version too high\r\n";
    c.roundtrip(&config_set(HIJACK), too_high);
    // 2^53 - 1: the last version a JavaScript client compares exactly; nothing
    // could follow it.
    c.roundtrip(&config_set("9007199254740991\nn|127.0.0.1|1"), too_high);
    c.roundtrip(b"config get cluster\r\n", b"END\r\n");
    // Versions stay followable: each change is newer than the last.
    c.roundtrip(&config_set("42\nn|127.0.0.1|11211"), b"STORED\r\n");
    c.roundtrip(&config_set("1\nn|127.0.0.1|11212"), b"STORED\r\n");
    assert_eq!(stat_u64(&mut c, "cluster_config_version"), 43);
    // A file that names such a version stops the start (exit 64).
    let dir = Scratch::new("fleet-version");
    for v in ["18446744073709551615", "9007199254740991"] {
        let file = dir.file("nodes", &format!("{v}\n127.0.0.1:11211\n"));
        let run = run_bounded(
            Command::new(ferrocache_bin()).args(["-p", "0", "-U", "0", "--cluster-config", &file]),
            Duration::from_secs(10),
        );
        let code = run.status.and_then(|s| s.code());
        assert_eq!(code, Some(64), "{v}: {}", run.stderr);
        assert!(run.stderr.contains("version"), "{}", run.stderr);
    }
}

/// A discovery client meets a node (not ferrocache: one of the test's, on loopback)
/// that serves a version no client could follow: it refuses the list instead of
/// pinning itself to it.
#[test]
fn a_discovery_client_refuses_a_version_it_could_never_follow() {
    use ferrocache::client::discovery::ConfigClient;
    use ferrocache::client::ring::NodeSpec;
    use ferrocache::client::ConnOptions;
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fake = std::thread::spawn(move || {
        // One connection: answers `config get cluster` with the hijack.
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let payload = format!("{HIJACK}\n");
        let reply = format!("CONFIG cluster 0 {}\r\n{payload}\r\nEND\r\n", payload.len());
        let _ = s.write_all(reply.as_bytes());
        got
    });
    let cc = ConfigClient::new(&ConnOptions::default()).expect("client");
    let spec = NodeSpec::parse(&format!("127.0.0.1:{port}")).expect("spec");
    let r = cc.get(&spec);
    assert_eq!(fake.join().expect("fake"), b"config get cluster\r\n");
    let e = r.expect_err("a version of 2^64 - 1 taken").to_string();
    assert!(e.contains("version 18446744073709551615"), "{e}");
}

// ------------------------------------------------------------------ point 4: snapshots

fn header(cas_counter: u64) -> Vec<u8> {
    Header {
        saved_at: 1,
        meta: SnapMeta {
            cas_counter,
            flush_at: 0,
            flush_cas: 0,
            cas_enabled: true,
        },
        shards: 4,
        version: "crafted".into(),
    }
    .encode()
    .to_vec()
}

/// A sealed block: `kind`, `records`, `payload`.
fn block(kind: u8, records: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_HDR];
    b[0] = kind;
    b[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    b[8..12].copy_from_slice(&records.to_le_bytes());
    let crc = crc32(&[&b[..12], payload]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

/// The end block: records, items blocks, payload bytes, item bytes in memory.
fn end_block(records: u64, blocks: u64, payload: u64, mem: u64) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [records, blocks, payload, mem] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    block(2, 0, &p)
}

/// One item record (key, value, CAS), never expiring.
fn record(key: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let mut r = vec![0u8; RECORD_HDR];
    r[1] = key.len() as u8;
    r[2..6].copy_from_slice(&(value.len() as u32).to_le_bytes());
    r[18..26].copy_from_slice(&1u64.to_le_bytes()); // last access
    r[26..34].copy_from_slice(&cas.to_le_bytes());
    r.extend_from_slice(key);
    r.extend_from_slice(value);
    r
}

/// A whole file with one items block of `records`.
fn file_with(cas_counter: u64, records: &[Vec<u8>]) -> Vec<u8> {
    let payload: Vec<u8> = records.concat();
    let mut f = header(cas_counter);
    f.extend(block(1, records.len() as u32, &payload));
    f.extend(end_block(
        records.len() as u64,
        1,
        payload.len() as u64,
        payload.len() as u64,
    ));
    f
}

fn gets_cas(c: &mut Client, key: &str) -> Option<u64> {
    c.send(format!("gets {key}\r\n").as_bytes());
    let r = c.read_until(b"END\r\n");
    let line = String::from_utf8_lossy(&r).lines().next()?.to_string();
    line.strip_prefix("VALUE ")?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[test]
fn a_crafted_record_count_neither_aborts_the_start_nor_comes_back() {
    let dir = Scratch::new("snap-count");
    dir.open_to_all();
    let file = dir.path("cache");
    // A real header and an end block claiming 2^40 records, CRC valid.
    let mut f = header(0);
    f.extend(end_block(1 << 40, 0, 0, 0));
    std::fs::write(&file, &f).expect("write");
    let s = Server::ferrocache(&["-e", &file]);
    let mut c = s.connect();
    assert_eq!(stat_u64(&mut c, "restore_errors"), 1);
    assert_eq!(stat_u64(&mut c, "restore_items_loaded"), 0);
    c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    // Moved aside: the next start does not meet it again.
    assert!(!Path::new(&file).exists());
    assert_eq!(
        std::fs::read(format!("{file}.bad")).expect(".bad"),
        f,
        "the bad file kept for a look"
    );
}

#[test]
fn crafted_cas_values_are_refused_not_cut_or_wrapped() {
    let dir = Scratch::new("snap-cas");
    dir.open_to_all();
    // A counter of 2^64 - 1 would wrap the next unique to 1, below the restored 5.
    let wraps = dir.path("wraps");
    std::fs::write(&wraps, file_with(u64::MAX, &[record(b"a", b"A", 5)])).expect("write");
    let s = Server::ferrocache(&["--restore", &wraps]);
    let mut c = s.connect();
    assert_eq!(stat_u64(&mut c, "restore_errors"), 1);
    assert_eq!(
        gets_cas(&mut c, "a"),
        None,
        "a refused header loads nothing"
    );
    c.roundtrip(b"set b 0 0 1\r\nB\r\n", b"STORED\r\n");
    assert_eq!(gets_cas(&mut c, "b"), Some(1));
    drop(s);
    // A unique above 2^48 - 1 would be cut to its low 48 bits (7): refused.
    let cut = dir.path("cut");
    let records = [record(b"x", b"X", 3), record(b"y", b"Y", (1 << 48) + 7)];
    std::fs::write(&cut, file_with(10, &records)).expect("write");
    let s = Server::ferrocache(&["--restore", &cut]);
    let mut c = s.connect();
    assert_eq!(stat_u64(&mut c, "restore_errors"), 1);
    assert_eq!(gets_cas(&mut c, "x"), Some(3), "records before it load");
    assert_eq!(gets_cas(&mut c, "y"), None);
    // The counter goes on above what was restored.
    c.roundtrip(b"set z 0 0 1\r\nZ\r\n", b"STORED\r\n");
    assert!(gets_cas(&mut c, "z").expect("z") > 10);
}

#[test]
fn a_fifo_as_the_snapshot_file_does_not_hang_the_start() {
    let dir = Scratch::new("snap-fifo");
    dir.open_to_all();
    for flag in ["--restore", "-e"] {
        let fifo = dir.path(&format!("fifo{flag}"));
        let ok = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mkfifo");
        let s = Server::ferrocache(&[flag, &fifo]);
        let mut c = s.connect();
        assert_eq!(stat_u64(&mut c, "restore_errors"), 1, "{flag}");
        c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
        let moved = Path::new(&format!("{fifo}.bad")).exists();
        assert_eq!(
            moved,
            flag == "-e",
            "{flag}: moved aside only when consumed"
        );
    }
}

fn wait_snapshots(c: &mut Client, done: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while stat_u64(c, "snapshots_completed") + stat_u64(c, "snapshots_failed") < done
        || stat_u64(c, "snapshot_in_progress") == 1
    {
        assert!(Instant::now() < deadline, "snapshot did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn temporary_files_are_created_new_and_planted_symlinks_are_not_followed() {
    let dir = Scratch::new("snap-tmp");
    dir.open_to_all();
    let victim = dir.file("victim", "precious\n");
    common::set_mode(Path::new(&victim), 0o666);
    let snaps = dir.path("snaps");
    std::fs::create_dir(&snaps).expect("mkdir");
    common::set_mode(Path::new(&snaps), 0o777);
    // The online snapshot's temporary file.
    std::os::unix::fs::symlink(&victim, format!("{snaps}/x.tmp")).expect("symlink");
    let s = Server::ferrocache(&["--snapshot-dir", &snaps]);
    let mut c = s.connect();
    c.roundtrip(b"set k 0 0 5\r\nhello\r\n", b"STORED\r\n");
    assert_eq!(c.line("snapshot x\r\n"), "OK x\r\n");
    wait_snapshots(&mut c, 1);
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    let x = std::fs::symlink_metadata(format!("{snaps}/x")).expect("x");
    assert!(x.file_type().is_file(), "the snapshot is a file of its own");
    drop(s);
    // The -e file's temporary file, written at a graceful stop.
    let file = dir.path("cache");
    std::os::unix::fs::symlink(&victim, format!("{file}.tmp")).expect("symlink");
    let mut s = Server::ferrocache(&["-e", &file]);
    s.connect()
        .roundtrip(b"set k 0 0 5\r\nhello\r\n", b"STORED\r\n");
    assert!(s.signal_and_wait("USR1").is_some());
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
    assert!(std::fs::symlink_metadata(&file)
        .expect("saved")
        .file_type()
        .is_file());
}

#[test]
fn snapshot_names_are_plain_and_snapshots_are_capped() {
    let dir = Scratch::new("snap-cap");
    dir.open_to_all();
    let s = Server::ferrocache(&["--snapshot-dir", &dir.path("")]);
    let mut c = s.connect();
    c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    for bad in ["a\tb", "x\x1b[31m", "new\x7fline", "x.tmp", "caf\u{e9}"] {
        assert_eq!(
            c.line(&format!("snapshot {bad}\r\n")),
            "CLIENT_ERROR bad snapshot name\r\n",
            "{bad:?}"
        );
    }
    // The default cap: 8 snapshot files in the directory.
    for i in 0..8 {
        assert_eq!(
            c.line(&format!("snapshot s{i}\r\n")),
            format!("OK s{i}\r\n")
        );
        wait_snapshots(&mut c, i + 1);
    }
    assert_eq!(
        c.line("snapshot s8\r\n"),
        "SERVER_ERROR snapshot limit reached\r\n"
    );
    // Replacing one adds nothing: allowed.
    assert_eq!(c.line("snapshot s3\r\n"), "OK s3\r\n");
    wait_snapshots(&mut c, 9);
    let _ = Command::new("kill")
        .args(["-USR2", &s.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let files = std::fs::read_dir(&dir.0).expect("dir").count();
    assert_eq!(files, 8, "SIGUSR2 at the cap wrote nothing");
    assert_eq!(stat_u64(&mut c, "snapshots_completed"), 9);
    drop(s);
    // --snapshot-limit sets the cap.
    let d2 = Scratch::new("snap-cap2");
    d2.open_to_all();
    let s = Server::ferrocache(&["--snapshot-dir", &d2.path(""), "--snapshot-limit", "1"]);
    let mut c = s.connect();
    assert_eq!(c.line("snapshot one\r\n"), "OK one\r\n");
    wait_snapshots(&mut c, 1);
    assert_eq!(
        c.line("snapshot two\r\n"),
        "SERVER_ERROR snapshot limit reached\r\n"
    );
}

#[test]
fn a_file_size_limit_fails_the_snapshot_instead_of_killing_the_server() {
    let dir = Scratch::new("snap-fsize");
    dir.open_to_all();
    let port = free_port();
    let snaps = dir.path("");
    // bash's `ulimit -f` counts KiB: 256 KiB, less than the snapshot below.
    let script = format!(
        "ulimit -f 256 && exec {} -l 127.0.0.1 -p {port} -U 0 {} --snapshot-dir {snaps}",
        ferrocache_bin(),
        if common::is_root() { "-u nobody" } else { "" }
    );
    let s = Server::with_args("/bin/bash", &["-c", &script], port);
    let mut c = s.connect();
    let value = vec![b'v'; 1000];
    for i in 0..2000 {
        c.send(format!("set key{i} 0 0 {} noreply\r\n", value.len()).as_bytes());
        c.send(&value);
        c.send(b"\r\n");
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(c.line("snapshot big\r\n"), "OK big\r\n");
    wait_snapshots(&mut c, 1);
    assert_eq!(stat_u64(&mut c, "snapshots_failed"), 1);
    assert_eq!(stat_u64(&mut c, "snapshots_completed"), 0);
    // The server lives and serves.
    c.roundtrip(b"get key7\r\n", &{
        let mut r = format!("VALUE key7 0 {}\r\n", value.len()).into_bytes();
        r.extend_from_slice(&value);
        r.extend_from_slice(b"\r\nEND\r\n");
        r
    });
    assert!(!Path::new(&dir.path("big")).exists());
    assert!(!Path::new(&dir.path("big.tmp")).exists());
}

// ------------------------------------------------------------------ point 5: certificates

/// PEM armour around bytes that are not a certificate.
const JUNK_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
VGhpcyBpcyBub3QgYSBjZXJ0aWZpY2F0ZSBhdCBhbGwsIGp1c3QganVuay4=\n\
-----END CERTIFICATE-----\n";

fn tls_round(port: u16, pki: &Pki) -> Result<Vec<u8>, String> {
    let mut s = connect_tls(port, client_config(pki, false, &[]))?;
    s.write_all(b"version\r\n").map_err(|e| e.to_string())?;
    Ok(common::read_quiet_stream(
        &mut s,
        Duration::from_secs(5),
        Duration::from_millis(100),
        Duration::from_secs(5),
    )
    .0)
}

fn tls_line(s: &mut TlsStream, req: &[u8]) -> String {
    s.write_all(req).expect("write");
    let (got, _) = common::read_quiet_stream(
        s,
        Duration::from_secs(5),
        Duration::from_millis(100),
        Duration::from_secs(5),
    );
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn certificate_files_that_do_not_parse_are_refused_and_the_old_ones_kept() {
    let pki = Pki::new("cert-junk");
    let junk = pki.dir.file("junk.pem", JUNK_PEM);
    let expected = format!(
        "Error loading the certificate chain: {junk} : error:0680009B:asn1 encoding routines::too long"
    );
    // At start: refused, exit 64, memcached's line (compared when it is installed).
    for bin in [ferrocache_bin(), common::MEMCACHED.to_string()] {
        if bin == common::MEMCACHED && !common::require_tool(&bin) {
            continue;
        }
        let mut cmd = Command::new(&bin);
        cmd.args([
            "-l",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-U",
            "0",
            "-Z",
            "-o",
            &format!("ssl_chain_cert={junk},ssl_key={}", pki.server_key),
        ]);
        if common::is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let run = run_bounded(&mut cmd, Duration::from_secs(10));
        assert_eq!(run.status.and_then(|s| s.code()), Some(64), "{bin}");
        assert_eq!(run.stderr.lines().last(), Some(expected.as_str()), "{bin}");
    }
    // Written over a good file: refresh_certs says why and the old one stays, on
    // both servers; SIGHUP (ours) keeps it too.
    for memcached in [false, true] {
        let chain = pki.dir.file(
            &format!("live{memcached}.pem"),
            &std::fs::read_to_string(&pki.server_cert).expect("cert"),
        );
        let args = [
            "-Z".to_string(),
            "-o".into(),
            format!("ssl_chain_cert={chain},ssl_key={}", pki.server_key),
        ];
        let Some(mut s) = (if memcached {
            Server::memcached(&strs(&args))
        } else {
            Some(Server::ferrocache(&strs(&args)))
        }) else {
            continue;
        };
        let mut open = connect_tls(s.port, client_config(&pki, false, &[])).expect("tls");
        std::fs::write(&chain, JUNK_PEM).expect("write");
        assert_eq!(
            tls_line(&mut open, b"refresh_certs\r\n"),
            format!(
                "Error loading the certificate chain: {chain} : error:0680009B:asn1 encoding routines::too long\r\n"
            ),
            "memcached: {memcached}"
        );
        assert_eq!(tls_round(s.port, &pki), Ok(b"VERSION 1.6.18\r\n".to_vec()));
        if !memcached {
            let _ = Command::new("kill")
                .args(["-HUP", &s.pid().to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(tls_round(s.port, &pki), Ok(b"VERSION 1.6.18\r\n".to_vec()));
        }
        assert_eq!(tls_line(&mut open, b"version\r\n"), "VERSION 1.6.18\r\n");
        let _ = s.signal_and_wait("TERM");
    }
}

// ------------------------------------------------------------------ point 6: TLS latency

/// Median time from the end of a TLS 1.3 handshake to the reply of the first request,
/// by a client with Nagle's algorithm on (as pymemcache's default), in microseconds.
fn first_request_median(port: u16, pki: &Pki, n: usize) -> u64 {
    let cfg = client_config(pki, false, &[&rustls::version::TLS13]);
    let mut times = Vec::new();
    for i in 0..n {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("handshake");
        }
        let t = Instant::now();
        s.write_all(format!("set k{i} 0 0 1\r\nx\r\n").as_bytes())
            .expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => panic!("no reply; got {got:?}"),
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
        times.push(t.elapsed().as_micros() as u64);
        assert_eq!(got, b"STORED\r\n");
    }
    times.sort_unstable();
    times[n / 2]
}

#[test]
fn the_first_request_after_a_tls13_handshake_is_answered_at_once() {
    let pki = Pki::new("tls-first");
    let args = tls_args(&pki, "");
    let ours = Server::ferrocache(&strs(&args));
    let ours_us = first_request_median(ours.port, &pki, 15);
    let theirs_us = Server::memcached(&strs(&args)).map(|m| first_request_median(m.port, &pki, 15));
    eprintln!(
        "first request after a TLS 1.3 handshake, median: ferrocache {ours_us} us, \
         memcached {theirs_us:?} us"
    );
    // The delayed ACK of the client's Finished (40 ms) held it before; the bound
    // leaves room for a busy machine, not for that.
    let bound = theirs_us.map_or(10_000, |m| (2 * m).max(10_000));
    assert!(ours_us <= bound, "{ours_us} us (bound {bound} us)");
}

/// A TLS ClientHello for a new connection (what a handshake flood sends).
fn client_hello(cfg: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("hello");
    }
    out
}

/// The latencies of one get on an established TLS connection sent right after
/// `burst` new connections sent their ClientHello at once, in microseconds (one per
/// round, sorted); None when a reply did not come within 5 s.
fn get_behind_a_burst(port: u16, pki: &Pki, burst: usize, rounds: usize) -> Option<Vec<u64>> {
    let cfg = client_config(pki, false, &[]);
    let mut est = connect_tls(port, cfg.clone()).expect("established");
    assert_eq!(tls_line(&mut est, b"set k 0 0 1\r\nv\r\n"), "STORED\r\n");
    let mut times = Vec::new();
    for _ in 0..rounds {
        let mut socks: Vec<TcpStream> = (0..burst)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
            .collect();
        let hellos: Vec<Vec<u8>> = (0..burst).map(|_| client_hello(&cfg)).collect();
        // Every connection accepted and registered before the burst.
        std::thread::sleep(Duration::from_millis(300));
        for (s, h) in socks.iter_mut().zip(&hellos) {
            let _ = s.write_all(h);
        }
        let t = Instant::now();
        est.write_all(b"get k\r\n").expect("get");
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.ends_with(b"END\r\n") {
            match est.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
        times.push(t.elapsed().as_micros() as u64);
        assert_eq!(got, b"VALUE k 0 1\r\nv\r\nEND\r\n");
        drop(socks);
        std::thread::sleep(Duration::from_millis(300));
    }
    times.sort_unstable();
    Some(times)
}

#[test]
fn a_burst_of_handshakes_does_not_hold_an_established_client() {
    let pki = Pki::new("tls-burst");
    let mut args = tls_args(&pki, "");
    args.extend(["-t".to_string(), "1".to_string()]);
    let ours = Server::ferrocache(&strs(&args));
    let ours_us = get_behind_a_burst(ours.port, &pki, 400, 7).expect("ferrocache replied");
    // memcached -t 1 sometimes leaves the get unanswered for seconds after such a
    // burst (None): no comparison then.
    let theirs_us =
        Server::memcached(&strs(&args)).and_then(|m| get_behind_a_burst(m.port, &pki, 400, 7));
    eprintln!(
        "a get behind 400 ClientHellos (-t 1), us per round: ferrocache {ours_us:?}, \
         memcached {theirs_us:?}"
    );
    // Handshakes are driven after established connections, 1 ms of them a turn
    // (before: after every handshake of the burst, 400 x 0.2 ms). The floor leaves
    // room for a busy machine.
    let median = |v: &[u64]| v[v.len() / 2];
    let bound = theirs_us.map_or(20_000, |m| (2 * median(&m)).max(20_000));
    assert!(
        median(&ours_us) <= bound,
        "{ours_us:?} us (bound {bound} us)"
    );
}

// ------------------------------------------------------------------ point 7: lockout

/// One binary SASL PLAIN attempt on a new connection: Some(status), None when the
/// connection closed or no answer came within `wait`.
fn plain_status(c: &mut TcpStream, user: &str, pass: &str) -> Option<u16> {
    let req = common::binary_request(
        0x21,
        b"PLAIN",
        &[],
        format!("\0{user}\0{pass}").as_bytes(),
        1,
    );
    c.write_all(&req).ok()?;
    let mut h = [0u8; 24];
    c.read_exact(&mut h).ok()?;
    let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    let mut body = vec![0; len];
    c.read_exact(&mut body).ok()?;
    Some(u16::from_be_bytes([h[6], h[7]]))
}

/// Correct PLAIN logins (of 20, each on a new connection, answered within 5 s) while
/// four threads send wrong passwords for the same user as fast as they can.
fn logins_during_a_flood(port: u16, user: &'static str, pass: &str) -> usize {
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            let attempts = attempts.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    c.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    while !stop.load(Ordering::Relaxed)
                        && plain_status(&mut c, user, &format!("wrong{i}")).is_some()
                    {
                        attempts.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The flood has spent any burst of the budget by then.
    std::thread::sleep(Duration::from_secs(1));
    let mut ok = 0;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let st = plain_status(&mut c, user, pass);
        statuses.push(st);
        if st == Some(0) {
            ok += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "port {port}: {} wrong attempts answered; correct logins answered {statuses:?}",
        attempts.load(Ordering::Relaxed)
    );
    for f in flooders {
        let _ = f.join();
    }
    ok
}

#[test]
fn wrong_password_floods_throttle_connections_not_the_account() {
    let dir = Scratch::new("lockout");
    let salted =
        ferrocache::auth::make_salted(ferrocache::auth::ScramHash::Sha256, "builder", 4096)
            .expect("salted entry");
    let pwdb = dir.file("pwdb", &format!("bob:{salted}\n"));
    let s = Server::ferrocache(&["-S", "--sasl-pwdb", &pwdb, "-t", "2"]);
    let ours = logins_during_a_flood(s.port, "bob", "builder");
    drop(s);
    let theirs = if common::memcached_sasl_setup(&dir, "bob", "builder") {
        Server::memcached(&["-S"]).map(|m| logins_during_a_flood(m.port, "bob", "builder"))
    } else {
        None
    };
    eprintln!("correct logins during a wrong-password flood: ferrocache {ours}/20, memcached {theirs:?}/20");
    assert_eq!(ours, 20);
}
