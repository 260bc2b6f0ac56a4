//! Start-up check of the directories a server will write its cache into: the
//! directory of `-e FILE` (warm restart) and `--snapshot-dir DIR` (online snapshots).
//!
//! memcached refuses to start when it cannot open its `-e` file (`failed to open file
//! for mmap`, then `abort()`: exit status 134). We check at start, once privileges are
//! dropped, that each directory exists and that the `-u` user may create files in it,
//! and refuse to start otherwise with a message naming the directory, the user and the
//! reason, and exit status 73 (`EX_CANTCREAT`, "cannot create an output file"): the
//! save at a graceful stop, hours later, would fail and lose the cache the operator
//! meant to keep. A save that fails anyway at the stop makes the process exit 73 too.

use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use crate::config::Config;

/// `sysexits.h` `EX_CANTCREAT`: what a start refused for an unwritable `-e` or
/// `--snapshot-dir` directory, and a graceful stop whose save failed, exit with.
pub const EX_CANTCREAT: i32 = 73;

/// The directory a file is created in (`.` for a bare name).
fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The name of the user this process runs as, for messages.
fn user_name() -> String {
    let uid = nix::unistd::Uid::effective();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

/// Why files cannot be created in `dir` by this process, if they cannot.
fn unwritable(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Err(e) => return Some(e.to_string()),
        Ok(m) if !m.is_dir() => return Some("not a directory".into()),
        Ok(_) => {}
    }
    // access(2) also answers EROFS for a read-only mount (systemd's ProtectSystem).
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
        .err()
        .map(|e| e.desc().to_string())
}

/// Checks the `-e` and `--snapshot-dir` directories (call it as the `-u` user); the
/// message to stop with otherwise.
pub fn check(cfg: &Config) -> Result<(), String> {
    if let Some(file) = &cfg.memory_file {
        let dir = parent_dir(file);
        if let Some(why) = unwritable(&dir) {
            return Err(format!(
                "failed to use -e {}: cannot create files in {} as user {}: {why} \
                 (the cache could not be saved at a graceful stop)",
                file.display(),
                dir.display(),
                user_name()
            ));
        }
    }
    if let Some(dir) = &cfg.snapshot_dir {
        if let Some(why) = unwritable(dir) {
            return Err(format!(
                "failed to use --snapshot-dir {}: cannot create files in it as user {}: {why}",
                dir.display(),
                user_name()
            ));
        }
    }
    Ok(())
}
