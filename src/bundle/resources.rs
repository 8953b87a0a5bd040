//! `resources` → cgroup limits, with the kubelet's formulas (pkg/kubelet/cm/helpers_linux.go).

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Value};

use super::BundleError;
use crate::manifest::quantity::{parse_cpu_millis, parse_memory_bytes};

pub use crate::cgroups::{cpu_quota, cpu_shares, CFS_PERIOD};

fn get<'a>(
    map: &'a Option<std::collections::BTreeMap<String, Quantity>>,
    k: &str,
) -> Option<&'a Quantity> {
    map.as_ref().and_then(|m| m.get(k))
}

pub fn linux_resources(c: &Container, privileged: bool) -> Result<Value, BundleError> {
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
    let mut cpu_v = json!({"shares": shares});
    if let Some(limit) = cpu_limit {
        cpu_v["quota"] = json!(cpu_quota(limit));
        cpu_v["period"] = json!(CFS_PERIOD);
    }
    // Deny every device first; libcgroups then adds the default allow list, so the
    // container gets the usual /dev nodes and nothing else of the host's. Privileged
    // containers get every device.
    let devices = json!([{"allow": privileged, "access": "rwm"}]);
    let mut v = json!({
        "devices": devices,
        "cpu": cpu_v,
    });
    if let Some(bytes) = memory_limit {
        v["memory"] = json!({"limit": bytes});
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
