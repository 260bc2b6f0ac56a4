//! `ferrocache-cli`: command-line access to a cluster of memcached-protocol nodes,
//! with the same key placement as `ferrocache::client` (and so as libmemcached,
//! twemproxy and pylibmc).
//!
//! ```text
//! ferrocache-cli --servers 10.0.0.1:11211,10.0.0.2:11211:2 get user:42
//! ferrocache-cli --servers ... set user:42 Ada --ttl 300
//! printf 'a\nb\n' | ferrocache-cli --servers ... locate      # a,10.0.0.2:11211 ...
//! ferrocache-cli --servers ... stats                          # one column per node
//! ferrocache-cli --servers cache1:11211 --tls --cacert ca.pem get user:42   # TLS (-Z)
//! ```
//!
//! Exit status: 0 done, 1 "not found" / not stored, 2 usage or connection errors.
#![forbid(unsafe_code)]

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrocache::client::ring::Distribution;
use ferrocache::client::{Client, ClientConfig, Protocol, SaslAuth, TlsOptions};

#[derive(Parser, Debug)]
#[command(
    name = "ferrocache-cli",
    version,
    about = "Talk to a cluster of memcached-protocol nodes (ferrocache or memcached)"
)]
struct Cli {
    /// Nodes: `host:port[:weight]`, comma-separated (hosts are hashed as written).
    #[arg(long, short = 's', env = "FERROCACHE_SERVERS")]
    servers: String,
    /// Key distribution: ketama-weighted, ketama, spymemcached, modula, rendezvous.
    #[arg(long, short = 'd', default_value = "ketama-weighted")]
    distribution: String,
    /// Speak the binary protocol (needed for SASL).
    #[arg(long)]
    binary: bool,
    /// SASL user (implies --binary).
    #[arg(long)]
    username: Option<String>,
    /// SASL password (default: $FERROCACHE_PASSWORD).
    #[arg(long, env = "FERROCACHE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Connect and I/O timeout, milliseconds.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Connect over TLS (nodes started with -Z).
    #[arg(long)]
    tls: bool,
    /// With --tls: trust the CA certificates in FILE (PEM) instead of the system's.
    #[arg(long, value_name = "FILE", requires = "tls")]
    cacert: Option<PathBuf>,
    /// With --tls: present this client certificate (PEM) for mutual TLS; needs --key.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,
    /// With --tls: the private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    key: Option<PathBuf>,
    /// With --tls: check the nodes' certificates against NAME (default: each node's
    /// host as given in --servers).
    #[arg(long, value_name = "NAME", requires = "tls")]
    servername: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the value of KEY (exit 1 when missing).
    Get {
        /// The key.
        key: String,
    },
    /// Store VALUE (or standard input when VALUE is "-") under KEY.
    Set {
        /// The key.
        key: String,
        /// The value; "-" reads standard input.
        value: String,
        /// Expiry in seconds (0: none).
        #[arg(long, default_value_t = 0)]
        ttl: u32,
        /// Client flags.
        #[arg(long, default_value_t = 0)]
        flags: u32,
    },
    /// Delete KEY (exit 1 when missing).
    Delete {
        /// The key.
        key: String,
    },
    /// Add DELTA to the number stored under KEY; prints the new value.
    Incr {
        /// The key.
        key: String,
        /// Amount (default 1).
        #[arg(default_value_t = 1)]
        delta: u64,
    },
    /// Subtract DELTA (stopping at 0); prints the new value.
    Decr {
        /// The key.
        key: String,
        /// Amount (default 1).
        #[arg(default_value_t = 1)]
        delta: u64,
    },
    /// Set a new expiry on KEY (exit 1 when missing).
    Touch {
        /// The key.
        key: String,
        /// New expiry in seconds.
        ttl: u32,
    },
    /// flush_all on every node.
    Flush {
        /// Delay in seconds.
        #[arg(long, default_value_t = 0)]
        delay: u32,
    },
    /// A table of `stats [GROUP]`: one row per statistic, one column per node.
    Stats {
        /// Stats group (items, slabs, settings, ...).
        group: Option<String>,
    },
    /// Read keys (one per line) on standard input; print `key,host:port` for each.
    Locate,
    /// Ask every node (ferrocache serving snapshots into its snapshot directory) for
    /// an online snapshot, wait until each has written it, print what was written.
    /// Plain TCP only (not TLS).
    Snapshot {
        /// File name inside the node's --snapshot-dir (default: one with the time).
        name: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ferrocache-cli: {e}");
            ExitCode::from(2)
        }
    }
}

fn client(cli: &Cli) -> Result<Client, String> {
    let mut cfg = ClientConfig::new(&cli.servers)?;
    cfg.distribution = cli.distribution.parse::<Distribution>()?;
    let t = Duration::from_millis(cli.timeout_ms.max(1));
    cfg.conn.connect_timeout = t;
    cfg.conn.io_timeout = t;
    if cli.binary || cli.username.is_some() {
        cfg.conn.protocol = Protocol::Binary;
    }
    if let Some(user) = &cli.username {
        cfg.conn.auth = Some(SaslAuth {
            username: user.clone(),
            password: cli.password.clone().unwrap_or_default(),
            mechanism: None,
        });
    }
    if cli.tls {
        cfg.conn.tls = Some(TlsOptions {
            ca_file: cli.cacert.clone(),
            cert_file: cli.cert.clone(),
            key_file: cli.key.clone(),
            server_name: cli.servername.clone(),
        });
    }
    Client::new(cfg).map_err(|e| e.to_string())
}

fn run(cli: Cli) -> Result<u8, String> {
    let c = client(&cli)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    let e = |e: ferrocache::client::Error| e.to_string();
    let code = match &cli.command {
        Cmd::Get { key } => match c.get(key.as_bytes()).map_err(e)? {
            Some(item) => {
                let _ = out.write_all(&item.value);
                let _ = out.write_all(b"\n");
                0
            }
            None => {
                eprintln!("NOT_FOUND");
                1
            }
        },
        Cmd::Set {
            key,
            value,
            ttl,
            flags,
        } => {
            let bytes = if value == "-" {
                let mut v = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut v)
                    .map_err(|e| e.to_string())?;
                v
            } else {
                value.clone().into_bytes()
            };
            c.set(key.as_bytes(), &bytes, *flags, *ttl).map_err(e)?;
            let _ = writeln!(out, "STORED");
            0
        }
        Cmd::Delete { key } => found(&mut out, c.delete(key.as_bytes()).map_err(e)?, "DELETED"),
        Cmd::Incr { key, delta } => number(&mut out, c.incr(key.as_bytes(), *delta).map_err(e)?),
        Cmd::Decr { key, delta } => number(&mut out, c.decr(key.as_bytes(), *delta).map_err(e)?),
        Cmd::Touch { key, ttl } => found(
            &mut out,
            c.touch(key.as_bytes(), *ttl).map_err(e)?,
            "TOUCHED",
        ),
        Cmd::Flush { delay } => {
            c.flush_all(*delay).map_err(e)?;
            let _ = writeln!(out, "OK");
            0
        }
        Cmd::Stats { group } => stats_table(&mut out, &c, group.as_deref().unwrap_or("")),
        Cmd::Snapshot { name, wait } => snapshot(
            &mut out,
            &c,
            name.as_deref(),
            *wait,
            Duration::from_millis(cli.timeout_ms.max(1)),
        ),
        Cmd::Locate => {
            // Keys are bytes: one per line, a CR before the LF dropped, not UTF-8-checked.
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                if input
                    .read_until(b'\n', &mut line)
                    .map_err(|e| e.to_string())?
                    == 0
                {
                    break;
                }
                let mut key = line.strip_suffix(b"\n").unwrap_or(&line);
                key = key.strip_suffix(b"\r").unwrap_or(key);
                let node = c.locate_name(key).unwrap_or_default();
                let ok = out.write_all(key).is_ok() && writeln!(out, ",{node}").is_ok();
                if !ok {
                    break;
                }
            }
            0
        }
    };
    let _ = out.flush();
    Ok(code)
}

fn found(out: &mut impl Write, yes: bool, word: &str) -> u8 {
    if yes {
        let _ = writeln!(out, "{word}");
        0
    } else {
        eprintln!("NOT_FOUND");
        1
    }
}

fn number(out: &mut impl Write, v: Option<u64>) -> u8 {
    match v {
        Some(n) => {
            let _ = writeln!(out, "{n}");
            0
        }
        None => {
            eprintln!("NOT_FOUND");
            1
        }
    }
}

/// One row per statistic (in the first answering node's order), one column per node;
/// a node that did not answer shows its error under its name.
fn stats_table(out: &mut impl Write, c: &Client, group: &str) -> u8 {
    let all = c.stats(group);
    let mut names: Vec<String> = Vec::new();
    for (_, r) in &all {
        if let Ok(stats) = r {
            for (k, _) in stats {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["stat".to_string()];
    header.extend(all.iter().map(|(n, _)| n.clone()));
    rows.push(header);
    for name in &names {
        let mut row = vec![name.clone()];
        for (_, r) in &all {
            row.push(match r {
                Ok(stats) => stats
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "-".into()),
                Err(_) => "-".into(),
            });
        }
        rows.push(row);
    }
    let mut failed = false;
    let mut errors = vec!["error".to_string()];
    for (_, r) in &all {
        errors.push(match r {
            Ok(_) => "-".into(),
            Err(e) => {
                failed = true;
                e.to_string()
            }
        });
    }
    if failed {
        rows.push(errors);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    u8::from(failed) * 2
}

/// `snapshot [NAME]` on each node (one text connection each), then `stats` until no
/// node has one in progress. Exit 0 when every node wrote its snapshot.
fn snapshot(
    out: &mut impl Write,
    c: &Client,
    name: Option<&str>,
    wait: u64,
    timeout: Duration,
) -> u8 {
    use std::net::{TcpStream, ToSocketAddrs};
    let nodes: Vec<String> = c.stats("").into_iter().map(|(n, _)| n).collect();
    let mut asked = Vec::new();
    let mut failed = false;
    for node in &nodes {
        let reply = (|| -> std::io::Result<String> {
            let addr = node
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let mut s = TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            let cmd = match name {
                Some(n) => format!("snapshot {n}\r\n"),
                None => "snapshot\r\n".to_string(),
            };
            s.write_all(cmd.as_bytes())?;
            let mut line = String::new();
            std::io::BufReader::new(s).read_line(&mut line)?;
            Ok(line.trim_end().to_string())
        })();
        match reply {
            Ok(r) if r.starts_with("OK") => asked.push(node.clone()),
            Ok(r) => {
                failed = true;
                let _ = writeln!(out, "{node}  {r}");
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(out, "{node}  error: {e}");
            }
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(wait);
    let stat = |st: &[(String, String)], k: &str| {
        st.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    loop {
        let all = c.stats("");
        let busy = all.iter().any(|(n, r)| {
            asked.contains(n) && matches!(r, Ok(st) if stat(st, "snapshot_in_progress") == "1")
        });
        if !busy || std::time::Instant::now() >= deadline {
            for (n, r) in &all {
                if !asked.contains(n) {
                    continue;
                }
                match r {
                    Ok(st) if stat(st, "snapshot_in_progress") == "0" => {
                        let _ = writeln!(
                            out,
                            "{n}  done: {} items, {} bytes, {} ms (snapshots completed {}, failed {})",
                            stat(st, "snapshot_items_written"),
                            stat(st, "snapshot_bytes_written"),
                            stat(st, "snapshot_duration_ms"),
                            stat(st, "snapshots_completed"),
                            stat(st, "snapshots_failed")
                        );
                    }
                    Ok(_) => {
                        failed = true;
                        let _ = writeln!(out, "{n}  still in progress");
                    }
                    Err(e) => {
                        failed = true;
                        let _ = writeln!(out, "{n}  error: {e}");
                    }
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    u8::from(failed) * 2
}
