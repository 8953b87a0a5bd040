use super::*;
use k8s_openapi::api::core::v1::Pod;

/// A systemd unit property as `signature value`, as busctl takes it.
pub(super) fn prop(props: &[(&str, &str, String)], name: &str) -> Option<String> {
    props
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, sig, v)| format!("{sig} {v}"))
}

pub(super) fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).expect("test pod")
}

pub(super) fn with_resources(res: &[&str]) -> Pod {
    let containers: String = res
        .iter()
        .enumerate()
        .map(|(i, r)| format!("  - {{name: c{i}, image: x, resources: {r}}}\n"))
        .collect();
    pod(&format!(
        "metadata: {{name: p}}\nspec:\n  containers:\n{containers}"
    ))
}

const GI: i64 = 1 << 30;

#[test]
fn qos_classes_like_get_pod_qos() {
    use QosClass::*;
    let cases = [
        (vec!["{}"], BestEffort),
        (vec!["{requests: {cpu: '0'}}"], BestEffort),
        (vec!["{limits: {cpu: 1, memory: 1Gi}}"], Guaranteed),
        (
            vec!["{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 1, memory: 1Gi}}"],
            Guaranteed,
        ),
        (
            vec!["{limits: {cpu: 1, memory: 1Gi}, requests: {cpu: 500m}}"],
            Burstable,
        ),
        (vec!["{limits: {cpu: 1}}"], Burstable),
        (vec!["{requests: {memory: 1Gi}}"], Burstable),
        (vec!["{limits: {cpu: 1, memory: 1Gi}}", "{}"], Burstable),
    ];
    for (res, want) in cases {
        assert_eq!(qos_class(&with_resources(&res)), want, "{res:?}");
    }
}

#[test]
fn pod_cgroup_paths() {
    let g = PodCgroup::of(&with_resources(&["{limits: {cpu: 1, memory: 1Gi}}"]), "u1");
    assert_eq!(g.path, "/kubepods/podu1");
    assert_eq!(g.container("c-0"), "/kubepods/podu1/c-0");
    let b = PodCgroup::of(&with_resources(&["{requests: {cpu: 1}}"]), "u2");
    assert_eq!(b.path, "/kubepods/burstable/podu2");
    let e = PodCgroup::of(&with_resources(&["{}"]), "u3");
    assert_eq!(e.path, "/kubepods/besteffort/podu3");
}

#[test]
fn pod_limits_like_resource_config_for_pod() {
    let g = pod_limits(
        &with_resources(&[
            "{limits: {cpu: 1, memory: 1Gi}}",
            "{limits: {cpu: 500m, memory: 1Gi}}",
        ]),
        -1,
    );
    assert_eq!(
        g,
        PodLimits {
            cpu_shares: 1536,
            cpu_quota: Some(150_000),
            memory: Some(2 * GI),
            pids: None,
            hugepages: vec![],
        }
    );
    // Burstable: quota/memory only when every container declares the limit.
    let b = pod_limits(
        &with_resources(&[
            "{requests: {cpu: 250m}, limits: {memory: 1Gi}}",
            "{requests: {cpu: 250m}}",
        ]),
        100,
    );
    assert_eq!(
        b,
        PodLimits {
            cpu_shares: 512,
            cpu_quota: None,
            memory: None,
            pids: Some(100),
            hugepages: vec![],
        }
    );
    let e = pod_limits(&with_resources(&["{}"]), 0);
    assert_eq!(e.cpu_shares, 2);
    assert_eq!(e.memory, None);
}

#[test]
fn oom_score_adj_by_qos() {
    let cap = 10 * GI;
    let g = with_resources(&["{limits: {cpu: 1, memory: 1Gi}}"]);
    assert_eq!(
        oom_score_adj(&g, &g.spec.as_ref().unwrap().containers[0], cap),
        -997
    );
    let e = with_resources(&["{}"]);
    assert_eq!(
        oom_score_adj(&e, &e.spec.as_ref().unwrap().containers[0], cap),
        1000
    );
    let b = with_resources(&["{requests: {memory: 1Gi}}"]);
    assert_eq!(
        oom_score_adj(&b, &b.spec.as_ref().unwrap().containers[0], cap),
        900
    );
    let tiny = with_resources(&["{requests: {cpu: 1m}}"]);
    assert_eq!(
        oom_score_adj(&tiny, &tiny.spec.as_ref().unwrap().containers[0], cap),
        999
    );
    let huge = with_resources(&["{requests: {memory: 100Gi}}"]);
    assert_eq!(
        oom_score_adj(&huge, &huge.spec.as_ref().unwrap().containers[0], cap),
        3
    );
    let mut critical = with_resources(&["{requests: {cpu: 100m}}"]);
    critical.spec.as_mut().unwrap().priority_class_name = Some("system-node-critical".into());
    assert_eq!(
        oom_score_adj(
            &critical,
            &critical.spec.as_ref().unwrap().containers[0],
            cap
        ),
        -997
    );
}

#[test]
fn weight_conversion_matches_libcgroups() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 100);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(512), 59);
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

#[test]
fn v1_tree_gets_pod_cgroup_and_limits() {
    let root = tempfile::tempdir().unwrap();
    for ctl in ["cpu", "memory", "pids", "cpuset"] {
        std::fs::create_dir_all(root.path().join(ctl)).unwrap();
    }
    std::fs::write(root.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
    std::fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
    let h = Hierarchy::detect(root.path()).unwrap();
    assert_eq!(
        h,
        Hierarchy::V1 {
            root: root.path().into()
        }
    );
    let p = with_resources(&["{limits: {cpu: 1, memory: 1Gi}}"]);
    let cg = PodCgroup::of(&p, "u1");
    create(&h, &cg, &pod_limits(&p, 64)).unwrap();
    let d = |ctl: &str| root.path().join(ctl).join("kubepods/podu1");
    assert_eq!(read(&d("cpu").join("cpu.shares")), "1024");
    assert_eq!(read(&d("cpu").join("cpu.cfs_quota_us")), "100000");
    assert_eq!(read(&d("cpu").join("cpu.cfs_period_us")), "100000");
    assert_eq!(
        read(&d("memory").join("memory.limit_in_bytes")),
        GI.to_string()
    );
    assert_eq!(read(&d("pids").join("pids.max")), "64");
    assert_eq!(read(&d("cpuset").join("cpuset.cpus")), "0-1");
    assert_eq!(read(&root.path().join("cpuset/kubepods/cpuset.mems")), "0");

    let e = with_resources(&["{}"]);
    create(&h, &PodCgroup::of(&e, "u2"), &pod_limits(&e, -1)).unwrap();
    assert_eq!(
        read(&root.path().join("cpu/kubepods/besteffort/cpu.shares")),
        "2"
    );
    assert_eq!(
        read(&root.path().join("cpu/kubepods/besteffort/podu2/cpu.shares")),
        "2"
    );
}

#[test]
fn v2_tree_gets_pod_cgroup_weight_and_max() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap();
    let h = Hierarchy::detect(root.path()).unwrap();
    assert_eq!(
        h,
        Hierarchy::V2 {
            root: root.path().into()
        }
    );
    let p = with_resources(&["{requests: {cpu: 500m}, limits: {cpu: 2, memory: 512Mi}}"]);
    let cg = PodCgroup::of(&p, "u1");
    assert_eq!(cg.path, "/kubepods/burstable/podu1");
    create(&h, &cg, &pod_limits(&p, -1)).unwrap();
    let d = root.path().join("kubepods/burstable/podu1");
    assert_eq!(
        read(&d.join("cpu.weight")),
        shares_to_weight(512).to_string()
    );
    assert_eq!(read(&d.join("cpu.max")), "200000 100000");
    assert_eq!(read(&d.join("memory.max")), (512 << 20).to_string());
    assert!(!d.join("pids.max").exists());
    assert_eq!(
        read(&root.path().join("cgroup.subtree_control")),
        "+cpuset +cpu +io +memory +pids"
    );
}

#[test]
fn systemd_slices_as_the_kubelet_names_them() {
    let uid = "0a0b-c1d2";
    let burstable = with_resources(&["{requests: {cpu: 500m}, limits: {cpu: 2, memory: 512Mi}}"]);
    let guaranteed = with_resources(&["{limits: {cpu: 1, memory: 1Gi}}"]);
    let besteffort = with_resources(&["{}"]);
    let slice = |p: &Pod| systemd::pod_slice(&PodCgroup::of(p, uid));
    assert_eq!(slice(&burstable), "kubepods-burstable-pod0a0b_c1d2.slice");
    assert_eq!(slice(&guaranteed), "kubepods-pod0a0b_c1d2.slice");
    assert_eq!(slice(&besteffort), "kubepods-besteffort-pod0a0b_c1d2.slice");
    assert_eq!(
        systemd::qos_slices(&Default::default(), QosClass::Burstable),
        ["kubepods.slice", "kubepods-burstable.slice"]
    );
    assert_eq!(
        systemd::qos_slices(&Default::default(), QosClass::Guaranteed),
        ["kubepods.slice"]
    );
    assert!(systemd::unit_exists(
        "Call failed: Unit kubepods.slice was already loaded or has a fragment file."
    ));
    assert!(systemd::unit_exists(
        "Call failed: Unit x.slice already exists."
    ));
    assert!(!systemd::unit_exists("Call failed: Access denied"));
    assert_eq!(
        systemd::expand_slice("kubepods-burstable-pod0a0b_c1d2.slice"),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a0b_c1d2.slice"
    );

    let cg = PodCgroup::of(&burstable, uid);
    let sd = Hierarchy::Systemd {
        root: "/sys/fs/cgroup".into(),
    };
    let path = cg.container_with(Some(&sd), "0a0b-c1d2-app-0");
    assert_eq!(
        path,
        "kubepods-burstable-pod0a0b_c1d2.slice:hostlet:0a0b-c1d2-app-0"
    );
    assert_eq!(
        systemd::fs_path(&path),
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a0b_c1d2.slice/hostlet-0a0b-c1d2-app-0.scope"
    );
    // cgroupfs paths are untouched, with or without a hierarchy.
    let v2 = Hierarchy::V2 {
        root: "/sys/fs/cgroup".into(),
    };
    assert_eq!(
        cg.container_with(Some(&v2), "x"),
        "/kubepods/burstable/pod0a0b-c1d2/x"
    );
    assert_eq!(
        cg.container_with(None, "x"),
        "/kubepods/burstable/pod0a0b-c1d2/x"
    );
    assert_eq!(
        systemd::fs_path("/kubepods/burstable/podu/x"),
        "/kubepods/burstable/podu/x"
    );
}

#[test]
fn systemd_pod_slice_properties_are_resource_config_for_pod() {
    let p = with_resources(&[
        "{requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 500m, memory: 128Mi}}",
    ]);
    let cg = PodCgroup::of(&p, "u");
    let props = systemd::pod_props(&cg, &pod_limits(&p, 77));
    let get = |k: &str| prop(&props, k);
    assert_eq!(
        get("CPUWeight"),
        Some(format!("t {}", shares_to_weight(256)))
    );
    // 500m: 50000 µs per 100 ms period → 500000 µs per second.
    assert_eq!(get("CPUQuotaPerSecUSec"), Some("t 500000".into()));
    assert_eq!(get("MemoryMax"), Some(format!("t {}", 128 << 20)));
    assert_eq!(get("TasksMax"), Some("t 77".into()));
    assert_eq!(get("DefaultDependencies"), Some("b false".into()));
    // Unlimited: no property, systemd's default ("max").
    let b = with_resources(&["{requests: {cpu: 250m}}"]);
    let props = systemd::pod_props(&PodCgroup::of(&b, "u"), &pod_limits(&b, -1));
    assert!(props
        .iter()
        .all(|(n, _, _)| !["CPUQuotaPerSecUSec", "MemoryMax", "TasksMax"].contains(n)));
}

#[test]
fn cgroup_driver_flag_values() {
    assert_eq!("systemd".parse::<Driver>(), Ok(Driver::Systemd));
    assert_eq!("cgroupfs".parse::<Driver>(), Ok(Driver::Cgroupfs));
    assert!("docker"
        .parse::<Driver>()
        .unwrap_err()
        .to_string()
        .contains("\"docker\""));
    assert_eq!(
        serde_json::to_string(&Driver::Systemd).unwrap(),
        "\"systemd\""
    );
    if !hierarchy::booted() {
        let e = Hierarchy::for_driver(Path::new("/sys/fs/cgroup"), Driver::Systemd).unwrap_err();
        assert!(e.to_string().contains("systemd is not running"), "{e}");
    }
}

#[test]
fn pod_cgroups_live_under_the_cgroup_root() {
    let root = tempfile::tempdir().unwrap();
    for ctl in ["cpu", "cpuset"] {
        std::fs::create_dir_all(root.path().join(ctl)).unwrap();
    }
    std::fs::write(root.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
    std::fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
    let h = Hierarchy::detect(root.path()).unwrap();
    let cr = crate::cgroups::CgroupRoot::parse("/t1/a").unwrap();
    let p = with_resources(&["{requests: {cpu: 500m}}"]);
    let cg = PodCgroup::under(&cr, &p, "u1");
    assert_eq!(cg.path, "/t1/a/kubepods/burstable/podu1");
    assert_eq!(cg.container("c"), "/t1/a/kubepods/burstable/podu1/c");
    create(&h, &cg, &pod_limits(&p, -1)).unwrap();
    // Every level from the root down gets the cpus its tasks need (v1 cpuset).
    for level in [
        "t1",
        "t1/a",
        "t1/a/kubepods",
        "t1/a/kubepods/burstable/podu1",
    ] {
        let d = root.path().join("cpuset").join(level);
        assert_eq!(read(&d.join("cpuset.cpus")), "0-1", "{level}");
    }
    assert_eq!(
        systemd::pod_slice(&cg),
        "t1-a-kubepods-burstable-podu1.slice"
    );
    assert_eq!(
        systemd::qos_slices(&cr, QosClass::Burstable),
        ["t1-a-kubepods.slice", "t1-a-kubepods-burstable.slice"]
    );
    assert_eq!(
        systemd::expand_slice(&systemd::pod_slice(&cg)),
        "/t1.slice/t1-a.slice/t1-a-kubepods.slice/t1-a-kubepods-burstable.slice/t1-a-kubepods-burstable-podu1.slice"
    );
}
