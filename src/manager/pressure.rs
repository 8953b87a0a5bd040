//! Node-pressure eviction (the kubelet's eviction manager, for one host): every
//! housekeeping interval, observe the filesystems (nodefs: `--root-dir`'s; imagefs: its
//! image store's), memory and PIDs; set the node conditions; for a met disk threshold,
//! reclaim first (unused images, dead containers' logs, the logs of pods that are gone)
//! and, if that was not enough, evict one pod by the kubelet's ranking. Evicted pods are
//! restarted once the node has no disk pressure any more (the kubelet leaves them
//! Failed for ever; kubernetes#76598). The rules are in `crate::pressure`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::pressure::{
    self, Candidate, Condition, ContainerUse, Evaluator, Observation, Observations, Signal,
    Threshold, CONDITIONS,
};
use crate::worker::{Deps, Kill};

/// The eviction settings of `hostlet run`.
#[derive(Debug, Clone)]
pub struct PressureConfig {
    pub thresholds: Vec<Threshold>,
    /// `--eviction-pressure-transition-period`.
    pub transition: Duration,
    /// `--eviction-max-pod-grace-period`: a soft eviction's grace period at most.
    pub max_pod_grace: Duration,
    /// How often the node is observed (the housekeeping interval).
    pub interval: Duration,
    /// Images younger than this are never removed (`--image-gc-min-age`).
    pub image_min_age: Duration,
}

/// Runs for the agent's life; `restart` asks the manager to restart an evicted pod.
pub async fn monitor(cfg: PressureConfig, deps: Arc<Deps>, restart: mpsc::Sender<String>) {
    let mut eval = Evaluator::default();
    let mut evicted: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::time::sleep(cfg.interval).await;
        if !deps.status.synced() {
            continue;
        }
        let d = deps.clone();
        let Ok(obs) = tokio::task::spawn_blocking(move || observe(&d)).await else {
            continue;
        };
        let verdict = eval.evaluate(&cfg.thresholds, &obs, cfg.transition, Instant::now());
        report_conditions(&deps, &verdict.conditions);
        evicted.retain(|uid| deps.status.has_pod(uid) && deps.node_kills.get(uid).is_some());
        if !verdict.conditions.contains(&Condition::DiskPressure) {
            for uid in std::mem::take(&mut evicted) {
                tracing::info!(uid = %uid, "no disk pressure any more; restarting the evicted pod");
                deps.node_kills.release(&uid);
                let _ = restart.send(uid).await;
            }
        }
        let Some(t) = verdict.act.iter().find(|t| t.signal.is_disk()).cloned() else {
            continue;
        };
        let (d, min_age, tt) = (deps.clone(), cfg.image_min_age, t.clone());
        let job = tokio::task::spawn_blocking(move || {
            reclaim(&d, &tt, &obs, min_age);
            let after = observe(&d);
            if !pressure::is_met(&tt, &after, true) {
                return None;
            }
            let mut pods = candidates(&d, tt.signal);
            pressure::rank(&mut pods);
            let first = pods.into_iter().next()?;
            Some((pressure::message(&tt, &after, &first), first))
        });
        match job.await {
            Ok(None) => tracing::info!(
                signal = t.signal.as_str(),
                "reclaiming node resources relieved the disk pressure"
            ),
            Ok(Some((message, pod))) => {
                tracing::warn!(uid = %pod.uid, signal = t.signal.as_str(), message = %message.trim_end(), "evicting pod for node pressure");
                let grace = if t.is_hard() {
                    Duration::ZERO
                } else {
                    cfg.max_pod_grace
                };
                deps.node_kills.kill(
                    &pod.uid,
                    Kill {
                        reason: pressure::REASON.into(),
                        message,
                        grace,
                        done: false,
                    },
                );
                crate::metrics::eviction(t.signal.as_str());
                wait_cleaned_up(&deps, &pod.uid).await;
                evicted.insert(pod.uid);
            }
            Err(e) => tracing::warn!(error = %e, "node pressure round failed"),
        }
    }
}

/// How long an evicted pod may take to free what it held before the next round (the
/// kubelet's podCleanupTimeout).
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until the evicted pod's containers are gone and its volumes removed, as the
/// kubelet's waitForPodsCleanup, so the next round sees what the eviction freed and does
/// not evict a second pod for the same shortage.
async fn wait_cleaned_up(deps: &Deps, uid: &str) {
    let mut kills = deps.node_kills.subscribe();
    let done = kills.wait_for(|m| m.get(uid).is_none_or(|k| k.done));
    if tokio::time::timeout(CLEANUP_TIMEOUT, done).await.is_err() {
        tracing::warn!(uid = %uid, "evicted pod not cleaned up after {CLEANUP_TIMEOUT:?}");
    }
}

fn report_conditions(deps: &Deps, on: &BTreeSet<Condition>) {
    for c in CONDITIONS {
        let is_on = on.contains(&c);
        let message = match (c, is_on) {
            (Condition::MemoryPressure, true) => "kubelet has insufficient memory available",
            (Condition::MemoryPressure, false) => "kubelet has sufficient memory available",
            (Condition::DiskPressure, true) => "kubelet has disk pressure",
            (Condition::DiskPressure, false) => "kubelet has no disk pressure",
            (Condition::PidPressure, true) => "kubelet has insufficient PID available",
            (Condition::PidPressure, false) => "kubelet has sufficient PID available",
        };
        deps.status
            .set_node_condition(c.as_str(), is_on, c.reason(is_on), message);
    }
}

/// Blocking: what every signal measures now. A signal that cannot be read is left out
/// (its thresholds are then not met).
fn observe(deps: &Deps) -> Observations {
    let mut out = BTreeMap::new();
    for (path, bytes, inodes) in [
        (
            deps.layout.root.clone(),
            Signal::NodeFsAvailable,
            Signal::NodeFsInodesFree,
        ),
        (
            deps.layout.images(),
            Signal::ImageFsAvailable,
            Signal::ImageFsInodesFree,
        ),
    ] {
        if let Ok(st) = nix::sys::statvfs::statvfs(&path) {
            let frsize = st.fragment_size();
            out.insert(
                bytes,
                Observation {
                    available: st.blocks_available() * frsize,
                    capacity: st.blocks() * frsize,
                },
            );
            if st.files() > 0 {
                out.insert(
                    inodes,
                    Observation {
                        available: st.files_available(),
                        capacity: st.files(),
                    },
                );
            }
        }
    }
    if let Some(m) = memory() {
        out.insert(Signal::MemoryAvailable, m);
    }
    if let Some(p) = pids() {
        out.insert(Signal::PidAvailable, p);
    }
    out
}

/// MemAvailable of MemTotal, in bytes.
fn memory() -> Option<Observation> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(Observation {
        available: field("MemAvailable:")?,
        capacity: field("MemTotal:")?,
    })
}

/// pid_max less the tasks that exist (the fourth field of /proc/loadavg).
fn pids() -> Option<Observation> {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let load = std::fs::read_to_string("/proc/loadavg").ok()?;
    let tasks: u64 = load
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()?;
    Some(Observation {
        available: max.saturating_sub(tasks),
        capacity: max,
    })
}

fn same_fs(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev(),
        _ => false,
    }
}

/// Blocking: the kubelet's node-level reclaim for `t`'s signal: unused images (imagefs,
/// or nodefs when the images are on it), then dead containers' logs (nodefs).
fn reclaim(deps: &Deps, t: &Threshold, obs: &Observations, min_age: Duration) {
    let images_here = matches!(
        t.signal,
        Signal::ImageFsAvailable | Signal::ImageFsInodesFree
    ) || same_fs(&deps.layout.root, &deps.layout.images());
    if images_here {
        let o = obs.get(&t.signal).copied();
        // Bytes thresholds give the usage to come down to; for inodes, every unused image.
        let low_percent = match o {
            Some(o) if !t.signal.is_count() && o.capacity > 0 => {
                let need = t.value.of(o.capacity) + t.min_reclaim.map_or(0, |r| r.of(o.capacity));
                let used = o.capacity.saturating_sub(need);
                (used * 100 / o.capacity).min(100) as u8
            }
            _ => 0,
        };
        let policy = crate::image::GcPolicy {
            high_percent: 0,
            low_percent,
            min_age,
        };
        match deps.images.gc(&policy) {
            Ok(r) if !r.removed.is_empty() => {
                tracing::info!(removed = ?r.removed, signal = t.signal.as_str(), "removed unused images for node pressure")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "removing unused images for node pressure"),
        }
    }
    if matches!(t.signal, Signal::NodeFsAvailable | Signal::NodeFsInodesFree) {
        let removed = remove_dead_logs(deps);
        if removed > 0 {
            tracing::info!(
                files = removed,
                "removed the logs of dead containers for node pressure"
            );
        }
    }
}

/// Removes the log directories of pods that are gone and, in running pods, the logs of
/// containers' earlier instances (what `logs --previous` reads); returns how many went.
fn remove_dead_logs(deps: &Deps) -> usize {
    let status = &deps.status;
    let mut removed = crate::worker::log_gc::sweep(
        &deps.pod_logs_dir,
        |uid| status.has_pod(uid),
        Duration::ZERO,
        &mut Default::default(),
        std::time::Instant::now(),
    );
    for pod in status.pods() {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            continue;
        };
        let dir = pod_log_dir(&deps.pod_logs_dir, &pod, uid);
        let st = pod.status.unwrap_or_default();
        let all = st.init_container_statuses.into_iter().flatten();
        for c in all.chain(st.container_statuses.into_iter().flatten()) {
            let Ok(rd) = std::fs::read_dir(dir.join(&c.name)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let restart = name.split('.').next().and_then(|n| n.parse::<i32>().ok());
                if restart.is_some_and(|n| n < c.restart_count)
                    && std::fs::remove_file(e.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    removed
}

fn pod_log_dir(root: &Path, pod: &Pod, uid: &str) -> PathBuf {
    let m = &pod.metadata;
    crate::logs::pod_log_dir(
        root,
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default(),
        uid,
    )
}

/// Blocking: bytes allocated and inodes used under `root`, on its filesystem only, each
/// hard-linked inode once.
fn usage(root: &Path) -> (u64, u64) {
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return (0, 0);
    };
    let dev = top.dev();
    let mut seen = BTreeSet::new();
    let (mut bytes, mut inodes) = (top.blocks() * 512, 1);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.dev() != dev || (m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino())) {
                continue;
            }
            bytes += m.blocks() * 512;
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

/// Blocking: the pods that may be evicted for `signal`, with their usage: containers'
/// writable layers and logs, and the pod's volumes. Critical pods, pods already stopped
/// by the node and pods on their way out are left out.
fn candidates(deps: &Deps, signal: Signal) -> Vec<Candidate> {
    let ids = deps.status.container_ids();
    let pick = |u: (u64, u64)| if signal.is_count() { u.1 } else { u.0 };
    let mut out = Vec::new();
    for pod in deps.status.pods() {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let spec = pod.spec.as_ref();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if pressure::is_critical(spec)
            || deps.node_kills.get(&uid).is_some()
            || pod.metadata.deletion_timestamp.is_some()
            || !matches!(phase, Some("Running" | "Pending"))
        {
            continue;
        }
        let log_dir = pod_log_dir(&deps.pod_logs_dir, &pod, &uid);
        let all = spec.into_iter().flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        });
        let mut containers = Vec::new();
        for c in all {
            let layer = ids
                .iter()
                .filter(|(u, n, _)| *u == uid && *n == c.name)
                .map(|(_, _, id)| pick(usage(&deps.layout.container(id))))
                .sum::<u64>();
            let request = if signal.is_count() {
                0
            } else {
                c.resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("ephemeral-storage"))
                    .and_then(|q| crate::manifest::quantity::parse_memory_bytes(q).ok())
                    .map_or(0, |b| b.max(0) as u64)
            };
            containers.push(ContainerUse {
                name: c.name.clone(),
                usage: layer + pick(usage(&log_dir.join(&c.name))),
                request,
            });
        }
        let volumes = pick(usage(&deps.layout.pod(&uid).join("volumes")));
        out.push(Candidate {
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            usage: volumes + containers.iter().map(|c| c.usage).sum::<u64>(),
            request: containers.iter().map(|c| c.request).sum(),
            containers,
            uid,
        });
    }
    out
}
