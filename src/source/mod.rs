//! Manifest sources: they emit complete snapshots of the pods they see and decide nothing.
//!
//! The file source and the URL source each keep their own snapshot; [`merge`] combines them
//! into the single stream of full snapshots the manager reads.

pub mod file;
mod list;
mod manifest_file;
pub mod merge;
pub mod security;
pub mod url;

pub use list::is_manifest_name;
pub use manifest_file::MAX_MANIFEST_SIZE;

use std::sync::Arc;

use crate::manifest::{ConfigObject, StaticPod};

/// Every valid pod one source (or, after [`merge`], every source) currently declares, in
/// sorted file order, duplicates removed; and what is wrong with the rest.
///
/// Pods are shared, not copied: the source's last good version, the manager's desired
/// set, the worker and the status store all hold the same decoded pod (about 12 KB each;
/// copies were a third of the agent's heap at 100 pods, BENCHMARKS.md row 4a).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub pods: Vec<Arc<StaticPod>>,
    /// The ConfigMaps and Secrets pods may use, duplicates removed.
    pub objects: Vec<Arc<ConfigObject>>,
    /// Files or bodies not (or not entirely) applied, for the status API; sorted by origin.
    pub problems: Vec<SourceProblem>,
}

/// Something a source could not apply, or applied with a warning.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceProblem {
    /// The manifest file, the manifest directory or the manifest URL.
    pub origin: String,
    pub kind: ProblemKind,
    /// One line, e.g. `12:7: spec.containers[0].image: required`.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// Syntax or validation error; the last good version (if any) keeps running.
    Invalid,
    /// Writable by group or others, or not owned by root: nothing from it runs.
    Insecure,
    /// Cannot be read or listed, or the URL cannot be fetched; what ran keeps running.
    Unreadable,
    /// Not a manifest by its name (dotfile, other extension, directory): never parsed.
    Ignored,
    /// Declares a namespace/name (or UID) an earlier file or the other source declares.
    Duplicate,
    /// Unknown fields, tolerated without `--strict`; the pod runs.
    Warning,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Insecure => "insecure",
            Self::Unreadable => "unreadable",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Warning => "warning",
        }
    }
}

impl std::fmt::Display for SourceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.origin,
            self.kind.as_str(),
            self.message
        )
    }
}

/// Starts the configured sources and returns the one stream of full snapshots the manager
/// reads: a lone source directly, both through [`merge`] (the file source has priority).
pub fn spawn(
    file: Option<file::FileSource>,
    url: Option<url::UrlSource>,
    tasks: &crate::tasks::Tasks,
) -> tokio::sync::mpsc::Receiver<Snapshot> {
    use tokio::sync::mpsc;
    let (tx, rx) = mpsc::channel(16);
    match (file, url) {
        (Some(f), Some(u)) => {
            let (ftx, frx) = mpsc::channel(16);
            let (utx, urx) = mpsc::channel(16);
            tasks.spawn("file source", f.run(ftx));
            tasks.spawn("url source", u.run(utx));
            tasks.spawn("source merge", merge::run(vec![frx, urx], tx));
        }
        (Some(f), None) => tasks.spawn("file source", f.run(tx)),
        (None, Some(u)) => tasks.spawn("url source", u.run(tx)),
        // Nothing declares pods: the manager stops what an earlier agent left running.
        (None, None) => {
            let _ = tx.try_send(Snapshot::default());
            tasks.spawn("no source", async move { tx.closed().await });
        }
    }
    rx
}

/// Sets `kubernetes.io/config.seen` to the first time each UID was seen (kept in `seen`),
/// so the annotation is stable across re-lists and polls. A pod already stamped with that
/// time is left as it is (and stays shared).
pub(crate) fn stamp_seen(
    seen: &mut std::collections::HashMap<String, String>,
    pods: &mut [Arc<StaticPod>],
) {
    let now = jiff::Timestamp::now().to_string();
    for pod in pods {
        let first = seen.entry(pod.uid.clone()).or_insert_with(|| now.clone());
        let annotations = &pod.pod.metadata.annotations;
        let current = annotations
            .as_ref()
            .and_then(|a| a.get(crate::manifest::CONFIG_SEEN_ANNOTATION));
        if current == Some(first) {
            continue;
        }
        Arc::make_mut(pod)
            .pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                crate::manifest::CONFIG_SEEN_ANNOTATION.to_string(),
                first.clone(),
            );
    }
}
