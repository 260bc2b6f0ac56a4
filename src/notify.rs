//! Start-up and shutdown notices to the service manager (systemd `Type=notify`,
//! `sd_notify(3)`): `READY=1` once every listener is bound and the workers run,
//! `STOPPING=1` when the server begins to stop, and while a warm restart loads its
//! file before `READY=1`, `EXTEND_TIMEOUT_USEC` once a second (so a large restore is
//! not killed by the unit's start timeout).
//!
//! A process not started by systemd has no `$NOTIFY_SOCKET`, and then these do
//! nothing. A notice that cannot be sent is logged, never fatal: the service
//! manager then times the start out, which is the failure an operator should see.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    // The variable stays set (`false`): the stop notice is sent later through it.
    if let Err(e) = sd_notify::notify(false, states) {
        log::warn!("could not notify the service manager ($NOTIFY_SOCKET): {e}");
    }
}

/// Tells the service manager that the server is up: every listener is bound (so
/// connections are accepted from now on) and the workers are running.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// Tells the service manager that the server is stopping (listeners closing,
/// buffered replies being sent).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How far each notice during a restore moves the start timeout: a restore that stops
/// making progress (hangs) is still killed this long after its last notice.
pub const RESTORE_EXTEND_SECS: u32 = 30;

/// Tells the service manager that the start goes on (a snapshot is being loaded):
/// `EXTEND_TIMEOUT_USEC` of [`RESTORE_EXTEND_SECS`] from now, and the status line.
pub fn still_loading(status: &str) {
    send(&[
        NotifyState::ExtendTimeoutUsec(RESTORE_EXTEND_SECS * 1_000_000),
        NotifyState::Status(status),
    ]);
}
