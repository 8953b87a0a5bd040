//! Probes, hooks, grace periods and eviction, through the real driver on fakes (see
//! `tests.rs`).

use std::time::Duration;

use super::fakes::{CheckResult, FakeRuntime, Script};
use super::tests::{in_order, pod, pod_with_grace, start, UID};

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
