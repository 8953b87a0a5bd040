//! Removes the log directories of pods that no longer exist, as the kubelet's container
//! garbage collection does (`evictPodLogsDirectories`). A pod's worker removes its logs a
//! while after the pod ends; an agent killed in that window, or a pod removed while no
//! agent ran, would otherwise leave them on the host forever.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::status::StatusStore;

/// Runs for the agent's life: a sweep once the sources are synced (so every pod that should
/// run is known), then every `delay` (the time logs stay readable), at most every minute.
pub async fn sweep_loop(logs_root: PathBuf, status: StatusStore, delay: Duration) {
    let every = delay.clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        if !status.synced() {
            continue;
        }
        let (root, st) = (logs_root.clone(), status.clone());
        let removed =
            tokio::task::spawn_blocking(move || sweep(&root, |uid| st.has_pod(uid), delay))
                .await
                .unwrap_or_default();
        if removed > 0 {
            tracing::info!(
                removed,
                "removed the log directories of pods that no longer exist"
            );
        }
    }
}

/// Removes every `<ns>_<name>_<uid>` directory under `root` whose pod is not `known` and
/// that did not change for `older_than`; returns how many went.
pub fn sweep(root: &Path, known: impl Fn(&str) -> bool, older_than: Duration) -> usize {
    let Ok(rd) = std::fs::read_dir(root) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(uid) = pod_uid(&name) else { continue };
        let Ok(meta) = e.metadata() else { continue };
        let idle = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|d| d >= older_than);
        if !meta.is_dir() || !idle || known(uid) {
            continue;
        }
        match crate::state::remove_dir_all(&e.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(error = %e, "removing the logs of a pod that no longer exists")
            }
        }
    }
    removed
}

/// The UID in a pod log directory's name, `<namespace>_<name>_<uid>`; namespaces and pod
/// names cannot hold `_`, so anything else is not ours and is left alone.
fn pod_uid(dir_name: &str) -> Option<&str> {
    let mut parts = dir_name.split('_');
    let (_ns, _name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none()
        && !uid.is_empty()
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_idle_logs_of_unknown_pods() {
        let root = tempfile::tempdir().unwrap();
        for d in [
            "default_gone-n1_aaa",
            "default_live-n1_bbb",
            "kube-system_gone-n1_ccc",
            "not-a-pod-dir",
            "a_b_c_d",
        ] {
            std::fs::create_dir_all(root.path().join(d).join("c")).unwrap();
        }
        std::fs::write(root.path().join("default_file-n1_ddd"), b"x").unwrap();
        let known = |uid: &str| uid == "bbb";
        // Nothing is old enough yet.
        assert_eq!(sweep(root.path(), known, Duration::from_secs(3600)), 0);
        assert_eq!(sweep(root.path(), known, Duration::ZERO), 2);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "a_b_c_d",
                "default_file-n1_ddd",
                "default_live-n1_bbb",
                "not-a-pod-dir"
            ]
        );
    }
}
