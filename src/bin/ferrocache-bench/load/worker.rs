//! A client thread of the engine: its connections on one mio `Poll`, requests
//! batched one write per connection per wake-up, replies parsed in place.

use super::config::*;
use crate::hist::Hist;
pub use crate::stream::{Established, Stream};
use crate::tls::TlsStream;
use crate::wire::{self, ReqKind};
use crate::zipf::{KeyChooser, Rng};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// State shared by the client threads and the coordinating thread.
pub(crate) struct Shared {
    /// Measured latencies so far (workers merge their local histogram periodically).
    pub(crate) hist: Mutex<Hist>,
    /// Errors so far.
    pub(crate) errors: Mutex<(u64, Option<String>)>,
    /// Set to stop every worker now.
    pub(crate) stop: AtomicBool,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            hist: Mutex::new(Hist::new()),
            errors: Mutex::new((0, None)),
            stop: AtomicBool::new(false),
        }
    }

    pub(crate) fn error(&self, e: String) {
        let mut g = self.errors.lock();
        g.0 += 1;
        if g.1.is_none() {
            g.1 = Some(e);
        }
    }
}

/// Per-worker totals.
#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) end: Option<Instant>,
}

/// One busy connection.
pub(super) struct Conn<S> {
    pub(super) stream: S,
    /// Pending output and how much of it has been written.
    pub(super) out: Vec<u8>,
    pub(super) out_pos: usize,
    /// Input buffer (always fully initialised) and the unparsed range.
    pub(super) inb: Vec<u8>,
    pub(super) in_start: usize,
    pub(super) in_end: usize,
    /// Requests in flight: when each was queued, and its kind.
    pub(super) inflight: VecDeque<(Instant, ReqKind)>,
    pub(super) dead: bool,
}

pub(super) struct Worker {
    pub(super) cfg: LoadConfig,
    pub(super) chooser: Arc<KeyChooser>,
    pub(super) shared: Arc<Shared>,
    pub(super) rng: Rng,
    pub(super) measure_start: Instant,
    pub(super) deadline: Instant,
    pub(super) quota: Option<u64>,
}

/// Why a connection failed.
pub(super) type ConnErr = String;

impl Worker {
    pub(super) fn run(mut self, streams: Vec<Established>) -> Totals {
        let mut totals = Totals::default();
        let r = if self.cfg.tls.is_some() {
            self.run_inner::<TlsStream>(streams, &mut totals)
        } else {
            self.run_inner::<TcpStream>(streams, &mut totals)
        };
        if let Err(e) = r {
            self.shared.error(e);
        }
        totals
    }

    pub(super) fn run_inner<S: Stream>(
        &mut self,
        streams: Vec<Established>,
        totals: &mut Totals,
    ) -> Result<(), String> {
        let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let mut conns = Vec::with_capacity(streams.len());
        for (i, s) in streams.into_iter().enumerate() {
            let mut stream = S::from_established(s)?;
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("register: {e}"))?;
            conns.push(Conn {
                stream,
                out: Vec::with_capacity(64 << 10),
                out_pos: 0,
                inb: vec![0; (64 << 10).max(2 * self.cfg.value_max + 1024)],
                in_start: 0,
                in_end: 0,
                inflight: VecDeque::with_capacity(self.cfg.pipeline),
                dead: false,
            });
        }
        let values = value_source(self.cfg.value_max);
        let get_threshold = if self.cfg.get_ratio >= 1.0 {
            u64::MAX
        } else {
            (self.cfg.get_ratio * u64::MAX as f64) as u64
        };
        let mut local = Hist::new();
        let mut measuring = false;
        let mut measured_done: u64 = 0;
        let mut inflight_total: u64 = 0;
        let mut last_publish = Instant::now();
        let mut ids = vec![0u64; self.cfg.multiget as usize];
        let mut events = Events::with_capacity(1024);
        let mut now = Instant::now();

        // Fill every pipeline.
        for c in conns.iter_mut() {
            self.refill(
                c,
                now,
                &values,
                get_threshold,
                &mut ids,
                measured_done,
                &mut inflight_total,
            );
            if let Err(e) = flush(c) {
                self.kill(c, &mut inflight_total, e);
            }
        }

        loop {
            now = Instant::now();
            if !measuring && now >= self.measure_start {
                measuring = true;
                local.clear();
                totals.hits = 0;
                totals.misses = 0;
            }
            if now >= self.deadline || self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            if inflight_total == 0 {
                // Quota reached (or every connection dead).
                break;
            }
            if now.duration_since(last_publish) >= Duration::from_millis(200) {
                if measuring {
                    self.shared.hist.lock().merge(&local);
                    local.clear();
                }
                last_publish = now;
            }
            let timeout = self
                .deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("poll: {e}"));
            }
            now = Instant::now();
            for ev in events.iter() {
                let Some(c) = conns.get_mut(ev.token().0) else {
                    continue;
                };
                if c.dead {
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    let r = self.read_replies(
                        c,
                        now,
                        measuring,
                        &mut local,
                        totals,
                        &mut measured_done,
                        &mut inflight_total,
                    );
                    if let Err(e) = r {
                        self.kill(c, &mut inflight_total, e);
                        continue;
                    }
                    self.refill(
                        c,
                        now,
                        &values,
                        get_threshold,
                        &mut ids,
                        measured_done,
                        &mut inflight_total,
                    );
                }
                if c.out_pos < c.out.len() || c.stream.pending_output() {
                    if let Err(e) = flush(c) {
                        self.kill(c, &mut inflight_total, e);
                    }
                }
            }
        }
        totals.end = Some(now.min(self.deadline));
        if measuring {
            self.shared.hist.lock().merge(&local);
        }
        Ok(())
    }

    pub(super) fn kill<S>(&self, c: &mut Conn<S>, inflight_total: &mut u64, e: ConnErr) {
        c.dead = true;
        *inflight_total -= c.inflight.len() as u64;
        c.inflight.clear();
        self.shared.error(e);
    }

    /// Tops the connection's pipeline up with new requests (unless the quota is used).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn refill<S>(
        &mut self,
        c: &mut Conn<S>,
        now: Instant,
        values: &[u8],
        get_threshold: u64,
        ids: &mut [u64],
        measured_done: u64,
        inflight_total: &mut u64,
    ) {
        if c.dead {
            return;
        }
        if c.out_pos == c.out.len() {
            c.out.clear();
            c.out_pos = 0;
        }
        while c.inflight.len() < self.cfg.pipeline {
            if let Some(q) = self.quota {
                if measured_done + *inflight_total >= q {
                    return;
                }
            }
            let kind = if get_threshold == u64::MAX || self.rng.next_u64() < get_threshold {
                for id in ids.iter_mut() {
                    *id = self.chooser.sample(&mut self.rng);
                }
                wire::push_get(&mut c.out, self.cfg.protocol, ids);
                ReqKind::Get(ids.len() as u16)
            } else {
                let id = self.chooser.sample(&mut self.rng);
                let n = value_len(&self.cfg, &mut self.rng);
                wire::push_set(&mut c.out, self.cfg.protocol, id, &values[..n]);
                ReqKind::Set
            };
            c.inflight.push_back((now, kind));
            *inflight_total += 1;
        }
    }

    /// Reads what is available and completes the replies it holds.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_replies<S: Stream>(
        &self,
        c: &mut Conn<S>,
        now: Instant,
        measuring: bool,
        local: &mut Hist,
        totals: &mut Totals,
        measured_done: &mut u64,
        inflight_total: &mut u64,
    ) -> Result<(), ConnErr> {
        loop {
            if c.in_end == c.inb.len() {
                if c.in_start > 0 {
                    c.inb.copy_within(c.in_start..c.in_end, 0);
                    c.in_end -= c.in_start;
                    c.in_start = 0;
                } else {
                    let n = c.inb.len() * 2;
                    c.inb.resize(n, 0);
                }
            }
            let (n, more) = match c.stream.read_some(&mut c.inb[c.in_end..]) {
                Ok((0, _)) => return Err("server closed a connection".into()),
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            c.in_end += n;
            // Parse what arrived.
            while let Some(&(sent, kind)) = c.inflight.front() {
                let buf = &c.inb[c.in_start..c.in_end];
                match wire::parse_reply(self.cfg.protocol, kind, buf)? {
                    None => break,
                    Some(r) => {
                        c.in_start += r.len;
                        c.inflight.pop_front();
                        *inflight_total -= 1;
                        if measuring {
                            local.record(now.saturating_duration_since(sent).as_nanos() as u64);
                            totals.hits += r.hits as u64;
                            totals.misses += r.misses as u64;
                            *measured_done += 1;
                        }
                    }
                }
            }
            if c.inflight.is_empty() && c.in_start < c.in_end {
                return Err("unexpected bytes after the last reply".into());
            }
            if c.in_start == c.in_end {
                c.in_start = 0;
                c.in_end = 0;
            }
            // A short read drained the socket; epoll (edge-triggered) reports new data.
            if !more {
                break;
            }
        }
        Ok(())
    }
}

/// Writes pending output until done or the socket is full.
pub(super) fn flush<S: Stream>(c: &mut Conn<S>) -> Result<(), ConnErr> {
    while c.out_pos < c.out.len() {
        match c.stream.write_some(&c.out[c.out_pos..]) {
            Ok(0) => return Err("write returned 0".into()),
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    c.out.clear();
    c.out_pos = 0;
    if c.stream.pending_output() {
        c.stream
            .flush_pending()
            .map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}
