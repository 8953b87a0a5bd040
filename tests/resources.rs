//! Resources on real hosts: eviction of a pod whose disk emptyDir passes its `sizeLimit`,
//! huge pages (refused where the host cannot limit them; limited on pod and container
//! cgroups where it can), and node allocatable on the `kubepods` and QoS level cgroups.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(40);

fn hostlet_pods_table(f: &Fixture) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["pods", "--root-dir"])
        .arg(&f.dirs.root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A pod writing `write_mib` into a 1Mi emptyDir. A pod that overfills it also ignores
/// SIGTERM under a 300 s grace period: only the eviction's own 2 s grace ends it soon.
fn eviction_manifest(img: &str, marker: &str, write_mib: u32) -> String {
    let on_term = if write_mib > 1 { "" } else { "exit 0" };
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hog, annotations: {{try: "{marker}"}}}}
spec:
  terminationGracePeriodSeconds: 300
  containers:
  - name: c
    image: {img}
    command: ["sh", "-c", "dd if=/dev/zero of=/data/fill bs=1M count={write_mib} && echo written && trap '{on_term}' TERM; while true; do sleep 1; done; : {marker}"]
    volumeMounts: [{{name: scratch, mountPath: /data}}]
  volumes:
  - name: scratch
    emptyDir: {{sizeLimit: 1Mi}}
"#
    )
}

#[test]
fn disk_empty_dir_over_its_size_limit_evicts_the_pod() {
    let f = Fixture::with_args(&["--housekeeping-interval", "500ms"]).patient(T);
    let img = f.image();
    write_manifest(
        &f.dirs,
        "hog.yaml",
        &eviction_manifest(&img, "evict-me-1", 3),
    );
    f.output("hog", "c", "written");
    let st = f.wait("the pod evicted", || {
        let p = f.pod("hog")?;
        (p["status"]["reason"] == "Evicted").then(|| p["status"].clone())
    });
    assert_eq!(st["phase"], "Failed", "{st}");
    assert_eq!(
        st["message"], "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ",
        "{st}"
    );
    // Within the wait (40 s, ×3 in the VM), far below the pod's 300 s grace period.
    f.wait("the evicted container gone", || {
        find_pids_by_cmdline("evict-me-1").is_empty().then_some(())
    });
    assert!(
        hostlet_pods_table(&f).contains("Evicted"),
        "{}",
        hostlet_pods_table(&f)
    );
    // Not restarted: still Failed, no container, after several housekeeping intervals
    // and the crash back-off's first delay.
    std::thread::sleep(Duration::from_secs(3));
    let p = f.pod("hog").expect("the evicted pod stays listed");
    assert_eq!(p["status"]["phase"], "Failed");
    assert!(find_pids_by_cmdline("evict-me-1").is_empty());
    // The volume's data is released.
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(!f
        .dirs
        .root
        .join("pods")
        .join(&uid)
        .join("volumes/scratch/fill")
        .exists());
    // A changed manifest is a new pod, which runs (this one stays under its limit).
    write_manifest(
        &f.dirs,
        "hog.yaml",
        &eviction_manifest(&img, "evict-me-2", 0),
    );
    f.container_pid("evict-me-2");
    let p = f.wait("the new pod running", || {
        let p = f.pod("hog")?;
        (p["status"]["phase"] == "Running").then_some(p)
    });
    assert_ne!(p["metadata"]["uid"].as_str().unwrap(), uid);
    assert!(p["status"]["reason"].is_null(), "{p}");
}

#[test]
fn disk_usage_does_not_cross_mounts() {
    require_root_and_tools();
    let d = tempfile::tempdir().unwrap();
    let inner = d.path().join("mnt");
    fs::create_dir(&inner).unwrap();
    let before = hostlet::worker::eviction::disk_usage(d.path()).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &inner,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=8m"),
    )
    .unwrap();
    fs::write(inner.join("big"), vec![1u8; 4 << 20]).unwrap();
    let with_mount = hostlet::worker::eviction::disk_usage(d.path());
    nix::mount::umount2(&inner, nix::mount::MntFlags::MNT_DETACH).unwrap();
    let with_mount = with_mount.unwrap();
    // The tmpfs (its root and its 4 MiB file) is another filesystem: not counted.
    assert!(with_mount < before + (1 << 20), "{before} → {with_mount}");
}

/// The hugetlb controller of the hierarchy hostlet uses (v1: its own mount; v2: the root's
/// cgroup.controllers).
fn host_has_hugetlb() -> bool {
    if cgroup_v2() {
        fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb"))
    } else {
        Path::new("/sys/fs/cgroup/hugetlb").is_dir()
    }
}

fn hugepages_manifest(img: &str, resource: &str, amount: &str, marker: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: huge}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {img}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done; : {marker}"]
    resources:
      limits: {{memory: 64Mi, {resource}: {amount}}}
"#
    )
}

/// Hugepage limits where the host has the hugetlb controller (the v2 VM), a refusal
/// naming the resource where it has not (CI's hybrid v1 host), and on both a refusal of a
/// page size the kernel does not have.
#[test]
fn hugepages_are_limited_where_the_host_can_and_refused_where_not() {
    if host_has_hugetlb() {
        hugepages_limit_container_pod_and_kubepods_cgroups();
    }
    hugepages_the_host_cannot_limit_are_refused();
}

fn hugepages_the_host_cannot_limit_are_refused() {
    let f = Fixture::new().patient(T);
    // Without a hugetlb controller every size is refused; with one, a size the kernel
    // does not have (x86 has 2 MiB and 1 GiB pages) is.
    let (resource, amount, why) = if host_has_hugetlb() {
        ("hugepages-4Mi", "4Mi", "the host has no 4MB huge pages")
    } else {
        (
            "hugepages-2Mi",
            "2Mi",
            "the host has no hugetlb cgroup controller",
        )
    };
    write_manifest(
        &f.dirs,
        "huge.yaml",
        &hugepages_manifest(&f.image(), resource, amount, "huge-refused"),
    );
    let waiting = f.wait("the container refused", || {
        let p = f.pod("huge")?;
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    let msg = waiting["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("resources.limits[{resource}]")) && msg.contains(why),
        "{msg}"
    );
    assert!(find_pids_by_cmdline("huge-refused").is_empty());
}

/// Where the hugetlb controller exists (the cgroup v2 VM, vm/run.sh): reserves 2 MiB
/// pages, then checks the hugetlb limits of the container, its pod and `kubepods`.
fn hugepages_limit_container_pod_and_kubepods_cgroups() {
    let nr = Path::new("/proc/sys/vm/nr_hugepages");
    let old = fs::read_to_string(nr).unwrap();
    if old.trim().parse::<u64>().unwrap() < 4 {
        fs::write(nr, "4").unwrap();
    }
    let pages: i64 = fs::read_to_string(nr).unwrap().trim().parse().unwrap();
    assert!(
        pages >= 2,
        "could not reserve 2 MiB pages (nr_hugepages={pages})"
    );
    let f = Fixture::new().patient(T);
    write_manifest(
        &f.dirs,
        "huge.yaml",
        &hugepages_manifest(&f.image(), "hugepages-2Mi", "4Mi", "huge-limited"),
    );
    let pid = f.container_pid("huge-limited");
    let file = if cgroup_v2() {
        "hugetlb.2MB.max"
    } else {
        "hugetlb.2MB.limit_in_bytes"
    };
    let read = |dir: &Path| {
        fs::read_to_string(dir.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
            .trim()
            .to_string()
    };
    let container = cgroup_dir(pid, "hugetlb");
    assert_eq!(read(&container), (4u64 << 20).to_string());
    let pod_dir = pod_cgroup_dir(pid, "hugetlb");
    assert_eq!(read(&pod_dir), (4u64 << 20).to_string());
    if Path::new("/sys/kernel/mm/hugepages/hugepages-1048576kB").is_dir() {
        let other = file.replace("2MB", "1GB");
        assert_eq!(
            fs::read_to_string(pod_dir.join(&other)).unwrap().trim(),
            "0",
            "a size the pod did not ask for is closed to it"
        );
    }
    // Other tests' agents share `kubepods` and may have written it from an older page
    // count; this agent rewrites it at pod set-up and every minute.
    let want = (pages * (2 << 20)).to_string();
    f.wait("kubepods' hugetlb limit from the reserved pages", || {
        (read(&kubepods_dir(&f.dirs, "hugetlb")) == want).then_some(())
    });
    drop(f);
    fs::write(nr, old.trim()).unwrap();
}

fn qos_dir(dirs: &AgentDirs, controller: &str, qos: &str) -> PathBuf {
    let k = kubepods_dir(dirs, controller);
    if k.ends_with("kubepods.slice") {
        k.join(format!("kubepods-{qos}.slice"))
    } else {
        k.join(qos)
    }
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Pre-allocated huge pages, bytes: taken off allocatable memory.
fn hugepages_bytes() -> u64 {
    let Ok(rd) = fs::read_dir("/sys/kernel/mm/hugepages") else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let n: u64 = read_trim(&e.path().join("nr_hugepages"))?.parse().ok()?;
            Some(kb * 1024 * n)
        })
        .sum()
}

/// cpu shares as the host shows them (v1 cpu.shares; v2 cpu.weight compared as weight).
fn cpu_value(dir: &Path, shares: u64) -> (Option<String>, String) {
    if cgroup_v2() {
        (
            read_trim(&dir.join("cpu.weight")),
            cpu_shares_to_weight(shares).to_string(),
        )
    } else {
        (read_trim(&dir.join("cpu.shares")), shares.to_string())
    }
}

#[test]
fn kubepods_gets_node_allocatable_and_qos_levels_their_shares() {
    let f = Fixture::with_args(&[
        "--system-reserved",
        "cpu=100m,memory=96Mi",
        "--kube-reserved",
        "memory=32Mi",
    ])
    .patient(T);
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    let shares = ((cpus * 1000 - 100) * 1024 / 1000).clamp(2, 262_144);
    // The kernel keeps limits in whole pages.
    let page = 4096;
    let memory = (mem_total() - (128 << 20) - hugepages_bytes()) / page * page;
    let mem_file = if cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    // Other agents on this host may rewrite the shared levels: wait for ours.
    f.wait("kubepods limited to node allocatable", || {
        let (got, want) = cpu_value(&kubepods_dir(&f.dirs, "cpu"), shares);
        let m = read_trim(&kubepods_dir(&f.dirs, "memory").join(mem_file))?;
        (got.as_deref() == Some(want.as_str()) && m == memory.to_string()).then_some(())
    });
    let pids = read_trim(&kubepods_dir(&f.dirs, "pids").join("pids.max")).unwrap();
    let pid_max: u64 = read_trim(Path::new("/proc/sys/kernel/pid_max"))
        .unwrap()
        .parse()
        .unwrap();
    let threads_max: u64 = read_trim(Path::new("/proc/sys/kernel/threads-max"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pids, pid_max.min(threads_max).to_string());
    let (be, want) = cpu_value(&qos_dir(&f.dirs, "cpu", "besteffort"), 2);
    assert_eq!(be.as_deref(), Some(want.as_str()));

    // A burstable pod's request raises the burstable level; its removal lowers it again.
    write_manifest(
        &f.dirs,
        "b.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: b}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done; : qos-burstable-300"]
    resources: {{requests: {{cpu: 300m}}}}
"#,
            f.image()
        ),
    );
    f.container_pid("qos-burstable-300");
    f.wait("burstable shares = 300m", || {
        let (got, want) = cpu_value(&qos_dir(&f.dirs, "cpu", "burstable"), 307);
        (got.as_deref() == Some(want.as_str())).then_some(())
    });
    remove_manifest(&f.dirs, "b.yaml");
    f.wait("burstable shares back to the minimum", || {
        let (got, want) = cpu_value(&qos_dir(&f.dirs, "cpu", "burstable"), 2);
        (got.as_deref() == Some(want.as_str())).then_some(())
    });
}
