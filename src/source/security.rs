//! Who may write a manifest decides what runs as root on this host: refuse manifests and
//! manifest directories that anyone but root can write.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: refusing {what} {reason} (mode {mode:04o}, owner uid {uid}): whoever can write it can run containers as root on this host; fix with `chown root {0} && chmod go-w {0}`", path.display(), reason = self.reason())]
pub struct InsecureError {
    pub path: PathBuf,
    /// `manifest` or `manifest directory`.
    pub what: &'static str,
    pub mode: u32,
    pub uid: u32,
}

impl InsecureError {
    fn reason(&self) -> &'static str {
        if self.mode & 0o022 != 0 {
            "writable by group or others"
        } else {
            "not owned by root"
        }
    }
}

/// Refuses `meta` (of `path`) when group or others may write it or when it is owned by anyone
/// but root. The agent's own user is trusted too, so unprivileged unit tests and `validate`
/// behave the same way as root does.
pub fn check(path: &Path, meta: &Metadata, what: &'static str) -> Result<(), InsecureError> {
    let mode = meta.mode() & 0o7777;
    let uid = meta.uid();
    let trusted_owner = uid == 0 || uid == nix::unistd::geteuid().as_raw();
    if mode & 0o022 != 0 || !trusted_owner {
        return Err(InsecureError {
            path: path.to_path_buf(),
            what,
            mode,
            uid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn group_or_world_writable_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, "x").unwrap();
        for (mode, ok) in [(0o600, true), (0o644, true), (0o664, false), (0o646, false)] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            let meta = std::fs::metadata(&f).unwrap();
            let r = check(&f, &meta, "manifest");
            assert_eq!(r.is_ok(), ok, "{mode:o}");
            if let Err(e) = r {
                let msg = e.to_string();
                assert!(msg.contains(&f.display().to_string()), "{msg}");
                assert!(msg.contains(&format!("mode {mode:04o}")), "{msg}");
                assert!(msg.contains("owner uid"), "{msg}");
                assert!(msg.contains("writable by group or others"), "{msg}");
            }
        }
    }

    #[test]
    fn foreign_owner_is_refused() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test must run as root: it gives a file away with chown"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, "x").unwrap();
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let e = check(&f, &std::fs::metadata(&f).unwrap(), "manifest").unwrap_err();
        assert!(e.to_string().contains("not owned by root"), "{e}");
        assert!(e.to_string().contains("owner uid 65534"), "{e}");
    }
}
