//! The sandbox's vocabulary, below every file of the module: where a pod's shared files
//! are, which namespaces it shares, whether one is held, and the module's error.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox helper for {dir}: {message}")]
    Helper { dir: PathBuf, message: String },
    #[error("spec.hostname {0:?}: must be a DNS-1123 label")]
    Hostname(String),
    #[error("pause process of {dir}: {message}")]
    Pause { dir: PathBuf, message: String },
    #[error("pause process of {dir}: {reason}")]
    Scope { dir: PathBuf, reason: ScopeError },
}

/// Why the pause process could not be moved into its systemd scope.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("busctl: {0}")]
    Busctl(std::io::Error),
    #[error("starting scope {unit}: {stderr}")]
    Start { unit: String, stderr: String },
}

pub(super) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Sys { what, source }
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a pod's shared things live, under its pod directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    pub dir: PathBuf,
}

impl PodFiles {
    pub fn new(pod_dir: &Path) -> Self {
        Self {
            dir: pod_dir.to_path_buf(),
        }
    }
    /// Directory of the namespace bind mounts (`net`, `ipc`, `uts`, `pid`, `user`).
    pub fn ns_dir(&self) -> PathBuf {
        self.dir.join("ns")
    }
    pub fn ns(&self, kind: &str) -> PathBuf {
        self.ns_dir().join(kind)
    }
    /// The pod's /dev/shm: one tmpfs every container of the pod mounts.
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("etc-hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    /// A container's termination message file, bind-mounted at its
    /// `terminationMessagePath` (the worker's `termination` module).
    pub fn termination_log(&self, container: &str) -> PathBuf {
        self.dir.join("termination").join(container)
    }
    /// The pause process's identity (pid and start time), for adoption and teardown.
    pub fn pause_record(&self) -> PathBuf {
        self.dir.join("pause.json")
    }
    /// Serialises sandbox changes of one pod between the agent's blocking threads.
    pub(super) fn lock(&self) -> PathBuf {
        self.dir.join("sandbox.lock")
    }
}

/// Which namespaces the pod gets of its own (the others are the host's, or for PID, each
/// container's own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shared {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    /// `shareProcessNamespace`: one PID namespace whose PID 1 is the pause process.
    pub pid: bool,
    /// `hostUsers: false`: a user namespace that owns the pod's other namespaces.
    pub user: bool,
}

impl Shared {
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        Self {
            net: !host_network,
            // The kubelet gives hostNetwork pods the host's UTS namespace too.
            uts: !host_network,
            ipc: !spec.host_ipc.unwrap_or(false),
            // Validation refuses hostPID together with shareProcessNamespace.
            pid: spec.share_process_namespace.unwrap_or(false) && !spec.host_pid.unwrap_or(false),
            user: spec.host_users == Some(false),
        }
    }

    pub fn any(self) -> bool {
        self.net || self.ipc || self.uts || self.pid || self.user
    }
}

/// Whether the pod's namespace `kind` is held by its bind mount.
pub(super) fn held(files: &PodFiles, kind: &str) -> bool {
    nix::sys::statfs::statfs(&files.ns(kind))
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}
