//! `resources` → cgroup limits, with the kubelet's formulas (pkg/kubelet/cm/helpers_linux.go).

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxHugepageLimit, LinuxHugepageLimitBuilder,
    LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::BundleError;
use crate::manifest::quantity::{parse_cpu_millis, parse_memory_bytes};

use crate::cgroups::hugepages;
pub use crate::cgroups::{cpu_quota, cpu_shares, CFS_PERIOD};

fn get<'a>(
    map: &'a Option<std::collections::BTreeMap<String, Quantity>>,
    k: &str,
) -> Option<&'a Quantity> {
    map.as_ref().and_then(|m| m.get(k))
}

pub fn linux_resources(c: &Container, privileged: bool) -> Result<LinuxResources, BundleError> {
    let res = c.resources.clone().unwrap_or_default();
    let bad = |field: &str, e: String| BundleError::field(&c.name, field, &e);
    let cpu = |field: &str, q: Option<&Quantity>| -> Result<Option<i64>, BundleError> {
        q.map(|q| parse_cpu_millis(q).map_err(|e| bad(field, e.to_string())))
            .transpose()
    };
    let cpu_limit = cpu("resources.limits.cpu", get(&res.limits, "cpu"))?;
    let cpu_request = cpu("resources.requests.cpu", get(&res.requests, "cpu"))?;
    let memory_limit = get(&res.limits, "memory")
        .map(|q| parse_memory_bytes(q).map_err(|e| bad("resources.limits.memory", e.to_string())))
        .transpose()?;

    // The kubelet derives the request from the limit when only a limit is given.
    let shares = cpu_request
        .or(cpu_limit)
        .map_or_else(|| cpu_shares(0), cpu_shares);
    let mut cpu = LinuxCpuBuilder::default().shares(shares);
    if let Some(limit) = cpu_limit {
        cpu = cpu.quota(cpu_quota(limit)).period(CFS_PERIOD);
    }
    // Deny every device first; libcgroups then adds the default allow list, so the
    // container gets the usual /dev nodes and nothing else of the host's. Privileged
    // containers get every device.
    let devices = LinuxDeviceCgroupBuilder::default()
        .allow(privileged)
        .access("rwm")
        .build()
        .map_err(super::oci)?;
    let mut v = LinuxResourcesBuilder::default()
        .devices(vec![devices])
        .cpu(cpu.build().map_err(super::oci)?);
    if let Some(bytes) = memory_limit {
        v = v.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .build()
                .map_err(super::oci)?,
        );
    }
    // Only the sizes the container asks for, so the spec is the same on every host; the
    // pod cgroup holds every other size at 0 (crate::cgroups::HostHugepages::pod_values).
    let hugepages = hugepage_limits(c)?;
    if !hugepages.is_empty() {
        v = v.hugepage_limits(hugepages);
    }
    v.build().map_err(super::oci)
}

/// OCI `hugepageLimits` of `resources.limits.hugepages-<size>` (containerd's form: page
/// size as runc names it, limit in bytes).
fn hugepage_limits(c: &Container) -> Result<Vec<LinuxHugepageLimit>, BundleError> {
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let mut out = Vec::new();
    for (name, q) in limits.into_iter().flatten() {
        let Some(size) = crate::manifest::quantity::hugepage_size(name) else {
            continue;
        };
        let field = format!("resources.limits[{name}]");
        let size = size.map_err(|e| BundleError::field(&c.name, &field, &e.to_string()))?;
        let bytes = parse_memory_bytes(q)
            .map_err(|e| BundleError::field(&c.name, &field, &e.to_string()))?;
        let limit = LinuxHugepageLimitBuilder::default()
            .page_size(hugepages::size_label(size))
            .limit(bytes)
            .build()
            .map_err(super::oci)?;
        out.push((size, limit));
    }
    out.sort_by_key(|(size, _)| *size);
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelet_formulas() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(250), 256);
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(1_000_000), 262_144);
        assert_eq!(cpu_quota(250), 25_000);
        assert_eq!(cpu_quota(1), 1_000);
        assert_eq!(cpu_quota(2000), 200_000);
    }

    #[test]
    fn hugepage_limits_as_containerd_writes_them() {
        let c: Container = serde_yaml::from_str(
            "{name: c, resources: {limits: {memory: 1Gi, hugepages-1Gi: 2Gi, hugepages-2Mi: 4Mi}}}",
        )
        .unwrap();
        let v = serde_json::to_value(linux_resources(&c, false).unwrap()).unwrap();
        assert_eq!(
            v["hugepageLimits"],
            json!([
                {"pageSize": "2MB", "limit": 4 << 20},
                {"pageSize": "1GB", "limit": 2u64 << 30},
            ])
        );
        let plain: Container =
            serde_yaml::from_str("{name: c, resources: {limits: {memory: 1Gi}}}").unwrap();
        assert!(linux_resources(&plain, false)
            .unwrap()
            .hugepage_limits()
            .is_none());
        let bad: Container =
            serde_yaml::from_str("{name: c, resources: {limits: {hugepages-x: 2Mi}}}").unwrap();
        let e = linux_resources(&bad, false).unwrap_err().to_string();
        assert!(e.contains("resources.limits[hugepages-x]"), "{e}");
    }
}
