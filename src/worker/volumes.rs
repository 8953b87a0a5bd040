//! Pod volumes on the host: hostPath with the kubelet's type checks, emptyDir under the
//! pod's directory.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("spec.volumes[{index}] ({name}): {message}")]
    Invalid {
        index: usize,
        name: String,
        message: String,
    },
}

/// Makes every volume of `pod` exist on the host; returns its host path by name.
pub fn prepare(pod: &Pod, pod_dir: &Path) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let mut out = BTreeMap::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for (index, v) in volumes.into_iter().flatten().enumerate() {
        let err = |message: String| VolumeError::Invalid {
            index,
            name: v.name.clone(),
            message,
        };
        let path = if let Some(hp) = &v.host_path {
            let path = PathBuf::from(&hp.path);
            host_path(&path, hp.type_.as_deref().unwrap_or("")).map_err(err)?;
            path
        } else if v.empty_dir.is_some() {
            let path = pod_dir.join("volumes").join(&v.name);
            std::fs::create_dir_all(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            // The kubelet makes emptyDirs world-writable so any container user can use them.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            path
        } else {
            return Err(err(
                "only hostPath and emptyDir volumes are supported".into()
            ));
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn host_path(path: &Path, kind: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path);
    let want = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!(
                "hostPath type check failed: {} is not {what}",
                path.display()
            ))
        }
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
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
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                f.set_permissions(std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
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
        other => Err(format!("unknown hostPath type {other:?}")),
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
        assert!(e.contains("is not a directory"), "{e}");
        assert!(host_path(&d.path().join("missing"), "File").is_err());
        assert!(host_path(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(host_path(&f, "Bogus").is_err());
    }
}
