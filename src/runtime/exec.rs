//! Running a command inside a running container (probes, hooks, `hostlet exec`):
//! `hostlet-monitor exec-in ID -- CMD...`, a single-threaded helper process that joins the
//! container through libcontainer's tenant builder (its namespaces, cgroup, user and
//! environment), waits for the command and exits with its status. The agent never
//! calls libcontainer itself.

use std::path::Path;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::executor::ResetSignalsExecutor;

/// Exit status of the helper when the command ran past its timeout (as timeout(1)).
pub const TIMED_OUT: i32 = 124;
/// Exit status of the helper when the command could not be started in the container.
pub const CANNOT_EXEC: i32 = 126;

/// Entry point of `hostlet-monitor exec-in`; returns the process exit code: the command's code,
/// 128 + signal, [`TIMED_OUT`] or [`CANNOT_EXEC`].
pub fn main(runtime_root: &Path, id: &str, argv: Vec<String>, timeout: Option<Duration>) -> i32 {
    if let Err(e) = super::exec_userns::enter(runtime_root, id) {
        eprintln!("exec in container {id}: {e}");
        return CANNOT_EXEC;
    }
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(runtime_root)
        .map(|b| b.with_executor(ResetSignalsExecutor))
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            b.as_tenant()
                .with_container_args(argv)
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
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut nap = Duration::from_micros(500);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(e) => {
                eprintln!("waiting for the command: {e}");
                return CANNOT_EXEC;
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            eprintln!("command timed out after {:?}", timeout.unwrap_or_default());
            return TIMED_OUT;
        }
        // Short commands (probes) finish in milliseconds; back off for long ones.
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}
