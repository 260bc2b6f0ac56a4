//! What an executor tells the connection after a command, and the version string
//! every protocol reports: the vocabulary the executors (`exec`, `meta_exec`,
//! `binary_exec`) share without importing each other or the connection.

/// The version string clients see (`VERSION 1.6.18`): the memcached release whose
/// behaviour we reproduce.
pub const PROTOCOL_VERSION: &str = "1.6.18";

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
