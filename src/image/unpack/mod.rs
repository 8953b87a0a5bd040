//! Unpacking layer tarballs safely, in one of two modes:
//! - **overlay** (the default): each layer into its own empty directory, shared by every image
//!   that has it; OCI whiteouts become overlayfs whiteouts (`.wh.<name>` → a 0/0 character
//!   device `<name>`, `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory), so the
//!   kernel applies them when the layers are stacked as overlay lower directories;
//! - **flatten**: layer after layer into one rootfs (images with too many layers for one
//!   overlay mount). `.wh.<name>` removes `<name>` of lower layers; `.wh..wh..opq` empties its
//!   directory of lower-layer content.
//!
//! Rules (OCI image-spec "Applying changesets", matching umoci/containerd):
//! - Whiteouts never remove what the same layer wrote.
//! - An entry replaces an existing path unless both are directories (then only metadata changes).
//! - mode (incl. setuid/sticky), numeric uid/gid, mtime, `SCHILY.xattr.*` are applied.
//!
//! Safety (the tarball is untrusted; we run as root):
//! - An entry path with a `..` component is refused; a leading `/` is dropped (contained).
//! - Parent directories are resolved component by component with `lstat`, and a symlink met on
//!   the way is resolved *inside* the rootfs, as if the rootfs were `/` (what umoci and
//!   containerd do, so `lib -> usr/lib` then `lib/x` lands in `usr/lib/x`; `etc -> /` then
//!   `etc/passwd` lands in `<rootfs>/passwd`). The kernel never resolves a symlink for us while
//!   writing: the final component is never followed (files are created with O_EXCL after the old
//!   entry is removed, metadata calls are no-follow or on our own fds, `link` does not follow).
//! - Hardlink targets are resolved the same way, so they always name an inode inside the rootfs.
//! - Symlink targets are stored verbatim; they are only resolved later inside the container.
//! - Character and block devices are skipped (logged): a device node in an image could give a
//!   container a host device; the runtime gives containers the devices they need.
//! - The unpacked size (file data plus 512 bytes per entry) is capped (`--max-layer-size`), and
//!   the uncompressed stream must hash to the layer's diff_id when one is given.
//!
//! This is sound without `openat` tricks because the rootfs is a private temporary directory:
//! nothing but this code writes to it while it is built, so an `lstat` cannot be raced.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

mod layer;
use layer::Layer;

use super::fsutil::set_times_nofollow;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
const MAX_SYMLINKS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {entry:?} refused: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("entry {entry:?}: {op}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("reading layer: {0}")]
    Archive(io::Error),
    #[error("layer unpacks to more than the {limit} bytes allowed (--max-layer-size)")]
    TooLarge { limit: u64 },
    #[error("uncompressed layer does not match its diff_id: expected {expected}, got {actual}")]
    DiffId { expected: String, actual: String },
}

/// A layer media type hostlet cannot unpack (or one that is not a layer at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported layer media type {0}")]
pub struct UnsupportedMediaType(pub String);

/// How a layer is applied.
#[derive(Debug, Clone)]
pub struct Options {
    /// Overlay mode (whiteouts become overlayfs whiteouts) rather than flatten mode.
    pub overlay: bool,
    /// Refuse the layer once its unpacked size passes this many bytes.
    pub max_size: u64,
    /// `sha256:` the uncompressed tar must hash to (the config's `rootfs.diff_ids` entry).
    pub diff_id: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            overlay: false,
            max_size: u64::MAX,
            diff_id: None,
        }
    }
}

/// What applying a layer found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    /// File data plus 512 bytes per entry.
    pub size: u64,
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Errors for media types that are not image layers or are unsupported.
    pub fn for_media_type(media_type: &str) -> Result<Self, UnsupportedMediaType> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Ok(Self::Zstd),
            m => Err(UnsupportedMediaType(m.to_string())),
        }
    }
}

/// Applies the layer blob at `blob` on top of the directory `root`.
pub fn apply_layer_file(
    blob: &Path,
    compression: Compression,
    root: &Path,
    opts: &Options,
) -> Result<Stats, UnpackError> {
    let file = File::open(blob).map_err(|source| UnpackError::Io {
        entry: blob.display().to_string(),
        op: "open layer blob",
        source,
    })?;
    let reader = io::BufReader::with_capacity(256 * 1024, file);
    match compression {
        Compression::None => apply_layer_with(reader, root, opts),
        Compression::Gzip => {
            apply_layer_with(flate2::read::MultiGzDecoder::new(reader), root, opts)
        }
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(reader).map_err(UnpackError::Archive)?;
            apply_layer_with(decoder, root, opts)
        }
    }
}

/// Applies one uncompressed layer tarball on top of `root` in flatten mode; returns the
/// number of entries.
#[cfg(test)]
pub fn apply_layer<R: Read>(reader: R, root: &Path) -> Result<u64, UnpackError> {
    apply_layer_with(reader, root, &Options::default()).map(|s| s.entries)
}

/// Hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Applies one uncompressed layer tarball on top of `root`.
pub fn apply_layer_with<R: Read>(
    reader: R,
    root: &Path,
    opts: &Options,
) -> Result<Stats, UnpackError> {
    let mut layer = Layer {
        root,
        overlay: opts.overlay,
        written: HashSet::new(),
        dir_times: Vec::new(),
    };
    let mut stats = Stats::default();
    let mut archive = tar::Archive::new(Hashing {
        inner: reader,
        hasher: Sha256::new(),
    });
    for entry in archive.entries().map_err(UnpackError::Archive)? {
        let mut entry = entry.map_err(UnpackError::Archive)?;
        stats.entries += 1;
        stats.size = stats
            .size
            .saturating_add(512)
            .saturating_add(entry.header().size().unwrap_or(0));
        if stats.size > opts.max_size {
            return Err(UnpackError::TooLarge {
                limit: opts.max_size,
            });
        }
        layer.apply(&mut entry)?;
    }
    // Children changed their parents' mtimes: set directory times last, deepest first.
    for (path, mtime) in layer.dir_times.iter().rev() {
        set_times_nofollow(path, *mtime).map_err(|source| UnpackError::Io {
            entry: path.display().to_string(),
            op: "set mtime",
            source,
        })?;
    }
    if let Some(expected) = &opts.diff_id {
        let mut rest = archive.into_inner();
        // The end-of-archive blocks and padding are part of what the diff_id covers.
        io::copy(&mut rest, &mut io::sink()).map_err(UnpackError::Archive)?;
        let actual = format!("sha256:{}", hex::encode(rest.hasher.finalize()));
        if &actual != expected {
            return Err(UnpackError::DiffId {
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod overlay_tests;
