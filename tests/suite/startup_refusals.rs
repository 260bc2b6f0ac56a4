//! What a server cannot honour stops it at start, with a message and an exit status an
//! operator can act on (issue #25): an `-e` or `--snapshot-dir` directory the `-u` user
//! cannot write into (memcached 1.6.18: `failed to open file for mmap`, abort), a save
//! that fails at a graceful stop, and memcached's extstore options.

use crate::common::*;

use std::process::Command;
use std::time::Duration;

/// sysexits' `EX_CANTCREAT`: a directory the cache cannot be written into.
const EX_CANTCREAT: i32 = 73;
/// sysexits' `EX_USAGE`: an option ferrocache cannot honour.
const EX_USAGE: i32 = 64;

/// `-l 127.0.0.1 -p <free> -U 0` (and `-u nobody` as root), then `extra`.
fn args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["-l", "127.0.0.1", "-p", &free_port().to_string(), "-U", "0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if is_root() {
        v.extend(["-u".to_string(), "nobody".to_string()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Runs a server expected to refuse to start: (exit code, stderr).
fn refused(bin: &str, extra: &[&str]) -> (Option<i32>, String) {
    let run = run_bounded(Command::new(bin).args(args(extra)), Duration::from_secs(10));
    let status = run
        .status
        .unwrap_or_else(|| panic!("{bin} {extra:?} did not exit: it started"));
    assert!(
        !status.success(),
        "{bin} {extra:?} exited 0: {}",
        run.stderr
    );
    (status.code(), run.stderr)
}

/// A directory the server's user cannot write into: as root the servers run as
/// nobody (the scratch directory is root's, mode 0755); otherwise mode 0555.
fn unwritable_dir() -> Scratch {
    let dir = Scratch::new("unwritable");
    if !is_root() {
        set_mode(&dir.0, 0o555);
    }
    dir
}

#[test]
fn memory_file_in_a_missing_directory_refuses_to_start_like_memcached() {
    let file = "/nonexistent-ferrocache-dir/cache";
    if require_tool(MEMCACHED) {
        let (_, said) = refused(MEMCACHED, &["-e", file]);
        assert!(said.contains("failed to open file for mmap"), "{said}");
    }
    let (code, said) = refused(&ferrocache_bin(), &["-e", file]);
    assert_eq!(code, Some(EX_CANTCREAT), "{said}");
    assert!(
        said.contains("failed to use -e /nonexistent-ferrocache-dir/cache")
            && said.contains("cannot create files in /nonexistent-ferrocache-dir")
            && said.contains("No such file or directory"),
        "{said}"
    );
}

#[test]
fn memory_file_in_a_directory_the_user_cannot_write_refuses_to_start_like_memcached() {
    let dir = unwritable_dir();
    let file = dir.path("cache");
    if require_tool(MEMCACHED) {
        let (_, said) = refused(MEMCACHED, &["-e", &file]);
        assert!(said.contains("failed to open file for mmap"), "{said}");
    }
    let (code, said) = refused(&ferrocache_bin(), &["-e", &file]);
    assert_eq!(code, Some(EX_CANTCREAT), "{said}");
    assert!(said.contains("Permission denied"), "{said}");
    if is_root() {
        assert!(said.contains("as user nobody"), "{said}");
    }
    // The same directory opened to the user: the server starts.
    dir.open_to_all();
    let s = Server::ferrocache(&["-e", &file]);
    assert!(s.connect().line("version\r\n").starts_with("VERSION "));
}

#[test]
fn snapshot_dir_missing_or_unwritable_refuses_to_start() {
    let (code, said) = refused(
        &ferrocache_bin(),
        &["--snapshot-dir", "/nonexistent-ferrocache-dir"],
    );
    assert_eq!(code, Some(EX_CANTCREAT), "{said}");
    assert!(
        said.contains("--snapshot-dir /nonexistent-ferrocache-dir"),
        "{said}"
    );
    let dir = unwritable_dir();
    let (code, said) = refused(&ferrocache_bin(), &["--snapshot-dir", &dir.path("")]);
    assert_eq!(code, Some(EX_CANTCREAT), "{said}");
    assert!(said.contains("Permission denied"), "{said}");
    let file = dir.file("plain-file", "");
    let (code, said) = refused(&ferrocache_bin(), &["--snapshot-dir", &file]);
    assert_eq!(code, Some(EX_CANTCREAT), "{said}");
    assert!(said.contains("not a directory"), "{said}");
}

#[test]
fn a_save_that_fails_at_sigusr1_is_no_success() {
    let dir = Scratch::new("save-fails");
    dir.open_to_all();
    let sub = dir.0.join("gone");
    std::fs::create_dir(&sub).expect("mkdir");
    set_mode(&sub, 0o777);
    let file = sub.join("cache").to_string_lossy().into_owned();
    let mut s = Server::ferrocache(&["-e", &file]);
    let mut c = s.connect();
    c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    drop(c);
    // The directory goes away while the server runs: the save cannot be made.
    std::fs::remove_dir_all(&sub).expect("rm");
    let status = s.signal_and_wait("USR1").expect("exit after SIGUSR1");
    assert_eq!(status.code(), Some(EX_CANTCREAT), "{status:?}");
    // A save that works exits 0 (the graceful stop memcached has).
    std::fs::create_dir(&sub).expect("mkdir");
    set_mode(&sub, 0o777);
    let mut s = Server::ferrocache(&["-e", &file]);
    let status = s.signal_and_wait("USR1").expect("exit after SIGUSR1");
    assert!(status.success(), "{status:?}");
    assert!(std::path::Path::new(&file).exists());
}

#[test]
fn extstore_options_are_refused_at_start() {
    let dir = Scratch::new("extstore");
    dir.open_to_all();
    let ext = format!("ext_path={}:64m", dir.path("extstore"));
    for opt in [
        ext.as_str(),
        "ext_item_size=512",
        "ext_threads=2",
        "ext_page_size=8",
        "slab_automove_freeratio=0.01",
    ] {
        let (code, said) = refused(&ferrocache_bin(), &["-o", opt]);
        assert_eq!(code, Some(EX_USAGE), "-o {opt}: {said}");
        assert!(
            said.contains(&format!("-o {opt}: extstore")) && said.contains("not served"),
            "-o {opt}: {said}"
        );
    }
    // Debian's memcached serves it: an operator migrating such a node needs to know.
    if require_tool(MEMCACHED) {
        let s = Server::memcached(&["-o", &ext]).expect("memcached");
        assert!(s.connect().line("version\r\n").starts_with("VERSION "));
    }
}
