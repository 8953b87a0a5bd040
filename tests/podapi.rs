//! The Pod API of current Kubernetes releases with real containers (issue 22): container
//! restart rules, supplemental groups policy, pod-level resources.

mod common;

use common::*;

#[test]
fn restart_rules_restart_on_a_listed_exit_code_and_not_on_another() {
    let f = Fixture::new();
    let img = f.image();
    // The pod never restarts; the container's rule restarts it on 42 only. Its first run
    // exits 42, its second 3.
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: rules}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes: [{{name: work, emptyDir: {{}}}}]
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "echo run; test -e /work/ran && exit 3; touch /work/ran; exit 42"]
    volumeMounts: [{{name: work, mountPath: /work}}]
    restartPolicy: Never
    restartPolicyRules:
    - action: Restart
      exitCodes: {{operator: In, values: [42]}}
"#
    );
    write_manifest(&f.dirs, "rules.yaml", &yaml);
    let st = f.wait("the pod failed after one restart", || {
        f.pod_status("rules").filter(|s| s["phase"] == "Failed")
    });
    let c = &st["containerStatuses"][0];
    assert_eq!(c["restartCount"], 1, "{st:#}");
    assert_eq!(c["state"]["terminated"]["exitCode"], 3, "{st:#}");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 42, "{st:#}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        cri_log_files(&f.dirs.logs, "rules", "app").len(),
        2,
        "exit 3 is not listed: no third run"
    );
}

/// The numbers of `id`'s output for `key` (`uid`, `gid`, `groups`), sorted.
fn id_numbers(line: &str, key: &str) -> Vec<u32> {
    let Some(rest) = line
        .split(' ')
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
    else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = rest
        .split(',')
        .filter_map(|g| g.split('(').next()?.parse().ok())
        .collect();
    ids.sort();
    ids
}

#[test]
fn supplemental_groups_policy_merge_and_strict_as_id_sees_them() {
    let f = Fixture::new();
    let img = f.image();
    // The test image's user 1500 ("member") is a member of group 50 ("staff") in its
    // /etc/group: Merge adds it, Strict does not.
    let pid = std::process::id();
    for policy in ["Merge", "Strict"] {
        let name = policy.to_lowercase();
        let yaml = format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: groups-{name}}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext:
    runAsUser: 1500
    runAsGroup: 3000
    supplementalGroups: [4000]
    supplementalGroupsPolicy: {policy}
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "id; while true; do sleep 1; done", "marker-groups-{pid}-{name}"]
"#
        );
        write_manifest(&f.dirs, &format!("groups-{name}.yaml"), &yaml);
    }
    for (policy, groups) in [
        ("merge", vec![50, 3000, 4000]),
        ("strict", vec![3000, 4000]),
    ] {
        let pod = format!("groups-{policy}");
        let line = f.output(&pod, "app", "uid=")[0].clone();
        assert_eq!(id_numbers(&line, "uid"), [1500], "{line}");
        assert_eq!(id_numbers(&line, "gid"), [3000], "{line}");
        let mut seen = id_numbers(&line, "groups");
        // Whether `id` lists the primary group among the groups is its own affair.
        if !seen.contains(&3000) {
            seen.push(3000);
            seen.sort();
        }
        assert_eq!(seen, groups, "{policy}: {line}");
        // The status reports the same identity, the primary group first.
        let st = f.wait("the user in the status", || {
            f.pod_status(&pod)
                .filter(|s| s["containerStatuses"][0]["user"].is_object())
        });
        let user = &st["containerStatuses"][0]["user"]["linux"];
        assert_eq!(user["uid"], 1500, "{st:#}");
        assert_eq!(user["gid"], 3000, "{st:#}");
        let mut reported: Vec<u32> =
            serde_json::from_value(user["supplementalGroups"].clone()).unwrap();
        assert_eq!(reported[0], 3000, "{st:#}");
        reported.sort();
        assert_eq!(reported, groups, "{st:#}");
    }
}

#[test]
fn pod_level_resources_limit_the_pod_cgroup_and_containers_share_them() {
    let f = Fixture::new();
    let img = f.image();
    let pid = std::process::id();
    // The pod limits cpu and memory; neither container limits itself. The pod requests
    // 250m cpu and, defaulted to its limit, 64Mi memory: Burstable.
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: podres}}
spec:
  terminationGracePeriodSeconds: 1
  resources:
    requests: {{cpu: 250m}}
    limits: {{cpu: 500m, memory: 64Mi}}
  containers:
  - name: a
    image: {img}
    command: [sh, -c, 'echo "mem=$MEM cpu=$CPU"; while :; do sleep 1; done', podres-a-{pid}]
    env:
    - {{name: MEM, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: CPU, valueFrom: {{resourceFieldRef: {{resource: limits.cpu, divisor: 1m}}}}}}
  - name: b
    image: {img}
    command: [sh, -c, 'while :; do sleep 1; done', podres-b-{pid}]
    # Accepted (tests/resize.rs edits resources in place).
    resizePolicy: [{{resourceName: memory, restartPolicy: RestartContainer}}]
"#
    );
    write_manifest(&f.dirs, "podres.yaml", &yaml);
    let a = f.container_pid(&format!("podres-a-{pid}"));
    let b = f.container_pid(&format!("podres-b-{pid}"));
    let pod = pod_cgroup_dir(a, "memory");
    assert_eq!(pod_cgroup_dir(b, "memory"), pod, "one pod cgroup");
    assert_eq!(pod_cgroup_qos(&pod), "burstable", "{}", pod.display());
    let lim = pod_cgroup_limits(a);
    assert_eq!(lim.memory_max, Some(64 << 20), "{lim:?}");
    assert_eq!(lim.cpu_max, (Some(50_000), 100_000), "{lim:?}");
    let shares = 250 * 1024 / 1000;
    if cgroup_v2() {
        assert_eq!(lim.cpu_weight, cpu_shares_to_weight(shares), "{lim:?}");
    } else {
        assert_eq!(lim.cpu_shares, Some(shares), "{lim:?}");
    }
    // The containers set no limit of their own: the pod's budget bounds them together.
    for p in [a, b] {
        let own = cgroup_limits(p);
        assert_eq!(own.memory_max, None, "{own:?}");
        assert_eq!(own.cpu_max.0, None, "{own:?}");
    }
    // The downward API gives a container without limits the pod's.
    assert_eq!(f.output("podres", "a", "mem=")[0], "mem=64 cpu=500");
    // The pod status reports the pod-level allocation and what the pod cgroup has, as the
    // kubelet does (PodStatus.allocatedResources, PodStatus.resources).
    let st = f.pod_status("podres").expect("status of podres");
    assert_eq!(st["allocatedResources"]["cpu"], "250m", "{st:#}");
    assert_eq!(st["allocatedResources"]["memory"], "64Mi", "{st:#}");
    let r = &st["resources"];
    assert_eq!(r["requests"]["cpu"], "250m", "{st:#}");
    assert_eq!(r["requests"]["memory"], "64Mi", "{st:#}");
    assert_eq!(r["limits"]["cpu"], "500m", "{st:#}");
    assert_eq!(r["limits"]["memory"], "64Mi", "{st:#}");
    // A pod-level cpu limit edited in place: the pod cgroup and its status follow, the
    // containers keep running.
    write_manifest(
        &f.dirs,
        "podres.yaml",
        &yaml.replace("cpu: 500m", "cpu: 750m"),
    );
    let st = f.wait("the pod status reports the resized pod cgroup", || {
        let st = f.pod_status("podres")?;
        (st["resources"]["limits"]["cpu"] == "750m").then_some(st)
    });
    assert_eq!(st["resources"]["limits"]["memory"], "64Mi", "{st:#}");
    assert_eq!(st["allocatedResources"]["cpu"], "250m", "{st:#}");
    assert_eq!(pod_cgroup_limits(a).cpu_max, (Some(75_000), 100_000));
    assert_eq!(
        f.container_pid(&format!("podres-a-{pid}")),
        a,
        "not restarted"
    );
    assert_eq!(
        f.container_pid(&format!("podres-b-{pid}")),
        b,
        "not restarted"
    );
}
