//! The real clients: the project's cluster client over text, binary and meta.

use super::state::*;
use super::values::*;
use crate::zipf::{KeyChooser, Rng};
use ferrocache::client::{Client, ClientConfig, Error as ClientError, Protocol};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One real-client thread: its client, random state and expectations.
pub(super) struct Worker<'s> {
    pub(super) sh: &'s Shared<'s>,
    pub(super) name: &'static str,
    pub(super) client: Client,
    pub(super) keys: &'s KeyChooser,
    pub(super) rng: Rng,
    /// Last value seen of each of this thread's counters (None: unknown/missing).
    pub(super) counters: [Option<u64>; COUNTERS],
    /// Keys stored with a 1 s TTL, and when to check that they are gone.
    pub(super) expiring: VecDeque<(Vec<u8>, Instant)>,
    pub(super) expiring_seq: u64,
    /// Node failures already reported (the client's node counters count them too).
    pub(super) seen_node_failures: u64,
    pub(super) scratch: Vec<u8>,
    pub(super) value: Vec<u8>,
    pub(super) meta: bool,
}

pub(super) fn client_thread(
    sh: &Shared,
    name: &'static str,
    protocol: Protocol,
    seed: u64,
    keys: &KeyChooser,
) {
    // One connection at most (one thread, one idle slot): counted for the whole run.
    let _held = Held::new(sh);
    let mut cfg = match ClientConfig::new(&sh.addr.to_string()) {
        Ok(c) => c,
        Err(e) => return sh.fail(Fail::Error, name, format!("client config: {e}")),
    };
    cfg.conn.protocol = protocol;
    cfg.conn.connect_timeout = IO_TIMEOUT;
    cfg.conn.io_timeout = IO_TIMEOUT;
    cfg.max_idle_per_node = 1;
    // Never eject the only node: every failure is reported once, as itself.
    cfg.failure_limit = u32::MAX;
    cfg.retry_timeout = Duration::from_millis(100);
    let client = match Client::new(cfg) {
        Ok(c) => c,
        Err(e) => return sh.fail(Fail::Error, name, format!("client: {e}")),
    };
    let mut w = Worker {
        sh,
        name,
        client,
        keys,
        rng: Rng::new(seed),
        counters: [None; COUNTERS],
        expiring: VecDeque::new(),
        expiring_seq: 0,
        seen_node_failures: 0,
        scratch: Vec::with_capacity(MAX_VALUE),
        value: Vec::with_capacity(MAX_VALUE),
        meta: protocol == Protocol::Meta,
    };
    let mut n = 0u64;
    // Pacing: 32 operations per step of 32 / CLIENT_RATE seconds; a client that fell
    // behind (a slow server) does not catch up in a burst.
    let step = Duration::from_secs(32) / CLIENT_RATE;
    let mut next = Instant::now() + step;
    while sh.running() {
        w.op();
        n += 1;
        if n % 200 == 0 {
            w.start_expiry_probe();
        }
        if n % 64 == 0 {
            w.check_expired();
            w.check_absorbed_failures();
        }
        if n % 32 == 0 {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_millis(100) {
                next = now;
            }
            next += step;
        }
    }
    w.check_absorbed_failures();
}

impl Worker<'_> {
    pub(super) fn op(&mut self) {
        match self.rng.below(100) {
            0..=54 => self.cache_aside_get(),
            55..=64 => self.multi_get(),
            65..=79 => self.set(),
            80..=85 => self.delete(),
            86..=95 => self.counter(),
            _ if self.meta => self.meta_cache_aside(),
            _ => self.touch(),
        }
    }

    pub(super) fn error(&mut self, op: &str, key: &[u8], e: ClientError) {
        if e.is_node_failure() {
            self.seen_node_failures += 1;
        }
        self.sh
            .fail(Fail::Error, self.name, format!("{op} {}: {e}", show(key)));
    }

    pub(super) fn corrupt(&self, op: &str, msg: String) {
        self.sh
            .fail(Fail::Corrupt, self.name, format!("{op}: {msg}"));
    }

    pub(super) fn ttl(&mut self) -> u32 {
        if self.rng.below(2) == 0 {
            0
        } else {
            1 + self.rng.below(5) as u32
        }
    }

    pub(super) fn zipf_key(&mut self) -> Vec<u8> {
        key_of(self.keys.sample(&mut self.rng))
    }

    /// A new encoded value for `key` in `self.value`; returns its flags.
    pub(super) fn fill_value(&mut self, key: &[u8]) -> u32 {
        let len = value_len(&mut self.rng);
        make_value(key, len, &mut self.rng, &mut self.scratch, &mut self.value)
    }

    /// get; on a miss, "load" and set.
    pub(super) fn cache_aside_get(&mut self) {
        let key = self.zipf_key();
        self.sh.add(&self.sh.ops, 1);
        match self.client.get(&key) {
            Ok(Some(item)) => {
                self.sh.add(&self.sh.hits, 1);
                if let Err(m) = verify(&key, &item.value, Some(item.flags)) {
                    self.corrupt("get", m);
                }
            }
            Ok(None) => {
                self.sh.add(&self.sh.misses, 1);
                let flags = self.fill_value(&key);
                let ttl = self.ttl();
                self.sh.add(&self.sh.ops, 1);
                if let Err(e) = self.client.set(&key, &self.value, flags, ttl) {
                    self.error("set (after a miss)", &key, e);
                }
            }
            Err(e) => self.error("get", &key, e),
        }
    }

    pub(super) fn multi_get(&mut self) {
        let n = 10 + self.rng.below(41);
        let mut keys: Vec<Vec<u8>> = (0..n).map(|_| self.zipf_key()).collect();
        keys.sort_unstable();
        keys.dedup();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        self.sh.add(&self.sh.ops, 1);
        match self.client.get_many(&refs) {
            Ok(found) => {
                for (k, item) in &found {
                    if keys.binary_search(k).is_err() {
                        self.corrupt(
                            "get_many",
                            format!("answered key {} that was not asked for", show(k)),
                        );
                    } else if let Err(m) = verify(k, &item.value, Some(item.flags)) {
                        self.corrupt("get_many", m);
                    }
                }
                self.sh.add(&self.sh.hits, found.len() as u64);
                self.sh.add(
                    &self.sh.misses,
                    keys.len().saturating_sub(found.len()) as u64,
                );
            }
            Err(e) => {
                let first = keys.first().cloned().unwrap_or_default();
                self.error(&format!("get_many of {} keys from", keys.len()), &first, e);
            }
        }
    }

    pub(super) fn set(&mut self) {
        let key = self.zipf_key();
        let flags = self.fill_value(&key);
        let ttl = self.ttl();
        self.sh.add(&self.sh.ops, 1);
        if let Err(e) = self.client.set(&key, &self.value, flags, ttl) {
            self.error("set", &key, e);
        }
    }

    pub(super) fn delete(&mut self) {
        let key = self.zipf_key();
        self.sh.add(&self.sh.ops, 1);
        if let Err(e) = self.client.delete(&key) {
            self.error("delete", &key, e);
        }
    }

    pub(super) fn touch(&mut self) {
        let key = self.zipf_key();
        let ttl = self.ttl();
        self.sh.add(&self.sh.ops, 1);
        if let Err(e) = self.client.touch(&key, ttl) {
            self.error("touch", &key, e);
        }
    }

    /// incr or decr one of this thread's counters and check the result against the
    /// last value seen: only this thread writes these keys.
    pub(super) fn counter(&mut self) {
        let i = self.rng.below(COUNTERS as u64) as usize;
        let key = format!("c:{}:{i}", self.name).into_bytes();
        let delta = 1 + self.rng.below(9);
        let incr = self.rng.below(2) == 0;
        self.sh.add(&self.sh.ops, 1);
        let r = if incr {
            self.client.incr(&key, delta)
        } else {
            self.client.decr(&key, delta)
        };
        match r {
            Ok(Some(v)) => {
                if let Some(last) = self.counters[i] {
                    let want = if incr {
                        last.wrapping_add(delta)
                    } else {
                        last.saturating_sub(delta)
                    };
                    if v != want {
                        self.corrupt(
                            if incr { "incr" } else { "decr" },
                            format!(
                                "counter {} was {last}, {} {delta} answered {v} (expected {want})",
                                show(&key),
                                if incr { "+" } else { "-" }
                            ),
                        );
                    }
                }
                self.counters[i] = Some(v);
            }
            Ok(None) => {
                // Evicted, flushed or never created: start it again.
                self.counters[i] = None;
                self.sh.add(&self.sh.ops, 1);
                let start = COUNTER_START.to_string();
                match self.client.add(&key, start.as_bytes(), 0, 0) {
                    Ok(true) => self.counters[i] = Some(COUNTER_START),
                    Ok(false) => self.sh.fail(
                        Fail::Error,
                        self.name,
                        format!(
                            "add {}: NOT_STORED right after NOT_FOUND, and nobody else writes it",
                            show(&key)
                        ),
                    ),
                    Err(e) => self.error("add", &key, e),
                }
            }
            Err(e) => {
                self.counters[i] = None;
                self.error(if incr { "incr" } else { "decr" }, &key, e);
            }
        }
    }

    /// Over meta: stampede-safe cache-aside (`mg N R`, `ms C`) and `md I` on keys only
    /// this thread uses (plain gets would read its placeholders as empty values).
    pub(super) fn meta_cache_aside(&mut self) {
        let key = format!("m:{}", self.rng.below(2000)).into_bytes();
        self.sh.add(&self.sh.ops, 1);
        if self.rng.below(10) == 0 {
            if let Err(e) = self.client.cache_aside(2).mark_stale(&key) {
                self.error("md I", &key, e);
            }
            return;
        }
        let len = value_len(&mut self.rng);
        let (rng, scratch, value) = (&mut self.rng, &mut self.scratch, &mut self.value);
        let loaded = self
            .client
            .cache_aside(2)
            .recache_window(1)
            .flags(META_FLAGS)
            .wait_for_winner(Duration::from_millis(200))
            .get_or_load(&key, || -> Result<Option<Vec<u8>>, String> {
                make_value(&key, len, rng, scratch, value);
                Ok(Some(value.clone()))
            });
        match loaded {
            Ok(Some(v)) => {
                if let Err(m) = verify(&key, &v, None) {
                    self.corrupt("cache-aside (meta)", m);
                }
            }
            Ok(None) => self.corrupt(
                "cache-aside (meta)",
                format!("{}: no value, though the loader always has one", show(&key)),
            ),
            Err(e) => self
                .sh
                .fail(Fail::Error, self.name, format!("cache-aside: {e}")),
        }
    }

    /// Stores a key with a 1 s TTL that nobody writes again; it is checked later.
    pub(super) fn start_expiry_probe(&mut self) {
        self.expiring_seq += 1;
        let key = format!("x:{}:{}", self.name, self.expiring_seq).into_bytes();
        let flags = self.fill_value(&key);
        self.sh.add(&self.sh.ops, 1);
        match self.client.set(&key, &self.value, flags, 1) {
            Ok(()) => self
                .expiring
                .push_back((key, Instant::now() + EXPIRY_CHECK_AFTER)),
            Err(e) => self.error("set (1 s TTL)", &key, e),
        }
    }

    /// Keys stored with a 1 s TTL at least 3.5 s ago must be gone.
    pub(super) fn check_expired(&mut self) {
        let now = Instant::now();
        while self.expiring.front().is_some_and(|(_, due)| *due <= now) {
            let Some((key, _)) = self.expiring.pop_front() else {
                break;
            };
            self.sh.add(&self.sh.ops, 1);
            match self.client.get(&key) {
                Ok(None) => {}
                Ok(Some(item)) => self.corrupt(
                    "get",
                    format!(
                        "expired item served: {} was stored with a 1 s TTL {:.1} s ago ({} bytes back)",
                        show(&key),
                        EXPIRY_CHECK_AFTER.as_secs_f64(),
                        item.value.len()
                    ),
                ),
                Err(e) => self.error("get (expired key)", &key, e),
            }
        }
    }

    /// Node failures the client absorbed (get_many reports the keys missing;
    /// cache-aside loads anyway) show only in its node counters.
    pub(super) fn check_absorbed_failures(&mut self) {
        let total: u64 = self.client.node_status().iter().map(|n| n.errors).sum();
        if total > self.seen_node_failures {
            let d = total - self.seen_node_failures;
            self.seen_node_failures = total;
            self.sh.fail(
                Fail::Error,
                self.name,
                format!("{d} I/O or protocol failure(s) absorbed by the client (get_many / cache-aside)"),
            );
        }
    }
}
