//! Init order, sidecars and adoption, through the real driver on fakes (see `tests.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::container::container_id;
use super::driver::stop_orphan;
use super::fakes::{self, CheckResult, FakeRuntime, FakeStatus, Script};
use super::services::StatusSink;
use super::tests::{in_order, launch, pod, start, UID};
use crate::runtime::{Adopted, ExitRecord, MonitorConfig};

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
        userns: None,
        image_digest: "sha256:old".into(),
        log_path: Default::default(),
        stop_signal: 15,
        cgroups_path: String::new(),
        cgroup_driver: Default::default(),
        log_limits: Default::default(),
        stdin: false,
        stdin_once: false,
        tty: false,
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
        message: None,
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
