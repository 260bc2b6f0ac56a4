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
/// to stream. The default streams nothing.
#[derive(Debug)]
pub struct ReplyRoom {
    /// Reply bytes the connection may hold now: a value that would take the reply
    /// buffer beyond it is leased and streamed when the store can (a value in a
    /// segment of its own), else copied.
    pub cap: usize,
    /// Set by an executor that wrote the head of a reply whose value is leased.
    pub streamed: Option<Streamed>,
}

impl Default for ReplyRoom {
    fn default() -> ReplyRoom {
        ReplyRoom {
            cap: usize::MAX,
            streamed: None,
        }
    }
}

impl ReplyRoom {
    /// The longest value a reply now `held` bytes long may copy.
    pub fn copy_max(&self, held: usize) -> usize {
        self.cap.saturating_sub(held)
    }
}
