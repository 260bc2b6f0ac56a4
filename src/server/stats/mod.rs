//! What an operator reads: the `stats` rows of every group (`rows`), `stats hotkeys`,
//! `stats sizing` and `stats misses` (`insight`), Prometheus' `/metrics` (`metrics`),
//! memcached's `-vv` log (`vlog`).

mod insight;
pub mod metrics;
pub mod rows;
pub mod vlog;
