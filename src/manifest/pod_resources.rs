//! Pod-level resources (`spec.resources`, KEP-2837): the API server's defaulting of the
//! pod-level requests and its consistency rules between the pod and its containers.
//! Quantities and names are checked as a container's are (`validate::container`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::field_error::FieldError;
use super::quantity::{parse_cpu_millis, parse_memory_bytes, HUGEPAGES_PREFIX};

fn parse(name: &str, q: &Quantity) -> Option<i64> {
    match name {
        "cpu" => parse_cpu_millis(q).ok(),
        _ => parse_memory_bytes(q).ok(),
    }
}

/// A container's request of `name` as the API server defaults it: the limit when unset.
fn request(c: &Container, name: &str) -> Option<i64> {
    let r = c.resources.as_ref()?;
    let get = |m: &Option<BTreeMap<String, Quantity>>| {
        m.as_ref()
            .and_then(|m| m.get(name))
            .and_then(|q| parse(name, q))
    };
    get(&r.requests).or_else(|| get(&r.limits))
}

fn limit(c: &Container, name: &str) -> Option<i64> {
    let q = c.resources.as_ref()?.limits.as_ref()?.get(name)?;
    parse(name, q)
}

/// `PodRequests` over the containers: the app containers and sidecars together, or the
/// largest regular init container when that is more. `None` when no container asks.
fn aggregate_request(spec: &PodSpec, name: &str) -> Option<i64> {
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let sidecar = |c: &&Container| c.restart_policy.as_deref() == Some("Always");
    let steady: Vec<i64> = spec
        .containers
        .iter()
        .chain(init.iter().filter(sidecar))
        .filter_map(|c| request(c, name))
        .collect();
    let largest_init = init
        .iter()
        .filter(|c| !sidecar(c))
        .filter_map(|c| request(c, name))
        .max();
    if steady.is_empty() && largest_init.is_none() {
        return None;
    }
    Some(steady.iter().sum::<i64>().max(largest_init.unwrap_or(0)))
}

/// The API server's defaults (`defaultPodRequests`): a resource the pod limits but does not
/// request is requested as its containers together request it, or, when none does, as much
/// as its limit. Huge pages are always requested as limited.
pub fn default(spec: &mut PodSpec) {
    let Some(res) = spec.resources.as_ref() else {
        return;
    };
    let Some(limits) = res.limits.clone() else {
        return;
    };
    let mut requests = res.requests.clone().unwrap_or_default();
    for (name, lim) in &limits {
        if requests.contains_key(name) {
            continue;
        }
        let value = match name.as_str() {
            n if n.starts_with(HUGEPAGES_PREFIX) => lim.clone(),
            n @ ("cpu" | "memory") => match aggregate_request(spec, n) {
                Some(v) if n == "cpu" => Quantity(format!("{v}m")),
                Some(v) => Quantity(v.to_string()),
                None => lim.clone(),
            },
            _ => continue,
        };
        requests.insert(name.clone(), value);
    }
    if let Some(res) = spec.resources.as_mut() {
        res.requests = Some(requests);
    }
}

/// The API server's consistency rules (`validatePodResourceConsistency`): the pod's
/// request covers what its containers request together, no container limits more than
/// the pod, and the pod's request is within its limit (checked as a container's is).
pub fn validate(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    let Some(res) = spec.resources.as_ref() else {
        return;
    };
    for name in ["cpu", "memory"] {
        let pod_request = res
            .requests
            .as_ref()
            .and_then(|m| m.get(name))
            .and_then(|q| parse(name, q));
        let pod_limit = res
            .limits
            .as_ref()
            .and_then(|m| m.get(name))
            .and_then(|q| parse(name, q));
        if let (Some(req), Some(sum)) = (pod_request, aggregate_request(spec, name)) {
            if req < sum {
                errors.push(FieldError::new(
                    format!("spec.resources.requests[{name}]"),
                    format!(
                        "must be greater than or equal to aggregate container requests of {}",
                        show(name, sum)
                    ),
                ));
            }
        }
        let Some(pod_limit) = pod_limit else { continue };
        let init = spec.init_containers.as_deref().unwrap_or_default();
        let lists = [
            ("containers", &spec.containers[..]),
            ("initContainers", init),
        ];
        for (kind, list) in lists {
            for (i, c) in list.iter().enumerate() {
                if limit(c, name).is_some_and(|l| l > pod_limit) {
                    errors.push(FieldError::new(
                        format!("spec.{kind}[{i}].resources.limits[{name}]"),
                        format!(
                            "must be less than or equal to pod limit of {}",
                            show(name, pod_limit)
                        ),
                    ));
                }
            }
        }
    }
}

fn show(name: &str, v: i64) -> String {
    if name == "cpu" {
        format!("{v}m")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn requests(yaml: &str) -> BTreeMap<String, String> {
        let mut s = spec(yaml);
        default(&mut s);
        s.resources
            .and_then(|r| r.requests)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }

    #[test]
    fn requests_default_to_the_containers_or_the_limit() {
        let r = requests("{resources: {limits: {cpu: '2', memory: 1Gi, hugepages-2Mi: 4Mi}}, containers: [{name: a}]}");
        assert_eq!(r["cpu"], "2");
        assert_eq!(r["memory"], "1Gi");
        assert_eq!(r["hugepages-2Mi"], "4Mi");
        let r = requests(
            "{resources: {limits: {cpu: '2', memory: 1Gi}}, containers: [{name: a, resources: {requests: {cpu: 100m}}}, {name: b, resources: {limits: {cpu: 300m}}}], initContainers: [{name: i, resources: {requests: {cpu: 500m}}}]}",
        );
        // 100m + 300m (b's request defaults to its limit), but the init container's 500m is more.
        assert_eq!(r["cpu"], "500m");
        assert_eq!(r["memory"], "1Gi");
        let r = requests(
            "{resources: {requests: {cpu: 100m}, limits: {cpu: '1'}}, containers: [{name: a}]}",
        );
        assert_eq!(r["cpu"], "100m");
        assert!(requests("{containers: [{name: a}]}").is_empty());
    }

    #[test]
    fn the_pod_covers_its_containers() {
        let errs = |yaml: &str| {
            let mut errors = Vec::new();
            validate(&spec(yaml), &mut errors);
            errors.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert!(errs("{resources: {requests: {cpu: '1'}, limits: {memory: 1Gi}}, containers: [{name: a, resources: {requests: {cpu: 500m}, limits: {memory: 512Mi}}}]}").is_empty());
        assert_eq!(
            errs("{resources: {requests: {cpu: 200m}, limits: {memory: 100Mi}}, containers: [{name: a, resources: {requests: {cpu: 150m}}}, {name: b, resources: {requests: {cpu: 100m}, limits: {memory: 200Mi}}}]}"),
            [
                "spec.resources.requests[cpu]: must be greater than or equal to aggregate container requests of 250m",
                "spec.containers[1].resources.limits[memory]: must be less than or equal to pod limit of 104857600",
            ]
        );
    }
}
