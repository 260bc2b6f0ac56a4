//! `ferrocache::client` over `Protocol::Meta`, against memcached 1.6.18 started by the
//! test (and the same scenarios against ferrocache, ignored until its server-side meta
//! lands): every operation, and the stampede-safe cache-aside (`mg` `N`/`R`, reply
//! flags `W`/`X`/`Z`).
use crate::common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferrocache::client::cache::NEGATIVE_FLAGS;
use ferrocache::client::{Client, ClientConfig, Error, Protocol, StoreOutcome};

fn client(srv: &Server) -> Client {
    let mut cfg = ClientConfig::new(&format!("127.0.0.1:{}", srv.port)).expect("server list");
    cfg.conn.protocol = Protocol::Meta;
    cfg.conn.io_timeout = Duration::from_secs(2);
    cfg.max_idle_per_node = 64;
    Client::new(cfg).expect("client")
}

fn memcached() -> Option<Server> {
    Server::memcached(&[])
}

// ---- every operation ----------------------------------------------------------

fn all_operations(c: &Client) {
    c.flush_all(0).expect("flush");
    assert_eq!(c.get(b"k1").expect("get"), None);
    c.set(b"k1", b"v1", 42, 0).expect("set");
    let it = c.get(b"k1").expect("get").expect("hit");
    assert_eq!((it.value.as_slice(), it.flags), (&b"v1"[..], 42));
    assert!(it.cas != 0);
    c.set(b"flags", b"x", u32::MAX, 0).expect("set");
    assert_eq!(c.get(b"flags").expect("get").expect("hit").flags, u32::MAX);
    assert!(!c.add(b"k1", b"x", 0, 0).expect("add"));
    assert!(c.add(b"k2", b"two", 0, 0).expect("add"));
    assert!(c.replace(b"k2", b"TWO", 0, 0).expect("replace"));
    assert!(!c.replace(b"nope", b"x", 0, 0).expect("replace"));
    assert!(c.append(b"k2", b"-end").expect("append"));
    assert!(c.prepend(b"k2", b"start-").expect("prepend"));
    assert!(!c.append(b"nope", b"x").expect("append missing"));
    assert!(!c.prepend(b"nope", b"x").expect("prepend missing"));
    let it = c.get(b"k2").expect("get").expect("hit");
    assert_eq!(it.value, b"start-TWO-end");
    // CAS (ms C): the unique read back wins once, then is stale.
    let cas = c.get(b"k1").expect("get").expect("hit").cas;
    assert_eq!(
        c.cas(b"k1", b"v2", 0, 0, cas).expect("cas"),
        StoreOutcome::Stored
    );
    assert_eq!(
        c.cas(b"k1", b"v3", 0, 0, cas).expect("cas"),
        StoreOutcome::Exists
    );
    assert_eq!(
        c.cas(b"nope", b"v3", 0, 0, 1).expect("cas"),
        StoreOutcome::NotFound
    );
    // Values with CR/LF inside and empty values.
    c.set(b"crlf", b"a\r\nb\r\n", 0, 0).expect("set");
    assert_eq!(
        c.get(b"crlf").expect("get").expect("hit").value,
        b"a\r\nb\r\n"
    );
    c.set(b"empty", b"", 7, 0).expect("set");
    let it = c.get(b"empty").expect("get").expect("hit");
    assert_eq!((it.value.len(), it.flags), (0, 7));
    // Counters (ma).
    c.set(b"n", b"10", 0, 0).expect("set");
    assert_eq!(c.incr(b"n", 5).expect("incr"), Some(15));
    assert_eq!(c.decr(b"n", 20).expect("decr"), Some(0));
    assert_eq!(c.incr(b"n", u64::MAX).expect("incr"), Some(u64::MAX));
    assert_eq!(c.incr(b"missing", 1).expect("incr"), None);
    assert_eq!(c.decr(b"missing", 1).expect("decr"), None);
    // A refusal is a server error, not a node failure; the connection stays usable.
    assert!(matches!(c.incr(b"k2", 1), Err(Error::Server(_))));
    assert!(c.node_status()[0].live);
    // Touch (mg T).
    assert!(c.touch(b"n", 100).expect("touch"));
    assert!(!c.touch(b"missing", 100).expect("touch"));
    c.set(b"short", b"x", 0, 1).expect("set");
    assert!(c.touch(b"short", 100).expect("touch"));
    // Delete (md).
    assert!(c.delete(b"n").expect("delete"));
    assert!(!c.delete(b"n").expect("delete"));
    // Many keys: pipelined mg ... q O<i> ... mn, with a large value and misses.
    let big = vec![b'b'; 300_000];
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("many:{i}").into_bytes()).collect();
    for (i, k) in keys.iter().enumerate() {
        let v = if i == 7 { big.clone() } else { k.clone() };
        c.set(k, &v, i as u32, 0).expect("set many");
    }
    let mut ask: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    ask.insert(3, b"many:absent");
    ask.push(b"many:absent2");
    let got = c.get_many(&ask).expect("get_many");
    assert_eq!(got.len(), 200);
    for (i, k) in keys.iter().enumerate() {
        let it = &got[k];
        assert_eq!(it.flags, i as u32);
        assert_eq!(it.value, if i == 7 { big.clone() } else { k.clone() });
    }
    assert!(c
        .get_many(&[b"many:absent", b"many:absent2"])
        .expect("get_many")
        .is_empty());
    assert_eq!(c.get_many(&[b"many:1"]).expect("get_many").len(), 1);
    // After the pipelines the pooled connection is in step.
    assert_eq!(c.get(b"k1").expect("get").expect("hit").value, b"v2");
    // Keys the client refuses before sending (text rules).
    assert!(matches!(c.get(b""), Err(Error::BadKey)));
    assert!(matches!(c.get(&[b'k'; 251]), Err(Error::BadKey)));
    assert!(matches!(c.set(b"a key", b"v", 0, 0), Err(Error::BadKey)));
    // flush_all, stats, version: text commands on the same connections.
    for (name, r) in c.stats("") {
        let stats = r.unwrap_or_else(|e| panic!("stats {name}: {e}"));
        assert!(stats.iter().any(|(k, _)| k == "curr_items"), "{name}");
    }
    for (name, r) in c.versions() {
        assert!(r.is_ok(), "version {name}");
    }
    c.flush_all(0).expect("flush");
    assert_eq!(c.get(b"k1").expect("get"), None);
    assert_eq!(c.node_status()[0].errors, 0);
}

#[test]
fn every_operation_meta_against_memcached() {
    let Some(mc) = memcached() else { return };
    all_operations(&client(&mc));
}

#[test]
fn every_operation_meta_against_ferrocache() {
    all_operations(&client(&Server::ferrocache(&[])));
}

// ---- stampede -----------------------------------------------------------------

const THREADS: usize = 50;
const RUN_FOR: Duration = Duration::from_secs(6);
const LOADER_TIME: Duration = Duration::from_millis(50);

struct Stampede {
    /// When each load finished, from the start of the run.
    loads: Vec<Duration>,
    calls: u64,
    max_age: Duration,
}

/// `THREADS` threads call `get_or_load` on one key with TTL `ttl` (and recache window
/// `window`) for `RUN_FOR`; the loader takes `LOADER_TIME` and returns the time it
/// finished, so every caller can check the age of what it is served.
fn stampede(srv: &Server, ttl: u32, window: u32) -> Stampede {
    let c = client(srv);
    c.flush_all(0).expect("flush");
    let start = Instant::now();
    let loads = Mutex::new(Vec::new());
    let calls = AtomicU64::new(0);
    let max_age_us = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let cache = c
                    .cache_aside(ttl)
                    .recache_window(window)
                    .wait_for_winner(Duration::from_secs(3));
                while start.elapsed() < RUN_FOR {
                    let v = cache
                        .get_or_load(b"hot", || {
                            std::thread::sleep(LOADER_TIME);
                            let made = start.elapsed();
                            loads.lock().expect("lock").push(made);
                            Ok::<_, String>(Some(made.as_micros().to_string().into_bytes()))
                        })
                        .expect("no caller gets an error")
                        .expect("a value");
                    let made: u64 = std::str::from_utf8(&v)
                        .expect("utf8")
                        .parse()
                        .expect("a load time");
                    let age = start.elapsed().as_micros() as u64 - made;
                    max_age_us.fetch_max(age, Ordering::Relaxed);
                    calls.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
    });
    let mut loads = loads.into_inner().expect("lock");
    loads.sort();
    Stampede {
        loads,
        calls: calls.into_inner(),
        max_age: Duration::from_micros(max_age_us.into_inner()),
    }
}

/// Checks one run. The node's clock ticks once a second and TTLs are whole seconds,
/// so after the first load (at any point of a second) the loads come one `cycle`
/// apart, right after a tick: one load per cycle means the first load, plus one per
/// cycle boundary the run crosses, and no two loads closer than a cycle (less the
/// scheduling jitter) after the first gap (which may be shorter: the first value may
/// be stored just before a tick).
fn check(run: &Stampede, ttl: u32, cycle: Duration, what: &str) {
    let gaps: Vec<Duration> = run.loads.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "{what}: {} calls, {} loads at {:?}, gaps {:?}, oldest value served {:?}",
        run.calls,
        run.loads.len(),
        &run.loads[..run.loads.len().min(20)],
        &gaps[..gaps.len().min(20)],
        run.max_age
    );
    let cycles = RUN_FOR.as_secs_f64() / cycle.as_secs_f64();
    let n = run.loads.len() as f64;
    assert!(
        n >= cycles - 1.0 && n <= cycles + 2.0,
        "{what}: {n} loads for {cycles} cycles"
    );
    let jitter = Duration::from_millis(300);
    for (i, g) in gaps.iter().enumerate().skip(1) {
        assert!(
            *g + jitter >= cycle,
            "{what}: loads {i} and {} only {g:?} apart (two loads in one cycle)",
            i + 1
        );
    }
    assert!(
        run.max_age <= Duration::from_secs(ttl as u64) + Duration::from_millis(250),
        "{what}: a value {:?} old was served (TTL {ttl} s)",
        run.max_age
    );
    assert!(
        run.calls > THREADS as u64 * 10,
        "{what}: only {} calls",
        run.calls
    );
}

/// TTL 2 s, recache window 2 (`R2`: the last second): a caller wins the recache
/// once a second and reloads while the others keep the still-valid value; the key
/// never misses after the first load.
fn stampede_recache(srv: &Server) {
    let run = stampede(srv, 2, 2);
    check(&run, 2, Duration::from_secs(1), "recache window");
}

/// TTL 2 s, no recache window: the key expires every 2 s; the first caller after
/// the expiry wins (placeholder created by `N`), the others wait for its value.
fn stampede_expiry(srv: &Server) {
    let run = stampede(srv, 2, 0);
    check(&run, 2, Duration::from_secs(2), "expiry");
}

#[test]
fn stampede_recache_window_against_memcached() {
    let Some(mc) = memcached() else { return };
    stampede_recache(&mc);
}

#[test]
fn stampede_expiry_against_memcached() {
    let Some(mc) = memcached() else { return };
    stampede_expiry(&mc);
}

#[test]
fn stampede_recache_window_against_ferrocache() {
    stampede_recache(&Server::ferrocache(&[]));
}

#[test]
fn stampede_expiry_against_ferrocache() {
    stampede_expiry(&Server::ferrocache(&[]));
}

// ---- winners and losers, step by step -----------------------------------------

/// A loader that says when it has started and returns (`Some(value)` or an error)
/// only when released.
type Loader = Box<dyn FnOnce() -> Result<Option<Vec<u8>>, String> + Send>;

fn gated(
    value: Result<&'static str, &'static str>,
) -> (Loader, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let loader: Loader = Box::new(move || {
        started_tx.send(()).expect("started");
        release_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("released");
        value
            .map(|v| Some(v.as_bytes().to_vec()))
            .map_err(str::to_string)
    });
    (loader, started, release)
}

fn no_loader() -> Result<Option<Vec<u8>>, String> {
    panic!("this caller must not run the loader")
}

fn winners_and_losers(srv: &Server) {
    let c = client(srv);
    c.flush_all(0).expect("flush");
    let cache = c.cache_aside(60);
    let wait = Duration::from_secs(10);

    // Cached: the loader runs once, then hits (get_or_set_with uses the same path).
    let v = c
        .get_or_set_with(b"plain", 60, || Ok::<_, String>(Some(b"one".to_vec())))
        .expect("load");
    assert_eq!(v.as_deref(), Some(&b"one"[..]));
    assert_eq!(
        c.get_or_set_with(b"plain", 60, no_loader).expect("hit"),
        Some(b"one".to_vec())
    );

    std::thread::scope(|s| {
        // Stale (md I): the first reader wins and reloads; others get the stale value.
        c.set(b"st", b"old", 0, 60).expect("set");
        assert!(cache.mark_stale(b"st").expect("mark stale"));
        let (loader, started, release) = gated(Ok("new"));
        let winner = s.spawn(|| cache.get_or_load(b"st", loader));
        started.recv_timeout(wait).expect("winner loading");
        assert_eq!(
            cache.get_or_load(b"st", no_loader).expect("stale"),
            Some(b"old".to_vec())
        );
        release.send(()).expect("release");
        assert_eq!(
            winner.join().expect("join").expect("winner"),
            Some(b"new".to_vec())
        );
        let it = c.get(b"st").expect("get").expect("hit");
        assert_eq!(it.value, b"new");
        assert_eq!(
            cache.get_or_load(b"st", no_loader).expect("fresh"),
            Some(b"new".to_vec())
        );

        // Miss: the winner's placeholder makes the others wait for its value.
        let (loader, started, release) = gated(Ok("from-winner"));
        let winner = s.spawn(|| cache.get_or_load(b"ph", loader));
        started.recv_timeout(wait).expect("winner loading");
        let patient = cache.clone().wait_for_winner(Duration::from_secs(5));
        let loser = s.spawn(move || patient.get_or_load(b"ph", no_loader));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!loser.is_finished(), "the loser waits for the winner");
        let t = Instant::now();
        release.send(()).expect("release");
        assert_eq!(
            winner.join().expect("join").expect("winner"),
            Some(b"from-winner".to_vec())
        );
        assert_eq!(
            loser.join().expect("join").expect("loser"),
            Some(b"from-winner".to_vec())
        );
        assert!(t.elapsed() < Duration::from_secs(1));

        // The wait is bounded: after it the loser loads itself and replaces the
        // placeholder (ms C); the late winner's store then fails (EX) and leaves it.
        let (loader, started, release) = gated(Ok("late-winner"));
        let winner = s.spawn(|| cache.get_or_load(b"slow", loader));
        started.recv_timeout(wait).expect("winner loading");
        let t = Instant::now();
        let v = cache
            .clone()
            .wait_for_winner(Duration::from_millis(200))
            .get_or_load(b"slow", || Ok::<_, String>(Some(b"impatient".to_vec())))
            .expect("fallback");
        assert_eq!(v.as_deref(), Some(&b"impatient"[..]));
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            c.get(b"slow").expect("get").expect("hit").value,
            b"impatient"
        );
        release.send(()).expect("release");
        assert_eq!(
            winner.join().expect("join").expect("winner"),
            Some(b"late-winner".to_vec())
        );
        assert_eq!(
            c.get(b"slow").expect("get").expect("hit").value,
            b"impatient"
        );

        // No wait at all: a loser on a placeholder loads at once.
        let (loader, started, release) = gated(Ok("w"));
        let winner = s.spawn(|| cache.get_or_load(b"nowait", loader));
        started.recv_timeout(wait).expect("winner loading");
        let t = Instant::now();
        let v = cache
            .clone()
            .wait_for_winner(Duration::ZERO)
            .get_or_load(b"nowait", || Ok::<_, String>(Some(b"l".to_vec())))
            .expect("no wait");
        assert_eq!(v.as_deref(), Some(&b"l"[..]));
        assert!(t.elapsed() < Duration::from_millis(200));
        release.send(()).expect("release");
        winner.join().expect("join").expect("winner");

        // A winner whose loader fails gives the placeholder up: a waiter wins next.
        let (loader, started, release) = gated(Err("db down"));
        let winner = s.spawn(|| cache.get_or_load(b"err", loader));
        started.recv_timeout(wait).expect("winner loading");
        let patient = cache.clone().wait_for_winner(Duration::from_secs(5));
        let loser = s.spawn(move || {
            patient.get_or_load(b"err", || Ok::<_, String>(Some(b"second try".to_vec())))
        });
        std::thread::sleep(Duration::from_millis(200));
        release.send(()).expect("release");
        assert_eq!(winner.join().expect("join"), Err("db down".to_string()));
        let t = Instant::now();
        assert_eq!(
            loser.join().expect("join").expect("loser"),
            Some(b"second try".to_vec())
        );
        assert!(t.elapsed() < Duration::from_secs(1));
    });

    // Recache window: an item whose remaining TTL is below R is reloaded by the
    // first reader; stored with the full TTL it is not reloaded again.
    c.set(b"rc", b"short-lived", 0, 2).expect("set");
    let window = cache.clone().recache_window(3);
    assert_eq!(
        window
            .get_or_load(b"rc", || Ok::<_, String>(Some(b"reloaded".to_vec())))
            .expect("reload"),
        Some(b"reloaded".to_vec())
    );
    assert_eq!(
        window.get_or_load(b"rc", no_loader).expect("hit"),
        Some(b"reloaded".to_vec())
    );

    // Loader "not found": without negative caching the placeholder is removed, not
    // left behind as an empty value; with it, the marker is cached.
    assert_eq!(
        cache
            .get_or_load(b"absent", || Ok::<_, String>(None))
            .expect("none"),
        None
    );
    assert_eq!(c.get(b"absent").expect("get"), None);
    let neg = cache.clone().negative_ttl(30);
    assert_eq!(
        neg.get_or_load(b"absent", || Ok::<_, String>(None))
            .expect("none"),
        None
    );
    assert_eq!(neg.get_or_load(b"absent", no_loader).expect("marker"), None);
    let marker = c.get(b"absent").expect("get").expect("marker");
    assert_eq!((marker.value.len(), marker.flags), (0, NEGATIVE_FLAGS));
    assert_eq!(c.node_status()[0].errors, 0);
}

#[test]
fn winners_and_losers_against_memcached() {
    let Some(mc) = memcached() else { return };
    winners_and_losers(&mc);
}

#[test]
fn winners_and_losers_against_ferrocache() {
    winners_and_losers(&Server::ferrocache(&[]));
}

/// Text and binary keep their behaviour: no placeholder, every concurrent miss loads.
#[test]
fn text_cache_aside_has_no_placeholder() {
    let Some(mc) = memcached() else { return };
    let mut cfg = ClientConfig::new(&format!("127.0.0.1:{}", mc.port)).expect("cfg");
    cfg.conn.protocol = Protocol::Text;
    let c = Client::new(cfg).expect("client");
    let cache = c.cache_aside(60);
    assert!(!cache.mark_stale(b"x").expect("delete"));
    std::thread::scope(|s| {
        let (loader, started, release) = gated(Ok("a"));
        let first = s.spawn(|| cache.get_or_load(b"t", loader));
        started
            .recv_timeout(Duration::from_secs(10))
            .expect("loading");
        assert_eq!(c.get(b"t").expect("get"), None);
        let v = cache
            .get_or_load(b"t", || Ok::<_, String>(Some(b"b".to_vec())))
            .expect("second loader");
        assert_eq!(v.as_deref(), Some(&b"b"[..]));
        release.send(()).expect("release");
        first.join().expect("join").expect("first");
    });
    assert!(cache.mark_stale(b"t").expect("delete"));
    assert_eq!(c.get(b"t").expect("get"), None);
}

// ---- invalidation while a lease is held (the stale-set race) --------------------

/// A reader wins the lease on a missing key and reads the database (the loader); a
/// writer then updates the row and invalidates the key before the reader stores.
/// The reader's value is older than the database: it must not be cached, whatever
/// the writer did to the key (delete, mark stale, or set the new value).
fn lease_invalidated_while_loading(srv: &Server) {
    let c = client(srv);
    c.flush_all(0).expect("flush");
    let cache = c.cache_aside(60);
    let wait = Duration::from_secs(10);
    type Writer = fn(&Client, &[u8]);
    let writers: [(&str, Writer); 3] = [
        ("delete", |c, k| {
            assert!(c.delete(k).expect("md"), "the placeholder was there");
        }),
        ("mark stale", |c, k| {
            assert!(c.cache_aside(60).mark_stale(k).expect("md I"));
        }),
        ("set the new row", |c, k| {
            c.set(k, b"v2", 0, 60).expect("ms")
        }),
    ];
    for (what, writer) in writers {
        let key = format!("row:{}", what.replace(' ', "-"));
        let key = key.as_bytes();
        std::thread::scope(|s| {
            let (loader, started, release) = gated(Ok("v1"));
            let reader = s.spawn(|| cache.get_or_load(key, loader));
            started.recv_timeout(wait).expect("reader loading");
            writer(&c, key);
            release.send(()).expect("release");
            // The reader still answers with what it read.
            assert_eq!(
                reader.join().expect("join").expect("reader"),
                Some(b"v1".to_vec()),
                "{what}"
            );
        });
        let cached = c.get(key).expect("get").map(|i| i.value);
        assert_ne!(cached.as_deref(), Some(&b"v1"[..]), "{what}: v1 was cached");
        // The next reader reads the database again (or gets the writer's value).
        let next = cache
            .get_or_load(key, || Ok::<_, String>(Some(b"v2".to_vec())))
            .expect("next reader");
        assert_eq!(next.as_deref(), Some(&b"v2"[..]), "{what}");
    }
}

#[test]
fn lease_invalidated_while_loading_against_memcached() {
    let Some(mc) = memcached() else { return };
    lease_invalidated_while_loading(&mc);
}

#[test]
fn lease_invalidated_while_loading_against_ferrocache() {
    lease_invalidated_while_loading(&Server::ferrocache(&[]));
}
