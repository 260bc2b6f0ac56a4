//! Executes parsed text-protocol commands against the store and composes the replies
//! into the connection's write buffer. This is where a request touches memory: every
//! store call locks one shard for the duration of one item operation, and a value is
//! copied into the reply buffer under that lock.

use std::io::Write;
use std::sync::atomic::Ordering;

use super::conn::STATE_NAMES;
use super::{Shared, StopReason};
use crate::protocol::text::{reply as compose, Command, DebugTimeArg, Keys, ShutdownMode};
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

fn reply(out: &mut Vec<u8>, noreply: bool, s: &str) {
    if !noreply {
        compose::line(out, s);
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

/// Runs one text command. `skip` keys of a multi-get were already answered by an
/// earlier, suspended run of the same request; a multi-get is suspended between keys
/// once `out` holds more than `out_cap` bytes.
pub fn execute(
    cmd: Command<'_>,
    shared: &Shared,
    c: &Counters,
    out: &mut Vec<u8>,
    skip: usize,
    out_cap: usize,
) -> Flow {
    let store = &shared.store;
    let more = Resume { skip, out_cap };
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
            let outcome = store.store(op, key, flags, exptime, data);
            count_store(c, op, outcome);
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
            match store.delta(key, d) {
                DeltaOutcome::Value(v) => {
                    bump(hits, 1);
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
            compose::version(out, PROTOCOL_VERSION);
            Flow::Continue
        }
        Command::Verbosity { level, noreply } => {
            // memcached caps the level at 2 (-vv) here, whatever -v said.
            let level = level.min(2);
            shared.verbosity.store(level, Ordering::Relaxed);
            crate::config::Config::set_runtime_verbosity(level);
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
    }
}

/// Where a multi-get starts (keys already answered) and when it stops for
/// back-pressure (reply bytes buffered).
#[derive(Clone, Copy)]
struct Resume {
    skip: usize,
    out_cap: usize,
}

/// get / gets / gat / gats.
fn retrieve(
    shared: &Shared,
    c: &Counters,
    out: &mut Vec<u8>,
    keys: Keys<'_>,
    touch: Option<i64>,
    with_cas: bool,
    Resume { skip, out_cap }: Resume,
) -> Flow {
    let store = &shared.store;
    for (i, key) in keys.enumerate().skip(skip) {
        if i > skip && out.len() > out_cap {
            return Flow::Suspend { keys_done: i };
        }
        let r = match touch {
            None => {
                bump(&c.get_cmds, 1);
                store.get(key, |it| write_value(out, it, with_cas))
            }
            Some(exptime) => {
                bump(&c.touch_cmds, 1);
                store.get_and_touch(key, exptime, |it| write_value(out, it, with_cas))
            }
        };
        shared.prefix.record(key, PrefixEvent::Get(r.is_ok()));
        match (r, touch) {
            (Ok(()), None) => bump(&c.get_hits, 1),
            (Ok(()), Some(_)) => bump(&c.touch_hits, 1),
            (Err(m), None) => count_miss(c, m),
            (Err(_), Some(_)) => bump(&c.touch_misses, 1),
        }
    }
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
    for c in shared.store.class_stats() {
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
