//! The server clock: coarse seconds since start, memcached's expiry arithmetic, and a
//! test hook (`debugtime`) that moves time forward without sleeping.
//!
//! memcached keeps `current_time` as seconds relative to `process_started`, which is set
//! to `time(NULL) - ITEM_UPDATE_INTERVAL - 2` at start (so relative time starts at 62 and
//! `uptime` is `current_time - 60`). Item expiry times are stored as relative seconds;
//! `0` means "never". We keep the same arithmetic so that every edge case (30-day
//! boundary, absolute times in the past, negative TTLs) behaves the same.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest relative TTL: anything above is an absolute unix time (30 days).
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;
/// memcached's `ITEM_UPDATE_INTERVAL`, part of the start offset of relative time.
const ITEM_UPDATE_INTERVAL: i64 = 60;

/// A relative time in seconds since [`Clock::process_started`].
pub type RelTime = u32;

/// The coarse clock shared by all workers and the store.
#[derive(Debug)]
pub struct Clock {
    process_started: i64,
    current: AtomicU32,
    offset: AtomicI64,
    paused: AtomicBool,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Self::starting_at(unix_now())
    }

    /// A clock whose real time is `now` (unix seconds); for tests.
    pub fn starting_at(now: i64) -> Clock {
        let process_started = now - ITEM_UPDATE_INTERVAL - 2;
        Clock {
            process_started,
            current: AtomicU32::new((now - process_started) as u32),
            offset: AtomicI64::new(0),
            paused: AtomicBool::new(false),
        }
    }

    /// Unix time at which relative time 0 lies.
    pub fn process_started(&self) -> i64 {
        self.process_started
    }

    /// Current relative time in seconds.
    #[inline]
    pub fn now(&self) -> RelTime {
        self.current.load(Ordering::Relaxed)
    }

    /// Current unix time as the server sees it (includes `debugtime` moves).
    pub fn unix_time(&self) -> i64 {
        self.process_started + self.now() as i64
    }

    /// Seconds since start, as memcached's `uptime` stat reports it.
    pub fn uptime(&self) -> u32 {
        self.now().saturating_sub(ITEM_UPDATE_INTERVAL as u32)
    }

    /// Re-reads the wall clock; called about once a second by the server.
    pub fn tick(&self) {
        self.tick_at(unix_now());
    }

    /// Stops (`true`) or restarts the clock's ticking (`debugtime p` / `debugtime r`).
    /// While paused, time moves only by [`Clock::advance`]. On restart the clock
    /// carries on from where it stood.
    pub fn pause(&self, on: bool) {
        let was = self.paused.swap(on, Ordering::Relaxed);
        if was && !on {
            // Re-base the offset so time continues from the paused value.
            let rel = unix_now() - self.process_started;
            let cur = self.current.load(Ordering::Relaxed) as i64;
            self.offset.store(cur - rel, Ordering::Relaxed);
        }
    }

    /// Sets the clock from a given wall time (unix seconds); for tests.
    pub fn tick_at(&self, wall: i64) {
        if self.paused.load(Ordering::Relaxed) {
            return;
        }
        let rel = wall - self.process_started + self.offset.load(Ordering::Relaxed);
        self.current
            .store(rel.clamp(0, u32::MAX as i64) as u32, Ordering::Relaxed);
    }

    /// Moves the clock by `secs` (memcached's debug `debugtime` command).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
        let cur = self.current.load(Ordering::Relaxed) as i64 + secs;
        self.current
            .store(cur.clamp(0, u32::MAX as i64) as u32, Ordering::Relaxed);
    }

    /// Converts a client-supplied expiry (0, relative seconds, absolute unix time or
    /// negative) into a relative expiry time, exactly as memcached's `realtime()`.
    /// `0` means "never expires"; any value `<= now()` means "already expired".
    pub fn realtime(&self, exptime: i64) -> RelTime {
        if exptime == 0 {
            return 0;
        }
        // The text protocol maps negative TTLs to "immediately expired".
        let exptime = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            exptime
        };
        if exptime > REALTIME_MAXDELTA {
            if exptime <= self.process_started {
                1
            } else {
                (exptime - self.process_started).min(u32::MAX as i64) as RelTime
            }
        } else {
            (exptime + self.now() as i64).min(u32::MAX as i64) as RelTime
        }
    }

    /// True when an item with relative expiry `exptime` is expired now.
    #[inline]
    pub fn is_expired(&self, exptime: RelTime) -> bool {
        exptime != 0 && exptime <= self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rules_match_memcached() {
        let c = Clock::starting_at(1_700_000_000);
        let now = c.now();
        assert_eq!(now, 62);
        assert_eq!(c.realtime(0), 0);
        assert_eq!(c.realtime(10), now + 10);
        assert_eq!(
            c.realtime(REALTIME_MAXDELTA),
            now + REALTIME_MAXDELTA as u32
        );
        // Above 30 days: absolute unix time.
        assert_eq!(c.realtime(1_700_000_100), 100 + 62);
        // Absolute time in the past: already expired.
        assert!(c.is_expired(c.realtime(REALTIME_MAXDELTA + 1)));
        assert!(c.is_expired(c.realtime(-1)));
        assert!(!c.is_expired(c.realtime(1)));
        assert!(!c.is_expired(0));
    }

    #[test]
    fn advance_moves_time_and_survives_ticks() {
        let c = Clock::starting_at(1_700_000_000);
        let e = c.realtime(5);
        c.advance(4);
        assert!(!c.is_expired(e));
        c.advance(1);
        assert!(c.is_expired(e));
        c.tick_at(1_700_000_000);
        assert!(c.is_expired(e), "tick keeps the debugtime offset");
        assert_eq!(c.uptime(), 7);
    }
}
