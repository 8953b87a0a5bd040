//! Eviction of a pod whose disk emptyDir grows past its `sizeLimit`, as the kubelet's
//! eviction manager does it (pkg/kubelet/eviction/eviction_manager.go
//! `emptyDirLimitEviction`): usage is measured every housekeeping interval; a volume
//! strictly over its limit gets the pod killed with the shortest grace period, phase
//! `Failed`, reason `Evicted` and the message "Usage of EmptyDir volume %q exceeds the
//! limit %q. ".
//!
//! **hostlet:** the kubelet never evicts static pods (`evictPod` refuses every pod
//! `IsCriticalPod` calls critical, which includes all static pods), so `sizeLimit` on a
//! disk emptyDir of a static pod is not enforced there. hostlet enforces it. The evicted
//! pod stays `Failed`, without restarts, until its manifest changes (a new UID) or goes
//! away; a marker in the pod directory keeps it so across agent restarts.
//!
//! The node stops pods on its own the same way (node-pressure eviction, node shutdown:
//! [`NodeKills`]): the pod is reported with the kill's reason and message, its containers
//! get the kill's grace period, what it held on the host is freed, and it waits, without
//! a marker, until the manager restarts it or its manifest goes.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

pub use super::deps::Evicted;
use super::deps::{stopped, Deps, Kill, NodeKills};
use super::host_resources;
use super::services::{Services, StatusSink};
use super::states::PodLife;
use crate::manifest::quantity::parse_memory_bytes;
use crate::manifest::StaticPod;
use crate::state;

/// The pod status reason of an eviction (eviction.Reason).
pub const REASON: &str = "Evicted";
/// The record of an eviction in the pod directory: its message.
const MARKER: &str = "evicted";

/// A disk emptyDir with a `sizeLimit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyDirLimit {
    pub name: String,
    pub path: PathBuf,
    pub limit: u64,
    /// The limit as the manifest wrote it, for the message.
    pub limit_text: String,
}

/// The disk emptyDirs of `pod` with a positive `sizeLimit`, in spec order. `medium:
/// Memory` volumes are left out: their tmpfs is already that size.
pub fn limits(pod: &Pod, volumes: &BTreeMap<String, PathBuf>) -> Vec<EmptyDirLimit> {
    let spec_volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    spec_volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let ed = v.empty_dir.as_ref()?;
            if ed.medium.as_deref() == Some("Memory") {
                return None;
            }
            let q = ed.size_limit.as_ref()?;
            let limit = parse_memory_bytes(q).ok().filter(|l| *l > 0)?;
            Some(EmptyDirLimit {
                name: v.name.clone(),
                path: volumes.get(&v.name)?.clone(),
                limit: limit as u64,
                limit_text: q.0.clone(),
            })
        })
        .collect()
}

/// Resolves with the kill of `uid` once the node sets one.
async fn node_kill(mut kills: watch::Receiver<BTreeMap<String, Kill>>, uid: &str) -> Kill {
    loop {
        if let Some(k) = kills.borrow_and_update().get(uid) {
            return k.clone();
        }
        if kills.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The kubelet's message (emptyDirMessageFmt, trailing space included).
pub fn message(volume: &str, limit: &str) -> String {
    format!("Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ")
}

/// Bytes allocated under `root`, as `du -sx` counts them: allocated blocks (not file
/// sizes, so sparse files count what they use), every hard-linked inode once, symlinks
/// not followed, nothing on another filesystem. Entries that vanish meanwhile are skipped.
pub fn disk_usage(root: &Path) -> std::io::Result<u64> {
    let top = std::fs::symlink_metadata(root)?;
    let dev = top.dev();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut total = top.blocks() * 512;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.dev() != dev {
                continue;
            }
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// Blocking: the message of the first volume (spec order) over its limit, if any.
pub fn exceeded(limits: &[EmptyDirLimit]) -> Option<String> {
    for l in limits {
        match disk_usage(&l.path) {
            Ok(used) if used > l.limit => {
                tracing::debug!(volume = %l.name, used, limit = l.limit, "emptyDir over its sizeLimit");
                return Some(message(&l.name, &l.limit_text));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(volume = %l.name, error = %e, "measuring emptyDir usage")
            }
        }
    }
    None
}

/// Watches the pod's disk emptyDirs. Returns the stop flag for its containers (set when
/// the pod is stopped or evicted) and the eviction message once there is one.
pub(super) fn guard<St: StatusSink>(
    pod: &StaticPod,
    volumes: &BTreeMap<String, PathBuf>,
    interval: std::time::Duration,
    life: PodLife<St>,
    mut stop: watch::Receiver<bool>,
    kills: &NodeKills,
) -> (watch::Receiver<bool>, watch::Receiver<Option<Evicted>>) {
    let (run_tx, run_rx) = watch::channel(*stop.borrow());
    let (evicted_tx, evicted_rx) = watch::channel(None);
    let limits = limits(&pod.pod, volumes);
    let (kills, uid) = (kills.subscribe(), pod.uid.clone());
    tokio::spawn(async move {
        let over_limit = async {
            if limits.is_empty() {
                return std::future::pending::<String>().await;
            }
            loop {
                tokio::time::sleep(interval).await;
                let l = limits.clone();
                if let Ok(Some(m)) = tokio::task::spawn_blocking(move || exceeded(&l)).await {
                    return m;
                }
            }
        };
        tokio::select! {
            _ = stopped(&mut stop) => {}
            message = over_limit => {
                tracing::warn!(reason = REASON, message = %message.trim_end(), "evicting pod");
                life.evicted(REASON, &message);
                let _ = evicted_tx.send(Some(Evicted {
                    message,
                    grace: super::rules::MIN_GRACE,
                    persist: true,
                }));
            }
            kill = node_kill(kills, &uid) => {
                tracing::warn!(reason = %kill.reason, why = %kill.message.trim_end(), grace_s = kill.grace.as_secs(), "the node stops the pod");
                life.evicted(&kill.reason, &kill.message);
                let _ = evicted_tx.send(Some(Evicted {
                    message: kill.message,
                    grace: kill.grace,
                    persist: false,
                }));
            }
        }
        let _ = run_tx.send(true);
    });
    (run_rx, evicted_rx)
}

/// After an eviction stopped the containers: frees what the pod held on the host (its
/// cgroup, sandbox and volume data), records the eviction when it persists, and waits for
/// the pod to be stopped (its manifest changed or went away, or the node restarts it).
pub(super) async fn hold<S: Services>(
    pod: &StaticPod,
    pod_dir: &Path,
    deps: &Arc<Deps<S>>,
    evicted: &Evicted,
    stop: &mut watch::Receiver<bool>,
) {
    if evicted.persist {
        if let Err(e) = std::fs::write(pod_dir.join(MARKER), &evicted.message) {
            tracing::warn!(error = %e, "recording the eviction");
        }
    }
    let (p, uid, dir, d) = (
        pod.pod.clone(),
        pod.uid.clone(),
        pod_dir.to_path_buf(),
        deps.clone(),
    );
    let _ = tokio::task::spawn_blocking(move || {
        host_resources::teardown(&p, &uid, &dir, &d);
        if let Err(e) = state::remove_dir_all(&dir.join("volumes")) {
            tracing::warn!(error = %e, "removing volumes of an evicted pod");
        }
        if let Err(e) = d.node_cgroups.pod_stopped(&uid) {
            tracing::warn!(error = %e, "updating QoS cgroups");
        }
    })
    .await;
    deps.node_kills.done(&pod.uid);
    stopped(stop).await;
}

/// The eviction message recorded in the pod directory by an earlier agent.
pub(super) fn recorded(pod_dir: &Path) -> Option<String> {
    std::fs::read_to_string(pod_dir.join(MARKER)).ok()
}

/// A pod evicted before the agent restarted: reported as evicted until it is stopped.
pub(super) async fn hold_recorded<St: StatusSink>(
    life: &PodLife<St>,
    message: &str,
    stop: &mut watch::Receiver<bool>,
) {
    if !*stop.borrow() {
        life.evicted(REASON, message);
        tracing::info!(message = %message.trim_end(), "pod was evicted; waiting for its manifest to change");
    }
    stopped(stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn message_is_the_kubelets() {
        assert_eq!(
            message("scratch", "1Mi"),
            "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". "
        );
    }

    #[test]
    fn only_disk_empty_dirs_with_a_positive_limit() {
        let p = pod(r#"
metadata: {name: p}
spec:
  containers: [{name: c, image: x}]
  volumes:
  - {name: a, emptyDir: {sizeLimit: 1Mi}}
  - {name: b, emptyDir: {}}
  - {name: m, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
  - {name: z, emptyDir: {sizeLimit: "0"}}
  - {name: h, hostPath: {path: /tmp}}
"#);
        let vols: BTreeMap<String, PathBuf> = ["a", "b", "m", "z", "h"]
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(format!("/v/{n}"))))
            .collect();
        assert_eq!(
            limits(&p, &vols),
            vec![EmptyDirLimit {
                name: "a".into(),
                path: "/v/a".into(),
                limit: 1 << 20,
                limit_text: "1Mi".into(),
            }]
        );
    }

    fn blocks(p: &Path) -> u64 {
        std::fs::symlink_metadata(p).unwrap().blocks() * 512
    }

    #[test]
    fn du_counts_allocated_blocks_and_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let data = root.join("sub/data");
        let mut f = std::fs::File::create(&data).unwrap();
        f.write_all(&vec![7u8; 256 * 1024]).unwrap();
        f.sync_all().unwrap();
        let base = disk_usage(&root).unwrap();
        assert_eq!(
            base,
            blocks(&root) + blocks(&root.join("sub")) + blocks(&data)
        );
        assert!(base >= 256 * 1024, "{base}");
        // A second name of the same inode adds nothing.
        std::fs::hard_link(&data, root.join("link")).unwrap();
        assert_eq!(disk_usage(&root).unwrap(), base);
        // A symlink counts as itself, not as what it points to (a big file elsewhere).
        let outside = d.path().join("big");
        std::fs::write(&outside, vec![1u8; 512 * 1024]).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sym")).unwrap();
        let with_link = disk_usage(&root).unwrap();
        assert_eq!(with_link, base + blocks(&root.join("sym")));
        assert!(with_link < base + 512 * 1024);
        // A sparse file counts its allocated blocks, not its length.
        let sparse = std::fs::File::create(root.join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        assert!(disk_usage(&root).unwrap() < base + (1 << 20));
    }

    #[test]
    fn exceeded_is_strictly_over_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let used = disk_usage(d.path()).unwrap();
        let at = |limit: u64| EmptyDirLimit {
            name: "v".into(),
            path: d.path().into(),
            limit,
            limit_text: limit.to_string(),
        };
        assert_eq!(exceeded(&[at(used)]), None);
        assert_eq!(
            exceeded(&[at(used - 1)]),
            Some(message("v", &(used - 1).to_string()))
        );
    }

    #[test]
    fn evicted_pod_is_failed_with_reason_and_message() {
        let store = crate::status::StatusStore::new();
        let sp = std::sync::Arc::new(StaticPod {
            pod: pod("metadata: {name: p, namespace: default}\nspec:\n  containers: [{name: c, image: x}]\n"),
            uid: "u1".into(),
            source: Default::default(),
        });
        store.pod_added(&sp);
        let before = store.pods()[0].status.clone().unwrap();
        assert_eq!(before.phase.as_deref(), Some("Pending"));
        assert_eq!(before.reason, None);
        store.pod_evicted("u1", REASON, &message("v", "1Mi"));
        let after = store.pods()[0].status.clone().unwrap();
        assert_eq!(after.phase.as_deref(), Some("Failed"));
        assert_eq!(after.reason.as_deref(), Some("Evicted"));
        assert_eq!(
            after.message.as_deref(),
            Some("Usage of EmptyDir volume \"v\" exceeds the limit \"1Mi\". ")
        );
    }

    #[test]
    fn eviction_is_recorded_in_the_pod_directory() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(recorded(d.path()), None);
        std::fs::write(d.path().join(MARKER), "m").unwrap();
        assert_eq!(recorded(d.path()).as_deref(), Some("m"));
    }
}
