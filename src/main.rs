//! The `ferrocache` server binary: parse the command line, bind, drop privileges,
//! start the workers, wait for SIGTERM/SIGINT or `shutdown`, stop cleanly.

use std::io::Write;
use std::process::ExitCode;

use ferrocache::config::{self, Invocation};
use ferrocache::server::{Server, StopReason};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::parse_args(&args) {
        Invocation::Run(cfg) => *cfg,
        Invocation::Exit {
            stdout,
            stderr,
            code,
        } => {
            let _ = std::io::stdout().write_all(stdout.as_bytes());
            let _ = std::io::stderr().write_all(stderr.as_bytes());
            return ExitCode::from(code as u8);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default())
        .filter_level(cfg.log_level())
        .parse_default_env()
        .init();

    let listeners = match Server::bind(&cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(71); // EX_OSERR, as memcached
        }
    };
    // Signals are routed to the stop channel before any worker starts.
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("failed to install signal handlers: {e}");
            return ExitCode::from(71);
        }
    };
    let handle = match Server::start(cfg, listeners) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("failed to start: {e}");
            return ExitCode::from(71);
        }
    };
    let stopper = handle.stopper();
    let sig_handle = signals.handle();
    let sig_thread = std::thread::spawn(move || {
        let mut signals = signals;
        if let Some(sig) = signals.forever().next() {
            log::info!("signal {sig} received, stopping");
            stopper.request_stop(StopReason::Signal);
        }
    });
    let why = handle.wait();
    log::info!("stopping ({why:?})");
    handle.stop();
    sig_handle.close();
    let _ = sig_thread.join();
    ExitCode::SUCCESS
}
