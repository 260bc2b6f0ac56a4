//! memcached's `-vv` connection log on standard error: `<fd new auto-negotiating
//! client connection`, `<fd get foo` for every text command line, `>fd END` /
//! `>fd STORED` / `>fd NOREPLY STORED` for the one-line replies memcached logs
//! (`out_string`), `>fd sending key foo` for each hit of a get, `<fd connection
//! closed.`
//!
//! Gated by the `log` crate's run-time maximum level (Debug and above, which `-vv`
//! and `verbosity 2` set): when it is lower, the cost on the request path is one
//! comparison. The connection being served is kept in a thread-local while its
//! command runs, so the executors' reply helpers can log without carrying it around.

use std::cell::Cell;
use std::io::Write;

thread_local! {
    static FD: Cell<i32> = const { Cell::new(-1) };
}

/// Whether connection logging is on (`-vv` or more).
#[inline]
pub fn on() -> bool {
    log::max_level() >= log::LevelFilter::Debug
}

/// Writes one line to standard error (the prefix, the connection, the text).
pub fn line(prefix: char, fd: i32, text: &[u8]) {
    let mut l = Vec::with_capacity(text.len() + 16);
    let _ = write!(l, "{prefix}{fd} ");
    l.extend_from_slice(text);
    l.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&l);
}

/// Logs a text request line (`<fd line`, without its `\r\n`).
pub fn request(fd: i32, input: &[u8]) {
    let end = input
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .unwrap_or(input.len());
    let mut text = &input[..end];
    if text.len() > 1 && text.ends_with(b"\r") {
        text = &text[..text.len() - 1];
    }
    line('<', fd, text);
}

/// Any text, as memcached prints it (`28: Client using the ascii protocol`).
pub fn raw(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Runs `f` with `fd` as the connection the reply helpers log for.
pub fn with_conn<R>(fd: i32, f: impl FnOnce() -> R) -> R {
    FD.with(|c| c.set(fd));
    let r = f();
    FD.with(|c| c.set(-1));
    r
}

/// Logs a one-line reply of the connection being served (`>fd text`, or `>fd
/// NOREPLY text` when suppressed).
#[inline]
pub fn reply(text: &str, noreply: bool) {
    if !on() {
        return;
    }
    let fd = FD.with(Cell::get);
    if fd < 0 {
        return;
    }
    if noreply {
        let mut t = Vec::with_capacity(text.len() + 8);
        t.extend_from_slice(b"NOREPLY ");
        t.extend_from_slice(text.as_bytes());
        line('>', fd, &t);
    } else {
        line('>', fd, text.as_bytes());
    }
}

/// Logs a get hit (`>fd sending key <key>`).
#[inline]
pub fn sending_key(key: &[u8]) {
    if !on() {
        return;
    }
    let fd = FD.with(Cell::get);
    if fd >= 0 {
        let mut t = Vec::with_capacity(key.len() + 12);
        t.extend_from_slice(b"sending key ");
        t.extend_from_slice(key);
        line('>', fd, &t);
    }
}
