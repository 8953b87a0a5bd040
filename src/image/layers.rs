//! Unpacked layers: `layers/<diff_id hex>/`, each unpacked once (overlay mode: overlayfs
//! whiteouts) and shared read-only by every image that has it; and the fallback
//! `rootfs/<manifest hex>/` for images whose layer list is too long for one overlay mount.
//!
//! Both are built in a `.tmp-*` sibling, synced and renamed into place, so a directory under its
//! final name is always complete.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::fsutil::lgetxattr;
use super::store::{io_err, sha256_hex, sync_dir, tmp_name};
use super::unpack::{self, Compression};
use super::ImageError;

/// Why a layer or flattened rootfs directory could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("diff_id is not a sha256 digest")]
    DiffIdNotSha256,
    #[error("not a sha256 digest")]
    NotSha256,
    #[error("{0}")]
    Unpack(unpack::UnpackError),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("syncing {path}: {error}")]
    Sync { path: PathBuf, error: io::Error },
    #[error("{0}")]
    Store(Box<ImageError>),
}

/// Longest `lowerdir=` value we hand to overlayfs. The whole mount option string must fit in
/// one page (4096 bytes) together with `upperdir=`/`workdir=`; longer stacks are flattened.
pub const MAX_LOWERDIR_LEN: usize = 3072;

/// One layer of a manifest, bottom first.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    /// Digest of the (compressed) blob.
    pub blob: String,
    /// Digest of the uncompressed tar (`rootfs.diff_ids`): the layer directory's name.
    pub diff_id: String,
    pub compression: Compression,
}

pub fn layer_dir(layers: &Path, diff_id: &str) -> Option<PathBuf> {
    sha256_hex(diff_id).map(|hex| layers.join(hex))
}

/// The colon-separated length of `dirs` as the monitor joins them.
pub fn lowerdir_len(dirs: &[PathBuf]) -> usize {
    dirs.iter().map(|d| d.as_os_str().len() + 1).sum()
}

/// Unpacks `spec` from `blob` into `<layers>/<diff_id hex>` unless it is there already.
pub fn unpack_layer(
    layers: &Path,
    spec: &LayerSpec,
    blob: &Path,
    max_size: u64,
) -> Result<PathBuf, LayerError> {
    let target = layer_dir(layers, &spec.diff_id).ok_or(LayerError::DiffIdNotSha256)?;
    if target.is_dir() {
        return Ok(target);
    }
    let opts = unpack::Options {
        overlay: true,
        max_size,
        diff_id: Some(spec.diff_id.clone()),
    };
    build_dir(layers, &target, |tmp| {
        unpack::apply_layer_file(blob, spec.compression, tmp, &opts)
            .map(drop)
            .map_err(LayerError::Unpack)
    })?;
    Ok(target)
}

/// Builds the flattened rootfs `<rootfs>/<hex>` from `layers` (bottom first, with blob paths).
pub fn flatten(
    rootfs: &Path,
    hex: &str,
    layers: &[(LayerSpec, PathBuf)],
    max_size: u64,
) -> Result<PathBuf, (String, LayerError)> {
    let target = rootfs.join(hex);
    if target.is_dir() {
        return Ok(target);
    }
    let mut failed_layer = String::new();
    build_dir(rootfs, &target, |tmp| {
        for (spec, blob) in layers {
            failed_layer = spec.blob.clone();
            let opts = unpack::Options {
                overlay: false,
                max_size,
                diff_id: Some(spec.diff_id.clone()),
            };
            unpack::apply_layer_file(blob, spec.compression, tmp, &opts)
                .map_err(LayerError::Unpack)?;
        }
        failed_layer.clear();
        Ok(())
    })
    .map_err(|m| (failed_layer.clone(), m))?;
    Ok(target)
}

/// Runs `fill` on a fresh temporary sibling of `target`, syncs it and renames it into place.
fn build_dir(
    parent: &Path,
    target: &Path,
    fill: impl FnOnce(&Path) -> Result<(), LayerError>,
) -> Result<(), LayerError> {
    let stem = target.file_name().and_then(|n| n.to_str()).unwrap_or("dir");
    let tmp = parent.join(tmp_name(stem));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| LayerError::Io { path, error }
    };
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    let result = (|| {
        fill(&tmp)?;
        syncfs(&tmp).map_err(|error| LayerError::Sync {
            path: tmp.clone(),
            error,
        })?;
        match fs::rename(&tmp, target) {
            Ok(()) => {}
            // Another process finished the same directory first: identical content, keep theirs.
            Err(e)
                if target.is_dir()
                    && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
            {
                let _ = remove_tree(&tmp);
            }
            Err(e) => return Err(io(target)(e)),
        }
        sync_dir(parent).map_err(|e| LayerError::Store(Box::new(e)))
    })();
    if result.is_err() {
        let _ = remove_tree(&tmp);
    }
    result
}

/// Removes a layer or rootfs directory: renamed aside first, so a crash half-way never leaves
/// a partial tree under a name that means "complete".
pub fn remove_dir(dir: &Path) -> Result<(), ImageError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    let stem = dir.file_name().and_then(|n| n.to_str()).unwrap_or("dir");
    let aside = parent.join(tmp_name(&format!("rm-{stem}")));
    match fs::rename(dir, &aside) {
        Ok(()) => remove_tree(&aside).map_err(io_err(&aside)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Unpacked layers may hold read-only directories (mode 0555): make them writable first.
fn remove_tree(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) if !nix::unistd::geteuid().is_root() => {
            let mut stack = vec![dir.to_path_buf()];
            while let Some(d) = stack.pop() {
                let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
                for e in fs::read_dir(&d)?.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
            fs::remove_dir_all(dir)
        }
        Err(e) => Err(e),
    }
}

/// Flushes the filesystem holding `path`: one call instead of an fsync per unpacked file.
fn syncfs(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = fs::File::open(path)?;
    // SAFETY: `dir` is an open descriptor that outlives the call; syncfs only reads it.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    lgetxattr(dir, b"trusted.overlay.opaque").is_some_and(|v| v == b"y")
}

/// Reads `rel` as overlayfs would show it from `layers` (topmost first): whiteouts and opaque
/// directories hide lower layers, a non-directory hides a lower directory. Symlinks are never
/// followed, so the result is always inside a layer; a symlinked path reads as absent.
pub fn read_file(layers: &[PathBuf], rel: &str) -> Option<Vec<u8>> {
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.is_empty() || comps.contains(&"..") {
        return None;
    }
    for layer in layers {
        let mut path = layer.clone();
        let mut hides_lower = false;
        for (i, c) in comps.iter().enumerate() {
            path.push(c);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                break; // absent here: look in the layers below, unless an opaque dir hides them
            };
            if is_whiteout(&meta) {
                return None;
            }
            if i + 1 == comps.len() {
                return meta.is_file().then(|| fs::read(&path).ok()).flatten();
            }
            if !meta.is_dir() {
                return None;
            }
            hides_lower |= is_opaque(&path);
        }
        if hides_lower {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::fsutil::{lsetxattr, mknod};

    #[test]
    fn read_file_honours_whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, mid, bottom) = (
            tmp.path().join("top"),
            tmp.path().join("mid"),
            tmp.path().join("bottom"),
        );
        for d in [&top, &mid, &bottom] {
            fs::create_dir_all(d.join("etc")).unwrap();
        }
        fs::write(bottom.join("etc/passwd"), b"bottom").unwrap();
        fs::write(bottom.join("etc/group"), b"bottom").unwrap();
        fs::write(bottom.join("etc/hosts"), b"bottom").unwrap();
        fs::create_dir_all(bottom.join("opt/keep")).unwrap();
        fs::write(bottom.join("opt/keep/file"), b"bottom").unwrap();
        fs::write(mid.join("etc/passwd"), b"mid").unwrap();
        mknod(&top.join("etc/group"), libc::S_IFCHR | 0o600, 0).unwrap();
        fs::create_dir_all(top.join("opt")).unwrap();
        lsetxattr(&top.join("opt"), b"trusted.overlay.opaque", b"y").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", top.join("etc/hostname")).unwrap();
        let layers = [top, mid, bottom];
        assert_eq!(read_file(&layers, "/etc/passwd").unwrap(), b"mid");
        assert_eq!(read_file(&layers, "etc/hosts").unwrap(), b"bottom");
        assert_eq!(read_file(&layers, "etc/group"), None, "whiteout");
        assert_eq!(read_file(&layers, "opt/keep/file"), None, "opaque dir");
        assert_eq!(
            read_file(&layers, "etc/hostname"),
            None,
            "symlink not followed"
        );
        assert_eq!(read_file(&layers, "etc/../etc/passwd"), None);
        assert_eq!(read_file(&layers, "etc"), None);
    }
}
