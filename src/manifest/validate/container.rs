//! Checks of one container: fields, env, resources, mounts, ports.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use super::{one_of, FieldError};
use crate::manifest::quantity::{parse_cpu_millis, parse_memory_bytes, QuantityError};
use crate::manifest::support::{self, check_fields};

const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
/// `fieldRef.fieldPath` values the kubelet resolves (pkg/kubelet/kubelet_pods.go podFieldSelectorRuntimeValue).
const FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

pub(super) fn validate_container(
    c: &Container,
    path: &str,
    value: &Value,
    volumes: &HashSet<String>,
    host_network: bool,
    errors: &mut Vec<FieldError>,
) {
    check_fields(value, path, support::CONTAINER, errors);
    if c.image.as_deref().unwrap_or_default().trim().is_empty() {
        errors.push(FieldError::new(format!("{path}.image"), "required"));
    }
    one_of(
        c.image_pull_policy.as_deref(),
        &format!("{path}.imagePullPolicy"),
        PULL_POLICIES,
        errors,
    );
    one_of(
        c.termination_message_policy.as_deref(),
        &format!("{path}.terminationMessagePolicy"),
        TERMINATION_MESSAGE_POLICIES,
        errors,
    );

    env(c, path, value, errors);
    if let Some(res) = &c.resources {
        resources(res, path, value, errors);
    }
    volume_mounts(c, path, value, volumes, errors);
    ports(c, path, value, host_network, errors);
}

/// `env[]`: names, and `valueFrom` sources the kubelet can resolve.
fn env(c: &Container, path: &str, value: &Value, errors: &mut Vec<FieldError>) {
    for (j, env) in c.env.iter().flatten().enumerate() {
        let epath = format!("{path}.env[{j}]");
        check_fields(&value["env"][j], &epath, support::ENV_VAR, errors);
        if env.name.is_empty() {
            errors.push(FieldError::new(format!("{epath}.name"), "required"));
        }
        let Some(from) = &env.value_from else {
            continue;
        };
        let fpath = format!("{epath}.valueFrom");
        if env.value.as_ref().is_some_and(|v| !v.is_empty()) {
            errors.push(FieldError::new(
                fpath.clone(),
                "may not be specified when value is not empty",
            ));
        }
        check_fields(
            &value["env"][j]["valueFrom"],
            &fpath,
            support::ENV_VAR_SOURCE,
            errors,
        );
        if let Some(field_ref) = &from.field_ref {
            let fp = field_ref.field_path.as_str();
            let known = FIELD_PATHS.contains(&fp)
                || ["metadata.labels['", "metadata.annotations['"]
                    .iter()
                    .any(|p| fp.starts_with(p) && fp.ends_with("']"));
            if !known {
                errors.push(FieldError::new(
                    format!("{fpath}.fieldRef.fieldPath"),
                    format!("{fp:?} is not a supported field path"),
                ));
            }
            if field_ref
                .api_version
                .as_deref()
                .is_some_and(|v| !v.is_empty() && v != "v1")
            {
                errors.push(FieldError::new(
                    format!("{fpath}.fieldRef.apiVersion"),
                    "must be v1",
                ));
            }
        }
        let key_refs = [
            (
                "configMapKeyRef",
                from.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key)),
            ),
            (
                "secretKeyRef",
                from.secret_key_ref.as_ref().map(|r| (&r.name, &r.key)),
            ),
        ];
        for (which, r) in key_refs {
            let Some((name, key)) = r else { continue };
            if name.is_empty() {
                errors.push(FieldError::new(format!("{fpath}.{which}.name"), "required"));
            }
            if !crate::manifest::keys::is_valid_key(key) {
                errors.push(FieldError::new(
                    format!("{fpath}.{which}.key"),
                    format!("{key:?} is not a valid key"),
                ));
            }
        }
        let sources = value["env"][j]["valueFrom"]
            .as_object()
            .map_or(0, |o| o.values().filter(|v| !v.is_null()).count());
        if sources == 0 {
            errors.push(FieldError::new(
                fpath,
                "must specify a source (fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef)",
            ));
        } else if sources > 1 {
            errors.push(FieldError::new(
                fpath,
                "may not have more than one field specified at a time",
            ));
        }
    }
}

/// `resources`: quantities that parse, requests within limits, huge pages.
pub(super) fn resources(
    res: &ResourceRequirements,
    path: &str,
    value: &Value,
    errors: &mut Vec<FieldError>,
) {
    let rpath = format!("{path}.resources");
    check_fields(&value["resources"], &rpath, support::RESOURCES, errors);
    let mut parsed = [[None; 2]; 2]; // [requests, limits] × [cpu, memory]
    for (k, (kind, list)) in [("requests", &res.requests), ("limits", &res.limits)]
        .into_iter()
        .enumerate()
    {
        for (name, q) in list.iter().flatten() {
            let field = format!("{rpath}.{kind}[{name}]");
            match name.as_str() {
                "cpu" => parsed[k][0] = quantity(q, &field, parse_cpu_millis, errors),
                "memory" => parsed[k][1] = quantity(q, &field, parse_memory_bytes, errors),
                // Node-pressure eviction ranks pods by usage over this request; an
                // ephemeral-storage limit (per-pod eviction) is not implemented.
                "ephemeral-storage" if kind == "requests" => {
                    quantity(q, &field, parse_memory_bytes, errors);
                }
                n if n.starts_with(crate::manifest::quantity::HUGEPAGES_PREFIX) => {
                    super::hugepages::check_value(n, q, &field, errors)
                }
                _ => errors.push(FieldError::unsupported(field)),
            }
        }
    }
    super::hugepages::check_requirements(res, &rpath, errors);
    for (r, name) in support::RESOURCE_NAMES.iter().enumerate() {
        if let (Some(req), Some(lim)) = (parsed[0][r], parsed[1][r]) {
            if req > lim {
                errors.push(FieldError::new(
                    format!("{rpath}.requests[{name}]"),
                    format!("must be less than or equal to {name} limit"),
                ));
            }
        }
    }
}

/// `volumeMounts[]`: each names a pod volume and mounts it once, at an absolute path.
fn volume_mounts(
    c: &Container,
    path: &str,
    value: &Value,
    volumes: &HashSet<String>,
    errors: &mut Vec<FieldError>,
) {
    let mut mount_paths = HashSet::new();
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mpath = format!("{path}.volumeMounts[{j}]");
        check_fields(
            &value["volumeMounts"][j],
            &mpath,
            support::VOLUME_MOUNT,
            errors,
        );
        if m.name.is_empty() {
            errors.push(FieldError::new(format!("{mpath}.name"), "required"));
        } else if !volumes.contains(&m.name) {
            errors.push(FieldError::new(
                format!("{mpath}.name"),
                format!("volume {:?} not found in spec.volumes", m.name),
            ));
        }
        if !m.mount_path.starts_with('/') {
            errors.push(FieldError::new(
                format!("{mpath}.mountPath"),
                "must be an absolute path",
            ));
        } else if !mount_paths.insert(m.mount_path.trim_end_matches('/').to_string()) {
            errors.push(FieldError::new(
                format!("{mpath}.mountPath"),
                format!("{:?} is mounted twice", m.mount_path),
            ));
        }
    }
}

/// `ports[]`: numbers in range, hostPort only with hostNetwork, IANA names.
fn ports(
    c: &Container,
    path: &str,
    value: &Value,
    host_network: bool,
    errors: &mut Vec<FieldError>,
) {
    for (j, p) in c.ports.iter().flatten().enumerate() {
        let ppath = format!("{path}.ports[{j}]");
        check_fields(&value["ports"][j], &ppath, support::CONTAINER_PORT, errors);
        if !(1..=65535).contains(&p.container_port) {
            errors.push(FieldError::new(
                format!("{ppath}.containerPort"),
                "must be between 1 and 65535, inclusive",
            ));
        }
        match p.host_port {
            None | Some(0) => {}
            Some(hp) if !(1..=65535).contains(&hp) => errors.push(FieldError::new(
                format!("{ppath}.hostPort"),
                "must be between 1 and 65535, inclusive",
            )),
            Some(hp) if host_network && hp != p.container_port => errors.push(FieldError::new(
                format!("{ppath}.hostPort"),
                "must match containerPort when hostNetwork is true",
            )),
            Some(_) => {}
        }
        one_of(
            p.protocol.as_deref(),
            &format!("{ppath}.protocol"),
            PROTOCOLS,
            errors,
        );
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            if !is_port_name(name) {
                errors.push(FieldError::new(
                    format!("{ppath}.name"),
                    format!("{name:?} must be at most 15 characters of a-z, 0-9 and '-', with at least one letter"),
                ));
            }
        }
    }
}

pub(super) fn quantity(
    q: &Quantity,
    field: &str,
    parse: fn(&Quantity) -> Result<i64, QuantityError>,
    errors: &mut Vec<FieldError>,
) -> Option<i64> {
    parse(q)
        .map_err(|e| errors.push(FieldError::new(field, e.to_string())))
        .ok()
}

/// IANA service name, as Kubernetes requires for port names.
fn is_port_name(s: &str) -> bool {
    s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && s.bytes().any(|c| c.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}
