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
        let uids = self.pod_uids();
        // Pods are gone once their containers and then their own directories are: the
        // pod cgroup and sandbox go before the directory.
        let deadline = Instant::now() + Duration::from_secs(60);
        let busy = |f: &Fixture| !f.container_dirs().is_empty() || !f.pod_uids().is_empty();
        while Instant::now() < deadline && busy(self) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if busy(self) {
            eprintln!("pods left after cleanup:\n{}", self.dirs.agent_log());
        }
        // A test that passed must also have left nothing of its pods on the host.
        if !std::thread::panicking() {
            let leaked = pod_cgroups_of(&uids);
            assert!(
                leaked.is_empty(),
                "pod cgroups left on the host: {leaked:?}"
            );
            let mounts = mounts_under(&self.dirs.root);
            assert!(
                mounts.is_empty(),
                "mounts left under the root dir: {mounts:?}"
            );
        }
    }
}

impl Fixture {
    /// `hostlet pods -o json` against the running agent: its v1/PodList, or None while
    /// the agent is not answering yet (it binds its socket after start-up).
    pub fn pod_list(&self) -> Option<serde_json::Value> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostlet"))
            .args(["pods", "-o", "json", "--root-dir"])
            .arg(&self.dirs.root)
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("no hostlet agent is running"),
                "hostlet pods: {err}"
            );
            return None;
        }
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(list["kind"], "PodList");
        Some(list)
    }

    /// The pod named `name` (without the node suffix) in [`Fixture::pod_list`].
    pub fn pod(&self, name: &str) -> Option<serde_json::Value> {
        self.pod_list()?["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"] == format!("{name}-{NODE_NAME}"))
            .cloned()
    }

    /// The status of [`Fixture::pod`].
    pub fn pod_status(&self, name: &str) -> Option<serde_json::Value> {
        Some(self.pod(name)?["status"].clone())
    }
}

impl Fixture {
    /// UIDs of the pods the agent has a directory or a container for.
    fn pod_uids(&self) -> Vec<String> {
        let mut uids: Vec<String> = fs::read_dir(self.dirs.root.join("pods"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for dir in self.container_dirs() {
            let cfg: Option<serde_json::Value> = fs::read(dir.join("monitor.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(uid) = cfg.as_ref().and_then(|c| c["pod_uid"].as_str()) {
                uids.push(uid.to_string());
            }
        }
        uids.sort();
        uids.dedup();
        uids
    }
}
