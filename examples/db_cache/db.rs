//! The database: SQLite (a file, no server) or PostgreSQL, behind one small type.
//!
//! Two tables, named with a per-run tag so that runs sharing a PostgreSQL server do
//! not meet:
//!
//! ```text
//!  items_<tag>     (id BIGINT PRIMARY KEY, version BIGINT, payload TEXT)
//!  sessions_<tag>  (id TEXT PRIMARY KEY, user_id BIGINT, views BIGINT, version BIGINT)
//! ```
//!
//! An item's cached form is `v<version>:<payload>`: every update adds one to the
//! version, so a reader can tell how old what it was served is. Every statement
//! counts as one query ([`Db::queries`]).

use std::fmt;
use std::time::Duration;

/// Where the database is.
#[derive(Clone, Debug)]
pub enum DbSpec {
    /// A SQLite file (created if missing).
    Sqlite(String),
    /// A PostgreSQL connection string (`host=127.0.0.1 user=... dbname=...`).
    Postgres(String),
}

impl DbSpec {
    /// `sqlite:<path>` or `postgres:<connection string>`.
    pub fn parse(s: &str) -> Result<DbSpec, String> {
        if let Some(p) = s.strip_prefix("sqlite:") {
            Ok(DbSpec::Sqlite(p.to_string()))
        } else if let Some(c) = s.strip_prefix("postgres:") {
            Ok(DbSpec::Postgres(c.to_string()))
        } else {
            Err(format!(
                "database {s:?}: expected sqlite:<path> or postgres:<connection string>"
            ))
        }
    }

    /// The form [`DbSpec::parse`] reads.
    pub fn arg(&self) -> String {
        match self {
            DbSpec::Sqlite(p) => format!("sqlite:{p}"),
            DbSpec::Postgres(c) => format!("postgres:{c}"),
        }
    }

    /// "SQLite" or "PostgreSQL".
    pub fn name(&self) -> &'static str {
        match self {
            DbSpec::Sqlite(_) => "SQLite",
            DbSpec::Postgres(_) => "PostgreSQL",
        }
    }
}

/// A database error, as text.
#[derive(Debug)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError(format!("sqlite: {e}"))
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError(format!("postgres: {e}"))
    }
}

/// A database result.
pub type DbResult<T> = Result<T, DbError>;

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

/// One connection (one per thread or process) and the names of this run's tables.
pub struct Db {
    conn: Conn,
    items: String,
    sessions: String,
    /// Statements run on this connection.
    pub queries: u64,
}

/// A session row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// Who is logged in.
    pub user_id: i64,
    /// Requests counted so far.
    pub views: i64,
    /// Optimistic-concurrency version: one more on every update.
    pub version: i64,
}

impl SessionRow {
    /// The cached form: `<user_id> <views> <version>`.
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.user_id, self.views, self.version).into_bytes()
    }

    /// Reads the cached form back.
    pub fn decode(b: &[u8]) -> Option<SessionRow> {
        let s = std::str::from_utf8(b).ok()?;
        let mut w = s.split(' ').map(|x| x.parse::<i64>().ok());
        Some(SessionRow {
            user_id: w.next()??,
            views: w.next()??,
            version: w.next()??,
        })
    }
}

/// The cached form of an item.
pub fn item_value(version: i64, payload: &str) -> Vec<u8> {
    format!("v{version}:{payload}").into_bytes()
}

/// The version in an item's cached form.
pub fn item_version(value: &[u8]) -> Option<i64> {
    let rest = value.strip_prefix(b"v")?;
    let end = rest.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

impl Db {
    /// Opens a connection; `tag` names this run's tables (letters, digits, `_`).
    pub fn connect(spec: &DbSpec, tag: &str) -> DbResult<Db> {
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(DbError(format!(
                "table tag {tag:?}: letters, digits and _ only"
            )));
        }
        let conn = match spec {
            DbSpec::Sqlite(path) => {
                let c = rusqlite::Connection::open(path)?;
                // Several threads and processes share the file: readers do not block
                // the writer (WAL), and a writer waits for another instead of failing.
                c.busy_timeout(Duration::from_secs(10))?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "NORMAL")?;
                Conn::Sqlite(c)
            }
            DbSpec::Postgres(info) => {
                Conn::Postgres(Box::new(postgres::Client::connect(info, postgres::NoTls)?))
            }
        };
        Ok(Db {
            conn,
            items: format!("items_{tag}"),
            sessions: format!("sessions_{tag}"),
            queries: 0,
        })
    }

    /// Creates this run's tables afresh: `keys` items (all with version 1 and a
    /// payload of `payload_len` bytes) but every `absent_every`-th id (0: none absent),
    /// and no session.
    pub fn create(&mut self, keys: u64, absent_every: u64, payload_len: usize) -> DbResult<()> {
        let (items, sessions) = (self.items.clone(), self.sessions.clone());
        let ddl = format!(
            "DROP TABLE IF EXISTS {items};
             DROP TABLE IF EXISTS {sessions};
             CREATE TABLE {items} (id BIGINT PRIMARY KEY, version BIGINT NOT NULL, payload TEXT NOT NULL);
             CREATE TABLE {sessions} (id TEXT PRIMARY KEY, user_id BIGINT NOT NULL,
                                      views BIGINT NOT NULL, version BIGINT NOT NULL);"
        );
        let payload = "x".repeat(payload_len);
        let absent = absent_every as i64;
        match &mut self.conn {
            Conn::Sqlite(c) => {
                c.execute_batch(&ddl)?;
                let tx = c.transaction()?;
                {
                    let mut st = tx.prepare(&format!(
                        "INSERT INTO {items} (id, version, payload) VALUES (?1, 1, ?2)"
                    ))?;
                    for id in 0..keys as i64 {
                        if !is_absent(id, absent) {
                            st.execute(rusqlite::params![id, payload])?;
                        }
                    }
                }
                tx.commit()?;
            }
            Conn::Postgres(c) => {
                c.batch_execute(&ddl)?;
                let keep = if absent > 0 {
                    format!("WHERE g % {absent} <> {absent} - 1")
                } else {
                    String::new()
                };
                c.execute(
                    &format!(
                        "INSERT INTO {items} (id, version, payload)
                         SELECT g, 1, $1 FROM generate_series(0, $2::BIGINT - 1) AS g {keep}"
                    ),
                    &[&payload, &(keys as i64)],
                )?;
            }
        }
        Ok(())
    }

    /// Removes this run's tables.
    pub fn drop_tables(&mut self) -> DbResult<()> {
        let sql = format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
            self.items, self.sessions
        );
        match &mut self.conn {
            Conn::Sqlite(c) => c.execute_batch(&sql)?,
            Conn::Postgres(c) => c.batch_execute(&sql)?,
        }
        Ok(())
    }

    /// `SELECT` of one item: its cached form, `None` when there is no such row.
    pub fn get_item(&mut self, id: i64) -> DbResult<Option<Vec<u8>>> {
        self.queries += 1;
        let sql = format!("SELECT version, payload FROM {} WHERE id = $1", self.items);
        self.item_row(&sql, id)
    }

    /// `UPDATE` of one item (one more on its version), committed: its new cached form
    /// (`None`: no such row).
    pub fn update_item(&mut self, id: i64) -> DbResult<Option<Vec<u8>>> {
        self.queries += 1;
        let sql = format!(
            "UPDATE {} SET version = version + 1 WHERE id = $1 RETURNING version, payload",
            self.items
        );
        self.item_row(&sql, id)
    }

    /// Runs `sql` (one `$1` parameter, the id; answers `version, payload` or no row)
    /// and gives the row's cached form.
    fn item_row(&mut self, sql: &str, id: i64) -> DbResult<Option<Vec<u8>>> {
        let row: Option<(i64, String)> = match &mut self.conn {
            Conn::Sqlite(c) => {
                use rusqlite::OptionalExtension;
                c.prepare_cached(sql)?
                    .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
            }
            Conn::Postgres(c) => c.query_opt(sql, &[&id])?.map(|r| (r.get(0), r.get(1))),
        };
        Ok(row.map(|(v, p)| item_value(v, &p)))
    }

    /// `INSERT` of a new session.
    pub fn create_session(&mut self, id: &str, user_id: i64) -> DbResult<()> {
        self.queries += 1;
        let sql = format!(
            "INSERT INTO {} (id, user_id, views, version) VALUES ($1, $2, 0, 1)",
            self.sessions
        );
        match &mut self.conn {
            Conn::Sqlite(c) => {
                c.execute(&sql, rusqlite::params![id, user_id])?;
            }
            Conn::Postgres(c) => {
                c.execute(&sql, &[&id, &user_id])?;
            }
        }
        Ok(())
    }

    /// `SELECT` of a session.
    pub fn get_session(&mut self, id: &str) -> DbResult<Option<SessionRow>> {
        self.queries += 1;
        let sql = format!(
            "SELECT user_id, views, version FROM {} WHERE id = $1",
            self.sessions
        );
        Ok(match &mut self.conn {
            Conn::Sqlite(c) => {
                use rusqlite::OptionalExtension;
                c.prepare_cached(&sql)?
                    .query_row([id], |r| {
                        Ok(SessionRow {
                            user_id: r.get(0)?,
                            views: r.get(1)?,
                            version: r.get(2)?,
                        })
                    })
                    .optional()?
            }
            Conn::Postgres(c) => c.query_opt(&sql, &[&id])?.map(|r| SessionRow {
                user_id: r.get(0),
                views: r.get(1),
                version: r.get(2),
            }),
        })
    }

    /// Counts one view on a session if its version is still `seen.version`
    /// (optimistic concurrency): the new row, or `None` when another process
    /// updated it first.
    pub fn count_view(&mut self, id: &str, seen: &SessionRow) -> DbResult<Option<SessionRow>> {
        self.queries += 1;
        let sql = format!(
            "UPDATE {} SET views = views + 1, version = version + 1
             WHERE id = $1 AND version = $2 RETURNING user_id, views, version",
            self.sessions
        );
        Ok(match &mut self.conn {
            Conn::Sqlite(c) => {
                use rusqlite::OptionalExtension;
                c.prepare_cached(&sql)?
                    .query_row(rusqlite::params![id, seen.version], |r| {
                        Ok(SessionRow {
                            user_id: r.get(0)?,
                            views: r.get(1)?,
                            version: r.get(2)?,
                        })
                    })
                    .optional()?
            }
            Conn::Postgres(c) => c
                .query_opt(&sql, &[&id, &seen.version])?
                .map(|r| SessionRow {
                    user_id: r.get(0),
                    views: r.get(1),
                    version: r.get(2),
                }),
        })
    }
}

/// True when item `id` has no row (every `absent_every`-th id; 0: none).
pub fn is_absent(id: i64, absent_every: i64) -> bool {
    absent_every > 0 && id % absent_every == absent_every - 1
}
