//! Semantic checks of a decoded pod, before defaulting. Every broken rule is reported, each with
//! the field path it concerns (`spec.containers[1].name`).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::Value;

use super::field_error::FieldError;
pub use super::keys::{is_dns1123_label, is_dns1123_subdomain};
use super::support::{self, check_fields};
use super::{resize_policy, restart_rules};

mod container;
mod groups_policy;
mod hugepages;
mod profiles;
mod volumes;
use container::validate_container;
use volumes::validate_volumes;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default"];
/// Checks `pod` as written (before defaulting) for running on `node`; empty means valid.
pub fn validate(pod: &Pod, node: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_metadata(pod, node, &mut errors);
    match &pod.spec {
        Some(spec) => validate_spec(spec, &mut errors),
        None => errors.push(FieldError::new("spec", "required")),
    }
    errors
}

fn validate_metadata(pod: &Pod, node: &str, errors: &mut Vec<FieldError>) {
    match pod.metadata.name.as_deref() {
        None | Some("") => errors.push(FieldError::new("metadata.name", "required")),
        Some(name) if !is_dns1123_subdomain(name) => errors.push(FieldError::new(
            "metadata.name",
            format!("{name:?} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253 characters)"),
        )),
        Some(name) => {
            let full = format!("{name}-{node}");
            if !is_dns1123_subdomain(&full) {
                errors.push(FieldError::new(
                    "metadata.name",
                    format!("pod name {full:?} (name and node name) must be a lowercase RFC 1123 subdomain of at most 253 characters"),
                ));
            }
        }
    }
    if let Some(ns) = pod.metadata.namespace.as_deref() {
        if !ns.is_empty() && !is_dns1123_label(ns) {
            errors.push(FieldError::new(
                "metadata.namespace",
                format!("{ns:?} must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63 characters)"),
            ));
        }
    }
}

fn validate_spec(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    let value = serde_json::to_value(spec).unwrap_or(Value::Null);
    pod_fields(spec, &value, errors);
    let volumes = validate_volumes(spec, &value, errors);
    validate_containers(spec, &value, &volumes, errors);
}

/// The pod-level fields: API references, policies, hostname, namespaces, grace period.
fn pod_fields(spec: &PodSpec, value: &Value, errors: &mut Vec<FieldError>) {
    api_references(spec, errors);
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        errors.push(FieldError::new(
            "spec.ephemeralContainers",
            "static pods may not have ephemeral containers",
        ));
    }
    check_fields(value, "spec", support::POD_SPEC, errors);
    groups_policy::validate(spec, errors);
    profiles::validate(spec, errors);
    if let Some(res) = &spec.resources {
        container::resources(res, "spec", value, errors);
        super::pod_resources::validate(spec, errors);
    }

    one_of(
        spec.restart_policy.as_deref(),
        "spec.restartPolicy",
        RESTART_POLICIES,
        errors,
    );
    match spec.dns_policy.as_deref() {
        Some("None") => errors.push(FieldError::new(
            "spec.dnsPolicy",
            "None is not supported by hostlet yet (it needs dnsConfig)",
        )),
        policy => one_of(policy, "spec.dnsPolicy", DNS_POLICIES, errors),
    }
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        if !is_dns1123_label(h) {
            errors.push(FieldError::new(
                "spec.hostname",
                format!("{h:?} must be a lowercase RFC 1123 label"),
            ));
        }
    }
    // The API server's rule (validatePodSpecSecurityContext): one PID namespace or the other.
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errors.push(FieldError::new(
            "spec.shareProcessNamespace",
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    host_users(spec, errors);
    if spec.termination_grace_period_seconds.is_some_and(|s| s < 0) {
        errors.push(FieldError::new(
            "spec.terminationGracePeriodSeconds",
            "must be greater than or equal to 0",
        ));
    }
}

/// The API server's rule (validateHostUsers): a pod in a user namespace shares none of the
/// host's namespaces; hostlet also refuses privileged containers in it, whose devices and
/// unmasked /proc would be the host's.
fn host_users(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    if spec.host_users != Some(false) {
        return;
    }
    for (on, field) in [
        (spec.host_network, "spec.hostNetwork"),
        (spec.host_pid, "spec.hostPID"),
        (spec.host_ipc, "spec.hostIPC"),
    ] {
        if on == Some(true) {
            errors.push(FieldError::new(
                field,
                "forbidden when `hostUsers` is false",
            ));
        }
    }
    let lists = [
        ("containers", &spec.containers[..]),
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            if c.security_context.as_ref().and_then(|s| s.privileged) == Some(true) {
                // A field path, so the refusal is located in the manifest.
                errors.push(FieldError::new(
                    format!("spec.{list}[{i}].securityContext.privileged"),
                    "forbidden when `hostUsers` is false",
                ));
            }
        }
    }
}

/// Containers and init containers: each one's fields, unique names, and the rules on
/// `restartPolicy` (sidecars) and probes of init containers.
fn validate_containers(
    spec: &PodSpec,
    value: &Value,
    volumes: &HashSet<String>,
    errors: &mut Vec<FieldError>,
) {
    let pod_always = matches!(spec.restart_policy.as_deref(), None | Some("Always"));
    if spec.containers.is_empty() {
        errors.push(FieldError::new(
            "spec.containers",
            "at least one container is required",
        ));
    }
    let mut names = HashSet::new();
    let host_network = spec.host_network.unwrap_or(false);
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        validate_container(
            c,
            &path,
            &value["containers"][i],
            volumes,
            host_network,
            errors,
        );
        unique_name(c, &path, &mut names, errors);
    }
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let path = format!("spec.initContainers[{i}]");
        let v = &value["initContainers"][i];
        validate_container(c, &path, v, volumes, host_network, errors);
        unique_name(c, &path, &mut names, errors);
        restart_rules::validate(c, &path, true, errors);
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        resize_policy::validate(c, &path, !sidecar, pod_always, errors);
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if !sidecar && !v[probe].is_null() {
                errors.push(FieldError::new(
                    format!("{path}.{probe}"),
                    "only sidecar init containers may have probes",
                ));
            }
        }
    }
    for (i, c) in spec.containers.iter().enumerate() {
        let path = format!("spec.containers[{i}]");
        restart_rules::validate(c, &path, false, errors);
        resize_policy::validate(c, &path, false, pod_always, errors);
    }
}

fn unique_name(
    c: &Container,
    path: &str,
    names: &mut HashSet<String>,
    errors: &mut Vec<FieldError>,
) {
    if c.name.is_empty() {
        errors.push(FieldError::new(format!("{path}.name"), "required"));
    } else if !is_dns1123_label(&c.name) {
        errors.push(FieldError::new(
            format!("{path}.name"),
            format!(
                "{:?} must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63 characters)",
                c.name
            ),
        ));
    } else if !names.insert(c.name.clone()) {
        errors.push(FieldError::new(
            format!("{path}.name"),
            format!("duplicate container name {:?}", c.name),
        ));
    }
}

/// The kubelet's HasAPIObjectReference (pkg/api/pod/util.go), minus volumes (see validate_volumes).
fn api_references(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    if spec
        .service_account_name
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        errors.push(FieldError::api_reference(
            "spec.serviceAccountName",
            "serviceaccounts",
        ));
    }
    if spec.service_account.as_ref().is_some_and(|s| !s.is_empty()) {
        errors.push(FieldError::api_reference(
            "spec.serviceAccount",
            "serviceaccounts",
        ));
    }
    if spec.resource_claims.as_ref().is_some_and(|s| !s.is_empty()) {
        errors.push(FieldError::api_reference(
            "spec.resourceClaims",
            "resourceclaims",
        ));
    }
    let all = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (kind, containers) in all {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            for (j, from) in c.env_from.iter().flatten().enumerate() {
                let path = format!("spec.{kind}[{i}].envFrom[{j}]");
                let names = [
                    from.config_map_ref.as_ref().map(|r| &r.name),
                    from.secret_ref.as_ref().map(|r| &r.name),
                ];
                match names {
                    [Some(_), Some(_)] => errors.push(FieldError::new(
                        path.clone(),
                        "may not have more than one field specified at a time",
                    )),
                    [None, None] => errors.push(FieldError::new(
                        path.clone(),
                        "must specify one of configMapRef or secretRef",
                    )),
                    [Some(n), None] | [None, Some(n)] if n.is_empty() => {
                        let which = if from.config_map_ref.is_some() {
                            "configMapRef"
                        } else {
                            "secretRef"
                        };
                        errors.push(FieldError::new(format!("{path}.{which}.name"), "required"));
                    }
                    _ => {}
                }
                if let Some(p) = from.prefix.as_deref().filter(|p| !p.is_empty()) {
                    if !is_env_var_name(p) {
                        errors.push(FieldError::new(
                            format!("{path}.prefix"),
                            format!("{p:?} is not a valid environment variable name"),
                        ));
                    }
                }
            }
        }
    }
}

/// The API server's IsEnvVarName: printable ASCII but '=', not starting with a digit.
/// What a pod-spec check says of the spec in `yaml`, an error a line (for its unit tests).
#[cfg(test)]
fn spec_errors(yaml: &str, check: fn(&PodSpec, &mut Vec<FieldError>)) -> Vec<String> {
    let spec: PodSpec = serde_yaml::from_str(yaml).unwrap();
    let mut errors = Vec::new();
    check(&spec, &mut errors);
    errors.iter().map(ToString::to_string).collect()
}

pub fn is_env_var_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_graphic() && c != '=')
}

/// An absent or empty value is fine (a default applies); anything else must be in `allowed`.
fn one_of(value: Option<&str>, field: &str, allowed: &[&str], errors: &mut Vec<FieldError>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        if !allowed.contains(&v) {
            let list = allowed
                .iter()
                .filter(|a| !a.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            errors.push(FieldError::new(
                field,
                format!("unsupported value {v:?}: must be one of {list}"),
            ));
        }
    }
}
