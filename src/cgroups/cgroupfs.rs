//! The pod cgroup on disk: created and removed through the host's driver, and the
//! cgroupfs driver's writes (one directory per v1 controller, or one v2 directory) that
//! the node levels use too; with systemd, [`super::systemd`] starts slices instead.

use std::path::Path;

use super::hierarchy::Hierarchy;
use super::hugepages::{self, HostHugepages};
use super::limits::{shares_to_weight, PodCgroup, PodLimits, Settings, CFS_PERIOD, MIN_SHARES};
use super::{io, systemd, write, CgroupError};

/// A new v1 cpuset cgroup starts with no cpus or memory nodes; a task cannot join it
/// until they are copied from the parent.
fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let path = dir.join(file);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current.trim().is_empty() {
            if let Some(parent) = dir.parent() {
                let p = parent.join(file);
                let v = std::fs::read_to_string(&p).map_err(io(&p))?;
                write(dir, file, v.trim())?;
            }
        }
    }
    Ok(())
}

/// Makes cgroup `rel` exist in every hierarchy (cgroupfs driver); true when it is new.
pub(crate) fn ensure(h: &Hierarchy, rel: &str) -> Result<bool, CgroupError> {
    let mut fresh = false;
    for (ctl, dir) in h.dirs(rel) {
        fresh |= !dir.exists();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if ctl == "cpuset" {
            init_cpuset(&dir)?;
        }
        if let Hierarchy::V2 { .. } = h {
            // Children get the controllers only when each parent delegates them.
            let parent = dir.parent().unwrap_or(&dir).to_path_buf();
            enable_v2_controllers(&parent)?;
        }
    }
    Ok(fresh)
}

/// Writes `s` to cgroup `rel` (cgroupfs driver, v1 or v2).
pub(crate) fn apply(h: &Hierarchy, rel: &str, s: &Settings) -> Result<(), CgroupError> {
    for (ctl, dir) in h.dirs(rel) {
        match (h, ctl) {
            (Hierarchy::V1 { .. }, "cpu") => {
                if let Some(v) = s.cpu_shares {
                    write(&dir, "cpu.shares", &v.to_string())?;
                }
                if let Some(q) = s.cpu_quota {
                    write(&dir, "cpu.cfs_period_us", &CFS_PERIOD.to_string())?;
                    write(&dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
            }
            (Hierarchy::V1 { .. }, "memory") => {
                if let Some(m) = s.memory {
                    write(&dir, "memory.limit_in_bytes", &m.to_string())?;
                }
            }
            (Hierarchy::V1 { .. }, "pids") => {
                if let Some(p) = s.pids {
                    write(&dir, "pids.max", &p.to_string())?;
                }
            }
            (Hierarchy::V1 { .. }, "hugetlb") => {
                for (label, v) in &s.hugetlb {
                    write(&dir, &hugepages::file_name(label, false), &v.to_string())?;
                }
            }
            (Hierarchy::V2 { .. }, _) => {
                enable_v2_controllers(&dir)?;
                if let Some(v) = s.cpu_shares {
                    write(&dir, "cpu.weight", &shares_to_weight(v).to_string())?;
                }
                if let Some(q) = s.cpu_quota {
                    write(&dir, "cpu.max", &format!("{q} {CFS_PERIOD}"))?;
                }
                if let Some(m) = s.memory {
                    write(&dir, "memory.max", &m.to_string())?;
                }
                if let Some(p) = s.pids {
                    write(&dir, "pids.max", &p.to_string())?;
                }
                hugepages::write_v2(&dir, &s.hugetlb)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Creates the pod cgroup (and `kubepods`, the QoS level) with the pod-level limits.
pub fn create(h: &Hierarchy, cg: &PodCgroup, limits: &PodLimits) -> Result<(), CgroupError> {
    create_with(h, cg, limits, &HostHugepages::detect(h))
}

/// [`create`] with the host's huge pages given (fixture trees in tests).
pub fn create_with(
    h: &Hierarchy,
    cg: &PodCgroup,
    limits: &PodLimits,
    host: &HostHugepages,
) -> Result<(), CgroupError> {
    host.check(&limits.hugepages, h)?;
    let hugetlb = host.pod_values(&limits.hugepages);
    if let Hierarchy::Systemd { root } = h {
        systemd::create(cg, limits)?;
        return systemd::write_hugetlb(root, &systemd::pod_slice(cg), &hugetlb);
    }
    for level in cg.ancestors() {
        let fresh = ensure(h, &level)?;
        // The kubelet's besteffort level: the least cpu weight there is. [`super::node`]
        // keeps it (and the other levels) up to date afterwards.
        if fresh && level == format!("{}/besteffort", cg.root.kubepods()) {
            let s = Settings {
                cpu_shares: Some(MIN_SHARES),
                ..Default::default()
            };
            apply(h, &level, &s)?;
        }
    }
    ensure(h, &cg.path)?;
    let s = Settings {
        cpu_shares: Some(limits.cpu_shares),
        cpu_quota: limits.cpu_quota,
        memory: limits.memory,
        pids: limits.pids,
        hugetlb,
    };
    apply(h, &cg.path, &s)
}

/// Delegates to children every controller this v2 cgroup has.
pub(crate) fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.controllers");
    let Ok(available) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let wanted: Vec<String> = available
        .split_whitespace()
        .filter(|c| ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"].contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write(dir, "cgroup.subtree_control", &wanted.join(" "))
}

/// Removes the pod cgroup and whatever container cgroups are left in it. The QoS levels
/// stay, as with the kubelet.
pub fn remove(h: &Hierarchy, cg: &PodCgroup) -> Result<(), CgroupError> {
    if let Hierarchy::Systemd { .. } = h {
        return systemd::remove(cg);
    }
    for (_, dir) in h.dirs(&cg.path) {
        if !dir.exists() {
            continue;
        }
        // Leftover container cgroups (a monitor that died before deleting its container).
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
    }
    Ok(())
}
