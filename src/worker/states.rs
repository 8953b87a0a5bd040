//! The named states of a pod and of each of its containers, and every transition
//! between them: the only place that moves a state, logs the move and writes it to the
//! status sink (once per transition).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ResourceRequirements;

use super::rules::{Outcome, Role};
use super::services::{ContainerReport, PodReport, ResizeProgress, StatusSink};
use crate::cgroups::PodLimits;
use crate::manifest::StaticPod;
use crate::runtime::ExitRecord;
use crate::status::Kind;

/// Where a pod is in its life. States only move forward (in this order); a transition to
/// an earlier state is refused, so a pod told to stop stays Terminating while its driver
/// still stops its containers in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodState {
    /// Waiting for an earlier pod with the same name to be gone.
    Waiting,
    /// Making its directory, volumes, sandbox and cgroup.
    Preparing,
    /// Running its init containers (and starting its sidecars) in order.
    Initializing,
    /// Its app containers are being started.
    Starting,
    /// Every app container has run.
    Running,
    /// Evicted: its containers are stopped and it stays failed until stopped.
    Evicted,
    /// Told to stop: its containers are being terminated.
    Terminating,
    /// Everything it had on the host is gone.
    Terminated,
}

struct PodInner {
    state: PodState,
    /// When the worker took the pod on, for the start latency.
    seen: Timestamp,
    /// The app containers that have not run yet.
    apps_left: Vec<String>,
    /// The latest first start of an app container.
    last_app_start: Timestamp,
}

/// A pod's state, shared by its driver, its container supervisors and its watchers.
pub struct PodLife<St> {
    uid: Arc<str>,
    status: St,
    /// False for a pod stopped before it started (an orphan): it is never reported as
    /// added or evicted.
    visible: bool,
    inner: Arc<Mutex<PodInner>>,
}

impl<St: Clone> Clone for PodLife<St> {
    fn clone(&self) -> Self {
        Self {
            uid: self.uid.clone(),
            status: self.status.clone(),
            visible: self.visible,
            inner: self.inner.clone(),
        }
    }
}

impl<St: StatusSink> PodLife<St> {
    pub fn new(uid: &str, status: St, visible: bool, apps: Vec<String>) -> Self {
        let now = Timestamp::now();
        Self {
            uid: uid.into(),
            status,
            visible,
            inner: Arc::new(Mutex::new(PodInner {
                state: PodState::Waiting,
                seen: now,
                apps_left: apps,
                last_app_start: now,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PodInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> PodState {
        self.lock().state
    }

    /// Moves to `to` when it is ahead of the current state, then writes `report`.
    fn enter(&self, to: PodState, report: Option<PodReport<'_>>) -> bool {
        let from = {
            let mut g = self.lock();
            let from = g.state;
            if to <= from {
                tracing::debug!(from = ?from, to = ?to, "pod state unchanged");
                return false;
            }
            g.state = to;
            if to == PodState::Preparing {
                g.seen = Timestamp::now();
                g.last_app_start = g.seen;
            }
            from
        };
        tracing::debug!(from = ?from, to = ?to, "pod state");
        if let Some(r) = report {
            self.status.pod(&self.uid, r);
        }
        true
    }

    pub fn preparing(&self, pod: &Arc<StaticPod>) {
        let report = self.visible.then_some(PodReport::Added(pod));
        self.enter(PodState::Preparing, report);
    }

    /// The pod could not be set up: every container waits for `reason`.
    pub fn prepare_failed(&self, reason: &str, message: &str) {
        self.status
            .pod(&self.uid, PodReport::AllWaiting { reason, message });
    }

    pub fn initializing(&self) -> bool {
        self.enter(PodState::Initializing, None)
    }

    pub fn starting(&self) -> bool {
        self.enter(PodState::Starting, None)
    }

    /// App container `name` runs, since `started_at` (RFC 3339). Once every app container
    /// has run the pod is Running and its start latency is recorded: from the worker
    /// taking it on to the last app container's start (the kubelet's
    /// `pod_start_duration_seconds`; containers adopted from an earlier agent count 0).
    fn app_running(&self, name: &str, started_at: &str) {
        let latency = {
            let mut g = self.lock();
            let Some(i) = g.apps_left.iter().position(|n| n == name) else {
                return;
            };
            g.apps_left.swap_remove(i);
            if let Ok(at) = started_at.parse::<Timestamp>() {
                g.last_app_start = g.last_app_start.max(at);
            }
            if !g.apps_left.is_empty() {
                return;
            }
            g.last_app_start.duration_since(g.seen)
        };
        if self.enter(PodState::Running, None) {
            let latency = Duration::try_from(latency).unwrap_or(Duration::ZERO);
            crate::metrics::pod_start(latency);
        }
    }

    /// An in-place resize of the pod to `spec`: `Some(progress)` while it is applied,
    /// `None` once its cgroups have the new limits.
    pub fn resize(&self, spec: &Arc<StaticPod>, progress: Option<ResizeProgress<'_>>) {
        tracing::info!(in_progress = progress.is_some(), "pod resize");
        self.status
            .pod(&self.uid, PodReport::Resize { spec, progress });
    }

    /// The limits the pod cgroup has after a resize in place.
    pub fn pod_cgroup(&self, limits: &PodLimits) {
        self.status.pod(&self.uid, PodReport::Cgroup(limits));
    }

    /// The resources container `name`'s cgroup has after a resize in place.
    pub fn container_resources(&self, kind: Kind, name: &str, r: Option<&ResourceRequirements>) {
        self.status
            .container(&self.uid, kind, name, ContainerReport::Resources(r));
    }

    pub fn evicted(&self, reason: &str, message: &str) {
        let report = self
            .visible
            .then_some(PodReport::Evicted { reason, message });
        self.enter(PodState::Evicted, report);
    }

    pub fn terminating(&self) {
        self.enter(PodState::Terminating, Some(PodReport::Terminating));
    }

    pub fn terminated(&self) {
        self.enter(PodState::Terminated, Some(PodReport::Removed));
    }
}

/// Where one container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Not created yet, or about to be created again after an exit.
    Waiting,
    /// Its image pulled, its bundle written, the runtime starting it.
    Creating,
    Running,
    /// Being stopped: preStop, stop signal, SIGKILL after the grace period.
    Terminating,
    /// Its process ended (or never started); the restart policy decides what follows.
    Exited,
    /// Waiting out the crash-loop back-off before the next start.
    BackOff,
    /// It will not run again.
    Done(Outcome),
}

impl ContainerState {
    /// Whether `self → to` is a transition of a container's life.
    pub fn allows(self, to: ContainerState) -> bool {
        use ContainerState::*;
        matches!(
            (self, to),
            (Waiting, Creating | Running | Exited)
                | (Creating, Running | Exited)
                | (Running, Terminating | Exited)
                | (Terminating, Exited)
                | (Exited, BackOff | Waiting)
                | (BackOff, Waiting)
                | (
                    Waiting | Creating | Running | Terminating | Exited | BackOff,
                    Done(_)
                )
        )
    }
}

/// One container's state with its reporting.
pub struct ContainerLife<St> {
    pod: PodLife<St>,
    role: Role,
    name: String,
    state: ContainerState,
    restart_count: u32,
}

impl<St: StatusSink> ContainerLife<St> {
    pub fn new(pod: PodLife<St>, role: Role, name: &str, restart_count: u32) -> Self {
        let life = Self {
            pod,
            role,
            name: name.to_string(),
            state: ContainerState::Waiting,
            restart_count,
        };
        life.report(ContainerReport::RestartCount(restart_count));
        life
    }

    pub fn state(&self) -> ContainerState {
        self.state
    }

    pub fn restart_count(&self) -> u32 {
        self.restart_count
    }

    fn report(&self, r: ContainerReport<'_>) {
        let kind = self.role.kind();
        self.pod
            .status
            .container(&self.pod.uid, kind, &self.name, r);
    }

    fn enter(&mut self, to: ContainerState, report: Option<ContainerReport<'_>>) {
        let from = self.state;
        if !from.allows(to) {
            // A bug, not an input: say so loudly but keep the container supervised.
            tracing::error!(from = ?from, to = ?to, "unexpected container state transition");
        }
        self.state = to;
        tracing::debug!(from = ?from, to = ?to, restart_count = self.restart_count, "container state");
        if let Some(r) = report {
            self.report(r);
        }
    }

    pub fn creating(&mut self) {
        let waiting = ContainerReport::Waiting {
            reason: "ContainerCreating",
            message: None,
        };
        self.enter(ContainerState::Creating, Some(waiting));
    }

    /// Still creating: the image is not available (`reason` as the kubelet says it).
    pub fn image_waiting(&self, reason: &str, message: &str) {
        self.report(ContainerReport::Waiting {
            reason,
            message: Some(message),
        });
    }

    pub fn image_ready(&self, digest: &str) {
        self.report(ContainerReport::ImageId(digest));
    }

    /// The uid, gid and supplementary groups of the container's process, from its bundle.
    pub fn user(&self, uid: u32, gid: u32, groups: &[u32]) {
        self.report(ContainerReport::User { uid, gid, groups });
    }

    /// `image_id` is empty when [`ContainerLife::image_ready`] already reported it.
    pub fn running(&mut self, id: &str, started_at: &str, image_id: &str) {
        let report = ContainerReport::Running {
            id,
            started_at,
            image_id,
        };
        self.enter(ContainerState::Running, Some(report));
        if self.role == Role::App {
            self.pod.app_running(&self.name, started_at);
        }
    }

    /// The resources its cgroup has now (at start, and after an in-place resize).
    pub fn resources(&self, r: Option<&ResourceRequirements>) {
        self.report(ContainerReport::Resources(r));
    }

    /// The startup probe's verdict.
    pub fn started(&self, started: bool) {
        self.report(ContainerReport::Started(started));
    }

    pub fn ready(&self, ready: bool) {
        self.report(ContainerReport::Ready(ready));
    }

    pub fn terminating(&mut self) {
        self.enter(ContainerState::Terminating, None);
    }

    /// `id` is empty when the container never started.
    pub fn exited(&mut self, id: &str, exit: &ExitRecord) {
        self.enter(
            ContainerState::Exited,
            Some(ContainerReport::Terminated { id, exit }),
        );
    }

    pub fn back_off(&mut self, delay: Duration) {
        let message = format!(
            "back-off {}s restarting failed container={}",
            delay.as_secs(),
            self.name
        );
        let waiting = ContainerReport::Waiting {
            reason: "CrashLoopBackOff",
            message: Some(&message),
        };
        self.enter(ContainerState::BackOff, Some(waiting));
    }

    /// The next instance is due: the restart count goes up.
    pub fn restarting(&mut self) {
        self.restart_count += 1;
        let report = ContainerReport::Restarting {
            restart_count: self.restart_count,
        };
        self.enter(ContainerState::Waiting, Some(report));
    }

    pub fn done(&mut self, outcome: Outcome) {
        self.enter(ContainerState::Done(outcome), None);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fakes::FakeStatus;
    use super::*;

    #[test]
    fn container_transitions() {
        use ContainerState::*;
        let life = [
            (Waiting, Creating),
            (Creating, Running),
            (Running, Terminating),
            (Terminating, Exited),
            (Exited, BackOff),
            (BackOff, Waiting),
            (Waiting, Running),
            (Creating, Exited),
            (Exited, Done(Outcome::Failed)),
        ];
        for (from, to) in life {
            assert!(from.allows(to), "{from:?} → {to:?}");
        }
        for (from, to) in [
            (Running, Creating),
            (BackOff, Running),
            (Done(Outcome::Stopped), Waiting),
            (Exited, Running),
        ] {
            assert!(!from.allows(to), "{from:?} → {to:?}");
        }
    }

    #[test]
    fn pod_states_only_move_forward_and_report_once() {
        let status = FakeStatus::default();
        let life = PodLife::new("u", status.clone(), true, vec!["a".into(), "b".into()]);
        let pod = Arc::new(StaticPod {
            pod: Default::default(),
            uid: "u".into(),
            source: Default::default(),
        });
        life.preparing(&pod);
        assert!(life.initializing());
        assert!(life.starting());
        life.app_running("a", "2020-01-01T00:00:00Z");
        assert_eq!(life.state(), PodState::Starting);
        life.app_running("b", "2020-01-01T00:00:00Z");
        assert_eq!(life.state(), PodState::Running);
        life.terminating();
        life.terminating();
        // Stopped: nothing starts any more.
        assert!(!life.starting());
        assert!(!life.initializing());
        life.terminated();
        assert_eq!(life.state(), PodState::Terminated);
        assert_eq!(
            status.reports(),
            ["pod Added", "pod Terminating", "pod Removed"]
        );
    }

    #[test]
    fn a_pod_stopped_before_it_started_is_not_reported_as_added() {
        let status = FakeStatus::default();
        let life = PodLife::new("u", status.clone(), false, Vec::new());
        let pod = Arc::new(StaticPod {
            pod: Default::default(),
            uid: "u".into(),
            source: Default::default(),
        });
        life.preparing(&pod);
        life.evicted("Evicted", "m");
        life.terminated();
        assert_eq!(status.reports(), ["pod Removed"]);
    }

    #[test]
    fn container_reports_follow_its_transitions() {
        let status = FakeStatus::default();
        let pod = PodLife::new("u", status.clone(), true, vec!["app".into()]);
        let mut c = ContainerLife::new(pod.clone(), Role::App, "app", 0);
        c.creating();
        c.running("id", "2020-01-01T00:00:00Z", "");
        assert_eq!(
            pod.state(),
            PodState::Running,
            "its only app container runs"
        );
        c.terminating();
        c.exited(
            "id",
            &ExitRecord {
                exit_code: 1,
                signal: None,
                oom_killed: false,
                started_at: None,
                finished_at: String::new(),
                start_error: None,
                message: None,
            },
        );
        c.back_off(Duration::from_secs(10));
        c.restarting();
        assert_eq!(c.restart_count(), 1);
        c.done(Outcome::Stopped);
        assert_eq!(c.state(), ContainerState::Done(Outcome::Stopped));
        assert_eq!(
            status.reports(),
            [
                "app RestartCount 0",
                "app Waiting ContainerCreating",
                "app Running",
                "app Terminated 1",
                "app Waiting CrashLoopBackOff",
                "app Restarting 1",
            ]
        );
    }
}
