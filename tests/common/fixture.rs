//! A registry, agent dirs and a running agent for one integration test, cleaned up on
//! drop (also when the test fails): every manifest is removed and an agent runs until
//! every container is gone, so no test leaves containers behind on the host.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;

pub const T: Duration = Duration::from_secs(30);

/// A registry, agent dirs and an agent; on drop (also when a test fails) every manifest
/// is removed and an agent runs until every container is gone, so no test leaves
/// containers behind on the host.
pub struct Fixture {
    pub agent: Option<Agent>,
    pub dirs: AgentDirs,
    pub reg: Registry,
    /// How long `wait` waits (before `time_scale`).
    pub patience: Duration,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_args(&[])
    }

    pub fn with_args(extra: &[&str]) -> Self {
        Self::prepared(extra, |_| {})
    }

    /// Like [`Fixture::with_args`]; `prepare` runs on the dirs before the agent starts.
    pub fn prepared(extra: &[&str], prepare: impl FnOnce(&AgentDirs)) -> Self {
        let reg = Registry::start();
        let dirs = AgentDirs::new();
        prepare(&dirs);
        let agent = Some(Agent::start_with(&dirs, Some(&reg), extra));
        Fixture {
            agent,
            dirs,
            reg,
            patience: T,
        }
    }

    /// The same fixture, waiting up to `patience` for each condition.
    pub fn patient(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    pub fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("agent running")
    }

    pub fn wait<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_until(self.patience, what, || self.dirs.agent_log(), f)
    }

    pub fn image(&self) -> String {
        self.reg.image("test")
    }

    /// The PID of the one live process whose command line holds `marker`.
    pub fn container_pid(&self, marker: &str) -> i32 {
        self.wait(&format!("one process with {marker}"), || {
            let pids = find_pids_by_cmdline(marker);
            (pids.len() == 1).then(|| pids[0])
        })
    }

    /// Waits until no live process's command line holds `marker`.
    pub fn gone(&self, marker: &str) {
        self.wait(&format!("no process with {marker}"), || {
            find_pids_by_cmdline(marker).is_empty().then_some(())
        });
    }

    /// Waits until the agent log contains `what`.
    pub fn log_has(&self, what: &str) {
        self.wait(&format!("agent log contains {what:?}"), || {
            self.dirs.agent_log().contains(what).then_some(())
        });
    }

    /// The CRI log lines of `container` of the pod named `pod` once one contains `until`.
    pub fn output(&self, pod: &str, container: &str, until: &str) -> Vec<String> {
        self.wait(&format!("{pod}/{container} printing {until:?}"), || {
            let lines = cri_log_messages(&self.dirs.logs, pod, container);
            lines.iter().any(|l| l.contains(until)).then_some(lines)
        })
    }

    pub fn container_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir(self.dirs.root.join("containers"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // A test may have made the directory unwritable (refused-manifest checks).
        let _ = fs::set_permissions(&self.dirs.manifests, fs::Permissions::from_mode(0o755));
        if let Ok(rd) = fs::read_dir(&self.dirs.manifests) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let alive = self.agent.as_mut().is_some_and(|a| a.is_running());
        if !alive {
            self.agent = Some(Agent::start_with(&self.dirs, Some(&self.reg), &[]));
        }
        // Pod directories go last, after the pod's network is deleted (CNI DEL).
        let pods_left =
            || fs::read_dir(self.dirs.root.join("pods")).is_ok_and(|mut rd| rd.next().is_some());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && (!self.container_dirs().is_empty() || pods_left()) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !self.container_dirs().is_empty() {
            eprintln!("containers left after cleanup:\n{}", self.dirs.agent_log());
        }
    }
}
