//! `lru_crawler`: the crawler's settings and state, `lru_crawler crawl` (a full
//! expiry pass on a thread of its own) and `lru_crawler metadump` (streamed by the
//! connection that asked, with back-pressure).
//!
//! ```text
//!  metadump:  Conn ──(reply buffer below DUMP_LOW?)──▶ Store::dump_step: lock ONE shard,
//!             ▲                                        ≤ DUMP_BATCH items formatted
//!             │ writable event                         straight into the reply buffer,
//!             └──── client reads ◀── write ◀────────── unlock, cursor moves on
//! ```
//!
//! A dump holds at most one batch of lines beyond the connection's reply floor, and a
//! shard lock for one batch only, whatever the number of items; a client that stops
//! reading stops the walk. As in memcached only one crawl or dump runs at a time (the
//! others are answered `BUSY currently processing crawler request`); unlike memcached,
//! a dump blocked by its client never blocks a worker thread.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::server::admin::watch::uriencode;
use crate::store::{DumpCursor, ItemMeta, Store};

/// Items examined under one shard lock.
pub const DUMP_BATCH: usize = 256;
/// A dump produces more only while fewer reply bytes than this wait.
pub const DUMP_LOW: usize = 32 << 10;
/// Highest class id memcached accepts (`MAX_NUMBER_OF_SLAB_CLASSES - 1`).
pub const MEMCACHED_MAX_CLASS: usize = 63;

/// The crawler's settings and whether it is busy.
#[derive(Debug)]
pub struct Crawler {
    enabled: AtomicBool,
    busy: AtomicBool,
    crawl_requested: AtomicBool,
    /// `lru_crawler sleep`: microseconds between crawl batches.
    pub sleep_us: AtomicU32,
    /// `lru_crawler tocrawl`: items examined per shard in a crawl (0: all).
    pub tocrawl: AtomicU32,
    /// Crawls and dumps started (memcached's `lru_crawler_starts`).
    pub starts: AtomicU64,
}

/// Why a crawl or dump did not start (memcached's `crawler_result_type` replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
    /// Another crawl or dump runs.
    Busy,
    /// A class id that is not one.
    BadClass,
    /// The class list names no class.
    NotStarted,
    /// What memcached answers for `crawl hash`.
    Unknown,
}

impl StartError {
    /// The reply line.
    pub fn reply(self) -> &'static str {
        match self {
            StartError::Busy => "BUSY currently processing crawler request",
            StartError::BadClass => "BADCLASS invalid class id",
            StartError::NotStarted => "NOTSTARTED no items to crawl",
            StartError::Unknown => "ERROR an unknown error happened",
        }
    }
}

/// Which items a dump lists.
#[derive(Debug, Clone)]
pub enum Classes {
    /// `all` or `hash`.
    All,
    /// These class ids (index = id).
    Some(Vec<bool>),
}

impl Classes {
    fn has(&self, class: usize) -> bool {
        match self {
            Classes::All => true,
            Classes::Some(v) => v.get(class).copied().unwrap_or(false),
        }
    }
}

/// Parses a class list as memcached's `lru_crawler_crawl` does: `all`, `hash` (when
/// `hash_ok`), or ids separated by commas (empty pieces skipped), each a number from
/// 1 to 63 (memcached's limit, kept for its replies: items of our finer classes above
/// 63, large ones, are listed by `all` only). `classes` is our class count.
pub fn parse_classes(arg: &[u8], hash_ok: bool, classes: usize) -> Result<Classes, StartError> {
    match arg {
        b"all" => return Ok(Classes::All),
        b"hash" if hash_ok => return Ok(Classes::All),
        b"hash" => return Err(StartError::Unknown),
        _ => {}
    }
    let max = MEMCACHED_MAX_CLASS;
    let mut set = vec![false; classes.max(max) + 1];
    let mut any = false;
    for piece in arg.split(|&b| b == b',').filter(|p| !p.is_empty()) {
        match crate::num::strtoul(piece) {
            Some(id) if id >= 1 && (id as usize) <= max => {
                set[id as usize] = true;
                any = true;
            }
            _ => return Err(StartError::BadClass),
        }
    }
    if any {
        Ok(Classes::Some(set))
    } else {
        Err(StartError::NotStarted)
    }
}

impl Crawler {
    /// A crawler paced as `-o lru_crawler_sleep` / `lru_crawler_tocrawl` say.
    pub fn from_settings(c: &crate::config::compat::CompatSettings) -> Crawler {
        let cr = Crawler::default();
        cr.sleep_us.store(c.lru_crawler_sleep, Ordering::Relaxed);
        cr.tocrawl.store(c.lru_crawler_tocrawl, Ordering::Relaxed);
        cr
    }
}

impl Default for Crawler {
    fn default() -> Self {
        Crawler {
            enabled: AtomicBool::new(true),
            busy: AtomicBool::new(false),
            crawl_requested: AtomicBool::new(false),
            sleep_us: AtomicU32::new(100),
            tocrawl: AtomicU32::new(0),
            starts: AtomicU64::new(0),
        }
    }
}

impl Crawler {
    /// `lru_crawler enable|disable` state.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// `lru_crawler enable`: false when it already was (memcached then fails to
    /// start a second crawler thread).
    pub fn enable(&self) -> bool {
        !self.enabled.swap(true, Ordering::Relaxed)
    }

    /// `lru_crawler disable` (always OK; a running crawl or dump finishes).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Relaxed);
    }

    /// A crawl or dump is running.
    pub fn running(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
    }

    fn claim(self: &Arc<Self>) -> Result<BusyGuard, StartError> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(StartError::Busy);
        }
        self.starts.fetch_add(1, Ordering::Relaxed);
        Ok(BusyGuard(self.clone()))
    }

    /// `lru_crawler crawl <classes>`: the maintenance thread starts the pass.
    pub fn request_crawl(self: &Arc<Self>, arg: &[u8], classes: usize) -> Result<(), StartError> {
        parse_classes(arg, false, classes)?;
        let guard = self.claim()?;
        // The crawl thread takes the claim over.
        std::mem::forget(guard);
        self.crawl_requested.store(true, Ordering::Release);
        Ok(())
    }

    /// `lru_crawler metadump <classes>`: a dump for the calling connection.
    pub fn start_dump(self: &Arc<Self>, arg: &[u8], classes: usize) -> Result<Dump, StartError> {
        let classes = parse_classes(arg, true, classes)?;
        let guard = self.claim()?;
        Ok(Dump {
            cursor: DumpCursor::new(),
            classes,
            _busy: guard,
        })
    }
}

/// Releases the crawler when a dump or crawl ends (or its connection closes).
#[derive(Debug)]
pub struct BusyGuard(Arc<Crawler>);

impl Crawler {
    /// Whether an `lru_crawler crawl` was requested since the last call (the
    /// request is taken: the caller starts the crawl).
    pub fn take_crawl_request(&self) -> bool {
        self.crawl_requested.swap(false, Ordering::AcqRel)
    }
}

impl BusyGuard {
    /// Takes charge of a crawler already marked busy (a requested crawl).
    pub fn new(crawler: Arc<Crawler>) -> BusyGuard {
        BusyGuard(crawler)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

/// A metadump in progress on one connection.
#[derive(Debug)]
pub struct Dump {
    cursor: DumpCursor,
    classes: Classes,
    _busy: BusyGuard,
}

impl Dump {
    /// Appends the lines of one batch to `out`; true when the dump is complete
    /// (`END` written).
    pub fn step(&mut self, store: &Store, started: i64, cas_on: bool, out: &mut Vec<u8>) -> bool {
        let classes = &self.classes;
        let done = store.dump_step(&mut self.cursor, DUMP_BATCH, &mut |it| {
            if classes.has(it.class) {
                line(out, it, started, cas_on);
            }
        });
        if done {
            out.extend_from_slice(b"END\r\n");
        }
        done
    }
}

/// One metadump line, as memcached's `crawler_metadump_eval` prints it.
fn line(out: &mut Vec<u8>, it: &ItemMeta<'_>, started: i64, cas_on: bool) {
    out.extend_from_slice(b"key=");
    uriencode(it.key, out);
    let exp = if it.exptime == 0 {
        -1
    } else {
        i64::from(it.exptime) + started
    };
    let size = crate::limits::item_size(it.key.len(), it.flags, it.value_len + 2, cas_on);
    let _ = writeln!(
        out,
        " exp={exp} la={} cas={} fetch={} cls={} size={size}",
        i64::from(it.time) + started,
        it.cas,
        if it.fetched { "yes" } else { "no" },
        it.class
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_lists_as_memcached() {
        assert!(matches!(parse_classes(b"all", false, 10), Ok(Classes::All)));
        assert!(matches!(parse_classes(b"hash", true, 10), Ok(Classes::All)));
        assert_eq!(
            parse_classes(b"hash", false, 10).err(),
            Some(StartError::Unknown)
        );
        assert_eq!(
            parse_classes(b",", true, 10).err(),
            Some(StartError::NotStarted)
        );
        assert_eq!(
            parse_classes(b"0", true, 10).err(),
            Some(StartError::BadClass)
        );
        assert_eq!(
            parse_classes(b"64", true, 10).err(),
            Some(StartError::BadClass)
        );
        assert_eq!(
            parse_classes(b"1,x", true, 10).err(),
            Some(StartError::BadClass)
        );
        assert_eq!(
            parse_classes(b"1,-1", true, 10).err(),
            Some(StartError::BadClass)
        );
        assert!(parse_classes(b"63", true, 10).is_ok());
        assert_eq!(
            parse_classes(b"100", true, 150).err(),
            Some(StartError::BadClass)
        );
        assert!(parse_classes(b"+1,,2", true, 10).is_ok());
    }

    #[test]
    fn one_busy_at_a_time() {
        let c = Arc::new(Crawler::default());
        let d = c.start_dump(b"all", 10).expect("dump");
        assert_eq!(c.start_dump(b"all", 10).err(), Some(StartError::Busy));
        assert_eq!(c.request_crawl(b"all", 10).err(), Some(StartError::Busy));
        drop(d);
        assert!(!c.running());
        assert!(c.start_dump(b"1", 10).is_ok());
    }
}
