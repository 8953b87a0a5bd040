//! The `--pod-manifest-path` source: inotify (via `notify`) plus a periodic full re-list.
//!
//! Every event only triggers a full re-list: the listing is the single source of truth, so a
//! missed or reordered event can delay a change by at most `period`, never lose it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

use super::list::{is_manifest_name, Lister};
use super::Snapshot;

/// The first event after a quiet spell is listed at once (write-to-snapshot latency matters:
/// a manifest renamed into place is one event); events following within this are a burst
/// (an editor's write, rename, chmod), listed once more after they stop for this long.
const QUIET: Duration = Duration::from_millis(20);
/// Upper bound on that wait under a constant stream of events.
const MAX_COALESCE: Duration = Duration::from_millis(200);
const WATCH_RETRY_MIN: Duration = Duration::from_secs(1);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(20);

pub struct FileSource {
    pub path: PathBuf,
    pub node: String,
    pub period: Duration,
    /// Unknown fields are errors (`--strict`), not warnings.
    pub strict: bool,
}

impl FileSource {
    /// Runs until `tx` is closed; sends a snapshot at start and whenever the set of pods changes.
    pub async fn run(self, tx: mpsc::Sender<Snapshot>) {
        // Capacity 1 and try_send: events arriving while one is pending coalesce for free.
        let (event_tx, mut events) = mpsc::channel::<()>(1);
        let mut watch = Watch::new(self.path.clone(), event_tx);
        watch.arm();
        let lister = Arc::new(Mutex::new(Lister::new(
            self.path.clone(),
            self.node.to_lowercase(),
            self.strict,
        )));
        let mut last_sent: Option<Snapshot> = None;
        let mut last_event: Option<Instant> = None;

        loop {
            let snapshot = list(&lister).await;
            let changed = match (&snapshot, &last_sent) {
                (Some(s), Some(last)) => s != last,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if changed {
                let s = snapshot.unwrap_or_default();
                tracing::debug!(path = %self.path.display(), pods = s.pods.len(), "manifest snapshot");
                if tx.send(s.clone()).await.is_err() {
                    return;
                }
                last_sent = Some(s);
            }

            // The directory may have appeared, vanished or been replaced since the watch was set.
            let mut relist_now = watch.is_stale() && watch.arm();
            let next_relist = Instant::now() + self.period;
            while !relist_now {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = sleep_until(next_relist) => break,
                    Some(()) = events.recv() => {
                        if last_event.is_some_and(|t| t.elapsed() < QUIET) {
                            coalesce(&mut events).await;
                        }
                        last_event = Some(Instant::now());
                        relist_now = true;
                    }
                    // Files may have been written before the watch existed: re-list once armed.
                    _ = sleep_until(watch.retry_at), if !watch.is_armed() => relist_now = watch.arm(),
                }
            }
        }
    }
}

/// One listing of `path` (for the CLI): everything it declares now.
pub fn list_once(path: &Path, node: &str) -> Snapshot {
    Lister::new(path.to_path_buf(), node.to_lowercase(), false)
        .list()
        .unwrap_or_default()
}

async fn list(lister: &Arc<Mutex<Lister>>) -> Option<Snapshot> {
    let lister = Arc::clone(lister);
    // Reading and decoding up to 10 MiB per file is blocking work.
    let job = tokio::task::spawn_blocking(move || {
        lister
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .list()
    });
    match job.await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            tracing::error!(error = %e, "manifest listing failed");
            None
        }
    }
}

async fn coalesce(events: &mut mpsc::Receiver<()>) {
    let deadline = Instant::now() + MAX_COALESCE;
    loop {
        tokio::select! {
            _ = sleep(QUIET) => return,
            _ = sleep_until(deadline) => return,
            e = events.recv() => if e.is_none() { return },
        }
    }
}

/// The inotify watch: on the manifest directory, or on the parent of a single file or of a
/// directory that does not exist yet (so its creation is noticed without waiting for a re-list).
struct Watch {
    root: PathBuf,
    events: mpsc::Sender<()>,
    watcher: Option<notify::RecommendedWatcher>,
    /// The directory watched and its (dev, inode), to notice it being removed or replaced.
    target: Option<(PathBuf, (u64, u64))>,
    retry_at: Instant,
    backoff: Duration,
}

impl Watch {
    fn new(root: PathBuf, events: mpsc::Sender<()>) -> Self {
        Self {
            root,
            events,
            watcher: None,
            target: None,
            retry_at: Instant::now(),
            backoff: WATCH_RETRY_MIN,
        }
    }

    fn is_armed(&self) -> bool {
        self.watcher.is_some()
    }

    /// The directory to watch now, and its identity.
    fn desired(&self) -> Option<(PathBuf, (u64, u64))> {
        let dir = if self.root.is_dir() {
            self.root.clone()
        } else {
            self.root.parent()?.to_path_buf()
        };
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let meta = std::fs::metadata(&dir).ok()?;
        meta.is_dir().then(|| (dir, (meta.dev(), meta.ino())))
    }

    fn is_stale(&self) -> bool {
        self.is_armed() && self.desired() != self.target
    }

    /// (Re)creates the watch; on failure schedules a retry with backoff. True when armed.
    fn arm(&mut self) -> bool {
        self.watcher = None;
        self.target = None;
        match self.try_arm() {
            Ok(()) => {
                self.backoff = WATCH_RETRY_MIN;
                true
            }
            Err(e) => {
                tracing::debug!(path = %self.root.display(), error = %e, retry_in = ?self.backoff,
                    "cannot watch manifest path; re-listing periodically");
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(WATCH_RETRY_MAX);
                false
            }
        }
    }

    fn try_arm(&mut self) -> Result<(), WatchError> {
        let (dir, id) = self.desired().ok_or(WatchError::NoDirectory)?;
        let watching_root = dir == self.root;
        let root = self.root.clone();
        let events = self.events.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let relevant = match &res {
                Ok(event) => is_relevant(event, &root, watching_root),
                // Overflow or a backend error: only a re-list can tell what changed.
                Err(_) => true,
            };
            if relevant {
                let _ = events.try_send(());
            }
        })
        .map_err(WatchError::Notify)?;
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            return Err(WatchError::Watch { dir, error: e });
        }
        tracing::debug!(dir = %dir.display(), "watching manifest path");
        self.watcher = Some(watcher);
        self.target = Some((dir, id));
        Ok(())
    }
}

/// Why the manifest path cannot be watched (it is then re-listed periodically).
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error("no existing directory to watch")]
    NoDirectory,
    #[error("{0}")]
    Notify(notify::Error),
    #[error("{}: {error}", dir.display())]
    Watch { dir: PathBuf, error: notify::Error },
}

fn is_relevant(event: &notify::Event, root: &Path, watching_root: bool) -> bool {
    // Our own re-list opens every file; reacting to that would loop forever.
    if let EventKind::Access(kind) = event.kind {
        if kind != AccessKind::Close(AccessMode::Write) {
            return false;
        }
    }
    if event.paths.is_empty() || event.need_rescan() {
        return true;
    }
    event.paths.iter().any(|p| {
        if watching_root {
            p == root
                || p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_manifest_name)
        } else {
            // Only the root's parent is watched, non-recursively: its name is enough.
            p == root || (p.file_name().is_some() && p.file_name() == root.file_name())
        }
    })
}

#[cfg(test)]
mod tests;
