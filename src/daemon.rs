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
//! `unsafe` here is limited to the libc calls these need.

use std::ffi::CString;
use std::io::Write as _;
use std::path::Path;

use crate::config::{Config, EX_NOUSER, EX_OSERR, EX_USAGE};

/// Whether the process runs as root (real or effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: getuid/geteuid take no arguments, cannot fail and touch no memory.
    unsafe { libc::getuid() == 0 || libc::geteuid() == 0 }
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
    let cname = CString::new(user).map_err(|_| not_found())?;
    // SAFETY: cname is a valid NUL-terminated string; getpwnam returns NULL
    // or a pointer to static storage that we read at once, before any other
    // call that could overwrite it.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return Err(not_found());
    }
    // SAFETY: pw is non-null and points to a valid passwd record (see above).
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // SAFETY: setgroups with a zero count does not read the (null) list.
    if unsafe { libc::setgroups(0, std::ptr::null()) } < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EPERM) {
            return Err(format!("failed to drop supplementary groups: {err}"));
        }
    }
    // SAFETY: setgid/setuid take plain integers and touch no memory.
    if unsafe { libc::setgid(gid) } < 0 || unsafe { libc::setuid(uid) } < 0 {
        return Err(format!("failed to assume identity of user {user}"));
    }
    Ok(())
}

/// File descriptors kept beside connections (listeners, pollers, wakers,
/// log files) when sizing `RLIMIT_NOFILE`.
const FD_HEADROOM: libc::rlim_t = 64;

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
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err("failed to getrlimit number of files".into());
    }
    let want = (max_conns as libc::rlim_t).saturating_add(FD_HEADROOM);
    if rl.rlim_cur != libc::RLIM_INFINITY && rl.rlim_cur >= want {
        return Ok(());
    }
    if rl.rlim_cur == libc::RLIM_INFINITY {
        return Ok(());
    }
    let mut new = rl;
    new.rlim_cur = want;
    if rl.rlim_max != libc::RLIM_INFINITY && rl.rlim_max < want {
        new.rlim_max = want;
    }
    // SAFETY: new is a valid rlimit read by setrlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        return Ok(());
    }
    // Not allowed to raise the hard limit: take as much as it allows.
    let mut best = rl;
    best.rlim_cur = rl.rlim_max;
    // SAFETY: best is a valid rlimit read by setrlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &best) };
    Err(failed())
}

/// Detaches from the terminal like memcached's `-d`: ignore SIGHUP, fork
/// (the parent exits 0), `setsid`, `chdir("/")`, and unless `keep_stdio`
/// (memcached keeps them with `-v`) point stdin/stdout/stderr at
/// `/dev/null`. Call before starting any thread. Relative paths given on
/// the command line no longer resolve afterwards, as with memcached.
pub fn daemonize(keep_stdio: bool) -> Result<(), String> {
    let failed = || "failed to daemon() in order to daemonize".to_string();
    // SAFETY: installing SIG_IGN for SIGHUP has no memory effects.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    // SAFETY: fork in a process that (per this function's contract) has no
    // other threads yet; the child only makes async-signal-safe calls below
    // before returning to normal Rust code.
    match unsafe { libc::fork() } {
        -1 => return Err(failed()),
        0 => {}
        // SAFETY: _exit ends the parent at once without running destructors
        // or flushing buffers that the child also owns.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } == -1 {
        return Err(failed());
    }
    let root = CString::new("/").map_err(|_| failed())?;
    // SAFETY: root is a valid NUL-terminated path.
    if unsafe { libc::chdir(root.as_ptr()) } != 0 {
        return Err(failed());
    }
    if !keep_stdio {
        let null = CString::new("/dev/null").map_err(|_| failed())?;
        // SAFETY: null is a valid NUL-terminated path; O_RDWR opens it.
        let fd = unsafe { libc::open(null.as_ptr(), libc::O_RDWR) };
        if fd == -1 {
            return Err(failed());
        }
        for target in 0..=2 {
            // SAFETY: fd is an open descriptor; dup2 onto 0..=2 replaces them.
            if unsafe { libc::dup2(fd, target) } == -1 {
                return Err(failed());
            }
        }
        if fd > 2 {
            // SAFETY: fd is ours and no longer needed.
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// Whether a process with this pid exists (signal 0).
fn pid_running(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
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
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: rl is a valid, writable rlimit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
        assert!(rl.rlim_cur == libc::RLIM_INFINITY || rl.rlim_cur >= 2000);
    }
}
