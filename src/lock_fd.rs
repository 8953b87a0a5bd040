//! A pod's flock lock handed on to a helper process it spawns. flock locks belong to the
//! open file: a helper that inherits the descriptor holds the lock for as long as it runs,
//! even when the agent that took it is killed, so the next agent waits for the helper
//! instead of racing it. Only this one child gets the descriptor (it stays close-on-exec
//! in the agent), so a monitor or plugin spawned meanwhile for another pod never holds it.

use std::os::fd::RawFd;
use std::process::Command;

/// Makes `fd` (a locked file of the agent's) survive the exec of `cmd`'s child only.
pub fn inherit(cmd: &mut Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: fcntl is async-signal-safe and changes only the child's descriptor.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
