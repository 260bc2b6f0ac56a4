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
