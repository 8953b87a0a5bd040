//! The pause process of a pod with `shareProcessNamespace`: PID 1 of the pod's PID
//! namespace, as the pause container is under the kubelet and containerd. It is a fork of
//! the sandbox helper (so the same binary, no exec): single-threaded, its own session,
//! every signal blocked; it reaps orphaned processes on SIGCHLD and exits on SIGTERM or
//! SIGINT. After the fork it makes no allocation, only raw system calls.
//!
//! Its pid and start time are recorded in the pod directory ([`PauseRecord`]): a restarted
//! agent adopts it by that record, and teardown kills it through a pidfd opened only
//! after the start time matched, so a recycled PID is never signalled.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::files::{PodFiles, SandboxError, ScopeError};
use crate::cgroups::{self, Hierarchy, PodCgroup};
use crate::runtime::proc;

/// The kubelet's oom_score_adj for the pod infra (pause) container.
const PAUSE_OOM_SCORE_ADJ: &[u8] = b"-998";
/// Stack the pause loop keeps below its frame (its few system calls need far less).
const STACK_KEEP: usize = 64 << 10;
/// How far below that the helper's stack pages are dropped (the default stack limit is
/// 8 MiB; argument parsing uses a small part of it).
const STACK_TRIM: usize = 4 << 20;
const PAGE: usize = 4096;
/// How long teardown waits for a killed pause process to be gone.
const STOP_WAIT_MS: i32 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRecord {
    /// In the agent's PID namespace.
    pub pid: i32,
    /// Clock ticks since boot ([`proc::start_time`]).
    pub start_time: u64,
}

/// Forks the pause process; in the parent, returns its pid. The caller has unshared
/// CLONE_NEWPID, so the child is PID 1 of the new namespace.
pub(super) fn spawn() -> Result<i32, nix::Error> {
    // SAFETY: the helper is single-threaded, so the child may do anything; it only makes
    // raw system calls and never returns.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw()),
        nix::unistd::ForkResult::Child => run(),
    }
}

/// The pause process. No allocation, no Rust std I/O: libc only.
fn run() -> ! {
    // SAFETY: plain system calls on constant arguments and on a stack sigset_t; nothing
    // here touches memory shared with other threads (there are none).
    unsafe {
        libc::setsid();
        libc::chdir(c"/".as_ptr());
        // The helper's stdout/stderr are the agent's pipes: holding them would keep the
        // agent waiting for EOF. Everything else inherited is closed too.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_NAME, c"pause".as_ptr(), 0, 0, 0);
        let oom = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
        if oom >= 0 {
            libc::write(
                oom,
                PAUSE_OOM_SCORE_ADJ.as_ptr().cast(),
                PAUSE_OOM_SCORE_ADJ.len(),
            );
            libc::close(oom);
        }

        // The helper's deeper frames (argument parsing) left dirty stack pages below us
        // that the pause process never uses again: give them back. The VMA below the
        // stack is at least 128 MiB away, so the range holds only stack or nothing
        // (madvise skips the unmapped part).
        let here = 0u8;
        let sp = std::ptr::addr_of!(here) as usize & !(PAGE - 1);
        let top = sp.saturating_sub(STACK_KEEP);
        let bottom = top.saturating_sub(STACK_TRIM);
        libc::madvise(
            bottom as *mut libc::c_void,
            top - bottom,
            libc::MADV_DONTNEED,
        );

        // Blocked signals are queued even for a namespace init without handlers, so
        // sigwaitinfo sees SIGTERM from the agent; everything else stays pending.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        let mut wait: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut wait);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut wait, s);
        }
        loop {
            // Orphans of every container end up here: reap them all, also any that
            // exited before we got here.
            while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
            match libc::sigwaitinfo(&wait, std::ptr::null_mut()) {
                libc::SIGTERM | libc::SIGINT => libc::_exit(0),
                _ => {}
            }
        }
    }
}

/// Written by the helper once the pause process holds the namespace.
pub(super) fn record(files: &PodFiles, pid: i32) -> Result<(), SandboxError> {
    let start_time = proc::start_time(pid).ok_or_else(|| SandboxError::Pause {
        dir: files.dir.clone(),
        message: format!("pid {pid} exited right after it started"),
    })?;
    crate::state::write_json(&files.pause_record(), &PauseRecord { pid, start_time }).map_err(|e| {
        SandboxError::Pause {
            dir: files.dir.clone(),
            message: e.to_string(),
        }
    })
}

/// The recorded pause process, alive or not.
pub fn recorded(files: &PodFiles) -> Option<PauseRecord> {
    crate::state::read_json(&files.pause_record())
        .ok()
        .flatten()
}

/// Linux's PF_EXITING task flag: set when a process starts to exit.
const PF_EXITING: u64 = 0x4;

/// Whether `pid` runs and has not begun to exit: `/proc/<pid>/stat` state (field 3) is no
/// zombie and flags (field 9) lack PF_EXITING. An exiting namespace init stays in state
/// S while it waits for the namespace's other processes to be reaped, and a container
/// started then would join a namespace that takes no new process.
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let flags = fields.get(6).and_then(|f| f.parse::<u64>().ok());
    !matches!(fields.first(), Some(&"Z") | Some(&"X") | None)
        && flags.is_some_and(|f| f & PF_EXITING == 0)
}

/// The pod's pause process when it still runs: same pid and start time, not exiting.
pub fn alive(files: &PodFiles) -> Option<PauseRecord> {
    let rec = recorded(files)?;
    (proc::start_time(rec.pid) == Some(rec.start_time) && running(rec.pid)).then_some(rec)
}

/// Kills the recorded pause process (its namespace's other processes die with it),
/// waits until it has exited, and forgets it.
pub(super) fn stop(files: &PodFiles) {
    let Some(rec) = recorded(files) else { return };
    if let Some(fd) = proc::open_verified(rec.pid, rec.start_time) {
        if let Err(e) = proc::pidfd_send_signal(&fd, libc::SIGKILL) {
            tracing::warn!(pid = rec.pid, error = %e, "killing the pause process");
        } else if !wait_exit(&fd) {
            tracing::warn!(
                pid = rec.pid,
                "the pause process did not exit after SIGKILL"
            );
        }
    }
    let _ = std::fs::remove_file(files.pause_record());
}

/// A pidfd turns readable when its process has exited.
fn wait_exit(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, valid for the call.
    unsafe { libc::poll(&mut p, 1, STOP_WAIT_MS) > 0 }
}

/// Where the pause process goes in the pod's cgroup, per the cgroup driver. The kubelet's
/// pause container has a cgroup of its own inside the pod cgroup; on cgroup v1 the pod
/// cgroup itself takes it (v1 has no rule against processes in inner cgroups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// No pod cgroups (none found on the host).
    None,
    /// cgroupfs v1: the pod cgroup of each controller hierarchy under `root`.
    V1 { root: PathBuf, pod: String },
    /// cgroupfs v2: a leaf `pause` in the pod cgroup (processes may only be in leaves
    /// once the pod cgroup delegates controllers to its containers).
    V2 { root: PathBuf, pod: String },
    /// systemd: a transient scope in the pod slice, as libcontainer makes for containers.
    Systemd { slice: String, scope: String },
}

impl Placement {
    pub fn of(h: Option<&Hierarchy>, cg: &PodCgroup) -> Self {
        match h {
            None => Self::None,
            Some(Hierarchy::V1 { root }) => Self::V1 {
                root: root.clone(),
                pod: cg.path.clone(),
            },
            Some(Hierarchy::V2 { root }) => Self::V2 {
                root: root.clone(),
                pod: cg.path.clone(),
            },
            Some(Hierarchy::Systemd { .. }) => Self::Systemd {
                slice: cgroups::systemd::pod_slice(cg),
                scope: format!("{}-{}-pause", cgroups::systemd::SCOPE_PREFIX, cg.uid),
            },
        }
    }

    /// The `cgroup.procs` files the helper joins before it forks the pause process.
    pub fn procs_files(&self) -> std::io::Result<Vec<PathBuf>> {
        match self {
            Self::None | Self::Systemd { .. } => Ok(Vec::new()),
            Self::V1 { root, pod } => {
                let rel = pod.trim_start_matches('/');
                let mut seen = Vec::new();
                let mut out = Vec::new();
                for e in std::fs::read_dir(root)?.flatten() {
                    let dir = e.path().join(rel);
                    // "cpu" and "cpuacct" are often one hierarchy reached twice.
                    let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
                    if dir.is_dir() && !seen.contains(&real) {
                        seen.push(real);
                        out.push(dir.join("cgroup.procs"));
                    }
                }
                Ok(out)
            }
            Self::V2 { root, pod } => {
                let dir = root.join(pod.trim_start_matches('/')).join("pause");
                std::fs::create_dir_all(&dir)?;
                Ok(vec![dir.join("cgroup.procs")])
            }
        }
    }

    /// After the fork: moves the pause process into its systemd scope.
    pub fn adopt(&self, pid: i32) -> Result<(), ScopeError> {
        let Self::Systemd { slice, scope } = self else {
            return Ok(());
        };
        // A dead pause process's scope may linger until systemd collects it.
        let unit = format!("{scope}-{pid}.scope");
        let out = cgroups::systemd::manager_call("StartTransientUnit", "ssa(sv)a(sa(sv))")
            .args([
                &unit,
                "fail",
                "3",
                "Slice",
                "s",
                slice,
                "Description",
                "s",
                "hostlet pod pause process",
                "PIDs",
                "au",
                "1",
                &pid.to_string(),
                "0",
            ])
            .output()
            .map_err(ScopeError::Busctl)?;
        if !out.status.success() {
            return Err(ScopeError::Start {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                unit,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(yaml: &str) -> PodCgroup {
        let pod: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(yaml).unwrap();
        PodCgroup::of(&pod, "0a-1b")
    }

    #[test]
    fn placement_per_driver() {
        let c = cg("metadata: {name: x}\nspec: {containers: [{name: a}]}\n");
        let root = PathBuf::from("/sys/fs/cgroup");
        assert_eq!(Placement::of(None, &c), Placement::None);
        assert_eq!(
            Placement::of(Some(&Hierarchy::V1 { root: root.clone() }), &c),
            Placement::V1 {
                root: root.clone(),
                pod: "/kubepods/besteffort/pod0a-1b".into()
            }
        );
        assert_eq!(
            Placement::of(Some(&Hierarchy::Systemd { root }), &c),
            Placement::Systemd {
                slice: "kubepods-besteffort-pod0a_1b.slice".into(),
                scope: "hostlet-0a-1b-pause".into()
            }
        );
    }

    #[test]
    fn v1_placement_finds_each_hierarchy_once() {
        let root = std::env::temp_dir().join(format!("hostlet-pause-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for ctl in ["cpu", "memory", "systemd"] {
            std::fs::create_dir_all(root.join(ctl)).unwrap();
        }
        for ctl in ["cpu", "memory"] {
            std::fs::create_dir_all(root.join(ctl).join("kubepods/pod1")).unwrap();
        }
        std::os::unix::fs::symlink(root.join("cpu"), root.join("cpuacct")).unwrap();
        let p = Placement::V1 {
            root: root.clone(),
            pod: "/kubepods/pod1".into(),
        };
        let mut files = p.procs_files().unwrap();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files
            .iter()
            .all(|f| f.ends_with("kubepods/pod1/cgroup.procs")));
        let v2 = Placement::V2 {
            root: root.join("memory"),
            pod: "/kubepods/pod1".into(),
        };
        assert_eq!(
            v2.procs_files().unwrap(),
            [root.join("memory/kubepods/pod1/pause/cgroup.procs")]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_record_of_a_dead_or_recycled_process_is_not_alive() {
        let dir = std::env::temp_dir().join(format!("hostlet-pause-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = PodFiles::new(&dir);
        let me = std::process::id() as i32;
        let start_time = proc::start_time(me).unwrap();
        crate::state::write_json(
            &files.pause_record(),
            &PauseRecord {
                pid: me,
                start_time,
            },
        )
        .unwrap();
        assert_eq!(alive(&files).map(|r| r.pid), Some(me));
        crate::state::write_json(
            &files.pause_record(),
            &PauseRecord {
                pid: me,
                start_time: start_time + 1,
            },
        )
        .unwrap();
        assert!(alive(&files).is_none(), "recycled pid");
        // stop() never signals a process whose start time differs: we are still here.
        stop(&files);
        assert!(recorded(&files).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
