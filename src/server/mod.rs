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

mod binary_exec;
pub mod budget;
pub mod cluster;
mod conn;
mod conn_auth;
pub mod dump;
mod exec;
mod flow;
mod insight_stats;
mod listener;
pub mod loopback;
mod meta_exec;
mod metrics;
mod metrics_http;
pub mod observe;
pub mod session;
mod shared;
pub mod snapshot;
pub mod snapshot_dirs;
mod start;
mod stats_exec;
pub mod transport;
mod turn;
pub mod vlog;
pub mod watch;
mod worker;

pub use listener::Listeners;
pub use shared::{store_config, ConnInfo, Shared, StopReason, STATE_NAMES};
pub use start::{Server, ServerHandle};
