//! A `hostUsers: false` container's host side, done by its monitor: the rootfs as an
//! overlay of idmapped image layers, and on cgroup v2 its cgroup delegated to the
//! container's root.
//!
//! The rootfs: an overlayfs mount cannot be idmapped itself on this host's kernel (6.18,
//! EINVAL), but overlayfs takes idmapped lower layers since 5.19 (Debian 12's 6.1 too),
//! as containerd's overlay snapshotter does. The shared layers are never chowned or
//! copied, so the start costs one mount per layer, not a copy of the image. The upper
//! directory belongs to the pod's root, so `/` is root's inside and what the container
//! writes is owned by its mapped IDs on disk.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::userns::{idmap, IdRange, UsernsError};

/// The pod's user namespace, in a container's monitor config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserNamespace {
    /// The namespace file held under the pod directory (`pods/<uid>/ns/user`).
    pub ns: PathBuf,
    pub ids: IdRange,
}

const LOWER_DIR: &str = "lower";

/// Idmapped copies of `lower` under `dir/lower/<n>`, in the same order; the upper
/// directory handed to the pod's root.
pub(super) fn prepare_rootfs(
    dir: &Path,
    lower: &[PathBuf],
    upper: &Path,
    u: &UserNamespace,
) -> Result<Vec<PathBuf>, UsernsError> {
    let ns = std::fs::File::open(&u.ns).map_err(|source| UsernsError::Io {
        path: u.ns.clone(),
        source,
    })?;
    let mut out = Vec::with_capacity(lower.len());
    for (i, l) in lower.iter().enumerate() {
        let target = dir.join(LOWER_DIR).join(i.to_string());
        idmap::mount(l, &target, &ns)?;
        out.push(target);
    }
    let root = nix::unistd::Uid::from_raw(u.ids.host_id);
    let group = nix::unistd::Gid::from_raw(u.ids.host_id);
    nix::unistd::chown(upper, Some(root), Some(group)).map_err(|source| UsernsError::Sys {
        what: format!("handing {} to the pod's root", upper.display()),
        source,
    })?;
    Ok(out)
}

/// Detaches the idmapped layers (after the overlay above them) and removes their
/// mount points; a layer still mounted is logged and kept (never walked into).
pub(super) fn unmount_layers(dir: &Path) {
    let lower = dir.join(LOWER_DIR);
    let Ok(entries) = std::fs::read_dir(&lower) else {
        return;
    };
    for e in entries.flatten() {
        idmap::unmount(&e.path());
        if let Err(err) = std::fs::remove_dir(e.path()) {
            tracing::error!(path = %e.path().display(), error = %err, "an idmapped image layer stays mounted");
        }
    }
}

/// On cgroup v2, the container's cgroup directory and the files the kernel lists as
/// delegatable (`/sys/kernel/cgroup/delegate`) are handed to the container's root, as
/// runc does for a container with a user namespace: inside, it may make sub-cgroups and
/// move its processes, never raise its own limits. Nothing to do on v1.
pub(super) fn delegate_cgroup(cgroups_path: &str, ids: IdRange) -> Result<(), UsernsError> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        return Ok(());
    }
    let rel = crate::cgroups::systemd::fs_path(cgroups_path);
    let dir = root.join(rel.trim_start_matches('/'));
    let files = std::fs::read_to_string("/sys/kernel/cgroup/delegate").unwrap_or_default();
    let (uid, gid) = (
        nix::unistd::Uid::from_raw(ids.host_id),
        nix::unistd::Gid::from_raw(ids.host_id),
    );
    let mut paths = vec![dir.clone()];
    paths.extend(
        files
            .lines()
            .map(|f| dir.join(f.trim()))
            .filter(|p| p.exists()),
    );
    for p in paths {
        nix::unistd::chown(&p, Some(uid), Some(gid)).map_err(|source| UsernsError::Sys {
            what: format!("delegating {}", p.display()),
            source,
        })?;
    }
    Ok(())
}
