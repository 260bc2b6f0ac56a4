//! The integration tests, one binary: a module per area (`cargo test --release --test
//! suite <area>::` runs one area, e.g. `binary_protocol::`), so the crate and the
//! harness are compiled and linked once rather than once per file. Tests run on
//! `--test-threads` threads (the machine's cores) as before; `tests/zz_skip_summary.rs`
//! runs after this binary and lists the tests that skipped.
//!
//! `common` is the harness (servers, clients, skips, TLS material, transcripts) and
//! `help_flags` what `ferrocache -h` lists; every other module is an area of tests.

mod common;
mod help_flags;

mod ascii_auth;
mod auth_passwd;
mod bench_reports;
mod bench_smoke;
mod binary_protocol;
mod cli;
mod client_api;
mod client_cluster;
mod client_discovery;
mod client_meta;
mod client_ring;
mod client_tls;
mod cluster_config;
mod concurrency;
mod db_cache;
mod expiry;
mod harness_selfcheck;
mod hit_ratio;
mod hostile_clients;
mod hostile_fleet_files;
mod insight;
mod interop;
mod lifecycle;
mod logging;
mod lru_crawler;
mod malformed;
mod memcached_suite;
mod memory;
mod meta_protocol;
mod metrics;
mod observe;
mod overload;
mod packaging;
mod pipelining;
mod readme;
mod sasl;
mod sasl_interop;
mod session_replay;
mod snapshot;
mod startup_refusals;
mod stats_parity;
mod store_pressure;
mod text_transcripts;
mod tls;
mod watch;
