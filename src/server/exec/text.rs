//! Executes parsed text-protocol commands against the store and composes the replies
//! into the connection's write buffer. This is where a request touches memory: every
//! store call locks one shard for the duration of one item operation, and a value is
//! copied into the reply buffer under that lock.

use std::sync::atomic::Ordering;

use crate::op::{OpKind, Outcome};
use crate::protocol::cluster::{CLUSTER_KEY, LEGACY_KEY};
use crate::protocol::text::{
    reply as compose, Command, ConfigCmd, CrawlerCmd, DebugTimeArg, Keys, ShutdownMode,
};
use crate::server::admin::dump::Dump;
pub use crate::server::flow::{Flow, ReplyRoom, Streamed, PROTOCOL_VERSION};
use crate::server::observe::{delete_outcome, delta_outcome, outcome_of, store_outcome, Obs, Op};
use crate::server::shared::{Shared, StopReason};
use crate::server::stats::vlog;
use crate::store::{
    DeleteOutcome, Delta, DeltaOutcome, Guard, ItemRef, NewItem, Reply, StoreOutcome,
};

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
    /// Replies of earlier requests of this batch wait unsent (memcached's
    /// `resp_has_stack`): `metadump` and `watch` refuse to start then.
    pub pipelined: bool,
    /// Set by `lru_crawler metadump`: the connection streams this dump next.
    pub dump: Option<Dump>,
    /// Set by `watch`: the connection becomes a watcher of these event types.
    pub watch: Option<u16>,
    /// What the reply may hold before a value is streamed; the value a get leaves to
    /// stream (the get is then suspended after its key).
    pub room: ReplyRoom,
}

fn write_value(out: &mut Vec<u8>, it: &ItemRef<'_>, with_cas: bool) {
    compose::value(out, it.key, it.flags, it.value, with_cas.then_some(it.cas));
}

/// Runs one text command (see [`ExecCtx`] for what it gets and leaves).
pub fn execute(
    cmd: Command<'_>,
    shared: &Shared,
    obs: &Obs<'_>,
    out: &mut Vec<u8>,
    ctx: &mut ExecCtx,
) -> Flow {
    let more = Resume {
        skip: ctx.skip,
        out_cap: ctx.out_cap,
    };
    match cmd {
        Command::Get { keys, cas } => {
            retrieve(shared, obs, out, keys, None, cas, more, &mut ctx.room)
        }
        Command::Gat { exptime, keys, cas } => retrieve(
            shared,
            obs,
            out,
            keys,
            Some(exptime),
            cas,
            more,
            &mut ctx.room,
        ),
        cmd @ (Command::Store { .. }
        | Command::Delete { .. }
        | Command::Arith { .. }
        | Command::Touch { .. }
        | Command::FlushAll { .. }) => {
            update(cmd, shared, obs, out);
            Flow::Continue
        }
        cmd => admin(cmd, shared, out, ctx),
    }
}

/// The commands that change items (storage, delete, incr/decr, touch, `flush_all`):
/// memcached's lookup line first ([`Obs::before`]), the store call, the `Op`, the reply.
#[inline(always)]
fn update(cmd: Command<'_>, shared: &Shared, obs: &Obs<'_>, out: &mut Vec<u8>) {
    let store = &shared.store;
    match cmd {
        Command::Store {
            cmd: op,
            key,
            flags,
            exptime,
            data,
            noreply,
        } => {
            obs.before(key);
            let (outcome, _) =
                store.store(op, key, NewItem::new(flags, exptime, data), Guard::NONE);
            let done = Op::new(OpKind::Store(op), key, store_outcome(outcome));
            obs.emit(done.with_data(data, flags, exptime));
            let text = match outcome {
                StoreOutcome::Stored => "STORED",
                StoreOutcome::NotStored => "NOT_STORED",
                StoreOutcome::Exists => "EXISTS",
                StoreOutcome::NotFound => "NOT_FOUND",
                // On these two the store has removed the old value of a `set`.
                StoreOutcome::TooLarge => "SERVER_ERROR object too large for cache",
                StoreOutcome::OutOfMemory => "SERVER_ERROR out of memory storing object",
            };
            reply(out, noreply, text);
        }
        Command::Delete { key, noreply } => {
            obs.before(key);
            let r = store.delete(key, 0);
            obs.emit(Op::new(OpKind::Delete, key, delete_outcome(r)));
            reply(
                out,
                noreply,
                if r == DeleteOutcome::Deleted {
                    "DELETED"
                } else {
                    "NOT_FOUND"
                },
            );
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
            let kind = if incr { OpKind::Incr } else { OpKind::Decr };
            obs.before(key);
            let r = store.delta(key, d, 0).0;
            let mut done = Op::new(kind, key, delta_outcome(&r));
            done.amount = delta;
            obs.emit(done);
            match r {
                DeltaOutcome::Value(v) => {
                    if vlog::on() {
                        vlog::reply(&v.to_string(), noreply);
                    }
                    if !noreply {
                        compose::number(out, v);
                    }
                }
                DeltaOutcome::NotFound(_) => reply(out, noreply, "NOT_FOUND"),
                DeltaOutcome::NonNumeric => reply(
                    out,
                    noreply,
                    "CLIENT_ERROR cannot increment or decrement non-numeric value",
                ),
                DeltaOutcome::OutOfMemory => reply(out, noreply, "SERVER_ERROR out of memory"),
                // Text incr/decr carry no CAS guard.
                DeltaOutcome::Exists => reply(out, noreply, "EXISTS"),
            }
        }
        Command::Touch {
            key,
            exptime,
            noreply,
        } => {
            obs.before(key);
            let r = store.touch(key, exptime);
            let mut done = Op::new(OpKind::Touch, key, outcome_of(r));
            done.exptime = exptime;
            obs.emit(done);
            reply(
                out,
                noreply,
                if r.is_ok() { "TOUCHED" } else { "NOT_FOUND" },
            );
        }
        Command::FlushAll { delay, noreply } => {
            // memcached counts a refused flush_all too.
            let done = match delay {
                _ if shared.config.disable_flush_all => Outcome::Refused,
                Some(_) => Outcome::Hit,
                None => Outcome::Refused,
            };
            let mut flush = Op::new(OpKind::Flush, b"", done);
            flush.exptime = delay.unwrap_or(0).max(0);
            obs.emit(flush);
            if shared.config.disable_flush_all {
                reply(out, noreply, "CLIENT_ERROR flush_all not allowed");
                return;
            }
            match delay {
                Some(d) => {
                    store.flush_all(d.max(0));
                    reply(out, noreply, "OK");
                }
                None => reply(out, noreply, "CLIENT_ERROR invalid exptime argument"),
            }
        }
        // Lookups and the other commands are served by `retrieve` and `admin`.
        _ => {}
    }
}

/// The commands about the server rather than items: `version`, `verbosity`, `quit`,
/// certificates, `shutdown`, `cache_memlimit`, `config`, `stats`, `snapshot`,
/// `debugtime`, `slabs automove`, `lru_crawler`, `watch`.
#[inline(never)]
fn admin(cmd: Command<'_>, shared: &Shared, out: &mut Vec<u8>, ctx: &mut ExecCtx) -> Flow {
    let store = &shared.store;
    match cmd {
        Command::Version => {
            if vlog::on() {
                vlog::reply(&format!("VERSION {PROTOCOL_VERSION}"), false);
            }
            compose::version(out, PROTOCOL_VERSION);
            Flow::Continue
        }
        Command::Verbosity { level, noreply } => {
            // memcached caps the level at 2 (-vv) here, whatever -v said.
            let level = level.min(2);
            shared.observers.verbosity.store(level, Ordering::Relaxed);
            crate::config::Config::set_runtime_verbosity(level);
            reply(out, noreply, "OK");
            Flow::Continue
        }
        Command::Quit => Flow::Close,
        Command::RefreshCerts { noreply } => {
            match &shared.credentials.tls {
                None => line(out, crate::protocol::frame::errors::TLS_NOT_ENABLED),
                Some(tls) => match tls.refresh(shared.clock.now()) {
                    Ok(()) => reply(out, noreply, "OK"),
                    Err(e) => {
                        log::warn!("refresh_certs: {e}; keeping the certificates loaded before");
                        line(out, &e);
                    }
                },
            }
            Flow::Continue
        }
        Command::Shutdown { mode } => {
            if !shared.config.enable_shutdown {
                line(out, "ERROR: shutdown not enabled");
                return Flow::Continue;
            }
            if mode == ShutdownMode::Invalid {
                line(out, "CLIENT_ERROR invalid shutdown mode");
                return Flow::Continue;
            }
            // Graceful and immediate both stop cleanly: buffered replies are sent; they
            // differ in what is printed, as memcached's SIGUSR1 and SIGINT do.
            shared.request_stop(if mode == ShutdownMode::Graceful {
                StopReason::GracefulCommand
            } else {
                StopReason::Command
            });
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
        Command::Config(cmd) => {
            config_command(shared, cmd, out);
            Flow::Continue
        }
        Command::Stats { args } => {
            crate::server::stats::rows::stats_command(shared, args, out);
            Flow::Continue
        }
        Command::Snapshot { name, bad } => {
            let text = if bad {
                "ERROR".to_string()
            } else {
                crate::server::admin::snapshot::command(shared.snapshot(), name)
            };
            line(out, &text);
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
                shared.admin.slab_automove.store(l, Ordering::Relaxed);
            }
            if let Some(r) = ratio {
                shared
                    .admin
                    .slab_automove_ratio
                    .store(r.to_bits(), Ordering::Relaxed);
            }
            reply(out, noreply, "OK");
            Flow::Continue
        }
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
        // Served by `retrieve` and `update`.
        _ => Flow::Continue,
    }
}

/// `lru_crawler ...`, answered as memcached 1.6.18 does.
fn lru_crawler(shared: &Shared, sub: CrawlerCmd<'_>, out: &mut Vec<u8>, ctx: &mut ExecCtx) {
    let crawler = &shared.admin.crawler;
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
}

/// get / gets / gat / gats.
/// `config get|set|delete <key>` (ElastiCache's auto discovery, [`crate::server::admin::cluster`]).
fn config_command(shared: &Shared, cmd: ConfigCmd<'_>, out: &mut Vec<u8>) {
    let cluster = &shared.admin.cluster;
    match cmd {
        ConfigCmd::Get { key } => {
            cluster.gets.fetch_add(1, Ordering::Relaxed);
            if key == CLUSTER_KEY {
                if let Some(p) = cluster.current() {
                    vlog::reply("CONFIG cluster", false);
                    out.extend_from_slice(b"CONFIG cluster 0 ");
                    out.extend_from_slice(p.payload.len().to_string().as_bytes());
                    out.extend_from_slice(b"\r\n");
                    out.extend_from_slice(&p.payload);
                    out.extend_from_slice(b"\r\n");
                }
            }
            reply(out, false, "END");
        }
        ConfigCmd::Set {
            key, data, noreply, ..
        } => {
            if key != CLUSTER_KEY {
                reply(
                    out,
                    noreply,
                    crate::server::admin::cluster::replies::UNKNOWN_KEY,
                );
                return;
            }
            match cluster.set(data) {
                Ok(v) => {
                    log::info!("config set cluster: version {v}");
                    reply(out, noreply, "STORED");
                }
                Err(r) => reply(out, noreply, r.reply()),
            }
        }
        ConfigCmd::Delete { key, noreply } => {
            if key != CLUSTER_KEY {
                reply(out, noreply, "NOT_FOUND");
                return;
            }
            match cluster.delete() {
                Ok(true) => reply(out, noreply, "DELETED"),
                Ok(false) => reply(out, noreply, "NOT_FOUND"),
                Err(r) => reply(out, noreply, r.reply()),
            }
        }
    }
}

/// The legacy form of `config get cluster` (ElastiCache engines before 1.4.14): the
/// configuration as the value of `AmazonElastiCache:cluster`, when one is stored (else
/// the key is an ordinary key).
#[inline]
fn legacy_cluster_get(shared: &Shared, key: &[u8], out: &mut Vec<u8>) -> bool {
    if key.len() != LEGACY_KEY.len() || key != LEGACY_KEY {
        return false;
    }
    let Some(p) = shared.admin.cluster.current() else {
        return false;
    };
    shared.admin.cluster.gets.fetch_add(1, Ordering::Relaxed);
    compose::value(out, key, 0, &p.payload, None);
    true
}

#[allow(clippy::too_many_arguments)]
fn retrieve(
    shared: &Shared,
    obs: &Obs<'_>,
    out: &mut Vec<u8>,
    keys: Keys<'_>,
    touch: Option<i64>,
    with_cas: bool,
    Resume { skip, out_cap }: Resume,
    room: &mut ReplyRoom,
) -> Flow {
    let store = &shared.store;
    let watching = obs.fetchers();
    let kind = if touch.is_some() {
        OpKind::Gat
    } else {
        OpKind::Get
    };
    for (i, key) in keys.enumerate().skip(skip) {
        if i > skip && out.len() > out_cap {
            return Flow::Suspend { keys_done: i };
        }
        if legacy_cluster_get(shared, key, out) {
            continue;
        }
        let hit = |it: &ItemRef<'_>, streamed: bool, out: &mut Vec<u8>| {
            if streamed {
                let cas = with_cas.then_some(it.cas);
                compose::value_header(out, it.key, it.flags, it.value.len(), cas);
            } else {
                write_value(out, it, with_cas);
            }
            let class = if watching { store.class_of(it) } else { 0 };
            (it.value.len(), class)
        };
        let r = store.get_reply(key, touch, room.rule(out.len()), |it, streamed| {
            hit(it, streamed, out)
        });
        let (r, lease) = match r {
            Ok(Reply::Done(w, lease)) => (Ok(w), lease),
            Ok(Reply::Wait) => {
                // Nothing done for this key: run again from it.
                room.wait = true;
                return Flow::Suspend { keys_done: i };
            }
            Err(m) => (Err(m), None),
        };
        // Observed (counted, watched, `-vv` logged) once the shard lock is released.
        let mut done = Op::lookup(kind, key, r);
        done.exptime = touch.unwrap_or(0);
        obs.emit(done);
        if let Some(lease) = lease {
            // The value follows from the store; the next keys after it.
            room.streamed = Some(Streamed {
                lease,
                trailer: b"\r\n",
            });
            return Flow::Suspend { keys_done: i + 1 };
        }
    }
    vlog::reply("END", false);
    out.extend_from_slice(b"END\r\n");
    Flow::Continue
}
