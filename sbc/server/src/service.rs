//! Notifications to systemd's service manager (`Type=notify` in ops/systemd/sbc.service): ready once every
//! listener is bound, reloading around a configuration reload, stopping when a stop begins. Without
//! `$NOTIFY_SOCKET` (not started by systemd) each is a no-op.

use sd_notify::NotifyState;

/// Every listener is bound and calls are taken: systemd considers the start done (and starts what waits for it).
pub fn ready() {
    send(&[NotifyState::Ready], "ready");
}

/// A configuration reload begins; call [`reload_done`] when it has been applied or refused. With systemd 253 and
/// newer, RELOADING=1 must carry the monotonic time of the request.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now], "reloading"),
        Err(_) => send(&[NotifyState::Reloading], "reloading"),
    }
}

/// The reload announced by [`reloading`] is over (applied or refused): the service is ready again.
pub fn reload_done() {
    ready();
}

/// A stop begins (SIGTERM or SIGINT): systemd shows the service as deactivating while calls drain.
pub fn stopping() {
    send(&[NotifyState::Stopping], "stopping");
}

fn send(states: &[NotifyState], what: &str) {
    // A service manager that does not hear us kills the unit after its start timeout: worth a log line, but no
    // reason to stop carrying calls.
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::warn!(%error, what, "could not notify the service manager");
    }
}
