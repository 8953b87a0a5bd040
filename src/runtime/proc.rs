//! Process identity helpers: a PID alone can be reused, a PID plus its start time cannot.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The process start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and parentheses; everything after the last ')' is
    // space separated, starting with field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Opens a pidfd for `pid`. It keeps naming that process even after the PID is reused,
/// so signals sent through it can never hit a stranger.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub fn pidfd_send_signal(fd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo (NULL), flags 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a pidfd for `pid` only if it is still the process that started at `start`.
pub fn open_verified(pid: i32, start: u64) -> Option<OwnedFd> {
    let fd = pidfd_open(pid).ok()?;
    // Checked after opening: if the start time still matches now, the fd names the
    // process we recorded, whatever happens to the PID later.
    (start_time(pid) == Some(start)).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_stable_and_verifiable() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("own start time");
        assert_eq!(start_time(me), Some(t));
        assert!(open_verified(me, t).is_some());
        assert!(open_verified(me, t + 1).is_none());
        assert!(start_time(i32::MAX).is_none());
    }
}
