//! Wire protocols. Pure: bytes in, a request borrowed from the read buffer (or "need
//! more bytes") out; replies are composed into a caller's buffer. No sockets, no clock
//! and no store in here, so every parser can be unit-tested and fuzzed alone.

pub mod ascii;
pub mod base64;
pub mod binary;
pub mod cluster;
pub mod frame;
pub mod meta;
pub mod text;
