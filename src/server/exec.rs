//! Executes parsed text-protocol commands against the store and composes the replies
//! into the connection's write buffer. This is where a request touches memory: every
//! store call locks one shard for the duration of one item operation, and a value is
//! copied into the reply buffer under that lock.

use std::io::Write;
use std::sync::atomic::Ordering;

use super::conn::STATE_NAMES;
use super::dump::Dump;
use super::watch::{GetStatus, StoreStatus, FETCHERS, MUTATIONS};
use super::{vlog, Shared, StopReason};
use crate::protocol::text::{
    reply as compose, Command, CrawlerCmd, DebugTimeArg, Keys, ShutdownMode,
};
use crate::stats::{self, bump, stat_line, Counters, PrefixEvent};
use crate::store::{Delta, DeltaOutcome, ItemRef, Miss, StoreOp, StoreOutcome};

/// The version string clients see (`VERSION 1.6.18`): the memcached release whose
/// behaviour we reproduce.
pub const PROTOCOL_VERSION: &str = "1.6.18";

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next request.
    Continue,
    /// Send what is buffered, then close (`quit`, `shutdown`).
    Close,
    /// The reply buffer is full: run this same request again later, skipping the
    /// first `keys_done` keys (a multi-get interrupted by back-pressure).
    Suspend {
        /// Keys already answered.
        keys_done: usize,
    },
}

fn line(out: &mut Vec<u8>, s: &str) {
    compose::line(out, s);
}

/// A one-line reply (memcached's `out_string`, which `-vv` logs).
fn reply(out: &mut Vec<u8>, noreply: bool, s: &str) {
    vlog::reply(s, noreply);
    if !noreply {
        compose::line(out, s);
    }
}

/// What a text command runs with besides the store, and what it leaves for the
/// connection to do.
#[derive(Debug, Default)]
pub struct ExecCtx {
    /// Keys of a multi-get already answered by an earlier, suspended run.
    pub skip: usize,
    /// A multi-get is suspended between keys once the reply buffer holds more.
    pub out_cap: usize,
    /// The connection (`cfd=` of watch lines).
    pub fd: i32,
    /// Replies of earlier requests of this batch wait unsent (memcached's
    /// `resp_has_stack`): `metadump` and `watch` refuse to start then.
    pub pipelined: bool,
    /// Set by `lru_crawler metadump`: the connection streams this dump next.
    pub dump: Option<Dump>,
    /// Set by `watch`: the connection becomes a watcher of these event types.
    pub watch: Option<u16>,
}

/// The watch status of a lookup result.
fn get_status(r: &Result<Option<(usize, usize)>, Miss>) -> GetStatus {
    match r {
        Ok(Some((class, size))) => GetStatus::Found {
            class: *class,
            size: *size,
        },
        Ok(None) => GetStatus::NotFound,
        Err(Miss::Absent) => GetStatus::NotFound,
        Err(Miss::Expired) => GetStatus::Expired,
        Err(Miss::Flushed) => GetStatus::Flushed,
    }
}

/// Logs `item_get` for a key the way memcached's internal lookups do (a store,
/// delete, touch or incr looks the key up first), when fetchers are watched.
fn watch_lookup(shared: &Shared, key: &[u8], fd: i32) {
    if shared.watch.wants(FETCHERS) {
        let store = &shared.store;
        let r = store.peek(key, |it| Some((store.class_of(it), it.value.len())));
        shared.watch.item_get(key, get_status(&r), fd);
    }
}

fn store_status(o: StoreOutcome) -> StoreStatus {
    match o {
        StoreOutcome::Stored => StoreStatus::Stored,
        StoreOutcome::NotStored => StoreStatus::NotStored,
        StoreOutcome::Exists => StoreStatus::Exists,
        StoreOutcome::NotFound => StoreStatus::NotFound,
        StoreOutcome::TooLarge => StoreStatus::TooLarge,
        StoreOutcome::OutOfMemory => StoreStatus::NoMemory,
    }
}

fn store_cmd_name(op: StoreOp) -> &'static str {
    match op {
        StoreOp::Set => "set",
        StoreOp::Add => "add",
        StoreOp::Replace => "replace",
        StoreOp::Append => "append",
        StoreOp::Prepend => "prepend",
        StoreOp::Cas(_) => "cas",
    }
}

fn write_value(out: &mut Vec<u8>, it: &ItemRef<'_>, with_cas: bool) {
    compose::value(out, it.key, it.flags, it.value, with_cas.then_some(it.cas));
}

/// Counts a storage command as memcached does: `cmd_set` unless it was refused as too
/// large, and the `cas_*` outcome of a `cas`. Shared by the text and binary executors.
pub(super) fn count_store(c: &Counters, op: StoreOp, outcome: StoreOutcome) {
    if !matches!(outcome, StoreOutcome::TooLarge) {
        bump(&c.set_cmds, 1);
    }
    if let StoreOp::Cas(_) = op {
        match outcome {
            StoreOutcome::Stored => bump(&c.cas_hits, 1),
            StoreOutcome::Exists => bump(&c.cas_badval, 1),
            StoreOutcome::NotFound => bump(&c.cas_misses, 1),
            _ => {}
        }
    }
}

/// Counts a lookup miss (`get_misses`, and `get_expired` / `get_flushed` by cause).
pub(super) fn count_miss(c: &Counters, m: Miss) {
    bump(&c.get_misses, 1);
    match m {
        Miss::Expired => bump(&c.get_expired, 1),
        Miss::Flushed => bump(&c.get_flushed, 1),
        Miss::Absent => {}
    }
}

/// Runs one text command (see [`ExecCtx`] for what it gets and leaves).
pub fn execute(
    cmd: Command<'_>,
    shared: &Shared,
    c: &Counters,
    out: &mut Vec<u8>,
    ctx: &mut ExecCtx,
) -> Flow {
    let store = &shared.store;
    let more = Resume {
        skip: ctx.skip,
        out_cap: ctx.out_cap,
        fd: ctx.fd,
    };
    let fd = ctx.fd;
    match cmd {
        Command::Get { keys, cas } => retrieve(shared, c, out, keys, None, cas, more),
        Command::Gat { exptime, keys, cas } => {
            retrieve(shared, c, out, keys, Some(exptime), cas, more)
        }
        Command::Store {
            cmd: op,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => {
            watch_lookup(shared, key, fd);
            let outcome = store.store(op, key, flags, exptime, data);
            count_store(c, op, outcome);
            if shared.watch.wants(MUTATIONS) {
                watch_store(shared, op, key, flags, exptime, data, outcome, fd);
            }
            shared.prefix.record(key, PrefixEvent::Set);
            let text = match outcome {
                StoreOutcome::Stored => "STORED",
                StoreOutcome::NotStored => "NOT_STORED",
                StoreOutcome::Exists => "EXISTS",
                StoreOutcome::NotFound => "NOT_FOUND",
                // On these two the store has removed the old value of a `set`.
                StoreOutcome::TooLarge => {
                    bump(&c.store_too_large, 1);
                    "SERVER_ERROR object too large for cache"
                }
                StoreOutcome::OutOfMemory => {
                    bump(&c.store_no_memory, 1);
                    "SERVER_ERROR out of memory storing object"
                }
            };
            reply(out, noreply, text);
            Flow::Continue
        }
        Command::Delete { key, noreply } => {
            watch_lookup(shared, key, fd);
            let r = store.delete(key);
            shared.prefix.record(key, PrefixEvent::Delete);
            if r.is_ok() {
                bump(&c.delete_hits, 1);
                reply(out, noreply, "DELETED");
            } else {
                bump(&c.delete_misses, 1);
                reply(out, noreply, "NOT_FOUND");
            }
            Flow::Continue
        }
        Command::Arith {
            key,
            incr,
            delta,
            noreply,
        } => {
            let d = if incr {
                Delta::Incr(delta)
            } else {
                Delta::Decr(delta)
            };
            let (hits, misses) = if incr {
                (&c.incr_hits, &c.incr_misses)
            } else {
                (&c.decr_hits, &c.decr_misses)
            };
            watch_lookup(shared, key, fd);
            match store.delta(key, d) {
                DeltaOutcome::Value(v) => {
                    bump(hits, 1);
                    if vlog::on() {
                        vlog::reply(&v.to_string(), noreply);
                    }
                    if !noreply {
                        compose::number(out, v);
                    }
                }
                DeltaOutcome::NotFound(_) => {
                    bump(misses, 1);
                    reply(out, noreply, "NOT_FOUND");
                }
                DeltaOutcome::NonNumeric => reply(
                    out,
                    noreply,
                    "CLIENT_ERROR cannot increment or decrement non-numeric value",
                ),
                DeltaOutcome::OutOfMemory => reply(out, noreply, "SERVER_ERROR out of memory"),
                // Text incr/decr carry no CAS guard.
                DeltaOutcome::Exists => reply(out, noreply, "EXISTS"),
            }
            Flow::Continue
        }
        Command::Touch {
            key,
            exptime,
            noreply,
        } => {
            bump(&c.touch_cmds, 1);
            watch_lookup(shared, key, fd);
            if store.touch(key, exptime).is_ok() {
                bump(&c.touch_hits, 1);
                reply(out, noreply, "TOUCHED");
            } else {
                bump(&c.touch_misses, 1);
                reply(out, noreply, "NOT_FOUND");
            }
            Flow::Continue
        }
        Command::FlushAll { delay, noreply } => {
            bump(&c.flush_cmds, 1);
            if shared.config.disable_flush_all {
                reply(out, noreply, "CLIENT_ERROR flush_all not allowed");
                return Flow::Continue;
            }
            match delay {
                Some(d) => {
                    store.flush_all(d.max(0));
                    reply(out, noreply, "OK");
                }
                None => reply(out, noreply, "CLIENT_ERROR invalid exptime argument"),
            }
            Flow::Continue
        }
        Command::Version => {
            if vlog::on() {
                vlog::reply(&format!("VERSION {PROTOCOL_VERSION}"), false);
            }
            compose::version(out, PROTOCOL_VERSION);
            Flow::Continue
        }
        Command::Verbosity { level, noreply } => {
            let level = level.min(2);
            shared.verbosity.store(level, Ordering::Relaxed);
            log::set_max_level(crate::config::Config::level_filter(level as u8));
            reply(out, noreply, "OK");
            Flow::Continue
        }
        Command::Quit => Flow::Close,
        Command::Shutdown { mode } => {
            if !shared.config.enable_shutdown {
                line(out, "ERROR: shutdown not enabled");
                return Flow::Continue;
            }
            if mode == ShutdownMode::Invalid {
                line(out, "CLIENT_ERROR invalid shutdown mode");
                return Flow::Continue;
            }
            // Graceful and immediate both stop cleanly: buffered replies are sent.
            shared.request_stop(StopReason::Command);
            Flow::Close
        }
        Command::CacheMemlimit { megabytes, noreply } => {
            let text = if store.set_mem_limit((megabytes as usize).saturating_mul(1 << 20)) {
                "OK"
            } else {
                "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust"
            };
            reply(out, noreply, text);
            Flow::Continue
        }
        Command::Stats { args } => {
            stats_command(shared, args, out);
            Flow::Continue
        }
        Command::DebugTime { arg } => {
            if shared.config.debugtime {
                match arg {
                    DebugTimeArg::Shift(secs) => shared.clock.advance(secs),
                    DebugTimeArg::Pause => shared.clock.pause(true),
                    DebugTimeArg::Resume => shared.clock.pause(false),
                }
                line(out, "OK");
            } else {
                line(out, "ERROR");
            }
            Flow::Continue
        }
        Command::Meta(req) => super::meta_exec::execute(&req, shared, c, out),
        Command::LruCrawler(sub) => {
            lru_crawler(shared, sub, out, ctx);
            Flow::Continue
        }
        Command::Watch { flags, noreply } => {
            if shared.config.disable_watch {
                reply(out, noreply, "CLIENT_ERROR watch commands not allowed");
            } else if ctx.pipelined {
                reply(
                    out,
                    noreply,
                    "ERROR cannot pipeline other commands before watch",
                );
            } else {
                match flags {
                    Some(f) => ctx.watch = Some(f),
                    None => reply(out, noreply, "ERROR"),
                }
            }
            Flow::Continue
        }
    }
}

/// `item_store` for a storage command (mutations watched): what was stored, or what
/// was offered when nothing was.
#[allow(clippy::too_many_arguments)]
fn watch_store(
    shared: &Shared,
    op: StoreOp,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    outcome: StoreOutcome,
    fd: i32,
) {
    let store = &shared.store;
    let now = shared.clock.now();
    let ttl_of = |exp: u32| if exp == 0 { 0 } else { exp.wrapping_sub(now) };
    let stored = matches!(outcome, StoreOutcome::Stored)
        .then(|| {
            store
                .peek(key, |it| (store.class_of(it), it.value.len(), it.exptime))
                .ok()
        })
        .flatten();
    let (class, size, ttl) = match (stored, outcome) {
        (Some((class, size, exp)), _) => (class, size, ttl_of(exp)),
        // memcached reports no item for these.
        (None, StoreOutcome::TooLarge | StoreOutcome::OutOfMemory) => (0, 0, 0),
        (None, _) => {
            let exp = shared.clock.realtime(exptime);
            let offered = ItemRef {
                key,
                flags,
                value: data,
                cas: 0,
                exptime: exp,
            };
            (store.class_of(&offered), data.len(), ttl_of(exp))
        }
    };
    shared.watch.item_store(
        key,
        store_status(outcome),
        store_cmd_name(op),
        ttl,
        class,
        fd,
        size,
    );
}

/// `lru_crawler ...`, answered as memcached 1.6.18 does.
fn lru_crawler(shared: &Shared, sub: CrawlerCmd<'_>, out: &mut Vec<u8>, ctx: &mut ExecCtx) {
    let crawler = &shared.crawler;
    let classes = shared.store.classes();
    match sub {
        CrawlerCmd::Crawl(arg) => {
            if !crawler.enabled() {
                return reply(out, false, "CLIENT_ERROR lru crawler disabled");
            }
            match crawler.request_crawl(arg, classes) {
                Ok(()) => reply(out, false, "OK"),
                Err(e) => reply(out, false, e.reply()),
            }
        }
        CrawlerCmd::Metadump(arg) => {
            if !crawler.enabled() {
                return reply(out, false, "CLIENT_ERROR lru crawler disabled");
            }
            if shared.config.disable_dumping {
                return reply(out, false, "ERROR metadump not allowed");
            }
            if ctx.pipelined {
                return reply(
                    out,
                    false,
                    "ERROR cannot pipeline other commands before metadump",
                );
            }
            match crawler.start_dump(arg, classes) {
                Ok(d) => ctx.dump = Some(d),
                Err(e) => reply(out, false, e.reply()),
            }
        }
        CrawlerCmd::ToCrawl(n) => {
            crawler.tocrawl.store(n, Ordering::Relaxed);
            reply(out, false, "OK");
        }
        CrawlerCmd::Sleep(us) => {
            crawler.sleep_us.store(us, Ordering::Relaxed);
            reply(out, false, "OK");
        }
        CrawlerCmd::Enable => {
            if crawler.enable() {
                reply(out, false, "OK");
            } else {
                reply(out, false, "ERROR failed to start lru crawler thread");
            }
        }
        CrawlerCmd::Disable => {
            crawler.disable();
            reply(out, false, "OK");
        }
    }
}

/// Where a multi-get starts (keys already answered) and when it stops for
/// back-pressure (reply bytes buffered).
#[derive(Clone, Copy)]
struct Resume {
    skip: usize,
    out_cap: usize,
    fd: i32,
}

/// get / gets / gat / gats.
fn retrieve(
    shared: &Shared,
    c: &Counters,
    out: &mut Vec<u8>,
    keys: Keys<'_>,
    touch: Option<i64>,
    with_cas: bool,
    Resume { skip, out_cap, fd }: Resume,
) -> Flow {
    let store = &shared.store;
    let watching = shared.watch.wants(FETCHERS);
    for (i, key) in keys.enumerate().skip(skip) {
        if i > skip && out.len() > out_cap {
            return Flow::Suspend { keys_done: i };
        }
        let hit = |it: &ItemRef<'_>, out: &mut Vec<u8>| {
            write_value(out, it, with_cas);
            watching.then(|| (store.class_of(it), it.value.len()))
        };
        let r = match touch {
            None => {
                bump(&c.get_cmds, 1);
                store.get(key, |it| hit(it, out))
            }
            Some(exptime) => {
                bump(&c.touch_cmds, 1);
                store.get_and_touch(key, exptime, |it| hit(it, out))
            }
        };
        if r.is_ok() {
            // Logged once the shard lock is released.
            vlog::sending_key(key);
        }
        if watching {
            shared.watch.item_get(key, get_status(&r), fd);
        }
        let r = r.map(|_| ());
        shared.prefix.record(key, PrefixEvent::Get(r.is_ok()));
        match (r, touch) {
            (Ok(()), None) => bump(&c.get_hits, 1),
            (Ok(()), Some(_)) => bump(&c.touch_hits, 1),
            (Err(m), None) => count_miss(c, m),
            (Err(_), Some(_)) => bump(&c.touch_misses, 1),
        }
    }
    vlog::reply("END", false);
    out.extend_from_slice(b"END\r\n");
    Flow::Continue
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
pub(super) fn stats_command(shared: &Shared, args: &[u8], out: &mut Vec<u8>) {
    let mut words = Keys(args).map(|w| std::str::from_utf8(w).unwrap_or("\u{fffd}"));
    let group = words.next().unwrap_or("");
    match group {
        "" => general_stats(shared, out),
        "settings" => {
            for (name, value) in shared.config.settings_stats() {
                let value = match name {
                    "verbosity" => shared.verbosity.load(Ordering::Relaxed).to_string(),
                    "lru_crawler" => if shared.crawler.enabled() {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                    "lru_crawler_sleep" => {
                        shared.crawler.sleep_us.load(Ordering::Relaxed).to_string()
                    }
                    "lru_crawler_tocrawl" => {
                        shared.crawler.tocrawl.load(Ordering::Relaxed).to_string()
                    }
                    "detail_enabled" => {
                        if shared.prefix.enabled() { "yes" } else { "no" }.to_string()
                    }
                    _ => value,
                };
                stat_line(out, name, value);
            }
            line(out, "END");
        }
        "items" => items_stats(shared, out),
        "slabs" => slabs_stats(shared, out),
        "sizes" => {
            stat_line(out, "sizes_status", "disabled");
            line(out, "END");
        }
        "conns" => conns_stats(shared, out),
        "cachedump" => cachedump(shared, words.next(), words.next(), out),
        "reset" => {
            for w in &shared.counters {
                w.reset();
            }
            shared.conns.total_connections.store(0, Ordering::Relaxed);
            shared
                .conns
                .rejected_connections
                .store(0, Ordering::Relaxed);
            shared.prefix.clear();
            shared.store.reset_stats();
            line(out, "RESET");
        }
        "detail" => match words.next() {
            Some("on") => {
                shared.prefix.set_enabled(true);
                line(out, "OK");
            }
            Some("off") => {
                shared.prefix.set_enabled(false);
                line(out, "OK");
            }
            Some("dump") => shared.prefix.dump(out),
            _ => line(out, "CLIENT_ERROR usage: stats detail on|off|dump"),
        },
        _ => line(out, "ERROR"),
    }
}

/// memcached's buffer counters, from the connection buffer budget: `response_obj_*`
/// are reply buffers (`response_obj_oom`: times a connection stopped serving because
/// the budget left it no more room for replies), `read_buf_*` read buffers
/// (`read_buf_oom`: values refused and connections closed for lack of budget).
fn buffer_stats(shared: &Shared, out: &mut Vec<u8>) {
    let sum = |f: fn(&super::budget::BufferStats) -> &std::sync::atomic::AtomicUsize| {
        shared
            .buffer_stats
            .iter()
            .map(|b| f(b).load(Ordering::Relaxed))
            .sum::<usize>()
    };
    let b = &shared.buffers;
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

fn general_stats(shared: &Shared, out: &mut Vec<u8>) {
    let s = stats::sum(shared.counters.iter().map(|a| &**a));
    let st = shared.store.stats();
    let clock = &shared.clock;
    let conns = &shared.conns;
    let (user, sys) = rusage();
    stat_line(out, "pid", std::process::id());
    stat_line(out, "uptime", clock.uptime());
    stat_line(out, "time", clock.unix_time());
    stat_line(out, "version", PROTOCOL_VERSION);
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
    stat_line(out, "bytes_read", s.bytes_read);
    stat_line(out, "bytes_written", s.bytes_written);
    stat_line(out, "limit_maxbytes", st.limit_maxbytes);
    stat_line(out, "accepting_conns", 1);
    stat_line(out, "listen_disabled_num", 0);
    stat_line(out, "threads", shared.config.threads);
    stat_line(out, "conn_yields", s.conn_yields);
    stat_line(out, "hash_bytes", st.hash_bytes);
    stat_line(out, "bytes", st.bytes);
    stat_line(out, "curr_items", st.curr_items);
    stat_line(out, "total_items", st.total_items);
    stat_line(out, "expired_unfetched", st.expired_unfetched);
    stat_line(out, "evicted_unfetched", st.evicted_unfetched);
    stat_line(out, "evictions", st.evictions);
    stat_line(out, "reclaimed", st.reclaimed);
    stat_line(out, "crawler_reclaimed", st.crawler_reclaimed);
    line(out, "END");
}

/// `stats items`: per size class, for classes holding items.
fn items_stats(shared: &Shared, out: &mut Vec<u8>) {
    for c in shared.store.class_stats() {
        if c.number == 0 {
            continue;
        }
        let id = c.id;
        let mut item = |name: &str, v: u64| {
            let _ = write!(out, "STAT items:{id}:{name} {v}\r\n");
        };
        item("number", c.number);
        item("mem_requested", c.requested);
        item("evicted", c.evicted);
        item("evicted_nonzero", c.evicted_nonzero);
        item("evicted_time", c.evicted_time as u64);
        item("outofmemory", c.outofmemory);
        item("reclaimed", c.reclaimed);
        item("expired_unfetched", c.expired_unfetched);
        item("evicted_unfetched", c.evicted_unfetched);
        item("crawler_reclaimed", c.crawler_reclaimed);
    }
    line(out, "END");
}

/// `stats slabs`: per size class with memory, then totals.
fn slabs_stats(shared: &Shared, out: &mut Vec<u8>) {
    let mut active = 0;
    for mut c in shared.store.class_stats() {
        if c.total_pages == 0 && c.number > 0 {
            // The segment store keeps no pages per class: a class holding items shows
            // the 1 MiB pages its items' bytes would fill (memcached-tool's `display`
            // lists only classes with pages).
            c.total_pages = c.requested.div_ceil(1 << 20).max(1);
        }
        if c.total_pages == 0 {
            continue;
        }
        active += 1;
        let id = c.id;
        let mut slab = |name: &str, v: u64| {
            let _ = write!(out, "STAT {id}:{name} {v}\r\n");
        };
        slab("chunk_size", c.chunk_size);
        slab("chunks_per_page", c.chunks_per_page);
        slab("total_pages", c.total_pages);
        slab("total_chunks", c.total_chunks);
        slab("used_chunks", c.used_chunks);
        slab("free_chunks", c.free_chunks);
    }
    stat_line(out, "active_slabs", active);
    stat_line(out, "total_malloced", shared.store.stats().total_malloced);
    line(out, "END");
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
    for (fd, addr) in &shared.listener_info {
        let _ = write!(out, "STAT {fd}:addr {addr}\r\n");
        let _ = write!(out, "STAT {fd}:state conn_listening\r\n");
        let _ = write!(
            out,
            "STAT {fd}:secs_since_last_cmd {}\r\n",
            shared.clock.uptime()
        );
    }
    let reg = shared.registry.lock();
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
