//! Packaging: the systemd unit in contrib/ (`systemd-analyze verify`, its exposure
//! score beside Debian's memcached.service, Debian's hardening kept), readiness and
//! stop notices (`Type=notify`), the unit's own command lines over Debian's
//! /etc/memcached.conf, the man page against `-h`, and the client-only build.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    free_port, in_ci, is_root, require_tool, run_bounded, set_mode, Scratch, FERROCACHE,
};
use crate::help_flags::{help_flags, help_suboptions, help_text};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/systemd/ferrocache.service"
);
/// Where the unit expects the binary (the README's install step puts it there).
const INSTALLED: &str = "/usr/local/bin/ferrocache";
const ANALYZE: &str = "/usr/bin/systemd-analyze";
const MAN: &str = "/usr/bin/man";
const DEBIAN_UNIT: &str = "/lib/systemd/system/memcached.service";
const DEBIAN_CONF: &str = "/etc/memcached.conf";
/// Debian's memcached.service scores 4.8 (systemd 252); ours may not be worse.
const MAX_EXPOSURE: f64 = 4.8;

fn unit_text() -> String {
    std::fs::read_to_string(UNIT).expect("read contrib/systemd/ferrocache.service")
}

/// `Key=value` settings of a unit file's text, in order (comments and sections left out).
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn setting(text: &str, key: &str) -> Option<String> {
    settings(text)
        .into_iter()
        .rfind(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The unit with its `ExecStart` pointing at the binary cargo built, and the man page
/// its `Documentation=` names, both in `dir`; returns (unit path, MANPATH).
fn unit_for_analyze(dir: &Scratch) -> (String, String) {
    let text = unit_text();
    assert!(
        text.contains(&format!("ExecStart={INSTALLED} ")),
        "ExecStart should run {INSTALLED}"
    );
    let unit = dir.file("ferrocache.service", &text.replace(INSTALLED, FERROCACHE));
    let man1 = dir.0.join("man/man1");
    std::fs::create_dir_all(&man1).expect("man dir");
    std::fs::write(man1.join("ferrocache.1"), man_page()).expect("write man page");
    (unit, dir.path("man"))
}

fn man_page() -> String {
    let out = Command::new(FERROCACHE)
        .arg("--man")
        .output()
        .expect("run ferrocache --man");
    assert!(out.status.success(), "ferrocache --man failed: {out:?}");
    String::from_utf8(out.stdout).expect("man page is UTF-8")
}

/// `systemd-analyze security --offline=yes`'s overall exposure for a unit file.
fn exposure(unit: &str) -> f64 {
    let run = run_bounded(
        Command::new(ANALYZE).args(["security", "--offline=yes", "--no-pager", unit]),
        Duration::from_secs(60),
    );
    assert!(run.status.is_some(), "systemd-analyze security timed out");
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no exposure line for {unit}:\n{}{}", run.stdout, run.stderr));
    let score = line
        .rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    score.unwrap_or_else(|| panic!("cannot read the score in {line:?}"))
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !require_tool(ANALYZE) || !require_tool(MAN) {
        return;
    }
    let dir = Scratch::new("unit-verify");
    let (unit, manpath) = unit_for_analyze(&dir);
    let run = run_bounded(
        Command::new(ANALYZE)
            .args(["verify", "--no-pager", &unit])
            .env("MANPATH", &manpath),
        Duration::from_secs(60),
    );
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        run.status.is_some_and(|s| s.success()),
        "systemd-analyze verify failed:\n{said}"
    );
    // Warnings about the unit do not fail `verify`; they fail this test.
    assert!(
        !said.contains("ferrocache.service"),
        "systemd-analyze verify has something to say:\n{said}"
    );
}

#[test]
fn unit_exposure_is_at_most_debians() {
    if !require_tool(ANALYZE) {
        return;
    }
    let dir = Scratch::new("unit-security");
    let (unit, _) = unit_for_analyze(&dir);
    let ours = exposure(&unit);
    println!("systemd-analyze security: ferrocache.service {ours:.1}");
    assert!(
        ours <= MAX_EXPOSURE,
        "ferrocache.service exposure {ours} > {MAX_EXPOSURE}"
    );
    // The README quotes the score: it must be the one measured.
    let readme = include_str!("../../README.md");
    let quoted = readme
        .split_once("`systemd-analyze security` rates it ")
        .and_then(|(_, rest)| rest.split([',', ' ']).next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("README quotes the unit's systemd-analyze security score");
    assert!(
        (quoted - ours).abs() < 0.05,
        "README says {quoted}, systemd-analyze says {ours}"
    );
    if Path::new(DEBIAN_UNIT).exists() {
        let debian = exposure(DEBIAN_UNIT);
        println!("systemd-analyze security: Debian's memcached.service {debian:.1}");
        assert!(
            ours <= debian,
            "ours {ours} is more exposed than Debian's memcached.service {debian}"
        );
    } else if in_ci() {
        panic!("{DEBIAN_UNIT} is missing (CI=true): the memcached package is not installed");
    }
}

/// Capabilities named by a `CapabilityBoundingSet=` value.
fn caps(value: &str) -> BTreeSet<String> {
    value.split_whitespace().map(str::to_string).collect()
}

#[test]
fn unit_keeps_debians_settings_and_hardening() {
    let ours = unit_text();
    // What the task asks of the unit.
    assert_eq!(setting(&ours, "Type").as_deref(), Some("notify"));
    assert_eq!(
        setting(&ours, "ExecReload").as_deref(),
        Some("/bin/kill -HUP $MAINPID")
    );
    assert_eq!(setting(&ours, "Restart").as_deref(), Some("always"));
    let exec = setting(&ours, "ExecStart").expect("ExecStart");
    assert!(exec.contains(&format!("--config {DEBIAN_CONF}")), "{exec}");
    // Debian's hardening, as it stands in memcached 1.6.18's unit: each one set, and
    // no capability beyond Debian's.
    let debian_text = std::fs::read_to_string(DEBIAN_UNIT).unwrap_or_default();
    let mut hardening: Vec<(String, String)> = [
        ("PrivateTmp", "true"),
        ("ProtectSystem", "full"),
        ("NoNewPrivileges", "true"),
        ("PrivateDevices", "true"),
        (
            "CapabilityBoundingSet",
            "CAP_SETGID CAP_SETUID CAP_SYS_RESOURCE",
        ),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryDenyWriteExecute", "true"),
        ("ProtectKernelModules", "true"),
        ("ProtectKernelTunables", "true"),
        ("ProtectControlGroups", "true"),
        ("RestrictRealtime", "true"),
        ("RestrictNamespaces", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // And whatever the installed Debian unit sets besides (a newer package).
    for (k, v) in settings(&debian_text) {
        let skip = [
            "Description",
            "After",
            "Documentation",
            "ExecStart",
            "PIDFile",
            "Restart",
            "WantedBy",
            "Environment",
        ];
        if !skip.contains(&k.as_str()) && !hardening.iter().any(|(hk, _)| *hk == k) {
            hardening.push((k, v));
        }
    }
    for (key, debian) in &hardening {
        let got =
            setting(&ours, key).unwrap_or_else(|| panic!("{key}= is not set (Debian: {debian})"));
        match key.as_str() {
            "CapabilityBoundingSet" => {
                let extra: Vec<_> = caps(&got).difference(&caps(debian)).cloned().collect();
                assert!(extra.is_empty(), "capabilities beyond Debian's: {extra:?}");
            }
            "ProtectSystem" => assert!(
                ["full", "strict"].contains(&got.as_str()),
                "ProtectSystem={got}"
            ),
            "RestrictAddressFamilies" => {
                let extra: Vec<_> = caps(&got).difference(&caps(debian)).cloned().collect();
                assert!(
                    extra.is_empty(),
                    "address families beyond Debian's: {extra:?}"
                );
            }
            _ => assert_eq!(&got, debian, "{key}="),
        }
    }
}

/// A unix datagram socket standing in for systemd's notify socket, writable by the
/// `-u` user the server switches to.
struct NotifySocket {
    sock: UnixDatagram,
    path: String,
    _dir: Scratch,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = Scratch::new("notify");
        let path = dir.path("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        set_mode(Path::new(&path), 0o777);
        NotifySocket {
            sock,
            path,
            _dir: dir,
        }
    }

    /// The next datagram, as text (None: nothing within `limit`).
    fn recv(&self, limit: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(limit)).ok()?;
        let mut buf = vec![0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Waits for a datagram with `state` (e.g. `READY=1`) while `child` runs; None if
    /// the child exits first or nothing comes within 15 s.
    fn wait_for(&self, child: &mut Child, state: &str) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(msg) = self.recv(Duration::from_millis(100)) {
                if msg.lines().any(|l| l == state) {
                    return Some(msg);
                }
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                return None;
            }
        }
        None
    }
}

/// Kills the child on drop, so a failed assertion leaves no server behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.0.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

/// `version` on a fresh connection, which must be accepted at once.
fn version_reply(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("port {port} refuses connections after READY=1: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(5))).ok();
    c.write_all(b"version\r\n").expect("send version");
    let mut buf = [0u8; 128];
    let n = c.read(&mut buf).expect("read version reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Starts `argv` (port `port`) with `NOTIFY_SOCKET` set and waits for `READY=1`; None
/// if it exited first (the picked port was taken meanwhile: the caller tries again).
fn start_notified(argv: &[String], notify: &NotifySocket) -> Option<Running> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
    match notify.wait_for(&mut child, "READY=1") {
        Some(_) => Some(Running(child)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

#[test]
fn ready_after_listeners_bound_and_stopping_on_sigterm() {
    let notify = NotifySocket::new();
    for _ in 0..5 {
        let port = free_port();
        let mut argv: Vec<String> = [FERROCACHE, "-l", "127.0.0.1", "-U", "0", "-t", "2", "-p"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.push(port.to_string());
        if is_root() {
            argv.extend(["-u".to_string(), "nobody".to_string()]);
        }
        let Some(mut server) = start_notified(&argv, &notify) else {
            continue;
        };
        // READY=1 means connections are accepted now: no retrying.
        assert!(version_reply(port).starts_with("VERSION "));
        let pid = server.0.id().to_string();
        let kill = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(kill.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let msg = notify.wait_for(&mut server.0, "STOPPING=1");
        assert!(msg.is_some(), "no STOPPING=1 after SIGTERM");
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "exit after SIGTERM: {status:?}"
        );
        return;
    }
    panic!("ferrocache never sent READY=1 (5 ports tried)");
}

#[test]
fn without_notify_socket_nothing_changes() {
    // Not started by systemd: the notices are no-ops and the server runs as before.
    let s = common::Server::ferrocache(&[]);
    assert!(version_reply(s.port).starts_with("VERSION "));
}

/// The value of `-u` in a memcached.conf text, if any.
fn conf_user(conf: &str) -> Option<String> {
    conf.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("-u"))
        .map(|v| v.split('#').next().unwrap_or("").trim().to_string())
        .find(|v| !v.is_empty())
}

/// The uid of a user name, from /etc/passwd.
fn uid_of(user: &str) -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| f.get(2).and_then(|u| u.parse().ok()))
}

/// The real uid of a process, from /proc.
fn uid_of_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
}

/// `ExecStart=` and `ExecReload=` of the unit, run as systemd would run them over
/// Debian's /etc/memcached.conf: `$OPTIONS` (here: a free port, a pid file of the
/// test's own) after the file, the file's `-u` user taken when started as root,
/// `READY=1`, service, `ExecReload` survived, `STOPPING=1` on SIGTERM.
#[test]
fn unit_command_lines_run_over_debians_memcached_conf() {
    if !require_tool(DEBIAN_CONF) {
        return;
    }
    let text = unit_text();
    let exec = setting(&text, "ExecStart").expect("ExecStart");
    let reload = setting(&text, "ExecReload").expect("ExecReload");
    let conf = std::fs::read_to_string(DEBIAN_CONF).expect("read /etc/memcached.conf");
    let notify = NotifySocket::new();
    // Writable by the file's -u user.
    let run_dir = Scratch::new("unit-run");
    run_dir.open_to_all();
    let pid_file = run_dir.path("ferrocache.pid");
    for _ in 0..5 {
        let port = free_port();
        let options = [
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-t",
            "2",
            "-P",
            &pid_file,
        ]
        .map(str::to_string);
        let mut argv = Vec::new();
        for word in exec.split_whitespace() {
            match word {
                INSTALLED => argv.push(FERROCACHE.to_string()),
                "$OPTIONS" => argv.extend(options.iter().cloned()),
                // Empty without the warm-restart drop-in: no words.
                "$WARM_RESTART" => {}
                w => argv.push(w.to_string()),
            }
        }
        let Some(mut server) = start_notified(&argv, &notify) else {
            continue;
        };
        let pid = server.0.id();
        // Debian's file listens on 127.0.0.1; the port is ours.
        assert!(version_reply(port).starts_with("VERSION "));
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        assert_eq!(written.trim(), pid.to_string(), "pid file");
        if is_root() {
            let user = conf_user(&conf).expect("Debian's memcached.conf names -u");
            let want = uid_of(&user).unwrap_or_else(|| panic!("no user {user}"));
            assert_eq!(uid_of_pid(pid), Some(want), "runs as the file's -u {user}");
        }
        // ExecReload, with $MAINPID.
        let reload = reload.replace("$MAINPID", &pid.to_string());
        let words: Vec<&str> = reload.split_whitespace().collect();
        let st = Command::new(words[0]).args(&words[1..]).status();
        assert!(st.is_ok_and(|s| s.success()), "{reload}");
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            matches!(server.0.try_wait(), Ok(None)),
            "the server exited on ExecReload"
        );
        assert!(version_reply(port).starts_with("VERSION "));
        let kill = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        assert!(kill.is_ok_and(|s| s.success()));
        assert!(notify.wait_for(&mut server.0, "STOPPING=1").is_some());
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        return;
    }
    panic!("the unit's command line never sent READY=1 (5 ports tried)");
}

#[test]
fn man_page_mentions_every_flag_of_help() {
    let help = help_text();
    let page = man_page();
    let flags = help_flags(&help);
    assert!(flags.len() > 30, "too few flags read from -h: {flags:?}");
    // roff spells a hyphen \- and sets flags in bold.
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| !page.contains(&format!("\\fB{}\\fR", f.replace('-', "\\-"))))
        .collect();
    assert!(
        missing.is_empty(),
        "flags of -h not in the man page: {missing:?}"
    );
    let subs = help_suboptions(&help);
    assert!(subs.contains("idle_timeout"), "{subs:?}");
    let missing: Vec<&String> = subs
        .iter()
        .filter(|s| !page.contains(&format!("\\fB{}\\fR", s.replace('-', "\\-"))))
        .collect();
    assert!(
        missing.is_empty(),
        "-o options of -h not in the man page: {missing:?}"
    );
}

#[test]
fn man_page_renders_without_warnings() {
    if !require_tool("/usr/bin/groff") {
        return;
    }
    let dir = Scratch::new("man-lint");
    let page = dir.file("ferrocache.1", &man_page());
    let run = run_bounded(
        Command::new("/usr/bin/groff").args(["-man", "-ww", "-z", &page]),
        Duration::from_secs(30),
    );
    assert!(run.status.is_some_and(|s| s.success()), "{}", run.stderr);
    assert!(run.stderr.trim().is_empty(), "groff warns:\n{}", run.stderr);
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The client-only build that README promises applications: no server dependency in
/// its graph, and the library checks (in a target directory of its own, offline,
/// with the committed Cargo.lock).
#[test]
fn client_only_build() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let tree = run_bounded(
        Command::new(cargo()).args([
            "tree",
            "--frozen",
            "--manifest-path",
            manifest,
            "--no-default-features",
            "--features",
            "client",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ]),
        Duration::from_secs(120),
    );
    assert!(
        tree.status.is_some_and(|s| s.success()),
        "cargo tree failed:\n{}",
        tree.stderr
    );
    let crates: BTreeSet<&str> = tree
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for server_only in [
        "mio",
        "crossbeam-channel",
        "hashbrown",
        "nix",
        "signal-hook",
        "socket2",
        "env_logger",
        "clap",
        "sd-notify",
    ] {
        assert!(
            !crates.contains(server_only),
            "the client-only build depends on {server_only}:\n{}",
            tree.stdout
        );
    }
    let target: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-only");
    let check = run_bounded(
        Command::new(cargo())
            .args([
                "check",
                "--frozen",
                "--manifest-path",
                manifest,
                "--no-default-features",
                "--features",
                "client",
                "--lib",
            ])
            .env("CARGO_TARGET_DIR", &target),
        Duration::from_secs(600),
    );
    assert!(
        check.status.is_some(),
        "cargo check --features client took over 600 s"
    );
    assert!(
        check.status.is_some_and(|s| s.success()),
        "cargo check --no-default-features --features client --lib failed:\n{}",
        check.stderr
    );
}

// ------------------------------------------------------------ warm restart (#25)

const DROP_IN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/systemd/ferrocache.service.d/warm-restart.conf"
);
const DEB_UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/deb/ferrocache.service"
);

fn drop_in_text() -> String {
    std::fs::read_to_string(DROP_IN).expect("read the warm-restart drop-in")
}

/// `systemd-analyze verify` of `unit` (a path in `dir`); panics with what it said when
/// it fails or has anything to say about the unit.
fn verify(unit: &str, manpath: &str) {
    let run = run_bounded(
        Command::new(ANALYZE)
            .args(["verify", "--no-pager", unit])
            .env("MANPATH", manpath),
        Duration::from_secs(60),
    );
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        run.status.is_some_and(|s| s.success()),
        "systemd-analyze verify {unit} failed:\n{said}"
    );
    assert!(
        !said.contains("ferrocache.service"),
        "systemd-analyze verify {unit} has something to say:\n{said}"
    );
}

/// The unit with the warm-restart drop-in, verified both as systemd loads it (the
/// drop-in directory beside the unit) and merged into one file (so its settings are
/// certainly parsed); the directives the issue asks for are there.
#[test]
fn warm_restart_drop_in_passes_systemd_analyze_verify() {
    let unit = unit_text();
    let drop = drop_in_text();
    for want in [
        ("StateDirectory", "ferrocache"),
        ("RuntimeDirectory", "ferrocache"),
        ("Conflicts", "memcached.service"),
        ("Environment", "WARM_RESTART="),
    ] {
        assert_eq!(
            setting(&unit, want.0).as_deref(),
            Some(want.1),
            "{}=",
            want.0
        );
    }
    let exec = setting(&unit, "ExecStart").expect("ExecStart");
    assert!(exec.ends_with("$OPTIONS $WARM_RESTART"), "{exec}");
    assert_eq!(setting(&drop, "KillSignal").as_deref(), Some("SIGUSR1"));
    assert_eq!(
        setting(&drop, "Environment").as_deref(),
        Some("\"WARM_RESTART=-e /var/lib/ferrocache/cache\"")
    );
    assert!(setting(&drop, "TimeoutStopSec").is_some());
    if !require_tool(ANALYZE) || !require_tool(MAN) {
        return;
    }
    let dir = Scratch::new("unit-dropin");
    let (unit_path, manpath) = unit_for_analyze(&dir);
    let d = dir.0.join("ferrocache.service.d");
    std::fs::create_dir_all(&d).expect("drop-in dir");
    std::fs::write(d.join("warm-restart.conf"), &drop).expect("drop-in");
    verify(&unit_path, &manpath);
    let merged_dir = Scratch::new("unit-merged");
    let text = unit.replace(INSTALLED, FERROCACHE);
    let merged = merged_dir.file("ferrocache.service", &format!("{text}\n{drop}"));
    verify(&merged, &manpath);
}

/// The package's unit is the contrib unit with the package's paths and user: every
/// other setting the same (so hardening and warm restart cannot drift apart).
#[test]
fn the_packages_unit_has_the_contrib_units_settings() {
    let deb = std::fs::read_to_string(DEB_UNIT).expect("contrib/deb/ferrocache.service");
    let differs = ["ExecStart", "ExecStartPre"];
    let keep = |t: &str| -> Vec<(String, String)> {
        settings(t)
            .into_iter()
            .filter(|(k, _)| !differs.contains(&k.as_str()))
            .collect()
    };
    assert_eq!(keep(&deb), keep(&unit_text()));
    assert_eq!(
        setting(&deb, "ExecStart").as_deref(),
        Some("/usr/bin/ferrocache --config /etc/ferrocache.conf $OPTIONS $WARM_RESTART")
    );
    assert_eq!(
        setting(&deb, "ExecStartPre").as_deref(),
        Some("+/bin/chown ferrocache:ferrocache /var/lib/ferrocache /run/ferrocache")
    );
}

/// Every datagram `notify` receives until one has `READY=1` (15 s at most).
fn datagrams_until_ready(notify: &NotifySocket, child: &mut Child) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(msg) = notify.recv(Duration::from_millis(100)) {
            let ready = msg.lines().any(|l| l == "READY=1");
            got.push(msg);
            if ready {
                return got;
            }
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
    }
    panic!("no READY=1; got {got:?}");
}

/// The unit's ExecStart with the drop-in's `$WARM_RESTART` (its directory moved into
/// a scratch one), run as systemd would: the drop-in's stop signal (SIGUSR1) saves and
/// exits 0; the next start loads the file, telling systemd `EXTEND_TIMEOUT_USEC`
/// before `READY=1`, and consumes it.
#[test]
fn warm_restart_drop_in_command_lines_save_and_load() {
    let state = Scratch::new("warm-state");
    state.open_to_all();
    let file = state.path("cache");
    let warm = setting(&drop_in_text(), "Environment")
        .expect("Environment")
        .trim_matches('"')
        .trim_start_matches("WARM_RESTART=")
        .replace("/var/lib/ferrocache/cache", &file);
    let exec = setting(&unit_text(), "ExecStart").expect("ExecStart");
    let kill = setting(&drop_in_text(), "KillSignal").expect("KillSignal");
    let sig = kill.trim_start_matches("SIG");
    let notify = NotifySocket::new();
    let argv = |port: u16| -> Vec<String> {
        let mut v = Vec::new();
        for w in exec.split_whitespace() {
            match w {
                INSTALLED => v.push(FERROCACHE.to_string()),
                // The unit reads Debian's file; here the options stand alone.
                "--config" | "/etc/memcached.conf" => {}
                "$OPTIONS" => v.extend(
                    [
                        "-l",
                        "127.0.0.1",
                        "-U",
                        "0",
                        "-t",
                        "2",
                        "-p",
                        &port.to_string(),
                    ]
                    .map(String::from),
                ),
                "$WARM_RESTART" => v.extend(warm.split_whitespace().map(String::from)),
                w => v.push(w.to_string()),
            }
        }
        if is_root() {
            v.extend(["-u".to_string(), "nobody".to_string()]);
        }
        v
    };
    let port = free_port();
    let mut first = start_notified(&argv(port), &notify).expect("first start");
    let mut c = common::Client::connect(port);
    for i in 0..200 {
        c.roundtrip(
            format!("set k{i} 0 0 3\r\nv{:02}\r\n", i % 100).as_bytes(),
            b"STORED\r\n",
        );
    }
    drop(c);
    let pid = first.0.id().to_string();
    assert!(Command::new("kill")
        .args([&format!("-{sig}"), &pid])
        .status()
        .is_ok());
    let status = first.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "stop by {kill}: {status:?}"
    );
    assert!(Path::new(&file).exists(), "{kill} saved the cache");

    let port = free_port();
    let mut child = Command::new(FERROCACHE)
        .args(&argv(port)[1..])
        .env("NOTIFY_SOCKET", &notify.path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("second start");
    let got = datagrams_until_ready(&notify, &mut child);
    let second = Running(child);
    let extend = got
        .iter()
        .position(|m| m.lines().any(|l| l == "EXTEND_TIMEOUT_USEC=30000000"));
    let ready = got.iter().position(|m| m.lines().any(|l| l == "READY=1"));
    assert!(
        extend.is_some() && extend < ready,
        "no EXTEND_TIMEOUT_USEC before READY=1: {got:?}"
    );
    assert!(
        got.iter()
            .any(|m| m.contains("STATUS=restoring the cache from")),
        "{got:?}"
    );
    let mut c = common::Client::connect(port);
    c.send(b"get k199\r\n");
    assert_eq!(
        c.read_until(b"END\r\n"),
        b"VALUE k199 0 3\r\nv99\r\nEND\r\n"
    );
    assert!(!Path::new(&file).exists(), "the file was consumed");
    assert!(
        !Path::new(&format!("{file}.loading")).exists(),
        "no .loading left"
    );
    drop(second);
}

// ------------------------------------------------------------ Debian package (#25)

const CARGO_DEB_HINT: &str = "cargo-deb (cargo install --locked cargo-deb)";

/// Whether `cargo deb` runs here.
fn cargo_deb_available() -> bool {
    Command::new(cargo())
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The file list of `dpkg-deb -c`: paths without the leading `.`.
fn deb_files(deb: &str) -> Vec<String> {
    let run = run_bounded(
        Command::new("dpkg-deb").args(["-c", deb]),
        Duration::from_secs(60),
    );
    assert!(run.status.is_some_and(|s| s.success()), "{}", run.stderr);
    run.stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

#[test]
fn debian_package_builds_holds_what_operators_expect_and_runs() {
    if !require_tool("/usr/bin/dpkg-deb") || !require_tool("/usr/bin/dpkg-shlibdeps") {
        return;
    }
    if !cargo_deb_available() {
        if in_ci() {
            panic!("{CARGO_DEB_HINT} is missing (CI=true)");
        }
        common::skip(&format!("{CARGO_DEB_HINT} not installed"));
        return;
    }
    // The binaries of this test run (no second build): --no-build.
    let build = run_bounded(
        Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/deb/build.sh"))
            .arg("--no-build")
            .env("CARGO", cargo()),
        Duration::from_secs(600),
    );
    assert!(
        build.status.is_some_and(|s| s.success()),
        "contrib/deb/build.sh failed:\n{}{}",
        build.stdout,
        build.stderr
    );
    let deb = build
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .unwrap_or_else(|| panic!("no .deb named in:\n{}", build.stdout))
        .trim()
        .to_string();
    println!("package: {deb}");
    let files = deb_files(&deb);
    println!("{}", files.join("\n"));
    for want in [
        "/usr/bin/ferrocache",
        "/usr/bin/ferrocache-cli",
        "/usr/bin/ferrocache-bench",
        "/usr/share/man/man1/ferrocache.1.gz",
        "/usr/share/man/man1/ferrocache-cli.1.gz",
        "/usr/share/man/man1/ferrocache-bench.1.gz",
        "/usr/share/bash-completion/completions/ferrocache-cli",
        "/usr/share/zsh/vendor-completions/_ferrocache-cli",
        "/usr/share/fish/vendor_completions.d/ferrocache-cli.fish",
        "/lib/systemd/system/ferrocache.service",
        "/etc/ferrocache.conf",
        "/usr/share/doc/ferrocache/examples/warm-restart.conf",
        "/usr/share/doc/ferrocache/copyright",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not in the package");
    }
    let info = run_bounded(
        Command::new("dpkg-deb").args(["-I", &deb]),
        Duration::from_secs(60),
    );
    println!("{}", info.stdout);
    for want in [
        "Package: ferrocache",
        "Depends: ",
        "libc6",
        "passwd",
        "conffiles",
        "postinst",
    ] {
        assert!(
            info.stdout.contains(want),
            "dpkg-deb -I lacks {want}:\n{}",
            info.stdout
        );
    }
    let conffiles = run_bounded(
        Command::new("dpkg-deb").args(["-I", &deb, "conffiles"]),
        Duration::from_secs(60),
    );
    assert_eq!(conffiles.stdout.trim(), "/etc/ferrocache.conf");
    let postinst = run_bounded(
        Command::new("dpkg-deb").args(["-I", &deb, "postinst"]),
        Duration::from_secs(60),
    );
    assert!(
        postinst.stdout.contains("useradd --system"),
        "{}",
        postinst.stdout
    );

    // A scratch root: the files as installed.
    let root = Scratch::new("deb-root");
    let x = run_bounded(
        Command::new("dpkg-deb").args(["-x", &deb]).arg(&root.0),
        Duration::from_secs(60),
    );
    assert!(x.status.is_some_and(|s| s.success()), "{}", x.stderr);
    let installed = root.0.join("usr/bin/ferrocache");
    for bin in ["ferrocache", "ferrocache-cli", "ferrocache-bench"] {
        let path = root.0.join("usr/bin").join(bin);
        let size = std::fs::metadata(&path).expect("installed binary").len();
        let sections = run_bounded(
            Command::new("readelf").arg("-S").arg(&path),
            Duration::from_secs(30),
        );
        assert!(
            !sections.stdout.contains(".debug_info") && size < 12 << 20,
            "{bin} is not stripped ({size} bytes)"
        );
    }
    let bash = run_bounded(
        Command::new("bash").arg("-n").arg(
            root.0
                .join("usr/share/bash-completion/completions/ferrocache-cli"),
        ),
        Duration::from_secs(30),
    );
    assert!(bash.status.is_some_and(|s| s.success()), "{}", bash.stderr);
    // The packaged unit, pointed at the unpacked binary and man pages.
    if require_tool(ANALYZE) && require_tool(MAN) {
        let text = std::fs::read_to_string(root.0.join("lib/systemd/system/ferrocache.service"))
            .expect("unit");
        let dir = Scratch::new("deb-unit");
        let unit = dir.file(
            "ferrocache.service",
            &text.replace("/usr/bin/ferrocache", &installed.to_string_lossy()),
        );
        verify(&unit, &root.0.join("usr/share/man").to_string_lossy());
    }
    // The unpacked binary with the unpacked conf, on a loopback port of ours (flags
    // after --config win; as root without the package's user, -u nobody).
    let conf = root.0.join("etc/ferrocache.conf");
    let run_dir = Scratch::new("deb-run");
    run_dir.open_to_all();
    serve_with_conf(&installed, &conf, &run_dir, true, None);

    // As root under CI (a fresh machine): dpkg -i for real, then purge.
    if is_root() && in_ci() {
        let i = run_bounded(
            Command::new("dpkg").args(["-i", &deb]),
            Duration::from_secs(300),
        );
        assert!(
            i.status.is_some_and(|s| s.success()),
            "dpkg -i:\n{}{}",
            i.stdout,
            i.stderr
        );
        let uid = uid_of("ferrocache").expect("postinst created the user ferrocache");
        let q = run_bounded(
            Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "ferrocache"]),
            Duration::from_secs(60),
        );
        assert!(q.stdout.contains("/etc/ferrocache.conf"), "{}", q.stdout);
        serve_with_conf(
            Path::new("/usr/bin/ferrocache"),
            Path::new("/etc/ferrocache.conf"),
            &run_dir,
            false,
            Some(uid),
        );
        let p = run_bounded(
            Command::new("dpkg").args(["--purge", "ferrocache"]),
            Duration::from_secs(300),
        );
        assert!(
            p.status.is_some_and(|s| s.success()),
            "dpkg --purge:\n{}{}",
            p.stdout,
            p.stderr
        );
    }
}

/// Starts `bin --config conf` on a free loopback port with a pid file in `run_dir`
/// (and `-u nobody` when `as_nobody` and root), checks it serves (and, with
/// `want_uid`, runs as that user), then stops it with SIGTERM.
fn serve_with_conf(
    bin: &Path,
    conf: &Path,
    run_dir: &Scratch,
    as_nobody: bool,
    want_uid: Option<u32>,
) {
    let pid_file = run_dir.path("ferrocache.pid");
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(conf)
            .args(["-p", &port.to_string(), "-U", "0", "-P", &pid_file])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if as_nobody && is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let mut server = Running(cmd.spawn().expect("start the installed binary"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut up = false;
        while Instant::now() < deadline {
            if matches!(server.0.try_wait(), Ok(Some(_))) {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                up = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !up {
            continue;
        }
        assert!(version_reply(port).starts_with("VERSION 1.6.18"));
        let written = std::fs::read_to_string(&pid_file).unwrap_or_default();
        assert_eq!(written.trim(), server.0.id().to_string(), "pid file");
        if let Some(uid) = want_uid {
            assert_eq!(
                uid_of_pid(server.0.id()),
                Some(uid),
                "runs as the conf's -u"
            );
        }
        let kill = Command::new("kill")
            .args(["-TERM", &server.0.id().to_string()])
            .status();
        assert!(kill.is_ok_and(|s| s.success()));
        let status = server.wait_exit(Duration::from_secs(10));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        return;
    }
    panic!(
        "{} --config {} never served (5 ports tried)",
        bin.display(),
        conf.display()
    );
}
