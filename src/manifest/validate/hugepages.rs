//! `hugepages-<size>` requests and limits, with the API server's rules
//! (pkg/apis/core/validation ValidateResourceRequirements): a valid page size, an amount
//! that is a multiple of it, requests equal to limits (huge pages cannot be overcommitted),
//! and cpu or memory alongside.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::FieldError;
use crate::manifest::quantity::{hugepage_size, parse_memory_bytes, HUGEPAGES_PREFIX};

/// One `hugepages-<size>` entry of requests or limits.
pub(super) fn check_value(name: &str, q: &Quantity, field: &str, errors: &mut Vec<FieldError>) {
    let size = match hugepage_size(name) {
        Some(Ok(s)) if s > 0 => s,
        Some(Err(e)) => {
            errors.push(FieldError::new(field, format!("invalid page size: {e}")));
            return;
        }
        _ => {
            errors.push(FieldError::new(
                field,
                "invalid page size: must be positive",
            ));
            return;
        }
    };
    match parse_memory_bytes(q) {
        Ok(v) if v as u64 % size != 0 => errors.push(FieldError::new(
            field,
            format!("{} is not positive integer multiple of {name}", q.0),
        )),
        Ok(_) => {}
        Err(e) => errors.push(FieldError::new(field, e.to_string())),
    }
}

/// The rules across requests and limits.
pub(super) fn check_requirements(
    res: &ResourceRequirements,
    rpath: &str,
    errors: &mut Vec<FieldError>,
) {
    let is_huge = |k: &String| k.starts_with(HUGEPAGES_PREFIX);
    let requests = res.requests.as_ref();
    let limits = res.limits.as_ref();
    let mut huge = false;
    for (name, q) in requests.into_iter().flatten().filter(|(k, _)| is_huge(k)) {
        huge = true;
        match limits.and_then(|l| l.get(name)) {
            None => errors.push(FieldError::new(
                format!("{rpath}.limits[{name}]"),
                "Limit must be set for non overcommitable resources",
            )),
            Some(lim) => {
                let (r, l) = (parse_memory_bytes(q).ok(), parse_memory_bytes(lim).ok());
                if r.is_some() && l.is_some() && r != l {
                    errors.push(FieldError::new(
                        format!("{rpath}.requests[{name}]"),
                        format!("must be equal to {name} limit of {}", lim.0),
                    ));
                }
            }
        }
    }
    huge |= limits.into_iter().flatten().any(|(k, _)| is_huge(k));
    let cpu_or_memory = [requests, limits]
        .into_iter()
        .flatten()
        .any(|m| m.contains_key("cpu") || m.contains_key("memory"));
    if huge && !cpu_or_memory {
        errors.push(FieldError::new(rpath, "HugePages require cpu or memory"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let res: ResourceRequirements = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        for (kind, list) in [("requests", &res.requests), ("limits", &res.limits)] {
            for (name, q) in list.iter().flatten() {
                if name.starts_with(HUGEPAGES_PREFIX) {
                    check_value(name, q, &format!("r.{kind}[{name}]"), &mut errors);
                }
            }
        }
        check_requirements(&res, "r", &mut errors);
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn kubelet_rules() {
        assert!(errors_of("{limits: {memory: 1Gi, hugepages-2Mi: 4Mi}}").is_empty());
        assert!(errors_of(
            "{requests: {hugepages-2Mi: 4Mi, cpu: 1}, limits: {hugepages-2Mi: 4Mi}}"
        )
        .is_empty());
        let e = errors_of("{requests: {hugepages-2Mi: 2Mi, cpu: 1}, limits: {hugepages-2Mi: 4Mi}}");
        assert!(
            e.iter().any(|e| e.contains("r.requests[hugepages-2Mi]")
                && e.contains("must be equal to hugepages-2Mi limit of 4Mi")),
            "{e:?}"
        );
        let e = errors_of("{requests: {hugepages-2Mi: 2Mi, memory: 1Gi}}");
        assert!(
            e.iter().any(|e| e.contains("r.limits[hugepages-2Mi]")
                && e.contains("Limit must be set for non overcommitable resources")),
            "{e:?}"
        );
        let e = errors_of("{limits: {hugepages-2Mi: 4Mi}}");
        assert!(
            e.iter()
                .any(|e| e.contains("HugePages require cpu or memory")),
            "{e:?}"
        );
        let e = errors_of("{limits: {memory: 1Gi, hugepages-2Mi: 3Mi}}");
        assert!(
            e.iter()
                .any(|e| e.contains("3Mi is not positive integer multiple of hugepages-2Mi")),
            "{e:?}"
        );
        let e = errors_of("{limits: {memory: 1Gi, hugepages-big: 2Mi}}");
        assert!(e.iter().any(|e| e.contains("invalid page size")), "{e:?}");
    }
}
