//! The two streams a request can turn a session into: an `lru_crawler metadump`
//! produced a batch at a time while few reply bytes wait ([`DUMP_LOW`]), and `watch`,
//! after which the input is dropped and queued log lines are the only output.

use super::Session;
use crate::server::admin::dump::DUMP_LOW;
use crate::server::admin::watch::WatchHandle;
use crate::server::session::turn::{Ctx, Stop, TURN_BYTES};
use crate::server::shared::Shared;
use crate::server::stats::vlog;

/// Log lines a watcher's connection moves from its queue to its reply buffer at once.
const WATCH_OUT: usize = 64 << 10;

impl Session {
    /// The session has become a watcher: its input is dropped, its output is the
    /// queued log lines ([`Session::fill_watch`]).
    pub fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    /// A watcher's turn: moves queued log lines into the output (its input is
    /// dropped: memcached never reads a watcher's requests). True when the queue is
    /// empty.
    pub fn fill_watch(&mut self) -> bool {
        self.drop_input();
        self.drop_sent();
        if self.wbuf.is_empty() && self.wbuf.capacity() > WATCH_OUT * 2 {
            self.wbuf = Vec::new();
        }
        match &self.watch {
            Some(h) => h.watcher.drain_into(&mut self.wbuf, WATCH_OUT),
            None => true,
        }
    }

    /// Produces the dump being streamed while few reply bytes wait; `None` once it
    /// is complete (the next requests are served), else why to stop now.
    pub(super) fn pump_dump(&mut self, shared: &Shared) -> Option<Stop> {
        let started = shared.clock.process_started();
        let cas_on = !shared.config.disable_cas;
        loop {
            if self.wbuf.len() >= DUMP_LOW {
                return Some(Stop::WaitWritable);
            }
            if self.turn_out >= TURN_BYTES {
                // Others get their turn; the worker comes back.
                return Some(Stop::Yield);
            }
            let d = self.dump.as_mut()?;
            if d.step(&shared.store, started, cas_on, &mut self.wbuf) {
                self.dump = None;
                self.unflushed = true;
                return None;
            }
        }
    }

    /// `watch` accepted: registers the watcher (or says why not). Input after the
    /// request is dropped, as memcached never reads a watcher's requests.
    pub(super) fn start_watch(&mut self, flags: u16, ctx: &Ctx<'_>) -> Stop {
        let hub = &ctx.shared.observers.watch;
        match hub.add(flags, ctx.waker.clone()) {
            Ok(w) => {
                self.wbuf.extend_from_slice(b"OK\r\n");
                self.watch = Some(WatchHandle::new(hub.clone(), w));
                self.rpos = self.rend;
                self.swallow = 0;
                Stop::Yield
            }
            Err(_) => {
                let r = "WATCHER_TOO_MANY log watcher limit reached";
                vlog::reply(r, false);
                self.wbuf.extend_from_slice(r.as_bytes());
                self.wbuf.extend_from_slice(b"\r\n");
                Stop::Blocked
            }
        }
    }
}
