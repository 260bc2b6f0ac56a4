//! The caching patterns, each a read and a write of one item through the cache.
//!
//! ```text
//!  pattern        read                                   write (after the UPDATE commits)
//!  none           SELECT                                 -
//!  naive          get; miss: SELECT, set                 delete          (stale-set race)
//!  naive-set      get; miss: SELECT, set                 set new value   (both races)
//!  lease          get_or_load (mg N lease, ms C<cas>)    delete          (recommended)
//!  lease-stale    get_or_load                            md I (mark stale: served while one reloads)
//!  write-through  get_or_load                            write_through_with (get, UPDATE, cas/add, else delete)
//! ```
//!
//! The naive read races a writer: it misses, reads v1, the writer commits v2 and
//! deletes the key, then the read caches v1 — stale until the TTL. The naive
//! set-on-write also races another writer (commits v1, v2; cache writes v2, v1). The
//! client's helpers close both: the lease is taken before the database is read and
//! the store is made only over the leased item, and write-through stores only over
//! the item it saw before writing.

use std::time::Duration;

use ferrocache::client::cache::NEGATIVE_FLAGS;
use ferrocache::client::{CacheAside, Client};

use crate::db::{Db, DbError};

/// A caching pattern (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// Every read goes to the database.
    None,
    /// get / set, invalidate with delete.
    Naive,
    /// get / set, set the new value on write.
    NaiveSet,
    /// The client's lease (`get_or_load` over meta), invalidate with delete.
    Lease,
    /// The lease, invalidate with `md I` (stale-while-revalidate).
    LeaseStale,
    /// The lease, CAS-guarded write-through.
    WriteThrough,
}

impl Pattern {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::None => "none",
            Pattern::Naive => "naive",
            Pattern::NaiveSet => "naive-set",
            Pattern::Lease => "lease",
            Pattern::LeaseStale => "lease-stale",
            Pattern::WriteThrough => "write-through",
        }
    }
}

/// How an application thread reads and writes items.
pub struct Items<'a> {
    /// The cache (`None` for [`Pattern::None`]).
    pub client: Option<&'a Client>,
    /// The pattern.
    pub pattern: Pattern,
    /// TTL of cached rows, seconds.
    pub ttl: u32,
    /// TTL of cached "no such row", seconds (0: not cached).
    pub negative_ttl: u32,
    /// Time the application spends between reading the row and caching it
    /// (building the object it caches): the window of the stale-set race.
    pub render: Duration,
    /// Cache operations that failed (the database answered instead).
    pub cache_errors: u64,
}

/// The cache key of item `id`.
pub fn item_key(id: i64) -> Vec<u8> {
    format!("item:{id}").into_bytes()
}

impl<'a> Items<'a> {
    fn cache(&self, client: &'a Client) -> CacheAside<'a> {
        client.cache_aside(self.ttl).negative_ttl(self.negative_ttl)
    }

    /// Reads item `id`: its cached form, `None` when there is no such row.
    pub fn read(&mut self, db: &mut Db, id: i64) -> Result<Option<Vec<u8>>, DbError> {
        let render = self.render;
        let load = |db: &mut Db| -> Result<Option<Vec<u8>>, DbError> {
            let row = db.get_item(id)?;
            if !render.is_zero() {
                std::thread::sleep(render);
            }
            Ok(row)
        };
        let Some(client) = self.client else {
            return db.get_item(id);
        };
        let key = item_key(id);
        match self.pattern {
            Pattern::None => db.get_item(id),
            Pattern::Naive | Pattern::NaiveSet => {
                match client.get(&key) {
                    Ok(Some(it)) if it.flags == NEGATIVE_FLAGS && it.value.is_empty() => {
                        return Ok(None)
                    }
                    Ok(Some(it)) => return Ok(Some(it.value)),
                    Ok(None) => {}
                    Err(_) => self.cache_errors += 1,
                }
                let row = load(db)?;
                let stored = match &row {
                    Some(v) => client.set(&key, v, 0, self.ttl),
                    None if self.negative_ttl > 0 => {
                        client.set(&key, b"", NEGATIVE_FLAGS, self.negative_ttl)
                    }
                    None => Ok(()),
                };
                if stored.is_err() {
                    self.cache_errors += 1;
                }
                Ok(row)
            }
            Pattern::Lease | Pattern::LeaseStale | Pattern::WriteThrough => {
                self.cache(client).get_or_load(&key, || load(db))
            }
        }
    }

    /// Updates item `id` (one more on its version) and brings the cache up to date:
    /// the new cached form, `None` when there is no such row.
    pub fn write(&mut self, db: &mut Db, id: i64) -> Result<Option<Vec<u8>>, DbError> {
        let Some(client) = self.client else {
            return db.update_item(id);
        };
        let key = item_key(id);
        let cache = self.cache(client);
        let (row, cached) = match self.pattern {
            Pattern::None => (db.update_item(id)?, Ok(())),
            Pattern::Naive | Pattern::Lease => {
                let row = db.update_item(id)?;
                (row, client.delete(&key).map(|_| ()))
            }
            Pattern::NaiveSet => {
                let row = db.update_item(id)?;
                let set = match &row {
                    Some(v) => client.set(&key, v, 0, self.ttl),
                    None => client.delete(&key).map(|_| ()),
                };
                (row, set)
            }
            Pattern::LeaseStale => {
                let row = db.update_item(id)?;
                (row, cache.mark_stale(&key).map(|_| ()))
            }
            Pattern::WriteThrough => {
                // The value to cache is the row as the UPDATE left it (its new version).
                let mut row = None;
                cache.write_through_with(&key, || {
                    row = db.update_item(id)?;
                    Ok::<_, DbError>(row.clone().unwrap_or_default())
                })?;
                (row, Ok(()))
            }
        };
        if cached.is_err() {
            self.cache_errors += 1;
        }
        Ok(row)
    }
}
