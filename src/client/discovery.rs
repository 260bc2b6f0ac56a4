//! Cluster auto discovery as ElastiCache does it: the node list is read from a
//! configuration endpoint (any node of the fleet, or several tried in turn) and
//! polled; a higher version replaces the list.
//!
//! ```text
//!  Client::new ── config get cluster ──▶ endpoint ──▶ "<version>\n<host>|<ip>|<port> ...\n"
//!      │                                                  │
//!      │          ring over the nodes' address() ◀────────┘
//!      ▼
//!  poller thread: every interval (default 60 s) ── endpoint(s), then the known nodes
//!      version > current ──▶ new list: nodes still listed keep pools and health,
//!                             the ring is rebuilt (ketama: only the keys of added or
//!                             removed nodes move)
//!      version <= current ──▶ ignored
//!      nobody answers      ──▶ the last list stays; logged and counted
//! ```
//!
//! The request is `config get cluster` (text; the binary protocol's opcode `0x60`
//! when the client speaks binary, which SASL needs); a node that does not know it
//! (`ERROR`, binary status `0x81`) is asked the legacy `get AmazonElastiCache:cluster`
//! instead. The endpoint connection is opened like any node connection, so the
//! client's SASL and TLS settings apply to it. The configuration's vocabulary is
//! [`crate::protocol::cluster`]; [`ConfigClient`] reads and writes it on one node
//! (what `ferrocache-cli cluster` does).
//!
//! The poller thread holds only a weak reference to the client: it ends when the
//! last clone of the [`Client`](super::Client) is dropped, at once (the wait between polls is a
//! condition variable, not a sleep). [`Client::refresh_cluster`](super::Client::refresh_cluster) polls now;
//! [`Client::discovery`](super::Client::discovery) reports the version, the counters and the last error.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::error::{Error, Result};
use super::node::{bin_error, proto_err, ConnOptions, NodeConn, Protocol};
use super::ring::NodeSpec;
use super::tls::Connector;
use crate::protocol::binary::opcode::{CONFIG_GET, CONFIG_SET};
use crate::protocol::binary::Status;
use crate::protocol::cluster::{ClusterConfig, CLUSTER_KEY, LEGACY_KEY, MAX_HOST, MAX_NODES};

/// How often the endpoint is polled unless [`super::ClientConfig::with_poll_interval`]
/// says otherwise (ElastiCache's clients: one minute).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Binary status: no such key / no configuration.
const NOT_FOUND: u16 = Status::KeyEnoent as u16;
/// Binary status: unknown command (memcached, older servers).
const UNKNOWN_COMMAND: u16 = Status::UnknownCommand as u16;
/// Longest payload read: [`MAX_NODES`] entries of the longest host, an IPv6 address
/// and a port, and the version line.
const MAX_PAYLOAD: usize = MAX_NODES * (MAX_HOST + 48) + 32;

/// Where the node list comes from ([`super::ClientConfig::discovery`]).
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// The configuration endpoints, tried in turn (`host:port`; weights ignored).
    pub endpoints: Vec<NodeSpec>,
    /// Time between two polls.
    pub interval: Duration,
}

/// What discovery has done so far ([`Client::discovery`](super::Client::discovery)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryStatus {
    /// The version of the list in use.
    pub version: u64,
    /// The nodes of that list (`host:port` as connected to: each entry's address).
    pub nodes: Vec<String>,
    /// Polls since the client was made (the first fetch in [`Client::new`](super::Client::new) not
    /// counted).
    pub polls: u64,
    /// New versions applied.
    pub changes: u64,
    /// Polls in which no configuration endpoint answered with a valid configuration
    /// (connection refused or timed out, no configuration stored, a bad payload).
    pub failures: u64,
    /// Of those, the polls a node of the current list answered instead.
    pub fallbacks: u64,
    /// The last failure, naming each endpoint or node tried (kept after later
    /// successes).
    pub last_error: Option<String>,
    /// When the last poll ended.
    pub last_poll: Option<Instant>,
    /// When the list in use was applied (the first one: in [`Client::new`](super::Client::new)).
    pub last_change: Instant,
    /// The endpoint or node that gave the list in use.
    pub source: String,
}

/// The shared part of the poller: its counters and its stop signal.
struct Shared {
    status: Mutex<DiscoveryStatus>,
    /// One poll at a time (the thread's and [`Client::refresh_cluster`](super::Client::refresh_cluster)'s).
    polling: Mutex<()>,
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// The poller of one client: state shared with its thread, and the thread.
pub(super) struct Poller {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Poller {
    /// A poller whose first list is `config`, read from `source`.
    pub(super) fn new(config: &ClusterConfig, source: String) -> Poller {
        Poller {
            shared: Arc::new(Shared {
                status: Mutex::new(DiscoveryStatus {
                    version: config.version,
                    nodes: config.nodes.iter().map(|n| n.address()).collect(),
                    polls: 0,
                    changes: 0,
                    failures: 0,
                    fallbacks: 0,
                    last_error: None,
                    last_poll: None,
                    last_change: Instant::now(),
                    source,
                }),
                polling: Mutex::new(()),
                stopped: Mutex::new(false),
                wake: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Starts the poller thread: every `interval` it calls `tick`, which polls and
    /// says whether the client still exists (false ends the thread).
    pub(super) fn spawn(&self, interval: Duration, tick: impl Fn() -> bool + Send + 'static) {
        let shared = self.shared.clone();
        let interval = interval.max(Duration::from_millis(1));
        let spawned = std::thread::Builder::new()
            .name("ferrocache-discovery".into())
            .spawn(move || loop {
                {
                    let mut stopped = shared.stopped.lock();
                    if !*stopped {
                        shared.wake.wait_for(&mut stopped, interval);
                    }
                    if *stopped {
                        return;
                    }
                }
                if !tick() {
                    return;
                }
            });
        match spawned {
            Ok(t) => *self.thread.lock() = Some(t),
            Err(e) => log::error!(
                target: "ferrocache::client",
                "client: cluster discovery: cannot start the poller thread: {e}"
            ),
        }
    }

    /// What discovery has done so far.
    pub(super) fn status(&self) -> DiscoveryStatus {
        self.shared.status.lock().clone()
    }

    /// Tells the thread to end and waits for it (unless this is that thread: the
    /// last client may be dropped by the thread itself, right after a poll).
    pub(super) fn stop(&self) {
        *self.shared.stopped.lock() = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// The first configuration any of `endpoints` gives, and which one gave it.
pub(super) fn first_config(
    endpoints: &[NodeSpec],
    conn: &ConnOptions,
    tls: Option<&Connector>,
) -> Result<(ClusterConfig, String)> {
    let mut errors = Vec::new();
    for ep in endpoints {
        match fetch(ep, conn, tls) {
            Ok(c) => return Ok((c, ep.name())),
            Err(e) => errors.push(format!("{}: {e}", ep.name())),
        }
    }
    Err(Error::Discovery(errors.join("; ")))
}

/// The node list of `config` as a server list: each entry's address, once.
pub(super) fn specs_of(config: &ClusterConfig) -> Result<Vec<NodeSpec>> {
    let mut specs: Vec<NodeSpec> = Vec::with_capacity(config.nodes.len());
    for n in &config.nodes {
        let spec = NodeSpec::parse(&n.address())
            .map_err(|e| Error::Discovery(format!("entry {n}: {e}")))?;
        if !specs.iter().any(|s| s.name() == spec.name()) {
            specs.push(spec);
        }
    }
    Ok(specs)
}

/// Reads the configuration of one node over a connection of its own.
fn fetch(spec: &NodeSpec, conn: &ConnOptions, tls: Option<&Connector>) -> Result<ClusterConfig> {
    let payload = read_payload(spec, conn, tls)?
        .ok_or_else(|| Error::Discovery("no cluster configuration stored".into()))?;
    ClusterConfig::parse_payload(&payload)
        .map_err(|e| Error::Discovery(format!("bad cluster configuration: {e}")))
}

/// `config get cluster` on a new connection to `spec`; where the node does not know
/// the command, `get AmazonElastiCache:cluster` on another one (after an unknown
/// binary command the first may be out of step: see [`NodeConn::config_get`]).
fn read_payload(
    spec: &NodeSpec,
    conn: &ConnOptions,
    tls: Option<&Connector>,
) -> Result<Option<Vec<u8>>> {
    let mut c = NodeConn::connect(spec, conn, tls)?;
    match c.config_get()? {
        ConfigReply::Found(p) => Ok(Some(p)),
        ConfigReply::Empty => Ok(None),
        ConfigReply::Unknown => NodeConn::connect(spec, conn, tls)?.legacy_get(),
    }
}

/// What a node answered to `config get cluster`.
enum ConfigReply {
    /// The payload.
    Found(Vec<u8>),
    /// It holds no configuration.
    Empty,
    /// It does not know the command.
    Unknown,
}

impl Poller {
    /// One poll (the thread's or [`Client::refresh_cluster`](super::Client::refresh_cluster)'s):
    /// asks the endpoints in turn, then (if none answers) the nodes of
    /// the current list, and applies the configuration if its version is higher than
    /// the one in use by calling `apply` with the new list (`servers`: the list in
    /// use). `Ok(true)`: a new list was applied; `Ok(false)`: the version
    /// was not higher (nothing changes); `Err`: nobody gave a usable configuration
    /// and the list in use stays ([`Error::Discovery`], also when the client has a
    /// fixed list).
    pub(super) fn poll(
        &self,
        opts: &DiscoveryOptions,
        conn: &ConnOptions,
        tls: Option<&Connector>,
        servers: impl FnOnce() -> Vec<NodeSpec>,
        apply: impl FnOnce(Vec<NodeSpec>),
    ) -> Result<bool> {
        let shared = &self.shared;
        let _one = shared.polling.lock();
        let mut errors = Vec::new();
        let mut found = None;
        for ep in &opts.endpoints {
            match fetch(ep, conn, tls).and_then(|c| Ok((specs_of(&c)?, c))) {
                Ok(c) => {
                    found = Some((c, ep.name()));
                    break;
                }
                Err(e) => errors.push(format!("{}: {e}", ep.name())),
            }
        }
        let endpoint_failed = found.is_none();
        if endpoint_failed {
            let endpoints: Vec<String> = opts.endpoints.iter().map(NodeSpec::name).collect();
            for spec in servers() {
                if endpoints.contains(&spec.name()) {
                    continue;
                }
                match fetch(&spec, conn, tls).and_then(|c| Ok((specs_of(&c)?, c))) {
                    Ok(c) => {
                        found = Some((c, spec.name()));
                        break;
                    }
                    Err(e) => errors.push(format!("{}: {e}", spec.name())),
                }
            }
        }
        let mut st = shared.status.lock();
        st.polls += 1;
        st.last_poll = Some(Instant::now());
        if endpoint_failed {
            st.failures += 1;
            st.fallbacks += u64::from(found.is_some());
            st.last_error = Some(errors.join("; "));
            log::warn!(
                target: "ferrocache::client",
                "client: cluster discovery: no configuration endpoint answered ({}){}",
                errors.join("; "),
                if found.is_some() {
                    "; read the list from a known node"
                } else {
                    "; keeping the last list"
                }
            );
        }
        let Some(((specs, config), source)) = found else {
            return Err(Error::Discovery(errors.join("; ")));
        };
        if config.version <= st.version {
            return Ok(false);
        }
        let before = std::mem::take(&mut st.nodes);
        st.nodes = specs.iter().map(NodeSpec::name).collect();
        let added: Vec<&String> = st.nodes.iter().filter(|n| !before.contains(n)).collect();
        let removed: Vec<&String> = before.iter().filter(|n| !st.nodes.contains(n)).collect();
        log::info!(
            target: "ferrocache::client",
            "client: cluster configuration version {} (was {}) from {source}: {} node(s), added {added:?}, removed {removed:?}",
            config.version,
            st.version,
            specs.len()
        );
        apply(specs);
        st.version = config.version;
        st.changes += 1;
        st.last_change = Instant::now();
        st.source = source;
        Ok(true)
    }
}

impl NodeConn {
    /// `config get cluster` (binary: opcode 0x60). The connection is used for
    /// nothing after it: over binary, the request is followed by as many padding
    /// bytes as its key, because memcached answers an unknown command only after
    /// discarding that many bytes past the key (it would wait for them otherwise).
    fn config_get(&mut self) -> Result<ConfigReply> {
        if self.protocol == Protocol::Binary {
            self.bin_request(CONFIG_GET, CLUSTER_KEY, &[], &[], 0);
            self.out.extend_from_slice(&[0; CLUSTER_KEY.len()]);
            self.flush_out()?;
            let r = self.bin_response()?;
            return match r.status {
                0 if r.value.len() <= MAX_PAYLOAD => Ok(ConfigReply::Found(r.value)),
                0 => Err(proto_err("cluster configuration too large")),
                NOT_FOUND => Ok(ConfigReply::Empty),
                UNKNOWN_COMMAND => Ok(ConfigReply::Unknown),
                s => Err(bin_error(s, &r.value)),
            };
        }
        self.out.extend_from_slice(b"config get cluster\r\n");
        self.flush_out()?;
        let line = match self.text_reply() {
            Err(Error::Server(s)) if s == "ERROR" => return Ok(ConfigReply::Unknown),
            r => r?,
        };
        if line == b"END" {
            return Ok(ConfigReply::Empty);
        }
        let text = String::from_utf8_lossy(&line);
        let w: Vec<&str> = text.split(' ').collect();
        let len = match w.as_slice() {
            ["CONFIG", "cluster", _flags, len] => len.parse::<usize>().ok(),
            _ => None,
        }
        .ok_or_else(|| proto_err(format!("unexpected config reply {text:?}")))?;
        if len > MAX_PAYLOAD {
            return Err(proto_err("cluster configuration too large"));
        }
        let payload = self.read_data_block(len)?;
        match self.text_reply()?.as_slice() {
            b"END" => Ok(ConfigReply::Found(payload)),
            other => Err(proto_err(format!(
                "config get: {:?} instead of END",
                String::from_utf8_lossy(other)
            ))),
        }
    }

    /// `get AmazonElastiCache:cluster` (ElastiCache before 1.4.14).
    fn legacy_get(&mut self) -> Result<Option<Vec<u8>>> {
        let hits = self.get_many(&[LEGACY_KEY])?;
        Ok(hits
            .into_iter()
            .find(|(k, _)| k == LEGACY_KEY)
            .map(|(_, item)| item.value))
    }

    /// `config set cluster 0 <bytes>` with `payload` (binary: opcode 0x64).
    pub(super) fn config_set(&mut self, payload: &[u8]) -> Result<()> {
        if self.protocol == Protocol::Binary {
            let r = self.bin_call(CONFIG_SET, CLUSTER_KEY, &[0; 8], payload, 0)?;
            return match r.status {
                0 => Ok(()),
                s => Err(bin_error(s, &r.value)),
            };
        }
        use std::io::Write;
        let _ = write!(self.out, "config set cluster 0 {}\r\n", payload.len());
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\n");
        self.flush_out()?;
        match self.text_reply()?.as_slice() {
            b"STORED" => Ok(()),
            other => Err(proto_err(format!(
                "config set: {:?}",
                String::from_utf8_lossy(other)
            ))),
        }
    }
}

/// Reads and writes the cluster configuration of single nodes, with a client's
/// connection settings (protocol, timeouts, SASL, TLS): what `ferrocache-cli
/// cluster` uses. One connection per call.
#[derive(Debug)]
pub struct ConfigClient {
    conn: ConnOptions,
    tls: Option<Connector>,
}

impl ConfigClient {
    /// A config client connecting as `conn` says ([`Error::Tls`] when its
    /// certificate files cannot be used).
    pub fn new(conn: &ConnOptions) -> Result<ConfigClient> {
        Ok(ConfigClient {
            conn: conn.clone(),
            tls: conn.tls.as_ref().map(Connector::new).transpose()?,
        })
    }

    /// The configuration `node` holds (None: none).
    pub fn get(&self, node: &NodeSpec) -> Result<Option<ClusterConfig>> {
        match read_payload(node, &self.conn, self.tls.as_ref())? {
            None => Ok(None),
            Some(p) => ClusterConfig::parse_payload(&p)
                .map(Some)
                .map_err(|e| Error::Discovery(format!("bad cluster configuration: {e}"))),
        }
    }

    /// Stores `config` on `node` (the node keeps `config.version` if it is higher
    /// than its own, else its own + 1).
    pub fn set(&self, node: &NodeSpec, config: &ClusterConfig) -> Result<()> {
        let mut c = NodeConn::connect(node, &self.conn, self.tls.as_ref())?;
        c.config_set(&config.payload())
    }

    /// Sends one text-protocol command `line` (without its `\r\n`) to `node` over the
    /// client's transport (plain or TLS, its timeouts) and returns the one-line reply
    /// (an `ERROR`/`CLIENT_ERROR`/`SERVER_ERROR` line too): what `ferrocache-cli
    /// snapshot` sends. Text protocol, without SASL.
    pub fn text_command(&self, node: &NodeSpec, line: &str) -> Result<String> {
        let opts = ConnOptions {
            protocol: Protocol::Text,
            auth: None,
            ..self.conn.clone()
        };
        let mut c = NodeConn::connect(node, &opts, self.tls.as_ref())?;
        c.out.extend_from_slice(line.as_bytes());
        c.out.extend_from_slice(b"\r\n");
        c.flush_out()?;
        Ok(String::from_utf8_lossy(&c.read_line()?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::cluster::ClusterNode;

    #[test]
    fn specs_use_each_address_once() {
        let config = ClusterConfig {
            version: 3,
            nodes: [
                "a.example|10.0.0.1|11211",
                "b.example||11300",
                "c|10.0.0.1|11211",
            ]
            .iter()
            .chain(["v6|::1|11400"].iter())
            .map(|e| ClusterNode::parse(e).unwrap())
            .collect(),
        };
        let names: Vec<String> = specs_of(&config)
            .unwrap()
            .iter()
            .map(NodeSpec::name)
            .collect();
        assert_eq!(names, ["10.0.0.1:11211", "b.example:11300", "[::1]:11400"]);
    }
}
