//! Container lifecycle with real containers: init containers and sidecars, probes run
//! by the agent, hooks, OOM kills.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

fn msgs(f: &Fixture, pod: &str, c: &str) -> Vec<String> {
    cri_log_messages(&f.dirs.logs, pod, c)
}

#[test]
fn init_containers_run_in_order_to_success_before_the_app() {
    let f = Fixture::new();
    let img = f.image();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: ordered}}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{{name: work, emptyDir: {{}}}}]
  initContainers:
  - name: first
    image: {img}
    command: ["sh", "-c", "sleep 0.5; echo one >> /work/order"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: flaky
    image: {img}
    # Fails on its first run: init containers are retried until they succeed.
    command: ["sh", "-c", "echo two >> /work/order; test -e /work/again || {{ touch /work/again; exit 1; }}"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "cat /work/order; echo app-ran; while true; do sleep 1; done", "marker-ordered"]
    volumeMounts: [{{name: work, mountPath: /work}}]
"#
    );
    write_manifest(&f.dirs, "ordered.yaml", &yaml);
    f.wait("app output", || {
        msgs(&f, "ordered", "app")
            .contains(&"app-ran".to_string())
            .then_some(())
    });
    assert_eq!(msgs(&f, "ordered", "app"), ["one", "two", "two", "app-ran"]);
    assert_eq!(
        cri_log_files(&f.dirs.logs, "ordered", "flaky").len(),
        2,
        "flaky init container ran once more"
    );

    // restartPolicy Never: a failing init container fails the pod; the app never starts.
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: doomed}}
spec:
  restartPolicy: Never
  initContainers:
  - {{name: broken, image: {img}, command: ["sh", "-c", "exit 7"]}}
  containers:
  - {{name: app, image: {img}, command: ["sh", "-c", "echo should-not-run"]}}
"#
    );
    write_manifest(&f.dirs, "doomed.yaml", &yaml);
    f.wait("init failure", || {
        f.dirs.agent_log().contains("the pod failed").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(cri_log_files(&f.dirs.logs, "doomed", "app").is_empty());
    assert_eq!(cri_log_files(&f.dirs.logs, "doomed", "broken").len(), 1);
}

#[test]
fn sidecar_starts_first_runs_beside_the_app_and_stops_last() {
    let f = Fixture::new();
    let img = f.image();
    let marks = f.dirs.base.join("marks");
    fs::create_dir_all(&marks).unwrap();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: withside}}
spec:
  terminationGracePeriodSeconds: 5
  volumes:
  - {{name: work, emptyDir: {{}}}}
  - {{name: marks, hostPath: {{path: {marks}, type: Directory}}}}
  initContainers:
  - name: side
    image: {img}
    restartPolicy: Always
    command: ["sh", "-c", "trap 'sleep 0.5; echo side >> /marks/stop; exit 0' TERM; touch /work/side-up; while true; do sleep 0.1; done", "marker-side"]
    volumeMounts: [{{name: work, mountPath: /work}}, {{name: marks, mountPath: /marks}}]
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "trap 'echo app >> /marks/stop; exit 0' TERM; test -e /work/side-up && echo sidecar-was-up; while true; do sleep 0.1; done", "marker-app"]
    volumeMounts: [{{name: work, mountPath: /work}}, {{name: marks, mountPath: /marks}}]
"#,
        marks = marks.display()
    );
    write_manifest(&f.dirs, "withside.yaml", &yaml);
    f.wait("app saw the sidecar", || {
        msgs(&f, "withside", "app")
            .contains(&"sidecar-was-up".to_string())
            .then_some(())
    });
    let side = f.container_pid("marker-side");
    let app = f.container_pid("marker-app");
    // A sidecar restarts on its own, whatever the pod's restartPolicy.
    signal(side, libc::SIGKILL);
    let side2 = f.wait("sidecar restarted", || {
        let p = find_pids_by_cmdline("marker-side");
        (p.len() == 1 && p[0] != side).then(|| p[0])
    });
    assert!(
        process_exists(app),
        "app was disturbed by the sidecar's restart"
    );
    remove_manifest(&f.dirs, "withside.yaml");
    f.wait("both stopped", || {
        (!process_exists(app) && !process_exists(side2)).then_some(())
    });
    let order = fs::read_to_string(marks.join("stop")).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["app", "side"],
        "stop order"
    );
}

#[test]
fn http_liveness_probe_from_the_agent_restarts_the_container() {
    let f = Fixture::new();
    let img = f.image();
    // busybox httpd serves /www/healthz until the container deletes it; the image has
    // no curl or wget involved: the agent probes from its side.
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: {img}
    command: ["sh", "-c", "mkdir -p /www; echo ok > /www/healthz; httpd -p 8080 -h /www; echo serving; sleep 3; rm /www/healthz; echo broken; while true; do sleep 1; done", "marker-live"]
    ports: [{{name: http, containerPort: 8080}}]
    livenessProbe:
      httpGet: {{path: /healthz, port: http}}
      periodSeconds: 1
      failureThreshold: 2
"#
    );
    write_manifest(&f.dirs, "live.yaml", &yaml);
    let first = f.container_pid("marker-live");
    f.wait("restart by liveness", || {
        cri_log_files(&f.dirs.logs, "live", "web")
            .iter()
            .any(|p| p.ends_with("web/1.log"))
            .then_some(())
    });
    assert!(!process_exists(first));
    let log = f.dirs.agent_log();
    assert!(
        log.contains("failed its probe") && log.contains("HTTP probe failed with statuscode: 404"),
        "{log}"
    );
    // It was healthy for ~3 s first: no restart before the file went away.
    assert!(
        msgs(&f, "live", "web")
            .iter()
            .filter(|m| *m == "broken")
            .count()
            >= 1
    );
}

#[test]
fn hooks_run_and_prestop_comes_before_the_stop_signal() {
    let f = Fixture::new();
    let img = f.image();
    let marks = f.dirs.base.join("marks");
    fs::create_dir_all(&marks).unwrap();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{{name: marks, hostPath: {{path: {marks}, type: Directory}}}}]
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "trap 'echo term >> /marks/log; exit 0' TERM; echo main >> /marks/log; while true; do sleep 0.1; done", "marker-hooked"]
    volumeMounts: [{{name: marks, mountPath: /marks}}]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "echo poststart >> /marks/log"]}}}}
      preStop: {{exec: {{command: ["sh", "-c", "echo prestop >> /marks/log"]}}}}
"#,
        marks = marks.display()
    );
    write_manifest(&f.dirs, "hooked.yaml", &yaml);
    let pid = f.container_pid("marker-hooked");
    f.wait("postStart ran", || {
        fs::read_to_string(marks.join("log"))
            .ok()
            .filter(|l| l.contains("poststart"))
    });
    remove_manifest(&f.dirs, "hooked.yaml");
    f.wait("stopped", || (!process_exists(pid)).then_some(()));
    let log = fs::read_to_string(marks.join("log")).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| *l != "main" && *l != "poststart")
        .collect();
    assert_eq!(lines, ["prestop", "term"], "{log}");

    // A failing postStart kills the container, which is then restarted.
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: badhook}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "while true; do sleep 0.1; done", "marker-badhook"]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "exit 3"]}}}}
"#
    );
    write_manifest(&f.dirs, "badhook.yaml", &yaml);
    f.wait("FailedPostStartHook", || {
        f.dirs
            .agent_log()
            .contains("FailedPostStartHook")
            .then_some(())
    });
    f.wait("restarted", || {
        cri_log_files(&f.dirs.logs, "badhook", "app")
            .iter()
            .any(|p| p.ends_with("app/1.log"))
            .then_some(())
    });
}

#[test]
fn memory_hog_is_reported_oomkilled_137() {
    let f = Fixture::new();
    let img = f.image();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: {img}
    # dd's 256 MiB buffer in a 32 MiB cgroup.
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]
    resources: {{limits: {{memory: 32Mi}}}}
"#
    );
    write_manifest(&f.dirs, "hog.yaml", &yaml);
    let line = f.wait("OOM exit", || {
        f.dirs
            .agent_log()
            .lines()
            .find(|l| l.contains("container exited") && l.contains("hog"))
            .map(str::to_string)
    });
    assert!(
        line.contains("exit_code=137") && line.contains("OOMKilled"),
        "{line}"
    );
}

/// A gRPC health server on 127.0.0.1 answering with whatever `status` holds
/// (1 = SERVING, 2 = NOT_SERVING). Runs until the test process ends.
fn grpc_health_server(status: std::sync::Arc<std::sync::atomic::AtomicU8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let status = status.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(sock).await else {
                        return;
                    };
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let resp = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(resp, false).unwrap();
                        let s = status.load(std::sync::atomic::Ordering::SeqCst);
                        send.send_data(bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, s]), false)
                            .unwrap();
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        send.send_trailers(trailers).unwrap();
                    }
                });
            }
        });
    });
    port
}

#[test]
fn grpc_liveness_probe_restarts_when_not_serving() {
    let f = Fixture::new();
    let status = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(1));
    let port = grpc_health_server(status.clone());
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: grpcpod}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "while true; do sleep 0.2; done", "marker-grpc"]
    livenessProbe:
      grpc: {{port: {port}}}
      periodSeconds: 1
      failureThreshold: 1
"#,
        img = f.image()
    );
    write_manifest(&f.dirs, "grpc.yaml", &yaml);
    let pid = f.container_pid("marker-grpc");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        find_pids_by_cmdline("marker-grpc"),
        vec![pid],
        "restarted while SERVING"
    );
    status.store(2, std::sync::atomic::Ordering::SeqCst);
    f.wait("restart by grpc liveness", || {
        cri_log_files(&f.dirs.logs, "grpcpod", "app")
            .iter()
            .any(|p| p.ends_with("app/1.log"))
            .then_some(())
    });
    assert!(
        f.dirs.agent_log().contains("NOT_SERVING"),
        "{}",
        f.dirs.agent_log()
    );
}

#[test]
fn status_reports_readiness_crash_loops_and_phases() {
    let f = Fixture::with_args(&["--crash-loop-backoff-initial", "20s"]);
    let img = f.image();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: ready}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "while true; do sleep 0.2; done"]
    readinessProbe:
      exec: {{command: ["test", "-e", "/tmp/ready"]}}
      periodSeconds: 1
"#
    );
    write_manifest(&f.dirs, "ready.yaml", &yaml);
    let crash = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: crashy}}
spec:
  containers:
  - {{name: app, image: {img}, command: ["sh", "-c", "echo bye; exit 3"]}}
"#
    );
    write_manifest(&f.dirs, "crashy.yaml", &crash);
    let done = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: done}}
spec:
  restartPolicy: Never
  containers:
  - {{name: app, image: {img}, command: ["true"]}}
"#
    );
    write_manifest(&f.dirs, "done.yaml", &done);

    // Running but not ready until the exec probe passes inside the container.
    let st = f.wait("ready pod running", || {
        f.pod_status("ready").filter(|s| {
            s["phase"] == "Running" && s["containerStatuses"][0]["state"]["running"].is_object()
        })
    });
    assert_eq!(st["containerStatuses"][0]["ready"], false, "{st:#}");
    let cond = |s: &serde_json::Value, t: &str| {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(cond(&st, "Ready"), "False");
    let id = st["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("hostlet://")
        .to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostlet-monitor"))
        .args(["exec-in", "--root-dir"])
        .arg(&f.dirs.root)
        .args([id.as_str(), "--", "touch", "/tmp/ready"])
        .status()
        .unwrap();
    assert!(out.success());
    let st = f.wait("ready flips to true", || {
        f.pod_status("ready")
            .filter(|s| s["containerStatuses"][0]["ready"] == true)
    });
    assert_eq!(cond(&st, "Ready"), "True");
    assert_eq!(cond(&st, "ContainersReady"), "True");

    // A crash loop: waiting CrashLoopBackOff, the restart count, the last termination.
    let st = f.wait("CrashLoopBackOff", || {
        f.pod_status("crashy").filter(|s| {
            s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
    });
    let c = &st["containerStatuses"][0];
    assert_eq!(c["restartCount"], 1, "{c:#}");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3, "{c:#}");
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error", "{c:#}");
    assert_eq!(st["phase"], "Running");

    // restartPolicy Never and exit 0: Succeeded, terminated Completed.
    let st = f.wait("Succeeded", || {
        f.pod_status("done").filter(|s| s["phase"] == "Succeeded")
    });
    assert_eq!(
        st["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(cond(&st, "Ready"), "False");
}

/// Termination messages as the kubelet gives them: a non-root container writes its
/// `terminationMessagePath` (a custom one, on a read-only root filesystem) and the
/// terminated state carries it; with `FallbackToLogsOnError` a failed container that
/// wrote none gets its log's tail; a successful one gets no message.
#[test]
fn termination_messages_from_the_file_or_the_log_tail() {
    let f = Fixture::new();
    let img = f.image();
    let pod = |name: &str, policy: &str, path: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  securityContext: {{runAsUser: 1000, runAsGroup: 1000}}\n  containers:\n  - name: c\n    image: {img}\n    command: [sh, -c, {script:?}]\n    terminationMessagePolicy: {policy}\n    terminationMessagePath: {path}\n    securityContext: {{readOnlyRootFilesystem: true}}\n"
        )
    };
    write_manifest(
        &f.dirs,
        "msg.yaml",
        &pod(
            "msg",
            "File",
            "/tmp/why",
            "echo -n disk is full > /tmp/why; exit 3",
        ),
    );
    write_manifest(
        &f.dirs,
        "fallback.yaml",
        &pod(
            "fallback",
            "FallbackToLogsOnError",
            "/dev/termination-log",
            "for i in 1 2 3; do echo line $i; done; echo fatal: no config >&2; exit 1",
        ),
    );
    write_manifest(
        &f.dirs,
        "fine.yaml",
        &pod(
            "fine",
            "FallbackToLogsOnError",
            "/dev/termination-log",
            "echo all good",
        ),
    );
    let terminated = |name: &str| {
        f.wait(&format!("{name} terminated"), || {
            let t = f.pod_status(name)?["containerStatuses"][0]["state"]["terminated"].clone();
            t.is_object().then_some(t)
        })
    };
    let t = terminated("msg");
    assert_eq!(t["exitCode"], 3, "{t:#}");
    assert_eq!(t["message"], "disk is full", "{t:#}");
    let t = terminated("fallback");
    assert_eq!(
        t["message"], "line 1\nline 2\nline 3\nfatal: no config\n",
        "{t:#}"
    );
    let t = terminated("fine");
    assert_eq!(t["reason"], "Completed", "{t:#}");
    assert!(t.get("message").is_none(), "{t:#}");
}
