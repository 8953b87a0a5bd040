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
    let own = format!("\n10.86.{}.", f.dirs.net.slot);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&own[1..]) && l.ends_with("\tbox")),
        "the pod's IP and hostname: {text}"
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
    let want = (1000 - 1000 * (1i64 << 30) / (mem_total() as i64)).clamp(3, 999) as i32;
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
    // The cgroupfs form whatever the host's init: the assertions below expect paths.
    render_with(f, manifest, &["--cgroup-driver", "cgroupfs"])
}

fn render_with(f: &Fixture, manifest: &str, extra: &[&str]) -> std::process::Output {
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
        .args(extra)
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
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: hp}}\nspec:\n  hostNetwork: true\n  containers:\n  - {{name: a, image: {img}, ports: [{{containerPort: 80, hostPort: 8080}}]}}\n"),
    );
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("hostPort") && err.contains("must match containerPort"),
        "{err}"
    );
}

/// The pause process recorded in the only pod directory: (pid, start time).
fn pause_record(f: &Fixture) -> Option<(i32, u64)> {
    let pods = f.dirs.root.join("pods");
    let dir = fs::read_dir(pods).ok()?.flatten().next()?.path();
    let rec: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("pause.json")).ok()?).ok()?;
    Some((rec["pid"].as_i64()? as i32, rec["start_time"].as_u64()?))
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The recorded pause process once it runs (a live process with the recorded start time).
fn live_pause(f: &Fixture, other_than: Option<i32>) -> i32 {
    f.wait("a live pause process", || {
        let (pid, start) = pause_record(f)?;
        (Some(pid) != other_than && start_time(pid) == Some(start) && process_exists(pid))
            .then_some(pid)
    })
}

#[test]
fn share_process_namespace_has_a_pause_process_as_pid_1() {
    let mut f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: pns}}
spec:
  terminationGracePeriodSeconds: 1
  shareProcessNamespace: true
  containers:
  - name: a
    image: {img}
    command: [sh, -c, 'sleep 2; echo "comm1=$(cat /proc/1/comm)"; ps -o pid,args; echo done-a; while :; do sleep 1; done', pidshare-a]
  - name: b
    image: {img}
    command: [sh, -c, 'echo done-b; while :; do sleep 1; done', pidshare-b]
"#
    );
    write_manifest(&f.dirs, "pns.yaml", &manifest);
    let a = f.output("pns", "a", "done-a");
    let text = a.join("\n");
    assert!(
        text.contains("comm1=pause"),
        "PID 1 is the pause process:\n{text}"
    );
    assert!(text.contains("pidshare-b"), "a sees b's processes:\n{text}");

    let (pa, pb) = (f.container_pid("pidshare-a"), f.container_pid("pidshare-b"));
    let pause = live_pause(&f, None);
    let pid_ns = ns_link(pause, "pid").unwrap();
    assert_eq!(
        ns_link(pa, "pid").unwrap(),
        pid_ns,
        "a joined the pause's pid ns"
    );
    assert_eq!(
        ns_link(pb, "pid").unwrap(),
        pid_ns,
        "b joined the pause's pid ns"
    );
    assert_ne!(pid_ns, ns_link(std::process::id() as i32, "pid").unwrap());
    let pod_net = ns_link(pa, "net").unwrap();
    assert_eq!(
        ns_link(pause, "net").unwrap(),
        pod_net,
        "pause is in the pod's net ns"
    );
    let nspid = status_field(pause, "NSpid");
    assert!(
        nspid.ends_with("\t1"),
        "pause is PID 1 of its namespace: {nspid}"
    );
    assert_eq!(status_field(pause, "Threads"), "1");
    let sid = fs::read_to_string(format!("/proc/{pause}/stat")).unwrap();
    let fields: Vec<&str> = sid[sid.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(fields[3], pause.to_string(), "pause leads its own session");
    // In the pod cgroup (v1: the pod cgroup itself; v2: its `pause` leaf).
    let cg = fs::read_to_string(format!("/proc/{pause}/cgroup")).unwrap();
    let pod_cg = pod_cgroup_dir(pa, "memory");
    let pod_name = pod_cg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(cg.contains(&pod_name), "pause in {pod_name}:\n{cg}");
    let rollup = fs::read_to_string(format!("/proc/{pause}/smaps_rollup")).unwrap();
    eprintln!(
        "pause process {pause}: {}",
        rollup
            .lines()
            .filter(|l| l.starts_with("Rss") || l.starts_with("Pss"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // A restarted agent adopts the pause process: same process, containers untouched.
    f.agent.as_mut().unwrap().kill9();
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &[]));
    f.wait("the new agent adopted the pod", || {
        f.dirs.agent_log().contains("adopted").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(live_pause(&f, None), pause, "the pause process is adopted");
    assert_eq!(f.container_pid("pidshare-a"), pa);
    assert_eq!(f.container_pid("pidshare-b"), pb);

    // The pause process dies: the kernel kills the pod's processes, and the containers
    // restart in a new PID namespace under a new pause process.
    signal(pause, libc::SIGKILL);
    let pause2 = live_pause(&f, Some(pause));
    let pid_ns2 = ns_link(pause2, "pid").unwrap();
    // Not compared with the old namespace's link: nsfs inode numbers are reused once a
    // namespace is freed (seen in the VM). The old PID 1 is gone, so is its namespace.
    assert!(
        !process_exists(pause),
        "the killed pause process {pause} is still there"
    );
    assert!(
        status_field(pause2, "NSpid").ends_with("\t1"),
        "the new pause process is not PID 1 of its namespace"
    );
    assert_eq!(
        ns_link(pause2, "net").unwrap(),
        pod_net,
        "the new pause is in the pod's net ns"
    );
    let pa2 = f.wait("a restarted in the new namespace", || {
        let p = *find_pids_by_cmdline("pidshare-a").first()?;
        (p != pa && ns_link(p, "pid")? == pid_ns2).then_some(p)
    });
    let pb2 = f.wait("b restarted in the new namespace", || {
        let p = *find_pids_by_cmdline("pidshare-b").first()?;
        (p != pb && ns_link(p, "pid")? == pid_ns2).then_some(p)
    });
    assert!(!process_exists(pa) && !process_exists(pb));
    let files = cri_log_files(&f.dirs.logs, "pns", "a");
    assert!(files.len() >= 2, "a restarted: {files:?}");
    f.wait("a runs again with the new pause as PID 1", || {
        let lines = cri_log_messages(&f.dirs.logs, "pns", "a");
        (lines.iter().filter(|l| l.contains("comm1=pause")).count() == 2).then_some(())
    });

    // Removing the pod kills the pause process and releases its namespace.
    let start2 = start_time(pause2).unwrap();
    let pod_dir = fs::read_dir(f.dirs.root.join("pods"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    remove_manifest(&f.dirs, "pns.yaml");
    f.wait("pod directory removed", || {
        (!pod_dir.exists()).then_some(())
    });
    f.wait("the pause process is gone", || {
        (start_time(pause2) != Some(start2) || !process_exists(pause2)).then_some(())
    });
    assert!(!process_exists(pa2) && !process_exists(pb2));
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mi.contains(&*pod_dir.to_string_lossy()),
        "mounts left:\n{mi}"
    );
}

#[test]
fn share_process_namespace_renders_and_refuses_host_pid() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    let out = render(
        &f,
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: shared}}\nspec:\n  shareProcessNamespace: true\n  containers:\n  - {{name: a, image: {img}}}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pid_ns = doc["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "pid")
        .cloned()
        .unwrap();
    let path = pid_ns["path"].as_str().unwrap();
    assert!(
        path.starts_with(&*f.dirs.root.join("pods").to_string_lossy()) && path.ends_with("/ns/pid"),
        "{pid_ns}"
    );
    let out = render(
        &f,
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: both}}\nspec:\n  hostPID: true\n  shareProcessNamespace: true\n  containers:\n  - {{name: a, image: {img}}}\n"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ShareProcessNamespace and HostPID cannot both be enabled"),
        "{err}"
    );
}

#[test]
fn downward_api_files_follow_a_label_change_in_the_manifest() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    let manifest = |tier: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: dapi, labels: {{tier: {tier}}}, annotations: {{note: n-{tier}}}}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: note, fieldRef: {{fieldPath: "metadata.annotations['note']"}}}}
  containers:
  - name: main
    image: {img}
    command: [sh, -c, 'cat /info/labels; echo; cat /info/note; echo; echo end; while :; do sleep 1; done', dapi-main]
    volumeMounts: [{{name: info, mountPath: /info}}]
"#
        )
    };
    write_manifest(&f.dirs, "dapi.yaml", &manifest("web"));
    let out = f.output("dapi", "main", "end");
    assert!(out.contains(&"tier=\"web\"".to_string()), "{out:?}");
    let first = f.container_pid("dapi-main");
    let pods = f.dirs.root.join("pods");
    let old_uid = fs::read_dir(&pods)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();

    // A label change is a new manifest, so a new UID: the old pod is stopped and the new
    // one starts with freshly written files.
    write_manifest(&f.dirs, "dapi.yaml", &manifest("api"));
    let out = f.output("dapi", "main", "n-api");
    let text = out.join("\n");
    assert!(text.contains("tier=\"api\""), "{text}");
    let second = f.wait("the new pod's container", || {
        let p = *find_pids_by_cmdline("dapi-main").first()?;
        (p != first).then_some(p)
    });
    assert!(!process_exists(first));
    let new_uid = f.wait("one pod directory, the new pod's", || {
        let dirs: Vec<_> = fs::read_dir(&pods)
            .ok()?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        (dirs.len() == 1 && dirs[0] != old_uid).then(|| dirs[0].clone())
    });
    // The host side: the file in the new pod's volume, as the container sees it.
    let labels = fs::read_to_string(format!("/proc/{second}/root/info/labels")).unwrap();
    assert_eq!(labels, "tier=\"api\"\n");
    assert!(
        !pods.join(&old_uid).exists(),
        "old pod {old_uid:?} removed, new {new_uid:?}"
    );
}

#[test]
fn render_follows_the_cgroup_driver() {
    let f = Fixture::with_args(&[]).patient(T);
    let img = f.image();
    let manifest = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: drv}}\nspec:\n  containers:\n  - {{name: a, image: {img}, resources: {{requests: {{cpu: 100m}}}}}}\n");
    let cgroups_path = |extra: &[&str]| {
        let out = render_with(&f, &manifest, extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["linux"]["cgroupsPath"].as_str().unwrap().to_string()
    };
    let fs_form = cgroups_path(&["--cgroup-driver", "cgroupfs"]);
    assert!(
        fs_form.starts_with("/kubepods/burstable/pod") && fs_form.ends_with("-a-0"),
        "{fs_form}"
    );
    let uid = fs_form
        .trim_start_matches("/kubepods/burstable/pod")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let id = fs_form.rsplit('/').next().unwrap();
    let systemd_form = format!(
        "kubepods-burstable-pod{}.slice:hostlet:{id}",
        uid.replace('-', "_")
    );
    assert_eq!(cgroups_path(&["--cgroup-driver", "systemd"]), systemd_form);
    let config = f.dirs.base.join("kubelet.yaml");
    fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n",
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    assert_eq!(cgroups_path(&["--config", &config]), systemd_form);
    assert_eq!(
        cgroups_path(&["--config", &config, "--cgroup-driver", "cgroupfs"]),
        fs_form
    );
}
