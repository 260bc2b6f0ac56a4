//! The views of an item the store lends its callers, borrowed under the shard lock
//! (or, for a snapshot, decoded from a copy of the segments). They differ in what
//! each caller needs and what it costs to fill, so they stay apart:
//! - [`ItemRef`]: what a get, gat or touch replies with; the hot path fills it from
//!   the header alone (no marks lookup, no class arithmetic).
//! - [`MetaItem`]: what the meta commands may return (access time, fetched bit,
//!   marks from the shard's side table, class, size, whether this request created
//!   it), with [`MetaUpdate`], what the request changes afterwards under the same lock.
//! - [`ItemMeta`]: what a metadump line or an eviction watcher shows, no value (the
//!   eviction walk may not hand out bytes it is about to reuse).
//! - [`SnapItem`]: an item as a snapshot file holds it: times in unix seconds (they
//!   mean the same in another process), queue and access counter, so a restart
//!   restores the eviction state too. [`SnapMeta`] is the store-wide rest of a file.

use super::clock::RelTime;

/// A stored item, borrowed for the duration of a lookup closure.
#[derive(Debug)]
pub struct ItemRef<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Value bytes (without the trailing `\r\n`).
    pub value: &'a [u8],
    /// CAS unique (0 when CAS is disabled).
    pub cas: u64,
    /// Relative expiry time (0 = never).
    pub exptime: RelTime,
}

/// An item as the meta commands see it, borrowed under the shard lock.
#[derive(Debug)]
pub struct MetaItem<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Value bytes.
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// CAS unique.
    pub cas: u64,
    /// Relative expiry (0 = never).
    pub exptime: RelTime,
    /// Last access time (relative), before this request.
    pub atime: RelTime,
    /// Fetched before this request.
    pub fetched: bool,
    /// Meta marks ([`item::MARK_WON`], [`item::MARK_STALE`], [`item::MARK_KEY_BINARY`]).
    pub marks: u8,
    /// Created by this request (`N` on a miss).
    pub created: bool,
    /// Size class id (1-based).
    pub class: usize,
    /// Bytes the item takes in its chunk.
    pub size: usize,
}

/// What a meta lookup changes on the item after its closure ran.
#[derive(Debug, Clone, Copy)]
pub struct MetaUpdate {
    /// New relative expiry.
    pub exptime: Option<RelTime>,
    /// New marks.
    pub marks: u8,
    /// Mark it read now (fetched bit, access time, access counter).
    pub bump: bool,
}

/// What a metadump or an eviction watcher sees of an item (borrowed under the shard
/// lock).
#[derive(Debug, Clone, Copy)]
pub struct ItemMeta<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Value length in bytes.
    pub value_len: usize,
    /// Relative expiry (0 = never).
    pub exptime: RelTime,
    /// Relative time of the last access or update.
    pub time: RelTime,
    /// CAS unique (0 when CAS is disabled).
    pub cas: u64,
    /// Read since it was stored.
    pub fetched: bool,
    /// The size class (1-based) it counts in for `stats items` / `stats slabs`.
    pub class: usize,
}

/// Told about every evicted item while installed ([`super::Store::set_eviction_sink`]).
pub type EvictionSink = Box<dyn Fn(&ItemMeta<'_>) + Send + Sync>;

/// One item as a snapshot file holds it ([`super::Store::snapshot_shard`],
/// [`super::Store::restore_item`]): times are unix seconds, so they mean the same in another
/// process (or on another machine).
#[derive(Debug, Clone, Copy)]
pub struct SnapItem<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value (without `\r\n`).
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Expiry, unix seconds (0 = never).
    pub exptime: i64,
    /// Last access or update, unix seconds.
    pub atime: i64,
    /// CAS unique (0 when CAS is disabled).
    pub cas: u64,
    /// The 2-bit access counter (0..=3).
    pub freq: u8,
    /// Read since it was stored.
    pub fetched: bool,
    /// In the main queue (read enough to survive a pass), not the small one.
    pub main: bool,
    /// Meta marks ([`super::item::MARK_STALE`], [`super::item::MARK_KEY_BINARY`], ...).
    pub marks: u8,
}

/// Store-wide facts a snapshot keeps besides the items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapMeta {
    /// The CAS counter (uniques handed out so far).
    pub cas_counter: u64,
    /// `flush_all`'s point, unix seconds (0 = none): items last stored or accessed
    /// at or before it are invalid once it has passed.
    pub flush_at: i64,
    /// `flush_all`'s CAS mark (items with a lower unique are invalid), 0 = none.
    pub flush_cas: u64,
    /// CAS uniques were kept.
    pub cas_enabled: bool,
}
