//! The kubelet's rules the worker follows, as pure functions: which containers restart
//! and after what back-off, in what order init containers and sidecars run, what a probe
//! result does, how long a container gets to stop. No I/O, no clock: the drivers
//! (`supervisor`, `pod`, `instance`) ask, these answer.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::backoff::Backoff;
use crate::manifest::restart_rules;
use crate::probe::Kind as ProbeKind;
use crate::runtime::Adopted;
use crate::status::Kind;

/// The kubelet never gives a container less than this to stop (kuberuntime).
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// terminationGracePeriodSeconds when the pod sets none.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The kubelet's one-time extension when a preStop hook used up the grace period.
pub const PRE_STOP_EXTENSION: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The pod's `restartPolicy`; Always when unset (the API default).
    pub fn of(spec: Option<&PodSpec>) -> Self {
        match spec.and_then(|s| s.restart_policy.as_deref()) {
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

/// How a container relates to its pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A regular container.
    App,
    /// A regular init container: runs to success before anything after it.
    Init,
    /// An init container with `restartPolicy: Always`: started before the next init
    /// container, kept running, stopped after the app containers.
    Sidecar,
}

impl Role {
    /// The role of the init container `c`.
    pub fn of_init(c: &Container) -> Self {
        if c.restart_policy.as_deref() == Some("Always") {
            Role::Sidecar
        } else {
            Role::Init
        }
    }

    /// The status list the container is reported in.
    pub fn kind(self) -> Kind {
        match self {
            Role::App => Kind::App,
            Role::Init | Role::Sidecar => Kind::Init,
        }
    }

    /// Whether container `c` of this role that exited with `exit_code` runs again: its own
    /// restart rules and policy first, then the pod's (the kubelet's ContainerShouldRestart).
    pub fn restarts(self, policy: RestartPolicy, c: &Container, exit_code: i32) -> bool {
        let decides = || restart_rules::container_decides(c, exit_code);
        match self {
            Role::App => decides().unwrap_or_else(|| policy.restarts(exit_code)),
            Role::Sidecar => true,
            // The kubelet retries a failed init container unless the pod never restarts;
            // one that succeeded is done whatever its rules say.
            Role::Init => exit_code != 0 && decides().unwrap_or(policy != RestartPolicy::Never),
        }
    }
}

/// How a container's supervision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ran to completion with exit 0 and will not run again.
    Succeeded,
    /// Ended with an error and will not run again.
    Failed,
    /// The pod was stopped.
    Stopped,
}

/// What follows a container's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start it again after `delay` (zero: at once).
    Restart { delay: Duration },
    /// It does not run again.
    Done(Outcome),
}

/// The restart decision for a container of `role` that exited with `exit_code` after
/// running for `ran`; `crash` is its crash-loop back-off, advanced only on a restart.
pub fn after_exit(
    role: Role,
    policy: RestartPolicy,
    c: &Container,
    exit_code: i32,
    ran: Duration,
    crash: &mut Backoff,
) -> AfterExit {
    if role.restarts(policy, c, exit_code) {
        AfterExit::Restart {
            delay: crash.next(ran),
        }
    } else if exit_code == 0 {
        AfterExit::Done(Outcome::Succeeded)
    } else {
        AfterExit::Done(Outcome::Failed)
    }
}

/// Whether a container that will not run again keeps its slot until the pod stops
/// (app containers and sidecars) or hands over to the next one (init containers, whose
/// exit record must stay: an agent restarted later must not run them again).
pub fn waits_for_pod_stop(role: Role) -> bool {
    role != Role::Init
}

/// What the pod does with one init container, in spec order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStep {
    /// A sidecar: start it, wait until it has started, go on while it keeps running.
    StartSidecar,
    /// Run it to success before the next one.
    RunToCompletion,
    /// The pod was initialized before the agent restarted: remove what is left of it.
    AlreadyDone,
}

/// The step for init container `c`. An app container that ran means the init phase
/// is over (`initialized`, the kubelet's rule too); sidecars run regardless.
pub fn init_step(c: &Container, initialized: bool) -> InitStep {
    match Role::of_init(c) {
        Role::Sidecar => InitStep::StartSidecar,
        _ if initialized => InitStep::AlreadyDone,
        _ => InitStep::RunToCompletion,
    }
}

/// Whether an earlier agent already got the pod past its init containers: one of the
/// `adopted` instances belongs to an app container.
pub fn initialized_before<H>(app: &[Container], adopted: &[Adopted<H>]) -> bool {
    adopted
        .iter()
        .any(|a| app.iter().any(|c| c.name == a.config.container))
}

/// The instances of container `name` among `adopted`, taken out of it.
pub fn take_adopted<H>(adopted: &mut Vec<Adopted<H>>, name: &str) -> Vec<Adopted<H>> {
    let (mine, rest) = std::mem::take(adopted)
        .into_iter()
        .partition(|a| a.config.container == name);
    *adopted = rest;
    mine
}

/// A container's adopted instances split into the one that counts (the newest, by
/// restart count) and the dead leftovers to remove.
pub fn newest<H>(mut adopted: Vec<Adopted<H>>) -> (Option<Adopted<H>>, Vec<Adopted<H>>) {
    adopted.sort_by_key(|a| a.config.restart_count);
    let newest = adopted.pop();
    (newest, adopted)
}

/// What a probe's verdict change does to its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEffect {
    /// The startup probe passed: liveness and readiness probes start.
    Started,
    /// Readiness changed.
    Ready(bool),
    /// Liveness or startup failed: the container is killed and the restart policy decides.
    Restart,
    Nothing,
}

/// The effect of a `kind` probe turning `success`; `started` tells whether the startup
/// probe already passed.
pub fn probe_effect(kind: ProbeKind, success: bool, started: bool) -> ProbeEffect {
    match (kind, success) {
        (ProbeKind::Startup, true) if !started => ProbeEffect::Started,
        (ProbeKind::Readiness, ready) => ProbeEffect::Ready(ready),
        (ProbeKind::Liveness | ProbeKind::Startup, false) => ProbeEffect::Restart,
        _ => ProbeEffect::Nothing,
    }
}

/// Without a readiness probe a started container is ready.
pub fn ready_when_started(c: &Container) -> bool {
    c.readiness_probe.is_none()
}

/// The pod's grace period: terminationGracePeriodSeconds (30 when unset), at least
/// [`MIN_GRACE`].
pub fn pod_grace(spec: Option<&PodSpec>) -> Duration {
    let secs = spec.and_then(|s| s.termination_grace_period_seconds);
    secs.map_or(DEFAULT_GRACE, |s| Duration::from_secs(s.max(0) as u64))
        .max(MIN_GRACE)
}

/// The grace period of a stop: the pod's own, or for an eviction the kubelet's override
/// of 1 s (immediateEvictionGracePeriodSeconds), which its 2 s minimum raises to
/// [`MIN_GRACE`].
pub fn stop_grace(pod_grace: Duration, evicted: bool) -> Duration {
    if evicted {
        MIN_GRACE
    } else {
        pod_grace
    }
}

/// How a preStop hook ended, for [`kill_deadline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreStop {
    /// No hook, or it finished (well or not) within the grace period.
    Done,
    /// It was still running when the grace period ended.
    TimedOut,
}

/// How long after the stop signal SIGKILL follows: what is left of the grace period, or
/// the one-time extension when the preStop hook used it up.
pub fn kill_deadline(grace: Duration, pre_stop_took: Duration, pre_stop: PreStop) -> Duration {
    match pre_stop {
        PreStop::Done => grace.saturating_sub(pre_stop_took),
        PreStop::TimedOut => PRE_STOP_EXTENSION,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::BackoffPolicy;

    fn container(yaml: &str) -> Container {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn restart_policy_parses_and_defaults_to_always() {
        let of = |y: &str| RestartPolicy::of(Some(&spec(y)));
        assert_eq!(of("containers: []"), RestartPolicy::Always);
        assert_eq!(
            of("{containers: [], restartPolicy: Never}"),
            RestartPolicy::Never
        );
        assert_eq!(
            of("{containers: [], restartPolicy: OnFailure}"),
            RestartPolicy::OnFailure
        );
        assert_eq!(RestartPolicy::of(None), RestartPolicy::Always);
    }

    #[test]
    fn app_containers_follow_the_pod_restart_policy() {
        use RestartPolicy::*;
        for (policy, code, restarts) in [
            (Always, 0, true),
            (Always, 1, true),
            (OnFailure, 0, false),
            (OnFailure, 137, true),
            (Never, 0, false),
            (Never, 1, false),
        ] {
            assert_eq!(
                Role::App.restarts(policy, &plain(), code),
                restarts,
                "{policy:?} {code}"
            );
        }
    }

    #[test]
    fn init_containers_retry_failures_unless_never_and_sidecars_always_restart() {
        use RestartPolicy::*;
        for policy in [Always, OnFailure, Never] {
            assert!(!Role::Init.restarts(policy, &plain(), 0), "{policy:?}");
            assert!(Role::Sidecar.restarts(policy, &plain(), 0), "{policy:?}");
            assert!(Role::Sidecar.restarts(policy, &plain(), 1), "{policy:?}");
        }
        assert!(Role::Init.restarts(Always, &plain(), 1));
        assert!(Role::Init.restarts(OnFailure, &plain(), 1));
        assert!(!Role::Init.restarts(Never, &plain(), 1));
    }

    fn plain() -> Container {
        container("{name: c}")
    }

    #[test]
    fn container_restart_rules_come_before_the_pod_policy() {
        use RestartPolicy::*;
        let rules = |policy: &str| {
            container(&format!(
                "{{name: c, restartPolicy: {policy}, restartPolicyRules: [{{action: Restart, exitCodes: {{operator: In, values: [42]}}}}]}}"
            ))
        };
        // A pod that never restarts still restarts a container on a listed exit code.
        let never = rules("Never");
        assert!(Role::App.restarts(Never, &never, 42));
        assert!(!Role::App.restarts(Never, &never, 1));
        assert!(!Role::App.restarts(Always, &never, 1));
        assert!(!Role::App.restarts(Always, &never, 0));
        let on_failure = rules("OnFailure");
        assert!(Role::App.restarts(Never, &on_failure, 1));
        assert!(!Role::App.restarts(Always, &on_failure, 0));
        // Init containers: a failure restarts per the container's rules and policy, not the
        // pod's; a success never restarts.
        assert!(Role::Init.restarts(Never, &never, 42));
        assert!(!Role::Init.restarts(Always, &never, 1));
        assert!(Role::Init.restarts(Never, &on_failure, 1));
        assert!(!Role::Init.restarts(Always, &rules("Always"), 0));
        let not_in = container(
            "{name: c, restartPolicy: Never, restartPolicyRules: [{action: Restart, exitCodes: {operator: NotIn, values: [0, 2]}}]}",
        );
        assert!(Role::App.restarts(Never, &not_in, 1));
        assert!(!Role::App.restarts(Never, &not_in, 2));
        let mut crash = Backoff::restarts(crate::backoff::BackoffPolicy::default());
        let ran = Duration::from_secs(1);
        assert_eq!(
            after_exit(Role::App, Never, &never, 1, ran, &mut crash),
            AfterExit::Done(Outcome::Failed)
        );
        assert_eq!(
            after_exit(Role::App, Never, &never, 42, ran, &mut crash),
            AfterExit::Restart {
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn after_exit_decides_and_advances_the_back_off_only_on_restart() {
        let mut crash = Backoff::restarts(BackoffPolicy::default());
        let ran = Duration::from_secs(1);
        let never = RestartPolicy::Never;
        assert_eq!(
            after_exit(Role::App, never, &plain(), 0, ran, &mut crash),
            AfterExit::Done(Outcome::Succeeded)
        );
        assert_eq!(
            after_exit(Role::App, never, &plain(), 2, ran, &mut crash),
            AfterExit::Done(Outcome::Failed)
        );
        let always = RestartPolicy::Always;
        let delays: Vec<u64> = (0..4)
            .map(
                |_| match after_exit(Role::App, always, &plain(), 1, ran, &mut crash) {
                    AfterExit::Restart { delay } => delay.as_secs(),
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        // The two Done above did not count as failures: the first restart is immediate.
        assert_eq!(delays, [0, 10, 20, 40]);
        // Ten minutes of running forgive the crash loop.
        assert_eq!(
            after_exit(
                Role::App,
                always,
                &plain(),
                1,
                Duration::from_secs(600),
                &mut crash
            ),
            AfterExit::Restart {
                delay: Duration::ZERO
            }
        );
    }

    #[test]
    fn init_steps_in_order() {
        let init = container("{name: i, image: x}");
        let sidecar = container("{name: s, image: x, restartPolicy: Always}");
        assert_eq!(Role::of_init(&init), Role::Init);
        assert_eq!(Role::of_init(&sidecar), Role::Sidecar);
        assert_eq!(init_step(&init, false), InitStep::RunToCompletion);
        assert_eq!(init_step(&init, true), InitStep::AlreadyDone);
        assert_eq!(init_step(&sidecar, false), InitStep::StartSidecar);
        assert_eq!(init_step(&sidecar, true), InitStep::StartSidecar);
        assert!(waits_for_pod_stop(Role::App));
        assert!(waits_for_pod_stop(Role::Sidecar));
        assert!(!waits_for_pod_stop(Role::Init));
    }

    #[test]
    fn probe_effects() {
        use ProbeKind::*;
        assert_eq!(probe_effect(Startup, true, false), ProbeEffect::Started);
        assert_eq!(probe_effect(Startup, true, true), ProbeEffect::Nothing);
        assert_eq!(probe_effect(Startup, false, false), ProbeEffect::Restart);
        assert_eq!(probe_effect(Liveness, false, true), ProbeEffect::Restart);
        assert_eq!(probe_effect(Liveness, true, true), ProbeEffect::Nothing);
        assert_eq!(
            probe_effect(Readiness, true, true),
            ProbeEffect::Ready(true)
        );
        assert_eq!(
            probe_effect(Readiness, false, true),
            ProbeEffect::Ready(false)
        );
        assert!(ready_when_started(&container("{name: a}")));
        assert!(!ready_when_started(&container(
            "{name: a, readinessProbe: {exec: {command: [x]}}}"
        )));
    }

    #[test]
    fn grace_periods() {
        let g = |y: &str| pod_grace(Some(&spec(y)));
        assert_eq!(pod_grace(None), Duration::from_secs(30));
        assert_eq!(g("containers: []"), Duration::from_secs(30));
        assert_eq!(
            g("{containers: [], terminationGracePeriodSeconds: 5}"),
            Duration::from_secs(5)
        );
        assert_eq!(
            g("{containers: [], terminationGracePeriodSeconds: 0}"),
            MIN_GRACE
        );
        assert_eq!(
            g("{containers: [], terminationGracePeriodSeconds: -3}"),
            MIN_GRACE
        );
        let five = Duration::from_secs(5);
        assert_eq!(stop_grace(five, false), five);
        assert_eq!(stop_grace(five, true), MIN_GRACE);
        assert_eq!(
            kill_deadline(five, Duration::from_secs(2), PreStop::Done),
            Duration::from_secs(3)
        );
        assert_eq!(
            kill_deadline(five, five, PreStop::TimedOut),
            PRE_STOP_EXTENSION
        );
        assert_eq!(
            kill_deadline(five, Duration::from_secs(9), PreStop::Done),
            Duration::ZERO
        );
    }
}
