//! Executes parsed text-protocol commands against the store and composes the replies
//! into the connection's write buffer. This is where a request touches memory: every
//! store call locks one shard for the duration of one item operation, and a value is
//! copied into the reply buffer under that lock.

use std::sync::atomic::Ordering;

use super::{Shared, StopReason};
use crate::protocol::text::{reply as compose, Command, DebugTimeArg, Keys, ShutdownMode};
use crate::stats::{bump, Counters, PrefixEvent};
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
            super::stats_exec::stats_command(shared, args, out);
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
        Command::SlabsAutomove {
            level,
            ratio,
            noreply,
        } => {
            if let Some(l) = level {
                shared.slab_automove.store(l, Ordering::Relaxed);
            }
            if let Some(r) = ratio {
                shared
                    .slab_automove_ratio
                    .store(r.to_bits(), Ordering::Relaxed);
            }
            reply(out, noreply, "OK");
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
