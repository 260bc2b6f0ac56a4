//! The walk-through `db_cache` runs by default: each pattern on the database, with
//! what the database got and what the cache held, checked as it goes (a check that
//! fails stops the run with an error).

use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use ferrocache::client::{CacheAside, Client};

use crate::db::{item_version, Db, DbError, DbSpec};
use crate::patterns::item_key;
use crate::sessions::{self, WorkerReport};

/// What the demo runs against.
pub struct Setup<'a> {
    /// The cache.
    pub client: &'a Client,
    /// The cache nodes, for the session processes.
    pub servers: &'a str,
    /// Moves the cache's clock by this many seconds (the in-process ferrocache with
    /// `-o debugtime`); `None` for other servers.
    pub advance_clock: Option<&'a (dyn Fn(u32) -> Result<(), String> + Sync)>,
    /// The database.
    pub spec: &'a DbSpec,
    /// This run's table tag.
    pub tag: &'a str,
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

fn version(v: &Option<Vec<u8>>) -> i64 {
    v.as_deref().and_then(item_version).unwrap_or(-1)
}

fn cached_version(client: &Client, id: i64) -> Result<Option<i64>, String> {
    let it = client.get(&item_key(id)).map_err(|e| e.to_string())?;
    Ok(it.and_then(|i| item_version(&i.value)))
}

fn db_version(db: &mut Db, id: i64) -> Result<i64, String> {
    Ok(version(&db.get_item(id).map_err(|e| e.to_string())?))
}

/// Runs every step.
pub fn run(s: &Setup<'_>) -> Result<(), String> {
    let e = |e: DbError| e.to_string();
    let client = s.client;
    let mut db = Db::connect(s.spec, s.tag).map_err(e)?;
    let mut other = Db::connect(s.spec, s.tag).map_err(e)?; // a second application
    db.create(100, 0, 32).map_err(e)?;
    client.flush_all(0).map_err(|e| e.to_string())?;
    println!(
        "database: {}, 100 items (ids 0-99; id 1000 has no row)",
        s.spec.name()
    );
    let cache: CacheAside<'_> = client.cache_aside(60).negative_ttl(30);

    // 1. Lazy loading with a TTL.
    let q = db.queries;
    for _ in 0..3 {
        let v = cache
            .get_or_load(&item_key(1), || db.get_item(1))
            .map_err(e)?;
        check(version(&v) == 1, "item 1 is at version 1")?;
    }
    check(db.queries - q == 1, "three reads, one query")?;
    print!(
        "1. lazy loading: item 1 read 3 times, {} database query",
        db.queries - q
    );
    if let Some(advance) = s.advance_clock {
        advance(61)?; // the cache's clock, past the 60 s TTL
        let q = db.queries;
        cache
            .get_or_load(&item_key(1), || db.get_item(1))
            .map_err(e)?;
        check(db.queries - q == 1, "expired after its TTL: read again")?;
        println!("; 61 s later (TTL 60 s) it is read from the database again");
    } else {
        println!("; cached for 60 s (TTL)");
    }

    // 2. Negative caching.
    let q = db.queries;
    for _ in 0..3 {
        let v = cache
            .get_or_load(&item_key(1000), || db.get_item(1000))
            .map_err(e)?;
        check(v.is_none(), "id 1000 has no row")?;
    }
    check(db.queries - q == 1, "an absent row is looked up once")?;
    println!(
        "2. negative caching: id 1000 (no row) read 3 times, {} database query; \"not found\" cached for 30 s",
        db.queries - q
    );

    // 3. Write-through.
    let written = cache
        .write_through_with(&item_key(1), || {
            Ok::<_, DbError>(db.update_item(1)?.unwrap_or_default())
        })
        .map_err(e)?;
    let q = db.queries;
    let v = cache
        .get_or_load(&item_key(1), || db.get_item(1))
        .map_err(e)?;
    check(
        v.as_deref() == Some(&written[..]) && db.queries == q,
        "write-through cached the new row",
    )?;
    println!(
        "3. write-through: item 1 updated to version {}, and the next read is a cache hit",
        version(&v)
    );

    // 4. Invalidation by delete, and the stale-set race.
    let key = item_key(1);
    client.delete(&key).map_err(|e| e.to_string())?;
    // Naive: get (miss), SELECT ... the writer commits and deletes ... set.
    let _ = client.get(&key).map_err(|e| e.to_string())?;
    let read = db.get_item(1).map_err(e)?.unwrap_or_default();
    other.update_item(1).map_err(e)?;
    client.delete(&key).map_err(|e| e.to_string())?;
    client.set(&key, &read, 0, 60).map_err(|e| e.to_string())?;
    let (cached, current) = (cached_version(client, 1)?, db_version(&mut db, 1)?);
    check(
        cached.is_some_and(|c| c < current),
        "the naive reader cached an old row",
    )?;
    println!(
        "4. invalidate by delete, naive get/set: a reader read version {}, a writer committed {} and deleted, \
         the reader set {}: the cache serves version {} while the database has {}, until the TTL",
        version(&Some(read.clone())),
        current,
        version(&Some(read)),
        cached.unwrap_or(-1),
        current
    );
    // The lease: the same interleaving, the writer acting inside the reader's load.
    client.delete(&key).map_err(|e| e.to_string())?;
    let mut writer_version = -1;
    let got = cache
        .get_or_load(&key, || {
            let row = db.get_item(1)?;
            writer_version = version(&other.update_item(1)?);
            let _ = client.delete(&key);
            Ok::<_, DbError>(row)
        })
        .map_err(e)?;
    let cached = cached_version(client, 1)?;
    check(
        cached.is_none(),
        "the lease holder's late store was refused",
    )?;
    let next = cache.get_or_load(&key, || db.get_item(1)).map_err(e)?;
    check(
        version(&next) == writer_version,
        "the next reader loads the new row",
    )?;
    println!(
        "   with the lease (get_or_load over meta): the reader read version {}, the writer committed {} and \
         deleted; the reader's store was refused (ms C<cas>: NF), the next read loaded version {}",
        version(&got),
        writer_version,
        version(&next)
    );

    // 5. Set-on-write, and the race between two writers.
    let v1 = other.update_item(1).map_err(e)?.unwrap_or_default(); // writer 1 commits
    let v2 = db.update_item(1).map_err(e)?.unwrap_or_default(); // writer 2 commits
    client.set(&key, &v2, 0, 60).map_err(|e| e.to_string())?; // writer 2 caches
    client.set(&key, &v1, 0, 60).map_err(|e| e.to_string())?; // writer 1 caches, late
    let (cached, current) = (cached_version(client, 1)?, db_version(&mut db, 1)?);
    check(
        cached.is_some_and(|c| c < current),
        "the naive late set left an old row",
    )?;
    println!(
        "5. set-on-write, naive set: writers committed {} then {}, their sets arrived the other way round: \
         the cache serves {} while the database has {}",
        version(&Some(v1)),
        version(&Some(v2)),
        cached.unwrap_or(-1),
        current
    );
    let mut second = -1;
    cache
        .write_through_with(&key, || {
            let first = other.update_item(1)?.unwrap_or_default();
            second = version(
                &cache
                    .write_through_with(&key, || {
                        Ok::<_, DbError>(db.update_item(1)?.unwrap_or_default())
                    })
                    .map(Some)?,
            );
            Ok::<_, DbError>(first)
        })
        .map_err(e)?;
    let cached = cached_version(client, 1)?;
    check(
        cached.is_none(),
        "write_through deleted instead of caching the older row",
    )?;
    let next = cache.get_or_load(&key, || db.get_item(1)).map_err(e)?;
    check(
        version(&next) == second,
        "the next read loads the newest row",
    )?;
    println!(
        "   with write_through (get, UPDATE, cas): the late writer's cas failed and it deleted the key; \
         the next read loaded version {}",
        version(&next)
    );

    // 6. Stampede protection.
    stampede(s, &key)?;

    // 7. Sessions shared by several processes.
    session_store(s, &mut db)?;
    Ok(())
}

/// `threads` threads read `key` at once, each loading in 100 ms on a miss; the
/// database queries that made, and the slowest answer.
fn burst(s: &Setup<'_>, key: &[u8], naive: bool) -> Result<(u64, Duration), String> {
    let threads = 16;
    let start = Barrier::new(threads);
    let results: Vec<Result<(u64, Duration), String>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let start = &start;
                sc.spawn(move || {
                    let mut db = Db::connect(s.spec, s.tag).map_err(|e| e.to_string())?;
                    let load = |db: &mut Db| {
                        let row = db.get_item(1);
                        std::thread::sleep(Duration::from_millis(100));
                        row
                    };
                    start.wait();
                    let t = Instant::now();
                    if naive {
                        if s.client.get(key).map_err(|e| e.to_string())?.is_none() {
                            let row = load(&mut db).map_err(|e| e.to_string())?;
                            let _ = s.client.set(key, &row.unwrap_or_default(), 0, 60);
                        }
                    } else {
                        s.client
                            .cache_aside(60)
                            .wait_for_winner(Duration::from_secs(5))
                            .get_or_load(key, || load(&mut db))
                            .map_err(|e| e.to_string())?;
                    }
                    Ok((db.queries, t.elapsed()))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
            .collect()
    });
    let mut total = (0, Duration::ZERO);
    for r in results {
        let (q, t) = r?;
        total = (total.0 + q, total.1.max(t));
    }
    Ok(total)
}

fn stampede(s: &Setup<'_>, key: &[u8]) -> Result<(), String> {
    let c = s.client;
    c.delete(key).map_err(|e| e.to_string())?;
    let (naive, _) = burst(s, key, true)?;
    c.delete(key).map_err(|e| e.to_string())?;
    let (lease, slowest) = burst(s, key, false)?;
    check(
        naive > 1 && lease == 1,
        "the lease loads a missing hot key once",
    )?;
    println!(
        "6. stampede: 16 threads miss the same key at once, loading takes 100 ms: naive get/set {naive} \
         database queries, the lease {lease} (the others waited for its value; slowest answer {} ms)",
        slowest.as_millis()
    );
    c.cache_aside(60)
        .mark_stale(key)
        .map_err(|e| e.to_string())?;
    let (swr, slowest) = burst(s, key, false)?;
    check(swr == 1, "a stale key is reloaded once")?;
    println!(
        "   stale-while-revalidate (mark_stale, md I): 16 readers, {swr} reload; the others got the stale value \
         at once (slowest answer {} ms, the reloader's)",
        slowest.as_millis()
    );
    Ok(())
}

fn session_store(s: &Setup<'_>, db: &mut Db) -> Result<(), String> {
    let (processes, requests, every) = (4u64, 40u64, 4u64);
    let id = "s-42";
    db.create_session(id, 42).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .args(["session-worker", "--servers", s.servers])
                .args(["--db", &s.spec.arg(), "--tag", s.tag, "--session", id])
                .args(["--requests", &requests.to_string()])
                .args(["--update-every", &every.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("start {}: {e}", exe.display()))
        })
        .collect::<Result<_, _>>()?;
    let mut total = WorkerReport::default();
    for child in children {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        let r = text
            .lines()
            .find_map(WorkerReport::parse)
            .filter(|_| out.status.success())
            .ok_or_else(|| format!("a session process failed ({}): {text}", out.status))?;
        total.requests += r.requests;
        total.views += r.views;
        total.conflicts += r.conflicts;
        total.db_queries += r.db_queries;
    }
    let in_db = db
        .get_session(id)
        .map_err(|e| e.to_string())?
        .ok_or("no session")?;
    let cached = sessions::load(s.client, db, id)
        .map_err(|e| e.to_string())?
        .ok_or("no session")?;
    let want = processes * requests.div_ceil(every);
    check(
        total.views == want && in_db.views == want as i64 && cached == in_db,
        "every view counted once, in the database and in the cache",
    )?;
    println!(
        "7. sessions: {processes} stateless processes served {} requests of one session and counted {} views \
         ({} conflicts retried): the database and the cache both say {} views; the processes ran {} \
         database queries for {} session reads and {} updates",
        total.requests,
        total.views,
        total.conflicts,
        in_db.views,
        total.db_queries,
        total.requests + total.conflicts,
        total.views + total.conflicts
    );
    Ok(())
}
