//! Pod and container spec fidelity on real containers: the pod sandbox (shared
//! namespaces, /etc files, /dev/shm), env and the downward API, securityContext, QoS
//! cgroups and oom_score_adj, volumes, a kubeadm-like control-plane pod, and
//! `hostlet render`. Each rule is checked from inside (busybox output in the CRI log) and
//! from the host (/proc, mountinfo, namespace links, cgroup files).

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(40);

fn status_field(pid: i32, key: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn oom_score_adj(pid: i32) -> i32 {
    fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The mountinfo line of `pid` whose mount point is `target`.
fn mount_line(pid: i32, target: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    text.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(target))
        .unwrap_or_else(|| panic!("{target} not mounted in {pid}:\n{text}"))
        .to_string()
}

/// What hostlet can give: lowering oom_score_adj needs CAP_SYS_RESOURCE, which some test
/// environments (containers) lack; then the agent's own value is the floor.
fn expected_oom(want: i32) -> i32 {
    let eff = u64::from_str_radix(&status_field(std::process::id() as i32, "CapEff"), 16).unwrap();
    if eff & (1 << 24) != 0 {
        want
    } else {
        want.max(oom_score_adj(std::process::id() as i32))
    }
}

fn mem_total() -> i64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap();
    let kb: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn pod_sandbox_is_shared_by_its_containers() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    write_manifest(
        &f.dirs,
        "sandbox.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: sandbox}}
spec:
  terminationGracePeriodSeconds: 1
  hostname: box
  hostAliases: [{{ip: 10.1.2.3, hostnames: [db.local, db]}}]
  dnsConfig: {{nameservers: [192.0.2.53], searches: [svc.example]}}
  containers:
  - name: a
    image: {img}
    command: [sh, -c, 'echo shm-ok > /dev/shm/x; hostname; cat /etc/hostname; cat /etc/hosts; cat /etc/resolv.conf; ip -o link show lo; echo done-a; while :; do sleep 1; done', sbx-a]
  - name: b
    image: {img}
    command: [sh, -c, 'sleep 1; cat /dev/shm/x; echo done-b; while :; do sleep 1; done', sbx-b]
"#
        ),
    );
    let a = f.output("sandbox", "a", "done-a");
    let b = f.output("sandbox", "b", "done-b");
    let text = a.join("\n");
    assert_eq!(a[0], "box", "{text}");
    assert_eq!(a[1], "box", "{text}");
    assert!(
        text.contains("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost"),
        "{text}"
    );
    assert!(
        text.contains("# Entries added by HostAliases.\n10.1.2.3\tdb.local\tdb"),
        "{text}"
    );
    assert!(text.contains("nameserver 192.0.2.53"), "{text}");
    assert!(text.contains("svc.example"), "{text}");
    assert!(text.contains("<LOOPBACK,UP,LOWER_UP>"), "lo is up: {text}");
    assert!(
        b.contains(&"shm-ok".to_string()),
        "/dev/shm is the pod's: {b:?}"
    );

    let (pa, pb) = (f.container_pid("sbx-a"), f.container_pid("sbx-b"));
    for ns in ["net", "ipc", "uts"] {
        let la = ns_link(pa, ns).unwrap();
        assert_eq!(la, ns_link(pb, ns).unwrap(), "{ns} is shared");
        assert_ne!(
            la,
            ns_link(std::process::id() as i32, ns).unwrap(),
            "{ns} is not the host's"
        );
    }
    assert_ne!(ns_link(pa, "pid"), ns_link(pb, "pid"), "pid is not shared");
    assert_ne!(ns_link(pa, "mnt"), ns_link(pb, "mnt"));

    // Removing the pod releases its namespaces and its directory.
    let pods = f.dirs.root.join("pods");
    let uid_dir = fs::read_dir(&pods)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert!(mount_line(
        std::process::id() as i32,
        &uid_dir.join("ns/net").to_string_lossy()
    )
    .contains("nsfs"));
    remove_manifest(&f.dirs, "sandbox.yaml");
    f.wait("pod directory removed", || {
        (!uid_dir.exists()).then_some(())
    });
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&*uid_dir.to_string_lossy()),
        "mounts left:\n{mi}"
    );
}

#[test]
fn env_expansion_and_downward_api() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    write_manifest(
        &f.dirs,
        "env.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: env, labels: {{tier: web}}}}
spec:
  volumes:
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: mem, resourceFieldRef: {{containerName: main, resource: limits.memory, divisor: 1Mi}}}}
  containers:
  - name: main
    image: {img}
    command: [sh, -c, 'echo "A=$GREETING"; echo "B=$NS/$TIER/$MEM/$CPU"; cat /info/labels /info/mem; echo; echo end']
    env:
    - {{name: WHO, value: world}}
    - {{name: GREETING, value: "hello $(WHO) $$(WHO)"}}
    - {{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: TIER, valueFrom: {{fieldRef: {{fieldPath: "metadata.labels['tier']"}}}}}}
    - {{name: MEM, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: CPU, valueFrom: {{resourceFieldRef: {{resource: requests.cpu, divisor: 1m}}}}}}
    resources: {{requests: {{cpu: 150m}}, limits: {{memory: 48Mi}}}}
    volumeMounts: [{{name: info, mountPath: /info}}]
  restartPolicy: Never
"#
        ),
    );
    let out = f.output("env", "main", "end");
    assert_eq!(out[0], "A=hello world $(WHO)", "{out:?}");
    assert_eq!(out[1], "B=default/web/48/150", "{out:?}");
    assert_eq!(out[2], "tier=\"web\"", "{out:?}");
    assert_eq!(out[3], "48", "{out:?}");
}

#[test]
fn security_context_applies() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    write_manifest(
        &f.dirs,
        "sec.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: sec}}
spec:
  securityContext: {{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000}}
  volumes: [{{name: scratch, emptyDir: {{}}}}]
  containers:
  - name: main
    image: {img}
    command: [sh, -c, 'id; touch /rootfs-file 2>/dev/null && echo rootfs-writable || echo rootfs-readonly; touch /scratch/f && stat -c %g /scratch/f; echo end; while :; do sleep 1; done', sec-main]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  - name: root
    image: {img}
    command: [sh, -c, 'while :; do sleep 1; done', sec-root]
    securityContext: {{runAsUser: 0, capabilities: {{add: [SYS_TIME]}}, seccompProfile: {{type: Unconfined}}}}
"#
        ),
    );
    let out = f.output("sec", "main", "end");
    let text = out.join("\n");
    assert!(
        text.contains("uid=1000 gid=3000 groups=2000,4000")
            || text.contains("uid=1000 gid=3000 groups=4000,2000"),
        "{text}"
    );
    assert!(text.contains("rootfs-readonly"), "{text}");
    assert!(
        out.contains(&"2000".to_string()),
        "fsGroup owns emptyDir files: {text}"
    );

    let pid = f.container_pid("sec-main");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert_eq!(
        status_field(pid, "Seccomp"),
        "2",
        "RuntimeDefault by default"
    );
    // NET_BIND_SERVICE only (bit 10), in the bounding set; a non-root user has none effective.
    assert_eq!(status_field(pid, "CapBnd"), "0000000000000400");
    assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
    assert!(
        mount_line(pid, "/").contains(" ro,") || mount_line(pid, "/").contains(" ro "),
        "{}",
        mount_line(pid, "/")
    );

    let root = f.container_pid("sec-root");
    assert_eq!(status_field(root, "Seccomp"), "0", "Unconfined");
    assert_eq!(status_field(root, "NoNewPrivs"), "0");
    let eff = u64::from_str_radix(&status_field(root, "CapEff"), 16).unwrap();
    assert!(eff & (1 << 25) != 0, "CAP_SYS_TIME added: {eff:x}");
    assert!(eff & (1 << 0) != 0, "default CAP_CHOWN kept: {eff:x}");
}

#[test]
fn run_as_non_root_refuses_a_root_image() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    write_manifest(
        &f.dirs,
        "nonroot.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: nonroot}}\nspec:\n  securityContext: {{runAsNonRoot: true}}\n  containers:\n  - {{name: main, image: {img}, command: [sh, -c, 'echo ran']}}\n"
        ),
    );
    f.wait("CreateContainerConfigError", || {
        let log = f.dirs.agent_log();
        (log.contains("CreateContainerConfigError") && log.contains("image will run as root"))
            .then_some(())
    });
    assert!(cri_log_messages(&f.dirs.logs, "nonroot", "main").is_empty());
}

#[test]
fn qos_pod_cgroups_and_oom_score_adj() {
    let f = Fixture::with_args(&["--pod-max-pids", "77"]).patient(T);
    let img = f.image();
    write_manifest(
        &f.dirs,
        "qos.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: guaranteed}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: {img}
    command: [sh, -c, 'while :; do sleep 1; done', qos-g-a]
    resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}
  - name: b
    image: {img}
    command: [sh, -c, 'while :; do sleep 1; done', qos-g-b]
    resources: {{limits: {{cpu: 250m, memory: 32Mi}}}}
---
"#
        )
        .replace("---\n", ""),
    );
    write_manifest(
        &f.dirs,
        "burst.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: burstable}}\nspec:\n  containers:\n  - name: a\n    image: {img}\n    command: [sh, -c, 'while :; do sleep 1; done', qos-b-a]\n    resources: {{requests: {{cpu: 100m, memory: 1Gi}}}}\n"
        ),
    );
    write_manifest(
        &f.dirs,
        "best.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: besteffort}}\nspec:\n  containers:\n  - {{name: a, image: {img}, command: [sh, -c, 'while :; do sleep 1; done', qos-e-a]}}\n"
        ),
    );
    // Pod cgroups by QoS class, with ResourceConfigForPod's limits (v1 or v2, cgroupfs or
    // systemd driver: whatever this host runs by default).
    let g = f.container_pid("qos-g-a");
    let pod = pod_cgroup_dir(g, "memory");
    assert_eq!(pod_cgroup_qos(&pod), "guaranteed", "{}", pod.display());
    assert_eq!(
        pod_cgroup_dir(f.container_pid("qos-g-b"), "memory"),
        pod,
        "one pod cgroup"
    );
    let shares = |s: u64| {
        if cgroup_v2() {
            (None, cpu_shares_to_weight(s))
        } else {
            (Some(s), cpu_shares_to_weight(s))
        }
    };
    let lim = pod_cgroup_limits(g);
    assert_eq!(lim.memory_max, Some(96 << 20));
    assert_eq!((lim.cpu_shares, lim.cpu_weight), shares(768));
    assert_eq!(lim.cpu_max, (Some(75000), 100000));
    assert_eq!(lim.pids_max, Some(77));
    // The container cgroup inside keeps the container's own limits.
    assert_eq!(cgroup_limits(g).memory_max, Some(64 << 20));
    assert_eq!(oom_score_adj(g), expected_oom(-997));

    let b = f.container_pid("qos-b-a");
    let bpod = pod_cgroup_dir(b, "cpu");
    assert_eq!(pod_cgroup_qos(&bpod), "burstable", "{}", bpod.display());
    let lim = pod_cgroup_limits(b);
    assert_eq!((lim.cpu_shares, lim.cpu_weight), shares(102));
    assert_eq!(lim.cpu_max.0, None);
    let want = (1000 - 1000 * (1i64 << 30) / mem_total()).clamp(3, 999) as i32;
    assert_eq!(oom_score_adj(b), expected_oom(want));

    let e = f.container_pid("qos-e-a");
    let epod = pod_cgroup_dir(e, "cpu");
    assert_eq!(pod_cgroup_qos(&epod), "besteffort", "{}", epod.display());
    let lim = pod_cgroup_limits(e);
    assert_eq!((lim.cpu_shares, lim.cpu_weight), shares(2));
    assert_eq!(oom_score_adj(e), expected_oom(1000));

    remove_manifest(&f.dirs, "qos.yaml");
    f.wait("guaranteed pod cgroup removed", || {
        (!pod.exists()).then_some(())
    });
}

#[test]
fn memory_empty_dir_is_a_sized_tmpfs() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    write_manifest(
        &f.dirs,
        "tmpfs.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: tmpfs}}
spec:
  volumes:
  - {{name: fast, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
  - {{name: podlimit, emptyDir: {{medium: Memory}}}}
  - {{name: disk, emptyDir: {{}}}}
  containers:
  - name: main
    image: {img}
    command: [sh, -c, 'mkdir -p /disk/sub && echo x > /sub/f && echo end; while :; do sleep 1; done', tmpfs-main]
    resources: {{limits: {{memory: 32Mi}}}}
    volumeMounts:
    - {{name: fast, mountPath: /fast}}
    - {{name: podlimit, mountPath: /podlimit}}
    - {{name: disk, mountPath: /disk}}
    - {{name: disk, mountPath: /sub, subPath: sub}}
"#
        ),
    );
    f.output("tmpfs", "main", "end");
    let pid = f.container_pid("tmpfs-main");
    let fast = mount_line(pid, "/fast");
    assert!(
        fast.contains(" - tmpfs ") && fast.contains("size=8192k"),
        "{fast}"
    );
    let lim = mount_line(pid, "/podlimit");
    assert!(
        lim.contains("size=32768k"),
        "sized by the pod's memory limit: {lim}"
    );
    assert!(!mount_line(pid, "/disk").contains(" - tmpfs "));
}

#[test]
fn kubeadm_like_control_plane_pod_runs() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    let host = f.dirs.base.join("host");
    fs::create_dir_all(host.join("pki")).unwrap();
    fs::write(host.join("pki/ca.crt"), "CERT\n").unwrap();
    write_manifest(
        &f.dirs,
        "kube-apiserver.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
  labels: {{component: kube-apiserver, tier: control-plane}}
  annotations: {{kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: "192.0.2.10:6443"}}
spec:
  hostNetwork: true
  priorityClassName: system-node-critical
  priority: 2000001000
  dnsPolicy: ClusterFirst
  securityContext:
    seccompProfile: {{type: RuntimeDefault}}
  containers:
  - name: kube-apiserver
    image: {img}
    imagePullPolicy: IfNotPresent
    command:
    - sh
    - -c
    - 'cat /etc/kubernetes/pki/ca.crt; ls -d /etc/ssl/certs; echo log > /var/log/apiserver/audit.log; test -f /etc/kubernetes/audit.yaml && echo policy; echo end; while :; do sleep 1; done'
    - cp-apiserver
    resources: {{requests: {{cpu: 250m}}}}
    volumeMounts:
    - {{mountPath: /etc/ssl/certs, name: ca-certs, readOnly: true}}
    - {{mountPath: /etc/kubernetes/pki, name: k8s-certs, readOnly: true}}
    - {{mountPath: /var/log/apiserver, name: audit-log}}
    - {{mountPath: /etc/kubernetes/audit.yaml, name: audit-policy, readOnly: true}}
  volumes:
  - {{hostPath: {{path: /etc, type: DirectoryOrCreate}}, name: ca-certs}}
  - {{hostPath: {{path: {pki}, type: Directory}}, name: k8s-certs}}
  - {{hostPath: {{path: {log}, type: DirectoryOrCreate}}, name: audit-log}}
  - {{hostPath: {{path: {policy}, type: FileOrCreate}}, name: audit-policy}}
"#,
            pki = host.join("pki").display(),
            log = host.join("log").display(),
            policy = host.join("audit.yaml").display(),
        ),
    );
    let out = f.output("kube-apiserver", "kube-apiserver", "end");
    let text = out.join("\n");
    assert!(
        text.contains("CERT") && text.contains("/etc/ssl/certs") && text.contains("policy"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(host.join("log/audit.log")).unwrap(),
        "log\n"
    );
    let pid = f.container_pid("cp-apiserver");
    assert_eq!(
        ns_link(pid, "net"),
        ns_link(std::process::id() as i32, "net"),
        "hostNetwork"
    );
    assert_eq!(
        ns_link(pid, "uts"),
        ns_link(std::process::id() as i32, "uts")
    );
    assert_eq!(
        oom_score_adj(pid),
        expected_oom(-997),
        "system-node-critical"
    );
    assert_eq!(status_field(pid, "Seccomp"), "2");
    let pod = pod_cgroup_dir(pid, "cpu");
    assert_eq!(pod_cgroup_qos(&pod), "burstable", "{}", pod.display());
}

fn render(f: &Fixture, manifest: &str) -> std::process::Output {
    let path = f.dirs.base.join("render.yaml");
    fs::write(&path, manifest).unwrap();
    Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .arg("render")
        .arg("--root-dir")
        .arg(&f.dirs.root)
        .args([
            "--insecure-registry",
            &f.reg.addr,
            "--hostname-override",
            NODE_NAME,
        ])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn render_prints_the_runtime_config_of_each_container() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    let out = render(
        &f,
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: two}}\nspec:\n  containers:\n  - {{name: a, image: {img}, command: [sh]}}\n  - {{name: b, image: {img}, args: [x], resources: {{limits: {{cpu: 1, memory: 1Gi}}}}}}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["process"]["args"], serde_json::json!(["sh"]));
    let args = docs[1]["process"]["args"].as_array().unwrap();
    assert_eq!(args.last().unwrap(), "x", "{args:?}");
    let cg = docs[1]["linux"]["cgroupsPath"].as_str().unwrap();
    assert!(
        cg.starts_with("/kubepods/burstable/pod") && cg.ends_with("-b-0"),
        "{cg}"
    );
    assert_eq!(
        docs[0]["linux"]["seccomp"]["defaultAction"],
        "SCMP_ACT_ERRNO"
    );

    let bad = render(
        &f,
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: hp}}\nspec:\n  containers:\n  - {{name: a, image: {img}, ports: [{{containerPort: 80, hostPort: 8080}}]}}\n"),
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("hostPort") && err.contains("pod networking"),
        "{err}"
    );
}
