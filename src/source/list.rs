//! One full listing of the manifest path, with the memory that makes repeated listings cheap and
//! quiet: per-file last good pod, errors already reported, first-seen times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Snapshot;
use crate::manifest::{self, StaticPod, CONFIG_SEEN_ANNOTATION};

/// Larger files are refused, as by the kubelet (pkg/kubelet/config/file.go).
pub const MAX_MANIFEST_SIZE: u64 = 10 << 20;

/// Whether a directory entry is a manifest candidate by its name alone.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| {
                ["yaml", "yml", "json"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            })
}

#[derive(Default)]
struct FileState {
    /// Digest of the bytes last decoded, so unchanged files are not decoded (or reported) again.
    digest: Option<Vec<u8>>,
    last_good: Option<StaticPod>,
    /// The error last reported for this file; the same error is not logged again.
    error: Option<String>,
}

pub struct Lister {
    root: PathBuf,
    node: String,
    files: BTreeMap<PathBuf, FileState>,
    ignored: HashSet<PathBuf>,
    duplicates: HashSet<(PathBuf, String)>,
    seen: HashMap<String, String>,
    root_error: Option<String>,
}

impl Lister {
    pub fn new(root: PathBuf, node: String) -> Self {
        Self {
            root,
            node,
            files: BTreeMap::new(),
            ignored: HashSet::new(),
            duplicates: HashSet::new(),
            seen: HashMap::new(),
            root_error: None,
        }
    }

    /// Lists and decodes everything; `None` when the path cannot be listed at all (the caller
    /// keeps what it had, as the kubelet does).
    pub fn list(&mut self) -> Option<Snapshot> {
        let candidates = match self.candidates() {
            Ok(c) => {
                if self.root_error.take().is_some() {
                    tracing::info!(path = %self.root.display(), "manifest path can be listed again");
                }
                c
            }
            Err(e) => {
                let msg = e.to_string();
                if self.root_error.as_deref() != Some(msg.as_str()) {
                    tracing::warn!(path = %self.root.display(), error = %msg, "cannot list manifest path");
                    self.root_error = Some(msg);
                }
                return None;
            }
        };

        let current: HashSet<&PathBuf> = candidates.iter().collect();
        self.files.retain(|path, state| {
            let keep = current.contains(path);
            if !keep && state.last_good.is_some() {
                tracing::info!(file = %path.display(), "manifest removed");
            }
            keep
        });
        for path in &candidates {
            self.refresh(path);
        }

        let mut pods = Vec::new();
        let mut names: HashMap<String, &Path> = HashMap::new();
        let mut uids: HashSet<String> = HashSet::new();
        let mut duplicates = HashSet::new();
        for path in &candidates {
            let Some(pod) = self.files.get(path).and_then(|s| s.last_good.as_ref()) else {
                continue;
            };
            let full_name = pod.full_name();
            if let Some(first) = names.get(&full_name).copied() {
                let key = (path.clone(), full_name.clone());
                if !self.duplicates.contains(&key) {
                    tracing::warn!(file = %path.display(), pod = %full_name, first = %first.display(),
                        "duplicate pod: an earlier manifest declares the same namespace/name; not running this one");
                }
                duplicates.insert(key);
                continue;
            }
            if !uids.insert(pod.uid.clone()) {
                let key = (path.clone(), pod.uid.clone());
                if !self.duplicates.contains(&key) {
                    tracing::warn!(file = %path.display(), uid = %pod.uid, "duplicate pod uid; not running this one");
                }
                duplicates.insert(key);
                continue;
            }
            names.insert(full_name, path);
            pods.push(pod.clone());
        }
        self.duplicates = duplicates;

        let now = jiff::Timestamp::now().to_string();
        self.seen.retain(|uid, _| uids.contains(uid));
        for pod in &mut pods {
            let seen = self
                .seen
                .entry(pod.uid.clone())
                .or_insert_with(|| now.clone())
                .clone();
            pod.pod
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(CONFIG_SEEN_ANNOTATION.to_string(), seen);
        }
        Some(Snapshot { pods })
    }

    /// The files to read, in order. A missing path is an empty set.
    fn candidates(&mut self) -> io::Result<Vec<PathBuf>> {
        let meta = match std::fs::metadata(&self.root) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.ignored.clear();
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        if !meta.is_dir() {
            // A single file named on the command line is read whatever its name.
            return Ok(vec![self.root.clone()]);
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            names.push(entry?.file_name());
        }
        names.sort();
        let mut out = Vec::new();
        let mut ignored = HashSet::new();
        for name in names {
            let path = self.root.join(&name);
            let name = name.to_string_lossy();
            let reason = if name.starts_with('.') {
                Some("dotfile")
            } else if !is_manifest_name(&name) {
                Some("not a .yaml, .yml or .json file")
            } else if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                Some("directory (manifest directories are not recursed)")
            } else {
                None
            };
            match reason {
                Some(reason) => {
                    if !self.ignored.contains(&path) {
                        tracing::info!(file = %path.display(), reason, "ignoring file in manifest directory");
                    }
                    ignored.insert(path);
                }
                None => out.push(path),
            }
        }
        self.ignored = ignored;
        Ok(out)
    }

    fn refresh(&mut self, path: &Path) {
        let state = self.files.entry(path.to_path_buf()).or_default();
        let result = match read_manifest(path) {
            Ok(bytes) => {
                let digest = Sha256::digest(&bytes).to_vec();
                if state.digest.as_ref() == Some(&digest) {
                    return;
                }
                state.digest = Some(digest);
                manifest::decode(path, &bytes, &self.node).map_err(|e| e.to_string())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Removed since the listing, or a dangling symlink: the manifest is gone.
                state.digest = None;
                state.last_good = None;
                Err(format!("{}: {e}", path.display()))
            }
            Err(e) => {
                state.digest = None;
                Err(format!("{}: {e}", path.display()))
            }
        };
        report(path, state, result);
    }
}

/// Records the outcome of reading one file, logging only what is new.
fn report(path: &Path, state: &mut FileState, result: Result<StaticPod, String>) {
    match result {
        Ok(pod) => {
            if state.error.take().is_some() {
                tracing::info!(file = %path.display(), pod = %pod.full_name(), "manifest is valid again");
            }
            state.last_good = Some(pod);
        }
        Err(error) => {
            if state.error.as_deref() != Some(error.as_str()) {
                let kept = state.last_good.as_ref().map(|p| p.uid.clone());
                tracing::warn!(file = %path.display(), error = %error, kept_last_good = ?kept, "invalid manifest");
                state.error = Some(error);
            }
        }
    }
}

fn read_manifest(path: &Path) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    // Read one byte past the cap so a file growing after a stat is still caught.
    file.take(MAX_MANIFEST_SIZE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(io::Error::other("manifest is larger than 10 MiB"));
    }
    Ok(bytes)
}
