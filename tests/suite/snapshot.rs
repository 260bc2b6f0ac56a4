//! Warm restart (`-e`, SIGUSR1), online snapshots (`snapshot`, SIGUSR2) and
//! `--restore`: what survives, what is dropped, and what a damaged file gives.

use crate::common;

use crate::common::{Client, Scratch, Server};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn stat_u64(c: &mut Client, name: &str) -> u64 {
    c.stat(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("stat {name}"))
}

/// `gets key` → (flags, cas, value), or None on a miss.
fn gets(c: &mut Client, key: &str) -> Option<(u32, u64, Vec<u8>)> {
    c.send(format!("gets {key}\r\n").as_bytes());
    let reply = c.read_until(b"END\r\n");
    if reply == b"END\r\n" {
        return None;
    }
    let eol = reply.windows(2).position(|w| w == b"\r\n").expect("line");
    let head = String::from_utf8_lossy(&reply[..eol]).into_owned();
    let w: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(w.first(), Some(&"VALUE"), "{head:?}");
    let flags = w[2].parse().expect("flags");
    let len: usize = w[3].parse().expect("len");
    let cas = w[4].parse().expect("cas");
    let data = &reply[eol + 2..];
    assert_eq!(data.len(), len + 2 + 5, "{head:?}");
    Some((flags, cas, data[..len].to_vec()))
}

fn set(c: &mut Client, key: &str, flags: u32, ttl: i64, value: &[u8]) {
    c.send(format!("set {key} {flags} {ttl} {}\r\n", value.len()).as_bytes());
    c.send(value);
    c.roundtrip(b"\r\n", b"STORED\r\n");
}

/// Waits (bounded) until no snapshot is in progress.
fn wait_snapshot(c: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while stat_u64(c, "snapshot_in_progress") == 1 {
        assert!(Instant::now() < deadline, "snapshot did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn restart_keeps_every_item_and_drops_those_that_expired_during_the_downtime() {
    let dir = Scratch::new("snap-restart");
    dir.open_to_all();
    let file = dir.path("cache");
    let mut a = Server::ferrocache(&["-e", &file, "-o", "debugtime"]);
    let mut c = a.connect();
    let mut before = HashMap::new();
    for i in 0..300u32 {
        // A third without expiry, a third expiring in 100 s, a third in 1000 s.
        let ttl = [0, 100, 1000][(i % 3) as usize];
        let key = format!("key:{i:08}");
        set(&mut c, &key, i * 7, ttl, format!("value {i}").as_bytes());
        before.insert(key.clone(), (ttl, gets(&mut c, &key).expect("stored")));
    }
    // Meta marks: a stale item stays stale.
    set(&mut c, "stale", 0, 0, b"old");
    c.roundtrip(b"md stale I\r\n", b"HD\r\n");
    let stale_cas = gets(&mut c, "stale").expect("stale").1;
    let counter_before = gets(&mut c, "key:00000299").expect("last").1;
    drop(c);
    assert!(a.signal_and_wait("USR1").is_some_and(|s| s.success()));
    assert!(std::path::Path::new(&file).exists(), "saved");

    // 500 s of downtime: the 100 s items expired, the 1000 s ones did not.
    let b = Server::ferrocache(&["-e", &file, "-o", "debugtime=500"]);
    let mut c = b.connect();
    for (key, (ttl, (flags, cas, value))) in &before {
        let got = gets(&mut c, key);
        if *ttl == 100 {
            assert_eq!(got, None, "{key} expired during the downtime");
        } else {
            assert_eq!(got, Some((*flags, *cas, value.clone())), "{key}");
        }
    }
    assert_eq!(stat_u64(&mut c, "restore_items_expired"), 100);
    assert_eq!(stat_u64(&mut c, "restore_items_loaded"), 201);
    assert_eq!(stat_u64(&mut c, "restore_errors"), 0);
    let mg = c.line("mg stale v c\r\n");
    assert!(
        mg.contains(" X") && mg.contains(&format!("c{stale_cas}")),
        "{mg:?}"
    );
    // The CAS counter goes on; the -e file was consumed (a crash now starts empty).
    set(&mut c, "fresh", 0, 0, b"1");
    assert!(gets(&mut c, "fresh").expect("fresh").1 > counter_before.max(stale_cas));
    assert!(!std::path::Path::new(&file).exists(), "consumed at start");
}

#[test]
fn a_pending_flush_all_is_kept_at_its_wall_time() {
    let dir = Scratch::new("snap-flush");
    dir.open_to_all();
    let file = dir.path("cache");
    let mut a = Server::ferrocache(&["-e", &file]);
    let mut c = a.connect();
    set(&mut c, "x", 0, 0, b"1");
    c.roundtrip(b"flush_all 300\r\n", b"OK\r\n");
    drop(c);
    assert!(a.signal_and_wait("USR1").is_some());
    let b = Server::ferrocache(&["-e", &file, "-o", "debugtime=500"]);
    let mut c = b.connect();
    // Valid when saved, invalid once the flush point passed during the downtime.
    assert_eq!(stat_u64(&mut c, "restore_items_loaded"), 0);
    assert_eq!(stat_u64(&mut c, "restore_items_expired"), 1);
    assert_eq!(gets(&mut c, "x"), None);
    drop(c);
    drop(b);
    // A restart before the point: the item is there, and goes when the point comes.
    // (Stopped with `shutdown graceful`, which saves as SIGUSR1 does.)
    let mut a = Server::ferrocache(&["-e", &file, "-A"]);
    let mut c = a.connect();
    set(&mut c, "y", 0, 0, b"2");
    c.roundtrip(b"flush_all 300\r\n", b"OK\r\n");
    c.send(b"shutdown graceful\r\n");
    assert!(a.wait_exit(Duration::from_secs(10)).is_some());
    let b = Server::ferrocache(&["-e", &file, "-o", "debugtime=100"]);
    let mut c = b.connect();
    assert_eq!(gets(&mut c, "y").map(|g| g.2), Some(b"2".to_vec()));
    c.roundtrip(b"debugtime 250\r\n", b"OK\r\n");
    assert_eq!(gets(&mut c, "y"), None);
}

#[test]
fn a_smaller_memory_limit_keeps_the_hottest_items() {
    let dir = Scratch::new("snap-hot");
    dir.open_to_all();
    let file = dir.path("cache");
    // Also across a change of -t (so of the shard count) and of -I.
    let mut a = Server::ferrocache(&["-e", &file, "-m", "64", "-t", "1"]);
    let mut c = a.connect();
    let value = vec![b'v'; 1000];
    for i in 0..40_000u32 {
        c.send(format!("set key:{i:08} 0 0 1000 noreply\r\n").as_bytes());
        c.send(&value);
        c.send(b"\r\n");
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    for _ in 0..3 {
        for i in (0..2_000u32).step_by(100) {
            let keys: Vec<String> = (i..i + 100).map(|k| format!("key:{k:08}")).collect();
            c.send(format!("get {}\r\n", keys.join(" ")).as_bytes());
            c.read_until(b"END\r\n");
        }
    }
    let items = stat_u64(&mut c, "curr_items");
    drop(c);
    assert!(a.signal_and_wait("USR1").is_some());
    let b = Server::ferrocache(&["-e", &file, "-m", "8", "-t", "4", "-I", "2m"]);
    let mut c = b.connect();
    let loaded = stat_u64(&mut c, "restore_items_loaded");
    let dropped = stat_u64(&mut c, "restore_items_dropped");
    assert!(dropped > 0, "-m 8 cannot hold 40 MB");
    assert_eq!(loaded + dropped, items);
    assert_eq!(stat_u64(&mut c, "curr_items"), loaded);
    for i in 0..2_000u32 {
        assert_eq!(
            gets(&mut c, &format!("key:{i:08}")).map(|g| g.2),
            Some(value.clone()),
            "hot key {i}"
        );
    }
}

/// A server restored from `file` (kept) serves, and every value it serves is one
/// that was stored (`key:N` → `value N` padded).
fn check_restore(file: &str, expect_error: bool, stored: u32) -> u64 {
    let s = Server::ferrocache(&["--restore", file]);
    let mut c = s.connect();
    assert_eq!(
        stat_u64(&mut c, "restore_errors"),
        u64::from(expect_error),
        "{file}"
    );
    let mut served = 0;
    for i in 0..stored {
        if let Some((_, _, v)) = gets(&mut c, &format!("key:{i:08}")) {
            assert_eq!(v, padded(i), "key {i}");
            served += 1;
        }
    }
    assert_eq!(served, stat_u64(&mut c, "restore_items_loaded"));
    set(&mut c, "after", 0, 0, b"ok");
    assert_eq!(gets(&mut c, "after").map(|g| g.2), Some(b"ok".to_vec()));
    served
}

fn padded(i: u32) -> Vec<u8> {
    let mut v = format!("value {i} ").into_bytes();
    v.resize(200, b'.');
    v
}

#[test]
fn damaged_files_are_detected_and_the_server_serves() {
    let dir = Scratch::new("snap-bad");
    dir.open_to_all();
    let file = dir.path("cache");
    let n = 20_000u32;
    let mut a = Server::ferrocache(&["-e", &file]);
    let mut c = a.connect();
    for i in 0..n {
        set(&mut c, &format!("key:{i:08}"), 0, 0, &padded(i));
    }
    drop(c);
    assert!(a.signal_and_wait("USR1").is_some());
    common::set_mode(std::path::Path::new(&file), 0o644);
    let good = std::fs::read(&file).expect("read");
    assert_eq!(check_restore(&file, false, n), u64::from(n));

    // Block boundaries: 96-byte header, then 16-byte block headers with lengths.
    let mut blocks = Vec::new();
    let mut at = 96;
    while at < good.len() {
        let len = u32::from_le_bytes(good[at + 4..at + 8].try_into().expect("4")) as usize;
        blocks.push((at, len));
        at += 16 + len;
    }
    assert!(blocks.len() >= 4, "several blocks");
    let write = |bytes: &[u8]| {
        std::fs::write(&file, bytes).expect("write");
        common::set_mode(std::path::Path::new(&file), 0o644);
    };
    // A flipped byte in each block (header or payload): the blocks before it load.
    let mut prefix = Vec::new();
    for (k, &(start, len)) in blocks.iter().enumerate() {
        let mut bad = good.clone();
        let pos = if k % 2 == 0 {
            start + 5
        } else {
            start + 16 + len / 2
        };
        bad[pos] ^= 0x40;
        write(&bad);
        prefix.push(check_restore(&file, true, n));
    }
    assert_eq!(prefix[0], 0);
    assert!(prefix.windows(2).all(|w| w[0] <= w[1]), "{prefix:?}");
    // Truncated in the middle of a block and at a block boundary (no end block).
    let (mid, _) = blocks[blocks.len() / 2];
    write(&good[..mid + 100]);
    let kept = check_restore(&file, true, n);
    assert!(kept > 0 && kept < u64::from(n));
    write(&good[..mid]);
    assert_eq!(check_restore(&file, true, n), kept);
    // Another format version, another file, an empty file: refused, empty.
    let mut v2 = good.clone();
    v2[8] = 2;
    write(&v2);
    assert_eq!(check_restore(&file, true, n), 0);
    write(b"this is not a snapshot\n");
    assert_eq!(check_restore(&file, true, n), 0);
    write(b"");
    assert_eq!(check_restore(&file, true, n), 0);
    // A directory; a file the server (running as nobody when we are root) cannot read.
    assert_eq!(check_restore(&dir.path(""), true, n), 0);
    if common::is_root() {
        // The save made the file as nobody: a fresh one is root's.
        let _ = std::fs::remove_file(&file);
        write(&good);
        common::set_mode(std::path::Path::new(&file), 0o600);
        assert_eq!(check_restore(&file, true, n), 0);
    }
    // With -e, a damaged file is moved aside to FILE.bad (and the server serves).
    write(&v2);
    let s = Server::ferrocache(&["-e", &file]);
    let mut c = s.connect();
    assert_eq!(stat_u64(&mut c, "restore_errors"), 1);
    assert!(!std::path::Path::new(&file).exists());
    assert!(std::path::Path::new(&format!("{file}.bad")).exists());
}

#[test]
fn kill_9_during_a_snapshot_leaves_the_previous_one_intact() {
    let dir = Scratch::new("snap-kill");
    dir.open_to_all();
    let n = 150_000u32;
    let a = Server::ferrocache(&["--snapshot-dir", &dir.path(""), "-m", "1024"]);
    let mut c = a.connect();
    for i in 0..n {
        c.send(format!("set key:{i:08} 0 0 200 noreply\r\n").as_bytes());
        c.send(&padded(i));
        c.send(b"\r\n");
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(c.line("snapshot base\r\n"), "OK base\r\n");
    wait_snapshot(&mut c);
    assert_eq!(stat_u64(&mut c, "snapshots_completed"), 1);
    let good = std::fs::read(dir.path("base")).expect("snapshot written");
    // Overwrite some values, then snapshot to the same name and kill -9 mid-way.
    for i in 0..n / 2 {
        c.send(format!("set key:{i:08} 0 0 3 noreply\r\nnew\r\n").as_bytes());
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(c.line("snapshot base\r\n"), "OK base\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat_u64(&mut c, "snapshot_bytes_written") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = std::process::Command::new("kill")
        .args(["-9", &a.pid().to_string()])
        .status();
    drop(a);
    let now = std::fs::read(dir.path("base")).expect("still there");
    if now != good {
        // The second snapshot was faster than the kill: it completed (renamed), so no
        // temporary file is left, and it is whole too.
        assert!(!std::path::Path::new(&dir.path("base.tmp")).exists());
        eprintln!("the snapshot completed before kill -9 reached it");
    } else {
        assert_eq!(check_restore(&dir.path("base"), false, n), u64::from(n));
    }
}

#[test]
fn online_snapshot_under_writes_restores_values_the_keys_really_had() {
    let dir = Scratch::new("snap-online");
    dir.open_to_all();
    let keys = 20_000u32;
    let a = Server::ferrocache(&["--snapshot-dir", &dir.path(""), "-m", "512"]);
    let mut c = a.connect();
    let val = |i: u32, g: u32| {
        let mut v = format!("{i}-{g}-").into_bytes();
        v.resize(300, b'x');
        v
    };
    for i in 0..keys {
        c.send(format!("set k{i} 0 0 300 noreply\r\n").as_bytes());
        c.send(&val(i, 0));
        c.send(b"\r\n");
    }
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    // Writers: each owns a range of keys and bumps their generation, one set at a
    // time; `last[i]` is the newest generation acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let stop = stop.clone();
            let port = a.port;
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut last = vec![0u32; keys as usize];
                let mut g = 0;
                while !stop.load(Ordering::Relaxed) && g < 1000 {
                    g += 1;
                    for i in (w..keys).step_by(2).step_by(7) {
                        c.send(format!("set k{i} 0 0 300\r\n").as_bytes());
                        c.send(&val(i, g));
                        c.roundtrip(b"\r\n", b"STORED\r\n");
                        last[i as usize] = g;
                    }
                }
                last
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(c.line("snapshot online\r\n"), "OK online\r\n");
    wait_snapshot(&mut c);
    stop.store(true, Ordering::Relaxed);
    let mut last = vec![0u32; keys as usize];
    for w in writers {
        for (i, g) in w.join().expect("writer").into_iter().enumerate() {
            last[i] = last[i].max(g);
        }
    }
    drop(a);
    let b = Server::ferrocache(&["--restore", &dir.path("online"), "-m", "512"]);
    let mut c = b.connect();
    assert_eq!(stat_u64(&mut c, "restore_errors"), 0);
    for i in 0..keys {
        let (_, _, v) = gets(&mut c, &format!("k{i}")).unwrap_or_else(|| panic!("k{i} kept"));
        let s = String::from_utf8_lossy(&v).into_owned();
        let mut parts = s.splitn(3, '-');
        assert_eq!(parts.next(), Some(i.to_string().as_str()), "{s}");
        let g: u32 = parts
            .next()
            .and_then(|g| g.parse().ok())
            .expect("generation");
        // A value written no later than the end of the snapshot (the writers went on
        // a little after it: at most `last`).
        assert!(g <= last[i as usize], "k{i}: {g} > {}", last[i as usize]);
        assert_eq!(v, val(i, g), "k{i}");
    }
}

#[test]
fn snapshot_command_signal_and_refusals() {
    let dir = Scratch::new("snap-cmd");
    dir.open_to_all();
    let off = Server::ferrocache(&[]);
    let mut c = off.connect();
    assert_eq!(c.line("snapshot x\r\n"), "ERROR: snapshot not enabled\r\n");
    let mut s = Server::ferrocache(&["--snapshot-dir", &dir.path("")]);
    let mut c = s.connect();
    set(&mut c, "a", 1, 0, b"A");
    assert_eq!(
        c.line("snapshot ../x\r\n"),
        "CLIENT_ERROR bad snapshot name\r\n"
    );
    assert_eq!(
        c.line("snapshot .hidden\r\n"),
        "CLIENT_ERROR bad snapshot name\r\n"
    );
    assert_eq!(c.line("snapshot a b\r\n"), "ERROR\r\n");
    let _ = std::process::Command::new("kill")
        .args(["-USR2", &s.pid().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat_u64(&mut c, "snapshots_completed") == 0 {
        assert!(Instant::now() < deadline, "SIGUSR2 snapshot");
        std::thread::sleep(Duration::from_millis(20));
    }
    let made: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        made.len() == 1 && made[0].starts_with("ferrocache-") && made[0].ends_with(".snap"),
        "{made:?}"
    );
    assert!(s.signal_and_wait("TERM").is_some());
    let r = Server::ferrocache(&["--restore", &dir.path(&made[0])]);
    let mut c = r.connect();
    assert_eq!(
        gets(&mut c, "a").map(|g| (g.0, g.2)),
        Some((1, b"A".to_vec()))
    );
    // --restore keeps its file.
    assert!(dir.0.join(&made[0]).exists());
}
