//! In-place resize (KEP-1287): new limits written into a running pod's cgroup and its
//! containers' cgroups, as the kubelet's `SetPodCgroupConfig` and the runtime's
//! `UpdateContainerResources` do. cgroupfs (v1, v2): the files; systemd: the properties
//! of the pod slice and of the container scopes, so systemd keeps them when it
//! re-realizes the tree.

use k8s_openapi::api::core::v1::Container;

use super::hierarchy::Hierarchy;
use super::limits::{cpu_quota, cpu_shares, PodCgroup, PodLimits, Settings, CFS_PERIOD};
use super::qos::Compute;
use super::systemd::{self, Prop};
use super::{cgroupfs, shares_to_weight, CgroupError};

/// A container cgroup's cpu and memory limits, from its `resources` (the bundle's
/// formulas: shares from the request, or the limit when only that is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLimits {
    pub cpu_shares: u64,
    pub cpu_quota: Option<i64>,
    pub memory: Option<i64>,
}

impl ContainerLimits {
    pub fn of(c: &Container) -> Self {
        let r = Compute::of(c);
        Self {
            cpu_shares: cpu_shares(r.cpu_request.or(r.cpu_limit).unwrap_or(0)),
            cpu_quota: r.cpu_limit.map(cpu_quota),
            memory: r.memory_limit,
        }
    }
}

/// Writes the pod cgroup's cpu and memory limits (pids and huge pages do not resize).
pub fn update_pod(h: &Hierarchy, cg: &PodCgroup, l: &PodLimits) -> Result<(), CgroupError> {
    if let Hierarchy::Systemd { .. } = h {
        let props: Vec<Prop> = systemd::pod_props(cg, l)
            .into_iter()
            .filter(|(n, _, _)| ["CPUWeight", "CPUQuotaPerSecUSec", "MemoryMax"].contains(n))
            .collect();
        return systemd::set_props(&systemd::pod_slice(cg), &props);
    }
    let s = Settings {
        cpu_shares: Some(l.cpu_shares),
        cpu_quota: l.cpu_quota,
        memory: l.memory,
        ..Default::default()
    };
    cgroupfs::apply(h, &cg.path, &s)
}

/// Writes container `id`'s cgroup limits; `memory` false leaves its memory limit as it is
/// (a decrease that waits for the usage to fit).
pub fn update_container(
    h: &Hierarchy,
    cg: &PodCgroup,
    id: &str,
    l: &ContainerLimits,
    memory: bool,
) -> Result<(), CgroupError> {
    let memory = l.memory.filter(|_| memory);
    if let Hierarchy::Systemd { .. } = h {
        let mut props: Vec<Prop> =
            vec![("CPUWeight", "t", shares_to_weight(l.cpu_shares).to_string())];
        if let Some(q) = l.cpu_quota {
            let per_sec = q.max(0) as u64 * 1_000_000 / CFS_PERIOD;
            props.push(("CPUQuotaPerSecUSec", "t", per_sec.to_string()));
        }
        if let Some(m) = memory {
            props.push(("MemoryMax", "t", m.max(0).to_string()));
        }
        let unit = format!("{}-{id}.scope", systemd::SCOPE_PREFIX);
        return systemd::set_props(&unit, &props);
    }
    let s = Settings {
        cpu_shares: Some(l.cpu_shares),
        cpu_quota: l.cpu_quota,
        memory,
        ..Default::default()
    };
    cgroupfs::apply(h, &cg.container(id), &s)
}

/// The memory in use in container `id`'s cgroup, or the pod cgroup's with `None`.
pub fn memory_usage(h: &Hierarchy, cg: &PodCgroup, id: Option<&str>) -> Option<i64> {
    let rel = match id {
        Some(id) => systemd::fs_path(&cg.container_with(Some(h), id)),
        None if matches!(h, Hierarchy::Systemd { .. }) => {
            systemd::expand_slice(&systemd::pod_slice(cg))
        }
        None => cg.path.clone(),
    };
    let (file, ctl) = match h {
        Hierarchy::V1 { .. } => ("memory.usage_in_bytes", "memory"),
        _ => ("memory.current", ""),
    };
    let (_, dir) = h.dirs(&rel).into_iter().find(|(c, _)| *c == ctl)?;
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The ids of the containers whose cgroups are in the pod cgroup now.
pub fn container_ids(h: &Hierarchy, cg: &PodCgroup) -> Vec<String> {
    let (rel, ctl) = match h {
        Hierarchy::Systemd { .. } => (systemd::expand_slice(&systemd::pod_slice(cg)), ""),
        Hierarchy::V1 { .. } => (cg.path.clone(), "memory"),
        Hierarchy::V2 { .. } => (cg.path.clone(), ""),
    };
    let Some((_, dir)) = h.dirs(&rel).into_iter().find(|(c, _)| *c == ctl) else {
        return Vec::new();
    };
    let scope = format!("{}-", systemd::SCOPE_PREFIX);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            match h {
                Hierarchy::Systemd { .. } => name
                    .strip_prefix(&scope)?
                    .strip_suffix(".scope")
                    .map(str::to_string),
                _ => Some(name),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_limits_follow_the_bundle_formulas() {
        let c: Container = serde_yaml::from_str(
            "{name: a, resources: {requests: {cpu: 250m}, limits: {cpu: 500m, memory: 64Mi}}}",
        )
        .unwrap();
        let l = ContainerLimits::of(&c);
        assert_eq!(l.cpu_shares, 256);
        assert_eq!(l.cpu_quota, Some(50_000));
        assert_eq!(l.memory, Some(64 << 20));
    }

    #[test]
    fn cgroupfs_v2_writes_and_reads_the_files() {
        let root = tempfile::tempdir().unwrap();
        let h = Hierarchy::V2 {
            root: root.path().into(),
        };
        let pod: k8s_openapi::api::core::v1::Pod = Default::default();
        let cg = PodCgroup::of(&pod, "u1");
        let dir = root.path().join(cg.path.trim_start_matches('/'));
        std::fs::create_dir_all(dir.join("u1-a-0")).unwrap();
        std::fs::write(dir.join("u1-a-0/memory.current"), "4096\n").unwrap();
        let c: Container =
            serde_yaml::from_str("{name: a, resources: {limits: {cpu: 200m, memory: 1Mi}}}")
                .unwrap();
        let l = ContainerLimits::of(&c);
        update_container(&h, &cg, "u1-a-0", &l, false).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join("u1-a-0").join(f)).unwrap();
        assert_eq!(read("cpu.max"), "20000 100000");
        assert!(
            !dir.join("u1-a-0/memory.max").exists(),
            "memory left as it was"
        );
        update_container(&h, &cg, "u1-a-0", &l, true).unwrap();
        assert_eq!(read("memory.max"), (1 << 20).to_string());
        assert_eq!(memory_usage(&h, &cg, Some("u1-a-0")), Some(4096));
        assert_eq!(container_ids(&h, &cg), ["u1-a-0"]);
        let limits = PodLimits {
            cpu_shares: 1024,
            cpu_quota: Some(30_000),
            memory: Some(2 << 20),
            ..Default::default()
        };
        update_pod(&h, &cg, &limits).unwrap();
        let pod_file = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(pod_file("cpu.max"), "30000 100000");
        assert_eq!(pod_file("memory.max"), (2 << 20).to_string());
    }
}
