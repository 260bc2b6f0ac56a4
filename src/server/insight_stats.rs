//! The rows of `stats hotkeys [N]`, `stats sizing` and `stats misses` (issue #17),
//! from [`crate::insight`] and the per-worker counters. Rows go to a plain callback so
//! that `stats_exec` can hand them to either protocol's sink (and `/metrics` reads
//! them as it reads every `stats` group).
//!
//! ```text
//!  stats hotkeys [N|on|off]  hotkeys_* rows, then hotkey:<rank>:key|rate|share|count|error
//!  stats sizing              sizing_* rows, then sizing:<0.25x..8x>:bytes|miss_ratio|...
//!  stats misses              get_misses = get_expired + get_flushed + get_miss_evicted
//!                                         + get_miss_never_stored
//! ```

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::shared::Shared;
use crate::insight::{escape_key, hotkeys, sizing};
use crate::stats;

/// Where rows go: (name, value).
pub(super) type Emit<'a> = &'a mut dyn FnMut(&str, &dyn Display);

/// Keys `stats hotkeys` lists when no count is given.
pub(super) const HOTKEYS_DEFAULT: usize = 10;
/// Most keys `stats hotkeys N` lists.
pub(super) const HOTKEYS_MAX: usize = 1000;

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `stats hotkeys [n]`: the sketch's figures, then the `n` hottest keys. A key is
/// printed escaped ([`escape_key`]: `%XX` for any byte but letters, digits and
/// `-._~:/`), so it never breaks a row. The rows come from [`HotRowsCache`].
pub(super) fn hotkeys_rows(shared: &Shared, n: usize, out: Emit<'_>) {
    match shared.hot_rows.get(shared, n) {
        Some(rows) => {
            for (k, v) in rows.rows.iter() {
                out(k, v);
            }
        }
        None => out("hotkeys_enabled", &"no"),
    }
}

/// `stats hotkeys <n>` in the text protocol: its `STAT` lines appended to `out` (the
/// rendered text is cached with the rows).
pub(super) fn hotkeys_text(shared: &Shared, n: usize, out: &mut Vec<u8>) {
    match shared.hot_rows.get(shared, n) {
        Some(rows) => out.extend_from_slice(&rows.text),
        None => out.extend_from_slice(b"STAT hotkeys_enabled no\r\n"),
    }
}

/// How long rendered `stats hotkeys` rows are reused at most (in real time; never
/// across a second of server time).
const HOT_ROWS_FOR: Duration = Duration::from_secs(1);

/// Rendered `stats hotkeys` rows, reused while they are fresh.
pub(super) struct HotRows {
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
pub(crate) struct HotRowsCache(Mutex<Option<Arc<HotRows>>>);

impl HotRowsCache {
    /// The rows of `stats hotkeys n` (None: hot keys are off, `-o no_hotkeys`).
    fn get(&self, shared: &Shared, n: usize) -> Option<Arc<HotRows>> {
        let i = shared.store.insight().filter(|i| i.config().hotkeys)?;
        let n = n.min(HOTKEYS_MAX);
        let now = shared.clock.now();
        let epoch = i.hot.epoch();
        if let Some(r) = &*self.0.lock() {
            if r.now == now && r.n == n && r.epoch == epoch && r.made.elapsed() < HOT_ROWS_FOR {
                return Some(r.clone());
            }
        }
        // Made without the lock held: a concurrent request makes its own.
        let rep = i.hot.report(n, now);
        let mut rows: Vec<(String, String)> = Vec::with_capacity(8 + 5 * rep.top.len());
        let mut row = |k: &str, v: &dyn Display| rows.push((k.to_string(), v.to_string()));
        row("hotkeys_enabled", &yes_no(i.hot.enabled()));
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
        Some(made)
    }
}

/// `stats sizing`: the estimated miss ratio at 0.25x..8x the current `-m`.
pub(super) fn sizing_rows(shared: &Shared, out: Emit<'_>) {
    let store = &shared.store;
    let limit = store.mem_limit();
    let rep = store
        .insight()
        .and_then(|i| i.sizing(store.lookups(), limit));
    let Some(rep) = rep else {
        out("sizing_enabled", &"no");
        return;
    };
    out("sizing_enabled", &"yes");
    out("sizing_sample_rate", &rep.rate);
    out("sizing_sample_halvings", &rep.halvings);
    out("sizing_lookups", &rep.lookups);
    out("sizing_sampled_lookups", &rep.sampled_lookups);
    out("sizing_sampled_keys", &rep.sampled_keys);
    out(
        "sizing_segment_waste",
        &format_args!("{:.4}", rep.segment_waste),
    );
    out("sizing_memory", &rep.bytes);
    for (e, name) in rep.sizes.iter().zip(sizing::SCALE_NAMES) {
        let p = format!("sizing:{name}");
        out(&format!("{p}:bytes"), &e.bytes);
        out(
            &format!("{p}:miss_ratio"),
            &format_args!("{:.4}", e.miss_ratio),
        );
        out(&format!("{p}:entries"), &e.entries);
    }
}

/// `stats misses`: why get misses missed.
pub(super) fn misses_rows(shared: &Shared, out: Emit<'_>) {
    let s = stats::sum(shared.counters.iter().map(|a| &**a));
    let on = shared
        .store
        .insight()
        .is_some_and(|i| i.config().miss_reasons);
    out("miss_reasons_enabled", &yes_no(on));
    out("get_misses", &s.get_misses);
    out("get_expired", &s.get_expired);
    out("get_flushed", &s.get_flushed);
    out("get_miss_evicted", &s.get_miss_evicted);
    out("get_miss_never_stored", &s.get_miss_never_stored);
}

/// `stats hotkeys on|off`: sampling switched at run time (false: no such word).
pub(super) fn hotkeys_switch(shared: &Shared, word: &str) -> Option<&'static str> {
    let on = match word {
        "on" => true,
        "off" => false,
        _ => return None,
    };
    Some(
        match shared.store.insight().filter(|i| i.config().hotkeys) {
            Some(i) => {
                i.hot.set_enabled(on);
                "OK"
            }
            None => "CLIENT_ERROR hot keys are off (-o no_hotkeys)",
        },
    )
}
