//! What every pod and container is doing, in the Kubernetes `PodStatus` shape. Workers
//! write transitions here; the API and the CLI read it. Nothing here changes state.

mod entry;
mod log_drops;
mod node;
mod phase;
mod pod_resources;
mod resize;
mod revisions;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, ContainerUser, LinuxContainerUser, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cgroups::PodLimits;
use crate::manifest::StaticPod;
use crate::runtime::ExitRecord;

pub use entry::Kind;
use entry::{last_app_start, render, PodEntry};
pub use log_drops::{LogDrops, CONDITION as LOG_DROPS_CONDITION};
pub use phase::{pod_phase, PodPhase};
pub use resize::{ResizeProgress, IN_PROGRESS as RESIZE_IN_PROGRESS_CONDITION};
pub use revisions::CONDITION as ROLLED_BACK_CONDITION;

/// Shared, cheap to clone; every method takes a short lock.
#[derive(Debug, Clone, Default)]
pub struct StatusStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    pods: BTreeMap<String, PodEntry>,
    synced: bool,
    host_ip: Option<String>,
    /// `namespace/name` → the condition of its last rolled-back revision.
    rolled_back: BTreeMap<String, k8s_openapi::api::core::v1::PodCondition>,
    /// The node's pressure conditions, once the eviction monitor has looked.
    node_conditions: Vec<k8s_openapi::api::core::v1::NodeCondition>,
}

fn time(ts: &str) -> Option<Time> {
    ts.parse::<Timestamp>().ok().map(Time)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

impl StatusStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A poisoned lock only means a panic elsewhere; the data is still consistent
        // enough to report, and the agent must keep serving.
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    fn with_container(
        &self,
        uid: &str,
        kind: Kind,
        name: &str,
        f: impl FnOnce(&mut ContainerStatus),
    ) {
        self.with(|i| {
            if let Some(p) = i.pods.get_mut(uid) {
                let found = p
                    .containers
                    .iter_mut()
                    .find(|(k, c)| *k == kind && c.name == name);
                if let Some((_, c)) = found {
                    f(c);
                }
            }
        })
    }

    /// The sources delivered their first complete view (for `/healthz` and READY=1).
    pub fn set_synced(&self) {
        self.with(|i| i.synced = true)
    }

    pub fn synced(&self) -> bool {
        self.with(|i| i.synced)
    }

    pub fn set_host_ip(&self, ip: Option<String>) {
        self.with(|i| i.host_ip = ip)
    }

    /// Sets the node condition `type_` (DiskPressure, ...).
    pub fn set_node_condition(&self, type_: &str, on: bool, reason: &str, message: &str) {
        self.with(|i| node::set(&mut i.node_conditions, type_, on, reason, message))
    }

    pub fn node_conditions(&self) -> Vec<k8s_openapi::api::core::v1::NodeCondition> {
        self.with(|i| i.node_conditions.clone())
    }

    /// A pod worker started: every container is waiting to be created.
    pub fn pod_added(&self, sp: &Arc<StaticPod>) {
        let spec = sp.pod.spec.as_ref();
        // Exact: a ContainerStatus is ~0.7 KB and a growing Vec would hold four.
        let count = spec.map_or(0, |s| {
            s.containers.len() + s.init_containers.as_ref().map_or(0, Vec::len)
        });
        let mut containers = Vec::with_capacity(count);
        let lists = [
            (Kind::Init, spec.and_then(|s| s.init_containers.as_deref())),
            (Kind::App, spec.map(|s| &s.containers[..])),
        ];
        for (kind, list) in lists {
            let reason = if kind == Kind::App && !containers.is_empty() {
                "PodInitializing"
            } else {
                "ContainerCreating"
            };
            for c in list.unwrap_or_default() {
                let st = ContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone().unwrap_or_default(),
                    state: Some(waiting(reason, None)),
                    ..Default::default()
                };
                containers.push((kind, st));
            }
        }
        let entry = PodEntry {
            pod: sp.clone(),
            started: Timestamp::now(),
            containers,
            terminating_since: None,
            evicted: None,
            log_drops: Vec::new(),
            pod_ips: Vec::new(),
            resizing: None,
            cgroup: None,
        };
        self.with(|i| i.pods.insert(sp.uid.clone(), entry));
    }

    /// The pod's addresses on the pod network, once it is attached.
    pub fn set_pod_ips(&self, uid: &str, ips: Vec<String>) {
        self.with(|i| {
            if let Some(p) = i.pods.get_mut(uid) {
                p.pod_ips = ips;
            }
        })
    }

    /// An in-place resize to `spec` (the pod keeps its UID): in progress, or done (`None`).
    pub fn pod_resize(
        &self,
        uid: &str,
        spec: &Arc<StaticPod>,
        progress: Option<ResizeProgress<'_>>,
    ) {
        self.with(|i| {
            if let Some(p) = i.pods.get_mut(uid) {
                p.pod = spec.clone();
                p.resizing = progress.map(|pr| resize::Resizing::of(pr, p.resizing.as_ref()));
            }
        })
    }

    /// The limits the pod cgroup has now: made, or resized in place.
    pub fn pod_cgroup(&self, uid: &str, limits: &PodLimits) {
        self.with(|i| {
            if let Some(p) = i.pods.get_mut(uid) {
                p.cgroup = Some(limits.clone());
            }
        })
    }

    /// The resources container `name`'s cgroup has now.
    pub fn resources(
        &self,
        uid: &str,
        kind: Kind,
        name: &str,
        r: Option<&k8s_openapi::api::core::v1::ResourceRequirements>,
    ) {
        self.with_container(uid, kind, name, |c| c.resources = r.cloned())
    }

    pub fn pod_terminating(&self, uid: &str) {
        self.with(|i| {
            if let Some(p) = i.pods.get_mut(uid) {
                p.terminating_since.get_or_insert_with(Timestamp::now);
            }
        })
    }

    /// The pod was evicted: phase Failed with the eviction's reason and message, whatever
    /// its containers do (the kubelet's eviction status function).
    pub fn pod_evicted(&self, uid: &str, reason: &str, message: &str) {
        self.with(|i| {
            if let Some(p) = i.pods.get_mut(uid) {
                p.evicted = Some((reason.to_string(), message.to_string()));
            }
        })
    }

    pub fn has_pod(&self, uid: &str) -> bool {
        self.with(|i| i.pods.contains_key(uid))
    }

    pub fn pod_removed(&self, uid: &str) {
        self.with(|i| i.pods.remove(uid));
    }

    /// The container waits: `ContainerCreating`, `CrashLoopBackOff`, `ErrImagePull`, ….
    pub fn waiting(
        &self,
        uid: &str,
        kind: Kind,
        name: &str,
        reason: &str,
        message: Option<String>,
    ) {
        self.with_container(uid, kind, name, |c| {
            c.state = Some(waiting(reason, message));
            c.ready = false;
            c.started = Some(false);
        })
    }

    pub fn running(
        &self,
        uid: &str,
        kind: Kind,
        name: &str,
        id: &str,
        started_at: &str,
        image_id: &str,
    ) {
        self.with_container(uid, kind, name, |c| {
            c.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(started_at),
                }),
                ..Default::default()
            });
            c.container_id = Some(format!("hostlet://{id}"));
            if !image_id.is_empty() {
                c.image_id = image_id.to_string();
            }
            c.started = Some(true);
        })
    }

    /// Every container of the pod waits for the same reason (the pod cannot be set up).
    pub fn all_waiting(&self, uid: &str, reason: &str, message: &str) {
        self.with(|i| {
            if let Some(p) = i.pods.get_mut(uid) {
                for (_, c) in p.containers.iter_mut() {
                    c.state = Some(waiting(reason, Some(message.to_string())));
                }
            }
        })
    }

    /// The digest of the image the container runs (`imageID`), once it is known.
    pub fn image_id(&self, uid: &str, kind: Kind, name: &str, image_id: &str) {
        self.with_container(uid, kind, name, |c| c.image_id = image_id.to_string())
    }

    /// The identity of the container's process, as the kubelet reports it from the CRI's
    /// `ContainerUser`.
    pub fn user(&self, uid: &str, kind: Kind, name: &str, u: u32, gid: u32, groups: &[u32]) {
        self.with_container(uid, kind, name, |c| {
            c.user = Some(ContainerUser {
                linux: Some(LinuxContainerUser {
                    uid: u.into(),
                    gid: gid.into(),
                    supplemental_groups: Some(groups.iter().map(|g| i64::from(*g)).collect()),
                }),
            })
        })
    }

    /// Readiness as the probes (or, without a readiness probe, the running state) say.
    pub fn ready(&self, uid: &str, kind: Kind, name: &str, ready: bool) {
        self.with_container(uid, kind, name, |c| c.ready = ready)
    }

    /// The startup probe's verdict (`started` in the status).
    pub fn started(&self, uid: &str, kind: Kind, name: &str, started: bool) {
        self.with_container(uid, kind, name, |c| c.started = Some(started))
    }

    pub fn terminated(&self, uid: &str, kind: Kind, name: &str, id: &str, exit: &ExitRecord) {
        self.with_container(uid, kind, name, |c| {
            c.state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(format!("hostlet://{id}")),
                    exit_code: exit.exit_code,
                    signal: exit.signal,
                    reason: Some(exit.reason().into()),
                    message: exit.start_error.clone().or_else(|| exit.message.clone()),
                    started_at: exit.started_at.as_deref().and_then(time),
                    finished_at: time(&exit.finished_at),
                }),
                ..Default::default()
            });
            c.ready = false;
            c.started = Some(false);
        })
    }

    /// Before a restart: the current state becomes `lastState`, the count goes up.
    pub fn restarting(&self, uid: &str, kind: Kind, name: &str, restart_count: u32) {
        self.with_container(uid, kind, name, |c| {
            if c.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                c.last_state = c.state.clone();
            }
            c.restart_count = restart_count as i32;
        })
    }

    /// Restart count of an adopted container, kept across agent restarts.
    pub fn set_restart_count(&self, uid: &str, kind: Kind, name: &str, restart_count: u32) {
        self.with_container(uid, kind, name, |c| c.restart_count = restart_count as i32)
    }

    /// Every pod with its status, sorted by namespace/name.
    pub fn pods(&self) -> Vec<Pod> {
        let mut pods: Vec<Pod> = self.with(|i| {
            i.pods
                .values()
                .map(|p| {
                    let mut pod = render(p, i.host_ip.clone());
                    revisions::add_condition(&mut pod, &i.rolled_back);
                    pod
                })
                .collect()
        });
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        pods
    }

    /// Every pod's UID, when its worker started it, and when its last app container
    /// started once all of them have (running or since terminated). Copies no pod. (The
    /// start-latency metric is recorded by the workers, when a pod reaches Running.)
    pub fn start_times(&self) -> Vec<(String, Timestamp, Option<Timestamp>)> {
        self.with(|i| {
            i.pods
                .iter()
                .map(|(uid, p)| (uid.clone(), p.started, last_app_start(p)))
                .collect()
        })
    }

    /// Every container that has (or had) an instance: pod UID, container name and the id
    /// of its newest instance.
    pub fn container_ids(&self) -> Vec<(String, String, String)> {
        self.with(|i| {
            let mut out = Vec::new();
            for (uid, p) in &i.pods {
                for (_, c) in &p.containers {
                    let id = c.container_id.as_deref().or_else(|| {
                        let s = c.state.as_ref()?.terminated.as_ref()?;
                        s.container_id.as_deref()
                    });
                    if let Some(id) = id.and_then(|id| id.strip_prefix("hostlet://")) {
                        out.push((uid.clone(), c.name.clone(), id.to_string()));
                    }
                }
            }
            out
        })
    }

    /// Log lines of a container dropped since the last report (`lines`, `bytes` are
    /// increments), whether they are being dropped now, and why.
    pub fn log_drops(
        &self,
        uid: &str,
        container: &str,
        (lines, bytes): (u64, u64),
        dropping: bool,
        error: Option<String>,
    ) {
        self.with(|i| {
            let Some(p) = i.pods.get_mut(uid) else { return };
            let idx = match p.log_drops.iter().position(|d| d.container == container) {
                Some(idx) => idx,
                None => {
                    p.log_drops.push(LogDrops {
                        container: container.to_string(),
                        lines: 0,
                        bytes: 0,
                        dropping: false,
                        error: None,
                        since: Timestamp::now(),
                    });
                    p.log_drops.len() - 1
                }
            };
            let d = &mut p.log_drops[idx];
            d.lines += lines;
            d.bytes += bytes;
            if d.dropping != dropping {
                d.dropping = dropping;
                d.since = Timestamp::now();
            }
            if error.is_some() {
                d.error = error;
            }
        })
    }

    /// Every container's dropped log lines and bytes: (namespace, pod, container, lines,
    /// bytes), for `/metrics`.
    pub fn dropped_logs(&self) -> Vec<(String, String, String, u64, u64)> {
        self.with(|i| {
            let mut out = Vec::new();
            for p in i.pods.values() {
                for d in &p.log_drops {
                    out.push((
                        p.pod.namespace().to_string(),
                        p.pod.name().to_string(),
                        d.container.clone(),
                        d.lines,
                        d.bytes,
                    ));
                }
            }
            out
        })
    }

    /// Records that pod `full_name`'s revision failed and was rolled back (see
    /// [`revisions::condition`]); the condition stays until a later revision is Ready.
    pub fn set_rolled_back(&self, full_name: &str, reason: &str, message: &str) {
        let cond = revisions::condition(reason, message);
        self.with(|i| i.rolled_back.insert(full_name.to_string(), cond));
    }

    /// A later revision of `full_name` became Ready: the rollback is history.
    pub fn clear_rolled_back(&self, full_name: &str) {
        self.with(|i| i.rolled_back.remove(full_name));
    }

    pub fn pod_by_uid(&self, uid: &str) -> Option<Pod> {
        self.with(|i| {
            i.pods.get(uid).map(|p| {
                let mut pod = render(p, i.host_ip.clone());
                revisions::add_condition(&mut pod, &i.rolled_back);
                pod
            })
        })
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.pods().into_iter().find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(name)
        })
    }
}
