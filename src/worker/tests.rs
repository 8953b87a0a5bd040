//! The worker's rules driven through the real driver on fake services and tokio's
//! paused clock: the harness, and restart policies, crash-loop back-off, image pulls and
//! pod setup (init order, sidecars and adoption are in `order_tests.rs`; probes, hooks,
//! grace periods and eviction in `probe_tests.rs`). No root, no containers; times are
//! virtual seconds since the pod's worker started.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::container::container_id;
use super::deps::Deps;
use super::driver::run_pod;
use super::fakes::{self, Fake, FakeHandle, FakeRuntime, FakeStatus, Script};
use crate::manifest::StaticPod;
use crate::runtime::Adopted;

pub(super) const UID: &str = "u1";

/// A pod on the host network (no sandbox to make) with a 5 s grace period; `body` is
/// the rest of its spec, indented by two spaces.
pub(super) fn pod(body: &str) -> Arc<StaticPod> {
    pod_with_grace(5, body)
}

pub(super) fn pod_with_grace(grace_s: u32, body: &str) -> Arc<StaticPod> {
    let yaml = format!(
        "metadata: {{name: p, namespace: default}}\nspec:\n  hostNetwork: true\n  hostIPC: true\n  terminationGracePeriodSeconds: {grace_s}\n{body}"
    );
    Arc::new(StaticPod {
        pod: serde_yaml::from_str(&yaml).unwrap(),
        uid: UID.into(),
        source: Default::default(),
    })
}

pub(super) struct Run {
    pub rt: FakeRuntime,
    pub status: FakeStatus,
    pub deps: Arc<Deps<Fake>>,
    _dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    /// Edited specs, as the manager sends them for an in-place resize.
    pub resize: watch::Sender<Arc<StaticPod>>,
    task: JoinHandle<()>,
}

pub(super) fn launch(
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
    let (resize, resize_rx) = watch::channel(pod.clone());
    let task = tokio::spawn(run_pod(
        pod,
        adopted,
        deps.clone(),
        stop_rx,
        Vec::new(),
        resize_rx,
    ));
    Run {
        rt,
        status,
        deps,
        _dir: dir,
        stop,
        resize,
        task,
    }
}

pub(super) fn start(pod: Arc<StaticPod>, rt: FakeRuntime) -> Run {
    launch(pod, rt, Vec::new(), |_, _| {})
}

impl Run {
    /// Lets the pod run until `secs` seconds after its start.
    pub async fn at(&self, secs: u64) {
        tokio::time::sleep_until(self.rt.t0() + Duration::from_secs(secs)).await
    }

    /// The start times (seconds) of `container`'s instances, in order.
    pub fn starts(&self, container: &str) -> Vec<u64> {
        let prefix = format!("start {container} #");
        let events = self.rt.events();
        events
            .iter()
            .filter(|(_, e)| e.starts_with(&prefix))
            .map(|(t, _)| t.as_secs())
            .collect()
    }

    /// Stops the pod and waits (virtually) for its worker to finish.
    pub async fn stop(self) -> Self {
        self.stop.send(true).unwrap();
        self.finished().await
    }

    pub async fn finished(mut self) -> Self {
        let task = &mut self.task;
        tokio::time::timeout(Duration::from_secs(3600), task)
            .await
            .expect("the worker ends")
            .unwrap();
        self
    }
}

/// Events in the order they happened: each of `expected` occurs, in this order.
pub(super) fn in_order(events: &[String], expected: &[&str]) {
    let mut pos = 0;
    for e in expected {
        match events[pos..].iter().position(|x| x == e) {
            Some(i) => pos += i + 1,
            None => panic!("{e:?} missing or out of order in {events:#?}"),
        }
    }
}

pub(super) fn names(rt: &FakeRuntime) -> Vec<String> {
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
async fn restart_rules_restart_on_listed_exit_codes_only() {
    let rt = FakeRuntime::new();
    rt.script(
        "app",
        &[
            Script::exits(1, 42),
            Script::exits(1, 42),
            Script::exits(1, 1),
        ],
    );
    rt.script("init", &[Script::exits(1, 3), Script::exits(1, 0)]);
    let spec = "  restartPolicy: Never
  initContainers: [{name: init, image: img, command: [x], restartPolicy: Never,
    restartPolicyRules: [{action: Restart, exitCodes: {operator: NotIn, values: [7]}}]}]
  containers: [{name: app, image: img, command: [x], restartPolicy: Never,
    restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]}]";
    let run = start(pod(spec), rt);
    run.at(200).await;
    // The init container's exit 3 is not in [7]: restarted at once, then succeeds.
    assert_eq!(run.starts("init"), [0, 1]);
    // 42 restarts (at once, then after 10 s of back-off); 1 is not listed and the
    // container's policy is Never.
    assert_eq!(run.starts("app"), [2, 3, 14]);
    assert_eq!(run.status.reports().last().unwrap(), "app Terminated 1");
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
async fn a_pod_network_pod_waits_while_the_network_is_not_ready() {
    let rt = FakeRuntime::new();
    let yaml = "metadata: {name: p, namespace: default}\nspec:\n  containers: [{name: app, image: img, command: [x]}]";
    let pod = Arc::new(StaticPod {
        pod: serde_yaml::from_str(yaml).unwrap(),
        uid: UID.into(),
        source: Default::default(),
    });
    // The fake network's bin dir holds no plugin.
    let run = start(pod, rt);
    run.at(60).await;
    assert_eq!(
        run.status.named("pod AllWaiting"),
        ["pod AllWaiting NetworkNotReady"]
    );
    assert!(run.starts("app").is_empty());
    // Stopped while it waits: nothing was made, nothing to undo.
    let run = run.stop().await;
    assert!(run.starts("app").is_empty());
    assert_eq!(run.status.named("pod Removed"), ["pod Removed"]);
}

#[tokio::test(start_paused = true)]
async fn a_resize_restarts_only_the_containers_whose_policy_asks_for_it() {
    let body = |mem: &str| {
        format!(
            r#"  containers:
  - {{name: a, image: img, command: [x], resources: {{limits: {{cpu: 500m, memory: {mem}}}}}}}
  - name: b
    image: img
    command: [x]
    resizePolicy: [{{resourceName: memory, restartPolicy: RestartContainer}}]
    resources: {{limits: {{cpu: 500m, memory: {mem}}}}}
"#
        )
    };
    let run = start(pod(&body("64Mi")), FakeRuntime::new());
    run.at(5).await;
    let mut new = StaticPod::clone(&pod(&body("96Mi")));
    new.uid = "edited".into();
    run.resize.send(Arc::new(new)).unwrap();
    run.at(20).await;
    // b was stopped and started again at once (no back-off), a kept running.
    assert_eq!(run.starts("a"), [0]);
    assert_eq!(run.starts("b"), [0, 5]);
    let reports = run.status.reports();
    in_order(
        &reports,
        &["b Terminated 143", "b Restarting 1", "b Running"],
    );
    assert!(
        !reports.iter().any(|r| r.starts_with("a Restarting")),
        "{reports:#?}"
    );
    in_order(
        &reports,
        &["pod Resize Some(InProgress)", "pod Resize None"],
    );
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_resize_sent_while_the_pod_is_prepared_is_applied_once_it_runs() {
    let body = |cpu: &str| {
        format!("  containers:\n  - {{name: a, image: img, command: [x], resources: {{limits: {{cpu: {cpu}}}}}}}\n")
    };
    let run = start(pod(&body("500m")), FakeRuntime::new());
    let mut new = StaticPod::clone(&pod(&body("700m")));
    new.uid = "edited".into();
    run.resize.send(Arc::new(new)).unwrap();
    run.at(5).await;
    // Applied as soon as the pod's containers are run: a starts with the new resources.
    in_order(
        &run.status.reports(),
        &[
            "pod Resize Some(InProgress)",
            "pod Resize None",
            "a Running",
        ],
    );
    assert_eq!(run.starts("a"), [0]);
    run.stop().await;
}
