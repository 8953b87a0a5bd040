//! One layer's entries applied to a rootfs: paths resolved inside it, whiteouts, links,
//! metadata (the rules and the safety argument are in the parent module's documentation).

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::super::fsutil::{
    file_times, gid, lsetxattr, mknod, mode, remove_nofollow, set_times_nofollow, uid,
};
use super::{UnpackError, MAX_SYMLINKS, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

pub(super) struct Layer<'a> {
    pub(super) root: &'a Path,
    pub(super) overlay: bool,
    /// Rootfs-relative real paths written by this layer, with all their ancestors.
    pub(super) written: HashSet<PathBuf>,
    pub(super) dir_times: Vec<(PathBuf, u64)>,
}

impl Layer<'_> {
    pub(super) fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
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
