//! Pod volumes on the host: hostPath with the kubelet's type checks, emptyDir under the
//! pod's directory (on disk or tmpfs), downwardAPI files; configMap, secret and projected
//! volumes through [`super::projection`].

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::projection::{self, ProjectionError};
use crate::manifest::quantity::parse_memory_bytes;
use crate::manifest::ObjectSet;
use crate::node::NodeInfo;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("spec.volumes[{index}] ({name}): {reason}")]
    Invalid {
        index: usize,
        name: String,
        reason: VolumeProblem,
    },
}

/// What is wrong with one volume, or what failed making it.
#[derive(Debug, thiserror::Error)]
pub enum VolumeProblem {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting tmpfs on {}: {source}", path.display())]
    Tmpfs { path: PathBuf, source: nix::Error },
    #[error("hostPath type check failed: {} is not {want}", path.display())]
    HostPathType { path: PathBuf, want: &'static str },
    #[error("unknown hostPath type {0:?}")]
    UnknownHostPathType(String),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("item path {0:?} must be relative without '..'")]
    ItemPath(String),
    #[error("unsupported field path {0:?}")]
    FieldPath(String),
    #[error("{0}")]
    Resource(#[from] crate::bundle::ResourceFieldError),
    #[error("item {0:?} has no source")]
    NoItemSource(String),
    #[error(
        "only hostPath, emptyDir, downwardAPI, configMap, secret and projected volumes are supported"
    )]
    Unsupported,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeProblem + '_ {
    move |source| VolumeProblem::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes every volume of `pod` exist on the host; returns its host path by name.
/// emptyDir lives under the pod directory (tmpfs for `medium: Memory`), downwardAPI,
/// configMap, secret and projected volumes are files written there (secret and projected
/// ones on a tmpfs, never on disk); fsGroup owns emptyDirs.
pub fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    node: &NodeInfo,
    objects: &ObjectSet,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
    for (index, v) in spec.volumes.iter().flatten().enumerate() {
        let err = |reason: VolumeProblem| VolumeError::Invalid {
            index,
            name: v.name.clone(),
            reason,
        };
        let own = pod_dir.join("volumes").join(&v.name);
        let path = if let Some(hp) = &v.host_path {
            let path = PathBuf::from(&hp.path);
            host_path(&path, hp.type_.as_deref().unwrap_or("")).map_err(err)?;
            path
        } else if let Some(ed) = &v.empty_dir {
            let size = (ed.medium.as_deref() == Some("Memory"))
                .then(|| memory_volume_size(pod, ed.size_limit.as_ref(), node));
            empty_dir(&own, size, fs_group).map_err(err)?;
            own
        } else if v.downward_api.is_some() {
            write_downward(pod, v, &own, node).map_err(err)?;
            own
        } else if projection::is_projection(v) {
            let payload = projection::payload(pod, v, objects, node).map_err(|e| err(e.into()))?;
            if projection::on_tmpfs(v) {
                secret_tmpfs(&own, pod, node).map_err(err)?;
            }
            projection::write_atomic(&own, &payload, fs_group).map_err(|e| err(e.into()))?;
            own
        } else {
            return Err(err(VolumeProblem::Unsupported));
        };
        out.insert(v.name.clone(), path);
    }
    create_sub_paths(&spec.containers, &out);
    Ok(out)
}

/// Makes an emptyDir at `dir`: on disk, or a tmpfs when `memory` is set (of that size,
/// when there is one).
fn empty_dir(
    dir: &Path,
    memory: Option<Option<i64>>,
    fs_group: Option<i64>,
) -> Result<(), VolumeProblem> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if let Some(size) = memory.filter(|_| !is_mount_point(dir)) {
        let opts = match size {
            Some(bytes) => format!("mode=0777,size={bytes}"),
            None => "mode=0777".to_string(),
        };
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|source| VolumeProblem::Tmpfs {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // The kubelet makes emptyDirs world-writable so any container user can use them;
    // with fsGroup the group owns it and new files inherit the group (setgid).
    let mut mode = 0o777;
    if let Some(g) = fs_group {
        std::os::unix::fs::chown(dir, None, Some(g as u32)).map_err(io(dir))?;
        mode |= 0o2000;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(io(dir))
}

/// A tmpfs for a volume holding secrets, so they never reach the disk under --root-dir.
fn secret_tmpfs(dir: &Path, pod: &Pod, node: &NodeInfo) -> Result<(), VolumeProblem> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let opts = match memory_volume_size(pod, None, node) {
        Some(bytes) => format!("mode=0755,size={bytes}"),
        None => "mode=0755".to_string(),
    };
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(|source| VolumeProblem::Tmpfs {
        path: dir.to_path_buf(),
        source,
    })
}

/// Rewrites the configMap, secret and projected volumes of `pod` from `objects`, as the
/// kubelet's periodic sync does; returns the names of the volumes whose files changed. A
/// volume whose objects are missing keeps what it had.
pub fn refresh(
    pod: &Pod,
    pod_dir: &Path,
    node: &NodeInfo,
    objects: &ObjectSet,
) -> Vec<Result<String, VolumeError>> {
    let spec = pod.spec.as_ref();
    let fs_group = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.fs_group);
    let mut out = Vec::new();
    for (index, v) in spec
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if !projection::is_projection(v) {
            continue;
        }
        let own = pod_dir.join("volumes").join(&v.name);
        // Gone with its pod (or never made): nothing to keep fresh.
        if !own.is_dir() {
            continue;
        }
        let written = projection::payload(pod, v, objects, node)
            .and_then(|p| projection::write_atomic(&own, &p, fs_group));
        match written {
            Ok(false) => {}
            Ok(true) => out.push(Ok(v.name.clone())),
            Err(e) => out.push(Err(VolumeError::Invalid {
                index,
                name: v.name.clone(),
                reason: e.into(),
            })),
        }
    }
    out
}

/// subPaths of writable volumes are created as the kubelet does, so the bind has a source.
fn create_sub_paths(containers: &[Container], volumes: &BTreeMap<String, PathBuf>) {
    for c in containers {
        for vm in c.volume_mounts.iter().flatten() {
            let (Some(base), Some(sub)) = (volumes.get(&vm.name), vm.sub_path.as_deref()) else {
                continue;
            };
            let p = Path::new(sub);
            if sub.is_empty()
                || p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                continue;
            }
            let target = base.join(p);
            if std::fs::symlink_metadata(&target).is_err() {
                let _ = std::fs::create_dir_all(&target);
            }
        }
    }
}

/// Where each volume of `pod` is on the host, as [`prepare`] makes it, without touching
/// anything (for `hostlet render`).
pub fn paths(pod: &Pod, pod_dir: &Path) -> BTreeMap<String, PathBuf> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.clone());
    volumes
        .into_iter()
        .flatten()
        .map(|v| {
            let path = match &v.host_path {
                Some(hp) => PathBuf::from(&hp.path),
                None => pod_dir.join("volumes").join(&v.name),
            };
            (v.name, path)
        })
        .collect()
}

/// tmpfs size of a `medium: Memory` emptyDir (`calculateEmptyDirMemorySize`): node memory,
/// lowered to the pod's memory limit, lowered to `sizeLimit`.
pub fn memory_volume_size(
    pod: &Pod,
    size_limit: Option<&Quantity>,
    node: &NodeInfo,
) -> Option<i64> {
    let mut size = node.memory_bytes;
    if let Some(m) = crate::cgroups::pod_limits(pod, -1).memory {
        if m > 0 && m <= size {
            size = m;
        }
    }
    if let Some(l) = size_limit.and_then(|q| parse_memory_bytes(q).ok()) {
        if l > 0 && l <= size {
            size = l;
        }
    }
    (size > 0).then_some(size)
}

pub(super) fn is_mount_point(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Writes a downwardAPI volume's files. The mount is read-only
/// in every container; the files are written once, when the pod starts.
fn write_downward(pod: &Pod, v: &Volume, dir: &Path, node: &NodeInfo) -> Result<(), VolumeProblem> {
    let Some(d) = &v.downward_api else {
        return Ok(());
    };
    let default_mode = d.default_mode.unwrap_or(0o644);
    let items = d.items.clone().unwrap_or_default();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for item in items {
        let rel = Path::new(&item.path);
        if item.path.is_empty()
            || rel.is_absolute()
            || rel
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(VolumeProblem::ItemPath(item.path.clone()));
        }
        let content = match (&item.field_ref, &item.resource_field_ref) {
            (Some(f), _) => crate::bundle::downward_field(pod, &f.field_path, node)
                .ok_or_else(|| VolumeProblem::FieldPath(f.field_path.clone()))?,
            (None, Some(r)) => crate::bundle::downward_resource(pod, r, node)?,
            (None, None) => return Err(VolumeProblem::NoItemSource(item.path.clone())),
        };
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&target, content).map_err(io(&target))?;
        let mode = item.mode.unwrap_or(default_mode) as u32;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(io(&target))?;
    }
    Ok(())
}

/// Unmounts the pod's tmpfs volumes so the pod directory can be removed.
pub fn cleanup(pod_dir: &Path) {
    let dir = pod_dir.join("volumes");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in entries.flatten() {
        if is_mount_point(&e.path()) {
            if let Err(err) = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH) {
                tracing::warn!(path = %e.path().display(), error = %err, "unmounting volume");
            }
        }
    }
}

fn host_path(path: &Path, kind: &str) -> Result<(), VolumeProblem> {
    let meta = std::fs::metadata(path);
    let want = |ok: bool, want: &'static str| {
        if ok {
            Ok(())
        } else {
            Err(VolumeProblem::HostPathType {
                path: path.to_path_buf(),
                want,
            })
        }
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(io(path))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(io(path))?;
                return Ok(());
            }
            want(meta.map(|m| m.is_dir()).unwrap_or(false), "a directory")
        }
        "FileOrCreate" => {
            if meta.is_err() {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(io(path))?;
                f.set_permissions(std::fs::Permissions::from_mode(0o644))
                    .map_err(io(path))?;
                return Ok(());
            }
            want(meta.map(|m| m.is_file()).unwrap_or(false), "a file")
        }
        "Directory" => want(meta.map(|m| m.is_dir()).unwrap_or(false), "a directory"),
        "File" => want(meta.map(|m| m.is_file()).unwrap_or(false), "a file"),
        "Socket" => want(
            meta.map(|m| m.file_type().is_socket()).unwrap_or(false),
            "a socket",
        ),
        "CharDevice" => want(
            meta.map(|m| m.file_type().is_char_device())
                .unwrap_or(false),
            "a character device",
        ),
        "BlockDevice" => want(
            meta.map(|m| m.file_type().is_block_device())
                .unwrap_or(false),
            "a block device",
        ),
        other => Err(VolumeProblem::UnknownHostPathType(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types() {
        let d = tempfile::tempdir().unwrap();
        let newdir = d.path().join("a/b");
        host_path(&newdir, "DirectoryOrCreate").unwrap();
        assert!(newdir.is_dir());
        host_path(&newdir, "Directory").unwrap();
        let f = d.path().join("f");
        host_path(&f, "FileOrCreate").unwrap();
        assert!(f.is_file());
        host_path(&f, "File").unwrap();
        let e = host_path(&f, "Directory").unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        assert!(host_path(&d.path().join("missing"), "File").is_err());
        assert!(host_path(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(host_path(&f, "Bogus").is_err());
    }
}
