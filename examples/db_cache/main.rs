//! `db_cache`: a small application over a real database — SQLite (a file, no set-up)
//! or PostgreSQL — with ferrocache's client in front of it, showing the patterns
//! operators use and what each does to the database and to the freshness of what the
//! application serves.
//!
//! ```sh
//! cargo run --release --example db_cache                # SQLite, a ferrocache in this process
//! cargo run --release --example db_cache -- --db "postgres:host=127.0.0.1 user=ferrocache password=ferrocache dbname=ferrocache"
//! cargo run --release --example db_cache -- --servers 127.0.0.1:11211   # a running memcached/ferrocache
//! cargo run --release --example db_cache -- load --servers 127.0.0.1:11211 --pattern naive
//! ```
//!
//! Without `--servers` a ferrocache server runs inside the example (the library's
//! `Server`, on a free loopback port, with `-o debugtime` so the demo can move its
//! clock past a TTL).
//!
//! - the walk-through (default, `demo.rs`): lazy loading with a TTL, negative caching,
//!   write-through, invalidation by delete and by set-on-write with the race each has
//!   and the client's helper that closes it, stampede protection (leases,
//!   stale-while-revalidate), and a session store shared by several processes;
//! - `load` (`load.rs`): application threads under a Zipf read-mostly load through one
//!   pattern; database queries, latency, stale reads (`ferrocache-bench dbload` and
//!   `tests/suite/db_cache.rs` run it);
//! - `session-worker`: one application process of the session store (`sessions.rs`).
#![forbid(unsafe_code)]

mod db;
mod demo;
mod load;
mod patterns;
mod sessions;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferrocache::client::{Client, ClientConfig, Protocol};

use crate::db::{Db, DbSpec};

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "db_cache", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Cache nodes (`host:port,...`, loopback); default: a ferrocache in this process.
    #[arg(long)]
    servers: Option<String>,
    /// The database: `sqlite:<path>` or `postgres:<connection string>` (default: a
    /// SQLite file in a temporary directory).
    #[arg(long)]
    db: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Application threads under load through one pattern.
    Load(load::LoadArgs),
    /// One process of the session store (started by the walk-through).
    SessionWorker(SessionWorkerArgs),
}

/// One process of the session store.
#[derive(clap::Args, Debug)]
struct SessionWorkerArgs {
    /// Cache nodes.
    #[arg(long)]
    servers: String,
    /// The database (`sqlite:<path>` or `postgres:<connection string>`).
    #[arg(long)]
    db: String,
    /// The table tag of the run that made the session.
    #[arg(long)]
    tag: String,
    /// The session id.
    #[arg(long)]
    session: String,
    /// Requests to serve.
    #[arg(long, default_value_t = 40)]
    requests: u64,
    /// Count a view on every n-th request.
    #[arg(long, default_value_t = 4)]
    update_every: u64,
}

/// A SQLite file in a directory of its own, removed (with the WAL files) at the end.
struct TempDb {
    dir: std::path::PathBuf,
}

impl TempDb {
    fn new() -> Result<TempDb, String> {
        let dir = std::env::temp_dir().join(format!("ferrocache-db_cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDb { dir })
    }

    fn spec(&self) -> DbSpec {
        DbSpec::Sqlite(self.dir.join("app.db").display().to_string())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The database of `--db`, or a temporary SQLite file (kept alive by the guard).
fn database(arg: &Option<String>) -> Result<(DbSpec, Option<TempDb>), String> {
    match arg {
        Some(a) => Ok((DbSpec::parse(a)?, None)),
        None => {
            let t = TempDb::new()?;
            Ok((t.spec(), Some(t)))
        }
    }
}

fn meta_client(servers: &str) -> Result<Client, String> {
    let mut cfg = ClientConfig::new(servers)?;
    cfg.conn.protocol = Protocol::Meta;
    cfg.max_idle_per_node = 32;
    Client::new(cfg).map_err(|e| e.to_string())
}

/// A ferrocache server in this process, on a free loopback port.
struct InProcess {
    handle: Option<ferrocache::server::ServerHandle>,
    addr: std::net::SocketAddr,
}

impl InProcess {
    fn start() -> Result<InProcess, String> {
        use ferrocache::config::{parse_args_as, Invocation};
        let args: Vec<String> = [
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-U",
            "0",
            "-m",
            "64",
            "-t",
            "2",
        ]
        .iter()
        .chain(&["-o", "debugtime"])
        .map(|s| s.to_string())
        .collect();
        let cfg = match parse_args_as("ferrocache", &args) {
            Invocation::Run(cfg) => *cfg,
            Invocation::Exit { stderr, .. } => return Err(stderr),
        };
        let listeners = ferrocache::server::Server::bind(&cfg)
            .map_err(|(kind, e)| format!("bind ({kind:?}): {e:?}"))?;
        let handle = ferrocache::server::Server::start(
            cfg,
            listeners,
            ferrocache::auth::Credentials::default(),
        )?;
        let addr = *handle.local_addrs.first().ok_or("no listener")?;
        Ok(InProcess {
            handle: Some(handle),
            addr,
        })
    }

    /// `debugtime <secs>`: moves the clock of the server at `addr` forward.
    fn advance(addr: std::net::SocketAddr, secs: u32) -> Result<(), String> {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.write_all(format!("debugtime {secs}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        if line == "OK\r\n" {
            Ok(())
        } else {
            Err(format!("debugtime: {line:?}"))
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
    }
}

fn run_demo(cli: &Cli) -> Result<(), String> {
    let (spec, _temp) = database(&cli.db)?;
    let tag = format!("demo{}", std::process::id());
    let server = match &cli.servers {
        Some(_) => None,
        None => Some(InProcess::start()?),
    };
    let servers = match (&cli.servers, &server) {
        (Some(s), _) => s.clone(),
        (None, Some(srv)) => srv.addr.to_string(),
        (None, None) => unreachable!("started above"),
    };
    match &server {
        Some(_) => println!("cache: ferrocache in this process on {servers} (meta protocol)"),
        None => println!("cache: {servers} (meta protocol)"),
    }
    let client = meta_client(&servers)?;
    let advance = server
        .as_ref()
        .map(|s| s.addr)
        .map(|addr| move |secs| InProcess::advance(addr, secs));
    let setup = demo::Setup {
        client: &client,
        servers: &servers,
        advance_clock: advance
            .as_ref()
            .map(|f| f as &(dyn Fn(u32) -> Result<(), String> + Sync)),
        spec: &spec,
        tag: &tag,
    };
    let r = demo::run(&setup);
    if let Ok(mut db) = Db::connect(&spec, &tag) {
        let _ = db.drop_tables();
    }
    r?;
    println!("all checks passed");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        None => run_demo(&cli),
        Some(Cmd::Load(a)) => database(&a.db)
            .and_then(|(spec, _temp)| load::main(a, &spec, &format!("load{}", std::process::id()))),
        Some(Cmd::SessionWorker(a)) => session_worker(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("db_cache: {e}");
            ExitCode::FAILURE
        }
    }
}

fn session_worker(a: &SessionWorkerArgs) -> Result<(), String> {
    let spec = DbSpec::parse(&a.db)?;
    let client = meta_client(&a.servers)?;
    let mut db = Db::connect(&spec, &a.tag).map_err(|e| e.to_string())?;
    let r = sessions::serve(&client, &mut db, &a.session, a.requests, a.update_every)?;
    println!("{}", r.line());
    Ok(())
}
