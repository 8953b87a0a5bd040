//! Small no-follow filesystem helpers and tar header accessors for `unpack`.

use std::ffi::{CString, OsStr};
use std::fs::{self, FileTimes};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use tar::Header;

/// Removes `path` (recursively if it is a real directory) without following it; absent is fine.
pub fn remove_nofollow(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path), // std's remove_dir_all does not follow symlinks
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn mode(h: &Header) -> u32 {
    h.mode().unwrap_or(0o644) & 0o7777
}

pub fn uid(h: &Header) -> u32 {
    h.uid().unwrap_or(0) as u32
}

pub fn gid(h: &Header) -> u32 {
    h.gid().unwrap_or(0) as u32
}

pub fn file_times(mtime: u64) -> FileTimes {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
    FileTimes::new().set_accessed(t).set_modified(t)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

pub fn set_times_nofollow(path: &Path, mtime: u64) -> io::Result<()> {
    let p = cpath(path)?;
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: `p` is a valid NUL-terminated string and `times` an array of two timespecs, both
    // alive for the call; AT_SYMLINK_NOFOLLOW makes the kernel set a symlink's own times.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is a valid NUL-terminated path alive for the call; mknod creates a new node and
    // fails with EEXIST rather than following an existing symlink.
    let r = unsafe { libc::mknod(p.as_ptr(), mode, dev) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn lsetxattr(path: &Path, key: &[u8], value: &[u8]) -> io::Result<()> {
    let p = cpath(path)?;
    let k = CString::new(OsStr::from_bytes(key).as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `p` and `k` are valid NUL-terminated strings and `value` a live slice of the given
    // length for the duration of the call; lsetxattr does not follow symlinks.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The value of xattr `key` on `path` itself (not following a symlink), if set and short.
pub fn lgetxattr(path: &Path, key: &[u8]) -> Option<Vec<u8>> {
    let p = cpath(path).ok()?;
    let k = CString::new(key).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: `p` and `k` are valid NUL-terminated strings and `buf` a writable buffer of the
    // given length, all alive for the call; lgetxattr does not follow symlinks.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}
