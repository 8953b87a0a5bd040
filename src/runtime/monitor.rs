//! The per-container monitor: `hostlet-monitor monitor DIR`, started by the agent, single-threaded
//! and without tokio because libcontainer clones from its caller (LIBCONTAINER.md). It
//! survives agent restarts: it runs in its own session, is the parent and subreaper of the
//! container's init, holds the container's stdout/stderr and writes the CRI log, and when
//! the init exits it records the status, deletes the container and exits itself.
//!
//! Protocol with the agent, all in DIR: the agent writes `monitor.json`; the monitor
//! writes `state.json` (first its own identity, then the init pid), prints `ok` or
//! `error: <why>` on stdout once, and writes `exit.json` last. SIGTERM means "send the
//! container its stop signal", SIGUSR2 means "kill all of it".

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::drop_report::DropReport;
use super::executor::ResetSignalsExecutor;
use super::monitor_attach::{AttachServer, Target};
use super::monitor_error::sys;
pub use super::monitor_error::MonitorError;
use super::monitor_stdio::Stdio;
use super::oom::{oom_kills, oom_kills_in, pod_cgroup};
use super::teardown::{now, teardown};
use super::{proc, ExitRecord, MonitorConfig, MonitorState};
use super::{CONFIG_FILE, EXIT_FILE, LOG_DROPS_FILE, STATE_FILE};
use crate::logs::{CriWriter, DropStats, Stream};
use crate::state::{self, Layout};

/// After the init exits, how long to keep draining output still buffered in the pipes.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// While log lines are dropped and the container is quiet, how often to try writing again.
const LOG_RETRY: Duration = Duration::from_millis(250);

/// Entry point of `hostlet-monitor monitor DIR`; returns the process exit code.
pub fn main(dir: &Path) -> i32 {
    let cfg = match state::read_json::<MonitorConfig>(&dir.join(CONFIG_FILE)) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => {
            return handshake_error(&format!("{}: missing", dir.join(CONFIG_FILE).display()))
        }
        Err(e) => return handshake_error(&e.to_string()),
    };
    let layout = Layout::new(
        dir.parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/")),
    );
    match Monitor::start(dir, &cfg, &layout) {
        Ok(mut m) => {
            // Not println!: it panics when the agent died during the handshake (EPIPE),
            // and the container would be left without anyone reading its output. The
            // next agent adopts this monitor instead.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ok");
            let _ = out.flush();
            // The agent may be gone later; a write to its closed pipe must not kill us.
            redirect_stdout_to_null();
            m.supervise();
            0
        }
        Err(e) => {
            let message = e.to_string();
            tracing::error!(container_id = %cfg.id, error = %message, "start failed");
            teardown(&cfg, &layout);
            let _ = state::write_json(
                &dir.join(EXIT_FILE),
                &ExitRecord {
                    exit_code: 128,
                    signal: None,
                    oom_killed: false,
                    started_at: None,
                    finished_at: now(),
                    start_error: Some(message.clone()),
                    message: None,
                },
            );
            handshake_error(&message)
        }
    }
}

fn handshake_error(message: &str) -> i32 {
    let _ = writeln!(std::io::stdout(), "error: {}", message.replace('\n', " "));
    1
}

fn redirect_stdout_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

struct Monitor {
    dir: PathBuf,
    cfg: MonitorConfig,
    layout: Layout,
    container: Container,
    init: Pid,
    started_at: String,
    sigfd: SignalFd,
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    log: CriWriter,
    attach: AttachServer,
    drops: DropReport,
    /// OOM kills in the pod's cgroup before this container started.
    pod_oom_base: u64,
}

/// What a wait in the monitor's loop found.
enum Wait {
    /// Signals pending (or not), the streams with output, the attach descriptors' events.
    Ready(bool, Vec<Stream>, Vec<(Target, PollFlags)>),
    Interrupted,
    /// The drain time is over, or poll failed.
    Done,
}

impl Monitor {
    fn start(dir: &Path, cfg: &MonitorConfig, layout: &Layout) -> Result<Self, MonitorError> {
        // Own session: a Ctrl-C or SIGHUP aimed at the agent's terminal never reaches us.
        nix::unistd::setsid().map_err(sys("setsid"))?;
        // SAFETY: prctl with an integer option and argument; no pointers involved.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(sys("prctl(PR_SET_CHILD_SUBREAPER)")(nix::Error::last()));
        }
        let me = std::process::id() as i32;
        let mut st = MonitorState {
            monitor_pid: me,
            monitor_start: proc::start_time(me).unwrap_or(0),
            init_pid: 0,
            started_at: String::new(),
        };
        state::write_json(&dir.join(STATE_FILE), &st)?;

        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGUSR2,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        mask.thread_block().map_err(sys("blocking signals"))?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sys("signalfd"))?;

        // The pod's namespaces are joined by path through the spec (see crate::sandbox).
        mount_rootfs(dir, cfg)?;

        let log = CriWriter::open_rotating(&cfg.log_path, cfg.log_limits).map_err(|source| {
            MonitorError::Io {
                path: cfg.log_path.clone(),
                source,
            }
        })?;
        let pod_oom_base = oom_kills_in(&pod_cgroup(&cfg.cgroups_path));
        let builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
            .with_root_path(layout.runtime())?
            .with_executor(ResetSignalsExecutor);
        let (stdio, builder) = Stdio::new(dir, cfg, builder)?;
        let mut container = builder
            .validate_id()?
            .as_init(&cfg.bundle)
            .with_systemd(cfg.cgroup_driver == crate::cgroups::Driver::Systemd)
            .with_detach(true)
            .build()?;
        let (out_r, err_r, attach) = stdio.finish(dir, cfg)?;
        if cfg.cgroup_driver == crate::cgroups::Driver::Systemd {
            crate::cgroups::systemd::scope_hugepage_limits(&cfg.cgroups_path, &cfg.bundle)
                .map_err(|e| MonitorError::Other(e.to_string()))?;
        }
        if let Some(u) = &cfg.userns {
            super::userns::delegate_cgroup(&cfg.cgroups_path, u.ids)?;
        }
        container.start()?;
        let init = container
            .pid()
            .ok_or_else(|| MonitorError::Other("container has no init pid after start".into()))?;
        st.init_pid = init.as_raw();
        st.started_at = now();
        state::write_json(&dir.join(STATE_FILE), &st)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            layout: layout.clone(),
            container,
            init,
            started_at: st.started_at,
            sigfd,
            out: Some(out_r),
            err: err_r,
            attach,
            log,
            drops: DropReport {
                path: dir.join(LOG_DROPS_FILE),
                last: DropStats::default(),
                at: None,
            },
            pod_oom_base,
        })
    }

    /// Copies output to the log and handles signals until the init exits, then records
    /// the exit and removes the container.
    fn supervise(&mut self) {
        let mut status: Option<(i32, Option<i32>)> = None;
        let mut oom_at_exit = 0;
        let mut drain_until: Option<Instant> = None;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if status.is_some() && self.out.is_none() && self.err.is_none() {
                break;
            }
            let (sig_ready, ready) = match self.wait(drain_until) {
                Wait::Ready(sig, streams, attach) => {
                    self.attach.on_ready(&attach);
                    (sig, streams)
                }
                Wait::Interrupted => continue,
                Wait::Done => break,
            };
            for stream in ready {
                self.pump(stream, &mut buf);
            }
            self.log.retry();
            self.drops.update(self.log.stats(), false);
            if sig_ready {
                if let Some(s) = self.handle_signals() {
                    status = Some(s);
                    // Read now, not after draining the pipes: systemd removes an empty
                    // scope (and its memory.events) soon after the init is gone.
                    oom_at_exit = oom_kills(&self.cfg.cgroups_path);
                    drain_until = Some(Instant::now() + DRAIN_LIMIT);
                }
            }
        }
        self.attach.close();
        self.log.finish();
        self.drops.update(self.log.stats(), true);
        self.record_exit(status, oom_at_exit);
    }

    /// Waits for a signal or output: until `drain_until` once the init is gone, and no
    /// longer than the log retry interval while log lines are being dropped.
    fn wait(&self, drain_until: Option<Instant>) -> Wait {
        let mut wait = match drain_until {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Wait::Done;
                }
                Some(left)
            }
            None => None,
        };
        if self.log.stats().dropping {
            wait = Some(wait.map_or(LOG_RETRY, |w| w.min(LOG_RETRY)));
        }
        let timeout = match wait {
            Some(w) => PollTimeout::try_from(w.as_millis() as i32).unwrap_or(PollTimeout::ZERO),
            None => PollTimeout::NONE,
        };
        let streams = [
            (Stream::Stdout, self.out.as_ref()),
            (Stream::Stderr, self.err.as_ref()),
        ];
        let mut fds = vec![PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (s, f) in streams {
            if let Some(f) = f {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(s);
            }
        }
        let attach = self.attach.poll_fds();
        let nstreams = which.len();
        let targets: Vec<Target> = attach.iter().map(|(t, _, _)| *t).collect();
        fds.extend(attach.iter().map(|(_, fd, f)| PollFd::new(*fd, *f)));
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => return Wait::Interrupted,
            Err(e) => {
                tracing::error!(error = %e, "poll");
                return Wait::Done;
            }
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let streams: Vec<Stream> = which
            .into_iter()
            .zip(&fds[1..])
            .filter(|(_, f)| ready(f))
            .map(|(s, _)| s)
            .collect();
        let events = targets
            .into_iter()
            .zip(&fds[1 + nstreams..])
            .map(|(t, f)| (t, f.revents().unwrap_or(PollFlags::empty())))
            .collect();
        Wait::Ready(ready(&fds[0]), streams, events)
    }

    /// Copies what `stream` has to the log; a closed or broken pipe is dropped.
    fn pump(&mut self, stream: Stream, buf: &mut [u8]) {
        let slot = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        let Some(fd) = slot.as_ref() else { return };
        match nix::unistd::read(fd.as_raw_fd(), buf) {
            Ok(0) => *slot = None,
            Ok(n) => {
                self.log.write(stream, &buf[..n]);
                self.attach.output(stream, &buf[..n]);
            }
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
            Err(_) => *slot = None,
        }
    }

    /// Writes `exit.json` once the init is gone, after deleting the container.
    fn record_exit(&mut self, status: Option<(i32, Option<i32>)>, oom_at_exit: u64) {
        let (exit_code, signal) = status.unwrap_or((128 + libc::SIGKILL, Some(libc::SIGKILL)));
        // Whoever the kernel picked in the cgroup, a failed exit after a memcg OOM kill is
        // the OOM's doing (containerd reports it the same way).
        // The pod's cgroup outlives the container's: a kill counted there since the start
        // is this container's when the container's own count is already gone.
        let pod_ooms = oom_kills_in(&pod_cgroup(&self.cfg.cgroups_path));
        let oom_killed = exit_code != 0
            && (oom_at_exit.max(oom_kills(&self.cfg.cgroups_path)) > 0
                || pod_ooms > self.pod_oom_base);
        let rec = ExitRecord {
            exit_code,
            signal,
            oom_killed,
            started_at: Some(self.started_at.clone()),
            finished_at: now(),
            start_error: None,
            message: None,
        };
        if let Err(e) = self.container.delete(true) {
            tracing::warn!(container_id = %self.cfg.id, error = %e, "deleting container");
            teardown(&self.cfg, &self.layout);
        }
        let _ = umount2(&self.cfg.bundle.join("rootfs"), MntFlags::MNT_DETACH);
        // The idmapped image layers under the overlay: the agent removes this directory
        // next, and must not walk into the shared layers.
        super::userns::unmount_layers(&self.dir);
        if let Err(e) = state::write_json(&self.dir.join(EXIT_FILE), &rec) {
            tracing::error!(error = %e, "writing exit record");
        }
    }

    /// Handles pending signals; returns the init's exit status once it has been reaped.
    fn handle_signals(&mut self) -> Option<(i32, Option<i32>)> {
        let mut exited = None;
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => loop {
                    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(pid, code)) if pid == self.init => {
                            exited = Some((code, None))
                        }
                        Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.init => {
                            exited = Some((128 + sig as i32, Some(sig as i32)))
                        }
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => {}
                    }
                },
                Ok(Signal::SIGTERM) => {
                    let sig = Signal::try_from(self.cfg.stop_signal).unwrap_or(Signal::SIGTERM);
                    let _ = kill(self.init, sig);
                }
                Ok(Signal::SIGUSR2) => {
                    if let Err(e) = self.container.kill(Signal::SIGKILL, true) {
                        tracing::warn!(error = %e, "killing container; killing its init");
                        let _ = kill(self.init, Signal::SIGKILL);
                    }
                }
                _ => {}
            }
        }
        exited
    }
}

/// The container's rootfs: an overlay of the shared read-only image rootfs and this
/// container's own upper dir, so starting a container copies nothing.
fn mount_rootfs(dir: &Path, cfg: &MonitorConfig) -> Result<(), MonitorError> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    let target = cfg.bundle.join("rootfs");
    for d in [&upper, &work, &target] {
        state::create_dir_all(d)?;
    }
    let lower = match &cfg.userns {
        Some(u) => super::userns::prepare_rootfs(dir, &cfg.lower, &upper, u)?,
        None => cfg.lower.clone(),
    };
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdirs(&lower),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(sys(format!("mounting overlay on {}", target.display())))
}

fn lowerdirs(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}
