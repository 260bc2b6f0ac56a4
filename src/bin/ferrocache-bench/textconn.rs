//! Small helpers shared by `memory` and `hitratio`: a blocking text-protocol connection
//! with I/O timeouts, a seeded SplitMix64 generator, and JSON string escaping.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A blocking connection speaking the memcached text protocol. Every read and write
/// fails after `io_timeout` without progress, so a stalled server is an error, not a hang.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    addr: SocketAddr,
}

impl Conn {
    /// Connects to `addr` with `io_timeout` for connect, reads and writes.
    pub fn connect(addr: SocketAddr, io_timeout: Duration) -> Result<Conn, String> {
        let s = TcpStream::connect_timeout(&addr, io_timeout)
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(io_timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(io_timeout))
            .map_err(|e| e.to_string())?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Conn {
            reader: BufReader::with_capacity(256 * 1024, s),
            writer,
            addr,
        })
    }

    fn io_err(&self, what: &str, e: std::io::Error) -> String {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!(
                    "{}: {what}: no progress within the I/O timeout (server stalled?)",
                    self.addr
                )
            }
            _ => format!("{}: {what}: {e}", self.addr),
        }
    }

    /// Writes all of `buf`.
    pub fn send(&mut self, buf: &[u8]) -> Result<(), String> {
        self.writer
            .write_all(buf)
            .map_err(|e| self.io_err("write", e))
    }

    /// Reads one line into `line` (replacing its contents), without the trailing CRLF.
    pub fn read_line(&mut self, line: &mut Vec<u8>) -> Result<(), String> {
        line.clear();
        let n = self
            .reader
            .read_until(b'\n', line)
            .map_err(|e| self.io_err("read", e))?;
        if n == 0 || !line.ends_with(b"\r\n") {
            return Err(format!("{}: connection closed by the server", self.addr));
        }
        line.truncate(line.len() - 2);
        Ok(())
    }

    /// Reads exactly `n` bytes into `buf` (replacing its contents).
    pub fn read_exact(&mut self, n: usize, buf: &mut Vec<u8>) -> Result<(), String> {
        buf.clear();
        buf.resize(n, 0);
        self.reader
            .read_exact(buf)
            .map_err(|e| self.io_err("read", e))
    }

    /// Sends `stats` and returns its name/value pairs.
    pub fn stats(&mut self) -> Result<HashMap<String, String>, String> {
        self.send(b"stats\r\n")?;
        let mut out = HashMap::new();
        let mut line = Vec::new();
        loop {
            self.read_line(&mut line)?;
            if line == b"END" {
                return Ok(out);
            }
            let text = String::from_utf8_lossy(&line);
            let mut f = text.splitn(3, ' ');
            match (f.next(), f.next(), f.next()) {
                (Some("STAT"), Some(k), Some(v)) => {
                    out.insert(k.to_string(), v.to_string());
                }
                _ => return Err(format!("{}: unexpected stats line {text:?}", self.addr)),
            }
        }
    }
}

/// A numeric statistic from a `stats` map (0 when absent or not a number).
pub fn stat_u64(stats: &HashMap<String, String>, name: &str) -> u64 {
    stats.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// SplitMix64: a small, fast, seeded generator (reproducible request sequences).
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// A uniform float in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform integer in [0, n) (n > 0; slight modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The SplitMix64 finaliser: a good 64-bit hash of `z`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A finite float as JSON (non-finite values become `null`).
pub fn json_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

/// Extra server flags shared by the subcommands that start servers.
#[derive(clap::Args, Debug)]
pub struct ServerFlags {
    /// Extra flags for both servers (one string, whitespace separated).
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    server_args: String,
    /// Extra flags for memcached only.
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    memcached_args: String,
    /// Extra flags for ferrocache only.
    #[arg(long, allow_hyphen_values = true, default_value = "")]
    ferrocache_args: String,
}

impl ServerFlags {
    /// The flags for one server: the common ones, then its own.
    pub fn for_kind(&self, kind: crate::servers::Kind) -> Vec<&str> {
        let mut v = split_args(&self.server_args);
        v.extend(split_args(match kind {
            crate::servers::Kind::Memcached => &self.memcached_args,
            crate::servers::Kind::Ferrocache => &self.ferrocache_args,
        }));
        v
    }
}

/// Whitespace-separated words of a flags string.
pub fn split_args(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// `a / b` with three decimals for tables, or `n/a` when it is not a finite number.
pub fn ratio_str(a: f64, b: f64) -> String {
    let r = a / b;
    if r.is_finite() {
        format!("{r:.3}")
    } else {
        "n/a".into()
    }
}
