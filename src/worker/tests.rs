//! The worker's rules driven through the real driver on fake services and tokio's
//! paused clock: restart policies, crash-loop back-off, init order, sidecars, probes,
//! hooks, grace periods, adoption, eviction. No root, no containers; times below are
//! virtual seconds since the pod's worker started.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::container::container_id;
use super::deps::Deps;
use super::driver::{run_pod, stop_orphan};
use super::fakes::{self, CheckResult, Fake, FakeHandle, FakeRuntime, FakeStatus, Script};
use super::services::StatusSink;
use crate::manifest::StaticPod;
use crate::runtime::{Adopted, ExitRecord, MonitorConfig};

const UID: &str = "u1";

/// A pod on the host network (no sandbox to make) with a 5 s grace period; `body` is
/// the rest of its spec, indented by two spaces.
fn pod(body: &str) -> Arc<StaticPod> {
    pod_with_grace(5, body)
}

fn pod_with_grace(grace_s: u32, body: &str) -> Arc<StaticPod> {
    let yaml = format!(
        "metadata: {{name: p, namespace: default}}\nspec:\n  hostNetwork: true\n  hostIPC: true\n  terminationGracePeriodSeconds: {grace_s}\n{body}"
    );
    Arc::new(StaticPod {
        pod: serde_yaml::from_str(&yaml).unwrap(),
        uid: UID.into(),
        source: Default::default(),
    })
}

struct Run {
    rt: FakeRuntime,
    status: FakeStatus,
    deps: Arc<Deps<Fake>>,
    _dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn launch(
    pod: Arc<StaticPod>,
    rt: FakeRuntime,
    adopted: Vec<Adopted<FakeHandle>>,
    tweak: impl FnOnce(&mut Deps<Fake>, &Path),
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let status = FakeStatus::default();
    let mut deps = fakes::deps(dir.path(), rt.clone(), status.clone());
    tweak(&mut deps, dir.path());
    let deps = Arc::new(deps);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run_pod(pod, adopted, deps.clone(), stop_rx, Vec::new()));
    Run {
        rt,
        status,
        deps,
        _dir: dir,
        stop,
        task,
    }
}

fn start(pod: Arc<StaticPod>, rt: FakeRuntime) -> Run {
    launch(pod, rt, Vec::new(), |_, _| {})
}

impl Run {
    /// Lets the pod run until `secs` seconds after its start.
    async fn at(&self, secs: u64) {
        tokio::time::sleep_until(self.rt.t0() + Duration::from_secs(secs)).await
    }

    /// The start times (seconds) of `container`'s instances, in order.
    fn starts(&self, container: &str) -> Vec<u64> {
        let prefix = format!("start {container} #");
        let events = self.rt.events();
        events
            .iter()
            .filter(|(_, e)| e.starts_with(&prefix))
            .map(|(t, _)| t.as_secs())
            .collect()
    }

    /// Stops the pod and waits (virtually) for its worker to finish.
    async fn stop(self) -> Self {
        self.stop.send(true).unwrap();
        self.finished().await
    }

    async fn finished(mut self) -> Self {
        let task = &mut self.task;
        tokio::time::timeout(Duration::from_secs(3600), task)
            .await
            .expect("the worker ends")
            .unwrap();
        self
    }
}

/// Events in the order they happened: each of `expected` occurs, in this order.
fn in_order(events: &[String], expected: &[&str]) {
    let mut pos = 0;
    for e in expected {
        match events[pos..].iter().position(|x| x == e) {
            Some(i) => pos += i + 1,
            None => panic!("{e:?} missing or out of order in {events:#?}"),
        }
    }
}

fn names(rt: &FakeRuntime) -> Vec<String> {
    rt.events().into_iter().map(|(_, e)| e).collect()
}

#[tokio::test(start_paused = true)]
async fn always_restarts_with_crash_loop_back_off_doubling_from_10s() {
    let rt = FakeRuntime::new();
    rt.script("app", &[Script::exits(1, 1); 5]);
    let run = start(
        pod("  containers: [{name: app, image: img, command: [x]}]"),
        rt,
    );
    run.at(80).await;
    // Exits after 1 s each time: restarted at once, then after 10, 20, 40 s.
    assert_eq!(run.starts("app"), [0, 1, 12, 33, 74]);
    // The fifth exited at 75 and waits out 80 s.
    let backoffs = run.status.named("app Waiting CrashLoopBackOff");
    assert_eq!(backoffs.len(), 4);
    in_order(
        &run.status.reports(),
        &[
            "app Terminated 1",
            "app Restarting 1",
            "app Running",
            "app Restarting 4",
        ],
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn back_off_caps_at_300s_and_forgives_a_10_minute_run() {
    let rt = FakeRuntime::new();
    let mut scripts = vec![Script::exits(1, 1); 8];
    scripts.push(Script::exits(600, 1));
    scripts.push(Script::exits(1, 1));
    rt.script("app", &scripts);
    let run = start(
        pod("  containers: [{name: app, image: img, command: [x]}]"),
        rt,
    );
    run.at(1600).await;
    let starts = run.starts("app");
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 1 s runs, then 0, 10, 20 … 160, 300, 300 s of back-off; the 600 s run resets it.
    assert_eq!(gaps, [1, 11, 21, 41, 81, 161, 301, 301, 600, 11]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn on_failure_restarts_failures_only() {
    let rt = FakeRuntime::new();
    rt.script("app", &[Script::exits(1, 1), Script::exits(1, 0)]);
    let spec = "  restartPolicy: OnFailure\n  containers: [{name: app, image: img, command: [x]}]";
    let run = start(pod(spec), rt);
    run.at(100).await;
    assert_eq!(run.starts("app"), [0, 1]);
    assert_eq!(run.status.reports().last().unwrap(), "app Terminated 0");
    // Done for good, but kept until the pod stops (removed once before, as debris of an
    // attempt that might not have started).
    let last = format!("remove {}", container_id(UID, "app", 1));
    let removed = |rt: &FakeRuntime| names(rt).iter().filter(|e| **e == last).count();
    assert_eq!(removed(&run.rt), 1);
    let run = run.stop().await;
    assert_eq!(removed(&run.rt), 2);
}

#[tokio::test(start_paused = true)]
async fn never_does_not_restart() {
    let rt = FakeRuntime::new();
    rt.script("app", &[Script::exits(1, 1)]);
    let spec = "  restartPolicy: Never\n  containers: [{name: app, image: img, command: [x]}]";
    let run = start(pod(spec), rt);
    run.at(100).await;
    assert_eq!(run.starts("app"), [0]);
    assert!(run.status.named("app Restarting").is_empty());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_start_failure_goes_through_the_restart_policy() {
    let rt = FakeRuntime::new();
    let fails = Script {
        start_fails: true,
        ..Script::SERVE
    };
    rt.script("app", &[fails, fails]);
    let run = start(
        pod("  containers: [{name: app, image: img, command: [x]}]"),
        rt,
    );
    run.at(30).await;
    // Failed at 0, retried at once, failed, retried after 10 s and runs.
    assert_eq!(run.starts("app"), [0, 0, 10]);
    assert_eq!(run.status.named("app Terminated 128").len(), 2);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_one_after_the_other_before_the_apps() {
    let rt = FakeRuntime::new();
    rt.script("one", &[Script::exits(2, 0)]);
    rt.script("two", &[Script::exits(3, 0)]);
    let spec = "  initContainers: [{name: one, image: img, command: [x]}, {name: two, image: img, command: [x]}]\n  containers: [{name: app, image: img, command: [x]}, {name: web, image: img, command: [x]}]";
    let run = start(pod(spec), rt);
    run.at(20).await;
    assert_eq!(run.starts("one"), [0]);
    assert_eq!(run.starts("two"), [2]);
    assert_eq!(run.starts("app"), [5]);
    assert_eq!(run.starts("web"), [5]);
    in_order(
        &run.status.reports(),
        &[
            "init one Running",
            "init one Terminated 0",
            "init two Running",
            "init two Terminated 0",
            "app Running",
        ],
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_init_container_is_retried_unless_the_pod_never_restarts() {
    let rt = FakeRuntime::new();
    rt.script("init", &[Script::exits(1, 1), Script::exits(1, 0)]);
    let spec = "  initContainers: [{name: init, image: img, command: [x]}]\n  containers: [{name: app, image: img, command: [x]}]";
    let run = start(pod(spec), rt);
    run.at(20).await;
    assert_eq!(run.starts("init"), [0, 1]);
    assert_eq!(run.starts("app"), [2]);
    run.stop().await;

    let rt = FakeRuntime::new();
    rt.script("init", &[Script::exits(1, 1)]);
    let never = format!("  restartPolicy: Never\n{spec}");
    let run = start(pod(&never), rt);
    run.at(100).await;
    assert_eq!(run.starts("init"), [0]);
    assert!(
        run.starts("app").is_empty(),
        "the pod failed: no app container"
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn sidecars_start_in_order_keep_running_and_stop_after_the_apps_in_reverse() {
    let rt = FakeRuntime::new();
    rt.script("init", &[Script::exits(2, 0)]);
    let spec = "  initContainers:\n  - {name: s1, image: img, command: [x], restartPolicy: Always}\n  - {name: init, image: img, command: [x]}\n  - {name: s2, image: img, command: [x], restartPolicy: Always}\n  containers: [{name: app, image: img, command: [x]}]";
    let run = start(pod(spec), rt);
    run.at(10).await;
    assert_eq!(run.starts("s1"), [0]);
    assert_eq!(run.starts("init"), [0]);
    assert_eq!(run.starts("s2"), [2]);
    assert_eq!(run.starts("app"), [2]);
    assert!(run.rt.named("stop").is_empty(), "{:?}", run.rt.events());
    let run = run.stop().await;
    assert_eq!(run.rt.named("stop"), ["stop app", "stop s2", "stop s1"]);
}

#[tokio::test(start_paused = true)]
async fn the_next_init_container_waits_for_a_sidecars_startup_probe() {
    let rt = FakeRuntime::new();
    rt.check("boot", |t| CheckResult {
        takes: Duration::ZERO,
        ok: t >= Duration::from_secs(3),
    });
    let spec = "  initContainers:\n  - name: s1\n    image: img\n    command: [x]\n    restartPolicy: Always\n    startupProbe: {exec: {command: [boot]}, periodSeconds: 1, failureThreshold: 10}\n  containers: [{name: app, image: img, command: [x]}]";
    let run = start(pod(spec), rt);
    run.at(10).await;
    assert_eq!(run.starts("s1"), [0]);
    assert_eq!(run.starts("app"), [3]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn sidecars_restart_even_when_the_pod_never_restarts() {
    let rt = FakeRuntime::new();
    rt.script("side", &[Script::exits(1, 0)]);
    rt.script("app", &[Script::exits(5, 0)]);
    let spec = "  restartPolicy: Never\n  initContainers: [{name: side, image: img, command: [x], restartPolicy: Always}]\n  containers: [{name: app, image: img, command: [x]}]";
    let run = start(pod(spec), rt);
    run.at(20).await;
    // Exit 0 under Never: a sidecar restarts anyway; the app does not.
    assert_eq!(run.starts("side"), [0, 1]);
    assert_eq!(run.starts("app"), [0]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let rt = FakeRuntime::new();
    rt.check("live", |t| CheckResult {
        takes: Duration::ZERO,
        ok: t < Duration::from_secs(5) || t >= Duration::from_secs(7),
    });
    let spec = "  containers:\n  - name: app\n    image: img\n    command: [x]\n    livenessProbe: {exec: {command: [live]}, periodSeconds: 1, failureThreshold: 2}";
    let run = start(pod(spec), rt);
    run.at(20).await;
    // Checks at 0, 1, …: failed at 5 and 6, the second failure kills it.
    assert_eq!(run.rt.times("stop app"), [6]);
    assert_eq!(run.starts("app"), [0, 6]);
    in_order(
        &run.status.reports(),
        &["app Terminated 143", "app Restarting 1"],
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_startup_probe_holds_back_liveness_and_readiness() {
    let rt = FakeRuntime::new();
    rt.check("boot", |t| CheckResult {
        takes: Duration::ZERO,
        ok: t >= Duration::from_secs(3),
    });
    for c in ["live", "ready"] {
        rt.check(c, |_| CheckResult {
            takes: Duration::ZERO,
            ok: true,
        });
    }
    let spec = "  containers:\n  - name: app\n    image: img\n    command: [x]\n    startupProbe: {exec: {command: [boot]}, periodSeconds: 1, failureThreshold: 10}\n    livenessProbe: {exec: {command: [live]}, periodSeconds: 1}\n    readinessProbe: {exec: {command: [ready]}, periodSeconds: 1}";
    let run = start(pod(spec), rt);
    run.at(10).await;
    assert_eq!(run.rt.times("check live app").first(), Some(&3));
    assert_eq!(run.rt.times("check ready app").first(), Some(&3));
    in_order(
        &run.status.reports(),
        &[
            "app Running",
            "app Started false",
            "app Started true",
            "app Ready true",
        ],
    );
    // Started without a readiness verdict is not ready: only the probe made it so.
    assert_eq!(run.status.named("app Ready").len(), 1);
    assert_eq!(run.starts("app"), [0]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_startup_probe_restarts_the_container() {
    let rt = FakeRuntime::new();
    rt.check("boot", |_| CheckResult {
        takes: Duration::ZERO,
        ok: false,
    });
    let spec = "  containers:\n  - name: app\n    image: img\n    command: [x]\n    startupProbe: {exec: {command: [boot]}, periodSeconds: 1, failureThreshold: 3}";
    let run = start(pod(spec), rt);
    run.at(3).await;
    assert_eq!(run.rt.times("stop app")[0], 2);
    assert_eq!(run.starts("app")[..2], [0, 2]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn readiness_changes_readiness_only() {
    let rt = FakeRuntime::new();
    rt.check("ready", |t| CheckResult {
        takes: Duration::ZERO,
        ok: t < Duration::from_secs(5),
    });
    let spec = "  containers:\n  - name: app\n    image: img\n    command: [x]\n    readinessProbe: {exec: {command: [ready]}, periodSeconds: 1, failureThreshold: 1}";
    let run = start(pod(spec), rt);
    run.at(10).await;
    assert_eq!(
        run.status.named("app Ready"),
        ["app Ready true", "app Ready false"]
    );
    assert_eq!(run.starts("app"), [0]);
    assert!(run.rt.named("stop").is_empty());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_readiness_probe_a_started_container_is_ready() {
    let rt = FakeRuntime::new();
    let run = start(
        pod("  containers: [{name: app, image: img, command: [x]}]"),
        rt,
    );
    run.at(1).await;
    in_order(
        &run.status.reports(),
        &["app Running", "app Started true", "app Ready true"],
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_post_start_hook_kills_the_container() {
    let rt = FakeRuntime::new();
    rt.check("hook", |_| CheckResult {
        takes: Duration::from_secs(1),
        ok: false,
    });
    let spec = "  containers:\n  - name: app\n    image: img\n    command: [x]\n    lifecycle: {postStart: {exec: {command: [hook]}}}";
    let run = start(pod(spec), rt);
    run.at(5).await;
    assert_eq!(run.rt.times("stop app")[0], 1);
    assert_eq!(run.starts("app")[..2], [0, 1]);
    // Not started (nor ready) before its postStart hook succeeded.
    assert!(run.status.named("app Started true").is_empty());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_first_then_the_stop_signal_then_sigkill_after_the_grace_period() {
    let rt = FakeRuntime::new();
    rt.script(
        "app",
        &[Script {
            ignores_stop: true,
            ..Script::SERVE
        }],
    );
    rt.check("drain", |_| CheckResult {
        takes: Duration::from_secs(1),
        ok: true,
    });
    let spec = "  containers:\n  - name: app\n    image: img\n    command: [x]\n    lifecycle: {preStop: {exec: {command: [drain]}}}";
    let run = start(pod(spec), rt);
    run.at(10).await;
    let run = run.stop().await;
    assert_eq!(run.rt.times("check drain app"), [10]);
    assert_eq!(run.rt.times("stop app"), [11]);
    // The 5 s grace period counts from the beginning of the stop, preStop included.
    assert_eq!(run.rt.times("kill app"), [15]);
}

#[tokio::test(start_paused = true)]
async fn a_pre_stop_hook_that_uses_up_the_grace_period_gets_2s_more() {
    let rt = FakeRuntime::new();
    rt.script(
        "app",
        &[Script {
            ignores_stop: true,
            ..Script::SERVE
        }],
    );
    rt.check("drain", |_| CheckResult {
        takes: Duration::from_secs(100),
        ok: true,
    });
    let spec = "  containers:\n  - name: app\n    image: img\n    command: [x]\n    lifecycle: {preStop: {exec: {command: [drain]}}}";
    let run = start(pod(spec), rt);
    run.at(10).await;
    let run = run.stop().await;
    assert_eq!(run.rt.times("stop app"), [15]);
    assert_eq!(run.rt.times("kill app"), [17]);
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_back_off_ends_at_once() {
    let rt = FakeRuntime::new();
    rt.script("app", &[Script::exits(1, 1); 3]);
    let run = start(
        pod("  containers: [{name: app, image: img, command: [x]}]"),
        rt,
    );
    run.at(5).await;
    let before = tokio::time::Instant::now();
    let run = run.stop().await;
    assert!(before.elapsed() < Duration::from_secs(1));
    assert_eq!(run.starts("app"), [0, 1]);
}

fn monitor_config(container: &str, restart_count: u32) -> MonitorConfig {
    MonitorConfig {
        id: container_id(UID, container, restart_count),
        pod_uid: UID.into(),
        pod_name: "p".into(),
        pod_namespace: "default".into(),
        container: container.into(),
        restart_count,
        bundle: Default::default(),
        lower: Vec::new(),
        image_digest: "sha256:old".into(),
        log_path: Default::default(),
        stop_signal: 15,
        cgroups_path: String::new(),
        cgroup_driver: Default::default(),
        log_limits: Default::default(),
    }
}

fn exited(code: i32) -> ExitRecord {
    ExitRecord {
        exit_code: code,
        signal: None,
        oom_killed: false,
        started_at: None,
        finished_at: jiff::Timestamp::now().to_string(),
        start_error: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_running_adopted_container_is_kept_and_its_dead_leftovers_removed() {
    let rt = FakeRuntime::new();
    let cfg = monitor_config("app", 3);
    let adopted = vec![
        Adopted {
            running: Some(rt.adopt_running(&cfg)),
            config: cfg,
            exit: None,
        },
        Adopted {
            config: monitor_config("app", 2),
            running: None,
            exit: Some(exited(1)),
        },
    ];
    let spec = "  containers: [{name: app, image: img, command: [x]}]";
    let run = launch(pod(spec), rt, adopted, |_, _| {});
    run.at(10).await;
    assert!(run.starts("app").is_empty(), "{:?}", run.rt.events());
    assert_eq!(
        run.rt.named("remove"),
        [format!("remove {}", container_id(UID, "app", 2))]
    );
    in_order(
        &run.status.reports(),
        &["app RestartCount 3", "app Running"],
    );
    let run = run.stop().await;
    assert_eq!(run.rt.named("stop"), ["stop app"]);
}

#[tokio::test(start_paused = true)]
async fn an_adopted_exit_goes_through_the_restart_policy() {
    let rt = FakeRuntime::new();
    let adopted = vec![Adopted {
        config: monitor_config("app", 2),
        running: None,
        exit: Some(exited(1)),
    }];
    let spec = "  containers: [{name: app, image: img, command: [x]}]";
    let run = launch(pod(spec), rt, adopted, |_, _| {});
    run.at(1).await;
    assert_eq!(run.rt.named("start"), ["start app #3"]);
    in_order(
        &run.status.reports(),
        &[
            "app RestartCount 2",
            "app Terminated 1",
            "app Restarting 3",
            "app Running",
        ],
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_initialized_pod_does_not_run_its_init_containers_again() {
    let rt = FakeRuntime::new();
    let cfg = monitor_config("app", 0);
    let adopted = vec![
        Adopted {
            config: monitor_config("init", 0),
            running: None,
            exit: Some(exited(0)),
        },
        Adopted {
            running: Some(rt.adopt_running(&cfg)),
            config: cfg,
            exit: None,
        },
    ];
    let spec = "  initContainers: [{name: init, image: img, command: [x]}]\n  containers: [{name: app, image: img, command: [x]}]";
    let run = launch(pod(spec), rt, adopted, |_, _| {});
    run.at(10).await;
    assert!(run.rt.named("start").is_empty(), "{:?}", run.rt.events());
    assert_eq!(
        run.rt.named("remove"),
        [format!("remove {}", container_id(UID, "init", 0))]
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_orphan_is_stopped_with_its_spec_and_never_reported() {
    let rt = FakeRuntime::new();
    let cfg = monitor_config("app", 0);
    let adopted = vec![Adopted {
        running: Some(rt.adopt_running(&cfg)),
        config: cfg,
        exit: None,
    }];
    let dir = tempfile::tempdir().unwrap();
    let status = FakeStatus::default();
    let deps = Arc::new(fakes::deps(dir.path(), rt.clone(), status.clone()));
    stop_orphan(UID.to_string(), adopted, deps).await;
    assert_eq!(rt.named("stop"), ["stop app"]);
    assert!(status.named("pod Added").is_empty());
    assert!(!status.has_pod(UID));
}

#[tokio::test(start_paused = true)]
async fn pod_states_are_reported_once_each_in_order() {
    let rt = FakeRuntime::new();
    let run = start(
        pod("  containers: [{name: app, image: img, command: [x]}]"),
        rt,
    );
    run.at(5).await;
    let run = run.stop().await;
    let pod_reports = run.status.named("pod ");
    assert_eq!(pod_reports, ["pod Added", "pod Terminating", "pod Removed"]);
    let reports = run.status.reports();
    let counts = fakes::counts(&reports);
    assert_eq!(counts["app Running"], 1);
    assert_eq!(counts["app Waiting ContainerCreating"], 1);
    assert!(!run.deps.layout.pod(UID).exists(), "pod directory removed");
}

#[tokio::test(start_paused = true)]
async fn image_pull_failures_back_off_from_10s() {
    let rt = FakeRuntime::new();
    let spec = "  containers: [{name: app, image: img, command: [x]}]";
    let run = launch(pod(spec), rt, Vec::new(), |d, _| {
        *d.images.failures.get_mut().unwrap() = 2;
    });
    run.at(40).await;
    assert_eq!(run.starts("app"), [30]);
    in_order(
        &run.status.reports(),
        &[
            "app Waiting ErrImagePull",
            "app Waiting ImagePullBackOff",
            "app Waiting ErrImagePull",
            "app ImageId sha256:fake",
            "app Running",
        ],
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_cannot_be_prepared_is_retried_with_back_off() {
    let rt = FakeRuntime::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("needed");
    let spec = format!(
        "  volumes: [{{name: v, hostPath: {{path: {}, type: File}}}}]\n  containers: [{{name: app, image: img, command: [x]}}]",
        file.display()
    );
    let run = start(pod(&spec), rt);
    run.at(5).await;
    assert_eq!(
        run.status.named("pod AllWaiting"),
        ["pod AllWaiting CreateContainerConfigError"]
    );
    assert!(run.starts("app").is_empty());
    std::fs::write(&file, "").unwrap();
    run.at(11).await;
    assert_eq!(run.starts("app"), [10]);
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_emptydir_over_its_size_limit_evicts_the_pod_with_a_2s_grace_period() {
    let rt = FakeRuntime::new();
    rt.script(
        "app",
        &[Script {
            ignores_stop: true,
            ..Script::SERVE
        }],
    );
    let spec = "  volumes: [{name: scratch, emptyDir: {sizeLimit: 64Ki}}]\n  containers: [{name: app, image: img, command: [x]}]";
    // The pod's own grace period is 30 s: an eviction uses 2 s.
    let run = start(pod_with_grace(30, spec), rt);
    run.at(3).await;
    assert!(run.status.named("pod Evicted").is_empty());
    let volume = run.deps.layout.pod(UID).join("volumes/scratch");
    std::fs::write(volume.join("big"), vec![1u8; 256 * 1024]).unwrap();
    std::fs::File::open(volume.join("big"))
        .unwrap()
        .sync_all()
        .unwrap();
    run.at(10).await;
    assert_eq!(run.status.named("pod Evicted"), ["pod Evicted Evicted"]);
    let stop = run.rt.times("stop app");
    assert_eq!(stop.len(), 1);
    assert_eq!(run.rt.times("kill app"), [stop[0] + 2]);
    // Recorded, its volumes freed, no restart: it stays so until its manifest changes.
    let pod_dir = run.deps.layout.pod(UID);
    assert!(pod_dir.join("evicted").exists());
    assert!(!volume.exists());
    assert_eq!(run.starts("app"), [0]);
    let run = run.stop().await;
    assert_eq!(run.status.named("pod ").last().unwrap(), "pod Removed");
}
