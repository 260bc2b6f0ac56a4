//! What a write asks for and what an operation did: the request parts of a storage
//! command ([`NewItem`], [`Guard`]) and the outcomes the protocols turn into replies.

/// The item a storage command sends: what [`super::Store::store`] writes.
#[derive(Debug, Clone, Copy)]
pub struct NewItem<'a> {
    /// Client flags.
    pub flags: u32,
    /// Expiry as the client sent it (memcached's arithmetic: 0 never, up to 30 days
    /// relative, else a unix time, negative already expired).
    pub exptime: i64,
    /// The value (without `\r\n`).
    pub value: &'a [u8],
    /// Meta marks set on the stored item ([`super::item::MARK_KEY_BINARY`]).
    pub marks: u8,
}

impl<'a> NewItem<'a> {
    /// An item without meta marks.
    #[inline]
    pub fn new(flags: u32, exptime: i64, value: &'a [u8]) -> NewItem<'a> {
        NewItem {
            flags,
            exptime,
            value,
            marks: 0,
        }
    }
}

/// The conditions a storage command is made under, beyond its [`super::StoreOp`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guard {
    /// Store only if the present item's CAS unique equals this (0: any item); for
    /// `append`/`prepend`, which the binary protocol lets carry a CAS (`Exists`
    /// otherwise). Check and change happen under one shard lock.
    pub cas: u64,
    /// The meta protocol's `I` (invalidate): a `Cas` whose unique is *lower* than the
    /// item's stores anyway, keeps the old expiry and marks the new item stale
    /// (keeping the old "win sent" mark), as memcached does.
    pub invalidate: bool,
}

impl Guard {
    /// No condition: the text protocol's storage commands.
    pub const NONE: Guard = Guard {
        cas: 0,
        invalidate: false,
    };
}

/// Result of a storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// `STORED`
    Stored,
    /// `NOT_STORED` (add on present key, replace/append/prepend on missing key)
    NotStored,
    /// `EXISTS` (cas mismatch)
    Exists,
    /// `NOT_FOUND` (cas on missing key)
    NotFound,
    /// The item can never fit (`SERVER_ERROR object too large for cache`).
    TooLarge,
    /// No memory could be found (`SERVER_ERROR out of memory storing object`).
    OutOfMemory,
}

/// Why a key was not found; memcached counts these apart (`get_expired`, `get_flushed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// Never stored, deleted or evicted.
    Absent,
    /// Present but past its expiry time (removed now).
    Expired,
    /// Present but invalidated by `flush_all` (removed now).
    Flushed,
}

/// Result of incr/decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// The new value.
    Value(u64),
    /// No such key (or expired/flushed).
    NotFound(Miss),
    /// The value is not a decimal number.
    NonNumeric,
    /// A CAS guard did not match ([`super::Store::delta`]).
    Exists,
    /// The new value could not be stored.
    OutOfMemory,
}

/// Result of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed (`DELETED`).
    Deleted,
    /// No such item (`NOT_FOUND`).
    NotFound(Miss),
    /// The item's CAS unique did not match the guard.
    Exists,
}

/// Result of a meta delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaDelete {
    /// Removed.
    Deleted,
    /// Marked stale with a new CAS unique (`I`).
    Invalidated,
    /// The CAS guard did not match.
    Exists,
    /// Not there.
    Miss(Miss),
}

/// What [`super::Store::restore_item`] did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// Stored.
    Loaded,
    /// The key is there with a newer (or the same) CAS unique: kept.
    Duplicate,
    /// Its expiry time (or a `flush_all` point after it was stored) has passed.
    Expired,
    /// Larger than this server's `-I`.
    TooLarge,
    /// No memory left without evicting.
    NoMemory,
}
