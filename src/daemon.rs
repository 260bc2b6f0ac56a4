//! Process set-up done at start-up, as memcached 1.6.18 does it:
//! root check, open-files limit, privilege drop, daemonizing, pid file.
//!
//! memcached's order, which the server should keep:
//! 1. [`raise_nofile_limit`] for `-c` (memcached fails with exit 71 if it
//!    cannot; we only warn);
//! 2. [`check_root`] then [`drop_privileges_for`] (`-u`);
//! 3. [`daemonize`] (`-d`), before any thread is started;
//! 4. bind the listeners (as the unprivileged user: a port below 1024 then
//!    fails, as in memcached); on failure print [`listen_failure`] and exit;
//! 5. [`write_pid_file`] (`-P`; a failure is only reported), and
//!    [`remove_pid_file`] on a clean exit.
//!
//! All of it goes through `nix`'s safe wrappers (the crate forbids `unsafe`). `-d`
//! re-executes the binary, which then calls
//! `setsid()`, instead of calling `fork()`, which would be unsound once any thread
//! exists.

use std::io::Write as _;
use std::path::Path;

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use nix::unistd::{Gid, Pid, Uid, User};

use crate::config::{Config, EX_NOUSER, EX_OSERR, EX_USAGE};

/// Whether the process runs as root (real or effective uid 0).
pub fn is_root() -> bool {
    Uid::current().is_root() || Uid::effective().is_root()
}

/// memcached refuses to run as root without `-u`: message and exit status
/// (64) as memcached prints them (the caller adds the newline).
pub fn check_root(cfg: &Config) -> Result<(), (String, i32)> {
    let no_user = cfg.user.as_deref().map_or(true, str::is_empty);
    if is_root() && no_user {
        return Err(("can't run as root without the -u switch".into(), EX_USAGE));
    }
    Ok(())
}

/// memcached's whole `-u` step: when root, switch to `cfg.user` (unknown
/// user: exit 67; a failing call: exit 71). Nothing happens when not root,
/// as memcached ignores `-u` then. Call [`check_root`] first.
pub fn drop_privileges_for(cfg: &Config) -> Result<(), (String, i32)> {
    match cfg.user.as_deref() {
        Some(user) if !user.is_empty() && is_root() => drop_privileges(user).map_err(|m| {
            let code = if m.starts_with("can't find the user") {
                EX_NOUSER
            } else {
                EX_OSERR
            };
            (m, code)
        }),
        _ => Ok(()),
    }
}

/// Assumes the identity of `user` (getpwnam, setgroups, setgid, setuid),
/// only when running as root; otherwise does nothing. Errors carry
/// memcached's messages. A `setgroups` refused with `EPERM` is only
/// reported by memcached; we go on silently in that case.
pub fn drop_privileges(user: &str) -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let not_found = || format!("can't find the user {user} to switch to");
    let pw = match User::from_name(user) {
        Ok(Some(pw)) => pw,
        _ => return Err(not_found()),
    };
    if let Err(e) = nix::unistd::setgroups(&[] as &[Gid]) {
        if e != nix::errno::Errno::EPERM {
            return Err(format!("failed to drop supplementary groups: {e}"));
        }
    }
    if nix::unistd::setgid(pw.gid).is_err() || nix::unistd::setuid(pw.uid).is_err() {
        return Err(format!("failed to assume identity of user {user}"));
    }
    Ok(())
}

/// File descriptors kept beside connections (listeners, pollers, wakers,
/// log files) when sizing `RLIMIT_NOFILE`.
const FD_HEADROOM: u64 = 64;

/// Raises the open-files limit so `max_conns` connections fit (plus some
/// headroom); the hard limit too when we may (root). Never lowers it
/// (memcached sets both limits to exactly `-c`, which can lower them).
/// On failure returns memcached's message, for the caller to print as a
/// warning (memcached exits with 71 there).
pub fn raise_nofile_limit(max_conns: usize) -> Result<(), String> {
    let failed = || {
        "failed to set rlimit for open files. Try starting as root or requesting smaller maxconns value."
            .to_string()
    };
    let (cur, max) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|_| "failed to getrlimit number of files".to_string())?;
    let want = (max_conns as u64).saturating_add(FD_HEADROOM);
    if cur == RLIM_INFINITY || cur >= want {
        return Ok(());
    }
    let new_max = if max != RLIM_INFINITY && max < want {
        want
    } else {
        max
    };
    if setrlimit(Resource::RLIMIT_NOFILE, want, new_max).is_ok() {
        return Ok(());
    }
    // Not allowed to raise the hard limit: take as much as it allows.
    let _ = setrlimit(Resource::RLIMIT_NOFILE, max, max);
    Err(failed())
}

/// Environment variable that marks the detached copy started by [`daemonize`].
const DAEMON_CHILD_ENV: &str = "FERROCACHE_DAEMON_CHILD";

/// Whether this process is the detached copy [`daemonize`] started (until
/// [`daemonize`] has run in it).
pub fn is_detached_copy() -> bool {
    std::env::var_os(DAEMON_CHILD_ENV).is_some()
}

/// How long the starting process waits for the detached copy to become a session
/// leader before exiting anyway.
const DETACH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Detaches from the terminal like memcached's `-d` (`daemon(3)`): a new session with
/// no controlling terminal, the working directory `/`, and stdin/stdout/stderr on
/// `/dev/null` unless `keep_stdio` (memcached keeps all three with `-v`).
///
/// memcached forks; a Rust process must not (`fork()` once any thread may exist is
/// unsound), so the binary runs itself again with the same arguments, marked by an
/// environment variable. That copy calls `setsid()` first thing (it is not a process
/// group leader, so this succeeds): it is then a session leader without a controlling
/// terminal, exactly as memcached's forked child. The starting process waits until the
/// copy's session id is its pid (bounded), so a terminal closed right after `-d`
/// returns cannot hang the daemon up, and exits 0. In the copy this returns `Ok` and
/// start-up goes on. Relative paths given on the command line no longer resolve
/// afterwards, as with memcached.
pub fn daemonize(keep_stdio: bool) -> Result<(), String> {
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};
    let failed =
        |e: &dyn std::fmt::Display| format!("failed to daemon() in order to daemonize: {e}");
    if is_detached_copy() {
        std::env::remove_var(DAEMON_CHILD_ENV);
        nix::unistd::setsid().map_err(|e| failed(&e))?;
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| failed(&e))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(DAEMON_CHILD_ENV, "1")
        .current_dir("/");
    if let Some(argv0) = std::env::args_os().next() {
        cmd.arg0(argv0);
    }
    if !keep_stdio {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|e| failed(&e))?;
    let pid = i32::try_from(child.id())
        .map(Pid::from_raw)
        .map_err(|e| failed(&e))?;
    let deadline = std::time::Instant::now() + DETACH_WAIT;
    while std::time::Instant::now() < deadline {
        if nix::unistd::getsid(Some(pid)) == Ok(pid) {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            // The copy gave up before detaching (it said why, where it could).
            return Err(failed(&format!("the detached process exited ({status})")));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::process::exit(0);
}

/// Whether a process with this pid exists (signal 0).
fn pid_running(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    pid > 0 && nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
}

/// Writes our pid to `path` like memcached: to `path.tmp` first, then
/// renamed, so readers never see an empty file. Returns memcached's
/// messages: `Ok(Some(warning))` when the old file named a running process
/// (memcached warns and goes on), `Err` when writing failed (memcached only
/// reports that too, it does not exit).
pub fn write_pid_file(path: &Path) -> Result<Option<String>, String> {
    let mut warning = None;
    if let Ok(old) = std::fs::read_to_string(path) {
        let first = old.lines().next().unwrap_or("").trim();
        if let Ok(pid) = first.parse::<u32>() {
            if pid_running(pid) {
                warning = Some(format!(
                    "WARNING: The pid file contained the following (running) pid: {pid}"
                ));
            }
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| {
        format!(
            "Could not open the pid file {} for writing: {e}",
            tmp.display()
        )
    })?;
    writeln!(f, "{}", std::process::id())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("Could not close the pid file {}: {e}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        format!(
            "Could not rename the pid file from {} to {}: {e}",
            tmp.display(),
            path.display()
        )
    })?;
    Ok(warning)
}

/// Removes the pid file (memcached does on a clean exit); memcached's
/// message on failure.
pub fn remove_pid_file(path: &Path) -> Result<(), String> {
    std::fs::remove_file(path)
        .map_err(|e| format!("Could not remove the pid file {}: {e}", path.display()))
}

/// Why a listener could not be opened (for [`listen_failure`]).
#[derive(Debug)]
pub enum ListenError {
    /// The host of a `-l` entry did not resolve; the resolver's message
    /// (glibc's `gai_strerror`, e.g. `Name or service not known`).
    Resolve(String),
    /// `bind`/`listen` failed.
    Bind(std::io::Error),
}

/// Which listener failed (for [`listen_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenKind {
    /// A TCP listener.
    Tcp,
    /// A UDP socket.
    Udp,
    /// The `-s` Unix socket.
    Unix,
}

/// The OS's text for an error, without Rust's ` (os error N)` suffix.
fn os_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// memcached's stderr text (without the final newline) and exit status (71)
/// when a listener cannot be opened. The first line is memcached's exactly:
/// `getaddrinfo(): Name or service not known` (bad `-l fooble`),
/// `bind(): Permission denied`, or, for an address in use,
/// `failed to listen on one of interface(s) 127.0.0.1: Address already in use`
/// (with `-l`) / `failed to listen on TCP port 11211: ...` (without).
/// memcached's second line carries a stale `errno`; ours names the cause.
pub fn listen_failure(cfg: &Config, kind: ListenKind, err: &ListenError) -> (String, i32) {
    let what = match kind {
        ListenKind::Unix => format!(
            "UNIX socket: {}",
            cfg.unix_socket
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        _ if !cfg.listen.is_empty() => {
            format!("one of interface(s) {}", cfg.listen.join(","))
        }
        ListenKind::Tcp => format!("TCP port {}", cfg.port),
        ListenKind::Udp => format!("UDP port {}", cfg.udp_port),
    };
    let text = match err {
        ListenError::Resolve(msg) => {
            format!("getaddrinfo(): {msg}\nfailed to listen on {what}: {msg}")
        }
        ListenError::Bind(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            format!("failed to listen on {what}: {}", os_text(e))
        }
        ListenError::Bind(e) => {
            let t = os_text(e);
            format!("bind(): {t}\nfailed to listen on {what}: {t}")
        }
    };
    (text, EX_OSERR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_failures() {
        let mut cfg = Config {
            listen: vec!["fooble".into()],
            ..Config::default()
        };
        let (m, code) = listen_failure(
            &cfg,
            ListenKind::Tcp,
            &ListenError::Resolve("Name or service not known".into()),
        );
        assert_eq!(code, 71);
        assert_eq!(
            m.lines().next(),
            Some("getaddrinfo(): Name or service not known")
        );
        cfg.listen = vec!["127.0.0.1".into()];
        let inuse = || ListenError::Bind(std::io::Error::from_raw_os_error(libc::EADDRINUSE));
        assert_eq!(
            listen_failure(&cfg, ListenKind::Tcp, &inuse()).0,
            "failed to listen on one of interface(s) 127.0.0.1: Address already in use"
        );
        let denied = ListenError::Bind(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(
            listen_failure(&cfg, ListenKind::Tcp, &denied)
                .0
                .lines()
                .next(),
            Some("bind(): Permission denied")
        );
        cfg.listen.clear();
        assert_eq!(
            listen_failure(&cfg, ListenKind::Tcp, &inuse()).0,
            "failed to listen on TCP port 11211: Address already in use"
        );
    }

    #[test]
    fn root_check() {
        let mut cfg = Config::default();
        if is_root() {
            assert_eq!(
                check_root(&cfg),
                Err(("can't run as root without the -u switch".into(), 64))
            );
            cfg.user = Some(String::new());
            assert!(check_root(&cfg).is_err());
        } else {
            assert_eq!(check_root(&cfg), Ok(()));
        }
        cfg.user = Some("nobody".into());
        assert_eq!(check_root(&cfg), Ok(()));
    }

    #[test]
    fn unknown_user() {
        if is_root() {
            assert_eq!(
                drop_privileges("no-such-user-ferrocache"),
                Err("can't find the user no-such-user-ferrocache to switch to".into())
            );
            let cfg = Config {
                user: Some("no-such-user-ferrocache".into()),
                ..Config::default()
            };
            assert_eq!(drop_privileges_for(&cfg).map_err(|e| e.1), Err(67));
        } else {
            assert_eq!(drop_privileges("no-such-user-ferrocache"), Ok(()));
        }
    }

    #[test]
    fn pid_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("ferrocache-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pid");
        assert_eq!(write_pid_file(&path), Ok(None));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // Our own pid is running: a second write warns.
        let w = write_pid_file(&path).unwrap().unwrap();
        assert!(w.starts_with("WARNING: The pid file contained the following (running) pid: "));
        remove_pid_file(&path).unwrap();
        assert!(remove_pid_file(&path)
            .unwrap_err()
            .starts_with("Could not remove the pid file"));
        let bad = dir.join("nodir").join("x.pid");
        assert!(write_pid_file(&bad)
            .unwrap_err()
            .starts_with("Could not open the pid file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nofile_limit_is_raised() {
        if let Err(msg) = raise_nofile_limit(2000) {
            // Only root may raise the hard limit.
            assert!(!is_root(), "{msg}");
            return;
        }
        let (cur, _) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert!(cur == RLIM_INFINITY || cur >= 2000);
    }
}
