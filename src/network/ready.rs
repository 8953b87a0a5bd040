//! Network readiness, as the kubelet's `NetworkReady` runtime condition: the pod network
//! is ready when its config parses and every plugin it names (IPAM plugins included) is
//! in `--cni-bin-dir`. Pods without hostNetwork wait while it is not; an inotify watch on
//! the conf dir and the bin dirs (or, while one does not exist, its nearest existing
//! ancestor) says when to look again, so they start as soon as what was missing appears.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::config::ConfList;

/// Events come in bursts (a package installing a dozen plugins, an editor's temp file
/// and rename): looked at once they have been quiet this long.
const QUIET: Duration = Duration::from_millis(50);
/// Only when inotify cannot be used (no instances or watches left): then the dirs are
/// looked at again this often, and the watch is retried.
const UNWATCHED_RECHECK: Duration = Duration::from_secs(10);

/// Every plugin binary `list` runs: each plugin's `type` and its `ipam.type`.
pub fn binaries(list: &ConfList) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for p in &list.plugins {
        let own = p.get("type").and_then(Value::as_str);
        let ipam = p.pointer("/ipam/type").and_then(Value::as_str);
        for n in own.into_iter().chain(ipam).filter(|n| !n.is_empty()) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names
}

/// The directories to watch for `paths`: each one itself when it is a directory, or
/// its nearest existing ancestor (whose change may be its creation).
fn targets(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let dir = p.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf);
        if let Some(d) = dir.filter(|d| !out.contains(d)) {
            out.push(d);
        }
    }
    out
}

/// Whether an event may change readiness. Reads are not changes: the agent itself opens
/// the config and executes the plugins.
fn is_change(event: &notify::Event) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Bumps `changes` whenever something under `paths` may have changed, until the agent
/// stops. Runs as one of the agent's tasks.
pub async fn watch_dirs(paths: Vec<PathBuf>, changes: Arc<watch::Sender<u64>>) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut armed: Option<(Vec<PathBuf>, notify::RecommendedWatcher)> = None;
    loop {
        let want = targets(&paths);
        if armed.as_ref().is_none_or(|(t, _)| *t != want) {
            armed = arm(&want, tx.clone());
            // Whatever happened while nothing (or something else) was watched.
            changes.send_modify(|g| *g += 1);
        }
        let got = if armed.is_some() {
            rx.recv().await.is_some()
        } else {
            tokio::time::timeout(UNWATCHED_RECHECK, rx.recv())
                .await
                .is_ok()
        };
        if got {
            // Let a burst settle, then look once.
            while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {}
        }
        changes.send_modify(|g| *g += 1);
    }
}

fn arm(
    dirs: &[PathBuf],
    tx: mpsc::Sender<()>,
) -> Option<(Vec<PathBuf>, notify::RecommendedWatcher)> {
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // An error (a queue overflow) may have hidden a change.
        if res.as_ref().map_or(true, is_change) {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, recheck_s = UNWATCHED_RECHECK.as_secs(), "cannot watch the cni dirs");
            return None;
        }
    };
    for d in dirs {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, recheck_s = UNWATCHED_RECHECK.as_secs(), "cannot watch a cni dir");
            return None;
        }
    }
    tracing::debug!(dirs = ?dirs, "watching the cni dirs");
    Some((dirs.to_vec(), watcher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_include_ipam_plugins_once() {
        let list = super::super::config::default_conflist("10.87.0.0/16", |_| true);
        assert_eq!(
            binaries(&list),
            ["bridge", "host-local", "portmap", "firewall"]
        );
        let dup = ConfList::parse(
            br#"{"name":"n","plugins":[{"type":"ptp","ipam":{"type":"host-local"}},{"type":"host-local"}]}"#,
            false,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(binaries(&dup), ["ptp", "host-local"]);
    }

    #[test]
    fn missing_dirs_are_watched_through_their_nearest_ancestor() {
        let base = std::env::temp_dir().join(format!("hostlet-cni-ready-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("bin")).unwrap();
        let t = targets(&[
            base.join("bin"),
            base.join("net.d/deeper"),
            base.join("other"),
        ]);
        assert_eq!(t, [base.join("bin"), base.clone()]);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[tokio::test]
    async fn a_new_file_in_a_watched_dir_is_a_change() {
        let base = std::env::temp_dir().join(format!("hostlet-cni-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let changes = Arc::new(watch::channel(0u64).0);
        let mut rx = changes.subscribe();
        let task = tokio::spawn(watch_dirs(vec![base.join("net.d")], changes.clone()));
        // Armed (the first bump), then the conf dir appears, then a file in it.
        rx.changed().await.unwrap();
        std::fs::create_dir_all(base.join("net.d")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("the dir's creation is noticed")
            .unwrap();
        rx.borrow_and_update();
        // The watch moves to the new dir; a file written in it is noticed.
        tokio::time::sleep(Duration::from_millis(200)).await;
        rx.borrow_and_update();
        std::fs::write(base.join("net.d/10-x.conflist"), "{}").unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("the file is noticed")
            .unwrap();
        task.abort();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
