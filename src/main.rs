//! The `ferrocache` server binary: parse the command line, then start up in
//! memcached's order (open-files limit, root check and `-u`, `-d`, bind, pid file),
//! start the workers, wait for SIGTERM/SIGINT or `shutdown`, stop cleanly.

use std::io::Write;
use std::process::ExitCode;

use ferrocache::auth::{AuthDb, AuthFile, Credentials};
use ferrocache::config::{self, Config, Invocation, EX_OSERR, EX_USAGE};
use ferrocache::daemon;
use ferrocache::server::{Server, StopReason};

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn fail(msg: &str, code: i32) -> ExitCode {
    eprintln!("{msg}");
    exit(code)
}

/// `EXIT_FAILURE`: what memcached exits with when credentials cannot be loaded.
const EXIT_FAILURE: i32 = 1;

/// Options memcached has that this build does not serve: refuse to start rather
/// than run without the encryption the operator asked for.
fn unsupported(cfg: &Config) -> Option<&'static str> {
    if cfg.tls {
        Some("This server is not built with TLS support.")
    } else {
        None
    }
}

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
    env_logger::Builder::from_env(env_logger::Env::default())
        .filter_level(cfg.log_level())
        .parse_default_env()
        .init();
    for w in &cfg.warnings {
        eprintln!("{w}");
    }
    for o in &cfg.ignored {
        log::info!("option {o} is accepted for compatibility and has no effect here");
    }
    if cfg.udp_port != 0 {
        log::warn!(
            "UDP (-U {}) is not served by this build; TCP only",
            cfg.udp_port
        );
    }
    if let Some(msg) = unsupported(&cfg) {
        return fail(msg, EX_USAGE);
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
            Ok(db) => {
                log::info!("SASL: {} user(s), mechanisms {}", db.len(), db.mechanisms());
                credentials.sasl = Some(db);
            }
            Err(msg) => return fail(&format!("ERROR: {msg}"), EXIT_FAILURE),
        }
    } else if cfg.sasl_pwdb.is_some() {
        log::warn!("--sasl-pwdb has no effect without -S");
    }

    if let Err(msg) = daemon::raise_nofile_limit(cfg.max_conns) {
        eprintln!("{msg}");
    }
    if let Err((msg, code)) = daemon::check_root(&cfg) {
        return fail(&msg, code);
    }
    if let Err((msg, code)) = daemon::drop_privileges_for(&cfg) {
        return fail(&msg, code);
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
            Ok(file) => credentials.ascii = Some(file),
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
    // Signals are routed to the stop channel before any worker starts.
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => return fail(&format!("failed to install signal handlers: {e}"), EX_OSERR),
    };
    let pid_file = cfg.pid_file.clone();
    let handle = match Server::start(cfg, listeners, credentials) {
        Ok(h) => h,
        Err(e) => return fail(&format!("failed to start: {e}"), EX_OSERR),
    };
    ferrocache::notify::ready(); // systemd Type=notify: every listener is bound
    let stopper = handle.stopper();
    let sig_handle = signals.handle();
    let sig_thread = std::thread::spawn(move || {
        let mut signals = signals;
        for sig in signals.forever() {
            if sig == signal_hook::consts::SIGHUP {
                // memcached does not stop on SIGHUP either.
                log::info!("SIGHUP received; nothing to reload");
                continue;
            }
            log::info!("signal {sig} received, stopping");
            stopper.request_stop(StopReason::Signal);
            break;
        }
    });
    let why = handle.wait();
    ferrocache::notify::stopping();
    log::info!("stopping ({why:?})");
    handle.stop();
    sig_handle.close();
    let _ = sig_thread.join();
    if let Some(path) = pid_file {
        let _ = daemon::remove_pid_file(&path);
    }
    ExitCode::SUCCESS
}
