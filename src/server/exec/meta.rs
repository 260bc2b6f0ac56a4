//! Executes parsed meta commands (`mg ms md ma mn me`) against the store and writes
//! their replies the way memcached 1.6.18 does: return flags in request order, `q`
//! hiding only the nominal replies (`EN` of `mg`; `HD` of `ms`, `md`, `ma`), errors
//! always sent, and the stale-while-revalidate marks (`W` win, `X` stale, `Z` win
//! already sent) kept per item by the store. Each command tells what it did as an
//! `Op` (`super::observe`), which moves the counters as memcached's do: `mg` counts
//! `cmd_get`/`get_*` (or `cmd_touch`/`touch_hits` on a hit with `T`: kind `Gat`), `ms`
//! `cmd_set` and the `cas_*` outcomes, `md` `delete_*`, `ma` `incr_*`/`decr_*`, `me`
//! `cmd_meta`; and queues memcached's watch lines for them.

use crate::op::{OpKind, Outcome};
use crate::protocol::meta::{base64_encode, MetaKind, MetaRequest, SetMode, MAX_OPAQUE};
use crate::protocol::text::reply::{i64_dec, line, u64_dec};
use crate::server::flow::{Flow, ReplyRoom, Streamed};
use crate::server::observe::{miss_cause, store_outcome, Obs, Op};
use crate::server::shared::Shared;
use crate::store::item::{MARK_KEY_BINARY, MARK_STALE, MARK_WON};
use crate::store::{
    Delta, DeltaOutcome, Guard, MetaDelete, MetaUpdate, NewItem, Reply, ReplyValue, StoreOp,
    StoreOutcome,
};

const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";

/// Runs one meta command.
pub fn execute(
    req: &MetaRequest<'_>,
    shared: &Shared,
    obs: &Obs<'_>,
    out: &mut Vec<u8>,
    room: &mut ReplyRoom,
) -> Flow {
    match req.kind {
        MetaKind::Noop => out.extend_from_slice(b"MN\r\n"),
        MetaKind::Get => {
            get(req, shared, obs, out, room);
            if room.wait {
                return Flow::Suspend { keys_done: 0 };
            }
        }
        MetaKind::Set => set(req, shared, obs, out),
        MetaKind::Delete => delete(req, shared, obs, out),
        MetaKind::Arith => arith(req, shared, obs, out),
        MetaKind::Debug => debug(req, shared, obs, out),
    }
    Flow::Continue
}

/// ` k<key>`, base64-encoded and followed by ` b` when `binary`.
fn put_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64_encode(out, key);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// The ` O...` and ` k...` flags, in request order (replies without an item).
fn put_opaque_key(out: &mut Vec<u8>, req: &MetaRequest<'_>) {
    for w in req.flag_words() {
        match w[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(w);
            }
            b'k' => put_key(out, req.key(), req.flags.base64),
            _ => {}
        }
    }
}

fn opaque_too_long(req: &MetaRequest<'_>) -> bool {
    req.flag_words()
        .iter()
        .any(|w| w[0] == b'O' && w.len() > MAX_OPAQUE)
}

/// Remaining TTL as memcached prints it (`-1` for none; unsigned 32-bit arithmetic).
fn put_ttl(out: &mut Vec<u8>, exptime: u32, now: u32) {
    if exptime == 0 {
        out.extend_from_slice(b"-1");
    } else {
        u64_dec(out, u64::from(exptime.wrapping_sub(now)));
    }
}

fn get(
    req: &MetaRequest<'_>,
    shared: &Shared,
    obs: &Obs<'_>,
    out: &mut Vec<u8>,
    room: &mut ReplyRoom,
) {
    let f = &req.flags;
    let clock = &shared.clock;
    let now = clock.now();
    let ttl = f.ttl.map(|t| clock.realtime(t));
    let viv = f.vivify.map(|t| clock.realtime(t));
    let recache = f.recache.map(|t| clock.realtime(t));
    let bad_opaque = opaque_too_long(req);
    let mut ttl_set = false;
    // The hit's value length and class, and whether `N` created it.
    let mut found = (0, 0);
    let mut created = false;
    let key = req.key();
    // Only a reply with the value may stream it.
    let rule = if f.value {
        room.rule(out.len())
    } else {
        ReplyValue::COPY
    };
    let r = shared
        .store
        .meta_get_reply(key, viv.is_some(), rule, |it, streamed| {
            let mut up = MetaUpdate {
                exptime: None,
                marks: it.marks,
                bump: false,
            };
            let start = out.len();
            found = (it.value.len(), it.class);
            created = it.created;
            let mut exptime = it.exptime;
            let mut won = false;
            if f.value {
                out.extend_from_slice(b"VA ");
                u64_dec(out, it.value.len() as u64);
            } else {
                out.extend_from_slice(b"HD");
            }
            for w in req.flag_words() {
                match w[0] {
                    b'T' => {
                        ttl_set = true;
                        exptime = ttl.unwrap_or(0);
                        up.exptime = Some(exptime);
                    }
                    b'N' if it.created => {
                        exptime = viv.unwrap_or(0);
                        up.exptime = Some(exptime);
                        won = true;
                    }
                    b'R' if it.marks & MARK_WON == 0
                        && !it.created
                        && exptime != 0
                        && exptime < recache.unwrap_or(0) =>
                    {
                        won = true;
                    }
                    b's' => {
                        out.extend_from_slice(b" s");
                        u64_dec(out, it.value.len() as u64);
                    }
                    b't' => {
                        out.extend_from_slice(b" t");
                        put_ttl(out, exptime, now);
                    }
                    b'c' => {
                        out.extend_from_slice(b" c");
                        u64_dec(out, it.cas);
                    }
                    b'f' => {
                        out.extend_from_slice(b" f");
                        u64_dec(out, u64::from(it.flags));
                    }
                    b'l' => {
                        out.extend_from_slice(b" l");
                        u64_dec(out, u64::from(now.wrapping_sub(it.atime)));
                    }
                    b'h' => out.extend_from_slice(if it.fetched { b" h1" } else { b" h0" }),
                    b'O' => {
                        if w.len() > MAX_OPAQUE {
                            // As memcached: the flags before it have acted (a `T` has
                            // set the expiry); no bump, no win.
                            out.truncate(start);
                            line(out, OPAQUE_TOO_LONG);
                            return (false, up);
                        }
                        out.push(b' ');
                        out.extend_from_slice(w);
                    }
                    b'k' => put_key(out, it.key, it.marks & MARK_KEY_BINARY != 0),
                    _ => {}
                }
            }
            if it.marks & MARK_WON != 0 {
                out.extend_from_slice(b" Z");
            }
            if it.marks & MARK_STALE != 0 {
                out.extend_from_slice(b" X");
                if it.marks & MARK_WON == 0 {
                    won = true;
                }
            }
            if won {
                out.extend_from_slice(b" W");
                up.marks |= MARK_WON;
            }
            out.extend_from_slice(b"\r\n");
            if f.value && !streamed {
                out.extend_from_slice(it.value);
                out.extend_from_slice(b"\r\n");
            }
            up.bump = !f.no_bump;
            (true, up)
        });
    let r = match r {
        Ok(Reply::Wait) => {
            // Nothing done: the request runs again later.
            room.wait = true;
            return;
        }
        Ok(Reply::Done(written, lease)) => Ok((written, lease)),
        Err(m) => Err(m),
    };
    let r = r.map(|(written, lease)| {
        match lease {
            // The value follows from the store.
            Some(lease) if written => {
                room.streamed = Some(Streamed {
                    lease,
                    trailer: b"\r\n",
                })
            }
            Some(lease) => shared.store.end_lease(lease),
            None => {}
        }
        written
    });
    // A `T` that hit makes it a get-and-touch; a miss touched nothing.
    let kind = if ttl_set { OpKind::Gat } else { OpKind::Get };
    let mut done = Op::lookup(kind, key, r.map(|_| found));
    match r {
        Ok(false) => done.outcome = Outcome::Refused,
        Ok(true) if created => done.outcome = Outcome::Created,
        _ => {}
    }
    if ttl_set {
        done.exptime = f.ttl.unwrap_or(0);
    }
    obs.emit(done);
    if r.is_err() {
        if bad_opaque {
            line(out, OPAQUE_TOO_LONG);
        } else if !f.quiet {
            out.extend_from_slice(b"EN");
            put_opaque_key(out, req);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn set(req: &MetaRequest<'_>, shared: &Shared, obs: &Obs<'_>, out: &mut Vec<u8>) {
    let f = &req.flags;
    if req.bad_chunk {
        let set = OpKind::Store(StoreOp::Set);
        obs.emit(Op::new(set, req.key(), Outcome::Refused));
        line(out, "CLIENT_ERROR bad data chunk");
        return;
    }
    let (op, guard) = match (req.mode, f.cas) {
        (SetMode::Set | SetMode::Replace, Some(cas)) => (StoreOp::Cas(cas), 0),
        (SetMode::Set, None) => (StoreOp::Set, 0),
        (SetMode::Replace, None) => (StoreOp::Replace, 0),
        (SetMode::Add, _) => (StoreOp::Add, 0),
        (SetMode::Append, g) => (StoreOp::Append, g.unwrap_or(0)),
        (SetMode::Prepend, g) => (StoreOp::Prepend, g.unwrap_or(0)),
    };
    let invalidate = f.invalidate && matches!(op, StoreOp::Cas(_));
    // As memcached: append/prepend build a new item that does not keep the mark.
    let marks = if f.base64 && !matches!(op, StoreOp::Append | StoreOp::Prepend) {
        MARK_KEY_BINARY
    } else {
        0
    };
    let key = req.key();
    obs.before(key);
    let item = NewItem {
        marks,
        ..NewItem::new(f.client_flags, f.ttl.unwrap_or(0), req.data)
    };
    let (outcome, cas) = shared.store.store(
        op,
        key,
        item,
        Guard {
            cas: guard,
            invalidate,
        },
    );
    let done = Op::new(OpKind::Store(op), key, store_outcome(outcome));
    obs.emit(done.with_data(req.data, f.client_flags, f.ttl.unwrap_or(0)));
    let code: &[u8] = match outcome {
        StoreOutcome::Stored => {
            if f.quiet {
                return;
            }
            b"HD"
        }
        StoreOutcome::NotStored => b"NS",
        StoreOutcome::Exists => b"EX",
        StoreOutcome::NotFound => b"NF",
        StoreOutcome::TooLarge => {
            line(out, "SERVER_ERROR object too large for cache");
            return;
        }
        StoreOutcome::OutOfMemory => {
            line(out, "SERVER_ERROR out of memory storing object");
            return;
        }
    };
    out.extend_from_slice(code);
    for w in req.flag_words() {
        match w[0] {
            b'O' => {
                out.push(b' ');
                out.extend_from_slice(w);
            }
            b'k' => put_key(out, key, f.base64),
            b'c' => {
                out.extend_from_slice(b" c");
                u64_dec(out, cas);
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn delete(req: &MetaRequest<'_>, shared: &Shared, obs: &Obs<'_>, out: &mut Vec<u8>) {
    let f = &req.flags;
    let key = req.key();
    let invalidate = f.invalidate.then_some(f.ttl);
    obs.before(key);
    let r = shared.store.meta_delete(key, f.cas, invalidate);
    let outcome = match r {
        MetaDelete::Deleted => Outcome::Hit,
        MetaDelete::Invalidated => Outcome::Invalidated,
        MetaDelete::Exists => Outcome::Exists,
        MetaDelete::Miss(m) => Outcome::Miss(miss_cause(m)),
    };
    obs.emit(Op::new(OpKind::Delete, key, outcome));
    let code: &[u8] = match r {
        MetaDelete::Deleted | MetaDelete::Invalidated => {
            if f.quiet {
                return;
            }
            b"HD"
        }
        MetaDelete::Exists => b"EX",
        MetaDelete::Miss(_) => b"NF",
    };
    out.extend_from_slice(code);
    put_opaque_key(out, req);
    out.extend_from_slice(b"\r\n");
}

fn arith(req: &MetaRequest<'_>, shared: &Shared, obs: &Obs<'_>, out: &mut Vec<u8>) {
    let f = &req.flags;
    let key = req.key();
    let store = &shared.store;
    let clock = &shared.clock;
    let d = if req.incr {
        Delta::Incr(f.delta)
    } else {
        Delta::Decr(f.delta)
    };
    let kind = if req.incr { OpKind::Incr } else { OpKind::Decr };
    let done = |outcome: Outcome, amount: u64| {
        let mut op = Op::new(kind, key, outcome);
        op.amount = amount;
        obs.emit(op);
    };
    let bad_opaque = opaque_too_long(req);
    obs.before(key);
    let r = store.delta(key, d, f.cas.unwrap_or(0)).0;
    match r {
        DeltaOutcome::NotFound(_) if f.vivify.is_some() => {}
        _ => done(crate::server::observe::delta_outcome(&r), f.delta),
    }
    let (number, created) = match r {
        DeltaOutcome::Value(n) => (n, false),
        DeltaOutcome::NotFound(_) => {
            if f.vivify.is_some() {
                let mut digits = Vec::with_capacity(20);
                u64_dec(&mut digits, f.initial);
                let added = store
                    .store(StoreOp::Add, key, NewItem::new(0, 0, &digits), Guard::NONE)
                    .0;
                let created = added == StoreOutcome::Stored;
                let outcome = if created {
                    Outcome::Created
                } else {
                    store_outcome(added)
                };
                done(outcome, f.initial);
                match added {
                    StoreOutcome::Stored => (f.initial, true),
                    StoreOutcome::OutOfMemory | StoreOutcome::TooLarge => {
                        line(out, "SERVER_ERROR Out of memory allocating new item");
                        return;
                    }
                    _ => return no_item(req, out, b"NS", bad_opaque),
                }
            } else {
                return no_item(req, out, b"NF", bad_opaque);
            }
        }
        DeltaOutcome::Exists => return no_item(req, out, b"EX", bad_opaque),
        DeltaOutcome::NonNumeric => {
            line(
                out,
                "CLIENT_ERROR cannot increment or decrement non-numeric value",
            );
            return;
        }
        DeltaOutcome::OutOfMemory => {
            line(out, "SERVER_ERROR out of memory");
            return;
        }
    };
    let now = clock.now();
    let ttl = f.ttl.map(|t| clock.realtime(t));
    let viv = f.vivify.map(|t| clock.realtime(t));
    let mut digits = Vec::with_capacity(20);
    u64_dec(&mut digits, number);
    let mut reply = Vec::with_capacity(64);
    let r = store.meta_get(key, false, |it| {
        let mut up = MetaUpdate {
            exptime: None,
            marks: it.marks,
            bump: false,
        };
        let mut exptime = it.exptime;
        if f.value {
            reply.extend_from_slice(b"VA ");
            u64_dec(&mut reply, digits.len() as u64);
        } else {
            reply.extend_from_slice(b"HD");
        }
        for w in req.flag_words() {
            match w[0] {
                b'c' => {
                    reply.extend_from_slice(b" c");
                    u64_dec(&mut reply, it.cas);
                }
                b't' => {
                    reply.extend_from_slice(b" t");
                    put_ttl(&mut reply, exptime, now);
                }
                b'T' => {
                    exptime = ttl.unwrap_or(0);
                    up.exptime = Some(exptime);
                }
                b'N' if created => {
                    exptime = viv.unwrap_or(0);
                    up.exptime = Some(exptime);
                }
                b'O' => {
                    reply.push(b' ');
                    reply.extend_from_slice(w);
                }
                b'k' => put_key(&mut reply, key, f.base64),
                _ => {}
            }
        }
        ((), up)
    });
    if r.is_err() {
        // Gone between the change and the read-back (evicted or expired meanwhile).
        return no_item(req, out, b"NF", bad_opaque);
    }
    if bad_opaque {
        line(out, OPAQUE_TOO_LONG);
        return;
    }
    // As memcached: `q` hides a changed value's reply, not a created one's.
    if f.quiet && !created {
        return;
    }
    out.extend_from_slice(&reply);
    if f.value {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&digits);
    }
    out.extend_from_slice(b"\r\n");
}

/// A reply without an item: the code, then `O` and `k` flags.
fn no_item(req: &MetaRequest<'_>, out: &mut Vec<u8>, code: &[u8], bad_opaque: bool) {
    if bad_opaque {
        line(out, OPAQUE_TOO_LONG);
        return;
    }
    out.extend_from_slice(code);
    put_opaque_key(out, req);
    out.extend_from_slice(b"\r\n");
}

fn debug(req: &MetaRequest<'_>, shared: &Shared, obs: &Obs<'_>, out: &mut Vec<u8>) {
    let now = shared.clock.now();
    let r = shared.store.meta_get(req.key(), false, |it| {
        out.extend_from_slice(b"ME ");
        if it.marks & MARK_KEY_BINARY != 0 {
            base64_encode(out, it.key);
        } else {
            out.extend_from_slice(it.key);
        }
        out.extend_from_slice(b" exp=");
        if it.exptime == 0 {
            out.extend_from_slice(b"-1");
        } else {
            i64_dec(out, i64::from(now.wrapping_sub(it.exptime) as i32));
        }
        out.extend_from_slice(b" la=");
        u64_dec(out, u64::from(now.wrapping_sub(it.atime)));
        out.extend_from_slice(b" cas=");
        u64_dec(out, it.cas);
        out.extend_from_slice(if it.fetched {
            b" fetch=yes cls="
        } else {
            b" fetch=no cls="
        });
        u64_dec(out, it.class as u64);
        out.extend_from_slice(b" size=");
        u64_dec(out, it.size as u64);
        out.extend_from_slice(b"\r\n");
        let up = MetaUpdate {
            exptime: None,
            marks: it.marks,
            bump: false,
        };
        ((it.value.len(), it.class), up)
    });
    if r.is_err() {
        out.extend_from_slice(b"EN\r\n");
    }
    obs.emit(Op::lookup(OpKind::Inspect, req.key(), r));
}
