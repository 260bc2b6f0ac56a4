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

use super::Client;

/// Client flags that mark a cached "not found" (stored with an empty value).
pub const NEGATIVE_FLAGS: u32 = 0x4e46_0000;

/// Cache-aside settings bound to a client; see the module documentation.
#[derive(Debug, Clone)]
pub struct CacheAside<'c> {
    client: &'c Client,
    ttl: u32,
    negative_ttl: u32,
    flags: u32,
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
        }
    }

    /// Returns the cached value of `key`, or runs `loader` and caches what it
    /// returns for `ttl` seconds. `Ok(None)`: the loader found nothing.
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

    /// The cached value, or the loader's (then cached).
    pub fn get_or_load<E>(
        &self,
        key: &[u8],
        loader: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        match self.client.get(key) {
            Ok(Some(item)) if item.flags == NEGATIVE_FLAGS && item.value.is_empty() => {
                return Ok(None)
            }
            Ok(Some(item)) => return Ok(Some(item.value)),
            Ok(None) => {}
            Err(e) => log::warn!("cache-aside: get failed, loading anyway: {e}"),
        }
        let loaded = loader()?;
        let stored = match &loaded {
            Some(v) => self.client.set(key, v, self.flags, self.ttl),
            None if self.negative_ttl > 0 => {
                self.client.set(key, b"", NEGATIVE_FLAGS, self.negative_ttl)
            }
            None => Ok(()),
        };
        if let Err(e) = stored {
            log::warn!("cache-aside: could not cache the loaded value: {e}");
        }
        Ok(loaded)
    }

    /// Writes `value` to the system of record with `write`, then to the cache. If
    /// the cache write fails the key is deleted (best effort) so no stale value stays.
    pub fn write_through<E>(
        &self,
        key: &[u8],
        value: &[u8],
        write: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        write(value)?;
        if let Err(e) = self.client.set(key, value, self.flags, self.ttl) {
            log::warn!("write-through: cache set failed ({e}); deleting the key");
            let _ = self.client.delete(key);
        }
        Ok(())
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
