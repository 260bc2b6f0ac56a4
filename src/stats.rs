//! Counters and the building blocks of the `stats` command's output.
//!
//! Each worker owns a [`Counters`] block that only it increments (relaxed atomic adds on
//! its own cache lines: no lock and no sharing on the request path); `stats` sums the
//! blocks of all workers. `stats reset` zeroes them. Connection counters that the
//! acceptor and workers both touch live in [`ConnCounters`]. Per-prefix statistics
//! (`stats detail`) are kept only while switched on. What moves the request counters
//! is `server::observe`, the one place every executed operation is seen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::latency::Latency;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Per-worker request counters, named as memcached's `stats` names them
        /// (`get_cmds` is printed as `cmd_get`, and so on), and the worker's
        /// latency histograms (`stats latency`).
        #[derive(Debug, Default)]
        #[allow(missing_docs)]
        #[repr(align(128))]
        pub struct Counters { $(pub $name: AtomicU64,)* pub latency: Latency }

        /// A plain copy of [`Counters`], summed over workers.
        #[derive(Debug, Default, Clone, Copy)]
        #[allow(missing_docs)]
        pub struct CounterSnapshot { $(pub $name: u64,)* }

        impl Counters {
            /// Adds this block's values into `s`.
            pub fn add_into(&self, s: &mut CounterSnapshot) {
                $( s.$name += self.$name.load(Ordering::Relaxed); )*
            }
            /// Zeroes every counter and histogram (`stats reset`).
            pub fn reset(&self) {
                $( self.$name.store(0, Ordering::Relaxed); )*
                self.latency.reset();
            }
        }
    };
}

counters!(
    get_cmds,
    get_hits,
    get_misses,
    get_expired,
    get_flushed,
    get_miss_evicted,
    get_miss_never_stored,
    set_cmds,
    flush_cmds,
    touch_cmds,
    touch_hits,
    touch_misses,
    meta_cmds,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    cas_hits,
    cas_misses,
    cas_badval,
    store_too_large,
    store_no_memory,
    auth_cmds,
    auth_errors,
    idle_kicks,
    bytes_read,
    bytes_written,
    conn_yields,
);

/// Adds `n` to a counter owned by the calling worker.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Connection counters shared by the acceptor and the workers.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Open client connections.
    pub curr_connections: AtomicU64,
    /// Connections ever accepted (memcached counts listeners too).
    pub total_connections: AtomicU64,
    /// Connections refused by `-c`.
    pub rejected_connections: AtomicU64,
    /// Most connections ever open at once, plus listeners (memcached's
    /// `connection_structures`).
    pub connection_structures: AtomicU64,
}

/// Sums a set of per-worker counter blocks.
pub fn sum<'a>(blocks: impl IntoIterator<Item = &'a Counters>) -> CounterSnapshot {
    let mut s = CounterSnapshot::default();
    for b in blocks {
        b.add_into(&mut s);
    }
    s
}

/// Appends `STAT <name> <value>\r\n`.
pub fn stat_line(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "STAT {name} {value}\r\n");
}

#[derive(Debug, Default, Clone, Copy)]
struct PrefixCounts {
    gets: u64,
    hits: u64,
    sets: u64,
    deletes: u64,
}

/// Per-key-prefix counters (`stats detail on|off|dump`, `-D`).
#[derive(Debug)]
pub struct PrefixStats {
    enabled: AtomicBool,
    delimiter: u8,
    table: Mutex<PrefixTable>,
}

/// Prefix rows in insertion order (so `dump` is stable) and their index.
#[derive(Debug, Default)]
struct PrefixTable {
    index: HashMap<Box<[u8]>, usize>,
    rows: Vec<(Box<[u8]>, PrefixCounts)>,
}

/// Which per-prefix event to record.
#[derive(Debug, Clone, Copy)]
pub enum PrefixEvent {
    /// A lookup, and whether it hit.
    Get(bool),
    /// A store.
    Set,
    /// A delete.
    Delete,
}

impl PrefixStats {
    /// Prefix stats with the given delimiter, on or off.
    pub fn new(delimiter: u8, enabled: bool) -> PrefixStats {
        PrefixStats {
            enabled: AtomicBool::new(enabled),
            delimiter,
            table: Mutex::new(PrefixTable::default()),
        }
    }

    /// True while collection is on.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Switches collection on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Records an event for the key's prefix (keys without the delimiter are not
    /// counted, as in memcached).
    #[inline]
    pub fn record(&self, key: &[u8], ev: PrefixEvent) {
        if self.enabled() {
            self.record_on(key, ev);
        }
    }

    #[cold]
    fn record_on(&self, key: &[u8], ev: PrefixEvent) {
        let Some(end) = key.iter().position(|&b| b == self.delimiter) else {
            return;
        };
        let prefix = &key[..end];
        let mut t = self.table.lock();
        let PrefixTable { index, rows } = &mut *t;
        let i = match index.get(prefix) {
            Some(&i) => i,
            None => {
                rows.push((prefix.into(), PrefixCounts::default()));
                index.insert(prefix.into(), rows.len() - 1);
                rows.len() - 1
            }
        };
        let c = &mut rows[i].1;
        match ev {
            PrefixEvent::Get(hit) => {
                c.gets += 1;
                c.hits += hit as u64;
            }
            PrefixEvent::Set => c.sets += 1,
            PrefixEvent::Delete => c.deletes += 1,
        }
    }

    /// Appends the `stats detail dump` reply, `END` included.
    pub fn dump(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let t = self.table.lock();
        for (p, c) in t.rows.iter() {
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(p);
            let _ = write!(
                out,
                " get {} hit {} set {} del {}\r\n",
                c.gets, c.hits, c.sets, c.deletes
            );
        }
        out.extend_from_slice(b"END\r\n");
    }

    /// Forgets all prefixes (`stats reset`).
    pub fn clear(&self) {
        let mut t = self.table.lock();
        t.index.clear();
        t.rows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_and_reset() {
        let a = Counters::default();
        let b = Counters::default();
        bump(&a.get_hits, 2);
        bump(&b.get_hits, 3);
        assert_eq!(sum([&a, &b]).get_hits, 5);
        a.reset();
        assert_eq!(sum([&a, &b]).get_hits, 3);
    }

    #[test]
    fn prefix_stats_only_count_delimited_keys_while_on() {
        let p = PrefixStats::new(b':', false);
        p.record(b"user:1", PrefixEvent::Set);
        p.set_enabled(true);
        p.record(b"user:1", PrefixEvent::Get(true));
        p.record(b"user:2", PrefixEvent::Get(false));
        p.record(b"nodelim", PrefixEvent::Set);
        p.record(b"user:2", PrefixEvent::Delete);
        let mut out = Vec::new();
        p.dump(&mut out);
        assert_eq!(out, b"PREFIX user get 2 hit 1 set 0 del 1\r\nEND\r\n");
    }
}
