//! A pod's own resources in its status, as the kubelet reports them for pod-level resources
//! (KEP-2837, KEP-5419): `allocatedResources`, the pod-level requests it accepted (at
//! admission or when a resize is accepted), and `resources`, what the pod cgroup has, read
//! back as the kubelet reads a cgroup's config: cpu request from the shares, cpu limit from
//! the CFS quota, memory limit from the memory limit, the memory request (no cgroup holds
//! one) from the allocation. Only for pods that set pod-level resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cgroups::limits::MIN_SHARES;
use crate::cgroups::pod_level::PodLevel;
use crate::cgroups::{PodLimits, CFS_PERIOD};

/// The kubelet's `sharesToMilliCPU`: the shares of a request, back in millicores.
fn shares_to_milli(shares: u64) -> i64 {
    (shares * 1000).div_ceil(1024) as i64
}

/// The kubelet's `quotaToMilliCPU` for the CFS period hostlet writes.
fn quota_to_milli(quota: i64) -> i64 {
    quota * 1000 / CFS_PERIOD as i64
}

/// Millicores as the API server prints them: `250m`, `2`.
fn cpu(milli: i64) -> Quantity {
    match milli % 1000 {
        0 => Quantity((milli / 1000).to_string()),
        _ => Quantity(format!("{milli}m")),
    }
}

/// Bytes in the binary suffix that divides them (`resource.NewQuantity(n, BinarySI)`).
fn bytes(n: i64) -> Quantity {
    const SUFFIXES: [&str; 6] = ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"];
    for (i, s) in SUFFIXES.iter().enumerate() {
        let unit = 1i64 << (10 * (6 - i));
        if n != 0 && n % unit == 0 {
            return Quantity(format!("{}{s}", n / unit));
        }
    }
    Quantity(n.to_string())
}

/// `allocatedResources` and `resources` of the pod status, from its accepted spec and the
/// limits its cgroup has (`None` before the cgroup is made); `(None, None)` without
/// pod-level resources.
pub(super) fn of(
    pod: &Pod,
    cgroup: Option<&PodLimits>,
) -> (
    Option<BTreeMap<String, Quantity>>,
    Option<ResourceRequirements>,
) {
    let Some(level) = PodLevel::of(pod) else {
        return (None, None);
    };
    let mut allocated = BTreeMap::new();
    if let Some(m) = level.cpu_request {
        allocated.insert("cpu".to_string(), cpu(m));
    }
    if let Some(b) = level.memory_request {
        allocated.insert("memory".to_string(), bytes(b));
    }
    for h in &level.hugepages {
        allocated.insert(h.resource.clone(), bytes(h.limit));
    }
    let resources = cgroup.map(|l| {
        let mut requests = BTreeMap::new();
        let mut limits = BTreeMap::new();
        // The minimum shares are also what a pod that requests no cpu gets.
        if allocated.contains_key("cpu") || l.cpu_shares > MIN_SHARES {
            requests.insert("cpu".to_string(), cpu(shares_to_milli(l.cpu_shares)));
        }
        if let Some(m) = allocated.get("memory") {
            requests.insert("memory".to_string(), m.clone());
        }
        if let Some(q) = l.cpu_quota {
            limits.insert("cpu".to_string(), cpu(quota_to_milli(q)));
        }
        if let Some(m) = l.memory {
            limits.insert("memory".to_string(), bytes(m));
        }
        for h in &l.hugepages {
            requests.insert(h.resource.clone(), bytes(h.limit));
            limits.insert(h.resource.clone(), bytes(h.limit));
        }
        ResourceRequirements {
            requests: (!requests.is_empty()).then_some(requests),
            limits: (!limits.is_empty()).then_some(limits),
            ..Default::default()
        }
    });
    ((!allocated.is_empty()).then_some(allocated), resources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::pod_limits;

    fn pod(spec: &str) -> Pod {
        serde_yaml::from_str(&format!("metadata: {{name: p}}\nspec: {spec}\n")).unwrap()
    }

    fn q(map: &Option<BTreeMap<String, Quantity>>, k: &str) -> Option<String> {
        map.as_ref()?.get(k).map(|q| q.0.clone())
    }

    #[test]
    fn pod_level_resources_read_back_from_the_pod_cgroup() {
        let p = pod("{resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: '1', memory: 128Mi}}, containers: [{name: a}, {name: b, resources: {limits: {cpu: 100m, memory: 32Mi}}}]}");
        let limits = pod_limits(&p, 64);
        let (allocated, resources) = of(&p, Some(&limits));
        assert_eq!(q(&allocated, "cpu").as_deref(), Some("250m"));
        assert_eq!(q(&allocated, "memory").as_deref(), Some("64Mi"));
        let r = resources.unwrap();
        assert_eq!(q(&r.requests, "cpu").as_deref(), Some("250m"));
        assert_eq!(q(&r.requests, "memory").as_deref(), Some("64Mi"));
        assert_eq!(q(&r.limits, "cpu").as_deref(), Some("1"));
        assert_eq!(q(&r.limits, "memory").as_deref(), Some("128Mi"));
        // Before the pod cgroup exists: accepted, not applied.
        let (allocated, resources) = of(&p, None);
        assert!(allocated.is_some());
        assert_eq!(resources, None);
    }

    #[test]
    fn only_what_the_pod_sets_at_its_level_and_the_cgroup_has() {
        // A cpu limit only: the request is the limit (defaulting); no memory anywhere.
        let p = pod("{resources: {limits: {cpu: 1500m}}, containers: [{name: a}]}");
        let (allocated, resources) = of(&p, Some(&pod_limits(&p, -1)));
        assert_eq!(q(&allocated, "cpu").as_deref(), Some("1500m"));
        assert_eq!(q(&allocated, "memory"), None);
        let r = resources.unwrap();
        assert_eq!(q(&r.limits, "cpu").as_deref(), Some("1500m"));
        assert_eq!(q(&r.limits, "memory"), None);
        assert_eq!(q(&r.requests, "memory"), None);
        // Hugepages: requests equal limits.
        let p = pod(
            "{resources: {limits: {memory: 1Gi, hugepages-2Mi: 4Mi}}, containers: [{name: a}]}",
        );
        let (allocated, resources) = of(&p, Some(&pod_limits(&p, -1)));
        assert_eq!(q(&allocated, "hugepages-2Mi").as_deref(), Some("4Mi"));
        assert_eq!(q(&allocated, "memory").as_deref(), Some("1Gi"));
        let r = resources.unwrap();
        assert_eq!(q(&r.limits, "hugepages-2Mi").as_deref(), Some("4Mi"));
        assert_eq!(q(&r.requests, "hugepages-2Mi").as_deref(), Some("4Mi"));
        // Without pod-level resources the pod status has neither.
        let p = pod("{containers: [{name: a, resources: {limits: {cpu: '1'}}}]}");
        assert_eq!(of(&p, Some(&pod_limits(&p, -1))), (None, None));
    }

    #[test]
    fn quantities_print_as_the_api_server_does() {
        assert_eq!(cpu(100).0, "100m");
        assert_eq!(cpu(2000).0, "2");
        assert_eq!(bytes(1 << 30).0, "1Gi");
        assert_eq!(bytes(3 << 20).0, "3Mi");
        assert_eq!(bytes(1000).0, "1000");
        assert_eq!(bytes(0).0, "0");
        // Shares round-trip the requests a pod gives (kubelet: ceil(shares*1000/1024)).
        for m in [10, 100, 250, 333, 1000, 1500] {
            assert_eq!(shares_to_milli(crate::cgroups::limits::cpu_shares(m)), m);
        }
        // The kubelet's floor: the minimum shares read back as 2m.
        assert_eq!(shares_to_milli(crate::cgroups::limits::cpu_shares(1)), 2);
    }
}
