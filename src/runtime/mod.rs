//! The only user of `libcontainer`. The agent never calls it: each container gets a
//! monitor process (the `hostlet-monitor` helper binary, single-threaded, see [`monitor`]) that
//! creates, starts, logs, waits for and deletes it. The agent talks to a monitor through
//! files in the container directory and signals sent through a pidfd.

pub mod attach;
pub mod attach_client;
mod cgroup_kill;
mod drop_report;
pub mod exec;
pub mod exec_tty;
mod exec_userns;
mod executor;
mod leftovers;
pub mod monitor;
mod monitor_attach;
mod monitor_error;
mod monitor_stdio;
mod monitors;
mod oom;
pub mod proc;
pub mod teardown;
mod terminal;
mod userns;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use leftovers::Leftovers;
pub use monitors::{helper_path, Adopted, ExecOutput, Handle, Runtime, HELPER};
pub use userns::UserNamespace;

/// What a container's log writer dropped so far, as its monitor last reported it; None
/// when it never dropped anything (or the container is gone).
pub fn log_drops(layout: &crate::state::Layout, id: &str) -> Option<crate::logs::DropStats> {
    let path = layout.container(id).join(LOG_DROPS_FILE);
    crate::state::read_json(&path).ok().flatten()
}

/// Signal from the agent to a monitor: stop the container with its stop signal.
pub const SIG_STOP: i32 = libc::SIGTERM;
/// Signal from the agent to a monitor: kill every process of the container now.
pub const SIG_KILL: i32 = libc::SIGUSR2;

/// Written by the agent before it starts a monitor: everything the monitor needs, and
/// what a restarted agent needs to recognise the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MonitorConfig {
    pub id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub container: String,
    pub restart_count: u32,
    /// Bundle directory holding `config.json`; its `rootfs/` is the overlay mount point.
    pub bundle: PathBuf,
    /// Read-only image layers, the overlay's lower directories, topmost first.
    pub lower: Vec<PathBuf>,
    /// Manifest digest of the container's image: the image store keeps it while in use.
    #[serde(default)]
    pub image_digest: String,
    pub log_path: PathBuf,
    pub stop_signal: i32,
    /// The cgroup path in the spec, to read OOM kills before the cgroup is removed.
    pub cgroups_path: String,
    /// How the container's cgroup is made: with systemd, `cgroups_path` names a scope
    /// (absent in records of older agents: cgroupfs).
    #[serde(default)]
    pub cgroup_driver: crate::cgroups::Driver,
    /// Rotation of the CRI log (absent in records of older agents: the defaults).
    #[serde(default)]
    pub log_limits: crate::logs::LogLimits,
    /// `hostUsers: false`: the pod's user namespace (absent: the host's users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<UserNamespace>,
    /// The container's `stdin`, `stdinOnce` and `tty` (absent in older records: off).
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
    #[serde(default)]
    pub tty: bool,
}

/// Written by the monitor once the container's process runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MonitorState {
    pub monitor_pid: i32,
    pub monitor_start: u64,
    pub init_pid: i32,
    pub started_at: String,
}

/// Written by the monitor when the container is gone (or could not start).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExitRecord {
    /// Exit status as a shell reports it: the code, or 128 + signal.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_at: Option<String>,
    pub finished_at: String,
    /// Set when the container never ran: the error, for the `StartError` reason.
    pub start_error: Option<String>,
    /// The container's termination message (terminationMessagePath, or its log's tail
    /// with FallbackToLogsOnError): read by the agent after the exit, never by the monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ExitRecord {
    /// The kubelet's terminated reason.
    pub fn reason(&self) -> &'static str {
        if self.start_error.is_some() {
            "StartError"
        } else if self.oom_killed {
            "OOMKilled"
        } else if self.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id}: {message}")]
    Start { id: String, message: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) const CONFIG_FILE: &str = "monitor.json";
pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const EXIT_FILE: &str = "exit.json";
/// Written by the monitor when its log writer starts or stops dropping lines, and at most
/// once a second while it drops them ([`crate::logs::DropStats`]).
pub(crate) const LOG_DROPS_FILE: &str = "log-drops.json";
pub(crate) const MONITOR_LOG: &str = "monitor.log";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_helper_is_named() {
        let rt = Runtime::new(crate::state::Layout::new("/nonexistent")).unwrap();
        assert_eq!(rt.helper().file_name().unwrap(), HELPER);
        let e = rt.check_helper().unwrap_err().to_string();
        assert!(e.contains(&rt.helper().display().to_string()), "{e}");
    }

    #[tokio::test]
    async fn torn_records_are_debris() {
        // What a power cut may leave, as records are not fsynced: nothing to adopt, and
        // the directory goes (the cleanup helper is absent here; removal must not need it).
        let root = tempfile::tempdir().unwrap();
        let layout = crate::state::Layout::new(root.path());
        let torn = layout.container("torn");
        std::fs::create_dir_all(&torn).unwrap();
        std::fs::write(torn.join(CONFIG_FILE), b"{\"id\":\"tor").unwrap();
        let rt = Runtime::new(layout).unwrap();
        assert!(rt.adopt_all().await.is_empty());
        assert!(!torn.exists(), "the torn container directory is removed");
    }

    fn rec(code: i32, oom: bool, err: Option<&str>) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            signal: None,
            oom_killed: oom,
            started_at: None,
            finished_at: String::new(),
            start_error: err.map(str::to_string),
            message: None,
        }
    }

    #[test]
    fn reasons_match_the_kubelet() {
        assert_eq!(rec(0, false, None).reason(), "Completed");
        assert_eq!(rec(3, false, None).reason(), "Error");
        assert_eq!(rec(137, true, None).reason(), "OOMKilled");
        assert_eq!(rec(128, false, Some("x")).reason(), "StartError");
    }
}
