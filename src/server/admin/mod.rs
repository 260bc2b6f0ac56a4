//! What an operator drives beside the cache: the cluster configuration served to
//! auto-discovery clients, the `lru_crawler` and its `metadump` stream, `watch` log
//! streams, snapshots. Below `Shared`, which holds their state.

pub mod cluster;
pub mod dump;
pub mod snapshot;
pub mod snapshot_dirs;
pub mod watch;
