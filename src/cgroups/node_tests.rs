//! Node allocatable, QoS levels and huge pages, against fixture trees.

use std::collections::BTreeMap;
use std::path::Path;

use super::hugepages::{self, size_label, HostHugepages, HugepageLimit};
use super::limits::Settings;
use super::node::{levels, write_levels};
use super::tests::{pod, prop, with_resources};
use super::*;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

fn v1_fixture(controllers: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for ctl in controllers {
        std::fs::create_dir_all(root.path().join(ctl)).unwrap();
    }
    root
}

fn host(controller: bool) -> HostHugepages {
    HostHugepages {
        sizes: vec![2 * MI as u64, GI as u64],
        controller,
    }
}

#[test]
fn page_size_names() {
    assert_eq!(size_label(2 * MI as u64), "2MB");
    assert_eq!(size_label(GI as u64), "1GB");
    assert_eq!(size_label(64 * 1024), "64KB");
    assert_eq!(
        crate::manifest::quantity::hugepage_size("hugepages-2Mi"),
        Some(Ok(2 * MI as u64))
    );
    assert_eq!(
        crate::manifest::quantity::hugepage_size("hugepages-1Gi"),
        Some(Ok(GI as u64))
    );
    assert_eq!(crate::manifest::quantity::hugepage_size("memory"), None);
    assert!(matches!(
        crate::manifest::quantity::hugepage_size("hugepages-x"),
        Some(Err(_))
    ));
    assert_eq!(
        hugepages::file_name("2MB", false),
        "hugetlb.2MB.limit_in_bytes"
    );
    assert_eq!(hugepages::file_name("2MB", true), "hugetlb.2MB.max");
}

#[test]
fn host_sizes_and_capacity_from_sysfs() {
    let mm = tempfile::tempdir().unwrap();
    for (dir, n) in [("hugepages-2048kB", "3\n"), ("hugepages-1048576kB", "0\n")] {
        std::fs::create_dir_all(mm.path().join(dir)).unwrap();
        std::fs::write(mm.path().join(dir).join("nr_hugepages"), n).unwrap();
    }
    assert_eq!(
        hugepages::host_sizes(mm.path()),
        vec![2 * MI as u64, GI as u64]
    );
    let cap = hugepages::capacity(mm.path());
    assert_eq!(cap.get(&(2 * MI as u64)), Some(&(6 * MI)));
    assert_eq!(cap.get(&(GI as u64)), Some(&0));
    let v1 = v1_fixture(&["cpu", "hugetlb"]);
    let h = Hierarchy::detect(v1.path()).unwrap();
    assert!(HostHugepages::read(mm.path(), &h).controller);
    let v1_no = v1_fixture(&["cpu"]);
    let h = Hierarchy::detect(v1_no.path()).unwrap();
    assert!(!HostHugepages::read(mm.path(), &h).controller);
}

#[test]
fn pod_hugepages_sum_apps_and_take_the_largest_init() {
    let p = pod(r#"
metadata: {name: p}
spec:
  initContainers:
  - {name: i, image: x, resources: {limits: {memory: 1Gi, hugepages-2Mi: 10Mi}}}
  containers:
  - {name: a, image: x, resources: {limits: {memory: 1Gi, hugepages-2Mi: 4Mi, hugepages-1Gi: 1Gi}}}
  - {name: b, image: x, resources: {limits: {memory: 1Gi, hugepages-2Mi: 4Mi}}}
"#);
    let l = pod_limits(&p, -1).hugepages;
    let got: Vec<(u64, i64)> = l.iter().map(|l| (l.page_size, l.limit)).collect();
    assert_eq!(got, vec![(2 * MI as u64, 10 * MI), (GI as u64, GI)]);
    assert_eq!(l[0].resource, "hugepages-2Mi");
}

fn limit(resource: &str, size: i64, v: i64) -> HugepageLimit {
    HugepageLimit {
        resource: resource.into(),
        page_size: size as u64,
        limit: v,
    }
}

#[test]
fn hugepages_refused_without_controller_or_size() {
    let v1 = v1_fixture(&["cpu", "memory"]);
    let h = Hierarchy::detect(v1.path()).unwrap();
    let want = [limit("hugepages-2Mi", 2 * MI, 4 * MI)];
    let e = host(false).check(&want, &h).unwrap_err().to_string();
    assert!(e.starts_with("resources.limits[hugepages-2Mi]: "), "{e}");
    assert!(e.contains("no hugetlb cgroup controller"), "{e}");
    assert!(e.contains("hugetlb is not mounted"), "{e}");
    let small = HostHugepages {
        sizes: vec![2 * MI as u64],
        controller: true,
    };
    let e = small
        .check(&[limit("hugepages-1Gi", GI, GI)], &h)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("resources.limits[hugepages-1Gi]")
            && e.contains("no 1GB huge pages (sizes: 2MB)"),
        "{e}"
    );
    assert!(host(true).check(&want, &h).is_ok());
    // No hugepages asked for: nothing to refuse, even without a controller.
    assert!(host(false).check(&[], &h).is_ok());
    // And create refuses before writing anything.
    let p = with_resources(&["{limits: {memory: 1Gi, hugepages-2Mi: 4Mi}}"]);
    let cg = PodCgroup::of(&p, "u1");
    let e = create_with(&h, &cg, &pod_limits(&p, -1), &host(false)).unwrap_err();
    assert!(matches!(e, CgroupError::Hugepages { .. }), "{e}");
    assert!(!v1.path().join("cpu/kubepods/burstable/podu1").exists());
}

#[test]
fn pod_cgroup_hugetlb_v1_and_v2() {
    let p = with_resources(&["{limits: {cpu: 1, memory: 1Gi, hugepages-2Mi: 4Mi}}"]);
    let cg = PodCgroup::of(&p, "u1");
    let v1 = v1_fixture(&["cpu", "memory", "hugetlb"]);
    let h = Hierarchy::detect(v1.path()).unwrap();
    create_with(&h, &cg, &pod_limits(&p, -1), &host(true)).unwrap();
    let d = v1.path().join("hugetlb/kubepods/podu1");
    assert_eq!(
        read(&d.join("hugetlb.2MB.limit_in_bytes")),
        (4 * MI).to_string()
    );
    // Sizes the pod did not ask for are closed to it.
    assert_eq!(read(&d.join("hugetlb.1GB.limit_in_bytes")), "0");

    let v2 = tempfile::tempdir().unwrap();
    std::fs::write(
        v2.path().join("cgroup.controllers"),
        "cpu memory pids hugetlb\n",
    )
    .unwrap();
    let h = Hierarchy::detect(v2.path()).unwrap();
    create_with(&h, &cg, &pod_limits(&p, -1), &host(true)).unwrap();
    let d = v2.path().join("kubepods/podu1");
    assert_eq!(read(&d.join("hugetlb.2MB.max")), (4 * MI).to_string());
    assert_eq!(read(&d.join("hugetlb.1GB.max")), "0");
    assert!(read(&v2.path().join("cgroup.subtree_control")).contains("+hugetlb"));
}

#[test]
fn reservations_parse_like_kubelet_flags() {
    let r: Reserved = "cpu=500m, memory=1Gi,pid=100,hugepages-2Mi=4Mi"
        .parse()
        .unwrap();
    assert_eq!(r.cpu_milli, 500);
    assert_eq!(r.memory, GI);
    assert_eq!(r.pids, 100);
    assert_eq!(r.hugepages.get(&(2 * MI as u64)), Some(&(4 * MI)));
    assert_eq!("".parse::<Reserved>().unwrap(), Reserved::default());
    let e = "gpu=1".parse::<Reserved>().unwrap_err().to_string();
    assert!(
        e.contains("\"gpu=1\"") && e.contains("unknown resource \"gpu\""),
        "{e}"
    );
    let e = "memory".parse::<Reserved>().unwrap_err().to_string();
    assert!(e.contains("not name=quantity"), "{e}");
    assert!("memory=lots".parse::<Reserved>().is_err());
}

#[test]
fn allocatable_is_capacity_minus_reservations_and_hugepages() {
    let cap = Capacity {
        cpu_milli: 4000,
        memory: 8 * GI,
        pids: Some(4_194_304),
        hugepages: BTreeMap::from([(2 * MI as u64, 512 * MI), (GI as u64, 0)]),
    };
    let kube: Reserved = "cpu=100m,memory=256Mi,pid=1000".parse().unwrap();
    let system: Reserved = "cpu=400m,memory=768Mi,hugepages-2Mi=12Mi".parse().unwrap();
    let a = Allocatable::of(&cap, &[&kube, &system]);
    assert_eq!(a.cpu_milli, 3500);
    assert_eq!(a.pids, Some(4_193_304));
    assert_eq!(a.hugepages.get(&(2 * MI as u64)), Some(&(500 * MI)));
    // 8Gi − 1Gi reserved − 500Mi of allocatable huge pages.
    assert_eq!(a.memory, 7 * GI - 500 * MI);
    // Never negative.
    let greedy: Reserved = "cpu=8,memory=100Gi".parse().unwrap();
    let a = Allocatable::of(&cap, &[&greedy]);
    assert_eq!((a.cpu_milli, a.memory), (0, 0));
    // No reservations: the capacity.
    let plain = Capacity {
        hugepages: BTreeMap::new(),
        ..cap
    };
    let a = Allocatable::of(&plain, &[]);
    assert_eq!((a.cpu_milli, a.memory), (4000, 8 * GI));
}

fn allocatable() -> Allocatable {
    Allocatable {
        cpu_milli: 2000,
        memory: 4 * GI,
        pids: Some(10_000),
        hugepages: BTreeMap::from([(2 * MI as u64, 8 * MI)]),
    }
}

#[test]
fn level_limits_like_the_qos_container_manager() {
    let l = levels(&allocatable(), &host(false), [250, 500]);
    assert_eq!(
        l.kubepods,
        Settings {
            cpu_shares: Some(2048),
            memory: Some(4 * GI),
            pids: Some(10_000),
            ..Default::default()
        }
    );
    assert_eq!(l.burstable.cpu_shares, Some(768));
    assert_eq!(l.besteffort.cpu_shares, Some(2));
    // No burstable pod: the minimum.
    assert_eq!(
        levels(&allocatable(), &host(false), [])
            .burstable
            .cpu_shares,
        Some(2)
    );
    // With hugetlb: kubepods gets the allocatable pages, the QoS levels are unbounded.
    let l = levels(&allocatable(), &host(true), []);
    assert_eq!(
        l.kubepods.hugetlb,
        vec![("2MB".to_string(), 8 * MI), ("1GB".to_string(), 0)]
    );
    assert!(l
        .burstable
        .hugetlb
        .iter()
        .all(|(_, v)| *v == hugepages::UNBOUNDED));
    assert_eq!(l.besteffort.hugetlb.len(), 2);
}

#[test]
fn v1_levels_written() {
    let root = v1_fixture(&["cpu", "memory", "pids", "hugetlb"]);
    let h = Hierarchy::detect(root.path()).unwrap();
    write_levels(
        &h,
        &Default::default(),
        &levels(&allocatable(), &host(true), [300]),
    )
    .unwrap();
    let r = root.path();
    assert_eq!(read(&r.join("cpu/kubepods/cpu.shares")), "2048");
    assert!(!r.join("cpu/kubepods/cpu.cfs_quota_us").exists());
    assert_eq!(
        read(&r.join("memory/kubepods/memory.limit_in_bytes")),
        (4 * GI).to_string()
    );
    assert_eq!(read(&r.join("pids/kubepods/pids.max")), "10000");
    assert_eq!(
        read(&r.join("hugetlb/kubepods/hugetlb.2MB.limit_in_bytes")),
        (8 * MI).to_string()
    );
    assert_eq!(read(&r.join("cpu/kubepods/burstable/cpu.shares")), "307");
    assert_eq!(read(&r.join("cpu/kubepods/besteffort/cpu.shares")), "2");
    assert_eq!(
        read(&r.join("hugetlb/kubepods/burstable/hugetlb.1GB.limit_in_bytes")),
        hugepages::UNBOUNDED.to_string()
    );
}

#[test]
fn v2_levels_written() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
    let h = Hierarchy::detect(root.path()).unwrap();
    write_levels(
        &h,
        &Default::default(),
        &levels(&allocatable(), &host(false), [1000]),
    )
    .unwrap();
    let r = root.path();
    assert_eq!(
        read(&r.join("kubepods/cpu.weight")),
        shares_to_weight(2048).to_string()
    );
    assert_eq!(read(&r.join("kubepods/memory.max")), (4 * GI).to_string());
    assert_eq!(read(&r.join("kubepods/pids.max")), "10000");
    assert_eq!(
        read(&r.join("kubepods/burstable/cpu.weight")),
        shares_to_weight(1024).to_string()
    );
    assert_eq!(read(&r.join("kubepods/besteffort/cpu.weight")), "1");
    assert!(!r.join("kubepods/hugetlb.2MB.max").exists());
}

#[test]
fn node_cgroups_follow_burstable_pods() {
    let root = v1_fixture(&["cpu", "memory"]);
    let h = Hierarchy::detect(root.path()).unwrap();
    let nc = NodeCgroups::with_host(Some(h), allocatable(), host(false));
    let shares = || read(&root.path().join("cpu/kubepods/burstable/cpu.shares"));
    let b1 = with_resources(&["{requests: {cpu: 250m}}", "{requests: {cpu: 250m}}"]);
    let b2 = with_resources(&["{requests: {cpu: 1}, limits: {memory: 1Gi}}"]);
    let g = with_resources(&["{limits: {cpu: 3, memory: 1Gi}}"]);
    nc.pod_started("b1", &b1).unwrap();
    assert_eq!(shares(), "512");
    nc.pod_started("g", &g).unwrap();
    assert_eq!(shares(), "512", "guaranteed pods do not count");
    nc.pod_started("b2", &b2).unwrap();
    assert_eq!(shares(), "1536");
    nc.pod_stopped("b1").unwrap();
    assert_eq!(shares(), "1024");
    nc.pod_stopped("b2").unwrap();
    assert_eq!(shares(), "2");
    // Without a hierarchy nothing is written and nothing fails.
    let none = NodeCgroups::with_host(None, allocatable(), host(false));
    none.pod_started("b1", &b1).unwrap();
    none.update().unwrap();
}

#[test]
fn systemd_level_properties_and_hugetlb_files() {
    let s = Settings {
        cpu_shares: Some(2048),
        memory: Some(4 * GI),
        pids: Some(100),
        ..Default::default()
    };
    let props = systemd::level_props("kubepods.slice", &s);
    let get = |k: &str| prop(&props, k);
    assert_eq!(
        get("CPUWeight"),
        Some(format!("t {}", shares_to_weight(2048)))
    );
    assert_eq!(get("MemoryMax"), Some(format!("t {}", 4 * GI)));
    assert_eq!(get("TasksMax"), Some("t 100".into()));
    let be = systemd::level_props(
        "kubepods-besteffort.slice",
        &Settings {
            cpu_shares: Some(2),
            ..Default::default()
        },
    );
    assert!(be.iter().any(|(n, _, v)| *n == "CPUWeight" && v == "1"));
    assert!(be.iter().all(|(n, _, _)| *n != "MemoryMax"));

    let root = tempfile::tempdir().unwrap();
    let slice = "kubepods-burstable-podu1.slice";
    let dir = root
        .path()
        .join("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu1.slice");
    std::fs::create_dir_all(&dir).unwrap();
    systemd::write_hugetlb(root.path(), slice, &[("2MB".into(), 4 * MI)]).unwrap();
    assert_eq!(read(&dir.join("hugetlb.2MB.max")), (4 * MI).to_string());
    for d in [
        root.path().to_path_buf(),
        root.path().join("kubepods.slice"),
        root.path().join("kubepods.slice/kubepods-burstable.slice"),
        dir.clone(),
    ] {
        assert_eq!(read(&d.join("cgroup.subtree_control")), "+hugetlb");
    }
    // Nothing asked for: nothing written.
    systemd::write_hugetlb(root.path(), "kubepods-podu2.slice", &[]).unwrap();
    assert!(!root
        .path()
        .join("kubepods.slice/kubepods-podu2.slice")
        .exists());
}
