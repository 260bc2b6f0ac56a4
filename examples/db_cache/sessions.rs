//! A session store shared by several application processes, each stateless: the
//! session row lives in the database, its cached copy in the cache, and any process
//! can serve any request of the session.
//!
//! ```text
//!  request: session = get_or_load("session:<id>")          (lease; the DB on a miss)
//!  every n-th request counts a view:
//!           UPDATE ... SET views = views + 1, version = version + 1
//!                  WHERE id = <id> AND version = <version read>   (optimistic)
//!           ├─ updated ─▶ delete "session:<id>"                  (invalidate)
//!           └─ 0 rows (another process was first) ─▶ read again, retry
//! ```
//!
//! The version check makes concurrent updates from several processes safe (none is
//! lost); the lease makes sure a process never caches a row older than the last
//! update once that update's delete has been done, so a retry soon sees the new row.

use std::time::Duration;

use ferrocache::client::Client;

use crate::db::{Db, DbError, SessionRow};

/// TTL of cached sessions (seconds).
pub const SESSION_TTL: u32 = 1800;

/// The cache key of session `id`.
pub fn session_key(id: &str) -> Vec<u8> {
    format!("session:{id}").into_bytes()
}

/// Reads a session through the cache.
pub fn load(client: &Client, db: &mut Db, id: &str) -> Result<Option<SessionRow>, DbError> {
    let cached = client
        .cache_aside(SESSION_TTL)
        .get_or_load(&session_key(id), || {
            Ok::<_, DbError>(db.get_session(id)?.map(|s| s.encode()))
        })?;
    Ok(cached.as_deref().and_then(SessionRow::decode))
}

/// What one process did.
#[derive(Debug, Default)]
pub struct WorkerReport {
    /// Requests served.
    pub requests: u64,
    /// Views it counted.
    pub views: u64,
    /// Updates that found the session changed by another process (retried).
    pub conflicts: u64,
    /// Database statements.
    pub db_queries: u64,
}

/// One process's share: `requests` requests of session `id`, counting a view on
/// every `update_every`-th.
pub fn serve(
    client: &Client,
    db: &mut Db,
    id: &str,
    requests: u64,
    update_every: u64,
) -> Result<WorkerReport, String> {
    let mut r = WorkerReport::default();
    for i in 0..requests {
        let mut session = load(client, db, id)
            .map_err(|e| e.to_string())?
            .ok_or("the session is gone")?;
        r.requests += 1;
        if update_every == 0 || i % update_every != 0 {
            continue;
        }
        let mut tries = 0;
        loop {
            if db
                .count_view(id, &session)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                // Committed: invalidate, so every process reads the new row.
                let _ = client.delete(&session_key(id));
                r.views += 1;
                break;
            }
            r.conflicts += 1;
            tries += 1;
            if tries > 1000 {
                return Err("1000 conflicts in a row".into());
            }
            // Another process updated it first: its delete follows its commit.
            std::thread::sleep(Duration::from_millis(1));
            session = load(client, db, id)
                .map_err(|e| e.to_string())?
                .ok_or("the session is gone")?;
        }
    }
    r.db_queries = db.queries;
    Ok(r)
}

impl WorkerReport {
    /// The line a worker process prints for its parent.
    pub fn line(&self) -> String {
        format!(
            "session-worker requests={} views={} conflicts={} db_queries={}",
            self.requests, self.views, self.conflicts, self.db_queries
        )
    }

    /// Reads [`WorkerReport::line`] back.
    pub fn parse(line: &str) -> Option<WorkerReport> {
        let rest = line.trim().strip_prefix("session-worker ")?;
        let mut r = WorkerReport::default();
        for kv in rest.split(' ') {
            let (k, v) = kv.split_once('=')?;
            let v: u64 = v.parse().ok()?;
            match k {
                "requests" => r.requests = v,
                "views" => r.views = v,
                "conflicts" => r.conflicts = v,
                "db_queries" => r.db_queries = v,
                _ => return None,
            }
        }
        Some(r)
    }
}
