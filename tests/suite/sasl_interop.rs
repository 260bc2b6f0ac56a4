//! SASL over the binary protocol with real clients, against `ferrocache -S --sasl-pwdb FILE`:
//! python-binary-memcached (`bmemcached`, which speaks PLAIN only) and pylibmc
//! (libmemcached + Cyrus SASL, which picks the strongest mechanism we list), with a
//! memcached-style plain `user:password` file and with a salted entry written by
//! `ferrocache passwd`. The python scripts are in tests/interop/.
use crate::common;
use crate::common::*;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Debian's python, which has the client modules (not a `python3` found on PATH).
const PYTHON: &str = "/usr/bin/python3";
/// Exit status the python scripts use when their client module is missing.
const SKIP_STATUS: i32 = 77;
/// Bound on one python script run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);
/// Mechanisms listed when some user has a plain password.
const ALL_MECHS: &str = "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN";
/// Mechanisms listed when the only user has a salted SCRAM-SHA-256 entry.
const SALTED_256_MECHS: &str = "SCRAM-SHA-256 PLAIN";

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir for one test's credentials files;
/// removed with its contents on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ferrocache-sasl-interop-{}-{n}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        TempDir(path)
    }

    /// Writes `name` with `contents`, mode 0644 (the server may run as nobody).
    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod credentials file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The tests exercise our `--sasl-pwdb` and `passwd`; the reference has neither.
fn skip_for_reference() -> bool {
    if targeting_reference() {
        common::skip("FERRO_TEST_SERVER is set; SASL interop tests use ferrocache's --sasl-pwdb");
        return true;
    }
    false
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A plain memcached-style credentials file: alice/wonderland and bob/builder-2.
fn plain_pwdb(dir: &TempDir) -> PathBuf {
    dir.write(
        "pwdb",
        "# memcached-style plain passwords\nalice:wonderland\nbob:builder-2\n",
    )
}

/// Runs `ferrocache passwd --file FILE USER` with the password on stdin (bounded).
fn passwd(file: &Path, user: &str, password: &str) {
    let mut child = Command::new(FERROCACHE)
        .args(["passwd", "--file", path_str(file), user])
        .env_remove("MEMCACHED_SASL_PWDB")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrocache passwd");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password to ferrocache passwd");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait ferrocache passwd") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrocache passwd did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "ferrocache passwd: {status}\n{stderr}");
    assert!(
        !stderr.contains(password),
        "passwd echoed the password: {stderr}"
    );
}

/// A credentials file whose only entry is USER's salted SCRAM-SHA-256 entry, written by
/// `ferrocache passwd`; checks the file holds no plain password.
fn salted_pwdb(dir: &TempDir, user: &str, password: &str) -> PathBuf {
    let file = dir.write(
        "pwdb-salted",
        "# salted entries written by ferrocache passwd\n",
    );
    passwd(&file, user, password);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .expect("chmod credentials file");
    let text = std::fs::read_to_string(&file).expect("read credentials file");
    let entries: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(entries.len(), 1, "one salted entry expected:\n{text}");
    assert!(
        entries[0].starts_with(&format!("{user}:$scram-sha-256$4096$")),
        "not a salted SCRAM-SHA-256 entry:\n{text}"
    );
    assert!(
        !text.contains(password),
        "the credentials file holds the plain password:\n{text}"
    );
    file
}

/// Starts ferrocache with SASL required and credentials from `pwdb`.
fn sasl_server(pwdb: &Path) -> Server {
    Server::ferrocache(&["-S", "--sasl-pwdb", path_str(pwdb)])
}

/// Runs tests/interop/`script` with `/usr/bin/python3` against `server`, then `args`.
/// Returns None when the client module is missing outside CI (the test skips); fails
/// unless the script exits 0 with a final `N passed, 0 failed` line.
fn run_script(script: &str, server: &Server, args: &[&str]) -> Option<Run> {
    if !require_tool(PYTHON) {
        return None;
    }
    let path = format!("{}/tests/interop/{script}", env!("CARGO_MANIFEST_DIR"));
    let port = server.port.to_string();
    let run = run_bounded(
        Command::new(PYTHON)
            .args([path.as_str(), "127.0.0.1", port.as_str()])
            .args(args),
        SCRIPT_LIMIT,
    );
    print!("{}", run.stdout);
    eprint!("{}", run.stderr);
    let code = run.status.and_then(|s| s.code());
    if code == Some(SKIP_STATUS) {
        if in_ci() {
            panic!("{script}: python client module missing under CI");
        }
        common::skip(&format!("{script}: client module not installed"));
        return None;
    }
    assert!(
        run.status.is_some(),
        "{script} did not finish in {SCRIPT_LIMIT:?}\n{}{}",
        run.stdout,
        run.stderr
    );
    let summary = run
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or("");
    assert!(
        code == Some(0) && summary.ends_with(" 0 failed"),
        "{script} exit {code:?}, summary {summary:?}\n{}{}",
        run.stdout,
        run.stderr
    );
    Some(run)
}

/// The pylibmc script's report of the mechanism(s) its forwarder saw in SASL_AUTH.
fn mechanism_used(run: &Run) -> &str {
    run.stdout
        .lines()
        .find_map(|l| l.strip_prefix("mechanism used: "))
        .unwrap_or("(no 'mechanism used' line)")
}

#[test]
fn bmemcached_plain_with_plain_password_file() {
    if skip_for_reference() {
        return;
    }
    let dir = TempDir::new("bm-plain");
    let pwdb = plain_pwdb(&dir);
    let server = sasl_server(&pwdb);
    run_script(
        "bmemcached_sasl_check.py",
        &server,
        &["alice", "wonderland", ALL_MECHS],
    );
}

#[test]
fn bmemcached_plain_with_salted_entry_from_passwd() {
    if skip_for_reference() {
        return;
    }
    let dir = TempDir::new("bm-salted");
    let pwdb = salted_pwdb(&dir, "carol", "s4lted secret!");
    let server = sasl_server(&pwdb);
    run_script(
        "bmemcached_sasl_check.py",
        &server,
        &["carol", "s4lted secret!", SALTED_256_MECHS],
    );
}

#[test]
fn pylibmc_picks_scram_sha_256_with_plain_password_file() {
    if skip_for_reference() {
        return;
    }
    let dir = TempDir::new("plm-plain");
    let pwdb = plain_pwdb(&dir);
    let server = sasl_server(&pwdb);
    let Some(run) = run_script(
        "pylibmc_sasl_check.py",
        &server,
        &["bob", "builder-2", "SCRAM-SHA-256"],
    ) else {
        return;
    };
    assert_eq!(mechanism_used(&run), "SCRAM-SHA-256", "{}", run.stdout);
}

#[test]
fn pylibmc_scram_sha_256_with_salted_entry_only() {
    if skip_for_reference() {
        return;
    }
    let dir = TempDir::new("plm-salted");
    let pwdb = salted_pwdb(&dir, "dave", "d4ve-Pass");
    let server = sasl_server(&pwdb);
    let Some(run) = run_script(
        "pylibmc_sasl_check.py",
        &server,
        &["dave", "d4ve-Pass", "SCRAM-SHA-256"],
    ) else {
        return;
    };
    assert_eq!(mechanism_used(&run), "SCRAM-SHA-256", "{}", run.stdout);
}
