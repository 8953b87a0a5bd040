//! QoS class (`GetPodQOS`), a container's requests and limits with the API server's
//! defaulting, and oom_score_adj by QoS (pkg/kubelet/qos/policy.go).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::manifest::quantity::{parse_cpu_millis, parse_memory_bytes};

const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
const BESTEFFORT_OOM_SCORE_ADJ: i32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The QoS level's cgroup under `kubepods` ("" for Guaranteed).
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Self::Guaranteed => "",
            Self::Burstable => "burstable",
            Self::BestEffort => "besteffort",
        }
    }
}

/// A container's cpu and memory requests and limits, in millicores and bytes, with the API
/// server's defaulting applied (a missing request is the limit). Unparsable quantities count
/// as absent: validation rejects them before a pod gets here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compute {
    pub cpu_request: Option<i64>,
    pub cpu_limit: Option<i64>,
    pub memory_request: Option<i64>,
    pub memory_limit: Option<i64>,
}

pub(crate) fn quantity<'a>(
    map: &'a Option<BTreeMap<String, Quantity>>,
    k: &str,
) -> Option<&'a Quantity> {
    map.as_ref().and_then(|m| m.get(k))
}

impl Compute {
    pub fn of(c: &Container) -> Self {
        let r = c.resources.clone().unwrap_or_default();
        let cpu =
            |q: Option<&Quantity>| q.and_then(|q| parse_cpu_millis(q).ok()).filter(|v| *v > 0);
        let mem = |q: Option<&Quantity>| {
            q.and_then(|q| parse_memory_bytes(q).ok())
                .filter(|v| *v > 0)
        };
        let cpu_limit = cpu(quantity(&r.limits, "cpu"));
        let memory_limit = mem(quantity(&r.limits, "memory"));
        Self {
            cpu_request: cpu(quantity(&r.requests, "cpu")).or(cpu_limit),
            cpu_limit,
            memory_request: mem(quantity(&r.requests, "memory")).or(memory_limit),
            memory_limit,
        }
    }
}

pub(crate) fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice())
}

pub(crate) fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

/// `GetPodQOS`: Guaranteed when every container limits cpu and memory and the summed
/// requests equal the summed limits; BestEffort with no request or limit at all; from the
/// pod-level resources instead when the pod sets them.
pub fn qos_class(pod: &Pod) -> QosClass {
    // With pod-level resources, they alone decide (KEP-2837).
    if let Some(level) = super::pod_level::PodLevel::of(pod) {
        return if level.guaranteed() {
            QosClass::Guaranteed
        } else {
            QosClass::Burstable
        };
    }
    let all: Vec<Compute> = containers(pod).iter().map(Compute::of).collect();
    let sum = |f: fn(&Compute) -> Option<i64>| {
        let v: Vec<i64> = all.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<i64>())
    };
    let (cr, cl) = (sum(|c| c.cpu_request), sum(|c| c.cpu_limit));
    let (mr, ml) = (sum(|c| c.memory_request), sum(|c| c.memory_limit));
    if cr.is_none() && cl.is_none() && mr.is_none() && ml.is_none() {
        return QosClass::BestEffort;
    }
    let all_limited = all
        .iter()
        .all(|c| c.cpu_limit.is_some() && c.memory_limit.is_some());
    if all_limited && cr == cl && mr == ml {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The node-critical static pods (kubeadm's control plane) get Guaranteed's score.
fn node_critical(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        == Some("system-node-critical")
}

/// `GetContainerOOMScoreAdjust`, for a node with `memory_capacity` bytes.
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> i32 {
    if node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BESTEFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let request = Compute::of(c).memory_request.unwrap_or(0) as i128;
            let capacity = memory_capacity.max(1) as i128;
            let adj = (1000 - 1000 * request / capacity) as i32;
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BESTEFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}
