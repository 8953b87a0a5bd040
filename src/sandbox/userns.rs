//! The sandbox of a `hostUsers: false` pod. Each namespace is owned by the user namespace
//! of the process that makes it, and only host root can bind-mount namespace files on the
//! host, so the helper forks a child that makes (or joins) the pod's user namespace,
//! becomes root in it, and then makes the network, IPC, UTS and PID namespaces and the
//! pause process; the helper writes the ID maps and bind-mounts the child's namespace
//! files. Namespace-scoped sysctls and capabilities then work inside as the kubelet allows.

use std::io::{Read, Write};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};

use super::files::{held, io, sys, PodFiles, SandboxError, Shared};
use super::nsfs::{bind, loopback_up};
use super::pause;
use crate::userns::IdRange;

/// Runs in the single-threaded helper.
pub(super) fn create(
    files: &PodFiles,
    hostname: &str,
    want: Shared,
    ids: IdRange,
) -> Result<(), SandboxError> {
    let (to_child_r, to_child_w) = pipe()?;
    let (from_child_r, from_child_w) = pipe()?;
    // SAFETY: the helper is single-threaded; the child runs plain code and exits.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop((to_child_w, from_child_r));
            let code = match child(files, hostname, want, to_child_r, from_child_w) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("hostlet sandbox: in the pod's user namespace: {e}");
                    1
                }
            };
            // SAFETY: leave without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child: pid } => {
            drop((to_child_r, from_child_w));
            let done = parent(files, want, ids, pid.as_raw(), to_child_w, from_child_r);
            let _ = nix::sys::wait::waitpid(pid, None);
            done
        }
    }
}

fn pipe() -> Result<(std::fs::File, std::fs::File), SandboxError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

fn parent(
    files: &PodFiles,
    want: Shared,
    ids: IdRange,
    child: i32,
    mut to_child: std::fs::File,
    mut from_child: std::fs::File,
) -> Result<(), SandboxError> {
    let failed = |what: &str| SandboxError::Helper {
        dir: files.dir.clone(),
        message: format!("the namespace child failed {what}"),
    };
    let mut b = [0u8; 4];
    if want.user {
        from_child
            .read_exact(&mut b[..1])
            .map_err(|_| failed("making the user namespace"))?;
        // Written by host root: one line, no newuidmap, and setgroups stays allowed.
        for map in ["uid_map", "gid_map"] {
            let p = Path::new("/proc").join(child.to_string()).join(map);
            std::fs::write(&p, ids.map_line()).map_err(io(&p))?;
        }
        to_child
            .write_all(b"m")
            .map_err(|_| failed("waiting for its maps"))?;
    }
    from_child
        .read_exact(&mut b)
        .map_err(|_| failed("making the pod's namespaces"))?;
    let pause_pid = i32::from_ne_bytes(b);
    for (on, kind) in [
        (want.user, "user"),
        (want.net, "net"),
        (want.ipc, "ipc"),
        (want.uts, "uts"),
    ] {
        if on {
            bind(
                Path::new(&format!("/proc/{child}/ns/{kind}")),
                &files.ns(kind),
            )?;
        }
    }
    if want.pid {
        let placed = bind(
            Path::new(&format!("/proc/{pause_pid}/ns/pid")),
            &files.ns("pid"),
        )
        .and_then(|()| pause::record(files, pause_pid));
        if let Err(e) = placed {
            // SAFETY: kill(2) of the pause process the child just forked.
            unsafe { libc::kill(pause_pid, libc::SIGKILL) };
            return Err(e);
        }
    }
    // Dropping `to_child` (EOF) lets the child exit.
    Ok(())
}

fn child(
    files: &PodFiles,
    hostname: &str,
    want: Shared,
    mut from_parent: std::fs::File,
    mut to_parent: std::fs::File,
) -> Result<(), SandboxError> {
    let mut b = [0u8; 1];
    if want.user {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(sys("unshare(CLONE_NEWUSER)"))?;
        to_parent.write_all(b"u").map_err(io(&files.dir))?;
        from_parent.read_exact(&mut b).map_err(io(&files.dir))?;
    } else {
        join(files, "user", CloneFlags::CLONE_NEWUSER)?;
    }
    // Root of the pod's user namespace (its first host ID), so the pause process and
    // what the child makes are not host root's.
    nix::unistd::setgroups(&[]).map_err(sys("setgroups"))?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(sys("setresgid"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(sys("setresuid"))?;
    let mut flags = CloneFlags::empty();
    for (on, kind, flag) in [
        (want.net, "net", CloneFlags::CLONE_NEWNET),
        (want.ipc, "ipc", CloneFlags::CLONE_NEWIPC),
        (want.uts, "uts", CloneFlags::CLONE_NEWUTS),
    ] {
        if on {
            flags |= flag;
        } else if held(files, kind) {
            // A new pause process lives in the pod's namespaces.
            join(files, kind, flag)?;
        }
    }
    if want.pid {
        flags |= CloneFlags::CLONE_NEWPID;
    }
    nix::sched::unshare(flags).map_err(sys("unshare"))?;
    if want.net {
        loopback_up().map_err(sys("bringing lo up"))?;
    }
    if want.uts {
        nix::unistd::sethostname(hostname).map_err(sys("sethostname"))?;
    }
    let pause_pid = if want.pid {
        pause::spawn().map_err(sys("forking the pause process"))?
    } else {
        0
    };
    to_parent
        .write_all(&pause_pid.to_ne_bytes())
        .map_err(io(&files.dir))?;
    // Kept until the parent has bind-mounted this process's namespace files.
    let _ = from_parent.read(&mut b);
    Ok(())
}

fn join(files: &PodFiles, kind: &str, flag: CloneFlags) -> Result<(), SandboxError> {
    let path = files.ns(kind);
    let f = std::fs::File::open(&path).map_err(io(&path))?;
    nix::sched::setns(&f, flag).map_err(sys(format!("joining {}", path.display())))
}
