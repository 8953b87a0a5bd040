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
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

use super::fsutil::{
    file_times, gid, lsetxattr, mknod, mode, remove_nofollow, set_times_nofollow, uid,
};

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

struct Layer<'a> {
    root: &'a Path,
    overlay: bool,
    /// Rootfs-relative real paths written by this layer, with all their ancestors.
    written: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, u64)>,
}

impl Layer<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path().map_err(UnpackError::Archive)?.into_owned();
        let name = raw.display().to_string();
        let io = |op| io_err(&name, op);
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let mut comps = clean(&raw).map_err(|reason| unsafe_entry(&name, reason))?;
        let Some(last) = comps.pop() else {
            // "./" — the rootfs itself.
            if kind == EntryType::Directory {
                self.metadata(entry, self.root, &name)?;
                self.dir_times
                    .push((self.root.to_path_buf(), entry.header().mtime().unwrap_or(0)));
                return Ok(());
            }
            return Err(unsafe_entry(&name, "non-directory entry names the root"));
        };

        if let Some(hidden) = last.to_str().and_then(|s| s.strip_prefix(WHITEOUT_PREFIX)) {
            return self.whiteout(&comps, last == WHITEOUT_OPAQUE, hidden, &name);
        }

        let (dir, dir_rel) = self.resolve_dir(&comps, true, &name)?.expect("created");
        let target = dir.join(&last);
        let rel = dir_rel.join(&last);
        let existing = fs::symlink_metadata(&target).ok();
        let header = entry.header().clone();
        let mtime = header.mtime().unwrap_or(0);

        match kind {
            EntryType::Directory => {
                if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                    remove_nofollow(&target).map_err(io("replace"))?;
                    fs::create_dir(&target).map_err(io("mkdir"))?;
                }
                self.metadata(entry, &target, &name)?;
                self.dir_times.push((target, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(entry, &target, &header, &name)?
            }
            EntryType::Symlink => self.symlink(entry, &target, &header, &name)?,
            EntryType::Link => self.hardlink(entry, &target, &name)?,
            EntryType::Char | EntryType::Block => {
                tracing::warn!(entry = %name, major = ?header.device_major().ok().flatten(), minor = ?header.device_minor().ok().flatten(), "skipping device node in image layer");
                return Ok(());
            }
            EntryType::Fifo => self.fifo(entry, &target, &header, &name)?,
            other => {
                tracing::debug!(entry = %name, kind = ?other, "skipping unsupported tar entry type");
                return Ok(());
            }
        }
        self.mark(&rel);
        Ok(())
    }

    /// A whiteout in directory `comps`: `.wh..wh..opq` (`opaque`) hides the directory's
    /// lower content, `.wh.<hidden>` one lower entry.
    fn whiteout(
        &mut self,
        comps: &[OsString],
        opaque: bool,
        hidden: &str,
        name: &str,
    ) -> Result<(), UnpackError> {
        let io = |op| io_err(name, op);
        // In overlay mode the whiteout must exist even where this layer has no parent dir.
        let Some((dir, dir_rel)) = self.resolve_dir(comps, self.overlay, name)? else {
            return Ok(()); // parent absent: nothing to hide
        };
        if opaque {
            self.mark(&dir_rel);
            if self.overlay {
                return lsetxattr(&dir, b"trusted.overlay.opaque", b"y")
                    .map_err(io("mark directory opaque"));
            }
            return self
                .opaque(&dir, &dir_rel)
                .map_err(io("apply opaque whiteout"));
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(unsafe_entry(name, "malformed whiteout"));
        }
        if !self.written.contains(&dir_rel.join(hidden)) {
            let target = dir.join(hidden);
            remove_nofollow(&target).map_err(io("apply whiteout"))?;
            if self.overlay {
                mknod(&target, libc::S_IFCHR | 0o600, libc::makedev(0, 0))
                    .map_err(io("create overlay whiteout"))?;
            }
        }
        Ok(())
    }

    fn regular<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        header: &tar::Header,
        name: &str,
    ) -> Result<(), UnpackError> {
        let io = |op| io_err(name, op);
        remove_nofollow(target).map_err(io("replace"))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(target)
            .map_err(io("create"))?;
        io::copy(entry, &mut f).map_err(io("write"))?;
        std::os::unix::fs::fchown(&f, Some(uid(header)), Some(gid(header))).map_err(io("chown"))?;
        f.set_permissions(fs::Permissions::from_mode(mode(header)))
            .map_err(io("chmod"))?;
        self.xattrs(entry, target, name)?;
        f.set_times(file_times(header.mtime().unwrap_or(0)))
            .map_err(io("set mtime"))
    }

    fn symlink<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        header: &tar::Header,
        name: &str,
    ) -> Result<(), UnpackError> {
        let io = |op| io_err(name, op);
        let link = entry.link_name().map_err(UnpackError::Archive)?;
        let link = link
            .ok_or_else(|| unsafe_entry(name, "symlink without target"))?
            .into_owned();
        remove_nofollow(target).map_err(io("replace"))?;
        std::os::unix::fs::symlink(&*link, target).map_err(io("symlink"))?;
        std::os::unix::fs::lchown(target, Some(uid(header)), Some(gid(header)))
            .map_err(io("chown"))?;
        self.xattrs(entry, target, name)?;
        set_times_nofollow(target, header.mtime().unwrap_or(0)).map_err(io("set mtime"))
    }

    /// A hard link to an entry already in the tree (never a directory, never outside it).
    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        name: &str,
    ) -> Result<(), UnpackError> {
        let io = |op| io_err(name, op);
        let link = entry.link_name().map_err(UnpackError::Archive)?;
        let link = link
            .ok_or_else(|| unsafe_entry(name, "hardlink without target"))?
            .into_owned();
        let mut lcomps =
            clean(&link).map_err(|r| unsafe_entry(name, &format!("hardlink target {r}")))?;
        let llast = lcomps
            .pop()
            .ok_or_else(|| unsafe_entry(name, "hardlink to the root"))?;
        let (ldir, _) = self
            .resolve_dir(&lcomps, false, name)?
            .ok_or_else(|| unsafe_entry(name, "hardlink target does not exist"))?;
        let source = ldir.join(&llast);
        match fs::symlink_metadata(&source) {
            Ok(m) if m.is_dir() => return Err(unsafe_entry(name, "hardlink to a directory")),
            Ok(_) => {}
            Err(_) => return Err(unsafe_entry(name, "hardlink target does not exist")),
        }
        if source != target {
            remove_nofollow(target).map_err(io("replace"))?;
            // link(2) does not follow a symlink named by `source`.
            fs::hard_link(&source, target).map_err(io("hardlink"))?;
        }
        Ok(())
    }

    fn fifo<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        header: &tar::Header,
        name: &str,
    ) -> Result<(), UnpackError> {
        let io = |op| io_err(name, op);
        remove_nofollow(target).map_err(io("replace"))?;
        mknod(target, libc::S_IFIFO | 0o600, 0).map_err(io("mknod"))?;
        std::os::unix::fs::lchown(target, Some(uid(header)), Some(gid(header)))
            .map_err(io("chown"))?;
        // We just created `target` as a device or fifo (not a symlink) in our private tree.
        fs::set_permissions(target, fs::Permissions::from_mode(mode(header)))
            .map_err(io("chmod"))?;
        self.xattrs(entry, target, name)?;
        set_times_nofollow(target, header.mtime().unwrap_or(0)).map_err(io("set mtime"))
    }

    /// Records `rel` and its ancestors as written by this layer.
    fn mark(&mut self, rel: &Path) {
        for a in rel.ancestors() {
            if a.as_os_str().is_empty() || !self.written.insert(a.to_path_buf()) {
                break;
            }
        }
    }

    /// Resolves the directory `comps` inside the rootfs, following symlinks as if the rootfs were
    /// `/`. Missing directories are created (mode 0755) if `create`, else the result is None.
    /// Returns the absolute path and the rootfs-relative real path; both contain no symlinks.
    fn resolve_dir(
        &mut self,
        comps: &[OsString],
        create: bool,
        name: &str,
    ) -> Result<Option<(PathBuf, PathBuf)>, UnpackError> {
        let mut resolved = PathBuf::new();
        let mut pending: Vec<OsString> = comps.iter().rev().cloned().collect(); // a stack
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                resolved.pop(); // clamps at the rootfs: `resolved` only holds real directories
                continue;
            }
            let candidate = resolved.join(&c);
            let abs = self.root.join(&candidate);
            match fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => resolved = candidate,
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(unsafe_entry(name, "too many levels of symbolic links"));
                    }
                    let target = fs::read_link(&abs).map_err(|source| UnpackError::Io {
                        entry: name.to_string(),
                        op: "readlink",
                        source,
                    })?;
                    for comp in target.components().rev() {
                        match comp {
                            Component::Normal(s) => pending.push(s.to_os_string()),
                            Component::ParentDir => pending.push("..".into()),
                            Component::CurDir | Component::Prefix(_) => {}
                            Component::RootDir => {}
                        }
                    }
                    if target.is_absolute() {
                        resolved = PathBuf::new();
                    }
                }
                Ok(_) => return Err(unsafe_entry(name, "a parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(None);
                    }
                    fs::create_dir(&abs)
                        .and_then(|_| fs::set_permissions(&abs, fs::Permissions::from_mode(0o755)))
                        .map_err(|source| UnpackError::Io {
                            entry: name.to_string(),
                            op: "mkdir parent",
                            source,
                        })?;
                    self.mark(&candidate);
                    resolved = candidate;
                }
                Err(source) => {
                    return Err(UnpackError::Io {
                        entry: name.to_string(),
                        op: "lstat",
                        source,
                    })
                }
            }
        }
        Ok(Some((self.root.join(&resolved), resolved)))
    }

    /// Removes everything under `dir` that this layer did not write.
    fn opaque(&self, dir: &Path, rel: &Path) -> io::Result<()> {
        for child in fs::read_dir(dir)? {
            let child = child?;
            let child_rel = rel.join(child.file_name());
            if self.written.contains(&child_rel) {
                if child.file_type()?.is_dir() {
                    self.opaque(&child.path(), &child_rel)?;
                }
            } else {
                remove_nofollow(&child.path())?;
            }
        }
        Ok(())
    }

    /// Owner, mode and xattrs of a directory (through an O_NOFOLLOW fd).
    fn metadata<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        name: &str,
    ) -> Result<(), UnpackError> {
        let h = entry.header();
        let io = |op| {
            move |source| UnpackError::Io {
                entry: name.to_string(),
                op,
                source,
            }
        };
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(io("open directory"))?;
        std::os::unix::fs::fchown(&f, Some(uid(h)), Some(gid(h))).map_err(io("chown"))?;
        f.set_permissions(fs::Permissions::from_mode(mode(h)))
            .map_err(io("chmod"))?;
        self.xattrs(entry, path, name)
    }

    /// `SCHILY.xattr.*` PAX records, set without following symlinks. Failures are logged only
    /// (filesystems differ in which namespaces they accept).
    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        name: &str,
    ) -> Result<(), UnpackError> {
        let Ok(Some(exts)) = entry.pax_extensions() else {
            return Ok(());
        };
        for ext in exts {
            let ext = ext.map_err(UnpackError::Archive)?;
            let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            if let Err(e) = lsetxattr(path, key, ext.value_bytes()) {
                tracing::warn!(entry = name, xattr = %String::from_utf8_lossy(key), error = %e, "cannot set xattr");
            }
        }
        Ok(())
    }
}

/// The error of an I/O operation `op` on the entry `name` (allocating only on failure).
fn io_err<'a>(name: &'a str, op: &'static str) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        entry: name.to_string(),
        op,
        source,
    }
}

fn unsafe_entry(name: &str, reason: &str) -> UnpackError {
    UnpackError::Unsafe {
        entry: name.to_string(),
        reason: reason.to_string(),
    }
}

/// Splits an archive path into normal components; leading `/` and `.` are dropped, `..` refused.
fn clean(path: &Path) -> Result<Vec<OsString>, &'static str> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_os_string()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("path has a '..' component"),
            Component::Prefix(_) => return Err("path has a prefix"),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "unpack_overlay_tests.rs"]
mod overlay_tests;
