//! The vocabulary the store, the protocol parsers and the client share: what a
//! storage command does and what an arithmetic command does. Nothing here depends on
//! any other module, so a client-only build compiles it without the server.

/// What a storage command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Store unconditionally.
    Set,
    /// Store only if absent.
    Add,
    /// Store only if present.
    Replace,
    /// Add data after the existing value (flags and expiry unchanged).
    Append,
    /// Add data before the existing value (flags and expiry unchanged).
    Prepend,
    /// Store only if the CAS unique still matches.
    Cas(u64),
}

/// incr or decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// Add, wrapping at 2^64.
    Incr(u64),
    /// Subtract, stopping at 0.
    Decr(u64),
}

/// What an executed operation was, whichever protocol carried it (text, meta or
/// binary): the `kind` of an `Op` (`server::observe`), which counters, prefix
/// stats, `watch`, `-vv` and, later, a replication stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A lookup: `get`/`gets`, `mg` without `T`, binary GET/GETK (and quiet forms).
    Get,
    /// A lookup that also set the expiry: `gat`/`gats`, `mg` with `T` that hit,
    /// binary GAT/TOUCH.
    Gat,
    /// `touch` (text): the expiry set, no value read.
    Touch,
    /// A storage command.
    Store(StoreOp),
    /// `delete`, `md`, binary DELETE.
    Delete,
    /// incr (`ma` in increment mode, binary INCREMENT).
    Incr,
    /// decr.
    Decr,
    /// `flush_all`, binary FLUSH.
    Flush,
    /// `me`: an item's metadata read.
    Inspect,
}

/// Why a lookup missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissCause {
    /// Never stored, deleted or evicted.
    Absent,
    /// Past its expiry time.
    Expired,
    /// Invalidated by `flush_all`.
    Flushed,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A lookup, touch or incr/decr found the item; a delete removed it; a flush
    /// was done.
    Hit,
    /// The key was not there (lookups, touch, delete, incr/decr).
    Miss(MissCause),
    /// Stored.
    Stored,
    /// `add` of a present key, `replace`/`append`/`prepend` of an absent one.
    NotStored,
    /// The CAS did not match.
    Exists,
    /// `cas` of an absent key.
    NotFound,
    /// Refused by the store as too large.
    TooLarge,
    /// No memory for it.
    NoMemory,
    /// incr/decr of a value that is not a number.
    NonNumeric,
    /// incr/decr of an absent key created it with its initial value (`ma N`,
    /// binary INCREMENT with an expiry).
    Created,
    /// `md I`: marked stale instead of removed.
    Invalidated,
    /// Refused before the store was asked (a bad data block, an opaque token too
    /// long, `flush_all` disabled): nothing changed.
    Refused,
}
