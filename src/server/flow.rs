//! What an executor tells the connection after a command, and the version string
//! every protocol reports: the vocabulary the executors (`exec::text`,
//! `exec::meta`, `exec::binary`) share without importing each other or the connection.

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
    /// The answer waits for work done elsewhere (a queued password check): serve
    /// nothing more until it is in (the connection's worker is woken then).
    Wait,
}

/// A value whose reply head an executor wrote without it: the connection sends the
/// value from the store a piece at a time (see `store::lease`), then `trailer`,
/// before anything else.
#[derive(Debug)]
pub struct Streamed {
    /// The leased value.
    pub lease: crate::store::ValueLease,
    /// What follows the value in the reply (`\r\n` in text and meta, nothing in
    /// binary).
    pub trailer: &'static [u8],
}

/// What a reply may hold before a value is streamed instead of copied, and the value
/// to stream. The default copies every value.
#[derive(Debug)]
pub struct ReplyRoom {
    /// Reply bytes the connection may hold now: a value that would take the reply
    /// buffer beyond it is leased and streamed when the store can (a value in a
    /// segment of its own), else copied.
    pub cap: usize,
    /// Reply bytes the connection may hold at most (its floor and all the buffer
    /// budget has room for): when the store cannot lease a value (connections hold
    /// too much of `-m`), one that fits this is copied, a longer one waits.
    pub most: usize,
    /// Set by an executor that wrote the head of a reply whose value is leased.
    pub streamed: Option<Streamed>,
    /// Set by an executor whose request must wait (it did nothing; the connection
    /// runs it again once the store has given memory back).
    pub wait: bool,
}

impl Default for ReplyRoom {
    fn default() -> ReplyRoom {
        ReplyRoom {
            cap: usize::MAX,
            most: usize::MAX,
            streamed: None,
            wait: false,
        }
    }
}

impl ReplyRoom {
    /// How a lookup treats a value for a reply buffer now `held` bytes long.
    pub fn rule(&self, held: usize) -> crate::store::ReplyValue {
        crate::store::ReplyValue {
            lease_over: self.cap.saturating_sub(held),
            copy_up_to: self.most.saturating_sub(held),
        }
    }
}
