//! The end of a container: killed (through libcontainer, then through its cgroup),
//! deleted and its rootfs unmounted; by its monitor when it exits, or by the one-shot
//! `hostlet-monitor monitor --cleanup DIR` when the monitor is gone.

use std::path::Path;
use std::time::Duration;

use libcontainer::container::Container;
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};

use super::oom::oom_kills;
use super::{ExitRecord, MonitorConfig, MonitorState, CONFIG_FILE, EXIT_FILE, STATE_FILE};
use crate::logs::rfc3339_nano;
use crate::state::{self, Layout};

/// Entry point of `hostlet-monitor monitor --cleanup DIR`: the monitor of DIR is gone; kill and
/// delete whatever is left of its container and record an exit if none was recorded.
pub fn cleanup(dir: &Path) -> i32 {
    let Ok(Some(cfg)) = state::read_json::<MonitorConfig>(&dir.join(CONFIG_FILE)) else {
        return 0;
    };
    let layout = Layout::new(
        dir.parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/")),
    );
    let oom = oom_kills(&cfg.cgroups_path) > 0;
    teardown(&cfg, &layout);
    if !dir.join(EXIT_FILE).exists() {
        let started_at = state::read_json::<MonitorState>(&dir.join(STATE_FILE))
            .ok()
            .flatten()
            .map(|s| s.started_at);
        let rec = ExitRecord {
            exit_code: 128 + libc::SIGKILL,
            signal: Some(libc::SIGKILL),
            oom_killed: oom,
            started_at,
            finished_at: now(),
            start_error: None,
            message: None,
        };
        if let Err(e) = state::write_json(&dir.join(EXIT_FILE), &rec) {
            tracing::error!(error = %e, "writing exit record");
            return 1;
        }
    }
    0
}

/// Kills and deletes the container (cgroups, libcontainer state) and unmounts its rootfs.
pub(super) fn teardown(cfg: &MonitorConfig, layout: &Layout) {
    let root = layout.runtime().join(&cfg.id);
    if root.exists() {
        match Container::load(root.clone()) {
            Ok(mut c) => {
                if let Err(e) = c.kill(Signal::SIGKILL, true) {
                    // PID 1 of the container takes its PID namespace down with it; what
                    // is left in its cgroup is killed below.
                    tracing::warn!(container_id = %cfg.id, error = %e, "killing the container");
                    if let Some(pid) = c.pid() {
                        let _ = kill(pid, Signal::SIGKILL);
                    }
                }
                if let Err(e) = c.delete(true) {
                    tracing::warn!(container_id = %cfg.id, error = %e, "deleting container");
                }
            }
            Err(e) => tracing::warn!(container_id = %cfg.id, error = %e, "loading container"),
        }
    }
    // Whatever libcontainer could not kill (its cgroup manager failed) is killed here:
    // once this returns, the agent starts the container's replacement.
    let left = super::cgroup_kill::kill_all(&cfg.cgroups_path, Duration::from_secs(5));
    if left > 0 {
        tracing::error!(container_id = %cfg.id, processes = left, "processes of the container survive SIGKILL");
    }
    // A delete that failed (systemd already collected the scope of a container whose
    // monitor was killed, say) leaves libcontainer's record of a container that no longer
    // runs: it is debris, and nothing else would ever remove it.
    if root.exists() {
        if let Err(e) = std::fs::remove_dir_all(&root) {
            tracing::warn!(container_id = %cfg.id, error = %e, "removing the container's runtime state");
        }
    }
    let _ = umount2(&cfg.bundle.join("rootfs"), MntFlags::MNT_DETACH);
    if cfg.userns.is_some() {
        super::userns::unmount_layers(&layout.container(&cfg.id));
    }
}

/// The time records carry: RFC 3339 with nanoseconds, as the CRI logs do.
pub(super) fn now() -> String {
    rfc3339_nano(jiff::Timestamp::now())
}
