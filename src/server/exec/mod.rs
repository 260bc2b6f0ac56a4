//! The executors: a parsed request against the store, its reply written into the
//! session's buffer. One per protocol: `text` (classic commands), `meta` (`mg ms md
//! ma mn me`), `binary`.

pub mod binary;
pub mod meta;
pub mod text;
