//! Removes the log directories of pods that no longer exist, as the kubelet's container
//! garbage collection does (`evictPodLogsDirectories`). A pod's worker removes its logs a
//! while after the pod ends; an agent killed in that window, or a pod removed while no
//! agent ran, would otherwise leave them on the host forever.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::status::StatusStore;

/// Runs for the agent's life: once the sources are synced (so every pod that should run is
/// known), a sweep every `delay` (the time logs stay readable), at most every minute.
pub async fn sweep_loop(logs_root: PathBuf, status: StatusStore, delay: Duration) {
    let every = delay.clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut unknown_since = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        if !status.synced() {
            continue;
        }
        let (root, st) = (logs_root.clone(), status.clone());
        let mut seen = std::mem::take(&mut unknown_since);
        let job = tokio::task::spawn_blocking(move || {
            let removed = sweep(
                &root,
                |uid| st.has_pod(uid),
                delay,
                &mut seen,
                Instant::now(),
            );
            (removed, seen)
        });
        let Ok((removed, seen)) = job.await else {
            continue;
        };
        unknown_since = seen;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed the log directories of pods that no longer exist"
            );
        }
    }
}

/// Removes every `<ns>_<name>_<uid>` directory under `root` whose pod has not been `known`
/// for `delay` (as `unknown_since` remembers across sweeps: a pod's logs stay readable for
/// that long after it went, whoever noticed); returns how many went.
pub fn sweep(
    root: &Path,
    known: impl Fn(&str) -> bool,
    delay: Duration,
    unknown_since: &mut HashMap<String, Instant>,
    now: Instant,
) -> usize {
    let Ok(rd) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    let mut still = HashMap::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(uid) = pod_uid(&name) else { continue };
        if !e.file_type().is_ok_and(|t| t.is_dir()) || known(uid) {
            continue;
        }
        let since = unknown_since.get(&name).copied().unwrap_or(now);
        if now.saturating_duration_since(since) < delay {
            still.insert(name, since);
            continue;
        }
        match crate::state::remove_dir_all(&e.path()) {
            Ok(()) => removed += 1,
            Err(err) => {
                tracing::warn!(error = %err, "removing the logs of a pod that no longer exists");
                still.insert(name, since);
            }
        }
    }
    *unknown_since = still;
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
    fn removes_logs_of_pods_unknown_for_the_delay() {
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
        let delay = Duration::from_secs(60);
        let mut since = HashMap::new();
        let t0 = Instant::now();
        // First noticed now: kept for the delay.
        assert_eq!(sweep(root.path(), known, delay, &mut since, t0), 0);
        assert_eq!(since.len(), 2);
        assert_eq!(
            sweep(root.path(), known, delay, &mut since, t0 + delay / 2),
            0
        );
        assert_eq!(sweep(root.path(), known, delay, &mut since, t0 + delay), 2);
        assert!(since.is_empty());
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

    #[test]
    fn a_pod_that_comes_back_starts_its_delay_again() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("default_web-n1_aaa")).unwrap();
        let delay = Duration::from_secs(10);
        let mut since = HashMap::new();
        let t0 = Instant::now();
        sweep(root.path(), |_| false, delay, &mut since, t0);
        sweep(root.path(), |_| true, delay, &mut since, t0 + delay);
        assert_eq!(
            sweep(root.path(), |_| false, delay, &mut since, t0 + delay),
            0
        );
        assert!(root.path().join("default_web-n1_aaa").exists());
    }
}
