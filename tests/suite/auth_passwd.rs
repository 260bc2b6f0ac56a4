//! Runs the real binary's `passwd` subcommand on a temporary credentials file, then
//! authenticates with the `sasl` crate's client against an `AuthDb` loaded from it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use ferrocache::auth::{AuthDb, AuthSession, Step, AUTHENTICATED};
use sasl::client::mechanisms::{Plain, Scram};
use sasl::client::Mechanism;
use sasl::common::scram::{ScramProvider, Sha1, Sha256};
use sasl::common::ChannelBinding;

struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        TempFile(
            std::env::temp_dir().join(format!("ferrocache-passwd-{tag}-{}", std::process::id())),
        )
    }
    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn passwd(args: &[&str], env_file: Option<&str>, stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrocache"));
    cmd.arg("passwd").args(args);
    cmd.env_remove("MEMCACHED_SASL_PWDB");
    if let Some(f) = env_file {
        cmd.env("MEMCACHED_SASL_PWDB", f);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrocache passwd");
    // A usage error exits before reading stdin: a broken pipe here is expected then.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait")
}

fn scram<S: ScramProvider>(db: &AuthDb, mech: &[u8], user: &str, pw: &str) -> bool {
    let mut c = Scram::<S>::new(user, pw, ChannelBinding::None).expect("client");
    let (mut s, step) = AuthSession::start(db, mech, &c.initial());
    let Step::Continue(ch) = step else {
        return false;
    };
    let Ok(fin) = c.response(&ch) else {
        return false;
    };
    let Step::Continue(server_final) = s.step(&fin) else {
        return false;
    };
    if c.success(&server_final).is_err() {
        return false;
    }
    s.step(b"") == Step::Success(AUTHENTICATED.to_vec()) && s.user() == Some(user)
}

fn plain(db: &AuthDb, user: &str, pw: &str) -> bool {
    let mut c = Plain::new(user, pw);
    AuthSession::start(db, b"PLAIN", &c.initial()).1 == Step::Success(AUTHENTICATED.to_vec())
}

#[test]
fn passwd_writes_usable_salted_entries() {
    let f = TempFile::new("main");
    std::fs::write(&f.0, "# users\nalice:wonderland\nbob:plainpw\ncarol:x\n").expect("write");
    std::fs::set_permissions(&f.0, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    // Replace bob's plain password by a SHA-256 entry, via --file.
    let out = passwd(&["--file", &f.path(), "bob"], None, b"n3w secret\n");
    assert!(out.status.success(), "{:?}", out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("n3w secret") && out.stdout.is_empty(),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&f.0).expect("read");
    assert!(
        !text.contains("plainpw") && !text.contains("n3w secret"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(&lines[..2], &["# users", "alice:wonderland"]);
    assert!(lines[2].starts_with("bob:$scram-sha-256$4096$"), "{text}");
    assert_eq!(lines[3], "carol:x");
    let mode = std::fs::metadata(&f.0).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    let db = AuthDb::load(&f.path()).expect("load");
    assert!(scram::<Sha256>(&db, b"SCRAM-SHA-256", "bob", "n3w secret"));
    assert!(!scram::<Sha256>(&db, b"SCRAM-SHA-256", "bob", "plainpw"));
    assert!(!scram::<Sha1>(&db, b"SCRAM-SHA-1", "bob", "n3w secret"));
    assert!(plain(&db, "bob", "n3w secret"));
    assert!(!plain(&db, "bob", "plainpw"));
    assert!(scram::<Sha256>(
        &db,
        b"SCRAM-SHA-256",
        "alice",
        "wonderland"
    ));

    // Both hashes for a new user, via MEMCACHED_SASL_PWDB, with more iterations.
    let out = passwd(
        &[
            "--mech",
            "scram-sha-1",
            "--mech",
            "scram-sha-256",
            "-i",
            "5000",
            "dave",
        ],
        Some(&f.path()),
        b"dpw",
    );
    assert!(out.status.success(), "{:?}", out);
    let db = AuthDb::load(&f.path()).expect("load");
    assert!(scram::<Sha1>(&db, b"SCRAM-SHA-1", "dave", "dpw"));
    assert!(scram::<Sha256>(&db, b"SCRAM-SHA-256", "dave", "dpw"));
    assert!(!scram::<Sha1>(&db, b"SCRAM-SHA-1", "dave", "dpx"));
    let text = std::fs::read_to_string(&f.0).expect("read");
    assert!(text.contains("dave:$scram-sha-1$5000$"), "{text}");
}

#[test]
fn passwd_new_file_is_private_and_errors_are_reported() {
    let f = TempFile::new("new");
    let _ = std::fs::remove_file(&f.0);
    let out = passwd(&["--file", &f.path(), "erin"], None, b"pw\n");
    assert!(out.status.success(), "{:?}", out);
    let mode = std::fs::metadata(&f.0).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(AuthDb::load(&f.path()).is_ok());

    // Usage errors: 64, and the file is untouched.
    let before = std::fs::read_to_string(&f.0).expect("read");
    let p = f.path();
    let p = p.as_str();
    for args in [
        vec!["--file", p],
        vec!["--file", p, "--mech", "md5", "x"],
        vec!["--file", p, "--iterations", "10", "x"],
        vec!["--file", p, "a:b"],
        vec!["--bogus", "x"],
    ] {
        let out = passwd(&args, None, b"pw\n");
        assert_eq!(out.status.code(), Some(64), "{args:?}: {out:?}");
    }
    // No file anywhere.
    let out = passwd(&["x"], None, b"pw\n");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    // Empty password.
    let out = passwd(&["--file", &f.path(), "x"], None, b"\n");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(std::fs::read_to_string(&f.0).expect("read"), before);
}
