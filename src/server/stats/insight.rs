//! The rows of `stats hotkeys [N]`, `stats sizing` and `stats misses` (issue #17),
//! from [`crate::insight`] and the per-worker counters. Rows go to a plain callback so
//! that `stats::rows` can hand them to either protocol's sink (and `/metrics` reads
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

use crate::insight::hot_rows::{yes_no, HotRows};
use crate::insight::sizing;
use crate::server::shared::Shared;
use crate::stats;

/// Where rows go: (name, value).
pub(crate) type Emit<'a> = &'a mut dyn FnMut(&str, &dyn Display);

/// Keys `stats hotkeys` lists when no count is given.
pub(crate) const HOTKEYS_DEFAULT: usize = 10;
/// Most keys `stats hotkeys N` lists.
pub(crate) const HOTKEYS_MAX: usize = 1000;

/// `stats hotkeys [n]`: the sketch's figures, then the `n` hottest keys. A key is
/// printed escaped ([`crate::insight::escape_key`]: `%XX` for any byte but letters,
/// digits and `-._~:/`), so it never breaks a row. The rows come from
/// [`crate::insight::hot_rows::HotRowsCache`].
pub(crate) fn hotkeys_rows(shared: &Shared, n: usize, out: Emit<'_>) {
    match hot_rows(shared, n) {
        Some(rows) => {
            for (k, v) in rows.rows() {
                out(k, &v);
            }
        }
        None => out("hotkeys_enabled", &"no"),
    }
}

/// The rows of `stats hotkeys n` from the cache (None: hot keys are off).
fn hot_rows(shared: &Shared, n: usize) -> Option<Arc<HotRows>> {
    let i = shared.store.insight().filter(|i| i.config().hotkeys)?;
    Some(
        shared
            .observers
            .hot_rows
            .get(&i.hot, n.min(HOTKEYS_MAX), shared.clock.now()),
    )
}

/// `stats hotkeys <n>` in the text protocol: its `STAT` lines appended to `out` (the
/// rendered text is cached with the rows).
pub(crate) fn hotkeys_text(shared: &Shared, n: usize, out: &mut Vec<u8>) {
    match hot_rows(shared, n) {
        Some(rows) => out.extend_from_slice(rows.text()),
        None => out.extend_from_slice(b"STAT hotkeys_enabled no\r\n"),
    }
}

/// `stats sizing`: the estimated miss ratio at 0.25x..8x the current `-m`.
pub(crate) fn sizing_rows(shared: &Shared, out: Emit<'_>) {
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
pub(crate) fn misses_rows(shared: &Shared, out: Emit<'_>) {
    let s = stats::sum(shared.observers.counters.iter().map(|a| &**a));
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
pub(crate) fn hotkeys_switch(shared: &Shared, word: &str) -> Option<&'static str> {
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
