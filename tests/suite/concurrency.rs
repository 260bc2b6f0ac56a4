//! Many connections at once against a `-t 4` server: counters, compare-and-swap
//! read-modify-write loops and self-checking values must come out exact.
use crate::common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const THREADS: usize = 32;
const KEYS: usize = 4;
/// Wall-clock budget of each workload (every loop also has an iteration bound).
const BUDGET: Duration = Duration::from_secs(6);

/// A blocking text-protocol connection with a buffered reader.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn new(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let w = s.try_clone().expect("clone");
        Conn {
            r: BufReader::new(s),
            w,
        }
    }

    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).expect("send");
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read line");
        assert!(l.ends_with("\r\n"), "truncated line {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    /// Reads a `get`/`gets` reply for one key: Some((value, cas)) or None on a miss.
    fn value(&mut self) -> Option<(Vec<u8>, Option<u64>)> {
        let head = self.line();
        if head == "END" {
            return None;
        }
        let parts: Vec<&str> = head.split(' ').collect();
        assert!(
            parts.len() >= 4 && parts[0] == "VALUE",
            "bad value line {head:?}"
        );
        let n: usize = parts[3].parse().expect("length");
        let cas = parts.get(4).map(|c| c.parse::<u64>().expect("cas"));
        let mut data = vec![0; n + 2];
        self.r.read_exact(&mut data).expect("value bytes");
        assert_eq!(&data[n..], b"\r\n", "value not followed by CRLF");
        data.truncate(n);
        let end = self.line();
        assert_eq!(end, "END");
        Some((data, cas))
    }

    fn set(&mut self, key: &str, val: &[u8]) {
        let mut req = format!("set {key} 0 0 {}\r\n", val.len()).into_bytes();
        req.extend_from_slice(val);
        req.extend_from_slice(b"\r\n");
        self.send(&req);
        let l = self.line();
        assert_eq!(l, "STORED", "set {key}");
    }
}

/// Runs `work(thread_index, conn)` on THREADS threads at once.
fn run_threads<F>(port: u16, work: F)
where
    F: Fn(usize, &mut Conn) + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let work = Arc::clone(&work);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut c = Conn::new(port);
                barrier.wait();
                work(t, &mut c);
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread panicked");
    }
}

#[test]
fn concurrent_incr_loses_no_increment() {
    let server = Server::ferrocache(&["-t", "4"]);
    let port = server.port;
    let mut c = Conn::new(port);
    for k in 0..KEYS {
        c.set(&format!("ctr{k}"), b"0");
    }
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let d = Arc::clone(&done);
    let start = Instant::now();
    run_threads(port, move |t, c| {
        let mut last = [0u64; KEYS];
        for i in 0..2000 {
            if start.elapsed() > BUDGET {
                break;
            }
            let k = (t + i) % KEYS;
            c.send(format!("incr ctr{k} 1\r\n").as_bytes());
            let l = c.line();
            let v: u64 = l.parse().unwrap_or_else(|_| panic!("incr reply {l:?}"));
            // Each connection sees its own increments in order.
            assert!(v > last[k], "counter went back: {v} after {}", last[k]);
            last[k] = v;
            d[k].fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut total = 0;
    for k in 0..KEYS {
        c.send(format!("get ctr{k}\r\n").as_bytes());
        let (v, _) = c.value().expect("counter present");
        let v: u64 = String::from_utf8_lossy(&v).trim().parse().expect("number");
        let want = done[k].load(Ordering::Relaxed);
        assert_eq!(v, want, "ctr{k}");
        total += want;
    }
    println!("incr: {total} increments over {THREADS} connections");
    assert!(total > 0);
}

#[test]
fn concurrent_cas_loses_no_update() {
    let server = Server::ferrocache(&["-t", "4"]);
    let port = server.port;
    let mut c = Conn::new(port);
    for k in 0..KEYS {
        c.set(&format!("cas{k}"), b"0");
    }
    let wins: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let losses = Arc::new(AtomicU64::new(0));
    let (w, lo) = (Arc::clone(&wins), Arc::clone(&losses));
    let start = Instant::now();
    run_threads(port, move |t, c| {
        for i in 0..600 {
            if start.elapsed() > BUDGET {
                break;
            }
            let k = (t * 7 + i) % KEYS;
            let key = format!("cas{k}");
            c.send(format!("gets {key}\r\n").as_bytes());
            let (v, cas) = c.value().expect("cas key present");
            let cas = cas.expect("gets returns a cas");
            let n: u64 = String::from_utf8_lossy(&v).parse().expect("number");
            let nv = (n + 1).to_string();
            c.send(format!("cas {key} 0 0 {} {cas}\r\n{nv}\r\n", nv.len()).as_bytes());
            match c.line().as_str() {
                "STORED" => {
                    w[k].fetch_add(1, Ordering::Relaxed);
                }
                "EXISTS" => {
                    lo.fetch_add(1, Ordering::Relaxed);
                }
                other => panic!("cas reply {other:?}"),
            }
        }
    });
    let mut total = 0;
    for k in 0..KEYS {
        c.send(format!("get cas{k}\r\n").as_bytes());
        let (v, _) = c.value().expect("present");
        let v: u64 = String::from_utf8_lossy(&v).parse().expect("number");
        let want = wins[k].load(Ordering::Relaxed);
        assert_eq!(v, want, "cas{k}: value vs successful cas count");
        total += want;
    }
    println!(
        "cas: {total} successful, {} lost races",
        losses.load(Ordering::Relaxed)
    );
    assert!(total > 0);
}

/// FNV-1a 64.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A value of `len` pseudo-random bytes from `seed`, ending in its 16-hex-digit checksum.
fn checked_value(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let sum = fnv(&v);
    v.extend_from_slice(format!("{sum:016x}").as_bytes());
    v
}

fn verify(v: &[u8]) -> bool {
    if v.len() < 16 {
        return false;
    }
    let (body, sum) = v.split_at(v.len() - 16);
    format!("{:016x}", fnv(body)).as_bytes() == sum
}

#[test]
fn concurrent_set_get_never_tears_a_value() {
    let server = Server::ferrocache(&["-t", "4"]);
    let port = server.port;
    let reads = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let (r, w) = (Arc::clone(&reads), Arc::clone(&writes));
    let start = Instant::now();
    run_threads(port, move |t, c| {
        let mut rng = (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..400 {
            if start.elapsed() > BUDGET {
                break;
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = format!("tv{}", rng % 6);
            if i % 2 == 0 {
                // Sizes from tiny to several hundred KiB, so that large writes overlap reads.
                let len = match rng % 4 {
                    0 => 10 + (rng >> 8) as usize % 100,
                    1 => 1000 + (rng >> 8) as usize % 10_000,
                    2 => 50_000 + (rng >> 8) as usize % 100_000,
                    _ => 300_000 + (rng >> 8) as usize % 200_000,
                };
                c.set(&key, &checked_value(rng, len));
                w.fetch_add(1, Ordering::Relaxed);
            } else {
                c.send(format!("get {key}\r\n").as_bytes());
                if let Some((v, _)) = c.value() {
                    assert!(verify(&v), "torn value for {key}: {} bytes", v.len());
                    r.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    println!(
        "checksummed values: {} sets, {} verified reads",
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 0);
}
