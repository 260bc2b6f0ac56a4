//! A memcached cluster client: keys sharded across nodes with the consistent hashing
//! libmemcached, twemproxy, pylibmc and pymemcache use, so a fleet shared with those
//! clients agrees on where every key lives.
//!
//! ```text
//!   Client ── ring (Distribution over the live nodes) ── key → node index
//!     │
//!     ├─ node 0: idle connections (pool) + health (failures, ejected until)
//!     ├─ node 1: ...                        text, binary or meta protocol, SASL
//!     └─ node N-1
//! ```
//!
//! - [`ring`]: the distributions (`ketama-weighted` default, `ketama`, `spymemcached`,
//!   `modula`, `rendezvous`) and the `host:port[:weight]` node list.
//! - Requests go to the node the ring names, over a pooled blocking connection with
//!   connect and read timeouts. [`Client::get_many`] groups keys per node: one
//!   pipelined round trip per node.
//! - Failover as libmemcached's `REMOVE_FAILED_SERVERS`: a node that fails
//!   [`ClientConfig::failure_limit`] times in a row leaves the ring (its keys move to
//!   the next points; a request that fails on a node that is out of the ring is retried once on the new
//!   owner) and comes back after [`ClientConfig::retry_timeout`]. Ejections and returns
//!   are logged (`log` crate, target `ferrocache::client`) and counted
//!   ([`Client::node_status`]).
//! - [`cache`]: cache-aside and write-through helpers; over [`Protocol::Meta`],
//!   [`Client::get_or_set_with`] and [`CacheAside::get_or_load`] are stampede-safe
//!   (memcached's `mg` `N`/`R` flags: one caller reloads, the others serve the old
//!   value or wait for it).
//! - TLS (memcached's or ferrocache's `-Z`) is opt-in: [`ClientConfig::with_tls`] (or
//!   the field `conn.tls`) with a [`TlsOptions`]: the CA file to trust (default: the
//!   system's roots), a client certificate and key for mutual TLS, the name to check
//!   the nodes' certificates against (default: each node's host; an IP address host is
//!   checked against the certificate's IP addresses). The rustls configuration is built
//!   once, in [`Client::new`] (which reports unreadable files), and shared by every
//!   connection; text, binary and meta protocols and SASL run over it unchanged. A
//!   refused handshake is an [`Error::Tls`] with rustls' reason.
//! - [`discovery`]: ElastiCache-style cluster auto discovery.
//!   [`ClientConfig::discover`] names a configuration endpoint (any node; several,
//!   comma-separated, are tried in turn) instead of the node list: [`Client::new`]
//!   reads the list with `config get cluster` (the legacy
//!   `get AmazonElastiCache:cluster` where a node does not know it), builds the ring
//!   over the entries' addresses, and a poller thread asks again every
//!   [`DiscoveryOptions::interval`] (default 60 s). Only a higher version is applied;
//!   nodes that stay keep their pools and health, and with the ketama distributions
//!   only the keys of added or removed nodes move. When no endpoint answers, the
//!   known nodes are asked; when nobody does, the list in use stays (logged, counted
//!   in [`Client::discovery`]). SASL and TLS apply to the endpoint too. The thread
//!   ends when the last clone of the client is dropped.
//!
//! ```no_run
//! use ferrocache::client::{Client, ClientConfig};
//! let client = Client::new(ClientConfig::new("10.0.0.1:11211,10.0.0.2:11211:2")?)?;
//! client.set(b"greeting", b"hello", 0, 300)?;
//! assert_eq!(client.get(b"greeting")?.map(|i| i.value), Some(b"hello".to_vec()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Over TLS, trusting one CA and presenting a client certificate (mutual TLS):
//!
//! ```no_run
//! use ferrocache::client::{Client, ClientConfig, TlsOptions};
//! let tls = TlsOptions::new()
//!     .ca_file("/etc/ferrocache/ca.pem") // without it: the system's roots
//!     .client_cert("/etc/ferrocache/client.pem", "/etc/ferrocache/client.key");
//! let cfg = ClientConfig::new("cache1.example:11211,cache2.example:11211")?.with_tls(tls);
//! let client = Client::new(cfg)?;
//! client.set(b"greeting", b"hello", 0, 300)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The node list from a configuration endpoint, polled every 30 s:
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrocache::client::{Client, ClientConfig};
//! let cfg = ClientConfig::discover("cfg.example:11211")?.with_poll_interval(Duration::from_secs(30));
//! let client = Client::new(cfg)?; // reads `config get cluster` now
//! client.set(b"greeting", b"hello", 0, 300)?;
//! let st = client.discovery().expect("discovering");
//! println!("version {} with {:?}; {} failed polls", st.version, st.nodes, st.failures);
//! client.refresh_cluster()?; // poll now instead of waiting
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cache;
mod cluster;
pub mod discovery;
mod error;
mod meta;
mod node;
mod pool;
pub mod ring;
mod tls;

pub use cache::CacheAside;
pub use cluster::{Client, ClientConfig};
pub use discovery::{DiscoveryOptions, DiscoveryStatus};
pub use error::{Error, Result};
pub use node::{check_key, ConnOptions, Item, Protocol, SaslAuth, StoreOp, StoreOutcome};
pub use pool::NodeStatus;
pub use tls::TlsOptions;
