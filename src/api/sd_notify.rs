//! systemd's readiness protocol (sd_notify(3)) without libsystemd: datagrams to
//! `$NOTIFY_SOCKET`. `READY=1` once the sources are synced, `WATCHDOG=1` at half of
//! `$WATCHDOG_USEC`, `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET` all of it is a no-op.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use crate::status::StatusStore;

/// Sends one notification; errors are logged, never fatal (systemd may be restarting).
pub fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let result = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        // A leading '@' names a socket in the abstract namespace.
        let addr = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None => SocketAddr::from_pathname(&path)?,
        };
        sock.send_to_addr(state.as_bytes(), &addr).map(drop)
    })();
    match result {
        Ok(()) => tracing::debug!(notify_socket = %path, state, "sd_notify"),
        Err(e) => tracing::warn!(notify_socket = %path, state, error = %e, "sd_notify"),
    }
}

/// The watchdog interval systemd asks for, if it asks this process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Sends `READY=1` once `status` is synced, then keeps the watchdog fed. Runs until
/// aborted.
pub async fn run(status: StatusStore) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let watchdog = watchdog_interval();
    // Feed the watchdog even before READY: an image-less first sync can take a while.
    let mut last_feed = tokio::time::Instant::now();
    loop {
        poll.tick().await;
        if status.synced() {
            break;
        }
        if let Some(w) = watchdog {
            if last_feed.elapsed() >= w / 2 {
                send("WATCHDOG=1");
                last_feed = tokio::time::Instant::now();
            }
        }
    }
    send(&format!(
        "READY=1\nSTATUS=running, sources synced\nMAINPID={}",
        std::process::id()
    ));
    let Some(w) = watchdog else { return };
    let mut tick = tokio::time::interval(w / 2);
    loop {
        tick.tick().await;
        send("WATCHDOG=1");
    }
}

/// Tells systemd the agent is stopping (containers keep running).
pub fn stopping() {
    send("STOPPING=1");
}
