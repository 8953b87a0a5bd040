//! The system calls the sandbox helpers share: keeping a namespace by a bind mount of its
//! file, and bringing a new network namespace's loopback up.

use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::files::{io, sys, SandboxError};

pub(super) fn bind(source: &Path, target: &Path) -> Result<(), SandboxError> {
    std::fs::File::create(target).map_err(io(target))?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys(format!(
        "bind-mounting {} on {}",
        source.display(),
        target.display()
    )))
}

/// A new network namespace has `lo` down; pods expect 127.0.0.1 to work.
pub(super) fn loopback_up() -> Result<(), nix::Error> {
    // SAFETY: plain socket(2) call; the fd is owned by `sock` right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass and own.
    unsafe {
        if libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCGIFFLAGS,
            &mut ifr,
        ) < 0
        {
            return Err(nix::Error::last());
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCSIFFLAGS,
            &ifr,
        ) < 0
        {
            return Err(nix::Error::last());
        }
    }
    Ok(())
}
