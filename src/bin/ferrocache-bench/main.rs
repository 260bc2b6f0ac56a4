//! `ferrocache-bench`: the load generator and the side-by-side comparison with
//! memcached. Loopback only; every run is bounded by a request count and a duration.
//!
//! Subcommands:
//! - `run`: drive one server with a workload, print a live progress line and a final
//!   table (ops/s, p50/p99/p99.9 latency), optionally JSON.
//! - `compare`: start memcached and ferrocache with the same `-t`/`-m` on 127.0.0.1,
//!   pin servers and generator to different cores, run every workload on both in turns,
//!   print medians, ratios and server CPU time per operation. `--tls`: both servers with
//!   `-Z`, the load generator over TLS (rustls), plus a handshake workload.
//! - `memory`: RSS per item after storing N items in each server.
//! - `hitratio`: cache-aside miss ratios swept over cache sizes and workload shapes;
//!   `--write-trace` exports the traces for libCacheSim (`tests/tools/libcachesim_yardstick.py`).
//! - `soak`: real clients, faults, SIGHUP and flushes for a while; invariants checked throughout.
//! - `latency-check`: ferrocache's `stats latency` p50/p90/p99 beside a client's
//!   measurements less the round trip (issue #17's accuracy target).
//! - `insight`: accuracy of `stats sizing` (estimates at -m 16 against real runs at 32
//!   and 64) and of `stats hotkeys` (recall of the true top 10) on Zipf traces.
//! - `dbload`: the load a cache takes off a database (examples/db_cache's application
//!   threads against SQLite or PostgreSQL with no cache, memcached, ferrocache):
//!   database queries/s, reads without the database, p50/p99, stale reads.
//! - `snapshot`: warm restart (save/load time beside `dd`, RSS) and workload (a) during online snapshots.
#![forbid(unsafe_code)]

mod compare;
mod cpu;
mod dbload;
mod handshake;
mod hist;
mod hitratio;
mod inproc;
mod insight;
mod latcheck;
mod load;
mod memory;
#[allow(dead_code)] // shared by the subcommands; not every helper is used by each
mod replay_row;
mod servers;
mod snapshot;
mod soak;
mod stream;
mod textconn;
mod tls;
mod trace;
mod wire;
mod zipf;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "ferrocache-bench",
    version,
    about = "Load generator and memcached comparison for ferrocache"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Drive one server with a workload.
    Run(load::Args),
    /// Side-by-side comparison with memcached.
    Compare(compare::Args),
    /// RSS per item after a fill.
    Memory(memory::Args),
    /// Cache-aside miss ratios over cache sizes x workloads, memcached vs ferrocache.
    Hitratio(hitratio::Args),
    /// Soak test: mixed load and faults for a while, invariants checked throughout.
    Soak(soak::Args),
    /// Accuracy of stats sizing and stats hotkeys against real runs and the trace.
    Insight(insight::Args),
    /// Warm restart and online snapshots: save/load time, RSS, dd, p99 during snapshots.
    Snapshot(snapshot::Args),
    /// `stats latency` against what a client measures (less the round trip).
    LatencyCheck(latcheck::Args),
    /// Database load with no cache, memcached and ferrocache: queries/s, latency, stale reads.
    Dbload(dbload::Args),
}

#[path = "../common/docs.rs"]
mod docs;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = docs::answer(<Cli as clap::CommandFactory>::command(), &args) {
        return code;
    }
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run_command(a),
        Cmd::Compare(a) => compare::main(a),
        Cmd::Memory(a) => memory::main(a),
        Cmd::Hitratio(a) => hitratio::main(a),
        Cmd::Soak(a) => soak::main(a),
        Cmd::Insight(a) => insight::main(a),
        Cmd::Snapshot(a) => snapshot::main(a),
        Cmd::LatencyCheck(a) => latcheck::main(a),
        Cmd::Dbload(a) => dbload::main(a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocache-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `run`: a load, or handshakes alone (`--handshakes`).
fn run_command(args: load::Args) -> Result<(), String> {
    let cfg = load::LoadConfig::try_from(&args)?;
    let r = if args.handshakes {
        crate::handshake::run_handshakes_with(&cfg, &mut || {})?
    } else {
        load::run_load(&cfg)?
    };
    if args.json {
        println!("{}", r.to_json());
    } else {
        print!("{}", r.table());
    }
    if let Some(e) = &r.first_error {
        eprintln!("first error: {e}");
    }
    if r.errors > 0 {
        return Err(format!("{} errors", r.errors));
    }
    if r.ops == 0 {
        return Err("no operation completed".into());
    }
    Ok(())
}
