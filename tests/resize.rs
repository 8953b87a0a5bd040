//! In-place resize of a static pod (issue 22, KEP-1287): an edit of only cpu and memory
//! resources changes the cgroups of the running pod without restarting its containers
//! (resizePolicy NotRequired), restarts alone those whose policy says RestartContainer,
//! waits with PodResizeInProgress/Error for a memory limit below the usage, and a resize
//! that would change the QoS class makes a new pod.

mod common;

use common::*;

const MI: u64 = 1 << 20;

fn manifest(img: &str, pid: u32, a: (&str, &str, &str), b_mem: &str) -> String {
    let (a_req_cpu, a_cpu, a_mem) = a;
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: rsz}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: {img}
    # 40 MiB in the pod's /dev/shm, charged to a's memory cgroup.
    command: [sh, -c, 'head -c 41943040 /dev/zero > /dev/shm/fill; while :; do sleep 1; done', rsz-a-{pid}]
    resources:
      requests: {{cpu: {a_req_cpu}, memory: 32Mi}}
      limits: {{cpu: {a_cpu}, memory: {a_mem}}}
  - name: b
    image: {img}
    command: [sh, -c, 'while :; do sleep 1; done', rsz-b-{pid}]
    resizePolicy: [{{resourceName: memory, restartPolicy: RestartContainer}}]
    resources:
      requests: {{cpu: 100m, memory: 32Mi}}
      limits: {{cpu: 500m, memory: {b_mem}}}
"#
    )
}

fn container<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["containerStatuses"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no status of {name}: {st:#}"))
}

fn resize_condition(st: &serde_json::Value) -> Option<serde_json::Value> {
    st["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodResizeInProgress")
        .cloned()
}

#[test]
fn resources_resize_in_place_and_restart_only_restart_container() {
    let f = Fixture::new();
    let img = f.image();
    let pid = std::process::id();
    let (ma, mb) = (format!("rsz-a-{pid}"), format!("rsz-b-{pid}"));
    write_manifest(
        &f.dirs,
        "rsz.yaml",
        &manifest(&img, pid, ("100m", "500m", "64Mi"), "64Mi"),
    );
    let a = f.container_pid(&ma);
    let b = f.container_pid(&mb);
    let before = f.wait("the pod runs", || {
        f.pod("rsz").filter(|p| p["status"]["phase"] == "Running")
    });
    let uid = before["metadata"]["uid"].clone();
    let started = before["status"]["startTime"].clone();
    let lim = cgroup_limits(a);
    assert_eq!(lim.memory_max, Some(64 * MI), "{lim:?}");
    assert_eq!(lim.cpu_max.0, Some(50_000), "{lim:?}");
    let pod = pod_cgroup_limits(a);
    assert_eq!(
        pod.memory_max,
        Some(128 * MI),
        "the containers' sum: {pod:?}"
    );
    assert_eq!(pod.cpu_max.0, Some(100_000), "{pod:?}");

    // a: cpu 500m → 700m and memory 64Mi → 96Mi, NotRequired; b: memory → 96Mi, RestartContainer.
    write_manifest(
        &f.dirs,
        "rsz.yaml",
        &manifest(&img, pid, ("100m", "700m", "96Mi"), "96Mi"),
    );
    let lim = f.wait("a's cgroup has the new limits", || {
        let l = cgroup_limits(a);
        (l.cpu_max.0 == Some(70_000) && l.memory_max == Some(96 * MI)).then_some(l)
    });
    assert_eq!(lim.cpu_max.1, 100_000);
    let pod = f.wait("the pod cgroup has the new sums", || {
        let l = pod_cgroup_limits(a);
        (l.memory_max == Some(192 * MI)).then_some(l)
    });
    assert_eq!(pod.cpu_max.0, Some(120_000), "{pod:?}");
    let b2 = f.wait("b restarted", || {
        find_pids_by_cmdline(&mb).into_iter().find(|p| *p != b)
    });
    assert_eq!(cgroup_limits(b2).memory_max, Some(96 * MI));
    let st = f.wait("the resize is done", || {
        let st = f.pod_status("rsz")?;
        let b_running = !container(&st, "b")["state"]["running"].is_null();
        (resize_condition(&st).is_none() && b_running).then_some(st)
    });
    assert_eq!(
        find_pids_by_cmdline(&ma),
        [a],
        "a kept running, not restarted"
    );
    assert_eq!(container(&st, "a")["restartCount"], 0, "{st:#}");
    assert_eq!(container(&st, "b")["restartCount"], 1, "{st:#}");
    assert_eq!(
        container(&st, "a")["resources"]["limits"]["memory"],
        "96Mi",
        "{st:#}"
    );
    assert_eq!(
        container(&st, "a")["allocatedResources"]["cpu"],
        "100m",
        "{st:#}"
    );
    let now = f.pod("rsz").unwrap();
    assert_eq!(now["metadata"]["uid"], uid, "the pod keeps its identity");
    assert_eq!(now["status"]["startTime"], started);

    // a's memory limit below its usage (40 MiB in /dev/shm): not applied, the resize
    // stays in progress with the kubelet's Error reason; its cpu change is applied.
    write_manifest(
        &f.dirs,
        "rsz.yaml",
        &manifest(&img, pid, ("100m", "600m", "32Mi"), "96Mi"),
    );
    let cond = f.wait("PodResizeInProgress with reason Error", || {
        resize_condition(&f.pod_status("rsz")?).filter(|c| c["reason"] == "Error")
    });
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("below memory usage"),
        "{cond:#}"
    );
    let lim = cgroup_limits(a);
    assert_eq!(lim.memory_max, Some(96 * MI), "{lim:?}");
    assert_eq!(lim.cpu_max.0, Some(60_000), "{lim:?}");
    assert_eq!(find_pids_by_cmdline(&ma), [a]);

    // Every container's requests equal to its limits: the pod would become Guaranteed,
    // and the QoS class cannot change in place (Infeasible), so the pod is recreated.
    let guaranteed = manifest(&img, pid, ("600m", "600m", "96Mi"), "96Mi")
        .replace("memory: 32Mi}", "memory: 96Mi}")
        .replace("cpu: 100m, memory: 96Mi}", "cpu: 500m, memory: 96Mi}");
    write_manifest(&f.dirs, "rsz.yaml", &guaranteed);
    let new = f.wait("a new pod", || {
        f.pod("rsz")
            .filter(|p| p["metadata"]["uid"] != uid && p["status"]["phase"] == "Running")
    });
    assert_ne!(new["metadata"]["uid"], uid);
    f.log_has("recreating the pod");
    remove_manifest(&f.dirs, "rsz.yaml");
    f.gone(&ma);
    f.gone(&mb);
}
