//! logind's side of graceful shutdown: the delay inhibitor lock, `InhibitDelayMaxSec`,
//! and the `PrepareForShutdown` signal, served from one blocking thread.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::dbus::{self, Arg, BodyReader, Conn, DbusError};

const LOGIND: &str = "org.freedesktop.login1";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const LOGIND_MANAGER: &str = "org.freedesktop.login1.Manager";
/// Where the drop-in that raises InhibitDelayMaxSec goes (runtime: gone at reboot, when
/// hostlet writes it again).
pub const DROP_IN_DIR: &str = "/run/systemd/logind.conf.d";
pub const DROP_IN: &str = "99-hostlet-inhibit-delay.conf";

/// What the logind thread tells the manager.
#[derive(Debug)]
pub enum Event {
    /// The lock is held (after start and after a cancelled shutdown).
    Inhibited,
    /// `PrepareForShutdown(true)`: stop the pods, then answer; the lock is released then.
    Shutdown(oneshot::Sender<()>),
    /// `PrepareForShutdown(false)` after a shutdown: it was cancelled.
    Cancelled,
    /// The thread gave up (no logind, the bus went away).
    Failed(String),
}

fn inhibit(c: &mut Conn, why: &str) -> Result<OwnedFd, DbusError> {
    let mut reply = c.call(
        LOGIND,
        LOGIND_PATH,
        LOGIND_MANAGER,
        "Inhibit",
        &[
            Arg::Str("shutdown"),
            Arg::Str("hostlet"),
            Arg::Str(why),
            Arg::Str("delay"),
        ],
    )?;
    if reply.fds.is_empty() {
        return Err(DbusError::Malformed(
            "Inhibit replied without a file descriptor",
        ));
    }
    Ok(reply.fds.swap_remove(0))
}

/// logind's InhibitDelayMaxUSec.
fn delay_max(c: &mut Conn) -> Result<Duration, DbusError> {
    let reply = c.call(
        LOGIND,
        LOGIND_PATH,
        "org.freedesktop.DBus.Properties",
        "Get",
        &[Arg::Str(LOGIND_MANAGER), Arg::Str("InhibitDelayMaxUSec")],
    )?;
    let mut r = BodyReader::new(&reply.body);
    if r.sig()? != "t" {
        return Err(DbusError::Malformed("InhibitDelayMaxUSec is not a u64"));
    }
    Ok(Duration::from_micros(r.u64()?))
}

/// The drop-in's text for `period` (whole seconds, rounded up).
pub fn drop_in(period: Duration) -> String {
    let secs = period.as_secs() + u64::from(period.subsec_nanos() > 0);
    format!(
        "# Written by hostlet: its --shutdown-grace-period.\n[Login]\nInhibitDelayMaxSec={secs}\n"
    )
}

/// Raises InhibitDelayMaxSec to `period` when it is lower, as the kubelet does: a drop-in,
/// then SIGHUP to systemd-logind (systemd's KillUnit), then a check.
fn ensure_delay(c: &mut Conn, period: Duration) -> Result<Duration, String> {
    let now = delay_max(c).map_err(|e| format!("reading InhibitDelayMaxUSec: {e}"))?;
    if now >= period {
        return Ok(now);
    }
    let dir = Path::new(DROP_IN_DIR);
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(dir.join(DROP_IN), drop_in(period)))
        .map_err(|e| format!("writing {}/{DROP_IN}: {e}", dir.display()))?;
    c.call(
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "KillUnit",
        &[
            Arg::Str("systemd-logind.service"),
            Arg::Str("all"),
            Arg::I32(libc::SIGHUP),
        ],
    )
    .map_err(|e| format!("reloading systemd-logind: {e}"))?;
    // logind reloads asynchronously.
    for _ in 0..50 {
        let got = delay_max(c).map_err(|e| format!("reading InhibitDelayMaxUSec: {e}"))?;
        if got >= period {
            tracing::info!(
                inhibit_delay_max_s = got.as_secs(),
                "raised logind's InhibitDelayMaxSec"
            );
            return Ok(got);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "InhibitDelayMaxSec is still {now:?} after writing {DROP_IN_DIR}/{DROP_IN}"
    ))
}

/// Runs the logind side until the bus goes away: takes the lock, and on each
/// `PrepareForShutdown(true)` waits for the manager, then releases it; takes it again
/// when a shutdown is cancelled. Blocking: run it on its own thread.
pub fn serve(period: Duration, tx: mpsc::Sender<Event>) {
    let fail = |tx: &mpsc::Sender<Event>, m: String| {
        let _ = tx.blocking_send(Event::Failed(m));
    };
    let path = dbus::system_bus_path();
    let mut c = match Conn::connect(Path::new(&path)) {
        Ok(c) => c,
        Err(e) => return fail(&tx, format!("connecting to the system bus: {e}")),
    };
    if let Err(e) = ensure_delay(&mut c, period) {
        // The kubelet goes on too: the lock still delays the shutdown, only for less.
        tracing::warn!(error = %e, "logind may not wait the whole shutdown grace period");
    }
    let rule = format!(
        "type='signal',sender='{LOGIND}',interface='{LOGIND_MANAGER}',member='PrepareForShutdown',path='{LOGIND_PATH}'"
    );
    if let Err(e) = c.call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "AddMatch",
        &[Arg::Str(&rule)],
    ) {
        return fail(&tx, format!("subscribing to PrepareForShutdown: {e}"));
    }
    let why = "hostlet stops its pods gracefully before a shutdown";
    let mut lock = match inhibit(&mut c, why) {
        Ok(fd) => Some(fd),
        Err(e) => return fail(&tx, format!("taking the shutdown inhibitor lock: {e}")),
    };
    if tx.blocking_send(Event::Inhibited).is_err() {
        return;
    }
    loop {
        let m = match c.next_signal() {
            Ok(m) => m,
            Err(e) => return fail(&tx, format!("reading from the system bus: {e}")),
        };
        if m.member.as_deref() != Some("PrepareForShutdown") || m.signature != "b" {
            continue;
        }
        let active = BodyReader::new(&m.body).u32().unwrap_or(0) != 0;
        if active && lock.is_some() {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.blocking_send(Event::Shutdown(done_tx)).is_err() {
                return;
            }
            let _ = done_rx.blocking_recv();
            tracing::info!("pods stopped; releasing the shutdown inhibitor lock");
            lock = None;
        } else if !active && lock.is_none() {
            match inhibit(&mut c, why) {
                Ok(fd) => lock = Some(fd),
                Err(e) => {
                    return fail(
                        &tx,
                        format!("taking the shutdown inhibitor lock again: {e}"),
                    )
                }
            }
            if tx.blocking_send(Event::Cancelled).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_in_rounds_up_to_seconds() {
        assert_eq!(
            drop_in(Duration::from_millis(30_500)),
            "# Written by hostlet: its --shutdown-grace-period.\n[Login]\nInhibitDelayMaxSec=31\n"
        );
        assert!(drop_in(Duration::from_secs(30)).ends_with("=30\n"));
    }
}
