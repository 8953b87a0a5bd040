//! Removes the pod cgroups of pods that no longer exist (the kubelet's
//! `cleanupOrphanedPodCgroups`, run from its housekeeping): once the sources are synced,
//! so that every pod that should run is known, and then periodically. What is removed, and
//! what is kept, is `cgroups::orphans`.

use std::sync::Arc;
use std::time::Duration;

use crate::cgroups::{orphans, NodeCgroups};
use crate::status::StatusStore;

/// How often the sweep runs once the agent is synced.
pub const PERIOD: Duration = Duration::from_secs(30);

/// Runs for the agent's life; nothing without a cgroup hierarchy.
pub async fn sweep_loop(nc: Arc<NodeCgroups>, status: StatusStore) {
    if nc.hierarchy().is_none() {
        return;
    }
    while !status.synced() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let (n, st) = (nc.clone(), status.clone());
        let job = tokio::task::spawn_blocking(move || {
            let h = n.hierarchy()?;
            Some(orphans::sweep(h, n.root(), |uid| st.has_pod(uid)))
        });
        if let Ok(Some(swept)) = job.await {
            if !swept.removed.is_empty() {
                tracing::info!(uids = ?swept.removed, "removed the cgroups of pods that no longer exist");
            }
            if !swept.busy.is_empty() {
                tracing::debug!(uids = ?swept.busy, "cgroups of pods that no longer exist still hold processes");
            }
        }
        tokio::time::sleep(PERIOD).await;
    }
}
