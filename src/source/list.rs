//! One full listing of the manifest path, with the memory that makes repeated listings cheap and
//! quiet: per-file last good pod, errors already reported, first-seen times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::manifest_file::FileState;
use super::security::{self, InsecureError};
use super::{ProblemKind, Snapshot, SourceProblem};
use crate::manifest::{ConfigObject, ObjectKind, StaticPod};

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

pub struct Lister {
    root: PathBuf,
    node: String,
    strict: bool,
    files: BTreeMap<PathBuf, FileState>,
    ignored: HashSet<PathBuf>,
    duplicates: HashSet<(PathBuf, String)>,
    seen: HashMap<String, String>,
    root_error: Option<String>,
}

impl Lister {
    pub fn new(root: PathBuf, node: String, strict: bool) -> Self {
        Self {
            root,
            node,
            strict,
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
        let candidates = match self.listable_candidates() {
            Ok(c) => c,
            Err(refused) => return refused,
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
            let state = self.files.entry(path.to_path_buf()).or_default();
            state.refresh(path, &self.node, self.strict);
        }

        let mut problems = Vec::new();
        let (mut pods, pod_files, uids) = self.select(&candidates, &mut problems);
        self.seen.retain(|uid, _| uids.contains(uid));
        super::stamp_seen(&mut self.seen, &mut pods);
        // The stamped version goes back as the file's last good one, shared with the
        // snapshot.
        for (path, pod) in pod_files.into_iter().zip(&pods) {
            if let Some(state) = self.files.get_mut(&path) {
                state.last_good = Some(pod.clone());
            }
        }
        let objects = self.select_objects(&candidates, &mut problems);
        self.file_problems(&candidates, &mut problems);
        problems.sort();
        Some(Snapshot {
            pods,
            objects,
            problems,
        })
    }

    /// The candidate files, or what `list` returns when the path cannot be listed (`None`)
    /// or is refused as insecure (a snapshot with no pods). A change of that state is
    /// logged once.
    fn listable_candidates(&mut self) -> Result<Vec<PathBuf>, Option<Snapshot>> {
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
                return Err(None);
            }
        };
        if let Err(e) = self.check_root() {
            let msg = e.to_string();
            if self.root_error.as_deref() != Some(msg.as_str()) {
                tracing::error!(path = %self.root.display(), error = %msg, "refusing manifest directory; running none of its pods");
                self.root_error = Some(msg.clone());
            }
            return Err(Some(Snapshot {
                pods: Vec::new(),
                objects: Vec::new(),
                problems: vec![SourceProblem {
                    origin: self.root.display().to_string(),
                    kind: ProblemKind::Insecure,
                    message: msg,
                }],
            }));
        }
        Ok(candidates)
    }

    /// The pods to run, in file order: the first file declaring a namespace/name or a uid
    /// wins, later ones are problems (warned about once). Returns the pods (taken out of
    /// their file states, to be put back after stamping), their files and their uids.
    fn select(
        &mut self,
        candidates: &[PathBuf],
        problems: &mut Vec<SourceProblem>,
    ) -> (Vec<Arc<StaticPod>>, Vec<PathBuf>, HashSet<String>) {
        let mut pods = Vec::new();
        let mut pod_files = Vec::new();
        let mut names: HashMap<String, &Path> = HashMap::new();
        let mut uids: HashSet<String> = HashSet::new();
        let mut duplicates = HashSet::new();
        for path in candidates {
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
                problems.push(problem(
                    path,
                    ProblemKind::Duplicate,
                    format!(
                        "pod {full_name} is already declared by {}; not running this one",
                        first.display()
                    ),
                ));
                duplicates.insert(key);
                continue;
            }
            if !uids.insert(pod.uid.clone()) {
                let key = (path.clone(), pod.uid.clone());
                if !self.duplicates.contains(&key) {
                    tracing::warn!(file = %path.display(), uid = %pod.uid, "duplicate pod uid; not running this one");
                }
                problems.push(problem(
                    path,
                    ProblemKind::Duplicate,
                    format!(
                        "pod uid {} is already declared by an earlier file; not running this one",
                        pod.uid
                    ),
                ));
                duplicates.insert(key);
                continue;
            }
            names.insert(full_name, path);
            // Taken rather than shared, so stamping changes it in place instead of copying
            // the whole pod; `list` puts it back after.
            let Some(pod) = self.files.get_mut(path).and_then(|s| s.last_good.take()) else {
                continue;
            };
            pods.push(pod);
            pod_files.push(path.clone());
        }
        self.duplicates = duplicates;
        (pods, pod_files, uids)
    }

    /// The ConfigMaps and Secrets, in file order: the first file declaring a kind,
    /// namespace and name wins, later ones are problems (warned about once).
    fn select_objects(
        &mut self,
        candidates: &[PathBuf],
        problems: &mut Vec<SourceProblem>,
    ) -> Vec<Arc<ConfigObject>> {
        let mut out = Vec::new();
        let mut names: HashMap<(ObjectKind, String), &Path> = HashMap::new();
        let mut duplicates = HashSet::new();
        for path in candidates {
            let Some(obj) = self.files.get(path).and_then(|s| s.last_object.as_ref()) else {
                continue;
            };
            let full_name = obj.full_name();
            let id = format!("{} {full_name}", obj.kind.as_str());
            if let Some(first) = names.get(&(obj.kind, full_name.clone())).copied() {
                let key = (path.clone(), id.clone());
                if !self.duplicates.contains(&key) {
                    tracing::warn!(file = %path.display(), object = %id, first = %first.display(),
                        "duplicate object: an earlier manifest declares the same kind/namespace/name; not using this one");
                }
                problems.push(problem(
                    path,
                    ProblemKind::Duplicate,
                    format!(
                        "{id} is already declared by {}; not using this one",
                        first.display()
                    ),
                ));
                duplicates.insert(key);
                continue;
            }
            names.insert((obj.kind, full_name), path);
            out.push(obj.clone());
        }
        self.duplicates.extend(duplicates);
        out
    }

    /// Each file's error and warnings, and the files ignored by their name.
    fn file_problems(&self, candidates: &[PathBuf], problems: &mut Vec<SourceProblem>) {
        for path in candidates {
            let Some(state) = self.files.get(path) else {
                continue;
            };
            if let Some((kind, error)) = &state.error {
                problems.push(problem(path, *kind, error.clone()));
            }
            for w in &state.warnings {
                problems.push(problem(path, ProblemKind::Warning, w.clone()));
            }
        }
        for path in &self.ignored {
            problems.push(problem(path, ProblemKind::Ignored, "not a manifest by its name (only *.yaml, *.yml and *.json that are not dotfiles are read); never parsed".into()));
        }
    }

    fn check_root(&self) -> Result<(), InsecureError> {
        match std::fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => security::check(&self.root, &meta, "manifest directory"),
            _ => Ok(()),
        }
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
}

fn problem(path: &Path, kind: ProblemKind, message: String) -> SourceProblem {
    SourceProblem {
        origin: path.display().to_string(),
        kind,
        message,
    }
}
