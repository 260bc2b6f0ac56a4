//! `stats` and its groups (`settings`, `items`, `slabs`, `sizes`, `conns`,
//! `cachedump`, `detail`, `reset`): every name memcached 1.6.18 prints, in its order.
//! A name whose concept ferrocache has prints our figure (e.g. `age`, `evicted_time`,
//! the per-class hit counters, all from the store); one that describes memcached's
//! own machinery (slab mover, segmented LRU, LRU maintainer, log workers, NAPI)
//! prints memcached's neutral value (0, `no`, its default), so dashboards,
//! exporters and `memcached-tool` read ferrocache as they read memcached. The
//! binary protocol's STAT packets come from the same text.

use std::io::Write;
use std::sync::atomic::Ordering;

use crate::protocol::text::Keys;
use crate::server::flow::{build_text, FERROCACHE_COMMIT, FERROCACHE_VERSION, PROTOCOL_VERSION};
use crate::server::shared::{Shared, STATE_NAMES};
use crate::server::stats::insight as insight_stats;
use crate::stats;

/// Where stats rows go: text `STAT` lines or binary STAT packets render the same rows.
pub(crate) trait StatSink {
    /// One row.
    fn stat(&mut self, name: &str, value: &dyn std::fmt::Display);
}

/// Text rows: `STAT <name> <value>\r\n`.
struct TextRows<'a>(&'a mut Vec<u8>);

impl StatSink for TextRows<'_> {
    fn stat(&mut self, name: &str, value: &dyn std::fmt::Display) {
        let _ = write!(self.0, "STAT {name} {value}\r\n");
    }
}

#[inline]
fn stat_line(out: &mut dyn StatSink, name: &str, value: impl std::fmt::Display) {
    out.stat(name, &value);
}

/// The rows of a stats group served by both protocols (`""`, `settings`, `items`,
/// `slabs`, `sizes`); false for another group.
pub(crate) fn stat_rows(shared: &Shared, group: &str, out: &mut dyn StatSink) -> bool {
    match group {
        "" => general_stats(shared, out),
        "settings" => settings_stats(shared, out),
        "items" => items_stats(shared, out),
        "slabs" => slabs_stats(shared, out),
        "sizes" => stat_line(out, "sizes_status", "disabled"),
        "latency" => latency_stats(shared, out),
        // Ours (issue #17): see `insight_stats`.
        "sizing" => insight_stats::sizing_rows(shared, &mut |n, v| out.stat(n, v)),
        "misses" => insight_stats::misses_rows(shared, &mut |n, v| out.stat(n, v)),
        "hotkeys" => {
            insight_stats::hotkeys_rows(shared, insight_stats::HOTKEYS_DEFAULT, &mut |n, v| {
                out.stat(n, v)
            })
        }
        _ => return false,
    }
    true
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn rusage() -> (String, String) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let f = |t: nix::sys::time::TimeVal| format!("{}.{:06}", t.tv_sec(), t.tv_usec());
            (f(u.user_time()), f(u.system_time()))
        }
        Err(_) => ("0.000000".into(), "0.000000".into()),
    }
}

/// `stats [group]` (also the source of the binary protocol's STAT packets).
pub(crate) fn stats_command(shared: &Shared, args: &[u8], out: &mut Vec<u8>) {
    let mut words = Keys(args).map(|w| std::str::from_utf8(w).unwrap_or("\u{fffd}"));
    let group = words.next().unwrap_or("");
    match group {
        "" | "settings" | "items" | "slabs" | "sizes" | "latency" | "sizing" | "misses" => {
            stat_rows(shared, group, &mut TextRows(out));
            line(out, "END");
        }
        "hotkeys" => match words.next() {
            None => {
                stat_rows(shared, group, &mut TextRows(out));
                line(out, "END");
            }
            Some(w) => match (insight_stats::hotkeys_switch(shared, w), w.parse::<usize>()) {
                (Some(reply), _) => line(out, reply),
                (None, Ok(n)) if n >= 1 => {
                    insight_stats::hotkeys_text(shared, n, out);
                    line(out, "END");
                }
                _ => line(out, "CLIENT_ERROR usage: stats hotkeys [N|on|off]"),
            },
        },
        "conns" => conns_stats(shared, out),
        "cachedump" => cachedump(shared, words.next(), words.next(), out),
        "reset" => {
            for w in &shared.observers.counters {
                w.reset();
            }
            shared
                .net
                .conns
                .total_connections
                .store(0, Ordering::Relaxed);
            shared
                .net
                .conns
                .rejected_connections
                .store(0, Ordering::Relaxed);
            shared.observers.prefix.clear();
            shared.store.reset_stats();
            line(out, "RESET");
        }
        "detail" => match words.next() {
            Some("on") => {
                shared.observers.prefix.set_enabled(true);
                line(out, "OK");
            }
            Some("off") => {
                shared.observers.prefix.set_enabled(false);
                line(out, "OK");
            }
            Some("dump") => shared.observers.prefix.dump(out),
            _ => line(out, "CLIENT_ERROR usage: stats detail on|off|dump"),
        },
        _ => line(out, "ERROR"),
    }
}

/// The quantiles `stats latency` prints per family: (row suffix, q).
pub(crate) const LATENCY_QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

/// Nanoseconds as microseconds with three decimals (`12.288`).
struct Micros(u64);

impl std::fmt::Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// `stats latency` (ours): per command family, requests counted, requests timed
/// (one in `latency_sample`) and, from the timed ones, the quantiles and the largest,
/// server-side from request parsed to reply queued, in microseconds.
fn latency_stats(shared: &Shared, out: &mut dyn StatSink) {
    let l =
        crate::latency::LatencySnapshot::sum(shared.observers.counters.iter().map(|c| &c.latency));
    stat_line(out, "latency_sample", shared.config.latency_sample);
    for f in crate::latency::Family::ALL {
        let s = l.family(f);
        let name = f.name();
        stat_line(out, &format!("{name}:requests"), s.requests);
        stat_line(out, &format!("{name}:timed"), s.timed());
        for (q_name, q) in LATENCY_QUANTILES {
            stat_line(
                out,
                &format!("{name}:{q_name}_us"),
                Micros(s.quantile_ns(q)),
            );
        }
        stat_line(out, &format!("{name}:max_us"), Micros(s.max_ns));
    }
}

/// `stats settings`: the configuration's lines, with the values that change at run time.
fn settings_stats(shared: &Shared, out: &mut dyn StatSink) {
    for (name, value) in shared.config.settings_stats() {
        let value = match name {
            "verbosity" => shared
                .observers
                .verbosity
                .load(Ordering::Relaxed)
                .to_string(),
            "slab_automove" => shared
                .admin
                .slab_automove
                .load(Ordering::Relaxed)
                .to_string(),
            "lru_crawler" => if shared.admin.crawler.enabled() {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            "lru_crawler_sleep" => shared
                .admin
                .crawler
                .sleep_us
                .load(Ordering::Relaxed)
                .to_string(),
            "lru_crawler_tocrawl" => shared
                .admin
                .crawler
                .tocrawl
                .load(Ordering::Relaxed)
                .to_string(),
            "slab_automove_ratio" => format!(
                "{:.2}",
                f64::from_bits(shared.admin.slab_automove_ratio.load(Ordering::Relaxed))
            ),
            "detail_enabled" => if shared.observers.prefix.enabled() {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            // `cache_memlimit` moves it, as in memcached.
            "maxbytes" => shared.store.mem_limit().to_string(),
            _ => value,
        };
        stat_line(out, name, value);
    }
}

/// memcached's buffer counters, from the connection buffer budget: `response_obj_*`
/// are reply buffers (`response_obj_oom`: times a connection stopped serving because
/// the budget left it no more room for replies), `read_buf_*` read buffers
/// (`read_buf_oom`: values refused and connections closed for lack of budget).
fn buffer_stats(shared: &Shared, out: &mut dyn StatSink) {
    let sum = |f: fn(&crate::server::budget::BufferStats) -> &std::sync::atomic::AtomicUsize| {
        shared
            .net
            .buffer_stats
            .iter()
            .map(|b| f(b).load(Ordering::Relaxed))
            .sum::<usize>()
    };
    let b = &shared.net.buffers;
    stat_line(
        out,
        "response_obj_oom",
        b.output_stalls.load(Ordering::Relaxed),
    );
    stat_line(out, "response_obj_count", sum(|b| &b.resp_count));
    stat_line(out, "response_obj_bytes", sum(|b| &b.resp_bytes));
    stat_line(out, "read_buf_count", sum(|b| &b.read_count));
    stat_line(out, "read_buf_bytes", sum(|b| &b.read_bytes));
    stat_line(out, "read_buf_bytes_free", sum(|b| &b.read_free_bytes));
    stat_line(
        out,
        "read_buf_oom",
        b.refused_values.load(Ordering::Relaxed) + b.closed_lines.load(Ordering::Relaxed),
    );
}

fn general_stats(shared: &Shared, out: &mut dyn StatSink) {
    let s = stats::sum(shared.observers.counters.iter().map(|a| &**a));
    let st = shared.store.stats();
    let clock = &shared.clock;
    let conns = &shared.net.conns;
    let (user, sys) = rusage();
    stat_line(out, "pid", std::process::id());
    stat_line(out, "uptime", clock.uptime());
    stat_line(out, "time", clock.unix_time());
    stat_line(out, "version", PROTOCOL_VERSION);
    // No libevent: mio runs the event loops.
    stat_line(out, "libevent", "none");
    stat_line(out, "pointer_size", usize::BITS);
    stat_line(out, "rusage_user", user);
    stat_line(out, "rusage_system", sys);
    stat_line(out, "max_connections", shared.config.max_conns);
    stat_line(
        out,
        "curr_connections",
        conns.curr_connections.load(Ordering::Relaxed),
    );
    stat_line(
        out,
        "total_connections",
        conns.total_connections.load(Ordering::Relaxed),
    );
    stat_line(
        out,
        "rejected_connections",
        conns.rejected_connections.load(Ordering::Relaxed),
    );
    stat_line(
        out,
        "connection_structures",
        conns.connection_structures.load(Ordering::Relaxed),
    );
    buffer_stats(shared, out);
    // memcached keeps descriptors back for its own use; there is no such reserve here.
    stat_line(out, "reserved_fds", 0);
    stat_line(out, "cmd_get", s.get_cmds);
    stat_line(out, "cmd_set", s.set_cmds);
    stat_line(out, "cmd_flush", s.flush_cmds);
    stat_line(out, "cmd_touch", s.touch_cmds);
    stat_line(out, "cmd_meta", s.meta_cmds);
    stat_line(out, "get_hits", s.get_hits);
    stat_line(out, "get_misses", s.get_misses);
    stat_line(out, "get_expired", s.get_expired);
    stat_line(out, "get_flushed", s.get_flushed);
    stat_line(out, "delete_misses", s.delete_misses);
    stat_line(out, "delete_hits", s.delete_hits);
    stat_line(out, "incr_misses", s.incr_misses);
    stat_line(out, "incr_hits", s.incr_hits);
    stat_line(out, "decr_misses", s.decr_misses);
    stat_line(out, "decr_hits", s.decr_hits);
    stat_line(out, "cas_misses", s.cas_misses);
    stat_line(out, "cas_hits", s.cas_hits);
    stat_line(out, "cas_badval", s.cas_badval);
    stat_line(out, "touch_hits", s.touch_hits);
    stat_line(out, "touch_misses", s.touch_misses);
    stat_line(out, "store_too_large", s.store_too_large);
    stat_line(out, "store_no_memory", s.store_no_memory);
    stat_line(out, "auth_cmds", s.auth_cmds);
    stat_line(out, "auth_errors", s.auth_errors);
    // memcached prints it only with `-o idle_timeout` (connections closed for idling).
    if shared.config.idle_timeout > 0 {
        stat_line(out, "idle_kicks", s.idle_kicks);
    }
    stat_line(out, "bytes_read", s.bytes_read);
    stat_line(out, "bytes_written", s.bytes_written);
    stat_line(out, "limit_maxbytes", st.limit_maxbytes);
    stat_line(out, "accepting_conns", 1);
    stat_line(out, "listen_disabled_num", 0);
    stat_line(out, "time_in_listen_disabled_us", 0);
    stat_line(out, "threads", shared.config.threads);
    stat_line(out, "conn_yields", s.conn_yields);
    stat_line(out, "hash_power_level", st.hash_power_level);
    stat_line(out, "hash_bytes", st.hash_bytes);
    // The index grows one small table at a time, under its shard's lock.
    stat_line(out, "hash_is_expanding", 0);
    // No slab pages to move (see `stats settings` slab_reassign).
    for name in [
        "slab_reassign_rescues",
        "slab_reassign_chunk_rescues",
        "slab_reassign_evictions_nomem",
        "slab_reassign_inline_reclaim",
        "slab_reassign_busy_items",
        "slab_reassign_busy_deletes",
        "slab_reassign_running",
        "slabs_moved",
    ] {
        stat_line(out, name, 0);
    }
    // A start is one run of the background crawler over the shards, or a `crawl`.
    stat_line(
        out,
        "lru_crawler_running",
        u8::from(shared.admin.crawler.running()),
    );
    stat_line(
        out,
        "lru_crawler_starts",
        st.crawler_starts + shared.admin.crawler.starts.load(Ordering::Relaxed),
    );
    stat_line(out, "lru_maintainer_juggles", 0);
    stat_line(out, "malloc_fails", 0);
    log_stats(shared, out);
    if let Some(tls) = &shared.credentials.tls {
        if let Some(n) = tls.new_sessions() {
            stat_line(out, "ssl_new_sessions", n);
        }
        stat_line(
            out,
            "ssl_handshake_errors",
            tls.handshake_errors.load(Ordering::Relaxed),
        );
        stat_line(
            out,
            "time_since_server_cert_refresh",
            tls.since_refresh(shared.clock.now()),
        );
    }
    stat_line(out, "unexpected_napi_ids", 0);
    stat_line(out, "round_robin_fallback", 0);
    stat_line(out, "bytes", st.bytes);
    stat_line(out, "curr_items", st.curr_items);
    stat_line(out, "total_items", st.total_items);
    stat_line(out, "slab_global_page_pool", 0);
    stat_line(out, "expired_unfetched", st.expired_unfetched);
    stat_line(out, "evicted_unfetched", st.evicted_unfetched);
    stat_line(out, "evicted_active", 0);
    stat_line(out, "evictions", st.evictions);
    stat_line(out, "reclaimed", st.reclaimed);
    stat_line(out, "crawler_reclaimed", st.crawler_reclaimed);
    stat_line(out, "crawler_items_checked", st.crawler_items_checked);
    // Segmented-LRU figures: there is no segmented LRU (S3-FIFO, reads relink nothing).
    for name in [
        "lrutail_reflocked",
        "moves_to_cold",
        "moves_to_warm",
        "moves_within_lru",
        "direct_reclaims",
        "lru_bumps_dropped",
    ] {
        stat_line(out, name, 0);
    }
    snapshot_stats(shared, out);
    cluster_stats(shared, out);
    build_stats(out);
}

/// Ours, last: which ferrocache this node runs (`version` stays memcached's 1.6.18,
/// which clients check), exported on `/metrics` as `ferrocache_build_info`.
fn build_stats(out: &mut dyn StatSink) {
    stat_line(out, "ferrocache_version", FERROCACHE_VERSION);
    stat_line(out, "ferrocache_commit", FERROCACHE_COMMIT);
    stat_line(out, "ferrocache_build", build_text());
}

/// Ours (ElastiCache's names, CloudWatch's `CmdConfigGet`, `CmdConfigSet`,
/// `CurrConfig`): the auto-discovery configuration.
fn cluster_stats(shared: &Shared, out: &mut dyn StatSink) {
    let c = &shared.admin.cluster;
    stat_line(out, "cluster_config_version", c.version());
    stat_line(out, "cmd_config_get", c.gets.load(Ordering::Relaxed));
    stat_line(out, "cmd_config_set", c.sets.load(Ordering::Relaxed));
    stat_line(out, "curr_config", u8::from(c.stored()));
}

/// Ours, after memcached's names: online snapshots and the restore at start.
fn snapshot_stats(shared: &Shared, out: &mut dyn StatSink) {
    let s = &shared.admin.snapshots.stats;
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    stat_line(
        out,
        "snapshot_in_progress",
        u32::from(s.in_progress.load(Ordering::Relaxed)),
    );
    stat_line(out, "snapshot_bytes_written", l(&s.bytes_written));
    stat_line(out, "snapshot_items_written", l(&s.items_written));
    stat_line(out, "snapshot_duration_ms", s.duration_ms());
    stat_line(out, "snapshots_completed", l(&s.completed));
    stat_line(out, "snapshots_failed", l(&s.failed));
    stat_line(out, "restore_items_loaded", l(&s.restore_loaded));
    stat_line(out, "restore_items_dropped", l(&s.restore_dropped));
    stat_line(out, "restore_items_expired", l(&s.restore_expired));
    stat_line(out, "restore_items_too_large", l(&s.restore_too_large));
    stat_line(out, "restore_items_duplicate", l(&s.restore_duplicates));
    stat_line(out, "restore_errors", l(&s.restore_errors));
    stat_line(out, "restore_bytes_read", l(&s.restore_bytes_read));
    stat_line(out, "restore_duration_ms", l(&s.restore_duration_ms));
}

/// memcached's log-stream counters (`watch`): lines are queued to watchers directly
/// (no per-worker log buffer), so the worker figures are the watcher figures.
fn log_stats(shared: &Shared, out: &mut dyn StatSink) {
    let w = &shared.observers.watch;
    let (sent, skipped) = (
        w.sent.load(Ordering::Relaxed),
        w.skipped.load(Ordering::Relaxed),
    );
    stat_line(out, "log_worker_dropped", skipped);
    stat_line(out, "log_worker_written", sent);
    stat_line(out, "log_watcher_skipped", skipped);
    stat_line(out, "log_watcher_sent", sent);
    stat_line(out, "log_watchers", w.count());
}

/// `stats items`: per size class, for classes holding items.
fn items_stats(shared: &Shared, out: &mut dyn StatSink) {
    for c in shared.store.class_stats() {
        if c.number == 0 {
            continue;
        }
        let id = c.id;
        let mut item = |name: &str, v: u64| stat_line(out, &format!("items:{id}:{name}"), v);
        // One queue pair, not memcached's hot/warm/cold LRUs: every item is "cold",
        // as in memcached without a segmented LRU.
        item("number", c.number);
        item("number_hot", 0);
        item("number_warm", 0);
        item("number_cold", c.number);
        item("age_hot", 0);
        item("age_warm", 0);
        item("age", c.age);
        item("mem_requested", c.requested);
        item("evicted", c.evicted);
        item("evicted_nonzero", c.evicted_nonzero);
        item("evicted_time", c.evicted_time as u64);
        item("outofmemory", c.outofmemory);
        item("tailrepairs", 0);
        item("reclaimed", c.reclaimed);
        item("expired_unfetched", c.expired_unfetched);
        item("evicted_unfetched", c.evicted_unfetched);
        item("evicted_active", 0);
        item("crawler_reclaimed", c.crawler_reclaimed);
        item("crawler_items_checked", c.crawler_items_checked);
        item("lrutail_reflocked", 0);
        item("moves_to_cold", 0);
        item("moves_to_warm", 0);
        item("moves_within_lru", 0);
        item("direct_reclaims", 0);
        item("hits_to_hot", 0);
        item("hits_to_warm", 0);
        item("hits_to_cold", c.ops.get_hits);
        item("hits_to_temp", 0);
    }
}

/// `stats slabs`: per size class with memory, then totals.
fn slabs_stats(shared: &Shared, out: &mut dyn StatSink) {
    let mut active = 0;
    for c in shared.store.class_counts() {
        if c.total_pages == 0 {
            continue;
        }
        active += 1;
        let id = c.id;
        let mut slab = |name: &str, v: u64| stat_line(out, &format!("{id}:{name}"), v);
        slab("chunk_size", c.chunk_size);
        slab("chunks_per_page", c.chunks_per_page);
        slab("total_pages", c.total_pages);
        slab("total_chunks", c.total_chunks);
        slab("used_chunks", c.used_chunks);
        slab("free_chunks", c.free_chunks);
        // Items are appended to segments: no chunk is ever free at a page's end.
        slab("free_chunks_end", 0);
        let o = &c.ops;
        slab("get_hits", o.get_hits);
        slab("cmd_set", o.cmd_set);
        slab("delete_hits", o.delete_hits);
        slab("incr_hits", o.incr_hits);
        slab("decr_hits", o.decr_hits);
        slab("cas_hits", o.cas_hits);
        slab("cas_badval", o.cas_badval);
        slab("touch_hits", o.touch_hits);
    }
    stat_line(out, "active_slabs", active);
    stat_line(out, "total_malloced", shared.store.stats().total_malloced);
}

/// `stats cachedump <class> <limit>`: memcached's item listing, as
/// `ITEM <key> [<bytes> b; <expiry unix time> s]`.
fn cachedump(shared: &Shared, id: Option<&str>, limit: Option<&str>, out: &mut Vec<u8>) {
    let (Some(id), Some(limit)) = (id, limit) else {
        return line(out, "CLIENT_ERROR bad command line");
    };
    if shared.config.disable_dumping {
        return line(out, "CLIENT_ERROR stats cachedump not allowed");
    }
    let (Ok(id), Ok(limit)) = (id.parse::<u32>(), limit.parse::<u32>()) else {
        return line(out, "CLIENT_ERROR bad command line format");
    };
    let classes = shared.store.classes();
    if id as usize > classes {
        return line(out, "CLIENT_ERROR Illegal slab id");
    }
    // memcached caps an unlimited dump at 2 MB of output; a count cap does the same job.
    let limit = if limit == 0 { 50_000 } else { limit as usize };
    let started = shared.clock.process_started();
    for (key, vlen, exp) in shared.store.dump_class(id as usize, limit) {
        out.extend_from_slice(b"ITEM ");
        out.extend_from_slice(&key);
        // As memcached: an item without expiry shows 0, others an absolute time.
        let abs = if exp == 0 { 0 } else { exp as i64 + started };
        let _ = write!(out, " [{vlen} b; {abs} s]\r\n");
    }
    line(out, "END");
}

fn conns_stats(shared: &Shared, out: &mut Vec<u8>) {
    let now = shared.clock.now();
    for (fd, addr) in &shared.net.listener_info {
        let _ = write!(out, "STAT {fd}:addr {addr}\r\n");
        let _ = write!(out, "STAT {fd}:state conn_listening\r\n");
        let _ = write!(
            out,
            "STAT {fd}:secs_since_last_cmd {}\r\n",
            shared.clock.uptime()
        );
    }
    let reg = shared.net.registry.lock();
    for (fd, info) in reg.iter() {
        let last = info.last_cmd.load(Ordering::Relaxed);
        let state = STATE_NAMES
            .get(info.state.load(Ordering::Relaxed) as usize)
            .copied()
            .unwrap_or("conn_waiting");
        let _ = write!(out, "STAT {fd}:addr {}\r\n", info.addr);
        let _ = write!(out, "STAT {fd}:listen_addr {}\r\n", info.listen_addr);
        let _ = write!(out, "STAT {fd}:state {state}\r\n");
        let _ = write!(
            out,
            "STAT {fd}:secs_since_last_cmd {}\r\n",
            now.saturating_sub(last)
        );
    }
    line(out, "END");
}
