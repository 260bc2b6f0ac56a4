//! ferrocache: a memcached-compatible, multi-threaded cache server.
//!
//! Where things are:
//! - [`auth`]: SASL credentials file and per-connection SASL exchanges (PLAIN, SCRAM).
//! - [`config`]: command line and `memcached.conf`.
//! - [`daemon`]: root check, privilege drop, daemonizing, pid file, rlimits.
//! - [`protocol`]: pure parsers and reply composers (text, later meta and binary).
//! - [`store`]: the sharded, slab-allocated item store and the server clock.
//! - [`server`]: listeners, per-core `mio` workers, connections, command execution.
//! - [`stats`]: counters and the `stats` command's output.
#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod config;
pub mod daemon;
pub mod protocol;
pub mod server;
pub mod stats;
pub mod store;
