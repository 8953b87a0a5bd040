//! The worker's shared vocabulary: what every worker gets ([`Deps`]), what a pod's
//! supervisors share ([`PodCtx`]), and the stop flags they wait on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::sync::watch;

use super::rules::{self, RestartPolicy};
use super::services::{ContainerRuntime, Real, Services};
use super::states::PodLife;
use crate::backoff::BackoffPolicy;
use crate::manifest::{ObjectSet, StaticPod};
use crate::probe::{Action, Checker, ProbeError, Target};
use crate::state::Layout;

/// What every worker shares: the services (real ones unless a test says otherwise) and
/// the agent's settings.
pub struct Deps<S: Services = Real> {
    pub images: S::Images,
    pub runtime: S::Runtime,
    pub status: S::Status,
    /// The helper binary whose fork is a pod's pause process.
    pub sandbox_helper: PathBuf,
    pub layout: Layout,
    pub pod_logs_dir: PathBuf,
    pub crash_backoff: BackoffPolicy,
    pub pull_backoff: BackoffPolicy,
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
    /// Bundles being built at once across the agent's pods, `worker::BUNDLE_BUILDS` permits. One
    /// per `Deps`, not a static: unit tests each run their own agent on their own clock.
    pub bundle_builds: tokio::sync::Semaphore,
    /// The ConfigMaps and Secrets of the manifest sources, as the manager last saw them.
    pub objects: ObjectStore,
    /// Host ID ranges of `hostUsers: false` pods.
    pub userns: crate::userns::Pool,
    /// `--user-namespaces-default`.
    pub user_namespaces_default: bool,
    /// Pods the node stops on its own: node-pressure eviction, node shutdown.
    pub node_kills: NodeKills,
}

/// An eviction in force: its message, the grace period of the pod's containers, and
/// whether it is recorded to outlast the agent (an emptyDir over its limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    pub message: String,
    pub grace: std::time::Duration,
    pub persist: bool,
}

/// Why and how the node stops a pod on its own (eviction, shutdown): the pod's status
/// reason and message, and the grace period its containers get (the pod's own at most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub reason: String,
    pub message: String,
    pub grace: Duration,
    /// Set by the pod's worker once its containers are gone and its host resources freed.
    pub done: bool,
}

/// The pods the node is stopping on its own, by UID: the manager sets and withdraws
/// them, each pod's worker follows its own entry. A withdrawn kill lets the pod run
/// again once its worker is restarted.
#[derive(Default)]
pub struct NodeKills {
    tx: watch::Sender<BTreeMap<String, Kill>>,
}

impl NodeKills {
    pub fn kill(&self, uid: &str, kill: Kill) {
        self.tx.send_modify(|m| {
            m.insert(uid.to_string(), kill);
        });
    }
    /// Withdraws the kill of `uid`; whether there was one.
    pub fn release(&self, uid: &str) -> bool {
        self.tx.send_if_modified(|m| m.remove(uid).is_some())
    }
    pub fn get(&self, uid: &str) -> Option<Kill> {
        self.tx.borrow().get(uid).cloned()
    }
    pub fn all(&self) -> BTreeMap<String, Kill> {
        self.tx.borrow().clone()
    }
    pub fn subscribe(&self) -> watch::Receiver<BTreeMap<String, Kill>> {
        self.tx.subscribe()
    }
    /// The pod's worker has stopped its containers and freed what it held.
    pub fn done(&self, uid: &str) {
        self.tx.send_if_modified(|m| match m.get_mut(uid) {
            Some(k) if !k.done => {
                k.done = true;
                true
            }
            _ => false,
        });
    }
}

/// The latest ConfigMaps and Secrets, shared by the manager (who publishes each
/// snapshot's) and the workers (who read them and follow their changes).
pub struct ObjectStore {
    tx: watch::Sender<Arc<ObjectSet>>,
}

impl Default for ObjectStore {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(Arc::default()),
        }
    }
}

impl ObjectStore {
    /// Replaces the set; watchers wake only when it differs.
    pub fn publish(&self, set: ObjectSet) {
        self.tx.send_if_modified(|cur| {
            if **cur == set {
                return false;
            }
            *cur = Arc::new(set);
            true
        });
    }
    pub fn current(&self) -> Arc<ObjectSet> {
        self.tx.borrow().clone()
    }
    pub fn subscribe(&self) -> watch::Receiver<Arc<ObjectSet>> {
        self.tx.subscribe()
    }
}

/// Probes run their checks through the runtime; they get the whole `Deps` (one `Arc`
/// clone per probe, no separate runtime handle to keep).
impl<S: Services> Checker for Deps<S> {
    fn check(
        &self,
        t: &Target,
        action: &Action<'_>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(), ProbeError>> + Send {
        self.runtime.check(t, action, timeout)
    }
}

/// The record of a pod kept in its directory, so an agent that restarts after the
/// manifest is gone still knows how to terminate it (grace period, stop order).
pub const POD_RECORD: &str = "pod.json";

/// The runtime's handle type of services `S`.
pub type HandleOf<S> = <<S as Services>::Runtime as ContainerRuntime>::Handle;

/// Per-pod facts shared by its container supervisors.
pub struct PodCtx<S: Services> {
    pub pod: Arc<StaticPod>,
    pub deps: Arc<Deps<S>>,
    pub life: PodLife<S::Status>,
    pub volumes: BTreeMap<String, PathBuf>,
    /// The pod cgroup; containers' cgroups go inside it.
    pub cgroup: crate::cgroups::PodCgroup,
    pub log_dir: PathBuf,
    /// terminationGracePeriodSeconds, at least [`rules::MIN_GRACE`]; see [`PodCtx::grace`].
    pub grace: Duration,
    pub restart_policy: RestartPolicy,
    /// The eviction once the pod is evicted or killed by the node (eviction::guard).
    pub evicted: watch::Receiver<Option<Evicted>>,
    /// In-place resizes (`resizer`): the spec they brought, the containers they restart.
    pub resized: watch::Sender<Resized>,
}

/// What in-place resizes changed of a running pod: its spec (only resources differ from
/// [`PodCtx::pod`]) and, per container, how many resizes restarted it.
#[derive(Debug, Clone, Default)]
pub struct Resized {
    pub pod: Option<Arc<StaticPod>>,
    pub restarts: BTreeMap<String, u32>,
}

impl<S: Services> PodCtx<S> {
    /// The grace period of a stop now (shorter once the pod is evicted).
    pub fn grace(&self) -> Duration {
        let evicted = self.evicted.borrow().as_ref().map(|e| e.grace);
        match evicted {
            Some(g) => g.min(self.grace).max(rules::MIN_GRACE),
            None => self.grace,
        }
    }

    /// The pod's init containers and app containers.
    pub fn containers(&self) -> (&[Container], &[Container]) {
        match self.pod.pod.spec.as_ref() {
            Some(s) => (
                s.init_containers.as_deref().unwrap_or_default(),
                &s.containers,
            ),
            None => (&[], &[]),
        }
    }

    /// The init container (sidecars included) or app container `name`.
    pub fn container(&self, name: &str) -> Option<&Container> {
        let (init, app) = self.containers();
        init.iter().chain(app).find(|c| c.name == name)
    }

    /// The pod's spec now: the latest resize's, else the one it started with.
    pub fn spec(&self) -> Arc<StaticPod> {
        let r = self.resized.borrow().pod.clone();
        r.unwrap_or_else(|| self.pod.clone())
    }

    /// `c` with the resources of the latest resize: what its next instance starts with.
    pub fn current(&self, c: &Container) -> Container {
        let mut out = c.clone();
        let spec = self.resized.borrow().pod.clone();
        if let Some(p) = spec {
            let s = p.pod.spec.as_ref();
            let init = s
                .and_then(|s| s.init_containers.as_deref())
                .unwrap_or_default();
            let apps = s.map(|s| &s.containers[..]).unwrap_or_default();
            if let Some(n) = init.iter().chain(apps).find(|n| n.name == c.name) {
                out.resources = n.resources.clone();
            }
        }
        out
    }

    pub fn host_network(&self) -> bool {
        self.pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }
}

/// Resolves once the flag turns true (or its sender is gone). Returns nothing, so no
/// lock guard of the watch lives across an await in callers.
pub(crate) async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|s| *s).await;
}

pub fn stopping(stop: &watch::Receiver<bool>) -> bool {
    // Copy the flag out so no lock guard lives across an await.
    let s = *stop.borrow();
    s
}

/// Returns true when stopped before the delay was over.
pub async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stopped(stop) => true,
    }
}

/// The flags a supervisor shares with its pod.
pub(super) struct Links {
    pub stop: watch::Receiver<bool>,
    /// True once the container runs and passed its startup probe.
    pub started: watch::Sender<bool>,
    /// True once the container will not run again (until the pod is stopped).
    pub finished: watch::Sender<bool>,
}
