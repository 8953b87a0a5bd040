//! The pod sandbox. The pod's network, IPC and UTS namespaces are created once and kept
//! alive by bind mounts of their `/proc/<pid>/ns/*` files under the pod directory; every
//! container of the pod joins them by path. A PID namespace dies with its init, so a pod
//! with `shareProcessNamespace` also gets a pause process ([`pause`]) as PID 1 of its
//! own PID namespace, which is bind-mounted the same way. Also the pod's `/etc/hosts`,
//! `/etc/resolv.conf`, `/etc/hostname` ([`etc`]) and its shared `/dev/shm`.
//!
//! unshare(2) and fork(2) must not run in the multi-threaded agent, so [`create`] runs
//! the `hostlet-monitor sandbox create DIR` ([`helper_main`]): a short-lived
//! single-threaded process that unshares, sets things up, forks the pause process,
//! bind-mounts the namespace files and exits. Removing is done by the agent: kill the
//! pause process (by pidfd, after checking its start time), umount2 + unlink.

mod etc;
mod helper;
pub mod pause;

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use nix::mount::{umount2, MntFlags};
use serde_json::{json, Value};

pub use etc::{hostname, hosts_file, hosts_file_with_ips, resolv_conf, write_etc, write_hosts};
pub use helper::helper_main;
pub use pause::Placement;

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
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Sys { what, source }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
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
    /// Directory of the namespace bind mounts (`net`, `ipc`, `uts`, `pid`).
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
    /// The pause process's identity (pid and start time), for adoption and teardown.
    pub fn pause_record(&self) -> PathBuf {
        self.dir.join("pause.json")
    }
    /// Serialises sandbox changes of one pod between the agent's blocking threads.
    fn lock(&self) -> PathBuf {
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
        }
    }

    pub fn any(self) -> bool {
        self.net || self.ipc || self.uts || self.pid
    }
}

/// The spec's `linux.namespaces`: a mount namespace of its own; the pod's namespaces by
/// path; a PID namespace of its own unless the pod shares one or uses the host's.
pub fn oci_namespaces(pod: &Pod, files: &PodFiles) -> Vec<Value> {
    let host_pid = pod.spec.as_ref().and_then(|s| s.host_pid).unwrap_or(false);
    let shared = Shared::of(pod);
    let mut namespaces = vec![json!({"type": "mount"})];
    if shared.pid {
        // The bind mount, not /proc/<pause>/ns/pid: a recycled PID can never make a
        // container join a stranger's namespace, and a dead pause process makes the
        // start fail (fork in a namespace without init is ENOMEM) instead.
        namespaces.push(json!({"type": "pid", "path": files.ns("pid")}));
    } else if !host_pid {
        namespaces.push(json!({"type": "pid"}));
    }
    for (on, kind, file) in [
        (shared.net, "network", "net"),
        (shared.ipc, "ipc", "ipc"),
        (shared.uts, "uts", "uts"),
    ] {
        if on {
            namespaces.push(json!({"type": kind, "path": files.ns(file)}));
        }
    }
    namespaces
}

fn held(files: &PodFiles, kind: &str) -> bool {
    nix::sys::statfs::statfs(&files.ns(kind))
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// The namespaces of `shared` the pod does not hold (yet, or any more): an agent that
/// restarted while the pod ran reuses what is there. A PID namespace counts as held
/// only while its pause process lives.
pub fn missing(files: &PodFiles, shared: Shared) -> Shared {
    Shared {
        net: shared.net && !held(files, "net"),
        ipc: shared.ipc && !held(files, "ipc"),
        uts: shared.uts && !held(files, "uts"),
        pid: shared.pid && !(held(files, "pid") && pause::alive(files).is_some()),
    }
}

/// True when every namespace the pod needs is already held.
pub fn exists(files: &PodFiles, shared: Shared) -> bool {
    !missing(files, shared).any()
}

/// Creates what the pod misses of `shared` through the helper process `exe sandbox
/// create`, the pause process placed in the pod's cgroup by `placement`. Blocking; one
/// caller at a time per pod (a file lock), so concurrent container starts after the
/// pause process died make one new sandbox, not several.
pub fn ensure(
    exe: &Path,
    files: &PodFiles,
    shared: Shared,
    hostname: &str,
    placement: &Placement,
) -> Result<(), SandboxError> {
    if !shared.any() {
        return Ok(());
    }
    std::fs::create_dir_all(&files.dir).map_err(io(&files.dir))?;
    let lock_path = files.lock();
    let lock = std::fs::File::create(&lock_path).map_err(io(&lock_path))?;
    // Held until this function returns (the guard unlocks on drop).
    let _guard =
        nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            SandboxError::Sys {
                what: format!("locking {}", lock_path.display()),
                source: e,
            }
        })?;
    let want = missing(files, shared);
    if !want.any() {
        return Ok(());
    }
    if want.pid {
        if let Some(old) = pause::recorded(files) {
            tracing::warn!(
                pid = old.pid,
                "the pod's pause process is gone: the pod gets a new PID namespace"
            );
        }
        // A dead namespace (its init exited) cannot take new processes: replace it.
        pause::stop(files);
        release(&files.ns("pid"));
    }
    create(exe, files, want, hostname, placement)
}

fn create(
    exe: &Path,
    files: &PodFiles,
    want: Shared,
    hostname: &str,
    placement: &Placement,
) -> Result<(), SandboxError> {
    let mut cmd = std::process::Command::new(exe);
    // As for the monitors: nothing of the agent's environment (LD_LIBRARY_PATH, say)
    // reaches the helper.
    cmd.env_clear();
    cmd.arg("sandbox").arg("create").arg(&files.dir);
    cmd.arg("--hostname").arg(hostname);
    for (on, flag) in [
        (want.net, "--net"),
        (want.ipc, "--ipc"),
        (want.uts, "--uts"),
        (want.pid, "--pid"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    if want.pid {
        for p in placement.procs_files().map_err(io(&files.dir))? {
            cmd.arg("--cgroup-procs").arg(p);
        }
    }
    let out = cmd.output().map_err(io(exe))?;
    if !out.status.success() {
        return Err(SandboxError::Helper {
            dir: files.dir.clone(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    if want.pid {
        let rec = pause::recorded(files).ok_or_else(|| SandboxError::Pause {
            dir: files.dir.clone(),
            message: "the helper left no record".into(),
        })?;
        if let Err(message) = placement.adopt(rec.pid) {
            pause::stop(files);
            return Err(SandboxError::Pause {
                dir: files.dir.clone(),
                message,
            });
        }
        tracing::info!(pid = rec.pid, "pause process started");
    }
    Ok(())
}

fn release(p: &Path) {
    if p.exists() {
        let _ = umount2(p, MntFlags::MNT_DETACH);
        if let Err(e) = std::fs::remove_file(p) {
            tracing::warn!(path = %p.display(), error = %e, "removing namespace file");
        }
    }
}

/// Kills the pause process and releases the pod's namespaces and /dev/shm. Safe to call
/// when nothing was created.
pub fn remove(files: &PodFiles) {
    pause::stop(files);
    for kind in ["net", "ipc", "uts", "pid"] {
        release(&files.ns(kind));
    }
    for p in [files.ns_dir(), files.shm()] {
        if p.exists() {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_file(files.lock());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn types(ns: &[Value]) -> Vec<(String, Option<String>)> {
        ns.iter()
            .map(|n| {
                (
                    n["type"].as_str().unwrap().to_string(),
                    n["path"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    #[test]
    fn shared_pid_namespace_is_joined_by_its_bind_mount() {
        let files = PodFiles::new(Path::new("/r/pods/u"));
        let p = pod("metadata: {name: x}\nspec: {shareProcessNamespace: true, containers: []}\n");
        assert!(Shared::of(&p).pid);
        let ns = types(&oci_namespaces(&p, &files));
        assert_eq!(ns[0], ("mount".into(), None));
        assert_eq!(ns[1], ("pid".into(), Some("/r/pods/u/ns/pid".into())));
        assert_eq!(ns.len(), 5, "{ns:?}");

        let p = pod("metadata: {name: x}\nspec: {containers: []}\n");
        assert!(!Shared::of(&p).pid);
        assert_eq!(types(&oci_namespaces(&p, &files))[1], ("pid".into(), None));

        let p = pod("metadata: {name: x}\nspec: {hostPID: true, hostNetwork: true, hostIPC: true, containers: []}\n");
        assert_eq!(types(&oci_namespaces(&p, &files)), [("mount".into(), None)]);
        let p = pod("metadata: {name: x}\nspec: {hostPID: true, shareProcessNamespace: true, containers: []}\n");
        assert!(
            !Shared::of(&p).pid,
            "hostPID wins (validation refuses both)"
        );
    }

    #[test]
    fn nothing_is_held_in_an_empty_directory() {
        let dir = std::env::temp_dir().join(format!("hostlet-sbx-{}", std::process::id()));
        let files = PodFiles::new(&dir);
        let all = Shared {
            net: true,
            ipc: true,
            uts: true,
            pid: true,
        };
        assert_eq!(missing(&files, all), all);
        assert!(exists(&files, Shared::default()));
        // Nothing to stop or release: no panic, no error.
        remove(&files);
    }
}
