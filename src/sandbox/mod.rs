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
mod files;
mod helper;
mod nsfs;
pub mod pause;
mod userns;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use nix::mount::{umount2, MntFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::userns::IdRange;

pub use etc::{hostname, hosts_file, hosts_file_with_ips, resolv_conf, write_etc, write_hosts};
use files::{held, io};
pub use files::{PodFiles, SandboxError, Shared};
pub use helper::helper_main;
pub use pause::Placement;

/// The spec's `linux.namespaces`: a mount namespace of its own; the pod's namespaces by
/// path; a PID namespace of its own unless the pod shares one or uses the host's.
pub fn oci_namespaces(pod: &Pod, files: &PodFiles) -> Vec<LinuxNamespace> {
    let ns = |typ: LinuxNamespaceType, path: Option<PathBuf>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ).set_path(path);
        n
    };
    let host_pid = pod.spec.as_ref().and_then(|s| s.host_pid).unwrap_or(false);
    let shared = Shared::of(pod);
    let mut namespaces = vec![ns(LinuxNamespaceType::Mount, None)];
    if shared.user {
        // Joined first (libcontainer does), so the container's own mount and PID
        // namespaces are owned by it too.
        namespaces.push(ns(LinuxNamespaceType::User, Some(files.ns("user"))));
    }
    if shared.pid {
        // The bind mount, not /proc/<pause>/ns/pid: a recycled PID can never make a
        // container join a stranger's namespace, and a dead pause process makes the
        // start fail (fork in a namespace without init is ENOMEM) instead.
        namespaces.push(ns(LinuxNamespaceType::Pid, Some(files.ns("pid"))));
    } else if !host_pid {
        namespaces.push(ns(LinuxNamespaceType::Pid, None));
    }
    for (on, typ, file) in [
        (shared.net, LinuxNamespaceType::Network, "net"),
        (shared.ipc, LinuxNamespaceType::Ipc, "ipc"),
        (shared.uts, LinuxNamespaceType::Uts, "uts"),
    ] {
        if on {
            namespaces.push(ns(typ, Some(files.ns(file))));
        }
    }
    namespaces
}

/// The namespaces of `shared` the pod does not hold (yet, or any more): an agent that
/// restarted while the pod ran reuses what is there. A PID namespace counts as held
/// only while its pause process lives.
/// A pod whose user namespace is gone needs all of them anew: each must be owned by it.
pub fn missing(files: &PodFiles, shared: Shared) -> Shared {
    if shared.user && !held(files, "user") {
        return shared;
    }
    Shared {
        net: shared.net && !held(files, "net"),
        ipc: shared.ipc && !held(files, "ipc"),
        uts: shared.uts && !held(files, "uts"),
        pid: shared.pid && !(held(files, "pid") && pause::alive(files).is_some()),
        user: false,
    }
}

/// True when every namespace the pod needs is already held.
pub fn exists(files: &PodFiles, shared: Shared) -> bool {
    !missing(files, shared).any()
}

/// Creates what the pod misses of `shared` through the helper process `exe sandbox
/// create`, the pause process placed in the pod's cgroup by `placement`; `ids` is the
/// pod's host ID range when `shared.user`. Blocking; one
/// caller at a time per pod (a file lock), so concurrent container starts after the
/// pause process died make one new sandbox, not several.
pub fn ensure(
    exe: &Path,
    files: &PodFiles,
    shared: Shared,
    hostname: &str,
    placement: &Placement,
    ids: Option<IdRange>,
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
    if want.user {
        // Left by a pod whose user namespace went (or by an older agent): replaced all.
        pause::stop(files);
        for kind in ["net", "ipc", "uts", "pid"] {
            release(&files.ns(kind));
        }
    }
    let ids = match (shared.user, ids) {
        (false, _) => None,
        (true, Some(r)) => Some(r),
        (true, None) => {
            return Err(SandboxError::Helper {
                dir: files.dir.clone(),
                message: "a user namespace without an ID range".into(),
            })
        }
    };
    create(
        exe,
        files,
        want,
        hostname,
        placement,
        ids,
        _guard.as_raw_fd(),
    )
}

fn create(
    exe: &Path,
    files: &PodFiles,
    want: Shared,
    hostname: &str,
    placement: &Placement,
    ids: Option<IdRange>,
    lock: std::os::fd::RawFd,
) -> Result<(), SandboxError> {
    let mut cmd = std::process::Command::new(exe);
    // The helper holds the pod's sandbox lock while it runs: one that outlives a killed
    // agent is waited for by the next agent's helper, which would otherwise mount the
    // same namespace files at the same time (stacked mounts, EPERM, a pod directory
    // that can no longer be removed).
    crate::lock_fd::inherit(&mut cmd, lock);
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
        (want.user, "--user"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    if let Some(r) = ids {
        // Also when the user namespace is held: new namespaces are made inside it.
        cmd.arg("--userns").arg(format!("{}:{}", r.host_id, r.size));
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
        if let Err(reason) = placement.adopt(rec.pid) {
            pause::stop(files);
            return Err(SandboxError::Scope {
                dir: files.dir.clone(),
                reason,
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
    for kind in ["net", "ipc", "uts", "pid", "user"] {
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

    fn types(ns: &[LinuxNamespace]) -> Vec<(String, Option<String>)> {
        ns.iter()
            .map(|n| {
                (
                    // The name the runtime config spells (`mount`, not strum's `mnt`).
                    serde_json::to_value(n.typ())
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_string(),
                    n.path().as_ref().map(|p| p.display().to_string()),
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
            user: true,
        };
        assert_eq!(missing(&files, all), all);
        assert!(exists(&files, Shared::default()));
        // Nothing to stop or release: no panic, no error.
        remove(&files);
    }
}
