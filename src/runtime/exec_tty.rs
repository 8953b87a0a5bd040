//! `hostlet-monitor exec-in --tty`: like [`super::exec`], but the command gets a pseudo-terminal.
//! libcontainer opens the pty inside the container and hands its master over a console
//! socket; this process relays between its own stdio and the master (raw mode when its
//! stdin is a terminal, window size kept in step) until the command exits.

use std::io::{Read, Write};

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::exec::CANNOT_EXEC;
use super::executor::ResetSignalsExecutor;
use super::terminal::{copy_window_size, RawMode};

/// Why the terminal exec could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TtyError {
    #[error("{0}")]
    Load(libcontainer::error::LibcontainerError),
    #[error("{0}")]
    Spec(oci_spec::OciSpecError),
    #[error("the container has no process")]
    NoProcess,
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("{}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("console socket: {0}")]
    Accept(std::io::Error),
    #[error("receiving the terminal: {0}")]
    Receive(nix::Error),
    #[error("{0}")]
    ControlMessage(nix::Error),
    #[error("no terminal received on the console socket")]
    NoTerminal,
}

/// Removes the temporary files of one exec on every way out.
struct Temp(Vec<PathBuf>);

impl Drop for Temp {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The container's own process settings (user, env, capabilities, cwd …) with `argv`,
/// a terminal and the caller's `TERM`.
fn process_file(
    runtime_root: &Path,
    id: &str,
    argv: Vec<String>,
    dir: &Path,
) -> Result<PathBuf, TtyError> {
    let c = Container::load(runtime_root.join(id)).map_err(TtyError::Load)?;
    let spec =
        oci_spec::runtime::Spec::load(c.bundle().join("config.json")).map_err(TtyError::Spec)?;
    let mut process = spec.process().clone().ok_or(TtyError::NoProcess)?;
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
    let mut env: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.starts_with("TERM="))
        .collect();
    env.push(format!("TERM={term}"));
    process
        .set_args(Some(argv))
        .set_env(Some(env))
        .set_terminal(Some(true));
    let path = dir.join(format!("hostlet-exec-{}.json", std::process::id()));
    let json = serde_json::to_vec(&process).map_err(TtyError::Json)?;
    if let Err(error) = std::fs::write(&path, json) {
        return Err(TtyError::Write { path, error });
    }
    Ok(path)
}

pub(crate) fn receive_master(listener: &UnixListener) -> Result<OwnedFd, TtyError> {
    let (conn, _) = listener.accept().map_err(TtyError::Accept)?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(TtyError::Receive)?;
    for c in msg.cmsgs().map_err(TtyError::ControlMessage)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(TtyError::NoTerminal)
}

/// Entry point of `hostlet-monitor exec-in --tty`; returns the command's exit status.
pub fn main(runtime_root: &Path, id: &str, argv: Vec<String>) -> i32 {
    let dir = std::env::temp_dir();
    let sock_path = dir.join(format!("hostlet-exec-{}.sock", std::process::id()));
    let mut temp = Temp(vec![sock_path.clone()]);
    let listener = match UnixListener::bind(&sock_path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("console socket {}: {e}", sock_path.display());
            return CANNOT_EXEC;
        }
    };
    let process = match process_file(runtime_root, id, argv, &dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("exec in container {id}: {e}");
            return CANNOT_EXEC;
        }
    };
    temp.0.push(process.clone());
    // SIGWINCH and SIGCHLD are read from a signalfd; block them before anything forks.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGWINCH);
    mask.add(Signal::SIGCHLD);
    let _ = mask.thread_block();
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
    if let Err(e) = super::exec_userns::enter(runtime_root, id) {
        eprintln!("exec in container {id}: {e}");
        return CANNOT_EXEC;
    }
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(runtime_root)
        .map(|b| {
            b.with_executor(ResetSignalsExecutor)
                .with_console_socket(Some(&sock_path))
        })
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            b.as_tenant()
                .with_process(Some(&process))
                .with_detach(true)
                .build()
        });
    let pid = match pid {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("exec in container {id}: {e}");
            return CANNOT_EXEC;
        }
    };
    let master = match receive_master(&listener) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return CANNOT_EXEC;
        }
    };
    drop(temp);
    copy_window_size(&master);
    let _raw = RawMode::enter();
    relay(&master, sigfd.as_ref());
    wait_exit(pid)
}

/// Copies stdin → master and master → stdout until the command closes its terminal.
fn relay(master: &OwnedFd, sigfd: Option<&SignalFd>) {
    let mut master_file = std::fs::File::from(master.try_clone().expect("dup of the terminal"));
    let mut stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if let Some(s) = sigfd {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (master_ready, sig_ready) = (ready(0), sigfd.is_some() && ready(1));
        let stdin_ready = stdin_open && ready(if sigfd.is_some() { 2 } else { 1 });
        drop(fds);
        if master_ready {
            match master_file.read(&mut buf) {
                // EIO: every slave end is closed, the command is gone.
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]).and_then(|_| stdout.flush());
                }
            }
        }
        if stdin_ready {
            match nix::unistd::read(libc::STDIN_FILENO, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = master_file.write_all(&buf[..n]);
                }
            }
        }
        if sig_ready {
            if let Some(s) = sigfd {
                while let Ok(Some(info)) = s.read_signal() {
                    if info.ssi_signo == libc::SIGWINCH as u32 {
                        copy_window_size(master);
                    }
                }
            }
        }
    }
}

fn wait_exit(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return CANNOT_EXEC,
        }
    }
}
