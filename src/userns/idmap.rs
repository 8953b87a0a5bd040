//! Idmapped mounts (mount_setattr(2) with `MOUNT_ATTR_IDMAP`), as containerd and runc make
//! them: a detached copy of a directory's mount (open_tree `OPEN_TREE_CLONE`) gets the
//! pod's user namespace as its ID mapping and is attached where the container's bind
//! mount takes it from. Files owned by host ID N show as owned by N inside the pod, and
//! what the pod's root writes is owned by host root on disk: no chown of the volume.
//!
//! libcontainer 0.7 does not make idmapped mounts itself (it refuses the `ridmap`-style
//! options and ignores a mount's `uidMappings`), so hostlet makes them on the host and
//! the spec bind-mounts them.
//!
//! Measured on this host's kernel (6.18): ext4 and tmpfs directories can be idmapped; an
//! overlayfs mount cannot (EINVAL), but an overlay of idmapped lower layers works, which
//! is what the container's rootfs uses (see `runtime::monitor`). Debian 12's kernel (6.1)
//! has idmapped ext4 and overlay lower layers (5.19) but not tmpfs (6.3): a memory
//! emptyDir or a projected volume there is refused with the volume and the errno.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::UsernsError;

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Attaches an idmapped copy of `source`'s mount at `target` (created as a directory or
/// an empty file to match `source`), mapped by the user namespace `userns`.
pub fn mount(source: &Path, target: &Path, userns: &File) -> Result<(), UsernsError> {
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |source| UsernsError::Io { path, source }
    };
    let meta = std::fs::metadata(source).map_err(io(source))?;
    if meta.is_dir() {
        std::fs::create_dir_all(target).map_err(io(target))?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map_err(io(target))?;
    }
    let tree = open_tree(source)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) reads `attr` (its size passed) and an empty path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        let e = nix::Error::last();
        let fs = fs_type(source).unwrap_or_else(|| "?".into());
        return Err(UsernsError::Unsupported(format!(
            "idmapped mounts of {} ({fs}): mount_setattr: {e}",
            source.display()
        )));
    }
    let target_c = cstr(target)?;
    // SAFETY: move_mount(2) of the detached tree we own onto a path we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(UsernsError::Sys {
            what: format!("attaching the idmapped mount at {}", target.display()),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

fn cstr(p: &Path) -> Result<std::ffi::CString, UsernsError> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| UsernsError::Io {
        path: p.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

fn open_tree(source: &Path) -> Result<OwnedFd, UsernsError> {
    let c = cstr(source)?;
    // Not AT_RECURSIVE: a volume's own mount only; a submount that cannot be idmapped
    // (proc, say) would otherwise fail the whole volume.
    // SAFETY: open_tree(2) with a valid C path; a non-negative result is a new fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(UsernsError::Sys {
            what: format!("open_tree {}", source.display()),
            source: nix::Error::last(),
        });
    }
    // SAFETY: fd is fresh and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The file system type of the mount holding `path` (for the refusal message).
fn fs_type(path: &Path) -> Option<String> {
    let s = nix::sys::statfs::statfs(path).ok()?;
    Some(match s.filesystem_type() {
        nix::sys::statfs::EXT4_SUPER_MAGIC => "ext4".into(),
        nix::sys::statfs::TMPFS_MAGIC => "tmpfs".into(),
        nix::sys::statfs::OVERLAYFS_SUPER_MAGIC => "overlayfs".into(),
        nix::sys::statfs::XFS_SUPER_MAGIC => "xfs".into(),
        nix::sys::statfs::BTRFS_SUPER_MAGIC => "btrfs".into(),
        other => format!("file system {:#x}", other.0),
    })
}

/// Detaches an idmapped mount made by [`mount`]; nothing there, nothing done.
pub fn unmount(target: &Path) {
    let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
}

/// The oldest kernel with idmapped overlayfs lower layers, which the rootfs needs.
pub const MIN_KERNEL: (u32, u32) = (5, 19);

/// What the host lacks for user-namespaced pods, checked before a pod is set up: user
/// namespaces allowed (`user.max_user_namespaces`) and a kernel with idmapped overlay
/// layers. Idmapped volumes are checked when each is mounted.
pub fn host_support() -> Result<(), UsernsError> {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        return Err(UsernsError::Unsupported(
            "user namespaces are disabled (sysctl user.max_user_namespaces is 0)".into(),
        ));
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    match kernel_version(&release) {
        Some(v) if v >= MIN_KERNEL => Ok(()),
        _ => Err(UsernsError::Unsupported(format!(
            "kernel {release} is older than {}.{}, the first with idmapped overlayfs layers",
            MIN_KERNEL.0, MIN_KERNEL.1
        ))),
    }
}

/// `6.1.0-18-amd64` → (6, 1).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
