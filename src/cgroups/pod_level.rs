//! Pod-level resources (`spec.resources`, KEP-2837) as the kubelet uses them: when set, the
//! pod's QoS class is computed from them alone (`GetPodQOS`), and they override the sums of
//! the containers' values in the pod cgroup (`ResourceConfigForPod`).

use k8s_openapi::api::core::v1::Pod;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::hugepages::{self, HugepageLimit};
use crate::manifest::quantity::{parse_cpu_millis, parse_memory_bytes};

fn quantity<'a>(map: &'a Option<BTreeMap<String, Quantity>>, k: &str) -> Option<&'a Quantity> {
    map.as_ref().and_then(|m| m.get(k))
}

/// The pod's own requests and limits, in millicores and bytes. A request left unset is its
/// limit: what the API server's defaulting gives a pod whose containers request nothing
/// (decoded manifests carry the full default, `manifest::pod_resources::default`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLevel {
    pub cpu_request: Option<i64>,
    pub cpu_limit: Option<i64>,
    pub memory_request: Option<i64>,
    pub memory_limit: Option<i64>,
    pub hugepages: Vec<HugepageLimit>,
}

impl PodLevel {
    /// `None` unless the pod sets cpu or memory at its level (`IsPodLevelResourcesSet`).
    pub fn of(pod: &Pod) -> Option<Self> {
        let r = pod.spec.as_ref()?.resources.as_ref()?;
        let cpu = |q: Option<&_>| q.and_then(|q| parse_cpu_millis(q).ok()).filter(|v| *v > 0);
        let mem = |q: Option<&_>| {
            q.and_then(|q| parse_memory_bytes(q).ok())
                .filter(|v| *v > 0)
        };
        let cpu_limit = cpu(quantity(&r.limits, "cpu"));
        let memory_limit = mem(quantity(&r.limits, "memory"));
        let level = Self {
            cpu_request: cpu(quantity(&r.requests, "cpu")).or(cpu_limit),
            cpu_limit,
            memory_request: mem(quantity(&r.requests, "memory")).or(memory_limit),
            memory_limit,
            hugepages: hugepages::limits_of(r.limits.as_ref()),
        };
        let set = level.cpu_request.is_some() || level.memory_request.is_some();
        set.then_some(level)
    }

    /// `GetPodQOS` from the pod-level values: Guaranteed when cpu and memory are limited
    /// and requested as much as limited, else Burstable (a pod-level value is set).
    pub fn guaranteed(&self) -> bool {
        let limited = self.cpu_limit.is_some() && self.memory_limit.is_some();
        limited && self.cpu_request == self.cpu_limit && self.memory_request == self.memory_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::QosClass;
    use k8s_openapi::api::core::v1::Pod;

    fn pod(spec: &str) -> Pod {
        serde_yaml::from_str(&format!("metadata: {{name: p}}\nspec: {spec}\n")).unwrap()
    }

    #[test]
    fn pod_level_values_decide_the_qos_class() {
        let q = |spec: &str| {
            PodLevel::of(&pod(spec)).map(|l| {
                if l.guaranteed() {
                    QosClass::Guaranteed
                } else {
                    QosClass::Burstable
                }
            })
        };
        assert_eq!(q("{containers: [{name: a}]}"), None);
        assert_eq!(q("{resources: {}, containers: [{name: a}]}"), None);
        // Containers without resources in a pod limited in cpu and memory: Guaranteed.
        assert_eq!(
            q("{resources: {limits: {cpu: '1', memory: 1Gi}}, containers: [{name: a}, {name: b}]}"),
            Some(QosClass::Guaranteed)
        );
        assert_eq!(
            q("{resources: {requests: {cpu: 500m}, limits: {cpu: '1', memory: 1Gi}}, containers: [{name: a}]}"),
            Some(QosClass::Burstable)
        );
        // The containers' own limits do not count once the pod sets its own.
        assert_eq!(
            q("{resources: {requests: {memory: 1Gi}}, containers: [{name: a, resources: {limits: {cpu: '1', memory: 1Gi}}}]}"),
            Some(QosClass::Burstable)
        );
        let l = PodLevel::of(&pod(
            "{resources: {limits: {memory: 1Gi, hugepages-2Mi: 4Mi}}, containers: [{name: a}]}",
        ))
        .unwrap();
        assert_eq!(l.memory_request, Some(1 << 30));
        assert_eq!(l.cpu_limit, None);
        assert_eq!(l.hugepages[0].limit, 4 << 20);
    }
}
