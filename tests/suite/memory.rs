//! The memory limit holds under a 10x overfill: `-m 64`, 640 MiB of 1-16 KiB values.
//! Every set is STORED, evictions are counted, and the server's RSS stays within
//! 1.1 x 64 MiB + 32 MiB while filling and after.
use crate::common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LIMIT_MB: u64 = 64;
const FILL_BYTES: u64 = 10 * LIMIT_MB * 1024 * 1024;
/// Wall-clock bound of the fill.
const FILL_BUDGET: Duration = Duration::from_secs(40);

/// The RSS bound from the design targets.
fn rss_bound() -> u64 {
    (LIMIT_MB * 1024 * 1024) * 11 / 10 + 32 * 1024 * 1024
}

fn value_len(i: u64) -> usize {
    1024 + (i.wrapping_mul(7919) % (15 * 1024 + 1)) as usize
}

/// Value of item `i`: its index, then a slice of a fixed pattern chosen by `i`.
fn value(pattern: &[u8], i: u64) -> Vec<u8> {
    let len = value_len(i);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&i.to_le_bytes());
    let off = (i % 251) as usize;
    v.extend_from_slice(&pattern[off..off + len - 8]);
    v
}

#[test]
fn memory_limit_holds_under_tenfold_overfill() {
    let server = Server::ferrocache(&["-m", "64", "-t", "2"]);
    let enforce = !targeting_reference();
    let pattern: Vec<u8> = (0..20 * 1024u32).map(|j| (j * 31 % 256) as u8).collect();
    let rss_start = server.rss_bytes();

    let stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    stream.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let mut writer = stream.try_clone().expect("clone");

    // Count items so that the values add up to FILL_BYTES.
    let mut items = 0u64;
    let mut total = 0u64;
    while total < FILL_BYTES {
        total += value_len(items) as u64;
        items += 1;
    }

    let start = Instant::now();
    let pat = pattern.clone();
    let sender = std::thread::spawn(move || -> u64 {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut sent = 0u64;
        for i in 0..items {
            if start.elapsed() > FILL_BUDGET {
                break;
            }
            let v = value(&pat, i);
            buf.extend_from_slice(format!("set mem{i:08} 0 0 {}\r\n", v.len()).as_bytes());
            buf.extend_from_slice(&v);
            buf.extend_from_slice(b"\r\n");
            sent += 1;
            if buf.len() >= 256 * 1024 {
                if writer.write_all(&buf).is_err() {
                    return sent;
                }
                buf.clear();
            }
        }
        let _ = writer.write_all(&buf);
        sent
    });

    let mut reader = BufReader::new(stream);
    let mut stored = 0u64;
    let mut other: Vec<String> = Vec::new();
    let mut max_rss = 0u64;
    let mut line = String::new();
    while stored + (other.len() as u64) < items {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line == "STORED\r\n" {
            stored += 1;
        } else if other.len() < 20 {
            other.push(line.trim_end().to_string());
        } else {
            other.push(String::new());
        }
        if (stored + other.len() as u64) % 500 == 0 {
            max_rss = max_rss.max(server.rss_bytes());
        }
        if start.elapsed() > FILL_BUDGET + Duration::from_secs(5) {
            break;
        }
    }
    let sent = sender.join().expect("sender thread");
    let fill_time = start.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let rss_end = server.rss_bytes();
    max_rss = max_rss.max(rss_end);

    let mut c = server.connect();
    let evictions: u64 = c
        .stat("evictions")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let curr_items = c.stat("curr_items").unwrap_or_default();

    // The most recent keys are readable and intact.
    let mut recent_hits = 0;
    let check_from = sent.saturating_sub(100);
    let mut r = BufReader::new(c.stream.try_clone().expect("clone"));
    for i in check_from..sent {
        c.send(format!("get mem{i:08}\r\n").as_bytes());
        let mut head = String::new();
        r.read_line(&mut head).expect("reply");
        if head == "END\r\n" {
            continue;
        }
        let n: usize = head
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad reply {head:?}"));
        let mut data = vec![0; n + 7];
        r.read_exact(&mut data).expect("value");
        assert_eq!(&data[n..], b"\r\nEND\r\n");
        assert_eq!(&data[..n], &value(&pattern, i)[..], "content of mem{i:08}");
        recent_hits += 1;
    }

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "memory: server={} items_sent={sent} stored={stored} other_replies={} evictions={evictions} \
         curr_items={curr_items} rss_start={:.1}MiB rss_max={:.1}MiB rss_end={:.1}MiB bound={:.1}MiB \
         recent_hits={recent_hits}/{} fill={:.1}s",
        ferrocache_bin(),
        other.len(),
        mib(rss_start),
        mib(max_rss),
        mib(rss_end),
        mib(rss_bound()),
        sent - check_from,
        fill_time.as_secs_f64()
    );
    assert_eq!(sent, items, "fill did not finish within {FILL_BUDGET:?}");
    assert!(
        other.is_empty(),
        "non-STORED replies ({}), first: {:?}",
        other.len(),
        &other[..other.len().min(5)]
    );
    assert_eq!(stored, items);
    assert!(evictions > 0, "no evictions counted");
    assert!(
        recent_hits >= 90,
        "only {recent_hits} of the 100 most recent keys readable"
    );
    if enforce {
        assert!(
            max_rss <= rss_bound(),
            "RSS {:.1} MiB exceeds {:.1} MiB",
            mib(max_rss),
            mib(rss_bound())
        );
    }
}
