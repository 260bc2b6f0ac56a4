//! `/metrics`: the `stats` rows in the Prometheus text exposition format (0.0.4).
//!
//! ```text
//!   stat_rows(group) ──StatSink──▶ Rows ──GroupSpec──▶ Exposition ──▶ text
//!                                          │ a row memcached_exporter names: its name,
//!                                          │   type and labels (memcached_*)
//!                                          └ any other numeric row: ferrocache_<prefix><row>
//!   LatencySnapshot ───────────────────────────▶ ferrocache_request_duration_seconds
//! ```
//!
//! Every figure comes from the same rows `stats` prints (through the [`StatSink`]
//! the text and binary protocols use), so `/metrics` and `stats` cannot disagree.
//! Rows that the standard memcached_exporter reads get its metric names, types and
//! labels, so dashboards and alerts written for it work unchanged; every other
//! numeric row is exported as `ferrocache_*`: a counter (`_total`) unless the group
//! says it is a gauge. Indexed rows (`items:<class>:<field>`, `<class>:<field>`)
//! carry the index as a label.
//!
//! **Adding a group**: make `stat_rows` serve it (so `stats <group>` and the binary
//! protocol show it), then add a [`GroupSpec`] to [`GROUPS`]: its metric prefix, the
//! label of an indexed row's index, and which of its rows are gauges. Rows with
//! values that are not numbers (and not `yes`/`no`) are left out.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::latency::{bucket_upper_ns, Family, LatencySnapshot, BUCKETS};
use crate::server::shared::Shared;
use crate::server::stats::rows::{stat_rows, StatSink};

/// A metric's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A row memcached_exporter exports: its metric name, type and fixed labels.
struct Known {
    row: &'static str,
    metric: &'static str,
    kind: Kind,
    labels: &'static [(&'static str, &'static str)],
}

const fn k(
    row: &'static str,
    metric: &'static str,
    kind: Kind,
    labels: &'static [(&'static str, &'static str)],
) -> Known {
    Known {
        row,
        metric,
        kind,
        labels,
    }
}

use Kind::{Counter as C, Gauge as G};

/// `stats` rows under memcached_exporter's names (`memcached_version`,
/// `memcached_up` and the `set` command are written by [`general_extra`]).
const GENERAL_KNOWN: &[Known] = &[
    k("uptime", "memcached_uptime_seconds", C, &[]),
    k("time", "memcached_time_seconds", G, &[]),
    k(
        "rusage_user",
        "memcached_process_user_cpu_seconds_total",
        C,
        &[],
    ),
    k(
        "rusage_system",
        "memcached_process_system_cpu_seconds_total",
        C,
        &[],
    ),
    k("bytes_read", "memcached_read_bytes_total", C, &[]),
    k("bytes_written", "memcached_written_bytes_total", C, &[]),
    k("curr_connections", "memcached_current_connections", G, &[]),
    k("total_connections", "memcached_connections_total", C, &[]),
    k(
        "rejected_connections",
        "memcached_connections_rejected_total",
        C,
        &[],
    ),
    k("conn_yields", "memcached_connections_yielded_total", C, &[]),
    k(
        "listen_disabled_num",
        "memcached_connections_listener_disabled_total",
        C,
        &[],
    ),
    k("bytes", "memcached_current_bytes", G, &[]),
    k("limit_maxbytes", "memcached_limit_bytes", G, &[]),
    k("curr_items", "memcached_current_items", G, &[]),
    k("total_items", "memcached_items_total", C, &[]),
    k("evictions", "memcached_items_evicted_total", C, &[]),
    k("reclaimed", "memcached_items_reclaimed_total", C, &[]),
    k("store_too_large", "memcached_item_too_large_total", C, &[]),
    k("store_no_memory", "memcached_item_no_memory_total", C, &[]),
    k(
        "lru_crawler_starts",
        "memcached_lru_crawler_starts_total",
        C,
        &[],
    ),
    k("direct_reclaims", "memcached_direct_reclaims_total", C, &[]),
    k(
        "crawler_items_checked",
        "memcached_lru_crawler_items_checked_total",
        C,
        &[],
    ),
    k(
        "crawler_reclaimed",
        "memcached_lru_crawler_reclaimed_total",
        C,
        &[],
    ),
    k(
        "moves_to_cold",
        "memcached_lru_crawler_moves_to_cold_total",
        C,
        &[],
    ),
    k(
        "moves_to_warm",
        "memcached_lru_crawler_moves_to_warm_total",
        C,
        &[],
    ),
    k(
        "moves_within_lru",
        "memcached_lru_crawler_moves_within_lru_total",
        C,
        &[],
    ),
    k("accepting_conns", "memcached_accepting_connections", G, &[]),
    k(
        "round_robin_fallback",
        "memcached_round_robin_fallback_total",
        C,
        &[],
    ),
    k(
        "unexpected_napi_ids",
        "memcached_unexpected_napi_ids_total",
        C,
        &[],
    ),
    k(
        "get_hits",
        CMDS,
        C,
        &[("command", "get"), ("status", "hit")],
    ),
    k(
        "get_misses",
        CMDS,
        C,
        &[("command", "get"), ("status", "miss")],
    ),
    k(
        "delete_hits",
        CMDS,
        C,
        &[("command", "delete"), ("status", "hit")],
    ),
    k(
        "delete_misses",
        CMDS,
        C,
        &[("command", "delete"), ("status", "miss")],
    ),
    k(
        "incr_hits",
        CMDS,
        C,
        &[("command", "incr"), ("status", "hit")],
    ),
    k(
        "incr_misses",
        CMDS,
        C,
        &[("command", "incr"), ("status", "miss")],
    ),
    k(
        "decr_hits",
        CMDS,
        C,
        &[("command", "decr"), ("status", "hit")],
    ),
    k(
        "decr_misses",
        CMDS,
        C,
        &[("command", "decr"), ("status", "miss")],
    ),
    k(
        "cas_hits",
        CMDS,
        C,
        &[("command", "cas"), ("status", "hit")],
    ),
    k(
        "cas_misses",
        CMDS,
        C,
        &[("command", "cas"), ("status", "miss")],
    ),
    k(
        "cas_badval",
        CMDS,
        C,
        &[("command", "cas"), ("status", "badval")],
    ),
    k(
        "touch_hits",
        CMDS,
        C,
        &[("command", "touch"), ("status", "hit")],
    ),
    k(
        "touch_misses",
        CMDS,
        C,
        &[("command", "touch"), ("status", "miss")],
    ),
    k(
        "cmd_flush",
        CMDS,
        C,
        &[("command", "flush"), ("status", "hit")],
    ),
];

const CMDS: &str = "memcached_commands_total";
const SLAB_CMDS: &str = "memcached_slab_commands_total";

/// `stats settings` rows memcached_exporter exports.
const SETTINGS_KNOWN: &[Known] = &[
    k("maxconns", "memcached_max_connections", G, &[]),
    k("lru_crawler", "memcached_lru_crawler_enabled", G, &[]),
    k("lru_crawler_sleep", "memcached_lru_crawler_sleep", G, &[]),
    k(
        "lru_crawler_tocrawl",
        "memcached_lru_crawler_to_crawl",
        G,
        &[],
    ),
    k(
        "lru_maintainer_thread",
        "memcached_lru_crawler_maintainer_thread",
        G,
        &[],
    ),
    k("hot_lru_pct", "memcached_lru_crawler_hot_percent", G, &[]),
    k("warm_lru_pct", "memcached_lru_crawler_warm_percent", G, &[]),
    k(
        "hot_max_factor",
        "memcached_lru_crawler_hot_max_factor",
        G,
        &[],
    ),
    k(
        "warm_max_factor",
        "memcached_lru_crawler_warm_max_factor",
        G,
        &[],
    ),
];

/// `stats items` fields (`items:<class>:<field>`) memcached_exporter exports, with
/// the `slab` label added.
const ITEMS_KNOWN: &[Known] = &[
    k("number", "memcached_slab_current_items", G, &[]),
    k("age", "memcached_slab_items_age_seconds", G, &[]),
    k("number_hot", "memcached_slab_hot_items", G, &[]),
    k("number_warm", "memcached_slab_warm_items", G, &[]),
    k("number_cold", "memcached_slab_cold_items", G, &[]),
    k("number_temp", "memcached_slab_temporary_items", G, &[]),
    k("age_hot", "memcached_slab_hot_age_seconds", G, &[]),
    k("age_warm", "memcached_slab_warm_age_seconds", G, &[]),
    k(
        "crawler_reclaimed",
        "memcached_slab_items_crawler_reclaimed_total",
        C,
        &[],
    ),
    k("evicted", "memcached_slab_items_evicted_total", C, &[]),
    k(
        "evicted_nonzero",
        "memcached_slab_items_evicted_nonzero_total",
        C,
        &[],
    ),
    k(
        "evicted_time",
        "memcached_slab_items_evicted_time_seconds",
        C,
        &[],
    ),
    k(
        "evicted_unfetched",
        "memcached_slab_items_evicted_unfetched_total",
        C,
        &[],
    ),
    k(
        "expired_unfetched",
        "memcached_slab_items_expired_unfetched_total",
        C,
        &[],
    ),
    k(
        "outofmemory",
        "memcached_slab_items_outofmemory_total",
        C,
        &[],
    ),
    k("reclaimed", "memcached_slab_items_reclaimed_total", C, &[]),
    k(
        "tailrepairs",
        "memcached_slab_items_tailrepairs_total",
        C,
        &[],
    ),
    k(
        "mem_requested",
        "memcached_slab_mem_requested_bytes",
        C,
        &[],
    ),
    k(
        "moves_to_cold",
        "memcached_slab_items_moves_to_cold",
        C,
        &[],
    ),
    k(
        "moves_to_warm",
        "memcached_slab_items_moves_to_warm",
        C,
        &[],
    ),
    k(
        "moves_within_lru",
        "memcached_slab_items_moves_within_lru",
        C,
        &[],
    ),
    k(
        "hits_to_hot",
        "memcached_slab_lru_hits_total",
        C,
        &[("lru", "hot")],
    ),
    k(
        "hits_to_warm",
        "memcached_slab_lru_hits_total",
        C,
        &[("lru", "warm")],
    ),
    k(
        "hits_to_cold",
        "memcached_slab_lru_hits_total",
        C,
        &[("lru", "cold")],
    ),
    k(
        "hits_to_temp",
        "memcached_slab_lru_hits_total",
        C,
        &[("lru", "temporary")],
    ),
];

/// `stats slabs` rows (`<class>:<field>`, and the totals) memcached_exporter exports.
const SLABS_KNOWN: &[Known] = &[
    k("chunk_size", "memcached_slab_chunk_size_bytes", G, &[]),
    k("chunks_per_page", "memcached_slab_chunks_per_page", G, &[]),
    k("total_pages", "memcached_slab_current_pages", G, &[]),
    k("total_chunks", "memcached_slab_current_chunks", G, &[]),
    k("used_chunks", "memcached_slab_chunks_used", G, &[]),
    k("free_chunks", "memcached_slab_chunks_free", G, &[]),
    k("free_chunks_end", "memcached_slab_chunks_free_end", G, &[]),
    k(
        "get_hits",
        SLAB_CMDS,
        C,
        &[("command", "get"), ("status", "hit")],
    ),
    k(
        "delete_hits",
        SLAB_CMDS,
        C,
        &[("command", "delete"), ("status", "hit")],
    ),
    k(
        "incr_hits",
        SLAB_CMDS,
        C,
        &[("command", "incr"), ("status", "hit")],
    ),
    k(
        "decr_hits",
        SLAB_CMDS,
        C,
        &[("command", "decr"), ("status", "hit")],
    ),
    k(
        "cas_hits",
        SLAB_CMDS,
        C,
        &[("command", "cas"), ("status", "hit")],
    ),
    k(
        "cas_badval",
        SLAB_CMDS,
        C,
        &[("command", "cas"), ("status", "badval")],
    ),
    k(
        "touch_hits",
        SLAB_CMDS,
        C,
        &[("command", "touch"), ("status", "hit")],
    ),
    k("total_malloced", "memcached_malloced_bytes", G, &[]),
];

/// Plain `stats` rows (not named by the exporter) that are levels, not counts.
const GENERAL_GAUGES: &[&str] = &[
    "pid",
    "pointer_size",
    "max_connections",
    "connection_structures",
    "response_obj_count",
    "response_obj_bytes",
    "read_buf_count",
    "read_buf_bytes",
    "read_buf_bytes_free",
    "reserved_fds",
    "threads",
    "hash_power_level",
    "hash_bytes",
    "hash_is_expanding",
    "slab_reassign_running",
    "lru_crawler_running",
    "log_watchers",
    "time_since_server_cert_refresh",
    "slab_global_page_pool",
    "snapshot_in_progress",
    "snapshot_bytes_written",
    "snapshot_items_written",
    "snapshot_duration_ms",
    "restore_items_loaded",
    "restore_items_dropped",
    "restore_items_expired",
    "restore_items_too_large",
    "restore_items_duplicate",
    "restore_errors",
    "restore_bytes_read",
    "restore_duration_ms",
];

/// `stats items` fields not named by the exporter that are levels.
const ITEMS_GAUGES: &[&str] = &[];
/// `stats slabs` rows not named by the exporter that are levels.
const SLABS_GAUGES: &[&str] = &["active_slabs"];

/// How one `stats` group's rows become metrics.
struct GroupSpec {
    /// The group (`""`: plain `stats`).
    group: &'static str,
    /// Name prefix of rows the exporter does not name (after `ferrocache_`).
    prefix: &'static str,
    /// What an indexed row's index is called as a label.
    index_label: &'static str,
    /// Rows the exporter names (by field, for indexed rows).
    known: &'static [Known],
    /// Unnamed rows that are gauges; the others are counters. `None`: all gauges.
    gauges: Option<&'static [&'static str]>,
    /// Only these rows (`None`: all), for groups that repeat rows of another.
    only: Option<&'static [&'static str]>,
}

/// The groups `/metrics` exports, in order. `latency` is exported as histograms.
const GROUPS: &[GroupSpec] = &[
    GroupSpec {
        group: "",
        prefix: "",
        index_label: "index",
        known: GENERAL_KNOWN,
        gauges: Some(GENERAL_GAUGES),
        only: None,
    },
    GroupSpec {
        group: "settings",
        prefix: "settings_",
        index_label: "index",
        known: SETTINGS_KNOWN,
        gauges: None,
        only: None,
    },
    GroupSpec {
        group: "items",
        prefix: "slab_items_",
        index_label: "slab",
        known: ITEMS_KNOWN,
        gauges: Some(ITEMS_GAUGES),
        only: None,
    },
    GroupSpec {
        group: "slabs",
        prefix: "slab_",
        index_label: "slab",
        known: SLABS_KNOWN,
        gauges: Some(SLABS_GAUGES),
        only: None,
    },
    // `stats sizing`: the estimated miss ratio at 0.25x..8x of -m, labelled by scale
    // (`ferrocache_sizing_miss_ratio{scale="2x"}`), and the sample's figures.
    GroupSpec {
        group: "sizing",
        prefix: "sizing_",
        index_label: "scale",
        known: &[],
        gauges: Some(&[
            "sizing_enabled",
            "sizing_sample_rate",
            "sizing_sample_halvings",
            "sizing_sampled_keys",
            "sizing_segment_waste",
            "sizing_memory",
            "bytes",
            "miss_ratio",
            "entries",
        ]),
        only: None,
    },
    // `stats misses`: the two causes plain `stats` does not print.
    GroupSpec {
        group: "misses",
        prefix: "",
        index_label: "index",
        known: &[],
        gauges: Some(&[]),
        only: Some(&["get_miss_evicted", "get_miss_never_stored"]),
    },
];

/// The rows of one group, as `stats` prints them.
#[derive(Default)]
struct Rows(Vec<(String, String)>);

impl StatSink for Rows {
    fn stat(&mut self, name: &str, value: &dyn std::fmt::Display) {
        self.0.push((name.to_string(), value.to_string()));
    }
}

/// Metric families being collected: samples of one family are written together.
#[derive(Default)]
struct Exposition {
    families: Vec<MetricFamily>,
    index: HashMap<String, usize>,
}

struct MetricFamily {
    name: String,
    kind: Kind,
    help: String,
    /// (name suffix, labels as written, value).
    samples: Vec<(&'static str, String, String)>,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut MetricFamily {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.families.push(MetricFamily {
                    name: name.to_string(),
                    kind,
                    help: help.to_string(),
                    samples: Vec::new(),
                });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        &mut self.families[i]
    }

    fn sample(&mut self, name: &str, kind: Kind, help: &str, labels: &[(&str, &str)], v: String) {
        let labels = label_text(labels);
        self.family(name, kind, help).samples.push(("", labels, v));
    }

    fn write(&self, out: &mut String) {
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
            for (suffix, labels, v) in &f.samples {
                let _ = writeln!(out, "{}{suffix}{labels} {v}", f.name);
            }
        }
    }
}

/// `{a="x",b="y"}` (empty for no labels), values escaped as the format requires.
fn label_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                _ => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// A row's value as a sample value: a finite number as printed, `yes`/`no` as 1/0.
fn sample_value(v: &str) -> Option<String> {
    match v {
        "yes" => return Some("1".into()),
        "no" => return Some("0".into()),
        _ => {}
    }
    match v.parse::<f64>() {
        Ok(x)
            if x.is_finite()
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') =>
        {
            Some(v.to_string())
        }
        _ => None,
    }
}

/// A metric name made of a row name: characters outside `[a-zA-Z0-9_]` become `_`.
fn metric_name(parts: &[&str]) -> String {
    let mut s = String::new();
    for p in parts {
        s.extend(p.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    s
}

/// Splits `items:1:number` / `1:chunk_size` into (Some("1"), field); a plain row into
/// (None, row).
fn split_index<'a>(group: &str, row: &'a str) -> (Option<&'a str>, &'a str) {
    let rest = row
        .strip_prefix(group)
        .and_then(|r| r.strip_prefix(':'))
        .filter(|_| !group.is_empty())
        .unwrap_or(row);
    match rest.split_once(':') {
        // A class number (`items:1:number`) or a scale (`sizing:0.25x:miss_ratio`).
        Some((i, field))
            if i.starts_with(|c: char| c.is_ascii_digit())
                && i.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'.' || b == b'x') =>
        {
            (Some(i), field)
        }
        _ => (None, rest),
    }
}

fn export_group(spec: &GroupSpec, rows: &Rows, ex: &mut Exposition) {
    for (row, value) in &rows.0 {
        if spec.only.is_some_and(|only| !only.contains(&row.as_str())) {
            continue;
        }
        let Some(v) = sample_value(value) else {
            continue;
        };
        let (index, field) = split_index(spec.group, row);
        let mut labels: Vec<(&str, &str)> = Vec::new();
        if let Some(i) = index {
            labels.push((spec.index_label, i));
        }
        if let Some(known) = spec.known.iter().find(|k| k.row == field) {
            labels.extend_from_slice(known.labels);
            let help = format!(
                "memcached_exporter's name for the stats {} row {field}.",
                group_word(spec)
            );
            ex.sample(known.metric, known.kind, &help, &labels, v);
            continue;
        }
        let gauge = spec.gauges.map_or(true, |g| g.contains(&field));
        let (kind, suffix) = if gauge {
            (Kind::Gauge, "")
        } else {
            (Kind::Counter, "_total")
        };
        // A row already named with the group's prefix keeps its name.
        let prefix = if field.starts_with(spec.prefix) {
            ""
        } else {
            spec.prefix
        };
        let name = metric_name(&["ferrocache_", prefix, field, suffix]);
        let help = format!("The stats {} row {field}.", group_word(spec));
        ex.sample(&name, kind, &help, &labels, v);
    }
}

fn group_word(spec: &GroupSpec) -> &'static str {
    if spec.group.is_empty() {
        "(general)"
    } else {
        spec.group
    }
}

fn row<'a>(rows: &'a Rows, name: &str) -> Option<&'a str> {
    rows.0
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn num(rows: &Rows, name: &str) -> Option<f64> {
    row(rows, name).and_then(|v| v.parse().ok())
}

/// What memcached_exporter derives from plain `stats`: `up`, `version`, and
/// `set` (`cmd_set` counts the `cas` commands too, which it takes out).
fn general_extra(rows: &Rows, ex: &mut Exposition) {
    ex.sample(
        "memcached_up",
        Kind::Gauge,
        "Whether the server answered (always 1 when it serves this page).",
        &[],
        "1".into(),
    );
    if let Some(v) = row(rows, "version") {
        ex.sample(
            "memcached_version",
            Kind::Gauge,
            "The protocol version the server reports, as a label.",
            &[("version", v)],
            "1".into(),
        );
    }
    if let Some(v) = row(rows, "ferrocache_version") {
        let labels = [
            ("version", v),
            (
                "commit",
                row(rows, "ferrocache_commit").unwrap_or("unknown"),
            ),
            ("build", row(rows, "ferrocache_build").unwrap_or("unknown")),
        ];
        ex.sample(
            "ferrocache_build_info",
            Kind::Gauge,
            "Which ferrocache serves (memcached_version stays the protocol's 1.6.18).",
            &labels,
            "1".into(),
        );
    }
    let cas = ["cas_misses", "cas_hits", "cas_badval"]
        .iter()
        .map(|n| num(rows, n))
        .sum::<Option<f64>>();
    if let (Some(set), Some(cas)) = (num(rows, "cmd_set"), cas) {
        ex.sample(
            CMDS,
            Kind::Counter,
            "",
            &[("command", "set"), ("status", "hit")],
            format!("{}", (set - cas).max(0.0)),
        );
    }
}

/// The per-class `set` command the exporter derives from `stats slabs`.
fn slabs_extra(rows: &Rows, ex: &mut Exposition) {
    let mut classes: Vec<&str> = rows
        .0
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(":cmd_set"))
        .collect();
    classes.dedup();
    for c in classes {
        let get = |f: &str| num(rows, &format!("{c}:{f}"));
        if let (Some(set), Some(h), Some(b)) = (get("cmd_set"), get("cas_hits"), get("cas_badval"))
        {
            ex.sample(
                SLAB_CMDS,
                Kind::Counter,
                "",
                &[("slab", c), ("command", "set"), ("status", "hit")],
                format!("{}", (set - h - b).max(0.0)),
            );
        }
    }
}

/// The exported bucket bounds: two per power of two (`2^m` and `1.5 * 2^m`), 128 ns
/// to 12.9 s; each is a bound of the fine histogram, so the counts are exact.
fn exported_buckets() -> impl Iterator<Item = usize> {
    (39..BUCKETS - 1).filter(|i| i % 8 == 3 || i % 8 == 7)
}

/// `ferrocache_request_duration_seconds` per family, and the requests counted.
fn latency(shared: &Shared, ex: &mut Exposition) {
    let l = LatencySnapshot::sum(shared.observers.counters.iter().map(|c| &c.latency));
    ex.sample(
        "ferrocache_latency_sample",
        Kind::Gauge,
        "One request in this many is timed (-o latency_sample; 0: latency off).",
        &[],
        shared.config.latency_sample.to_string(),
    );
    for f in Family::ALL {
        let s = l.family(f);
        ex.sample(
            "ferrocache_requests_total",
            Kind::Counter,
            "Requests by command family (every one, timed or not).",
            &[("family", f.name())],
            s.requests.to_string(),
        );
    }
    let name = "ferrocache_request_duration_seconds";
    let fam = ex.family(
        name,
        Kind::Histogram,
        "Server time from request parsed to reply queued, of the timed requests (one in ferrocache_latency_sample), by command family.",
    );
    for f in Family::ALL {
        let s = l.family(f);
        let mut cum = 0u64;
        let mut next = 0usize;
        for i in exported_buckets() {
            cum += s.buckets[next..=i].iter().sum::<u64>();
            next = i + 1;
            let le = format!("{}", bucket_upper_ns(i) as f64 / 1e9);
            fam.samples.push((
                "_bucket",
                label_text(&[("family", f.name()), ("le", &le)]),
                cum.to_string(),
            ));
        }
        let count = s.timed();
        fam.samples.push((
            "_bucket",
            label_text(&[("family", f.name()), ("le", "+Inf")]),
            count.to_string(),
        ));
        let labels = label_text(&[("family", f.name())]);
        fam.samples
            .push(("_sum", labels.clone(), format!("{}", s.sum_ns as f64 / 1e9)));
        fam.samples.push(("_count", labels, count.to_string()));
    }
}

/// The `/metrics` page.
pub(crate) fn render(shared: &Shared) -> String {
    let mut ex = Exposition::default();
    for spec in GROUPS {
        let mut rows = Rows::default();
        stat_rows(shared, spec.group, &mut rows);
        export_group(spec, &rows, &mut ex);
        match spec.group {
            "" => general_extra(&rows, &mut ex),
            "slabs" => slabs_extra(&rows, &mut ex),
            _ => {}
        }
    }
    latency(shared, &mut ex);
    let mut out = String::with_capacity(64 << 10);
    ex.write(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_rows_split_into_label_and_field() {
        assert_eq!(
            split_index("items", "items:12:number"),
            (Some("12"), "number")
        );
        assert_eq!(
            split_index("slabs", "3:chunk_size"),
            (Some("3"), "chunk_size")
        );
        assert_eq!(split_index("slabs", "active_slabs"), (None, "active_slabs"));
        assert_eq!(split_index("", "cmd_get"), (None, "cmd_get"));
    }

    #[test]
    fn only_numbers_and_booleans_become_samples() {
        assert_eq!(sample_value("12").as_deref(), Some("12"));
        assert_eq!(sample_value("0.500000").as_deref(), Some("0.500000"));
        assert_eq!(sample_value("yes").as_deref(), Some("1"));
        for v in ["1.6.18", "none", "inf", "NaN", "", "tcp:1"] {
            assert_eq!(sample_value(v), None, "{v}");
        }
        assert_eq!(label_text(&[("a", "x\"y\\z\n")]), r#"{a="x\"y\\z\n"}"#);
    }
}
