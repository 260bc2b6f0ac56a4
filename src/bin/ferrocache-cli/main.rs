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
//! ferrocache-cli --discover cfg.example:11211 get user:42    # nodes from `config get cluster`
//! ferrocache-cli --discover cfg.example:11211 cluster add cache4.example|10.0.0.4|11211
//! ```
//!
//! Exit status: 0 done, 1 "not found" / not stored, 2 usage or connection errors.
//! `ferrocache-cli --man` prints the man page, `--completions bash|zsh|fish` a
//! completion script (as the sole arguments).
#![forbid(unsafe_code)]

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use ferrocache::client::discovery::ConfigClient;
use ferrocache::client::ring::{parse_servers, Distribution, NodeSpec};
use ferrocache::client::{Client, ClientConfig, ConnOptions, Protocol, SaslAuth, TlsOptions};
use ferrocache::protocol::cluster::{ClusterConfig, ClusterNode, MAX_VERSION};

#[derive(Parser, Debug)]
#[command(
    name = "ferrocache-cli",
    version,
    about = "Talk to a cluster of memcached-protocol nodes (ferrocache or memcached)"
)]
struct Cli {
    /// Nodes: `host:port[:weight]`, comma-separated (hosts are hashed as written).
    #[arg(
        long,
        short = 's',
        env = "FERROCACHE_SERVERS",
        required_unless_present = "discover"
    )]
    servers: Option<String>,
    /// Read the node list from this configuration endpoint (`host:port`, or several,
    /// comma-separated, tried in turn) with `config get cluster`, as ElastiCache's
    /// auto discovery does; used instead of --servers.
    #[arg(long, value_name = "HOST:PORT")]
    discover: Option<String>,
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
    /// an online snapshot, wait until each has written it, print what was written;
    /// with --tls over TLS.
    Snapshot {
        /// File name inside the node's --snapshot-dir (default: one with the time).
        name: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// Show or change the cluster configuration (`config get|set cluster`) the nodes
    /// serve for auto discovery (a change needs nodes that take changes over the
    /// wire: ferrocache started with its cluster-config-writable option).
    Cluster {
        #[command(subcommand)]
        action: ClusterCmd,
    },
}

/// `cluster ...`: a change is written as version (highest version any current node
/// holds) + 1 to every node of the old and the new list.
#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Print the configuration: the endpoint's (--discover) or each node's (--servers).
    Show,
    /// Replace the node list with ENTRIES (`host|ip|port` or `host:port`).
    Set {
        /// The nodes of the new list.
        #[arg(required = true)]
        entries: Vec<String>,
    },
    /// Add ENTRY (`host|ip|port` or `host:port`) to the list.
    Add {
        /// The node to add.
        entry: String,
    },
    /// Remove ENTRY (`host|ip|port` or `host:port`) from the list.
    Remove {
        /// The node to remove.
        entry: String,
    },
}

#[path = "../common/docs.rs"]
mod docs;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = docs::answer(Cli::command(), &args) {
        return code;
    }
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
    let mut cfg = match (&cli.discover, &cli.servers) {
        (Some(endpoint), _) => ClientConfig::discover(endpoint)?,
        (None, Some(servers)) => ClientConfig::new(servers)?,
        (None, None) => return Err("give --servers or --discover".into()),
    };
    cfg.conn = conn_options(cli);
    cfg.distribution = cli.distribution.parse::<Distribution>()?;
    Client::new(cfg).map_err(|e| e.to_string())
}

/// Protocol, timeouts, SASL and TLS as the options say.
fn conn_options(cli: &Cli) -> ConnOptions {
    let t = Duration::from_millis(cli.timeout_ms.max(1));
    let mut conn = ConnOptions {
        connect_timeout: t,
        io_timeout: t,
        ..ConnOptions::default()
    };
    if cli.binary || cli.username.is_some() {
        conn.protocol = Protocol::Binary;
    }
    if let Some(user) = &cli.username {
        conn.auth = Some(SaslAuth {
            username: user.clone(),
            password: cli.password.clone().unwrap_or_default(),
            mechanism: None,
        });
    }
    if cli.tls {
        conn.tls = Some(TlsOptions {
            ca_file: cli.cacert.clone(),
            cert_file: cli.cert.clone(),
            key_file: cli.key.clone(),
            server_name: cli.servername.clone(),
        });
    }
    conn
}

fn run(cli: Cli) -> Result<u8, String> {
    let out = std::io::stdout();
    let mut out = out.lock();
    if let Cmd::Cluster { action } = &cli.command {
        let code = cluster(&mut out, &cli, action)?;
        let _ = out.flush();
        return Ok(code);
    }
    let c = client(&cli)?;
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
        Cmd::Snapshot { name, wait } => {
            let admin = ConfigClient::new(&conn_options(&cli)).map_err(|e| e.to_string())?;
            snapshot(&mut out, &c, &admin, name.as_deref(), *wait)
        }
        Cmd::Cluster { .. } => unreachable!("handled above"),
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

/// `snapshot [NAME]` on each node (one text connection each, plain or TLS as the
/// options say), then `stats` until no node has one in progress. Exit 0 when every
/// node wrote its snapshot.
fn snapshot(
    out: &mut impl Write,
    c: &Client,
    admin: &ConfigClient,
    name: Option<&str>,
    wait: u64,
) -> u8 {
    let cmd = match name {
        Some(n) => format!("snapshot {n}"),
        None => "snapshot".to_string(),
    };
    let mut asked = Vec::new();
    let mut failed = false;
    for spec in c.servers() {
        let node = spec.name();
        match admin.text_command(&spec, &cmd) {
            Ok(r) if r.starts_with("OK") => asked.push(node),
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

/// `cluster show|set|add|remove`. Show: the configuration of the endpoint
/// (--discover: the first that answers) or of each of --servers. A change: the
/// current list is the highest version any of those nodes holds (none: the nodes
/// themselves); every node of that list is asked for its version too; the new list
/// goes out as that highest version + 1 to the endpoints or --servers and every node
/// of the old and the new list, and each node's outcome is printed. Exit 0 when every node took it, 2 otherwise.
fn cluster(out: &mut impl Write, cli: &Cli, action: &ClusterCmd) -> Result<u8, String> {
    let via_endpoint = cli.discover.is_some();
    let sources = match (&cli.discover, &cli.servers) {
        (Some(list), _) | (None, Some(list)) => parse_servers(list)?,
        (None, None) => return Err("give --servers or --discover".into()),
    };
    let cc = ConfigClient::new(&conn_options(cli)).map_err(|e| e.to_string())?;
    let mut answers: Vec<(String, Result<Option<ClusterConfig>, String>)> = Vec::new();
    for spec in &sources {
        let r = cc.get(spec).map_err(|e| e.to_string());
        let answered = matches!(r, Ok(Some(_)));
        answers.push((spec.name(), r));
        if via_endpoint && answered {
            break; // the first endpoint that has one is the endpoint
        }
    }
    let newest = answers
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().and_then(Option::as_ref))
        .max_by_key(|c| c.version)
        .cloned();
    let new_nodes = match action {
        ClusterCmd::Show => return Ok(show(out, via_endpoint, &answers, newest.as_ref())),
        ClusterCmd::Set { entries } => entries
            .iter()
            .map(|e| ClusterNode::parse(e).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?,
        ClusterCmd::Add { entry } | ClusterCmd::Remove { entry } => {
            let node = ClusterNode::parse(entry).map_err(|e| e.to_string())?;
            let mut list = current_list(newest.as_ref(), &sources)?;
            let at = list.iter().position(|n| same_node(n, &node));
            match (action, at) {
                (ClusterCmd::Add { .. }, None) => list.push(node),
                (ClusterCmd::Add { .. }, Some(_)) => {
                    return Err(format!("{entry} is already in the list"))
                }
                (_, Some(i)) => {
                    list.remove(i);
                }
                (_, None) => return Err(format!("{entry} is not in the list")),
            }
            list
        }
    };
    if new_nodes.is_empty() {
        return Err("the new list would have no node".into());
    }
    let old_nodes = current_list(newest.as_ref(), &sources)?;
    // Every node of the current list says its version (the sources have already).
    let mut highest = newest.as_ref().map_or(0, |c| c.version);
    for n in &old_nodes {
        if answers.iter().any(|(name, _)| *name == n.address()) {
            continue;
        }
        if let Ok(Some(c)) = node_spec(n).and_then(|s| cc.get(&s).map_err(|e| e.to_string())) {
            highest = highest.max(c.version);
        }
    }
    // A version no client could follow after it is never sent: the nodes would
    // refuse it anyway (`CLIENT_ERROR cluster configuration version too high`).
    let version = highest
        .checked_add(1)
        .filter(|&v| v < MAX_VERSION)
        .ok_or_else(|| {
            format!(
                "the fleet's configuration version is {highest}: a change would reach \
                 {MAX_VERSION}, after which no discovery client could follow another"
            )
        })?;
    let config = ClusterConfig {
        version,
        nodes: new_nodes,
    };
    // The endpoints or --servers too: pollers may read them though they are not
    // in the list.
    let given = current_list(None, &sources)?;
    let mut targets: Vec<&ClusterNode> = Vec::new();
    for n in given.iter().chain(&old_nodes).chain(&config.nodes) {
        if !targets.iter().any(|t| t.address() == n.address()) {
            targets.push(n);
        }
    }
    let mut failed = 0;
    for n in &targets {
        let outcome = node_spec(n).and_then(|spec| {
            cc.set(&spec, &config).map_err(|e| e.to_string())?;
            // What it keeps: a node that was ahead keeps its own + 1.
            Ok(match cc.get(&spec) {
                Ok(Some(c)) if c.version == config.version => format!("version {}", c.version),
                Ok(Some(c)) => format!("version {} (not {})", c.version, config.version),
                Ok(None) => "but holds no configuration".into(),
                Err(e) => format!("(version not read back: {e})"),
            })
        });
        match outcome {
            Ok(v) => {
                let _ = writeln!(out, "{}  STORED {v}", n.address());
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(out, "{}  FAILED {e}", n.address());
            }
        }
    }
    let _ = writeln!(out, "version {}", config.version);
    for n in &config.nodes {
        let _ = writeln!(out, "{n}");
    }
    if failed > 0 {
        eprintln!(
            "ferrocache-cli: {failed} of {} node(s) did not take version {}",
            targets.len(),
            config.version
        );
        return Ok(2);
    }
    Ok(0)
}

/// `cluster show`: the version and one entry a line; with --servers each node's
/// answer first. Exit 0, 1 when no node holds a configuration, 2 when a node failed.
fn show(
    out: &mut impl Write,
    via_endpoint: bool,
    answers: &[(String, Result<Option<ClusterConfig>, String>)],
    newest: Option<&ClusterConfig>,
) -> u8 {
    let mut failed = false;
    for (name, r) in answers {
        match r {
            Err(e) => {
                failed = true;
                eprintln!("{name}  error: {e}");
            }
            Ok(None) if !via_endpoint => {
                let _ = writeln!(out, "{name}  no configuration");
            }
            Ok(Some(c)) if !via_endpoint => {
                let entries: Vec<String> = c.nodes.iter().map(ToString::to_string).collect();
                let _ = writeln!(out, "{name}  version {}  {}", c.version, entries.join(" "));
            }
            Ok(_) => {}
        }
    }
    let Some(c) = newest else {
        eprintln!("no cluster configuration");
        return if failed { 2 } else { 1 };
    };
    if via_endpoint {
        let _ = writeln!(out, "version {}", c.version);
        for n in &c.nodes {
            let _ = writeln!(out, "{n}");
        }
        return 0;
    }
    u8::from(failed) * 2
}

/// The list a change starts from: the newest configuration's, or the given nodes.
fn current_list(
    newest: Option<&ClusterConfig>,
    sources: &[NodeSpec],
) -> Result<Vec<ClusterNode>, String> {
    match newest {
        Some(c) => Ok(c.nodes.clone()),
        None => sources
            .iter()
            .map(|s| ClusterNode::parse(&s.name()).map_err(|e| e.to_string()))
            .collect(),
    }
}

/// The same node: the same address, or the same host and port.
fn same_node(a: &ClusterNode, b: &ClusterNode) -> bool {
    a.address() == b.address() || (a.host == b.host && a.port == b.port)
}

fn node_spec(n: &ClusterNode) -> Result<NodeSpec, String> {
    NodeSpec::parse(&n.address())
}
