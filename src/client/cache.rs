//! Cache-aside and write-through on top of [`Client`].
//!
//! ```text
//!  get_or_load(key):  cache hit ──────────────────────────────▶ value
//!                     cache miss ─▶ loader() ─ Some(v) ─▶ set(key, v, ttl) ─▶ Some(v)
//!                                            └ None ────▶ set(key, "", negative_ttl,
//!                                                          NEGATIVE_FLAGS) ─▶ None
//!                     cached "not found" (NEGATIVE_FLAGS) ───────────────────▶ None
//! ```
//!
//! The cache is best effort: when a node cannot be reached the loader's answer is
//! still returned (and the failure logged); only the loader's own errors are errors.
//!
//! ## Stampede protection ([`Protocol::Meta`])
//!
//! Over the text and binary protocols every caller that misses runs the loader. Over
//! [`Protocol::Meta`] `get_or_load` reads with `mg <key> v f c N<vivify_ttl>
//! [R<recache_window>]`, so among concurrent callers of a missing or expiring key
//! the loader runs once:
//!
//! ```text
//!  mg key v f c N30 R2
//!   ├─ hit, no W/Z ──────────────────────────────▶ the value
//!   ├─ W (won: a miss created an empty placeholder, the remaining TTL fell below R,
//!   │     or the item was marked stale) ─▶ loader() ─▶ ms key F T C<cas> ─▶ loaded value
//!   │        (EX or NF: the item changed or went since the lease, a writer
//!   │         invalidated it: nothing is stored; loader None without negative
//!   │         caching: md key C<cas>; loader error on a placeholder: md key C<cas>,
//!   │         so a waiter can win)
//!   ├─ Z with a value (valid in the R window, or X stale) ─▶ that value, no loader
//!   └─ Z on the placeholder (0 bytes, flags 0): the winner is loading
//!        ─▶ sleep 5, 10, 20, 40, 50, 50... ms and mg again (with N: if the
//!           placeholder went, one poller wins) until wait_for_winner has passed
//!        ─▶ then loader() here, stored only over that placeholder (ms C<cas>)
//! ```
//!
//! - [`CacheAside::wait_for_winner`] (default 1 s) bounds the wait; `Duration::ZERO`
//!   makes losers on a placeholder run the loader at once.
//! - [`CacheAside::vivify_ttl`] (default 30 s) is the placeholder's TTL (`N`): how
//!   long a winner that died keeps others waiting at most, after which the key is an
//!   ordinary miss again. Keep it longer than the loader takes.
//! - [`CacheAside::recache_window`] (default 0: off) is `R`: a caller wins the
//!   recache once the item's remaining TTL, in the node's whole seconds, is below
//!   it, while everyone else keeps getting the still-valid value. With a 2 s TTL,
//!   `recache_window(2)` reloads during the last second and the key never misses.
//! - [`CacheAside::mark_stale`] (`md I`, the item's expiry kept) makes the cached
//!   value stale: it keeps being
//!   served to others while the first reader reloads it.
//! - A value of 0 bytes with client flags 0 under `Z` is taken for a placeholder
//!   (with [`CacheAside::flags`] 0, an empty loaded value is waited on like one).
//!   Plain [`Client::get`]s see a placeholder as an empty value with flags 0.
//!
//! ## Invalidation and the stale-set race
//!
//! A reader misses, reads row v1; a writer commits v2 and deletes the key; the reader
//! then caches v1, which stays until its TTL although the write finished long before.
//! Plain get/set cache-aside (and [`CacheAside::get_or_load`] over text and binary)
//! has this race. Over [`Protocol::Meta`] the lease closes it: the reader's `mg N`
//! takes the lease *before* it reads the database, and it stores only over the item
//! it leased (`ms C<cas>`). A delete (`md`) removes that item, a `md I`
//! ([`CacheAside::mark_stale`]) or a store gives it a new CAS: either way the late
//! store of v1 is refused. A lease taken after the invalidation reads the database
//! after the commit. No placeholder (`mg` failed, or the node had no memory for one):
//! the loaded value is returned and not cached.
//!
//! Set-on-write races the same way between two writers (the cache writes arrive in
//! the other order than the commits): [`CacheAside::write_through`] caches only over
//! the item it saw before writing, and deletes the key when that changed.
//!
//! What this client recommends: read with `get_or_load` over [`Protocol::Meta`], and
//! after each committed update delete the key ([`Client::delete`],
//! [`CacheAside::delete_through`]): no read that starts after the delete returns the
//! old value. [`CacheAside::mark_stale`] instead lets the other readers of a hot key
//! keep the old value while one reloads it (no wait, no stampede, stale for one
//! reload); [`CacheAside::write_through`] warms the cache on writes at one more round
//! trip. `tests/suite/db_cache.rs` measures all of them over SQLite under concurrent
//! readers and writers.
//!
//! ```no_run
//! use ferrocache::client::{Client, ClientConfig};
//! # fn db_lookup(_: u64) -> Result<Option<String>, std::io::Error> { Ok(None) }
//! # fn db_update(_: u64, _: &str) -> Result<(), std::io::Error> { Ok(()) }
//! let client = Client::new(ClientConfig::new("127.0.0.1:11211")?)?;
//! let users = client.cache_aside(300).negative_ttl(30);
//! // Read: from the cache, else from the database (and cached for 300 s; a missing
//! // user is remembered as missing for 30 s, so lookups of absent ids spare the DB).
//! let name = users.get_or_load(b"user:42", || {
//!     Ok::<_, std::io::Error>(db_lookup(42)?.map(String::into_bytes))
//! })?;
//! // Write: the database first, then the cache (write-through).
//! users.write_through(b"user:42", b"Ada", |v| db_update(42, std::str::from_utf8(v).unwrap_or("")))?;
//! # let _ = name;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::{Duration, Instant};

use super::cluster::Client;
use super::node::{Item, Protocol, StoreOutcome};

/// Client flags that mark a cached "not found" (stored with an empty value).
pub const NEGATIVE_FLAGS: u32 = 0x4e46_0000;

/// Cache-aside settings bound to a client; see the module documentation.
#[derive(Debug, Clone)]
pub struct CacheAside<'c> {
    client: &'c Client,
    ttl: u32,
    negative_ttl: u32,
    flags: u32,
    wait_for_winner: Duration,
    vivify_ttl: u32,
    recache_window: u32,
}

/// Default of [`CacheAside::wait_for_winner`].
pub const DEFAULT_WAIT_FOR_WINNER: Duration = Duration::from_secs(1);
/// Default of [`CacheAside::vivify_ttl`] (seconds).
pub const DEFAULT_VIVIFY_TTL: u32 = 30;
/// Longest pause between two reads of a placeholder.
const POLL_MAX: Duration = Duration::from_millis(50);

fn is_placeholder(item: &Item) -> bool {
    item.value.is_empty() && item.flags == 0
}

/// What a cache hit means to the caller: a cached "not found" is `None`.
fn served(item: Item) -> Option<Vec<u8>> {
    if item.flags == NEGATIVE_FLAGS && item.value.is_empty() {
        None
    } else {
        Some(item.value)
    }
}

impl Client {
    /// Cache-aside helpers that store loaded values for `ttl` seconds (no negative
    /// caching unless [`CacheAside::negative_ttl`] is set).
    pub fn cache_aside(&self, ttl: u32) -> CacheAside<'_> {
        CacheAside {
            client: self,
            ttl,
            negative_ttl: 0,
            flags: 0,
            wait_for_winner: DEFAULT_WAIT_FOR_WINNER,
            vivify_ttl: DEFAULT_VIVIFY_TTL,
            recache_window: 0,
        }
    }

    /// Returns the cached value of `key`, or runs `loader` and caches what it
    /// returns for `ttl` seconds. `Ok(None)`: the loader found nothing. Over
    /// [`Protocol::Meta`], concurrent misses run the loader once (see the
    /// [module documentation](self), defaults of [`Client::cache_aside`]).
    pub fn get_or_set_with<E>(
        &self,
        key: &[u8],
        ttl: u32,
        loader: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        self.cache_aside(ttl).get_or_load(key, loader)
    }
}

impl CacheAside<'_> {
    /// Also cache "not found" answers of the loader, for `seconds` (0: never).
    pub fn negative_ttl(mut self, seconds: u32) -> Self {
        self.negative_ttl = seconds;
        self
    }

    /// Client flags stored with loaded values (default 0; must not be
    /// [`NEGATIVE_FLAGS`]).
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    /// [`Protocol::Meta`] only: how long a caller that finds another caller loading a
    /// missing key (a placeholder) waits for its value before running the loader
    /// itself (default [`DEFAULT_WAIT_FOR_WINNER`]; zero: no wait).
    pub fn wait_for_winner(mut self, wait: Duration) -> Self {
        self.wait_for_winner = wait;
        self
    }

    /// [`Protocol::Meta`] only: TTL in seconds of the placeholder a miss creates
    /// (`mg N`; default [`DEFAULT_VIVIFY_TTL`], at least 1).
    pub fn vivify_ttl(mut self, seconds: u32) -> Self {
        self.vivify_ttl = seconds.max(1);
        self
    }

    /// [`Protocol::Meta`] only: reload ahead of expiry once the item's remaining TTL
    /// (whole seconds, as the node counts it) is below `seconds` (`mg R`): one caller
    /// reloads, the others keep the still-valid value. 0 (default): off.
    pub fn recache_window(mut self, seconds: u32) -> Self {
        self.recache_window = seconds;
        self
    }

    /// The cached value, or the loader's (then cached). Over [`Protocol::Meta`]:
    /// stampede-safe, see the module documentation.
    pub fn get_or_load<E>(
        &self,
        key: &[u8],
        loader: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        if self.client.config().conn.protocol == Protocol::Meta {
            return self.get_or_load_meta(key, loader);
        }
        match self.client.get(key) {
            Ok(Some(item)) => return Ok(served(item)),
            Ok(None) => {}
            Err(e) => log::warn!("cache-aside: get failed, loading anyway: {e}"),
        }
        let loaded = loader()?;
        self.store_loaded(key, &loaded, None);
        Ok(loaded)
    }

    fn get_or_load_meta<E>(
        &self,
        key: &[u8],
        loader: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        let deadline = Instant::now() + self.wait_for_winner;
        let mut pause = Duration::from_millis(5);
        loop {
            let lease = match self.client.lease(key, self.vivify_ttl, self.recache_window) {
                Ok(Some(lease)) => lease,
                // A miss the node would not create a placeholder for (out of memory):
                // without a lease a store could race an invalidation, so none is made.
                Ok(None) => return loader(),
                Err(e) => {
                    log::warn!("cache-aside: mg failed, loading without caching: {e}");
                    return loader();
                }
            };
            let cas = lease.item.cas;
            if lease.won {
                return match loader() {
                    Ok(loaded) => {
                        self.store_loaded(key, &loaded, Some(cas));
                        Ok(loaded)
                    }
                    Err(e) => {
                        // Give the placeholder up so a waiting caller can win; an old
                        // value stays served until it expires.
                        if is_placeholder(&lease.item) {
                            if let Err(ce) = self.client.delete_if_cas(key, cas) {
                                log::warn!("cache-aside: could not drop the placeholder: {ce}");
                            }
                        }
                        Err(e)
                    }
                };
            }
            if !(lease.taken && is_placeholder(&lease.item)) {
                // Fresh, or (Z) still valid in the recache window or stale (X) while the
                // winner reloads it.
                return Ok(served(lease.item));
            }
            let now = Instant::now();
            if now >= deadline {
                log::debug!(
                    "cache-aside: no value from the winner after {:?}; loading",
                    self.wait_for_winner
                );
                let loaded = loader()?;
                self.store_loaded(key, &loaded, Some(cas));
                return Ok(loaded);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Caches what the loader returned. With `over` (meta: the CAS of the item the
    /// lease was on) only that item is replaced (`ms C<cas>`): if it changed (`EX`) or
    /// went (`NF`) since the lease was given, a writer invalidated it (or another
    /// caller stored) while the loader ran, so what the loader read may be older than
    /// the database and is not cached (see "Invalidation and the stale-set race").
    fn store_loaded(&self, key: &[u8], loaded: &Option<Vec<u8>>, over: Option<u64>) {
        let (value, flags, ttl) = match loaded {
            Some(v) => (v.as_slice(), self.flags, self.ttl),
            None if self.negative_ttl > 0 => (&b""[..], NEGATIVE_FLAGS, self.negative_ttl),
            None => {
                // Nothing to cache; the placeholder or old value the lease was on goes.
                if let Some(cas) = over {
                    if let Err(e) = self.client.delete_if_cas(key, cas) {
                        log::warn!("cache-aside: could not delete {cas}: {e}");
                    }
                }
                return;
            }
        };
        let stored = match over {
            None => self.client.set(key, value, flags, ttl),
            Some(cas) => match self.client.cas(key, value, flags, ttl, cas) {
                Ok(StoreOutcome::Stored) => Ok(()),
                Ok(other) => {
                    log::debug!("cache-aside: {other:?}: the lease was invalidated; not cached");
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = stored {
            log::warn!("cache-aside: could not cache the loaded value: {e}");
        }
    }

    /// Makes the cached value stale. Over [`Protocol::Meta`] `md <key> I`: it keeps
    /// being served to the callers that lose the recache while the first
    /// [`CacheAside::get_or_load`] reloads it, and keeps the expiry it was cached
    /// with, so a stale value is never served past that TTL (a new TTL with each
    /// invalidation would let a key that is written faster than it reloads serve its
    /// old value indefinitely). Over text and binary: deleted. False when the key was
    /// not cached.
    pub fn mark_stale(&self, key: &[u8]) -> super::error::Result<bool> {
        if self.client.config().conn.protocol == Protocol::Meta {
            self.client.mark_stale(key)
        } else {
            self.client.delete(key)
        }
    }

    /// Writes `value` to the system of record with `write`, then to the cache, only
    /// over the item that was cached before the write (see
    /// [`CacheAside::write_through_with`]).
    pub fn write_through<E>(
        &self,
        key: &[u8],
        value: &[u8],
        write: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.write_through_with(key, || write(value).map(|()| value.to_vec()))
            .map(|_| ())
    }

    /// Writes to the system of record with `write`, which returns the value as
    /// written (with the version or timestamp the database gave it, say), then caches
    /// that value; returns it. The cache write is conditional, so that it cannot put
    /// back an older value:
    ///
    /// ```text
    ///  get key (CAS c, or a miss) ─▶ write() ─▶ cas key <value> c   (or add, after a miss)
    ///                                            └ not stored ─▶ delete key
    /// ```
    ///
    /// Two writers that commit v1 then v2 but reach the cache in the other order would
    /// leave v1 cached with a plain `set`; here the second cache write finds the item
    /// changed since its `get` and deletes it instead, and the next read loads v2. A
    /// reader's lease placeholder is replaced the same way (its store then fails).
    /// The cost is one more round trip per write. When the cache cannot be reached,
    /// the write still succeeds (logged); only `write`'s own errors are errors.
    pub fn write_through_with<E>(
        &self,
        key: &[u8],
        write: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let before = match self.client.get(key) {
            Ok(item) => Some(item.map(|i| i.cas)),
            Err(e) => {
                log::warn!("write-through: cache get failed ({e}); the key will be deleted");
                None
            }
        };
        let value = write()?;
        let stored = match before {
            Some(Some(cas)) => self
                .client
                .cas(key, &value, self.flags, self.ttl, cas)
                .map(|o| o == StoreOutcome::Stored),
            Some(None) => self.client.add(key, &value, self.flags, self.ttl),
            None => Ok(false),
        };
        match stored {
            Ok(true) => {}
            Ok(false) => {
                log::debug!("write-through: the cached item changed meanwhile; deleting it");
                if let Err(e) = self.client.delete(key) {
                    log::warn!("write-through: cache delete failed: {e}");
                }
            }
            Err(e) => {
                log::warn!("write-through: cache write failed ({e}); deleting the key");
                let _ = self.client.delete(key);
            }
        }
        Ok(value)
    }

    /// Deletes from the system of record with `remove`, then from the cache.
    pub fn delete_through<E>(
        &self,
        key: &[u8],
        remove: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        remove()?;
        if let Err(e) = self.client.delete(key) {
            log::warn!("delete-through: cache delete failed: {e}");
        }
        Ok(())
    }
}
