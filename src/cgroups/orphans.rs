//! Pod cgroups of pods the agent no longer knows, removed as the kubelet's
//! `cleanupOrphanedPodCgroups` does: a pod's worker removes its cgroup when the pod ends,
//! but an agent killed in between, or a removal the kernel refused while the last process
//! was still exiting, would leave it (empty, in every v1 controller) on the host forever.
//!
//! Only pod cgroups under the agent's own `--cgroup-root` are looked at, and only those with
//! no process left anywhere inside are removed: a container outlives its agent, and the
//! next agent adopts it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cgroupfs;
use super::hierarchy::Hierarchy;
use super::limits::{pod_slice, PodCgroup};
use super::qos::QosClass;
use super::root::CgroupRoot;
use super::systemd::{self, expand_slice};
use super::CgroupError;

/// One pod cgroup found under the root: its directories (one per v1 controller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub cgroup: PodCgroup,
    pub dirs: Vec<PathBuf>,
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Pod cgroups of unknown pods removed.
    pub removed: Vec<String>,
    /// Pod cgroups of unknown pods kept because a process is still inside.
    pub busy: Vec<String>,
}

const QOS: [QosClass; 3] = [
    QosClass::Guaranteed,
    QosClass::Burstable,
    QosClass::BestEffort,
];

/// The uid in a pod cgroup's directory name under a QoS level: `pod<uid>` (cgroupfs) or
/// `<level unit>-pod<uid with - as _>.slice` (systemd). Anything else is not a pod cgroup.
fn pod_uid(name: &str, h: &Hierarchy, level_unit: &str) -> Option<String> {
    let uid = match h {
        Hierarchy::Systemd { .. } => name
            .strip_prefix(level_unit)?
            .strip_prefix("-pod")?
            .strip_suffix(".slice")?
            .replace('_', "-"),
        _ => name.strip_prefix("pod")?.to_string(),
    };
    let ok = !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then_some(uid)
}

/// Every pod cgroup under `root`, by uid.
pub fn find(h: &Hierarchy, root: &CgroupRoot) -> BTreeMap<String, Found> {
    let mut out: BTreeMap<String, Found> = BTreeMap::new();
    for qos in QOS {
        let (rel, unit) = match h {
            Hierarchy::Systemd { .. } => {
                let mut unit = root.kubepods_unit();
                if !qos.dir().is_empty() {
                    unit = format!("{unit}-{}", qos.dir());
                }
                (expand_slice(&format!("{unit}.slice")), unit)
            }
            _ if qos.dir().is_empty() => (root.kubepods(), String::new()),
            _ => (format!("{}/{}", root.kubepods(), qos.dir()), String::new()),
        };
        for (_, level) in h.dirs(&rel) {
            let Ok(rd) = std::fs::read_dir(&level) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(uid) = pod_uid(&name, h, &unit) else {
                    continue;
                };
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let found = out.entry(uid.clone()).or_insert_with(|| Found {
                    cgroup: PodCgroup {
                        qos,
                        path: format!("{}/pod{uid}", rel_fs(root, qos)),
                        uid,
                        root: root.clone(),
                    },
                    dirs: Vec::new(),
                });
                found.dirs.push(e.path());
            }
        }
    }
    out
}

/// The cgroupfs path of a QoS level under the root.
fn rel_fs(root: &CgroupRoot, qos: QosClass) -> String {
    match qos.dir() {
        "" => root.kubepods(),
        d => format!("{}/{d}", root.kubepods()),
    }
}

/// True when `dir` or a cgroup below it holds a process (or cannot be read: when unsure,
/// the cgroup is kept).
pub fn has_processes(dir: &Path) -> bool {
    let mut todo = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = todo.pop() {
        match std::fs::read_to_string(d.join("cgroup.procs")) {
            Ok(procs) if procs.trim().is_empty() => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => return true,
        }
        // A pod cgroup holds container cgroups (and systemd scopes); nothing deeper is ours.
        if depth >= 3 {
            continue;
        }
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push((e.path(), depth + 1));
            }
        }
    }
    false
}

/// Blocking: removes the pod cgroups under `root` whose pod is not `known` and that hold no
/// process.
pub fn sweep(h: &Hierarchy, root: &CgroupRoot, known: impl Fn(&str) -> bool) -> Swept {
    let mut swept = Swept::default();
    for (uid, found) in find(h, root) {
        if known(&uid) {
            continue;
        }
        if found.dirs.iter().any(|d| has_processes(d)) {
            swept.busy.push(uid);
            continue;
        }
        match remove(h, &found.cgroup) {
            Ok(()) => swept.removed.push(uid),
            Err(e) => {
                tracing::warn!(error = %e, uid, "removing the cgroup of a pod that no longer exists");
                swept.busy.push(uid);
            }
        }
    }
    swept
}

fn remove(h: &Hierarchy, cg: &PodCgroup) -> Result<(), CgroupError> {
    if let Hierarchy::Systemd { root } = h {
        systemd::remove(cg)?;
        // A slice systemd does not know (its unit was lost) is only a directory.
        let dir = root.join(expand_slice(&pod_slice(cg)).trim_start_matches('/'));
        return match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CgroupError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        };
    }
    cgroupfs::remove(h, cg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(controllers: &[&str]) -> (tempfile::TempDir, Hierarchy) {
        let t = tempfile::tempdir().unwrap();
        for c in controllers {
            std::fs::create_dir_all(t.path().join(c)).unwrap();
        }
        let h = Hierarchy::detect(t.path()).unwrap();
        (t, h)
    }

    fn mkdir(p: PathBuf) -> PathBuf {
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn removes_empty_cgroups_of_unknown_pods_in_every_controller() {
        let (t, h) = v1(&["cpu", "memory", "pids"]);
        let root = CgroupRoot::parse("/agent1").unwrap();
        let r = t.path();
        for ctl in ["cpu", "memory", "pids"] {
            mkdir(r.join(ctl).join("agent1/kubepods/besteffort/podgone-1/ctr"));
            mkdir(r.join(ctl).join("agent1/kubepods/podgone-2"));
            mkdir(r.join(ctl).join("agent1/kubepods/burstable/podlive"));
        }
        // Only in one controller: a removal that stopped half way.
        mkdir(r.join("memory/agent1/kubepods/burstable/podhalf"));
        // Not pod cgroups: left alone.
        mkdir(r.join("cpu/agent1/kubepods/burstable/other"));
        mkdir(r.join("cpu/agent1/kubepods/pod_x"));
        let swept = sweep(&h, &root, |uid| uid == "live");
        assert_eq!(swept.removed, ["gone-1", "gone-2", "half"]);
        assert!(swept.busy.is_empty());
        for ctl in ["cpu", "memory", "pids"] {
            let k = r.join(ctl).join("agent1/kubepods");
            assert!(!k.join("besteffort/podgone-1").exists());
            assert!(!k.join("podgone-2").exists());
            assert!(k.join("burstable/podlive").is_dir());
            // The levels stay, as with the kubelet.
            assert!(k.join("besteffort").is_dir());
        }
        assert!(!r.join("memory/agent1/kubepods/burstable/podhalf").exists());
        assert!(r.join("cpu/agent1/kubepods/burstable/other").is_dir());
        assert!(r.join("cpu/agent1/kubepods/pod_x").is_dir());
    }

    #[test]
    fn keeps_cgroups_with_a_process_anywhere_inside() {
        let (t, h) = v1(&["cpu", "memory"]);
        let root = CgroupRoot::default();
        let r = t.path();
        for ctl in ["cpu", "memory"] {
            mkdir(r.join(ctl).join("kubepods/besteffort/podbusy/ctr"));
        }
        std::fs::write(
            r.join("memory/kubepods/besteffort/podbusy/ctr/cgroup.procs"),
            "4242\n",
        )
        .unwrap();
        let swept = sweep(&h, &root, |_| false);
        assert_eq!(swept.busy, ["busy"]);
        assert!(swept.removed.is_empty());
        assert!(r.join("cpu/kubepods/besteffort/podbusy/ctr").is_dir());
    }

    #[test]
    fn looks_only_under_its_own_root() {
        let (t, h) = v1(&["cpu"]);
        let r = t.path();
        let other = mkdir(r.join("cpu/agent2/kubepods/podx"));
        let default = mkdir(r.join("cpu/kubepods/pody"));
        let swept = sweep(&h, &CgroupRoot::parse("/agent1").unwrap(), |_| false);
        assert!(swept.removed.is_empty());
        assert!(other.is_dir() && default.is_dir());
        // The default root is `/kubepods`, not every root below it.
        let swept = sweep(&h, &CgroupRoot::default(), |_| false);
        assert_eq!(swept.removed, ["y"]);
        assert!(other.is_dir());
    }

    #[test]
    fn finds_systemd_pod_slices_with_their_uid() {
        let t = tempfile::tempdir().unwrap();
        let h = Hierarchy::Systemd {
            root: t.path().into(),
        };
        let root = CgroupRoot::parse("/a.slice").unwrap();
        let base = t.path().join("a.slice/a-kubepods.slice");
        mkdir(base.join("a-kubepods-pod0a_1b.slice"));
        mkdir(base.join("a-kubepods-besteffort.slice/a-kubepods-besteffort-pod2c_3d.slice"));
        mkdir(base.join("a-kubepods-burstable.slice/kubepods-burstable-pod4e.slice"));
        let found = find(&h, &root);
        assert_eq!(found.keys().collect::<Vec<_>>(), ["0a-1b", "2c-3d"]);
        let be = &found["2c-3d"].cgroup;
        assert_eq!(be.qos, QosClass::BestEffort);
        assert_eq!(pod_slice(be), "a-kubepods-besteffort-pod2c_3d.slice");
    }

    #[test]
    fn v2_pod_cgroups_are_found_once() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let h = Hierarchy::detect(t.path()).unwrap();
        mkdir(t.path().join("kubepods/burstable/poda"));
        let found = find(&h, &CgroupRoot::default());
        assert_eq!(found["a"].dirs, [t.path().join("kubepods/burstable/poda")]);
        assert_eq!(found["a"].cgroup.path, "/kubepods/burstable/poda");
    }
}
