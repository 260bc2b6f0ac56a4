//! `Client`: a client of a cluster of nodes. Each request is routed through the ring
//! (`ring`) to a node's pool of connections (`pool`, `node`); `get_many` goes once per
//! node; a failing node is ejected and its keys fail over; with discovery the node list
//! follows the cluster's configuration (`discovery`).

use super::discovery::{self, DiscoveryOptions, DiscoveryStatus};
use super::error::{Error, Result};
use super::node::{self, check_key, ConnOptions, Item, Protocol, StoreOp, StoreOutcome};
use super::pool::NodeStatus;
use super::ring;
use super::tls::TlsOptions;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::meta::Lease;
use super::pool::{Failed, Node};
use super::ring::{Distribution, NodeSpec, Ring};
use super::tls::Connector;

/// One node's `stats` answer: name/value pairs in the node's order.
pub type Stats = Vec<(String, String)>;

/// Everything a [`Client`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The nodes, in list order (order matters for `modula` and tie-breaking). With
    /// [`ClientConfig::discovery`], ignored: the list comes from the endpoint (see
    /// [`Client::servers`]).
    pub servers: Vec<NodeSpec>,
    /// How keys map to nodes.
    pub distribution: Distribution,
    /// Protocol, timeouts, SASL, TLS.
    pub conn: ConnOptions,
    /// Idle connections kept per node.
    pub max_idle_per_node: usize,
    /// Consecutive failures after which a node is ejected (libmemcached's
    /// `server_failure_limit`). Default 2.
    pub failure_limit: u32,
    /// How long an ejected node stays out (libmemcached's `retry_timeout`). Default 2 s.
    pub retry_timeout: Duration,
    /// Cluster auto discovery: where the node list is read from and how often
    /// ([`ClientConfig::discover`]); `None`: the fixed list `servers`.
    pub discovery: Option<DiscoveryOptions>,
}

impl ClientConfig {
    /// A configuration for `servers` (`host:port[:weight]`, comma- or space-separated)
    /// with the defaults: ketama-weighted, text protocol, 1 s timeouts.
    pub fn new(servers: &str) -> std::result::Result<ClientConfig, String> {
        Ok(ClientConfig {
            servers: ring::parse_servers(servers)?,
            distribution: Distribution::default(),
            conn: ConnOptions::default(),
            max_idle_per_node: 8,
            failure_limit: 2,
            retry_timeout: Duration::from_secs(2),
            discovery: None,
        })
    }

    /// A configuration whose node list is read from the configuration endpoint
    /// `endpoint` (`host:port`, or several, comma-separated, tried in turn) with
    /// `config get cluster` as ElastiCache's auto discovery does, and polled every
    /// minute ([`ClientConfig::with_poll_interval`]); otherwise the defaults of
    /// [`ClientConfig::new`]. See [`discovery`].
    pub fn discover(endpoint: &str) -> std::result::Result<ClientConfig, String> {
        let mut cfg = ClientConfig::new(endpoint)?;
        cfg.discovery = Some(DiscoveryOptions {
            endpoints: std::mem::take(&mut cfg.servers),
            interval: discovery::DEFAULT_INTERVAL,
        });
        Ok(cfg)
    }

    /// The same configuration polling the endpoint every `interval` (with
    /// [`ClientConfig::discover`]; no effect on a fixed list).
    pub fn with_poll_interval(mut self, interval: Duration) -> ClientConfig {
        if let Some(d) = &mut self.discovery {
            d.interval = interval;
        }
        self
    }

    /// The same configuration, connecting to every node over TLS with `tls` (sets
    /// `conn.tls`).
    pub fn with_tls(mut self, tls: TlsOptions) -> ClientConfig {
        self.conn.tls = Some(tls);
        self
    }
}

/// The nodes of now and the ring over the live ones; replaced whole when a node is
/// ejected or comes back, or discovery applies a new list.
struct Topology {
    /// The nodes, in list order.
    servers: Vec<NodeSpec>,
    /// Their pools and health (`nodes[i]` is `servers[i]`); a node that stays in a
    /// new list keeps its `Arc`.
    nodes: Vec<Arc<Node>>,
    /// Indices into `nodes`.
    ring: Ring,
}

struct Inner {
    cfg: ClientConfig,
    /// Built from `cfg.conn.tls`, shared by every connection.
    tls: Option<Connector>,
    topo: RwLock<Arc<Topology>>,
    /// Earliest time an ejected node is due back (None: all live).
    recheck_at: Mutex<Option<Instant>>,
    /// The poller and its counters, with [`ClientConfig::discovery`].
    discovery: Option<discovery::Poller>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(d) = &self.discovery {
            d.stop();
        }
    }
}

/// A cluster client. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.inner.topo.read().servers)
            .field("distribution", &self.inner.cfg.distribution)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `cfg` (no connection is opened until the first request). With
    /// `cfg.conn.tls`, reads the certificate and key files now: [`Error::Tls`] when
    /// one cannot be read or used. With `cfg.discovery`, reads the node list from the
    /// endpoint now ([`Error::Discovery`] or the last endpoint's error when none
    /// gives one) and starts the poller thread, which ends when the last clone of
    /// the client is dropped.
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        let tls = cfg.conn.tls.as_ref().map(Connector::new).transpose()?;
        let (servers, found) = match &cfg.discovery {
            None => (cfg.servers.clone(), None),
            Some(d) => {
                let found = discovery::first_config(&d.endpoints, &cfg.conn, tls.as_ref())?;
                (discovery::specs_of(&found.0)?, Some(found))
            }
        };
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let nodes = servers
            .iter()
            .cloned()
            .map(|s| Arc::new(Node::new(s)))
            .collect();
        let ring = Ring::new(cfg.distribution, &servers);
        let poller = found.map(|(config, source)| discovery::Poller::new(&config, source));
        let client = Client {
            inner: Arc::new(Inner {
                cfg,
                tls,
                topo: RwLock::new(Arc::new(Topology {
                    servers,
                    nodes,
                    ring,
                })),
                recheck_at: Mutex::new(None),
                discovery: poller,
            }),
        };
        if let (Some(poller), Some(opts)) = (&client.inner.discovery, &client.inner.cfg.discovery) {
            let weak = Arc::downgrade(&client.inner);
            poller.spawn(opts.interval, move || match weak.upgrade() {
                // Failures are counted and logged by the poll itself.
                Some(inner) => Client { inner }.refresh_cluster().map_or(true, |_| true),
                None => false,
            });
        }
        Ok(client)
    }

    /// What discovery has done (None: the client has a fixed node list).
    pub fn discovery(&self) -> Option<DiscoveryStatus> {
        self.inner.discovery.as_ref().map(discovery::Poller::status)
    }

    /// Polls now: asks the endpoints in turn, then (if none answers) the nodes of
    /// the current list, and applies the configuration if its version is higher than
    /// the one in use. `Ok(true)`: a new list was applied; `Ok(false)`: the version
    /// was not higher (nothing changes); `Err`: nobody gave a usable configuration
    /// and the list in use stays ([`Error::Discovery`], also when the client has a
    /// fixed list).
    pub fn refresh_cluster(&self) -> Result<bool> {
        let (Some(poller), Some(opts)) = (&self.inner.discovery, &self.inner.cfg.discovery) else {
            return Err(Error::Discovery("this client has a fixed node list".into()));
        };
        poller.poll(
            opts,
            &self.inner.cfg.conn,
            self.inner.tls.as_ref(),
            || self.servers(),
            |specs| self.apply(specs),
        )
    }

    /// Replaces the node list: a node whose `host:port` is in both lists keeps its
    /// pool and health; the ring is rebuilt over the new list.
    fn apply(&self, specs: Vec<NodeSpec>) {
        let mut topo = self.inner.topo.write();
        let nodes: Vec<Arc<Node>> = specs
            .iter()
            .map(|s| {
                topo.nodes
                    .iter()
                    .find(|n| n.spec.name() == s.name())
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Node::new(s.clone())))
            })
            .collect();
        *topo = Arc::new(self.topology(specs, nodes));
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// The nodes and ring for now, bringing back nodes whose retry time has passed.
    fn ring(&self) -> Arc<Topology> {
        let due = *self.inner.recheck_at.lock();
        if due.is_some_and(|t| Instant::now() >= t) {
            self.rebuild_ring();
        }
        self.inner.topo.read().clone()
    }

    /// A new ring over the live nodes of the current list.
    fn rebuild_ring(&self) {
        let mut topo = self.inner.topo.write();
        let servers = topo.servers.clone();
        let nodes = topo.nodes.clone();
        *topo = Arc::new(self.topology(servers, nodes));
    }

    /// `servers` and their `nodes` with the ring over the live ones (and the next
    /// time an ejected one is due back noted). Called with the topology lock held.
    fn topology(&self, servers: Vec<NodeSpec>, nodes: Vec<Arc<Node>>) -> Topology {
        let now = Instant::now();
        let limit = self.inner.cfg.failure_limit;
        let live: Vec<bool> = nodes.iter().map(|n| n.live_at(now, limit).0).collect();
        let next = nodes.iter().filter_map(|n| n.retry_at()).min();
        let ring = Ring::with_live(self.inner.cfg.distribution, &servers, &live);
        *self.inner.recheck_at.lock() = next;
        Topology {
            servers,
            nodes,
            ring,
        }
    }

    /// The node list in use now: the configured one, or the one discovery last
    /// applied.
    pub fn servers(&self) -> Vec<NodeSpec> {
        self.inner.topo.read().servers.clone()
    }

    /// The index (into [`Client::servers`]) of the node `key` maps to now (None: no
    /// live node).
    pub fn locate(&self, key: &[u8]) -> Option<usize> {
        self.ring().ring.locate(key)
    }

    /// `host:port` of the node `key` maps to now.
    pub fn locate_name(&self, key: &[u8]) -> Option<String> {
        let topo = self.ring();
        topo.ring.locate(key).map(|i| topo.servers[i].name())
    }

    /// Health and counters of every node, in list order.
    pub fn node_status(&self) -> Vec<NodeStatus> {
        self.inner
            .topo
            .read()
            .nodes
            .iter()
            .map(|n| n.status())
            .collect()
    }

    /// Runs `f` on a connection to `node`, keeping the node's health.
    fn call<T>(
        &self,
        node: &Node,
        f: &mut dyn FnMut(&mut node::NodeConn) -> Result<T>,
    ) -> (Result<T>, bool) {
        let cfg = &self.inner.cfg;
        let result = node
            .checkout(&cfg.conn, self.inner.tls.as_ref())
            .and_then(|mut conn| {
                let r = f(&mut conn);
                // Only a connection known to be between requests goes back: after a
                // reply or an error reply; not after I/O, protocol, auth or TLS errors.
                if matches!(&r, Ok(_) | Err(Error::Server(_))) {
                    node.checkin(conn, cfg.max_idle_per_node);
                }
                r
            });
        match &result {
            Err(e) if e.is_node_failure() => {
                log::debug!("client: node {} failed: {e}", node.spec.name());
                // Out of the ring now (ejected by this request or a concurrent one):
                // the caller may retry on the key's new owner.
                // (Rebuilt in both cases: the request that ejected it may not have
                // published the new ring yet.)
                let out = match node.failed(cfg.failure_limit, cfg.retry_timeout) {
                    Failed::Ejected | Failed::AlreadyOut => {
                        self.rebuild_ring();
                        true
                    }
                    Failed::Counted => false,
                };
                (result, out)
            }
            _ => {
                node.succeeded();
                (result, false)
            }
        }
    }

    /// Runs `f` on the node that holds `key`; if that node fails and is out of the
    /// ring (ejected by this request or a concurrent one), once more on the key's new
    /// owner.
    fn on_key<T>(
        &self,
        key: &[u8],
        mut f: impl FnMut(&mut node::NodeConn) -> Result<T>,
    ) -> Result<T> {
        check_key(key, self.inner.cfg.conn.protocol)?;
        let mut last = Error::NoServers;
        for _ in 0..2 {
            let topo = self.ring();
            let Some(idx) = topo.ring.locate(key) else {
                return Err(last);
            };
            let (r, ejected) = self.call(&topo.nodes[idx], &mut f);
            match r {
                Err(e) if ejected => last = e,
                r => return r,
            }
        }
        Err(last)
    }

    /// Reads one key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Item>> {
        let mut hits = self.on_key(key, |c| c.get_many(&[key]))?;
        Ok(hits.pop().map(|(_, item)| item))
    }

    /// Reads many keys: grouped by node, one pipelined round trip per node. Keys on
    /// a node that fails are reported missing (the failure is counted and logged).
    pub fn get_many(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, Item>> {
        let protocol = self.inner.cfg.conn.protocol;
        for k in keys {
            check_key(k, protocol)?;
        }
        let mut found = HashMap::new();
        let mut pending: Vec<&[u8]> = keys.to_vec();
        for _ in 0..2 {
            let topo = self.ring();
            let mut by_node: HashMap<usize, Vec<&[u8]>> = HashMap::new();
            for k in &pending {
                let idx = topo.ring.locate(k).ok_or(Error::NoServers)?;
                by_node.entry(idx).or_default().push(k);
            }
            let mut retry = Vec::new();
            for (idx, ks) in by_node {
                let (r, ejected) = self.call(&topo.nodes[idx], &mut |c| c.get_many(&ks));
                match r {
                    Ok(hits) => found.extend(hits),
                    Err(e) if ejected => {
                        log::debug!("client: get_many retries {} key(s): {e}", ks.len());
                        retry.extend(ks);
                    }
                    Err(e) if e.is_node_failure() => {
                        log::debug!("client: get_many lost {} key(s): {e}", ks.len());
                    }
                    Err(e) => return Err(e),
                }
            }
            if retry.is_empty() {
                break;
            }
            pending = retry;
        }
        Ok(found)
    }

    fn store(
        &self,
        mode: StoreOp,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: u32,
    ) -> Result<StoreOutcome> {
        self.on_key(key, |c| c.store(mode, key, value, flags, ttl))
    }

    /// Stores unconditionally.
    pub fn set(&self, key: &[u8], value: &[u8], flags: u32, ttl: u32) -> Result<()> {
        match self.store(StoreOp::Set, key, value, flags, ttl)? {
            StoreOutcome::Stored => Ok(()),
            other => Err(Error::Server(format!("set: {other:?}"))),
        }
    }

    /// Stores if absent; false when the key exists.
    pub fn add(&self, key: &[u8], value: &[u8], flags: u32, ttl: u32) -> Result<bool> {
        Ok(self.store(StoreOp::Add, key, value, flags, ttl)? == StoreOutcome::Stored)
    }

    /// Stores if present; false when the key is missing.
    pub fn replace(&self, key: &[u8], value: &[u8], flags: u32, ttl: u32) -> Result<bool> {
        Ok(self.store(StoreOp::Replace, key, value, flags, ttl)? == StoreOutcome::Stored)
    }

    /// Stores if the item still has CAS unique `cas` (from [`Item::cas`]).
    pub fn cas(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: u32,
        cas: u64,
    ) -> Result<StoreOutcome> {
        self.store(StoreOp::Cas(cas), key, value, flags, ttl)
    }

    /// Appends to a present value; false when the key is missing.
    pub fn append(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Append, key, value, 0, 0)? == StoreOutcome::Stored)
    }

    /// Prepends to a present value; false when the key is missing.
    pub fn prepend(&self, key: &[u8], value: &[u8]) -> Result<bool> {
        Ok(self.store(StoreOp::Prepend, key, value, 0, 0)? == StoreOutcome::Stored)
    }

    /// Deletes; false when the key was not there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.on_key(key, |c| c.delete(key))
    }

    /// Adds `delta` to a decimal value; `None` when the key is missing.
    pub fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.on_key(key, |c| c.arith(true, key, delta))
    }

    /// Subtracts `delta` (stopping at 0); `None` when the key is missing.
    pub fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>> {
        self.on_key(key, |c| c.arith(false, key, delta))
    }

    /// Sets a new expiry; false when the key is missing.
    pub fn touch(&self, key: &[u8], ttl: u32) -> Result<bool> {
        self.on_key(key, |c| c.touch(key, ttl))
    }

    /// `mg <key> v f c N<vivify> [R<recache>]` ([`Protocol::Meta`] only).
    pub(crate) fn lease(&self, key: &[u8], vivify: u32, recache: u32) -> Result<Option<Lease>> {
        self.require_meta()?;
        self.on_key(key, |c| c.meta_lease(key, vivify, recache))
    }

    /// `md <key> C<cas>` ([`Protocol::Meta`] only): deletes only that version.
    pub(crate) fn delete_if_cas(&self, key: &[u8], cas: u64) -> Result<bool> {
        self.require_meta()?;
        self.on_key(key, |c| c.meta_delete(key, Some(cas)))
    }

    /// `md <key> I` ([`Protocol::Meta`] only): marks the item stale (its expiry stays).
    pub(crate) fn mark_stale(&self, key: &[u8]) -> Result<bool> {
        self.require_meta()?;
        self.on_key(key, |c| c.meta_mark_stale(key))
    }

    fn require_meta(&self) -> Result<()> {
        if self.inner.cfg.conn.protocol == Protocol::Meta {
            Ok(())
        } else {
            Err(Error::Server("needs Protocol::Meta".into()))
        }
    }

    /// `flush_all` on every live node; the first error, if any.
    pub fn flush_all(&self, delay: u32) -> Result<()> {
        let topo = self.ring(); // bring back nodes that are due
        let mut first = None;
        for node in &topo.nodes {
            if !node.status().live {
                continue;
            }
            if let (Err(e), _) = self.call(node, &mut |c| c.flush_all(delay)) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// `stats [group]` of every node (ejected ones are asked too), in list order.
    pub fn stats(&self, group: &str) -> Vec<(String, Result<Stats>)> {
        let topo = self.inner.topo.read().clone();
        (topo.nodes.iter())
            .map(|node| (node.spec.name(), self.call(node, &mut |c| c.stats(group)).0))
            .collect()
    }

    /// The version of every node, in list order.
    pub fn versions(&self) -> Vec<(String, Result<String>)> {
        let topo = self.inner.topo.read().clone();
        (topo.nodes.iter())
            .map(|node| (node.spec.name(), self.call(node, &mut |c| c.version()).0))
            .collect()
    }
}
