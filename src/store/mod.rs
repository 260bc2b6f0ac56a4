//! The item store: a sharded hash index over slab-allocated item memory.
//!
//! This file is the narrow interface the rest of the server uses. Every operation
//! locks exactly one shard, briefly, and never does I/O while holding it: readers get
//! the item through a closure that runs under the shard lock and copies what it needs
//! (the value goes straight into the connection's write buffer), so a value being sent
//! to one client stays intact while another replaces or deletes the key.
//!
//! PLACEHOLDER: the body below is a simple map per shard so the server can be built and
//! tested end to end; the slab allocator replaces it.

pub mod clock;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashMap;

type Shard = Mutex<HashMap<Box<[u8]>, Entry>>;
use parking_lot::Mutex;

pub use clock::{Clock, RelTime};

/// Store settings, from the command line.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Item memory limit in bytes (`-m`).
    pub mem_limit: usize,
    /// Largest item in bytes (`-I`).
    pub item_size_max: usize,
    /// Slab chunk size growth factor (`-f`).
    pub growth_factor: f64,
    /// Minimum space for key + value + flags (`-n`).
    pub chunk_min: usize,
    /// CAS unique values kept and returned (`-C` turns this off).
    pub cas_enabled: bool,
    /// Evict when full (`-M` turns this off: stores fail with out of memory).
    pub evict: bool,
    /// Number of shards, a power of two.
    pub shards: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mem_limit: 64 << 20,
            item_size_max: 1 << 20,
            growth_factor: 1.25,
            chunk_min: 48,
            cas_enabled: true,
            evict: true,
            shards: 16,
        }
    }
}

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

/// incr or decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// Add, wrapping at 2^64.
    Incr(u64),
    /// Subtract, stopping at 0.
    Decr(u64),
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
    /// The new value could not be stored.
    OutOfMemory,
}

/// Store-wide figures for `stats`.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    /// Items stored now.
    pub curr_items: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Bytes used by stored items.
    pub bytes: u64,
    /// Valid items removed to free memory.
    pub evictions: u64,
    /// Expired items whose memory was reused.
    pub reclaimed: u64,
    /// Items expired before they were ever fetched.
    pub expired_unfetched: u64,
    /// Items evicted before they were ever fetched.
    pub evicted_unfetched: u64,
    /// Pages (1 MiB) handed to slab classes.
    pub total_pages: u64,
    /// Item memory limit in bytes.
    pub limit_maxbytes: u64,
    /// Stores that failed for lack of memory.
    pub outofmemory: u64,
    /// Items removed by the background expiry crawler.
    pub crawler_reclaimed: u64,
}

struct Entry {
    flags: u32,
    exptime: RelTime,
    cas: u64,
    time: RelTime,
    value: Box<[u8]>,
}

/// The sharded item store.
pub struct Store {
    cfg: StoreConfig,
    clock: Arc<Clock>,
    cas: AtomicU64,
    shards: Box<[Shard]>,
    oldest_live: AtomicU64,
}

impl Store {
    /// A new, empty store.
    pub fn new(cfg: StoreConfig, clock: Arc<Clock>) -> Store {
        let shards = (0..cfg.shards.max(1))
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        Store {
            cfg,
            clock,
            cas: AtomicU64::new(0),
            shards,
            oldest_live: AtomicU64::new(0),
        }
    }

    /// The clock this store expires items by.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    fn shard(&self, key: &[u8]) -> &Shard {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in key {
            h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
        }
        &self.shards[(h as usize) & (self.shards.len() - 1)]
    }

    fn next_cas(&self) -> u64 {
        if self.cfg.cas_enabled {
            self.cas.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            0
        }
    }

    fn live<'m>(
        &self,
        map: &'m mut HashMap<Box<[u8]>, Entry>,
        key: &[u8],
    ) -> Result<&'m mut Entry, Miss> {
        let oldest = self.oldest_live.load(Ordering::Relaxed) as u32;
        let state = match map.get(key) {
            None => return Err(Miss::Absent),
            Some(e) if self.clock.is_expired(e.exptime) => Err(Miss::Expired),
            Some(e) if oldest != 0 && e.time <= oldest && oldest <= self.clock.now() => {
                Err(Miss::Flushed)
            }
            Some(_) => Ok(()),
        };
        match state {
            Ok(()) => map.get_mut(key).ok_or(Miss::Absent),
            Err(m) => {
                map.remove(key);
                Err(m)
            }
        }
    }

    /// True when an item with this key and value length can never be stored
    /// (memcached's `item_size_ok` against `-I`).
    pub fn too_large(&self, key_len: usize, value_len: usize) -> bool {
        48 + key_len + 1 + value_len + 2 + 8 > self.cfg.item_size_max
    }

    /// Looks a key up and runs `f` on the item under the shard lock.
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&ItemRef<'_>) -> R) -> Result<R, Miss> {
        let mut map = self.shard(key).lock();
        let e = self.live(&mut map, key)?;
        Ok(f(&ItemRef {
            key,
            flags: e.flags,
            value: &e.value,
            cas: e.cas,
            exptime: e.exptime,
        }))
    }

    /// Like [`Store::get`], and sets a new expiry (`gat`).
    pub fn get_and_touch<R>(
        &self,
        key: &[u8],
        exptime: i64,
        f: impl FnOnce(&ItemRef<'_>) -> R,
    ) -> Result<R, Miss> {
        let mut map = self.shard(key).lock();
        let e = self.live(&mut map, key)?;
        e.exptime = self.clock.realtime(exptime);
        Ok(f(&ItemRef {
            key,
            flags: e.flags,
            value: &e.value,
            cas: e.cas,
            exptime: e.exptime,
        }))
    }

    /// Sets a new expiry on an existing item.
    pub fn touch(&self, key: &[u8], exptime: i64) -> Result<(), Miss> {
        self.get_and_touch(key, exptime, |_| ())
    }

    /// Stores a value. `exptime` is as the client sent it.
    pub fn store(
        &self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        value: &[u8],
    ) -> StoreOutcome {
        if self.too_large(key.len(), value.len()) {
            return StoreOutcome::TooLarge;
        }
        let mut map = self.shard(key).lock();
        let exists = self.live(&mut map, key);
        let now = self.clock.now();
        let entry = |value: Box<[u8]>, flags, exptime| Entry {
            flags,
            exptime,
            cas: self.next_cas(),
            time: now,
            value,
        };
        match (op, exists) {
            (StoreOp::Add, Ok(_)) => StoreOutcome::NotStored,
            (StoreOp::Replace | StoreOp::Append | StoreOp::Prepend, Err(_)) => {
                StoreOutcome::NotStored
            }
            (StoreOp::Cas(_), Err(_)) => StoreOutcome::NotFound,
            (StoreOp::Cas(c), Ok(e)) if e.cas != c => StoreOutcome::Exists,
            (StoreOp::Append, Ok(e)) => {
                let v = [&e.value[..], value].concat().into_boxed_slice();
                *e = entry(v, e.flags, e.exptime);
                StoreOutcome::Stored
            }
            (StoreOp::Prepend, Ok(e)) => {
                let v = [value, &e.value[..]].concat().into_boxed_slice();
                *e = entry(v, e.flags, e.exptime);
                StoreOutcome::Stored
            }
            _ => {
                let e = entry(value.into(), flags, self.clock.realtime(exptime));
                map.insert(key.into(), e);
                StoreOutcome::Stored
            }
        }
    }

    /// Removes a key.
    pub fn delete(&self, key: &[u8]) -> Result<(), Miss> {
        let mut map = self.shard(key).lock();
        self.live(&mut map, key)?;
        map.remove(key);
        Ok(())
    }

    /// incr / decr with memcached's rules.
    pub fn delta(&self, key: &[u8], delta: Delta) -> DeltaOutcome {
        let mut map = self.shard(key).lock();
        let e = match self.live(&mut map, key) {
            Ok(e) => e,
            Err(m) => return DeltaOutcome::NotFound(m),
        };
        let text = std::str::from_utf8(&e.value).unwrap_or("x");
        let Ok(v) = text.trim_end().parse::<u64>() else {
            return DeltaOutcome::NonNumeric;
        };
        let n = match delta {
            Delta::Incr(d) => v.wrapping_add(d),
            Delta::Decr(d) => v.saturating_sub(d),
        };
        e.value = n.to_string().into_bytes().into_boxed_slice();
        e.cas = self.next_cas();
        DeltaOutcome::Value(n)
    }

    /// `flush_all [delay]`: invalidates every item stored before the given time.
    pub fn flush_all(&self, exptime: i64) {
        let t = if exptime > 0 {
            self.clock.realtime(exptime) - 1
        } else {
            self.clock.now()
        };
        self.oldest_live.store(t as u64, Ordering::Relaxed);
    }

    /// Removes a key without counting it (after a failed `set`).
    pub fn unlink(&self, key: &[u8]) {
        self.shard(key).lock().remove(key);
    }

    /// Changes the memory limit (`cache_memlimit`). Returns false if refused.
    pub fn set_mem_limit(&self, _bytes: usize) -> bool {
        true
    }

    /// Store-wide figures.
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            limit_maxbytes: self.cfg.mem_limit as u64,
            ..Default::default()
        };
        for sh in self.shards.iter() {
            let m = sh.lock();
            s.curr_items += m.len() as u64;
            s.bytes += m
                .iter()
                .map(|(k, v)| (k.len() + v.value.len()) as u64)
                .sum::<u64>();
        }
        s
    }

    /// One step of background expiry: reclaims up to `max` expired items.
    pub fn crawl_expired(&self, _max: usize) -> usize {
        0
    }
}
