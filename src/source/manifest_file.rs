//! One manifest file: read safely (owner, mode, size), decoded when its bytes changed, checked
//! as a ConfigMap or Secret must be, and remembered (last good version, error reported once).

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::security::{self, InsecureError};
use super::ProblemKind;
use crate::manifest::{self, ConfigObject, Manifest, Origin, StaticPod};

/// Larger files are refused, as by the kubelet (pkg/kubelet/config/file.go).
pub const MAX_MANIFEST_SIZE: u64 = 10 << 20;

#[derive(Default)]
pub(super) struct FileState {
    /// Digest of the bytes last decoded, so unchanged files are not decoded (or reported) again.
    pub digest: Option<Vec<u8>>,
    pub last_good: Option<Arc<StaticPod>>,
    /// The last good ConfigMap or Secret, when the file declares one instead of a pod.
    pub last_object: Option<Arc<ConfigObject>>,
    /// The error last reported for this file; the same error is not logged again.
    pub error: Option<(ProblemKind, String)>,
    /// Unknown fields of the last good version, as `line:col: field: message`.
    pub warnings: Vec<String>,
}

impl FileState {
    /// Reads `path` again; decodes and checks it only when its bytes or mode changed.
    pub fn refresh(&mut self, path: &Path, node: &str, strict: bool) {
        let state = self;
        let result = match read_manifest(path) {
            Ok((bytes, mode)) => {
                // The mode too: a Secret's file made private is read again.
                let mut hasher = Sha256::new();
                hasher.update(&bytes);
                hasher.update(mode.to_le_bytes());
                let digest = hasher.finalize().to_vec();
                if state.digest.as_ref() == Some(&digest) {
                    return;
                }
                state.digest = Some(digest);
                let origin = Origin::File(path.to_path_buf());
                match manifest::decode_manifest(&origin, &bytes, node, strict) {
                    Ok(m) => {
                        let text = String::from_utf8_lossy(&bytes);
                        let (good, warnings) = match m {
                            Manifest::Pod(d) => (Good::Pod(Box::new(d.pod)), d.warnings),
                            Manifest::Object(d) => (Good::Object(d.object), d.warnings),
                        };
                        let warnings: Vec<String> = warnings
                            .iter()
                            .map(|w| manifest::Diagnostic::for_field(&text, w).to_string())
                            .collect();
                        for w in &warnings {
                            tracing::warn!(file = %path.display(), warning = %w, "unknown field in manifest (an error with --strict)");
                        }
                        state.warnings = warnings;
                        check_object(path, mode, good, state)
                    }
                    Err(e) => {
                        let located: Vec<String> = e
                            .diagnostics(&bytes)
                            .iter()
                            .map(|d| format!("{}:{d}", path.display()))
                            .collect();
                        Err((ProblemKind::Invalid, located.join("; ")))
                    }
                }
            }
            Err(ReadError::Insecure(e)) => {
                // Not even the last good version: someone else may have written it.
                state.forget();
                Err((ProblemKind::Insecure, e.to_string()))
            }
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                // Removed since the listing, or a dangling symlink: the manifest is gone.
                state.forget();
                Err((ProblemKind::Unreadable, format!("{}: {e}", path.display())))
            }
            Err(ReadError::Io(e)) => {
                state.digest = None;
                Err((ProblemKind::Unreadable, format!("{}: {e}", path.display())))
            }
        };
        report(path, state, result);
    }

    fn forget(&mut self) {
        self.digest = None;
        self.last_good = None;
        self.last_object = None;
        self.warnings.clear();
    }
}

/// What a file validly declares.
enum Good {
    Pod(Box<StaticPod>),
    Object(ConfigObject),
}

/// The rules a decoded object meets beyond its own content: a Secret's file is readable
/// by its owner only; an immutable object keeps its content (its last good version stays).
fn check_object(
    path: &Path,
    mode: u32,
    good: Good,
    state: &mut FileState,
) -> Result<Good, (ProblemKind, String)> {
    let Good::Object(obj) = &good else {
        return Ok(good);
    };
    if obj.is_secret() && mode & 0o077 != 0 {
        state.last_object = None;
        state.last_good = None;
        return Err((
            ProblemKind::Insecure,
            format!(
                "{}: refusing Secret {} readable or writable by group or others (mode {:04o}): fix with `chmod 600 {}`",
                path.display(),
                obj.full_name(),
                mode,
                path.display()
            ),
        ));
    }
    if let Some(old) = &state.last_object {
        let same_object = old.kind == obj.kind && old.full_name() == obj.full_name();
        if same_object && old.immutable && !old.same_content(obj) {
            return Err((
                ProblemKind::Invalid,
                format!(
                    "{}: {} {} is immutable: change refused, the last good version stays (remove the file, then add the new version)",
                    path.display(),
                    obj.kind.as_str(),
                    obj.full_name()
                ),
            ));
        }
    }
    Ok(good)
}

/// Records the outcome of reading one file, logging only what is new.
fn report(path: &Path, state: &mut FileState, result: Result<Good, (ProblemKind, String)>) {
    match result {
        Ok(Good::Pod(pod)) => {
            if state.error.take().is_some() {
                tracing::info!(file = %path.display(), pod = %pod.full_name(), "manifest is valid again");
            }
            state.last_object = None;
            state.last_good = Some(Arc::new(*pod));
        }
        Ok(Good::Object(obj)) => {
            if state.error.take().is_some() {
                tracing::info!(file = %path.display(), object = %obj.full_name(), "manifest is valid again");
            }
            state.last_good = None;
            state.last_object = Some(Arc::new(obj));
        }
        Err(error) => {
            if state.error.as_ref() != Some(&error) {
                let kept = state.last_good.as_ref().map(|p| p.uid.clone());
                if error.0 == ProblemKind::Insecure {
                    tracing::error!(file = %path.display(), error = %error.1, "refusing manifest; its pod is not run");
                } else {
                    tracing::warn!(file = %path.display(), error = %error.1, kept_last_good = ?kept, "invalid manifest");
                }
                state.error = Some(error);
            }
        }
    }
}

enum ReadError {
    Io(io::Error),
    Insecure(InsecureError),
}

/// The file's bytes and its permission bits.
fn read_manifest(path: &Path) -> Result<(Vec<u8>, u32), ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    // fstat of the open file: what is checked is what is read (a symlink's target).
    let meta = file.metadata().map_err(ReadError::Io)?;
    security::check(path, &meta, "manifest").map_err(ReadError::Insecure)?;
    let mut bytes = Vec::new();
    // Read one byte past the cap so a file growing after a stat is still caught.
    file.take(MAX_MANIFEST_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(ReadError::Io(io::Error::other(
            "manifest is larger than 10 MiB",
        )));
    }
    Ok((bytes, std::os::unix::fs::MetadataExt::mode(&meta) & 0o7777))
}
