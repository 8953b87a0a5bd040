//! Pod phase and conditions from container statuses, following the kubelet's getPhase
//! (pkg/kubelet/kubelet_pods.go) for the fields hostlet supports.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::manifest::restart_rules;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

fn terminated_code(c: &ContainerStatus) -> Option<i32> {
    c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

fn is_running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

/// Whether init container `name` is a sidecar (`restartPolicy: Always`).
fn is_sidecar(spec: &PodSpec, name: &str) -> bool {
    spec.init_containers
        .iter()
        .flatten()
        .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
}

/// True once every regular init container has succeeded and every sidecar has started.
pub fn initialized(spec: &PodSpec, init: &[ContainerStatus]) -> bool {
    init.iter().all(|c| {
        if is_sidecar(spec, &c.name) {
            c.started == Some(true) || c.restart_count > 0 || is_running(c)
        } else {
            terminated_code(c) == Some(0)
        }
    })
}

/// Whether container `name` (of `list`) runs again after exiting with `code`: its own restart
/// rules and policy, else the pod's (the kubelet's ContainerShouldRestart).
fn restarts(spec: &PodSpec, list: &[Container], name: &str, code: i32, init: bool) -> bool {
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let own = list
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| restart_rules::container_decides(c, code));
    match (own, init) {
        (Some(own), _) => own,
        // A failed init container is retried unless the pod never restarts.
        (None, true) => policy != "Never",
        (None, false) => match policy {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        },
    }
}

pub fn pod_phase(spec: &PodSpec, init: &[ContainerStatus], app: &[ContainerStatus]) -> PodPhase {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let init_failed = init.iter().any(|c| {
        !is_sidecar(spec, &c.name)
            && terminated_code(c)
                .is_some_and(|code| code != 0 && !restarts(spec, inits, &c.name, code, true))
    });
    if init_failed {
        return PodPhase::Failed;
    }
    if !initialized(spec, init) {
        return PodPhase::Pending;
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    // Stopped containers that will run again: the pod is still running.
    let mut restarting = 0;
    for c in app {
        match c.state.as_ref() {
            Some(s) if s.running.is_some() => running += 1,
            Some(s) if s.terminated.is_some() => {
                stopped += 1;
                let code = terminated_code(c).unwrap_or_default();
                if code == 0 {
                    succeeded += 1;
                }
                if restarts(spec, &spec.containers, &c.name, code, false) {
                    restarting += 1;
                }
            }
            // Waiting after having run once means "restarting", not "not started yet".
            _ if c
                .last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some()) =>
            {
                stopped += 1;
                restarting += 1;
            }
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        PodPhase::Pending
    } else if running > 0 || restarting > 0 {
        PodPhase::Running
    } else if stopped > 0 {
        if stopped == succeeded {
            PodPhase::Succeeded
        } else {
            PodPhase::Failed
        }
    } else {
        PodPhase::Pending
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, since: Timestamp) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.map(str::to_string),
        last_transition_time: Some(Time(since)),
        ..Default::default()
    }
}

/// PodScheduled, Initialized, ContainersReady, Ready.
pub fn conditions(
    spec: &PodSpec,
    init: &[ContainerStatus],
    app: &[ContainerStatus],
    since: Timestamp,
    phase: PodPhase,
) -> Vec<PodCondition> {
    let done = matches!(phase, PodPhase::Succeeded | PodPhase::Failed);
    let init_ok = initialized(spec, init) || done;
    let ready = !done && app.iter().all(|c| c.ready);
    let not_ready = if done {
        Some("PodCompleted")
    } else {
        Some("ContainersNotReady")
    };
    vec![
        condition("PodScheduled", true, None, since),
        condition(
            "Initialized",
            init_ok,
            (!init_ok).then_some("ContainersNotInitialized"),
            since,
        ),
        condition(
            "ContainersReady",
            ready,
            (!ready).then_some(not_ready).flatten(),
            since,
        ),
        condition(
            "Ready",
            ready,
            (!ready).then_some(not_ready).flatten(),
            since,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
        ContainerStateWaiting,
    };

    fn st(name: &str, state: &str, code: i32, restarts: i32) -> ContainerStatus {
        let state = match state {
            "running" => ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            },
            "terminated" => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            },
            _ => ContainerState {
                waiting: Some(ContainerStateWaiting::default()),
                ..Default::default()
            },
        };
        ContainerStatus {
            name: name.into(),
            state: Some(state),
            restart_count: restarts,
            ready: false,
            ..Default::default()
        }
    }

    fn spec(policy: &str, init: &[(&str, bool)]) -> PodSpec {
        PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: Some(
                init.iter()
                    .map(|(n, sidecar)| Container {
                        name: n.to_string(),
                        restart_policy: sidecar.then(|| "Always".to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let s = spec("Always", &[]);
        assert_eq!(
            pod_phase(&s, &[], &[st("a", "waiting", 0, 0)]),
            PodPhase::Pending
        );
        assert_eq!(
            pod_phase(&s, &[], &[st("a", "running", 0, 0)]),
            PodPhase::Running
        );
        assert_eq!(
            pod_phase(&s, &[], &[st("a", "terminated", 1, 0)]),
            PodPhase::Running
        );
        let mut restarting = st("a", "waiting", 0, 1);
        restarting.last_state = st("a", "terminated", 1, 0).state;
        assert_eq!(pod_phase(&s, &[], &[restarting]), PodPhase::Running);

        let never = spec("Never", &[]);
        assert_eq!(
            pod_phase(&never, &[], &[st("a", "terminated", 0, 0)]),
            PodPhase::Succeeded
        );
        assert_eq!(
            pod_phase(
                &never,
                &[],
                &[st("a", "terminated", 0, 0), st("b", "terminated", 2, 0)]
            ),
            PodPhase::Failed
        );
        let onf = spec("OnFailure", &[]);
        assert_eq!(
            pod_phase(&onf, &[], &[st("a", "terminated", 0, 0)]),
            PodPhase::Succeeded
        );
    }

    #[test]
    fn init_containers_gate_the_phase() {
        let s = spec("Always", &[("init", false), ("side", true)]);
        let app = [st("a", "waiting", 0, 0)];
        let init_running = [st("init", "running", 0, 0), st("side", "waiting", 0, 0)];
        assert_eq!(pod_phase(&s, &init_running, &app), PodPhase::Pending);
        assert!(!initialized(&s, &init_running));
        let mut side = st("side", "running", 0, 0);
        side.started = Some(true);
        let init_done = [st("init", "terminated", 0, 0), side];
        assert!(initialized(&s, &init_done));
        assert_eq!(
            pod_phase(&s, &init_done, &[st("a", "running", 0, 0)]),
            PodPhase::Running
        );
        let never = spec("Never", &[("init", false)]);
        assert_eq!(
            pod_phase(&never, &[st("init", "terminated", 1, 0)], &app),
            PodPhase::Failed
        );
    }

    #[test]
    fn container_restart_rules_decide_whether_a_stopped_pod_runs_on() {
        let rules: Container = serde_yaml::from_str(
            "{name: a, restartPolicy: Never, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]}",
        )
        .unwrap();
        let mut s = spec("Always", &[]);
        s.containers = vec![rules.clone()];
        let phase = |code| pod_phase(&s, &[], &[st("a", "terminated", code, 0)]);
        assert_eq!(phase(42), PodPhase::Running);
        assert_eq!(phase(1), PodPhase::Failed);
        assert_eq!(phase(0), PodPhase::Succeeded);
        // An init container that fails and whose rules do not restart it fails the pod,
        // whatever the pod's policy.
        let mut s = spec("Always", &[]);
        s.init_containers = Some(vec![Container {
            name: "init".into(),
            ..rules
        }]);
        let app = [st("b", "waiting", 0, 0)];
        let init = |code| pod_phase(&s, &[st("init", "terminated", code, 0)], &app);
        assert_eq!(init(1), PodPhase::Failed);
        assert_eq!(init(42), PodPhase::Pending);
    }

    #[test]
    fn ready_conditions() {
        let s = spec("Always", &[]);
        let mut a = st("a", "running", 0, 0);
        let t = Timestamp::now();
        let c = conditions(&s, &[], std::slice::from_ref(&a), t, PodPhase::Running);
        assert_eq!(c[3].type_, "Ready");
        assert_eq!(c[3].status, "False");
        a.ready = true;
        let c = conditions(&s, &[], &[a], t, PodPhase::Running);
        assert_eq!(
            (
                c[1].status.as_str(),
                c[2].status.as_str(),
                c[3].status.as_str()
            ),
            ("True", "True", "True")
        );
    }
}
