//! `hostlet-monitor sandbox create DIR`: a single-threaded process that makes the namespaces a
//! pod misses, forks the pause process into a new PID namespace, bind-mounts the
//! namespace files under `DIR/ns` and exits.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;

use super::files::{held, io, sys, PodFiles, SandboxError, Shared};
use super::nsfs::{bind, loopback_up};
use super::pause;
use crate::userns::IdRange;

/// The helper: runs single-threaded in its own process; returns the exit code.
pub fn helper_main(
    dir: &Path,
    hostname: &str,
    want: Shared,
    ids: Option<IdRange>,
    cgroup_procs: &[PathBuf],
) -> i32 {
    match helper(dir, hostname, want, ids, cgroup_procs) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hostlet sandbox: {e}");
            1
        }
    }
}

/// True when `path` is a mount point of this mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    // Field 5 is the mount point, with spaces and the like octal-escaped.
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m == want)
}

fn helper(
    dir: &Path,
    hostname: &str,
    want: Shared,
    ids: Option<IdRange>,
    cgroup_procs: &[PathBuf],
) -> Result<(), SandboxError> {
    let files = PodFiles::new(dir);
    let ns_dir = files.ns_dir();
    std::fs::create_dir_all(&ns_dir).map_err(io(&ns_dir))?;
    make_private(&ns_dir)?;
    if want.ipc {
        mount_shm(&files.shm())?;
    }
    if want.pid {
        // Joined before the fork so the pause process is charged to the pod from its
        // first page; the helper leaves the cgroup when it exits.
        for p in cgroup_procs {
            std::fs::write(p, "0").map_err(io(p))?;
        }
    }
    if let Some(ids) = ids {
        return super::userns::create(&files, hostname, want, ids);
    }
    new_namespaces(&files, hostname, want)?;
    if want.pid {
        start_pause(&files, want)?;
    }
    Ok(())
}

/// A private mount of its own, as `ip netns` does: the namespace mounts below must not
/// propagate into other mount namespaces, which would keep them alive after removal.
/// Made once: a later call (a new PID namespace) finds it in place.
fn make_private(ns_dir: &Path) -> Result<(), SandboxError> {
    if is_mount_point(ns_dir) {
        return Ok(());
    }
    mount(
        Some(ns_dir),
        ns_dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys(format!("bind-mounting {}", ns_dir.display())))?;
    mount(
        None::<&str>,
        ns_dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys(format!("making {} private", ns_dir.display())))
}

/// containerd's sandbox /dev/shm: shared by the pod's containers, 64 MiB.
fn mount_shm(shm: &Path) -> Result<(), SandboxError> {
    std::fs::create_dir_all(shm).map_err(io(shm))?;
    mount(
        Some("shm"),
        shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(sys(format!("mounting tmpfs on {}", shm.display())))
}

/// Unshares the namespaces `want` names, sets them up (loopback, hostname) and keeps the
/// network, IPC and UTS ones by bind-mounting their files. The PID namespace applies to
/// the next child only: [`start_pause`].
fn new_namespaces(files: &PodFiles, hostname: &str, want: Shared) -> Result<(), SandboxError> {
    let mut flags = CloneFlags::empty();
    for (on, f) in [
        (want.net, CloneFlags::CLONE_NEWNET),
        (want.ipc, CloneFlags::CLONE_NEWIPC),
        (want.uts, CloneFlags::CLONE_NEWUTS),
        (want.pid, CloneFlags::CLONE_NEWPID),
    ] {
        if on {
            flags |= f;
        }
    }
    nix::sched::unshare(flags).map_err(sys("unshare"))?;
    if want.net {
        loopback_up().map_err(sys("bringing lo up"))?;
    }
    if want.uts {
        nix::unistd::sethostname(hostname).map_err(sys("sethostname"))?;
    }
    for (on, kind) in [(want.net, "net"), (want.ipc, "ipc"), (want.uts, "uts")] {
        if on {
            bind(Path::new(&format!("/proc/self/ns/{kind}")), &files.ns(kind))?;
        }
    }
    Ok(())
}

/// Forks the pause process as PID 1 of the new PID namespace and keeps that namespace
/// by bind-mounting its file.
fn start_pause(files: &PodFiles, want: Shared) -> Result<(), SandboxError> {
    // A new pause process for a pod that has its other namespaces already (the old
    // one died) lives in them too, as a pause container would.
    for (on, kind, flag) in [
        (want.net, "net", CloneFlags::CLONE_NEWNET),
        (want.ipc, "ipc", CloneFlags::CLONE_NEWIPC),
        (want.uts, "uts", CloneFlags::CLONE_NEWUTS),
    ] {
        if !on && held(files, kind) {
            let path = files.ns(kind);
            let ns = std::fs::File::open(&path).map_err(io(&path))?;
            nix::sched::setns(&ns, flag).map_err(sys(format!("joining {}", path.display())))?;
        }
    }
    // The first child after unshare(CLONE_NEWPID) is PID 1 of the new namespace; it
    // also lives in the pod's network, IPC and UTS namespaces, as a pause container.
    let pid = pause::spawn().map_err(sys("forking the pause process"))?;
    let placed = bind(Path::new(&format!("/proc/{pid}/ns/pid")), &files.ns("pid"))
        .and_then(|()| pause::record(files, pid));
    if let Err(e) = placed {
        // SAFETY: kill(2) on the child we just forked and still own (not reaped).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        return Err(e);
    }
    Ok(())
}
