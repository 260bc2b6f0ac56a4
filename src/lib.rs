//! ferrocache: a memcached-compatible, multi-threaded cache server.
//!
//! Where things are:
//! - [`auth`]: SASL credentials file and per-connection SASL exchanges (PLAIN, SCRAM).
//! - [`client`]: the cluster client (consistent hashing over memcached/ferrocache nodes).
//! - [`config`]: command line and `memcached.conf`, `-h` and the man page.
//! - [`daemon`]: root check, privilege drop, daemonizing, pid file, rlimits.
//! - [`latency`]: per-command-family latency histograms (`stats latency`, `/metrics`).
//! - [`insight`]: hot keys, the miss-ratio curve (`stats sizing`), why lookups missed.
//! - [`notify`]: readiness and shutdown notices to systemd (`Type=notify`).
//! - [`limits`]: memcached's key length, item header and item-size rule (bottom).
//! - [`num`]: memcached's C number parsing (`safe_strto*`) (bottom).
//! - [`op`]: the vocabulary store, protocol and client share (`StoreOp`, `Delta`).
//! - [`policy`]: the eviction policy's rules, shared by the store and the sizing simulation.
//! - [`protocol`]: pure parsers and reply composers (text, meta, binary).
//! - [`store`]: the sharded item store (log-structured segments, S3-FIFO) and the clock.
//! - [`server`]: listeners, per-core `mio` workers, connections, command execution.
//! - [`stats`]: counters and the `stats` command's output.
//! - [`tls`]: `-Z`: memcached's `ssl_*` settings as a rustls configuration, reloads.
//!
//! Cargo features: `server` (every module but the client, and what the binaries
//! need) and `client` ([`client`] alone); both are on by default. An application
//! that only talks to a cache fleet depends on
//! `ferrocache = { version = "0.1", default-features = false, features = ["client"] }`
//! and compiles none of the server.
#![deny(missing_docs)]
// No `unsafe` is needed anywhere; this keeps it so until a measurement says otherwise.
#![forbid(unsafe_code)]
// The module list above links to modules a client-only build leaves out.
#![cfg_attr(
    not(feature = "server"),
    allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)
)]

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod daemon;
#[cfg(feature = "server")]
pub mod insight;
#[cfg(feature = "server")]
pub mod latency;
pub mod limits;
#[cfg(feature = "server")]
pub mod notify;
#[cfg(any(feature = "server", feature = "client"))]
pub mod num;
pub mod op;
#[cfg(feature = "server")]
pub mod policy;
#[cfg(any(feature = "server", feature = "client"))]
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod stats;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod tls;

/// The README's Rust examples, compiled (and, unless `no_run`, run) as doctests so
/// that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
