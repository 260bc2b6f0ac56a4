//! What an executor tells the connection after a command, and the version string
//! every protocol reports: the vocabulary the executors (`exec`, `meta_exec`,
//! `binary_exec`) share without importing each other or the connection.

/// The version string clients see (`VERSION 1.6.18`): the memcached release whose
/// behaviour we reproduce.
pub const PROTOCOL_VERSION: &str = "1.6.18";

/// ferrocache's own version (`stats`: `ferrocache_version`), so operators can tell
/// which nodes of a fleet already run ferrocache while `version` says 1.6.18.
pub const FERROCACHE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit this binary was built from: `$FERROCACHE_COMMIT` at build time (the
/// package script sets it from git), else `unknown` (`stats`: `ferrocache_commit`).
pub const FERROCACHE_COMMIT: &str = match option_env!("FERROCACHE_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// How this binary was built (`stats`: `ferrocache_build`): the profile (`release`
/// or `debug`), then the architecture and OS, e.g. `release-x86_64-linux`.
pub fn build_text() -> String {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    format!(
        "{profile}-{}-{}",
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next request.
    Continue,
    /// Send what is buffered, then close (`quit`, `shutdown`).
    Close,
    /// The reply buffer is full: run this same request again later, skipping the
    /// first `keys_done` keys (a multi-get interrupted by back-pressure).
    Suspend {
        /// Keys already answered.
        keys_done: usize,
    },
}
