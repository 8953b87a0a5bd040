//! Pod workers: one task per pod UID. A worker waits for the pod it replaces to be gone,
//! prepares volumes, runs one supervisor per container and, when told to stop,
//! terminates them gracefully and removes everything the pod had on the host.

pub mod backoff;
mod container;
pub mod eviction;
pub mod log_drops;
mod pod;
mod pod_env;
mod supervisor;

pub(crate) use container::container_id;
pub mod volumes;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::sync::watch;
use tracing::Instrument;

use crate::image::ImageStore;
use crate::manifest::StaticPod;
use crate::runtime::{Adopted, Runtime};
use crate::state::{self, Layout};
use backoff::BackoffPolicy;

/// What every worker shares.
pub struct Deps {
    pub images: ImageStore,
    pub runtime: Runtime,
    pub layout: Layout,
    pub pod_logs_dir: PathBuf,
    pub crash_backoff: BackoffPolicy,
    pub pull_backoff: BackoffPolicy,
    pub status: crate::status::StatusStore,
    pub node: crate::node::NodeInfo,
    /// The host's cgroup hierarchy for pod cgroups; None when none was found.
    pub cgroups: Option<crate::cgroups::Hierarchy>,
    /// `--container-log-max-size` / `--container-log-max-files`.
    pub log_limits: crate::logs::LogLimits,
    /// How long the logs of a deleted pod stay readable before they are removed.
    pub pod_logs_gc_delay: Duration,
    /// `kubepods` and the QoS level cgroups, updated as pods come and go.
    pub node_cgroups: Arc<crate::cgroups::NodeCgroups>,
    /// How often disk emptyDirs are measured against their `sizeLimit`.
    pub housekeeping_interval: Duration,
    /// The CNI runtime that attaches pods without hostNetwork to the pod network.
    pub network: crate::network::Network,
}

/// The record of a pod kept in its directory, so an agent that restarts after the
/// manifest is gone still knows how to terminate it (grace period, stop order).
const POD_RECORD: &str = "pod.json";

/// Per-pod facts shared by its container supervisors.
struct PodCtx {
    pod: Arc<StaticPod>,
    deps: Arc<Deps>,
    volumes: BTreeMap<String, PathBuf>,
    /// The pod cgroup; containers' cgroups go inside it.
    cgroup: crate::cgroups::PodCgroup,
    log_dir: PathBuf,
    /// terminationGracePeriodSeconds, at least [`MIN_GRACE`]; see [`PodCtx::grace`].
    grace: Duration,
    restart_policy: RestartPolicy,
    /// The eviction message once the pod is evicted (eviction::guard).
    evicted: watch::Receiver<Option<String>>,
}

impl PodCtx {
    /// The grace period of a stop: the pod's own, or for an eviction the kubelet's
    /// override of 1 s (immediateEvictionGracePeriodSeconds), which its 2 s minimum
    /// raises to [`MIN_GRACE`].
    fn grace(&self) -> Duration {
        if self.evicted.borrow().is_some() {
            MIN_GRACE
        } else {
            self.grace
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }

    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

impl AsRef<Runtime> for Deps {
    fn as_ref(&self) -> &Runtime {
        &self.runtime
    }
}

impl PodCtx {
    /// The pod's init containers and app containers.
    fn containers(&self) -> (&[Container], &[Container]) {
        match self.pod.pod.spec.as_ref() {
            Some(s) => (
                s.init_containers.as_deref().unwrap_or_default(),
                &s.containers,
            ),
            None => (&[], &[]),
        }
    }

    /// Whether `name` is an init container (sidecars included) or an app container.
    fn container(&self, name: &str) -> Option<&Container> {
        let (init, app) = self.containers();
        init.iter().chain(app).find(|c| c.name == name)
    }

    fn kind_of(&self, name: &str) -> crate::status::Kind {
        if self.containers().0.iter().any(|c| c.name == name) {
            crate::status::Kind::Init
        } else {
            crate::status::Kind::App
        }
    }

    fn host_network(&self) -> bool {
        self.pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }
}

/// The kubelet never gives a container less than this to stop (kuberuntime).
const MIN_GRACE: Duration = Duration::from_secs(2);

/// Runs the pod until `stop` turns true, then terminates it; `predecessors` are the
/// "done" flags of earlier pods with the same name, which must be fully gone first.
pub async fn run_pod(
    pod: Arc<StaticPod>,
    adopted: Vec<Adopted>,
    deps: Arc<Deps>,
    mut stop: watch::Receiver<bool>,
    predecessors: Vec<watch::Receiver<bool>>,
) {
    let span = tracing::info_span!("pod", pod = %pod.full_name(), uid = %pod.uid);
    async move {
        for mut p in predecessors {
            tokio::select! {
                _ = stopped(&mut p) => {}
                _ = stopped(&mut stop) => {}
            }
        }
        let pod_dir = deps.layout.pod(&pod.uid);
        let stopping = *stop.borrow_and_update();
        if !stopping {
            deps.status.pod_added(&pod);
        }
        if let Some(message) = eviction::recorded(&pod_dir) {
            // Evicted before the agent restarted: it stays so until the manifest changes.
            Box::pin(eviction::hold_recorded(&pod, &deps, &message, &mut stop)).await;
            deps.status.pod_removed(&pod.uid);
            if let Err(e) = state::remove_dir_all(&pod_dir) {
                tracing::warn!(error = %e, "removing pod directory");
            }
            return;
        }
        // Nothing starts in a pod whose directory, volumes, namespaces or cgroup could
        // not be made: retry with back-off, as the kubelet re-syncs a pod. A pod on its
        // way out creates nothing (no hostPath directories for it).
        let mut volumes = BTreeMap::new();
        let mut backoff = backoff::Backoff::retries(deps.pull_backoff);
        while !*stop.borrow() {
            match prepare(&pod, &pod_dir, &deps).await {
                Ok(v) => {
                    volumes = v;
                    break;
                }
                Err(e) => {
                    let delay = backoff.next(Duration::ZERO);
                    tracing::error!(error = %e, reason = "CreateContainerConfigError", retry_in_s = delay.as_secs(), "preparing pod");
                    deps.status.all_waiting(&pod.uid, "CreateContainerConfigError", &e);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopped(&mut stop) => {}
                    }
                }
            }
        }
        let spec = pod.pod.spec.as_ref();
        let grace = spec.and_then(|s| s.termination_grace_period_seconds);
        let grace = Duration::from_secs(grace.unwrap_or(30).max(0) as u64);
        let restart_policy = spec.and_then(|s| s.restart_policy.as_deref());
        let (run_stop, evicted) = eviction::guard(&pod, &volumes, &deps, stop.clone());
        let ctx = Arc::new(PodCtx {
            log_dir: crate::logs::pod_log_dir(
                &deps.pod_logs_dir,
                pod.namespace(),
                pod.name(),
                &pod.uid,
            ),
            pod: pod.clone(),
            deps: deps.clone(),
            volumes,
            cgroup: crate::cgroups::PodCgroup::of(&pod.pod, &pod.uid),
            grace: grace.max(MIN_GRACE),
            restart_policy: RestartPolicy::parse(restart_policy),
            evicted: evicted.clone(),
        });
        if !stopping {
            tracing::info!("pod started");
        }
        let watch_stop = {
            let (mut stop, status, uid) = (stop.clone(), deps.status.clone(), pod.uid.clone());
            tokio::spawn(async move {
                stopped(&mut stop).await;
                status.pod_terminating(&uid);
            })
        };
        // Boxed, as the other phases below: each lives in the task only while it runs.
        Box::pin(pod::run_containers(ctx, adopted, run_stop)).await;
        let evicted = evicted.borrow().clone();
        if let Some(message) = evicted {
            Box::pin(eviction::hold(&pod, &pod_dir, &deps, &message, &mut stop)).await;
        }
        watch_stop.abort();
        deps.status.pod_removed(&pod.uid);
        pod_env::network_down(&pod.uid, &deps).await;
        pod_env::teardown(&pod.pod, &pod.uid, &pod_dir, &deps);
        if let Err(e) = deps.node_cgroups.pod_stopped(&pod.uid) {
            tracing::warn!(error = %e, "updating QoS cgroups");
        }
        if let Err(e) = state::remove_dir_all(&pod_dir) {
            tracing::warn!(error = %e, "removing pod directory");
        }
        if !stopping {
            gc_logs_later(&deps, &pod);
        }
        tracing::info!("pod terminated");
        crate::heap::release_soon();
    }
    .instrument(span)
    .await
}

/// The pod's directory, record, environment (volumes, namespaces, cgroup).
async fn prepare(
    pod: &StaticPod,
    pod_dir: &std::path::Path,
    deps: &Arc<Deps>,
) -> Result<BTreeMap<String, PathBuf>, String> {
    state::create_dir_all(pod_dir).map_err(|e| e.to_string())?;
    state::write_json(&pod_dir.join(POD_RECORD), &pod.pod).map_err(|e| e.to_string())?;
    let (p, uid, dir, d) = (
        pod.pod.clone(),
        pod.uid.clone(),
        pod_dir.to_path_buf(),
        deps.clone(),
    );
    tokio::task::spawn_blocking(move || {
        // The QoS levels first, as the kubelet's UpdateQOSCgroups before the pod cgroup.
        if let Err(e) = d.node_cgroups.pod_started(&uid, &p) {
            tracing::warn!(error = %e, "updating QoS cgroups");
        }
        pod_env::prepare(&p, &uid, &dir, &d)
    })
    .await
    .unwrap_or_else(|e| Err(format!("preparing pod: {e}")))
}

/// Removes a deleted pod's log directory after a while, as the kubelet's garbage
/// collection does, so `hostlet logs` still works right after a pod went away.
fn gc_logs_later(deps: &Arc<Deps>, pod: &StaticPod) {
    let dir = crate::logs::pod_log_dir(&deps.pod_logs_dir, pod.namespace(), pod.name(), &pod.uid);
    let (deps, uid) = (deps.clone(), pod.uid.clone());
    tokio::spawn(async move {
        tokio::time::sleep(deps.pod_logs_gc_delay).await;
        // The same manifest may have come back meanwhile: its logs are in use again.
        if deps.status.has_pod(&uid) {
            return;
        }
        match state::remove_dir_all(&dir) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "removed logs of a deleted pod"),
            Err(e) => tracing::warn!(error = %e, "removing logs of a deleted pod"),
        }
    });
}

/// Resolves once the flag turns true (or its sender is gone). Returns nothing, so no
/// lock guard of the watch lives across an await in callers.
pub(crate) async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

/// Terminates a pod an earlier agent started and no source declares any more.
pub async fn stop_orphan(uid: String, adopted: Vec<Adopted>, deps: Arc<Deps>) {
    let record = deps.layout.pod(&uid).join(POD_RECORD);
    let pod = match state::read_json::<k8s_openapi::api::core::v1::Pod>(&record) {
        Ok(Some(pod)) => pod,
        _ => Default::default(),
    };
    let pod = Arc::new(StaticPod {
        pod,
        uid,
        source: crate::manifest::Origin::default(),
    });
    let (tx, rx) = watch::channel(true);
    run_pod(pod, adopted, deps, rx, Vec::new()).await;
    drop(tx);
}

#[cfg(test)]
mod future_sizes {
    //! The futures that live as long as a pod or a container are kept small: their larger
    //! phases (start, stop, hooks, eviction) are boxed and allocated only while they run.
    //! Inline, `supervise` was 8.9 KB in a debug build, so 100 pods kept ~1 MB for states
    //! they were not in (BENCHMARKS.md row 4a). A start's future is kept small too: 100
    //! pods written at once have 100 of them in flight, and the heap keeps that peak.

    fn ret4<A, B, C, D, R>(_: impl Fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    fn ret3<A, B, C, R>(_: impl Fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    fn ret5<A, B, C, D, E, R>(_: impl Fn(A, B, C, D, E) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn long_lived_futures_stay_small() {
        let sizes = [
            ("run_pod", ret5(super::run_pod), 3072),
            ("run_containers", ret3(super::pod::run_containers), 3072),
            ("supervise", ret5(super::supervisor::supervise), 3072),
            ("run_instance", ret5(super::supervisor::run_instance), 3072),
            ("container::start", ret4(super::container::start), 1024),
        ];
        for (name, size, max) in sizes {
            assert!(
                size <= max,
                "{name}'s future is {size} bytes (at most {max}); box its large phases"
            );
        }
    }
}
