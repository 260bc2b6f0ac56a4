//! Executes parsed binary-protocol requests against the store and composes the reply
//! packets into the connection's write buffer, with memcached 1.6.18's rules: quiet
//! forms suppress successes (and get misses), errors are always sent, error packets
//! carry CAS 0, and the same `stats` counters as the text protocol move.

use crate::op::{OpKind, Outcome};
use crate::protocol::binary::{
    write_error, write_hit, write_hit_head, write_key_miss, write_ok, write_stat, Command, Header,
    Request, Status, StoreKind,
};
use crate::server::flow::{Flow, ReplyRoom, Streamed, PROTOCOL_VERSION};
use crate::server::observe::{outcome_of, store_outcome, Obs, Op};
use crate::server::shared::Shared;
use crate::server::stats::rows::{self as stats_exec, StatSink};
use crate::store::{
    DeleteOutcome, Delta, DeltaOutcome, Guard, NewItem, Reply, ReplyValue, StoreOp, StoreOutcome,
};

/// The "do not create" expiry of INCREMENT/DECREMENT.
const NO_CREATE: u32 = 0xffff_ffff;

/// Runs one binary request.
pub fn execute(
    req: Request<'_>,
    shared: &Shared,
    obs: &Obs<'_>,
    out: &mut Vec<u8>,
    room: &mut ReplyRoom,
) -> Flow {
    let h = &req.header;
    let key = req.key;
    let quiet = req.quiet;
    let store = &shared.store;
    let cas_on = !shared.config.disable_cas;
    let req_cas = if cas_on { h.cas } else { 0 };
    match req.cmd {
        Command::Get {
            with_key,
            with_value,
            exptime,
        } => {
            let watching = obs.fetchers();
            let emit = |it: &crate::store::ItemRef<'_>, streamed: bool, out: &mut Vec<u8>| {
                let k = with_key.then_some(key);
                if streamed {
                    write_hit_head(out, h, it.flags, k, it.value.len(), it.cas);
                } else {
                    write_hit(out, h, it.flags, k, with_value.then_some(it.value), it.cas);
                }
                let class = if watching { store.class_of(it) } else { 0 };
                (it.value.len(), class)
            };
            // Only a reply with the value may stream it.
            let rule = if with_value {
                room.rule(out.len())
            } else {
                ReplyValue::COPY
            };
            let touch = exptime.map(|e| e as i64);
            let r = match store.get_reply(key, touch, rule, |it, streamed| emit(it, streamed, out))
            {
                Ok(Reply::Wait) => {
                    // Nothing done: the request runs again later.
                    room.wait = true;
                    return Flow::Continue;
                }
                Ok(Reply::Done(found, lease)) => {
                    if let Some(lease) = lease {
                        // The value follows from the store.
                        room.streamed = Some(Streamed {
                            lease,
                            trailer: b"",
                        });
                    }
                    Ok(found)
                }
                Err(m) => Err(m),
            };
            let kind = if touch.is_some() {
                OpKind::Gat
            } else {
                OpKind::Get
            };
            let mut done = Op::lookup(kind, key, r);
            done.exptime = touch.unwrap_or(0);
            obs.emit(done);
            match r {
                Ok(_) => {}
                Err(_) => {
                    if !quiet {
                        if with_key {
                            write_key_miss(out, h, key);
                        } else {
                            write_error(out, h, Status::KeyEnoent);
                        }
                    }
                }
            }
        }
        Command::Store {
            kind,
            flags,
            exptime,
            value,
        } => {
            let (status, cas) = store_cmd(shared, obs, key, kind, flags, exptime, value, req_cas);
            match status {
                Status::Success => {
                    if !quiet {
                        write_ok(out, h, &[], cas);
                    }
                }
                s => write_error(out, h, s),
            }
        }
        Command::Delete => {
            obs.before(key);
            let (result, outcome) = match store.delete(key, req_cas) {
                DeleteOutcome::Deleted => (Ok(()), Outcome::Hit),
                DeleteOutcome::NotFound(m) => (Err(Status::KeyEnoent), outcome_of(Err(m))),
                DeleteOutcome::Exists => (Err(Status::KeyEexists), Outcome::Exists),
            };
            obs.emit(Op::new(OpKind::Delete, key, outcome));
            match result {
                Ok(()) => {
                    if !quiet {
                        write_ok(out, h, &[], 0);
                    }
                }
                Err(s) => write_error(out, h, s),
            }
        }
        Command::Arith {
            incr,
            delta,
            initial,
            exptime,
        } => arith(
            shared, obs, out, h, quiet, key, incr, delta, initial, exptime, req_cas,
        ),
        Command::Quit => {
            if !quiet {
                write_ok(out, h, &[], 0);
            }
            return Flow::Close;
        }
        Command::Flush { delay } => {
            if shared.config.disable_flush_all {
                write_error(out, h, Status::AuthError);
            } else {
                let mut flush = Op::new(OpKind::Flush, b"", Outcome::Hit);
                flush.exptime = delay as i64;
                obs.emit(flush);
                store.flush_all(delay as i64);
                if !quiet {
                    write_ok(out, h, &[], 0);
                }
            }
        }
        Command::Noop => write_ok(out, h, &[], 0),
        Command::Version => write_ok(out, h, PROTOCOL_VERSION.as_bytes(), 0),
        Command::Stat => stat(shared, out, h, key),
        Command::ConfigGet | Command::ConfigSet { .. } | Command::ConfigDelete => {
            config(shared, out, h, key, &req.cmd)
        }
        // Served by `session::auth` (the connection's SASL state); never routed here.
        Command::SaslListMechs | Command::SaslAuth { .. } | Command::SaslStep { .. } => {
            write_error(out, h, Status::UnknownCommand)
        }
    }
    Flow::Continue
}

/// CONFIG_GET/SET/DELETE (ElastiCache's opcodes): the value of a hit is the payload
/// `config get cluster` returns, with 4 bytes of flags (0) as a GET's.
fn config(shared: &Shared, out: &mut Vec<u8>, h: &Header, key: &[u8], cmd: &Command<'_>) {
    let cluster = &shared.admin.cluster;
    let is_cluster = key == crate::protocol::cluster::CLUSTER_KEY;
    match cmd {
        Command::ConfigGet => {
            cluster
                .gets
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match cluster.current().filter(|_| is_cluster) {
                Some(p) => write_hit(out, h, 0, None, Some(&p.payload), 0),
                None => write_error(out, h, Status::KeyEnoent),
            }
        }
        Command::ConfigSet { value } if is_cluster => match cluster.set(value) {
            Ok(v) => {
                log::info!("config set cluster (binary): version {v}");
                write_ok(out, h, &[], 0);
            }
            Err(crate::server::admin::cluster::Refusal::ReadOnly) => {
                write_error(out, h, Status::NotStored)
            }
            Err(
                crate::server::admin::cluster::Refusal::Bad(_)
                | crate::server::admin::cluster::Refusal::TooHigh(_),
            ) => write_error(out, h, Status::Einval),
        },
        Command::ConfigDelete if is_cluster => match cluster.delete() {
            Ok(true) => write_ok(out, h, &[], 0),
            Ok(false) => write_error(out, h, Status::KeyEnoent),
            Err(_) => write_error(out, h, Status::NotStored),
        },
        Command::ConfigSet { .. } => write_error(out, h, Status::Einval),
        _ => write_error(out, h, Status::KeyEnoent),
    }
}

/// SET/ADD/REPLACE/APPEND/PREPEND; returns the reply status.
#[allow(clippy::too_many_arguments)]
fn store_cmd(
    shared: &Shared,
    obs: &Obs<'_>,
    key: &[u8],
    kind: StoreKind,
    flags: u32,
    exptime: u32,
    value: &[u8],
    cas: u64,
) -> (Status, u64) {
    let store = &shared.store;
    // memcached checks the CAS of append/prepend too: the store does it under the lock.
    let append = matches!(kind, StoreKind::Append | StoreKind::Prepend);
    let op = match kind {
        _ if cas != 0 && !append => StoreOp::Cas(cas),
        StoreKind::Set => StoreOp::Set,
        StoreKind::Add => StoreOp::Add,
        StoreKind::Replace => StoreOp::Replace,
        StoreKind::Append => StoreOp::Append,
        StoreKind::Prepend => StoreOp::Prepend,
    };
    let guard = Guard {
        cas: if append { cas } else { 0 },
        invalidate: false,
    };
    obs.before(key);
    let item = NewItem::new(flags, exptime as i64, value);
    let (outcome, new_cas) = store.store(op, key, item, guard);
    let done = Op::new(OpKind::Store(op), key, store_outcome(outcome));
    obs.emit(done.with_data(value, flags, exptime as i64));
    let status = match outcome {
        StoreOutcome::Stored => Status::Success,
        StoreOutcome::Exists => Status::KeyEexists,
        StoreOutcome::NotFound => Status::KeyEnoent,
        StoreOutcome::NotStored => match kind {
            StoreKind::Add => Status::KeyEexists,
            StoreKind::Replace => Status::KeyEnoent,
            _ => Status::NotStored,
        },
        StoreOutcome::TooLarge => Status::E2big,
        StoreOutcome::OutOfMemory => Status::Enomem,
    };
    (status, new_cas)
}

/// INCREMENT/DECREMENT with memcached's create-on-miss rule.
#[allow(clippy::too_many_arguments)]
fn arith(
    shared: &Shared,
    obs: &Obs<'_>,
    out: &mut Vec<u8>,
    h: &Header,
    quiet: bool,
    key: &[u8],
    incr: bool,
    delta: u64,
    initial: u64,
    exptime: u32,
    cas: u64,
) {
    let store = &shared.store;
    let d = if incr {
        Delta::Incr(delta)
    } else {
        Delta::Decr(delta)
    };
    let op_kind = if incr { OpKind::Incr } else { OpKind::Decr };
    let done = |outcome: Outcome, amount: u64| {
        let mut op = Op::new(op_kind, key, outcome);
        op.amount = amount;
        obs.emit(op);
    };
    obs.before(key);
    let (outcome, new_cas) = store.delta(key, d, cas);
    let creates = matches!(outcome, DeltaOutcome::NotFound(_)) && exptime != NO_CREATE;
    if !creates {
        done(crate::server::observe::delta_outcome(&outcome), delta);
    }
    match outcome {
        DeltaOutcome::Value(v) => {
            if !quiet {
                write_ok(out, h, &v.to_be_bytes(), new_cas);
            }
        }
        DeltaOutcome::Exists => write_error(out, h, Status::KeyEexists),
        DeltaOutcome::NotFound(_) if exptime != NO_CREATE => {
            let text = initial.to_string();
            let item = NewItem::new(0, exptime as i64, text.as_bytes());
            let added = store.store(StoreOp::Add, key, item, Guard::NONE);
            done(
                match added.0 {
                    StoreOutcome::Stored => Outcome::Created,
                    o => store_outcome(o),
                },
                initial,
            );
            match added {
                (StoreOutcome::Stored, new_cas) => {
                    if !quiet {
                        write_ok(out, h, &initial.to_be_bytes(), new_cas);
                    }
                }
                (StoreOutcome::OutOfMemory | StoreOutcome::TooLarge, _) => {
                    write_error(out, h, Status::Enomem)
                }
                _ => write_error(out, h, Status::NotStored),
            }
        }
        DeltaOutcome::NotFound(_) => write_error(out, h, Status::KeyEnoent),
        DeltaOutcome::NonNumeric => write_error(out, h, Status::DeltaBadval),
        DeltaOutcome::OutOfMemory => write_error(out, h, Status::Enomem),
    }
}

/// STAT packets: one per stats row, from the same rows the text protocol prints.
struct StatPackets<'a> {
    out: &'a mut Vec<u8>,
    h: &'a Header,
    value: String,
}

impl StatSink for StatPackets<'_> {
    fn stat(&mut self, name: &str, value: &dyn std::fmt::Display) {
        use std::fmt::Write as _;
        self.value.clear();
        let _ = write!(self.value, "{value}");
        write_stat(self.out, self.h, name.as_bytes(), self.value.as_bytes());
    }
}

/// STAT: the text protocol's stats groups, one packet per stat, then the empty
/// terminator; groups memcached serves only over text answer `KEY_ENOENT`.
fn stat(shared: &Shared, out: &mut Vec<u8>, h: &Header, group: &[u8]) {
    let rows = |group: &str, out: &mut Vec<u8>| {
        let mut p = StatPackets {
            out,
            h,
            value: String::new(),
        };
        stats_exec::stat_rows(shared, group, &mut p);
    };
    if group.is_empty() {
        rows("", out);
    } else if group.starts_with(b"reset") {
        let mut text = Vec::new();
        stats_exec::stats_command(shared, b"reset", &mut text);
    } else if group.starts_with(b"settings") {
        rows("settings", out);
    } else if let Some(sub) = group.strip_prefix(b"detail") {
        if sub.starts_with(b" dump") {
            let mut text = Vec::new();
            shared.observers.prefix.dump(&mut text);
            write_stat(out, h, b"detailed", &text);
        } else if sub.starts_with(b" on") {
            shared.observers.prefix.set_enabled(true);
        } else if sub.starts_with(b" off") {
            shared.observers.prefix.set_enabled(false);
        } else {
            return write_error(out, h, Status::KeyEnoent);
        }
    } else if let Ok(g @ ("items" | "slabs" | "sizes" | "latency")) = std::str::from_utf8(group) {
        rows(g, out);
    } else {
        return write_error(out, h, Status::KeyEnoent);
    }
    write_stat(out, h, &[], &[]);
}
