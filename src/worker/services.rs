//! The worker's seams: the services it drives, each a small trait, and their real
//! implementations. The traits live here, beside their one user, so the arrows keep
//! pointing down: the worker knows `runtime`, `image` and `status`; they never know it.
//! The unit tests put fakes behind the same traits (`fakes.rs`).

use std::future::Future;
use std::sync::Arc;

use crate::cgroups::PodLimits;
use crate::image::{Image, ImageError, ImageStore, Keyring, PullPolicy};
use crate::manifest::StaticPod;
use crate::probe::Checker;
use crate::runtime::{ExitRecord, Handle, MonitorConfig, Runtime, RuntimeError};
pub use crate::status::ResizeProgress;
use crate::status::{Kind, StatusStore};
use k8s_openapi::api::core::v1::ResourceRequirements;

/// A running container instance, as the runtime handed it out.
pub trait ContainerHandle: Send + Sync + 'static {
    fn id(&self) -> &str;
    fn init_pid(&self) -> i32;
    /// RFC 3339, as the status reports it.
    fn started_at(&self) -> &str;
}

/// The container runtime as the worker uses it: start, stop, kill, wait, remove, and
/// (through [`Checker`]) the exec and network checks of probes and hooks.
pub trait ContainerRuntime: Checker {
    type Handle: ContainerHandle;

    /// Starts the container of `cfg` (its bundle written) and returns once it runs.
    fn start(
        &self,
        cfg: &MonitorConfig,
    ) -> impl Future<Output = Result<Self::Handle, RuntimeError>> + Send;
    /// Sends the container its stop signal.
    fn stop(&self, h: &Self::Handle);
    /// Kills every process of the container.
    fn kill(&self, h: &Self::Handle);
    /// Resolves once the container is gone, with how it ended.
    fn wait(&self, h: &Self::Handle) -> impl Future<Output = ExitRecord> + Send;
    /// Deletes what is left of container `id` (state, bundle); blocking, idempotent.
    fn remove(&self, id: &str);
}

/// The image store as the worker uses it.
pub trait Images: Send + Sync + 'static {
    /// The image of `reference`, pulled when `policy` says so, with the pod's `secrets`
    /// (its imagePullSecrets) tried before the node's credentials.
    fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        secrets: Keyring,
    ) -> impl Future<Output = Result<Image, ImageError>> + Send;
}

/// What happened to a pod, for its status.
#[derive(Debug, Clone, Copy)]
pub enum PodReport<'a> {
    /// The worker took the pod on: every container waits to be created.
    Added(&'a Arc<StaticPod>),
    /// The pod cannot be set up: every container waits for this reason.
    AllWaiting {
        reason: &'a str,
        message: &'a str,
    },
    Evicted {
        reason: &'a str,
        message: &'a str,
    },
    Terminating,
    Removed,
    /// The pod network's addresses (CNI ADD's result).
    Ips(&'a [String]),
    /// An in-place resize to `spec`: being applied, or done (`progress` None).
    Resize {
        spec: &'a Arc<StaticPod>,
        progress: Option<ResizeProgress<'a>>,
    },
    /// The limits the pod cgroup has now: made, or resized in place.
    Cgroup(&'a PodLimits),
}

/// What happened to one container, for its status.
#[derive(Debug, Clone, Copy)]
pub enum ContainerReport<'a> {
    Waiting {
        reason: &'a str,
        message: Option<&'a str>,
    },
    Running {
        id: &'a str,
        started_at: &'a str,
        /// Empty when not known yet (it was reported by [`ContainerReport::ImageId`]).
        image_id: &'a str,
    },
    Terminated {
        /// Empty when the container never started.
        id: &'a str,
        exit: &'a ExitRecord,
    },
    /// Before a restart: the state becomes the last state, the count goes up.
    Restarting {
        restart_count: u32,
    },
    /// The restart count of an adopted container.
    RestartCount(u32),
    ImageId(&'a str),
    /// The identity the container's process runs as (`user.linux`): `groups` are its
    /// supplementary groups, the primary one first, as containerd reports them.
    User {
        uid: u32,
        gid: u32,
        groups: &'a [u32],
    },
    /// The startup probe's verdict.
    Started(bool),
    Ready(bool),
    /// The resources its cgroup has.
    Resources(Option<&'a ResourceRequirements>),
}

/// Where the worker writes what its pods and containers do.
pub trait StatusSink: Clone + Send + Sync + 'static {
    fn pod(&self, uid: &str, report: PodReport<'_>);
    fn container(&self, uid: &str, kind: Kind, name: &str, report: ContainerReport<'_>);
    /// Whether a pod with `uid` is known (a worker for it runs).
    fn has_pod(&self, uid: &str) -> bool;
}

/// The services a worker runs on: the real ones ([`Real`]) or the unit tests' fakes.
pub trait Services: Send + Sync + 'static {
    type Runtime: ContainerRuntime;
    type Images: Images;
    type Status: StatusSink;
}

/// The agent's services.
pub struct Real;

impl Services for Real {
    type Runtime = Runtime;
    type Images = ImageStore;
    type Status = StatusStore;
}

impl ContainerHandle for Handle {
    fn id(&self) -> &str {
        &self.id
    }
    fn init_pid(&self) -> i32 {
        self.init_pid
    }
    fn started_at(&self) -> &str {
        &self.started_at
    }
}

impl ContainerRuntime for Runtime {
    type Handle = Handle;

    fn start(
        &self,
        cfg: &MonitorConfig,
    ) -> impl Future<Output = Result<Handle, RuntimeError>> + Send {
        Runtime::start(self, cfg)
    }
    fn stop(&self, h: &Handle) {
        Runtime::stop(self, h)
    }
    fn kill(&self, h: &Handle) {
        Runtime::kill(self, h)
    }
    fn wait(&self, h: &Handle) -> impl Future<Output = ExitRecord> + Send {
        Runtime::wait(self, h)
    }
    fn remove(&self, id: &str) {
        Runtime::remove(self, id)
    }
}

impl Images for ImageStore {
    async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        secrets: Keyring,
    ) -> Result<Image, ImageError> {
        ImageStore::ensure_with(self, reference, policy, &secrets).await
    }
}

impl StatusSink for StatusStore {
    fn pod(&self, uid: &str, report: PodReport<'_>) {
        match report {
            PodReport::Added(pod) => self.pod_added(pod),
            PodReport::AllWaiting { reason, message } => self.all_waiting(uid, reason, message),
            PodReport::Evicted { reason, message } => self.pod_evicted(uid, reason, message),
            PodReport::Ips(ips) => self.set_pod_ips(uid, ips.to_vec()),
            PodReport::Terminating => self.pod_terminating(uid),
            PodReport::Removed => self.pod_removed(uid),
            PodReport::Resize { spec, progress } => self.pod_resize(uid, spec, progress),
            PodReport::Cgroup(limits) => self.pod_cgroup(uid, limits),
        }
    }

    fn container(&self, uid: &str, kind: Kind, name: &str, report: ContainerReport<'_>) {
        match report {
            ContainerReport::Waiting { reason, message } => {
                self.waiting(uid, kind, name, reason, message.map(str::to_string))
            }
            ContainerReport::Running {
                id,
                started_at,
                image_id,
            } => self.running(uid, kind, name, id, started_at, image_id),
            ContainerReport::Terminated { id, exit } => self.terminated(uid, kind, name, id, exit),
            ContainerReport::Restarting { restart_count } => {
                self.restarting(uid, kind, name, restart_count)
            }
            ContainerReport::RestartCount(n) => self.set_restart_count(uid, kind, name, n),
            ContainerReport::ImageId(digest) => self.image_id(uid, kind, name, digest),
            ContainerReport::User {
                uid: u,
                gid,
                groups,
            } => self.user(uid, kind, name, u, gid, groups),
            ContainerReport::Started(started) => self.started(uid, kind, name, started),
            ContainerReport::Ready(ready) => self.ready(uid, kind, name, ready),
            ContainerReport::Resources(r) => self.resources(uid, kind, name, r),
        }
    }

    fn has_pod(&self, uid: &str) -> bool {
        StatusStore::has_pod(self, uid)
    }
}
