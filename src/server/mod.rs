//! Listeners, per-core workers and connections.
//!
//! ```text
//!                 ┌──────────── acceptor thread ────────────┐
//!   listeners ──▶ │ mio Poll: TCP (-l/-p) + unix (-s)        │  -c limit: "ERROR Too many
//!                 │ accept → round-robin to a worker         │  open connections", close
//!                 └───────┬──────────────────────────┬───────┘
//!                         │ mailbox: crossbeam queue + mio Waker
//!              ┌──────────▼─────────┐       ┌─────────▼──────────┐
//!              │ worker 0 (mio Poll)│  ...  │ worker N-1         │
//!              │ Conn: read → parse │       │                    │
//!              │ → execute → reply  │       │                    │
//!              │ one write a batch  │       │                    │
//!              └──────────┬─────────┘       └─────────┬──────────┘
//!                         └──── lock one shard, briefly ┘
//!                                  Store (store::Store)
//! ```
//!
//! A maintenance thread ticks the clock once a second and reclaims expired items in the
//! background. `Server::start` returns a [`ServerHandle`]; [`ServerHandle::wait`] blocks
//! until SIGTERM/SIGINT or the `shutdown` command, then everything stops: listeners
//! close first, workers flush what they have buffered, threads are joined. With
//! `--metrics-listen`, one more thread serves Prometheus' `/metrics` (`metrics_http`,
//! rendered from the `stats` rows by `metrics`).
//!
//! The folders, bottom to top (no file imports one above it):
//! - `budget.rs`, `flow.rs`: the buffer budget of all connections; what an executor
//!   tells the connection (`Flow`) and the version strings.
//! - `admin/`: state and streams an operator drives: the cluster configuration
//!   (`cluster`), `lru_crawler` and `metadump` (`dump`), `watch`, snapshots
//!   (`snapshot`, `snapshot_dirs`).
//! - `shared.rs`: `Shared`, what every thread holds.
//! - `stats/`: `stats` rows (`rows`), `stats hotkeys|sizing|misses` (`insight`),
//!   `/metrics` (`metrics`), the `-vv` log (`vlog`).
//! - `observe.rs`: the one place every executed operation is seen (`Op`, `observe`):
//!   counters, miss reasons, prefix stats, watch lines, `-vv`, a tap.
//! - `exec/`: executors of a parsed request against the store: `text`, `meta`, `binary`.
//! - `session/`: a connection's protocol state free of I/O (`turn`: what a turn of
//!   it may do), its authentication (`auth`), its metadump and watch streams (`streams`).
//! - `net/`: listeners, workers, connections over a `transport`, the in-memory
//!   `loopback` peer, the `/metrics` HTTP listener.
//! - `start.rs`: `Server`, `ServerHandle`, the maintenance thread.

mod admin;
pub mod budget;
mod exec;
mod flow;
mod net;
pub mod observe;
pub mod session;
mod shared;
mod start;
mod stats;

pub use admin::{cluster, dump, snapshot, snapshot_dirs, watch};
pub use net::{loopback, transport};
pub use stats::vlog;

pub use net::listener::Listeners;
pub use shared::{store_config, ConnInfo, Shared, StopReason, STATE_NAMES};
pub use start::{Server, ServerHandle};
