//! Warm restart and online snapshots of a running server (the file format and the
//! per-shard copy are in [`crate::store::snapshot`]).
//!
//! - Start ([`restore_at_start`], before any connection is accepted): `--restore FILE`,
//!   else `-e FILE`, is loaded. The `-e` file is consumed, as memcached removes its
//!   `.meta` file at start: renamed to `FILE.loading` before it is read (a start that
//!   dies while loading does not load it again: no restart loop), then removed when
//!   it loaded cleanly or renamed to `FILE.bad` when it was refused or damaged,
//!   whatever it is (a FIFO, a directory, a symlink: the name itself is renamed), so a
//!   crash later never brings back an old copy and a bad file never stops the next
//!   start. A `--restore` file is left alone. While it loads, the service manager is
//!   told once a second that the start goes on (`EXTEND_TIMEOUT_USEC`,
//!   [`crate::notify::still_loading`]).
//! - Graceful stop (SIGUSR1, `shutdown graceful`) with `-e FILE`: after the workers
//!   have stopped, the cache is saved to FILE ([`save_at_stop`]). SIGTERM/SIGINT do not
//!   save, as in memcached.
//! - Online (`snapshot [<name>]` with `--snapshot-dir DIR`, SIGUSR2): a request is
//!   taken by the maintenance thread, which starts a thread that writes
//!   `DIR/<name>` while the server keeps serving; one at a time; `stats` shows it.
//!   Names are `[A-Za-z0-9._+-]`, at most 200 bytes, not starting with `.` nor
//!   ending in `.tmp`. The directory holds at most `--snapshot-limit` snapshot files
//!   (default 8; files that start with the snapshot magic, symlinks not followed):
//!   a snapshot that would add one more is refused (`SERVER_ERROR snapshot limit
//!   reached`; replacing an existing name is allowed), so clients cannot fill the
//!   disk: it holds at most that many snapshots of at most the cache's size each.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::Config;
use crate::store::snapshot::{self, SnapStats};
use crate::store::{Clock, Store};

/// What snapshots and warm restarts work with: the settings, the store, the clock and
/// the snapshot state (`Shared::snapshot` lends them).
#[derive(Clone, Copy)]
pub struct Snapshot<'a> {
    /// Settings (`-e`, `--restore`, `--snapshot-dir`, `--snapshot-limit`).
    pub config: &'a Config,
    /// The item store.
    pub store: &'a Store,
    /// The clock (file times, default names).
    pub clock: &'a Clock,
    /// Progress, figures, the requested online snapshot.
    pub state: &'a Snapshots,
}

/// An online snapshot rests this many times as long as it worked after each block:
/// at most a third of a core per snapshot thread, so the workers keep theirs
/// (`ferrocache-bench snapshot`: with 0, p99 of workload (a) was 2.3x on two cores).
const ONLINE_PACE: u32 = 2;

/// Threads for a save or load while nothing else runs.
fn all_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16)
}

/// `FILE.bad`.
fn bad_path(p: &Path) -> PathBuf {
    suffixed(p, ".bad")
}

/// `FILE<suffix>`.
fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Loads `source` (the snapshot named `shown`) into the store, telling the service
/// manager once a second that the start goes on (`EXTEND_TIMEOUT_USEC`), so that a
/// large restore is not killed by the unit's start timeout.
fn load_notifying(snap: Snapshot<'_>, source: &Path, shown: &Path) -> snapshot::LoadReport {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let status = format!("restoring the cache from {}", shown.display());
    std::thread::scope(|s| {
        let status = &status;
        s.spawn(move || loop {
            crate::notify::still_loading(status);
            match done_rx.recv_timeout(std::time::Duration::from_secs(1)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        });
        let rep = snapshot::load(snap.store, source, all_threads(), &snap.state.stats);
        drop(done_tx);
        rep
    })
}

/// Loads `--restore FILE` or the `-e FILE` into the store of a server that does not
/// serve yet; logs what happened (progress at `-v`), counts it in `stats`.
pub fn restore_at_start(snap: Snapshot<'_>) {
    let cfg = &snap.config;
    let (path, consume) = match (&cfg.restore_file, &cfg.memory_file) {
        (Some(r), _) => (r.clone(), false),
        (None, Some(e)) => (e.clone(), true),
        (None, None) => return,
    };
    if consume && std::fs::symlink_metadata(&path).is_err() {
        log::info!(
            "warm restart: no {} (first start, or not stopped with SIGUSR1): starting empty",
            path.display()
        );
        return;
    }
    // The -e file is consumed before it is read: a start that dies while loading
    // (killed at a timeout, out of memory) leaves it as FILE.loading and the next start
    // is empty, instead of loading it again in a restart loop.
    let source = if consume {
        let loading = suffixed(&path, ".loading");
        match std::fs::rename(&path, &loading) {
            Ok(()) => loading,
            Err(e) => {
                log::warn!("warm restart: cannot move {} aside: {e}", path.display());
                path.clone()
            }
        }
    } else {
        path.clone()
    };
    let rep = load_notifying(snap, &source, &path);
    let what = if consume { "warm restart" } else { "restore" };
    match (&rep.error, rep.refused) {
        (Some(e), true) => log::error!("{what}: {} refused: {e}; starting empty", path.display()),
        (Some(e), false) => log::error!(
            "{what}: {}: {e}; kept the {} items of the blocks verified before it",
            path.display(),
            rep.loaded
        ),
        (None, _) => {}
    }
    if !rep.refused {
        log::info!(
            "{what}: {} items loaded from {} in {:.2} s ({} MiB; {} dropped for memory, \
             {} expired during the downtime, {} above -I, {} duplicates); saved by \
             ferrocache {}",
            rep.loaded,
            path.display(),
            rep.duration.as_secs_f64(),
            rep.bytes_read >> 20,
            rep.dropped,
            rep.expired,
            rep.too_large,
            rep.duplicates,
            rep.header
                .as_ref()
                .map(|h| h.version.as_str())
                .unwrap_or("?")
        );
    }
    if consume {
        if rep.error.is_none() {
            if let Err(e) = std::fs::remove_file(&source) {
                log::warn!("warm restart: cannot remove {}: {e}", source.display());
            }
        } else {
            // Whatever it is (a FIFO, a directory, a symlink: rename moves the name,
            // following nothing): the next start must not meet it again.
            let bad = bad_path(&path);
            match std::fs::rename(&source, &bad) {
                Ok(()) => log::warn!("warm restart: the file was moved to {}", bad.display()),
                Err(e) => log::warn!("warm restart: cannot move {} aside: {e}", path.display()),
            }
        }
    }
}

/// With `-e FILE`: saves the cache to FILE (the server has stopped serving).
/// Returns false when the save failed (logged).
pub fn save_at_stop(snap: Snapshot<'_>) -> bool {
    let Some(path) = &snap.config.memory_file else {
        return true;
    };
    let st = &snap.state.stats;
    if !snap.state.acquire() {
        log::error!("warm restart: a snapshot did not finish; not saved");
        return false;
    }
    let r = snapshot::save(snap.store, path, snap.clock.unix_time(), all_threads(), st);
    let ok = finish(st, &r);
    match r {
        Ok(rep) => log::info!(
            "warm restart: {} items saved to {} in {:.2} s ({} MiB)",
            rep.items,
            path.display(),
            rep.duration.as_secs_f64(),
            rep.bytes >> 20
        ),
        Err(e) => log::error!("warm restart: saving to {} failed: {e}", path.display()),
    }
    ok
}

/// Records the end of a snapshot in `stats`.
fn finish(st: &SnapStats, r: &Result<snapshot::SaveReport, String>) -> bool {
    let started = st.started_ms.load(Ordering::Relaxed);
    st.last_duration_ms
        .store(unix_ms().saturating_sub(started), Ordering::Relaxed);
    let ok = r.is_ok();
    if ok {
        st.completed.fetch_add(1, Ordering::Relaxed);
    } else {
        st.failed.fetch_add(1, Ordering::Relaxed);
    }
    st.in_progress.store(false, Ordering::Release);
    ok
}

/// A snapshot file name a client may ask for: 1 to 200 of `[A-Za-z0-9._+-]`, not
/// starting with `.` (no hidden files, no `..`) nor ending in `.tmp` (the name of a
/// save in progress). No `/`, no control characters, nothing a shell or a log line
/// would read differently.
fn valid_name(name: &[u8]) -> Option<&str> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name[0] != b'.'
        && !name.ends_with(b".tmp")
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        std::str::from_utf8(name).ok()
    } else {
        None
    }
}

/// Snapshot files in `dir` (see [`snapshot::is_snapshot_file`]), at most `cap + 1`
/// looked at.
fn snapshot_files(dir: &Path, cap: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| snapshot::is_snapshot_file(&e.path()))
        .take(cap + 1)
        .count()
}

/// Whether one more snapshot may be written to `path`: the directory holds fewer
/// than `--snapshot-limit` snapshot files, or `path` is one of them (replaced).
fn within_limit(snap: Snapshot<'_>, dir: &Path, path: &Path) -> bool {
    let limit = snap.config.snapshot_limit as usize;
    snapshot::is_snapshot_file(path) || snapshot_files(dir, limit) < limit
}

/// The reply (and log line) of a snapshot refused by `--snapshot-limit`.
pub const LIMIT_REACHED: &str = "SERVER_ERROR snapshot limit reached";

/// The default name: `ferrocache-<unix seconds>.snap`.
fn default_name(snap: Snapshot<'_>) -> String {
    format!("ferrocache-{}.snap", snap.clock.unix_time())
}

/// The `snapshot [<name>]` command: its reply line.
pub fn command(snap: Snapshot<'_>, name: Option<&[u8]>) -> String {
    let Some(dir) = &snap.config.snapshot_dir else {
        return "ERROR: snapshot not enabled".into();
    };
    let name = match name {
        None => default_name(snap),
        Some(n) => match valid_name(n) {
            Some(s) => s.to_string(),
            None => return "CLIENT_ERROR bad snapshot name".into(),
        },
    };
    let path = dir.join(&name);
    if !within_limit(snap, dir, &path) {
        log::warn!(
            "snapshot {name}: refused: {} already holds --snapshot-limit {} snapshot files",
            dir.display(),
            snap.config.snapshot_limit
        );
        return LIMIT_REACHED.into();
    }
    if snap.state.request(path) {
        format!("OK {name}")
    } else {
        "BUSY snapshot in progress".into()
    }
}

/// SIGUSR2: an online snapshot named by the time, with `--snapshot-dir`.
pub fn on_signal(snap: Snapshot<'_>) {
    match &snap.config.snapshot_dir {
        None => log::warn!("SIGUSR2: no --snapshot-dir: no snapshot written"),
        Some(dir) => {
            let path = dir.join(default_name(snap));
            if !within_limit(snap, dir, &path) {
                log::warn!(
                    "SIGUSR2: no snapshot written: {} already holds --snapshot-limit {} \
                     snapshot files",
                    dir.display(),
                    snap.config.snapshot_limit
                );
            } else if !snap.state.request(path.clone()) {
                log::warn!("SIGUSR2: a snapshot is in progress");
            } else {
                log::info!("SIGUSR2: writing a snapshot to {}", path.display());
            }
        }
    }
}

/// Called by the maintenance thread: starts a requested online snapshot on a thread
/// of its own (fewer threads than the machine has: the server keeps serving). `owner`
/// keeps what `parts` lends alive on that thread.
pub fn start_requested<T: Send + Sync + 'static>(owner: &Arc<T>, parts: fn(&T) -> Snapshot<'_>) {
    let Some(path) = parts(owner).state.take_request() else {
        return;
    };
    let owner2 = owner.clone();
    let threads = (all_threads() / 2).max(1);
    let spawned = std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            let snap = parts(&owner2);
            let st = &snap.state.stats;
            st.started_ms.store(unix_ms(), Ordering::Relaxed);
            let r = snapshot::save_paced(
                snap.store,
                &path,
                snap.clock.unix_time(),
                threads,
                ONLINE_PACE,
                st,
            );
            finish(st, &r);
            match r {
                Ok(rep) => log::info!(
                    "snapshot: {} items written to {} in {:.2} s ({} MiB)",
                    rep.items,
                    path.display(),
                    rep.duration.as_secs_f64(),
                    rep.bytes >> 20
                ),
                Err(e) => log::error!("snapshot to {} failed: {e}", path.display()),
            }
        });
    if let Err(e) = spawned {
        log::error!("snapshot: cannot start a thread: {e}");
        let st = &parts(owner).state.stats;
        st.failed.fetch_add(1, Ordering::Relaxed);
        st.in_progress.store(false, Ordering::Release);
    }
}

/// Snapshot state of a server: figures for `stats` and a requested online snapshot.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Progress and results, for `stats`.
    pub stats: SnapStats,
    requested: Mutex<Option<std::path::PathBuf>>,
}

impl Snapshots {
    /// Takes the online snapshot asked for, if any (the maintenance thread starts it).
    pub(crate) fn take_request(&self) -> Option<std::path::PathBuf> {
        self.requested.lock().take()
    }

    /// Asks for an online snapshot to `path`; false when one is in progress.
    pub fn request(&self, path: std::path::PathBuf) -> bool {
        if self
            .stats
            .in_progress
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.stats.started_ms.store(unix_ms(), Ordering::Relaxed);
        self.stats.bytes_written.store(0, Ordering::Relaxed);
        self.stats.items_written.store(0, Ordering::Relaxed);
        *self.requested.lock() = Some(path);
        true
    }

    /// Waits until no snapshot is in progress, then marks one as in progress (for the
    /// save at stop). Bounded: gives up after ten minutes.
    pub(crate) fn acquire(&self) -> bool {
        for _ in 0..(10 * 60 * 20) {
            if self
                .stats
                .in_progress
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.stats.started_ms.store(unix_ms(), Ordering::Relaxed);
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
