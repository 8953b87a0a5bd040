//! The agent's side of the runtime: spawn monitors, adopt the ones an earlier agent left,
//! signal them and learn how their containers ended.

use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::{proc, ExitRecord, MonitorConfig, MonitorState, RuntimeError};
use super::{CONFIG_FILE, EXIT_FILE, MONITOR_LOG, SIG_KILL, SIG_STOP, STATE_FILE};
use crate::state::{self, Layout};

/// How long a monitor may take to report its container started. libcontainer creates in
/// tens of milliseconds; this only bounds a wedged kernel or filesystem.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The helper binary the agent runs for each container (`monitor`), for `exec-in` and for
/// pod sandboxes, looked up next to the agent's own executable. A separate small binary:
/// each monitor lives as long as its container, and the agent's executable (23 MB then)
/// cost ~0.7 MiB of private relocated pages per monitor (BENCHMARKS.md row 4b).
pub const HELPER: &str = "hostlet-monitor";

/// [`HELPER`] beside the running executable (the agent's, or the CLI's for `hostlet exec`).
pub fn helper_path() -> std::io::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(HELPER))
}

/// The monitor's one-line report on stdout (`ok` or `error: ...`), up to end of file.
async fn handshake(stdout: std::process::ChildStdout) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(stdout))?;
    let mut line = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    loop {
        let n = pipe.read(&mut buf).await?;
        line.extend_from_slice(&buf[..n]);
        if n == 0 || buf[..n].contains(&b'\n') {
            break;
        }
    }
    let end = line
        .iter()
        .position(|&b| b == b'\n')
        .map_or(line.len(), |i| i + 1);
    line.truncate(end);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

pub struct Runtime {
    layout: Layout,
    /// The [`HELPER`] binary.
    exe: PathBuf,
}

/// A running container, reached through its monitor.
#[derive(Debug)]
pub struct Handle {
    pub id: String,
    pub init_pid: i32,
    pub started_at: String,
    monitor_pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    dir: PathBuf,
}

/// What an earlier agent left in the state dir. Generic over the handle so the worker's
/// unit tests can adopt fake containers.
#[derive(Debug)]
pub struct Adopted<H = Handle> {
    pub config: MonitorConfig,
    pub running: Option<H>,
    pub exit: Option<ExitRecord>,
}

impl Runtime {
    /// Does not check that the helper exists; see [`Runtime::check_helper`].
    pub fn new(layout: Layout) -> std::io::Result<Self> {
        Ok(Self {
            layout,
            exe: helper_path()?,
        })
    }

    /// The helper binary: `hostlet-monitor` beside the agent's executable.
    pub fn helper(&self) -> &Path {
        &self.exe
    }

    /// Fails, naming the path, when the helper binary is missing or not executable, so the
    /// agent refuses to start instead of failing every container.
    pub fn check_helper(&self) -> Result<(), RuntimeError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&self.exe).map_err(|source| RuntimeError::Io {
            path: self.exe.clone(),
            source,
        })?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(RuntimeError::Io {
                path: self.exe.clone(),
                source: std::io::Error::other("not an executable file"),
            });
        }
        Ok(())
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Starts a monitor for `cfg` (bundle already written) and returns once the
    /// container's process runs, or with the monitor's error.
    pub async fn start(&self, cfg: &MonitorConfig) -> Result<Handle, RuntimeError> {
        let dir = self.layout.container(&cfg.id);
        state::create_dir_all(&dir)?;
        state::write_json(&dir.join(CONFIG_FILE), cfg)?;
        let log_path = dir.join(MONITOR_LOG);
        let log = std::fs::File::create(&log_path).map_err(|source| RuntimeError::Io {
            path: log_path,
            source,
        })?;
        let mut child = Command::new(&self.exe)
            .arg("monitor")
            .arg(&dir)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| RuntimeError::Io {
                path: self.exe.clone(),
                source,
            })?;
        let pid = child.id() as i32;
        // Our child cannot be reaped by anyone else, so its PID names it until we wait.
        let pidfd = proc::pidfd_open(pid).map_err(|source| RuntimeError::Io {
            path: dir.clone(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        drop(child);
        // Read on the async thread: a blocking read held one pool thread per starting
        // container for all of libcontainer's create, ~80 threads and their buffers at
        // 100 pods started at once (BENCHMARKS.md row 4a).
        let line = tokio::time::timeout(START_TIMEOUT, handshake(stdout)).await;
        let fail = |message: String| RuntimeError::Start {
            id: cfg.id.clone(),
            message,
        };
        // (message, whether the monitor reported it): a monitor that reported its error
        // has cleaned up after the failed create; one that died or hung without a word
        // (killed, say) may have left a running container behind.
        let failed = match line {
            Ok(Ok(line)) => match line.trim_end().strip_prefix("ok") {
                Some(_) => None,
                None => {
                    let msg = line.trim_end().trim_start_matches("error: ").to_string();
                    let reported = !msg.is_empty();
                    Some((msg, reported))
                }
            },
            Ok(Err(e)) => Some((format!("reading monitor handshake: {e}"), false)),
            Err(_) => Some(("monitor did not report within 60s".into(), false)),
        };
        if let Some((msg, reported)) = failed {
            if !reported {
                let _ = proc::pidfd_send_signal(&pidfd, SIG_KILL);
            }
            // The monitor is waited for, and its container killed, before a retry.
            if let Ok(fd) = watch_pidfd(pidfd) {
                let _ = tokio::time::timeout(START_TIMEOUT, fd.readable()).await;
            }
            reap(pid);
            let msg = if msg.is_empty() {
                monitor_log_tail(&dir)
            } else {
                msg
            };
            if !reported {
                self.cleanup(&dir).await;
            }
            return Err(fail(msg));
        }
        let st: MonitorState = state::read_json(&dir.join(STATE_FILE))?
            .ok_or_else(|| fail("monitor reported start without a state record".into()))?;
        handle(cfg.id.clone(), dir, pid, pidfd, st).map_err(|e| fail(e.to_string()))
    }

    /// Asks the monitor to send the container its stop signal.
    pub fn stop(&self, h: &Handle) {
        let _ = proc::pidfd_send_signal(h.pidfd.get_ref(), SIG_STOP);
    }

    /// Asks the monitor to kill every process of the container.
    pub fn kill(&self, h: &Handle) {
        let _ = proc::pidfd_send_signal(h.pidfd.get_ref(), SIG_KILL);
    }

    /// Waits until the monitor is gone and returns how the container ended.
    pub async fn wait(&self, h: &Handle) -> ExitRecord {
        loop {
            match h.pidfd.readable().await {
                Ok(mut guard) => {
                    // A pidfd stays readable once the process exited; no need to clear.
                    guard.retain_ready();
                    break;
                }
                Err(e) => {
                    tracing::warn!(container_id = %h.id, error = %e, "polling monitor pidfd");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        reap(h.monitor_pid);
        self.exit_record(&h.id, &h.dir).await
    }

    async fn exit_record(&self, id: &str, dir: &Path) -> ExitRecord {
        match state::read_json::<ExitRecord>(&dir.join(EXIT_FILE)) {
            Ok(Some(rec)) => rec,
            other => {
                if let Err(e) = other {
                    tracing::warn!(container_id = %id, error = %e, "unreadable exit record");
                }
                tracing::warn!(container_id = %id, "monitor ended without an exit record; cleaning up its container");
                self.cleanup(dir).await
            }
        }
    }

    /// Kills and deletes whatever is left of a container whose monitor is gone, through a
    /// one-shot helper process (libcontainer is never called from the agent).
    async fn cleanup(&self, dir: &Path) -> ExitRecord {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("monitor")
            .arg("--cleanup")
            .arg(dir)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let status = tokio::task::spawn_blocking(move || cmd.status())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = &status {
            tracing::warn!(dir = %dir.display(), error = %e, "running cleanup helper");
        }
        state::read_json::<ExitRecord>(&dir.join(EXIT_FILE))
            .ok()
            .flatten()
            .unwrap_or_else(|| ExitRecord {
                exit_code: 137,
                signal: Some(libc::SIGKILL),
                oom_killed: false,
                started_at: None,
                finished_at: crate::logs::rfc3339_nano(jiff::Timestamp::now()),
                start_error: None,
                message: None,
            })
    }

    /// Everything under the containers dir, re-attached: live monitors become handles,
    /// finished ones bring their exit record.
    pub async fn adopt_all(&self) -> Vec<Adopted> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(self.layout.containers()) {
            Ok(e) => e,
            Err(_) => return out,
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let id = entry.file_name().to_string_lossy().into_owned();
            match self.adopt_one(&id, &dir).await {
                Ok(Some(a)) => out.push(a),
                Ok(None) => {
                    tracing::info!(container_id = %id, "removing incomplete container directory");
                    let _ = self.cleanup(&dir).await;
                    let _ = state::remove_dir_all(&dir);
                }
                Err(e) => tracing::warn!(container_id = %id, error = %e, "cannot adopt container"),
            }
        }
        out
    }

    async fn adopt_one(&self, id: &str, dir: &Path) -> Result<Option<Adopted>, RuntimeError> {
        // A record that cannot be read (torn by a power cut) leaves nothing to adopt:
        // the directory is removed as debris, as one without records is.
        let Ok(Some(config)) = state::read_json::<MonitorConfig>(&dir.join(CONFIG_FILE)) else {
            return Ok(None);
        };
        let mut adopted = Adopted {
            config,
            running: None,
            exit: None,
        };
        // A monitor that is still starting has written its own identity but no init pid
        // yet; give it the time a start may take rather than racing it.
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(exit)) = state::read_json::<ExitRecord>(&dir.join(EXIT_FILE)) {
                adopted.exit = Some(exit);
                return Ok(Some(adopted));
            }
            // Unreadable is as good as absent: with no live monitor behind it, the
            // container is cleaned up below.
            let st = state::read_json::<MonitorState>(&dir.join(STATE_FILE))
                .ok()
                .flatten();
            let live = st.as_ref().and_then(|st| {
                proc::open_verified(st.monitor_pid, st.monitor_start).map(|fd| (st.clone(), fd))
            });
            match live {
                Some((st, fd)) if st.init_pid > 0 => {
                    let h = handle(id.to_string(), dir.to_path_buf(), st.monitor_pid, fd, st)?;
                    adopted.running = Some(h);
                    return Ok(Some(adopted));
                }
                Some(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    // The monitor is gone without saying how its container ended.
                    adopted.exit = Some(self.cleanup(dir).await);
                    return Ok(Some(adopted));
                }
            }
        }
    }

    /// Removes a finished container's directory (bundle, overlay dirs, records).
    pub fn remove(&self, id: &str) {
        // Whatever a killed monitor left mounted of the shared image layers (hostUsers:
        // false) is detached first: removing the directory must not walk into them.
        super::userns::unmount_layers(&self.layout.container(id));
        if let Err(e) = state::remove_dir_all(&self.layout.container(id)) {
            tracing::warn!(container_id = %id, error = %e, "removing container directory");
        }
    }
}

fn handle(
    id: String,
    dir: PathBuf,
    monitor_pid: i32,
    pidfd: OwnedFd,
    st: MonitorState,
) -> Result<Handle, RuntimeError> {
    let pidfd = watch_pidfd(pidfd).map_err(|source| RuntimeError::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(Handle {
        id,
        init_pid: st.init_pid,
        started_at: st.started_at,
        monitor_pid,
        pidfd,
        dir,
    })
}

/// Registers a pidfd with the reactor; it turns readable when the process exits.
fn watch_pidfd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd stays open and names the same description until the AsyncFd
    // that owns it is dropped.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Collects a monitor's exit status if it is our child; adopted monitors belong to init.
fn reap(pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

fn monitor_log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(MONITOR_LOG)).unwrap_or_default();
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    last.unwrap_or("monitor exited without a message")
        .to_string()
}

/// What a command run in a container returned.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// The command's exit code, 128 + signal, or the helper's
    /// [`super::exec::TIMED_OUT`] / [`super::exec::CANNOT_EXEC`].
    pub code: i32,
    /// stdout and stderr, truncated to [`EXEC_OUTPUT_LIMIT`] bytes.
    pub output: String,
}

/// Probe and hook output is for messages only; a chatty command must not cost memory.
pub const EXEC_OUTPUT_LIMIT: usize = 10 * 1024;

impl Runtime {
    /// Runs `argv` inside container `id` through the `hostlet-monitor exec-in` helper.
    pub async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("exec-in")
            .arg("--root-dir")
            .arg(&self.layout.root)
            .arg("--timeout-ms")
            .arg(timeout.as_millis().to_string())
            .arg(id)
            .arg("--")
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::null());
        let exe = self.exe.clone();
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| RuntimeError::Io {
                path: exe.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| RuntimeError::Io { path: exe, source })?;
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        text.truncate(EXEC_OUTPUT_LIMIT);
        Ok(ExecOutput {
            code: out
                .status
                .code()
                .unwrap_or(128 + out.status.signal().unwrap_or(0)),
            output: String::from_utf8_lossy(&text).into_owned(),
        })
    }
}
