//! The `ferrocache` server binary: parse the command line, then start up in
//! memcached's order (open-files limit, root check and `-u`, `-d`, bind, pid file),
//! start the workers, print the start-up facts at `-v`, then serve until
//! SIGTERM/SIGINT, SIGUSR1 or `shutdown`, and stop cleanly.
//!
//! Signals, as memcached 1.6.18 handles them:
//! - SIGTERM, SIGINT: stop (listeners close, buffered replies are sent, exit 0);
//!   `Exiting normally` at verbosity 1 and up.
//! - SIGUSR1: memcached's graceful stop: `Gracefully stopping` on stderr at every
//!   verbosity, then the same stop, exit 0; with `-e FILE` the cache is saved to
//!   FILE once the workers have stopped (`server::snapshot`).
//! - SIGUSR2 (ours): with `--snapshot-dir`, an online snapshot into that directory.
//! - SIGHUP: reload the `-Y` file (a file that fails to load leaves the old entries in
//!   force) and, with `-Z`, the TLS certificate chain, key and CA ([`reload_tls`]: a
//!   bad file keeps the old ones) and `--cluster-config` (a bad file keeps the node
//!   list in force); never stops the server.
//! - SIGPIPE: ignored (the Rust runtime sets it to `SIG_IGN` before `main`; a peer
//!   that closes shows up as `EPIPE` on the write).
//! - SIGXFSZ: caught and dropped, so a write beyond a file size limit (`ulimit -f`,
//!   systemd's `LimitFSIZE`) fails with `EFBIG` and the snapshot that made it fails
//!   and is reported, instead of the signal's default killing the server.
//!
//! Logging: the `log` crate through env_logger, which passes every level; what is
//! printed is `log::max_level()`, set from `-v` and moved by the `verbosity` command
//! ([`Config::set_runtime_verbosity`]). With `RUST_LOG` set, its directives decide
//! instead (and cap what `verbosity` can raise), in env_logger's own format.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use ferrocache::auth::{AuthDb, AuthFile, Credentials, LiveAuthFile};
use ferrocache::config::{self, Config, Invocation, EX_OSERR, EX_USAGE};
use ferrocache::daemon;
use ferrocache::server::snapshot_dirs::EX_CANTCREAT;
use ferrocache::server::{Server, Shared, StopReason};

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn fail(msg: &str, code: i32) -> ExitCode {
    eprintln!("{msg}");
    exit(code)
}

/// `EXIT_FAILURE`: what memcached exits with when credentials cannot be loaded.
const EXIT_FAILURE: i32 = 1;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("passwd") {
        return ferrocache::auth::passwd_main(&args[1..]);
    }
    let cfg = match config::parse_args(&args) {
        Invocation::Run(cfg) => *cfg,
        Invocation::Exit {
            stdout,
            stderr,
            code,
        } => {
            let _ = std::io::stdout().write_all(stdout.as_bytes());
            let _ = std::io::stderr().write_all(stderr.as_bytes());
            return exit(code);
        }
    };
    init_logging(&cfg);
    // Signals are caught from here on (as memcached sets its handlers first): one that
    // arrives during start-up is served once the server runs, instead of killing it.
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGUSR1,
        signal_hook::consts::SIGUSR2,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => return fail(&format!("failed to install signal handlers: {e}"), EX_OSERR),
    };
    let file_too_large = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, file_too_large) {
        return fail(&format!("failed to install signal handlers: {e}"), EX_OSERR);
    }
    // The copy `-d` starts goes through the same steps: what the starting process
    // already printed before detaching is not printed again (memcached prints it once,
    // before it forks).
    let repeat = cfg.daemonize && daemon::is_detached_copy();
    if !repeat {
        for w in &cfg.warnings {
            eprintln!("{w}");
        }
        for o in &cfg.ignored {
            // With -Z the ssl_* options are served (logged with the TLS settings).
            if cfg.tls && o.starts_with("-o ssl_") {
                continue;
            }
            log::info!("option {o} is accepted for compatibility and has no effect here");
        }
        if cfg.udp_port != 0 {
            log::warn!(
                "UDP (-U {}) is not served by this build; TCP only",
                cfg.udp_port
            );
        }
    }
    // SASL credentials are read before privileges are dropped, so the file may be
    // private to root. No usable credentials: refuse to start.
    let mut credentials = Credentials::default();
    if cfg.sasl {
        let flag = cfg
            .sasl_pwdb
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        match AuthDb::load_for_server(flag.as_deref()) {
            Ok(db) => credentials.sasl = Some(db),
            Err(msg) => return fail(&format!("ERROR: {msg}"), EXIT_FAILURE),
        }
    } else if cfg.sasl_pwdb.is_some() {
        log::warn!("--sasl-pwdb has no effect without -S");
    }
    // A node list that does not parse, or names a version no change could follow,
    // stops the start (a SIGHUP later keeps the old).
    if let Some(path) = &cfg.cluster_config {
        use ferrocache::protocol::cluster::{ClusterConfig, MAX_VERSION};
        let read = std::fs::read_to_string(path).map_err(|e| e.to_string());
        let checked = read.and_then(|t| match ClusterConfig::parse_file(&t) {
            Ok((Some(v), _)) if v >= MAX_VERSION => Err(format!(
                "version {v}: no version a client could follow is left after it (the \
                 highest a node publishes is {})",
                MAX_VERSION - 1
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        });
        if let Err(e) = checked {
            return fail(&format!("cluster config {}: {e}", path.display()), EX_USAGE);
        }
    }
    // As memcached: certificates and keys are read before privileges are dropped
    // (the key may be private to root) and before binding; a bad one exits 64.
    if cfg.tls {
        if let Some(msg) = ferrocache::tls::unsupported_setting(&cfg) {
            return fail(&msg, EX_USAGE);
        }
        match ferrocache::tls::TlsContext::load(&cfg) {
            Ok(ctx) => credentials.tls = Some(std::sync::Arc::new(ctx)),
            Err(msg) => return fail(&msg, EX_USAGE),
        }
    }

    if let Err(msg) = daemon::raise_nofile_limit(cfg.max_conns) {
        if !repeat {
            eprintln!("{msg}");
        }
    }
    if let Err((msg, code)) = daemon::check_root(&cfg) {
        return fail(&msg, code);
    }
    if let Err((msg, code)) = daemon::drop_privileges_for(&cfg) {
        return fail(&msg, code);
    }
    // As memcached refuses an -e file it cannot open: the directories the cache is
    // saved into must take files from the -u user (exit 73, EX_CANTCREAT).
    if let Err(msg) = ferrocache::server::snapshot_dirs::check(&cfg) {
        return fail(&format!("ERROR: {msg}"), EX_CANTCREAT);
    }
    if cfg.daemonize {
        if let Err(msg) = daemon::daemonize(cfg.verbose > 0) {
            return fail(&msg, EX_OSERR);
        }
    }
    let listeners = match Server::bind(&cfg) {
        Ok(l) => l,
        Err((kind, err)) => {
            let (msg, code) = daemon::listen_failure(&cfg, kind, &err);
            return fail(&msg, code);
        }
    };
    // As memcached: the -Y file is read after binding, as the -u user.
    if let Some(path) = &cfg.auth_file {
        match AuthFile::load(&path.to_string_lossy()) {
            Ok(file) => credentials.ascii = Some(LiveAuthFile::new(file)),
            Err(e) => {
                let _ = std::io::stderr().write_all(e.message().as_bytes());
                return exit(EXIT_FAILURE);
            }
        }
    }
    if let Some(path) = &cfg.pid_file {
        match daemon::write_pid_file(path) {
            Ok(Some(warning)) | Err(warning) => eprintln!("{warning}"),
            Ok(None) => {}
        }
    }
    let pid_file = cfg.pid_file.clone();
    let listener_tls = listeners.tls_flags();
    let handle = match Server::start(cfg, listeners, credentials) {
        Ok(h) => h,
        Err(e) => return fail(&format!("failed to start: {e}"), EX_OSERR),
    };
    log_startup(handle.shared(), &listener_tls);
    ferrocache::notify::ready(); // systemd Type=notify: every listener is bound
    let shared = handle.stopper();
    let sig_handle = signals.handle();
    let sig_thread = std::thread::spawn(move || {
        let mut signals = signals;
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                reload(&shared);
                continue;
            }
            if sig == signal_hook::consts::SIGUSR2 {
                ferrocache::server::snapshot::on_signal(shared.snapshot());
                continue;
            }
            let why = if sig == signal_hook::consts::SIGUSR1 {
                // memcached prints this at every verbosity.
                eprintln!("Gracefully stopping");
                StopReason::GracefulSignal
            } else {
                log::info!("Exiting normally");
                StopReason::Signal
            };
            log::debug!("signal {sig} received, stopping");
            shared.request_stop(why);
            break;
        }
    });
    let why = handle.wait();
    ferrocache::notify::stopping();
    match why {
        StopReason::Command => log::info!("Exiting normally"),
        // memcached's `shutdown graceful` raises SIGUSR1: printed at every verbosity.
        StopReason::GracefulCommand => eprintln!("Gracefully stopping"),
        StopReason::Signal | StopReason::GracefulSignal => {}
    }
    log::debug!("stopping ({why:?}): closing listeners, sending buffered replies");
    let state = handle.stopper();
    handle.stop();
    log::debug!("all threads stopped");
    // memcached's -e: a graceful stop saves the cache (nothing is served any more). A
    // save that failed is no success: exit 73 (EX_CANTCREAT), so that systemd and
    // scripts see the cache was lost.
    let saved = !why.graceful() || ferrocache::server::snapshot::save_at_stop(state.snapshot());
    sig_handle.close();
    let _ = sig_thread.join();
    if let Some(path) = pid_file {
        let _ = daemon::remove_pid_file(&path);
    }
    if saved {
        ExitCode::SUCCESS
    } else {
        exit(EX_CANTCREAT)
    }
}

/// Installs the logger. env_logger itself passes every level and `log::max_level()`
/// does the filtering, so that `verbosity` can raise the level as well as lower it
/// (and `log::log_enabled!` sees the level in force). Lines are printed as memcached
/// prints its own: the bare message, warnings and errors marked as such. With
/// `RUST_LOG` set, its directives filter (overriding `-v`, capping `verbosity`) and
/// lines carry env_logger's usual timestamp, level and module.
fn init_logging(cfg: &Config) {
    if std::env::var_os(env_logger::DEFAULT_FILTER_ENV).is_some() {
        // env_logger::init sets the max level to what the directives allow.
        env_logger::Builder::from_env(env_logger::Env::default()).init();
        return;
    }
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        .format(|buf, record| match record.level() {
            log::Level::Error => writeln!(buf, "ERROR: {}", record.args()),
            log::Level::Warn => writeln!(buf, "WARNING: {}", record.args()),
            _ => writeln!(buf, "{}", record.args()),
        })
        .init();
    Config::set_runtime_verbosity(u32::from(cfg.verbose));
}

/// SIGHUP: what memcached reloads (the `-Y` file; memcached logs nothing), then the
/// TLS hook. A file that fails to load leaves the entries in force, as in memcached.
fn reload(shared: &Shared) {
    match (&shared.credentials.ascii, &shared.config.auth_file) {
        (Some(live), Some(path)) => {
            let path = path.to_string_lossy();
            match live.reload(&path) {
                Ok(n) => log::info!("SIGHUP: reloaded authfile {path}: {n} entries"),
                Err(e) => log::warn!(
                    "SIGHUP: {}; keeping the {} entries loaded before",
                    e.message().trim_end(),
                    live.len()
                ),
            }
        }
        _ => log::info!("SIGHUP: no authfile (-Y) to reload"),
    }
    reload_tls(shared);
    if let Some(path) = &shared.config.cluster_config {
        match shared.admin.cluster.load_file(path) {
            Ok(v) => log::info!("SIGHUP: cluster config {}: version {v}", path.display()),
            Err(e) => log::warn!("SIGHUP: {e}; keeping the configuration in force"),
        }
    }
}

/// SIGHUP reloads the TLS certificate chain, key and CA (as `refresh_certs` does):
/// new connections get the new ones; a bad file keeps the old and is logged.
fn reload_tls(shared: &Shared) {
    if let Some(tls) = &shared.credentials.tls {
        match tls.refresh(shared.clock.now()) {
            Ok(()) => log::info!("SIGHUP: reloaded the TLS certificates"),
            Err(e) => log::warn!("SIGHUP: {e}; keeping the certificates loaded before"),
        }
    }
}

/// Binary sizes as an operator writes them: `64 MiB`, `1 MiB`, `512 KiB`.
fn size_text(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match bytes {
        b if b >= GIB && b % GIB == 0 => format!("{} GiB", b / GIB),
        b if b >= MIB && b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b >= KIB && b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

/// The start-up facts. memcached prints none at `-v` and, at `-vv`, its slab classes
/// and `<FD server listening (PROTOCOL)` for each listener. We print at `-v` what an
/// operator checks first (version, listeners, threads, memory, protocol, how clients
/// authenticate) and, at `-vv`, memcached's listener lines and the store's layout in
/// place of the slab classes (items are stored at their exact size).
fn log_startup(shared: &Arc<Shared>, listener_tls: &[(String, bool)]) {
    let cfg = &shared.config;
    log::info!(
        "{}, pid {}",
        config::version_text().trim_end(),
        std::process::id()
    );
    let protocol = cfg.protocol.name();
    if shared.net.listener_info.is_empty() {
        log::info!("no listener: -p 0 without -l or -s");
    }
    for (name, tls) in listener_tls {
        // With -Z each listener says whether it speaks TLS (`-l notls:` does not).
        let tls = match (cfg.tls, tls) {
            (false, _) => "",
            (true, true) => ", TLS",
            (true, false) => ", notls",
        };
        log::info!("listening on {name} ({protocol}{tls})");
    }
    if let Some(tls) = &shared.credentials.tls {
        log::info!("{}", tls.describe());
    }
    log::info!(
        "{} worker threads, at most {} connections, {} requests per turn",
        cfg.threads,
        cfg.max_conns,
        cfg.reqs_per_event
    );
    let buffers = match cfg.conn_buffer_limit() {
        usize::MAX => "unlimited".to_string(),
        b => size_text(b as u64),
    };
    log::info!(
        "memory limit {}, largest item {}, evictions {}, CAS {}, connection buffers {}",
        size_text(cfg.mem_limit_bytes() as u64),
        size_text(cfg.item_size_max as u64),
        if cfg.disable_evictions { "off" } else { "on" },
        if cfg.disable_cas { "off" } else { "on" },
        buffers
    );
    log::info!("protocol {protocol}");
    match (&shared.credentials.sasl, &shared.credentials.ascii) {
        (Some(db), _) => log::info!(
            "authentication: SASL (-S), {} users, mechanisms {}",
            db.len(),
            db.mechanisms()
        ),
        (None, Some(file)) => log::info!(
            "authentication: ASCII tokens (-Y {}), {} entries; SIGHUP reloads the file",
            cfg.auth_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            file.len()
        ),
        (None, None) => match &shared.credentials.tls {
            Some(tls) if tls.requires_client_certificates() => log::info!(
                "authentication: TLS client certificates (ssl_verify_mode=2) on TLS \
                 listeners{}",
                if listener_tls.iter().any(|(_, t)| !t) {
                    "; none on the notls listeners"
                } else {
                    ""
                }
            ),
            _ => log::info!("authentication: none"),
        },
    }
    if cfg.idle_timeout > 0 {
        log::info!("idle connections closed after {} s", cfg.idle_timeout);
    }
    let store = ferrocache::server::store_config(cfg);
    log::debug!(
        "store: {} shards, log-structured segments, items at their exact size (no slab classes)",
        store.shards
    );
    for (fd, _) in &shared.net.listener_info {
        log::debug!("<{fd} server listening ({protocol})");
    }
}
