//! What safe updates keep across agent restarts, in `<root-dir>/updates.json`: pinned
//! images, digests rolled back from, each pod's last Ready manifest revision, the
//! revisions held back and the rollbacks to report. Without it, an agent restarted after
//! a rollback would try the broken revision again with nothing to go back to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

/// The file's name under `--root-dir`.
pub const FILE: &str = "updates.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// uid → container → pinned reference.
    #[serde(default)]
    pub pins: BTreeMap<String, BTreeMap<String, String>>,
    /// uid → container → digest rolled back from.
    #[serde(default)]
    pub failed: BTreeMap<String, BTreeMap<String, String>>,
    /// namespace/name → last Ready revision.
    #[serde(default)]
    pub last_good: BTreeMap<String, SavedPod>,
    /// namespace/name → UID held back.
    #[serde(default)]
    pub rolled_back: BTreeMap<String, String>,
    /// namespace/name → (reason, message) of its last rollback, until a revision is Ready.
    #[serde(default)]
    pub reports: BTreeMap<String, (String, String)>,
}

/// A pod revision as the source gave it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPod {
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub pod: Pod,
}

pub fn path(root_dir: &Path) -> PathBuf {
    root_dir.join(FILE)
}

/// The record under `root_dir`; empty when absent or unreadable (logged: the pods then
/// run by the kubelet's rules until they are Ready again).
pub fn load(root_dir: &Path) -> Record {
    let path = path(root_dir);
    match crate::state::read_json(&path) {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "safe updates' record unreadable; starting without it");
            Record::default()
        }
    }
}

pub fn save(root_dir: &Path, record: &Record) {
    if let Err(e) = crate::state::write_json(&path(root_dir), record) {
        tracing::warn!(error = %e, "safe updates' record not written");
    }
}
