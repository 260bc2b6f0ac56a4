//! The cluster configuration a node serves to auto-discovery clients (ElastiCache's
//! `config get cluster`): held here, changed by `config set|delete cluster` and by
//! reloading `--cluster-config`, read by the text and binary executors.
//!
//! ```text
//!   --cluster-config FILE ──(start, SIGHUP)──┐
//!   config set cluster ──────────────────────┼──▶ ClusterState { current: Arc<Published> }
//!   config delete cluster ───────────────────┘        │ (one RwLock, swapped whole)
//!                                                     ▼
//!            config get cluster / get AmazonElastiCache:cluster / binary 0x60
//! ```
//!
//! Versions only rise: every change publishes `max(given, last + 1)` (a file or a
//! payload may name its version; a lower or equal one is raised), and a delete keeps
//! the last version, so a configuration set after it is still newer to clients.
//! A version is published only while a higher one is left after it: below
//! [`MAX_VERSION`] (2^53 − 1, what every client compares exactly); a change that
//! would name or reach it is refused, so no one can pin the clients' version.
//!
//! **Trust.** Whoever changes this list moves every discovery client's traffic. So
//! the wire cannot change it unless the operator opts in with
//! `--cluster-config-writable` (then, with `-S`/`-Y`, only authenticated
//! connections reach `config set|delete`, as every command); otherwise only the
//! `--cluster-config` file (its owner) and SIGHUP do.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::protocol::cluster::{ClusterConfig, ClusterNode, ConfigError, MAX_VERSION};

/// A published configuration and its payload, composed once.
#[derive(Debug)]
pub struct Published {
    /// The configuration.
    pub config: ClusterConfig,
    /// `<version>\n<entries>\n`: what `config get cluster` returns.
    pub payload: Vec<u8>,
}

/// The reply lines of refusals (ours: ElastiCache documents none).
pub mod replies {
    /// `config set cluster` with a payload that is not a configuration.
    pub const BAD_CONFIG: &str = "CLIENT_ERROR bad cluster configuration";
    /// `config set|delete` on a node not started with `--cluster-config-writable`.
    pub const READ_ONLY: &str = "CLIENT_ERROR cluster configuration is read-only";
    /// `config set cluster` naming (or reaching) a version no higher one could follow.
    pub const VERSION_TOO_HIGH: &str = "CLIENT_ERROR cluster configuration version too high";
    /// `config set` of a key other than `cluster`.
    pub const UNKNOWN_KEY: &str = "CLIENT_ERROR unknown configuration key";
}

/// Why `config set|delete cluster` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The node was not started with `--cluster-config-writable`.
    ReadOnly,
    /// The payload is not a configuration.
    Bad(ConfigError),
    /// The version it names, or the one it would be published under, leaves no
    /// higher version ([`MAX_VERSION`]).
    TooHigh(u64),
}

/// The node's cluster configuration and its counters.
#[derive(Debug, Default)]
pub struct ClusterState {
    current: RwLock<Option<Arc<Published>>>,
    /// The highest version published so far (kept across a delete).
    last_version: AtomicU64,
    /// Not `--cluster-config-writable`: `config set|delete` refused.
    readonly: bool,
    /// `config get` requests (all forms), for `stats cmd_config_get`.
    pub gets: AtomicU64,
    /// `config set` requests (refused ones too), for `stats cmd_config_set`.
    pub sets: AtomicU64,
}

impl Refusal {
    /// The reply line.
    pub fn reply(&self) -> &'static str {
        match self {
            Refusal::ReadOnly => replies::READ_ONLY,
            Refusal::Bad(ConfigError::VersionTooHigh(_)) | Refusal::TooHigh(_) => {
                replies::VERSION_TOO_HIGH
            }
            Refusal::Bad(_) => replies::BAD_CONFIG,
        }
    }
}

impl ClusterState {
    /// An empty state; `writable` serves changes over the wire
    /// (`--cluster-config-writable`), else they are refused.
    pub fn new(writable: bool) -> ClusterState {
        ClusterState {
            readonly: !writable,
            ..ClusterState::default()
        }
    }

    /// The configuration in force, if any.
    #[inline]
    pub fn current(&self) -> Option<Arc<Published>> {
        self.current.read().clone()
    }

    /// Whether a configuration is stored (`curr_config`: 0 or 1).
    pub fn stored(&self) -> bool {
        self.current.read().is_some()
    }

    /// The version in force (0 when none was ever published).
    pub fn version(&self) -> u64 {
        self.current
            .read()
            .as_ref()
            .map(|p| p.config.version)
            .unwrap_or_else(|| self.last_version.load(Ordering::Relaxed))
    }

    /// Publishes `nodes`, under `wanted` if it is newer than the last version, else
    /// under the last version + 1. Returns the version published, or refuses when
    /// that version would leave no higher one ([`MAX_VERSION`]): nothing changes.
    fn publish(&self, wanted: Option<u64>, nodes: Vec<ClusterNode>) -> Result<u64, Refusal> {
        if let Some(v) = wanted.filter(|&v| v >= MAX_VERSION) {
            return Err(Refusal::TooHigh(v));
        }
        let mut cur = self.current.write();
        let last = self.last_version.load(Ordering::Relaxed);
        let version = match wanted {
            Some(v) if v > last => v,
            _ => last.saturating_add(1),
        };
        if version >= MAX_VERSION {
            return Err(Refusal::TooHigh(version));
        }
        self.last_version.store(version, Ordering::Relaxed);
        let config = ClusterConfig { version, nodes };
        let payload = config.payload();
        *cur = Some(Arc::new(Published { config, payload }));
        Ok(version)
    }

    /// `config set cluster`: the payload as `config get cluster` returns it.
    pub fn set(&self, payload: &[u8]) -> Result<u64, Refusal> {
        self.sets.fetch_add(1, Ordering::Relaxed);
        if self.readonly {
            return Err(Refusal::ReadOnly);
        }
        let c = ClusterConfig::parse_payload(payload).map_err(Refusal::Bad)?;
        self.publish(Some(c.version), c.nodes)
    }

    /// `config delete cluster`: whether there was a configuration.
    pub fn delete(&self) -> Result<bool, Refusal> {
        if self.readonly {
            return Err(Refusal::ReadOnly);
        }
        Ok(self.current.write().take().is_some())
    }

    /// Loads `--cluster-config`: publishes the file's list when it differs from the
    /// one in force (or names a newer version). Returns the version in force after.
    pub fn load_file(&self, path: &Path) -> Result<u64, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cluster config {}: {e}", path.display()))?;
        let (wanted, nodes) = ClusterConfig::parse_file(&text)
            .map_err(|e| format!("cluster config {}: {e}", path.display()))?;
        if let Some(p) = self.current() {
            let newer = wanted.is_some_and(|v| v > p.config.version);
            if p.config.nodes == nodes && !newer {
                return Ok(p.config.version);
            }
        }
        self.publish(wanted, nodes).map_err(|_| {
            format!(
                "cluster config {}: the version would reach {MAX_VERSION}, after which no \
                 client could follow a change: refused",
                path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_only_rise() {
        let s = ClusterState::new(true);
        assert_eq!(s.version(), 0);
        assert_eq!(s.set(b"5\na||1\n"), Ok(5));
        // A lower or equal version is raised past the last one.
        assert_eq!(s.set(b"2\na||1 b||2\n"), Ok(6));
        assert_eq!(s.delete(), Ok(true));
        assert_eq!(s.delete(), Ok(false));
        assert!(s.current().is_none());
        assert_eq!(s.version(), 6);
        assert_eq!(s.set(b"1\na||1\n"), Ok(7));
        assert!(matches!(s.set(b"x\n"), Err(Refusal::Bad(_))));
        assert_eq!(s.sets.load(Ordering::Relaxed), 4);
        let ro = ClusterState::new(false);
        assert_eq!(ro.set(b"1\na||1\n"), Err(Refusal::ReadOnly));
        assert_eq!(ro.delete(), Err(Refusal::ReadOnly));
    }

    #[test]
    fn versions_that_could_not_be_followed_are_refused() {
        let s = ClusterState::new(true);
        let set = |v: u64| s.set(format!("{v}\na||1\n").as_bytes());
        assert_eq!(
            set(u64::MAX).map_err(|r| r.reply()),
            Err(replies::VERSION_TOO_HIGH)
        );
        assert_eq!(set(MAX_VERSION), Err(Refusal::TooHigh(MAX_VERSION)));
        assert!(s.current().is_none(), "nothing published");
        // The last followable version is taken; nothing after it can be.
        assert_eq!(set(MAX_VERSION - 1), Ok(MAX_VERSION - 1));
        assert_eq!(set(1), Err(Refusal::TooHigh(MAX_VERSION)));
        assert_eq!(s.version(), MAX_VERSION - 1);
    }

    #[test]
    fn file_reload_publishes_only_changes() {
        let dir = std::env::temp_dir().join(format!("fc-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("nodes");
        std::fs::write(&f, "127.0.0.1:11211\n127.0.0.1:11212\n").unwrap();
        let s = ClusterState::new(false);
        assert_eq!(s.load_file(&f), Ok(1));
        assert_eq!(s.load_file(&f), Ok(1));
        std::fs::write(&f, "127.0.0.1:11211\n").unwrap();
        assert_eq!(s.load_file(&f), Ok(2));
        std::fs::write(&f, "10\n127.0.0.1:11211\n").unwrap();
        assert_eq!(s.load_file(&f), Ok(10));
        std::fs::write(&f, "bogus entry\n").unwrap();
        assert!(s.load_file(&f).is_err());
        assert_eq!(s.version(), 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
