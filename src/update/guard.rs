//! Health-gated rollback's rules: a new revision is good once the pod has been Ready for
//! [`STABLE`] with no container restart (a container without a readiness probe is Ready
//! the instant it runs, even one that exits a moment later); it has failed when a
//! container enters CrashLoopBackOff, the pod fails, or it is not Ready within the
//! deadline (`hostlet.io/rollback-after`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::status::StatusStore;

/// How often a guarded pod's status is looked at.
pub const PERIOD: Duration = Duration::from_secs(1);
/// How long a pod stays Ready, its containers not restarting, before its revision is good
/// (the idea of a Deployment's `minReadySeconds`).
pub const STABLE: Duration = Duration::from_secs(10);

/// What the status says of a pod now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub ready: bool,
    /// A container waiting in CrashLoopBackOff.
    pub crash_loop: Option<String>,
    /// The pod's phase is Failed (restartPolicy Never or OnFailure).
    pub pod_failed: bool,
    /// Restarts of all its containers: a change means a container exited.
    pub restarts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    Failed {
        /// `CrashLoopBackOff`, `PodFailed` or `NotReadyInTime`: the condition's reason.
        reason: &'static str,
        message: String,
    },
    /// The pod went away (stopped or replaced) before a verdict.
    Gone,
}

/// Where the guard reads pods' status (the status store, or a fake).
pub trait Health: Send + Sync + 'static {
    fn observe(&self, uid: &str) -> Option<Observation>;
}

/// The verdict on a revision `elapsed` after it started, if there is one yet. `seen`:
/// the pod was observed before (it is gone when no longer observed); `ready_for`: how
/// long it has been Ready without a restart.
pub fn judge(
    obs: Option<&Observation>,
    seen: bool,
    elapsed: Duration,
    deadline: Duration,
    ready_for: Duration,
) -> Option<Verdict> {
    match obs {
        None if seen => return Some(Verdict::Gone),
        Some(o) if o.ready => {
            // Ready now: good once it lasted, and the deadline does not cut that short.
            return (ready_for >= STABLE).then_some(Verdict::Ready);
        }
        Some(o) => {
            if let Some(c) = &o.crash_loop {
                return Some(Verdict::Failed {
                    reason: "CrashLoopBackOff",
                    message: format!("container {c} is in CrashLoopBackOff"),
                });
            }
            if o.pod_failed {
                return Some(Verdict::Failed {
                    reason: "PodFailed",
                    message: "the pod failed".into(),
                });
            }
        }
        None => {}
    }
    (elapsed >= deadline).then(|| Verdict::Failed {
        reason: "NotReadyInTime",
        message: format!("not Ready within {}s", deadline.as_secs()),
    })
}

/// Watches pod `uid` until there is a verdict.
pub async fn watch(health: &impl Health, uid: &str, deadline: Duration) -> Verdict {
    let started = tokio::time::Instant::now();
    let mut seen = false;
    // Since when the pod is Ready, and its restarts then.
    let mut ready_since: Option<(tokio::time::Instant, i64)> = None;
    loop {
        let obs = health.observe(uid);
        let now = tokio::time::Instant::now();
        ready_since = match &obs {
            Some(o) if o.ready => match ready_since {
                Some((at, restarts)) if restarts == o.restarts => Some((at, restarts)),
                _ => Some((now, o.restarts)),
            },
            _ => None,
        };
        let ready_for = ready_since.map_or(Duration::ZERO, |(at, _)| now - at);
        if let Some(v) = judge(obs.as_ref(), seen, started.elapsed(), deadline, ready_for) {
            return v;
        }
        seen |= obs.is_some();
        tokio::time::sleep(PERIOD).await;
    }
}

/// What a pod's status says, for the rules.
pub fn observe(pod: &Pod) -> Observation {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let crash_loop = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .chain(s.init_container_statuses.iter())
                .flatten()
        })
        .find(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"))
        })
        .map(|c| c.name.clone());
    let restarts = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .chain(s.init_container_statuses.iter())
                .flatten()
        })
        .map(|c| i64::from(c.restart_count))
        .sum();
    Observation {
        ready,
        crash_loop,
        pod_failed: status.and_then(|s| s.phase.as_deref()) == Some("Failed"),
        restarts,
    }
}

impl Health for StatusStore {
    fn observe(&self, uid: &str) -> Option<Observation> {
        self.pod_by_uid(uid).map(|p| observe(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const DEADLINE: Duration = Duration::from_secs(300);

    /// Observations that change at given times after the start.
    struct Script {
        start: tokio::time::Instant,
        steps: Mutex<Vec<(Duration, Option<Observation>)>>,
    }

    impl Script {
        fn new(steps: Vec<(u64, Option<Observation>)>) -> Self {
            Self {
                start: tokio::time::Instant::now(),
                steps: Mutex::new(
                    steps
                        .into_iter()
                        .map(|(s, o)| (Duration::from_secs(s), o))
                        .collect(),
                ),
            }
        }
    }

    impl Health for Script {
        fn observe(&self, _uid: &str) -> Option<Observation> {
            let now = self.start.elapsed();
            let steps = self.steps.lock().unwrap();
            steps
                .iter()
                .rev()
                .find(|(at, _)| *at <= now)
                .and_then(|(_, o)| o.clone())
        }
    }

    fn running() -> Option<Observation> {
        Some(Observation::default())
    }
    fn ready() -> Option<Observation> {
        Some(Observation {
            ready: true,
            ..Default::default()
        })
    }
    fn crashing() -> Option<Observation> {
        Some(Observation {
            crash_loop: Some("app".into()),
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn ready_before_the_deadline_is_good() {
        let h = Script::new(vec![(0, None), (2, running()), (40, ready())]);
        let t = tokio::time::Instant::now();
        assert_eq!(watch(&h, "u", DEADLINE).await, Verdict::Ready);
        assert_eq!(t.elapsed(), Duration::from_secs(40) + STABLE);
    }

    #[tokio::test(start_paused = true)]
    async fn ready_for_a_moment_is_not_good() {
        // No readiness probe: Ready while running, until the container exits and is
        // restarted (once at once, then with a back-off).
        let restarted = |n| {
            Some(Observation {
                ready: true,
                restarts: n,
                ..Default::default()
            })
        };
        let h = Script::new(vec![
            (0, ready()),
            (3, restarted(1)),
            (6, restarted(2)),
            (9, crashing()),
        ]);
        let v = watch(&h, "u", DEADLINE).await;
        assert!(
            matches!(
                v,
                Verdict::Failed {
                    reason: "CrashLoopBackOff",
                    ..
                }
            ),
            "{v:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ready_at_the_deadline_gets_its_time_to_prove_stable() {
        let h = Script::new(vec![(0, running()), (85, ready())]);
        let t = tokio::time::Instant::now();
        assert_eq!(
            watch(&h, "u", Duration::from_secs(90)).await,
            Verdict::Ready
        );
        assert_eq!(t.elapsed(), Duration::from_secs(85) + STABLE);
    }

    #[tokio::test(start_paused = true)]
    async fn not_ready_in_time_fails_at_the_deadline() {
        let h = Script::new(vec![(0, running())]);
        let t = tokio::time::Instant::now();
        match watch(&h, "u", Duration::from_secs(90)).await {
            Verdict::Failed { reason, message } => {
                assert_eq!(reason, "NotReadyInTime");
                assert_eq!(message, "not Ready within 90s");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(t.elapsed(), Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn crash_loop_fails_at_once() {
        let h = Script::new(vec![(0, running()), (11, crashing())]);
        let t = tokio::time::Instant::now();
        let v = watch(&h, "u", DEADLINE).await;
        assert!(
            matches!(
                v,
                Verdict::Failed {
                    reason: "CrashLoopBackOff",
                    ..
                }
            ),
            "{v:?}"
        );
        assert_eq!(t.elapsed(), Duration::from_secs(11));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_gone_before_a_verdict_is_gone() {
        // Not there at first (its predecessor is still stopping), then there, then gone.
        let h = Script::new(vec![(0, None), (5, running()), (20, None)]);
        assert_eq!(watch(&h, "u", DEADLINE).await, Verdict::Gone);
    }

    #[test]
    fn ready_wins_over_an_earlier_crash_loop_only_when_ready() {
        let mut o = crashing().unwrap();
        o.ready = true;
        assert_eq!(
            judge(Some(&o), true, DEADLINE, DEADLINE, STABLE),
            Some(Verdict::Ready)
        );
        assert_eq!(
            judge(Some(&o), true, DEADLINE, DEADLINE, Duration::ZERO),
            None
        );
        let failed = Observation {
            pod_failed: true,
            ..Default::default()
        };
        assert!(matches!(
            judge(
                Some(&failed),
                true,
                Duration::ZERO,
                DEADLINE,
                Duration::ZERO
            ),
            Some(Verdict::Failed {
                reason: "PodFailed",
                ..
            })
        ));
        assert_eq!(
            judge(None, false, Duration::ZERO, DEADLINE, Duration::ZERO),
            None
        );
    }
}
