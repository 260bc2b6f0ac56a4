//! Rendered `stats hotkeys N` rows, reused while they are fresh (issue #24, point 8):
//! the server's `stats` executor asks [`HotRowsCache::get`] with the sketches and the
//! server's clock; the rows are made at most once per second of server time per N.

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::hotkeys::{self, escape_key, HotKeys};

/// How long rendered `stats hotkeys` rows are reused at most (in real time; never
/// across a second of server time).
const HOT_ROWS_FOR: Duration = Duration::from_secs(1);

/// Rendered `stats hotkeys` rows, reused while they are fresh.
pub struct HotRows {
    /// Server time (relative seconds) they were made at.
    now: u32,
    made: Instant,
    /// The sketches' epoch then ([`hotkeys::HotKeys::epoch`]).
    epoch: u64,
    /// Keys asked for.
    n: usize,
    /// (name, value) in order.
    rows: Vec<(String, String)>,
    /// The same as text `STAT` lines.
    text: Vec<u8>,
}

/// The last `stats hotkeys N` rows (issue #24, point 8). Making them merges every
/// worker's sketch (about 0.4 ms) and formats up to 5,000 rows (about 1.8 ms for
/// N = 1000): clients looping it made every other client of the server several
/// times slower. A report is a rate over seconds of server time, so rows made in the
/// same second of server time (and under a second ago in real time, for `-o
/// debugtime`), for the same N, with no switch or `stats reset` since, are served
/// again: a looping client costs a copy per request and one report per second.
#[derive(Default)]
pub struct HotRowsCache(Mutex<Option<Arc<HotRows>>>);

impl HotRowsCache {
    /// The rows of `stats hotkeys n` from the sketches `hot` at server time `now`
    /// (relative seconds).
    pub fn get(&self, hot: &HotKeys, n: usize, now: u32) -> Arc<HotRows> {
        let epoch = hot.epoch();
        if let Some(r) = &*self.0.lock() {
            if r.now == now && r.n == n && r.epoch == epoch && r.made.elapsed() < HOT_ROWS_FOR {
                return r.clone();
            }
        }
        // Made without the lock held: a concurrent request makes its own.
        let rep = hot.report(n, now);
        let mut rows: Vec<(String, String)> = Vec::with_capacity(8 + 5 * rep.top.len());
        let mut row = |k: &str, v: &dyn Display| rows.push((k.to_string(), v.to_string()));
        row("hotkeys_enabled", &yes_no(hot.enabled()));
        row("hotkeys_sample_every", &hotkeys::SAMPLE_EVERY);
        row("hotkeys_counters", &hotkeys::COUNTERS);
        row("hotkeys_half_life", &hotkeys::HALF_LIFE);
        row("hotkeys_sketches", &rep.sketches);
        row("hotkeys_memory", &rep.bytes);
        row("hotkeys_sampled", &rep.sampled);
        row("hotkeys_total_rate", &format_args!("{:.1}", rep.total_rate));
        for (r, k) in rep.top.iter().enumerate() {
            let p = format!("hotkey:{}", r + 1);
            row(&format!("{p}:key"), &escape_key(&k.key));
            row(&format!("{p}:rate"), &format_args!("{:.1}", k.rate));
            row(&format!("{p}:share"), &format_args!("{:.4}", k.share));
            row(&format!("{p}:count"), &k.count);
            row(&format!("{p}:error"), &k.error);
        }
        let mut text = Vec::with_capacity(rows.iter().map(|(k, v)| k.len() + v.len() + 8).sum());
        for (k, v) in &rows {
            text.extend_from_slice(b"STAT ");
            text.extend_from_slice(k.as_bytes());
            text.push(b' ');
            text.extend_from_slice(v.as_bytes());
            text.extend_from_slice(b"\r\n");
        }
        let made = Arc::new(HotRows {
            now,
            made: Instant::now(),
            epoch,
            n,
            rows,
            text,
        });
        *self.0.lock() = Some(made.clone());
        made
    }
}

impl HotRows {
    /// (name, value) in order.
    pub fn rows(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rows.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The same rows as text `STAT` lines.
    pub fn text(&self) -> &[u8] {
        &self.text
    }
}

/// `yes` or `no`, as memcached prints a setting.
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
