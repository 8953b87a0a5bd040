//! Semantic checks of a decoded pod, before defaulting. Every broken rule is reported, each with
//! the field path it concerns (`spec.containers[1].name`).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::Value;

use super::field_error::FieldError;
pub use super::keys::{is_dns1123_label, is_dns1123_subdomain};
use super::quantity::parse_memory_bytes;
use super::support::{self, check_fields};
use super::{resize_policy, restart_rules};

mod container;
mod groups_policy;
mod hugepages;
use container::{quantity, validate_container};

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default"];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];
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
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for c in all {
        if c.security_context.as_ref().and_then(|s| s.privileged) == Some(true) {
            errors.push(FieldError::new(
                format!("container {:?}: securityContext.privileged", c.name),
                "forbidden when `hostUsers` is false",
            ));
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
pub fn is_env_var_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_graphic() && c != '=')
}

/// Volume sources that are references to API objects, and the resource each one names.
const API_VOLUME_SOURCES: &[(&str, &str)] = &[
    ("persistentVolumeClaim", "persistentvolumeclaims"),
    ("ephemeral", "persistentvolumeclaims"),
    ("csi", "csidrivers"),
];
const API_PROJECTIONS: &[(&str, &str)] = &[
    ("serviceAccountToken", "serviceaccounts"),
    ("clusterTrustBundle", "clustertrustbundles"),
    ("podCertificate", "podcertificaterequests"),
];

/// Checks `spec.volumes` and returns the volume names.
fn validate_volumes(
    spec: &PodSpec,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if volume.name.is_empty() {
            errors.push(FieldError::new(format!("{path}.name"), "required"));
        } else if !is_dns1123_label(&volume.name) {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!("{:?} must be a lowercase RFC 1123 label", volume.name),
            ));
        } else if !names.insert(volume.name.clone()) {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!("duplicate volume name {:?}", volume.name),
            ));
        }

        let Some(obj) = value["volumes"][i].as_object() else {
            continue;
        };
        let sources: Vec<(&String, &Value)> = obj
            .iter()
            .filter(|(k, v)| *k != "name" && !v.is_null())
            .collect();
        if sources.len() > 1 {
            errors.push(FieldError::new(
                path.clone(),
                "may not specify more than one volume type",
            ));
        }
        for (kind, source) in sources {
            volume_source(volume, kind, source, &format!("{path}.{kind}"), errors);
        }
    }
    names
}

/// One source of a volume: the kinds hostlet supports, checked; API-backed and other
/// kinds refused.
fn volume_source(
    volume: &k8s_openapi::api::core::v1::Volume,
    kind: &str,
    source: &Value,
    spath: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some((_, resource)) = API_VOLUME_SOURCES.iter().find(|(k, _)| *k == kind) {
        errors.push(FieldError::api_reference(spath, resource));
    } else if kind == "projected" {
        let before = errors.len();
        for (k, projection) in source["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (pkind, resource) in API_PROJECTIONS {
                if projection.get(*pkind).is_some_and(|v| !v.is_null()) {
                    errors.push(FieldError::api_reference(
                        format!("{spath}.sources[{k}].{pkind}"),
                        resource,
                    ));
                }
            }
        }
        let only_downward = source["sources"].as_array().is_some_and(|a| {
            a.iter().all(|p| {
                p.as_object().is_some_and(|o| {
                    o.iter().all(|(k, v)| {
                        matches!(k.as_str(), "downwardAPI" | "configMap" | "secret") || v.is_null()
                    })
                })
            })
        });
        let projected = volume.projected.as_ref();
        for (k, p) in projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .enumerate()
        {
            let at = format!("{spath}.sources[{k}]");
            if let Some(cm) = &p.config_map {
                key_items(
                    &cm.name,
                    cm.items.as_deref(),
                    &format!("{at}.configMap"),
                    errors,
                );
            }
            if let Some(s) = &p.secret {
                key_items(&s.name, s.items.as_deref(), &format!("{at}.secret"), errors);
            }
        }
        if let Some(m) = projected.and_then(|p| p.default_mode) {
            file_mode(m, &format!("{spath}.defaultMode"), errors);
        }
        if errors.len() == before && !only_downward {
            errors.push(FieldError::unsupported(spath));
        }
    } else if kind == "downwardAPI" {
        // Items are checked when the pod's volumes are prepared.
    } else if kind == "configMap" {
        let cm = volume.config_map.as_ref();
        let items = cm.and_then(|c| c.items.as_deref());
        key_items(cm.map_or("", |c| &c.name), items, spath, errors);
        if let Some(m) = cm.and_then(|c| c.default_mode) {
            file_mode(m, &format!("{spath}.defaultMode"), errors);
        }
    } else if kind == "secret" {
        let s = volume.secret.as_ref();
        let name = s.and_then(|s| s.secret_name.as_deref()).unwrap_or_default();
        key_items(name, s.and_then(|s| s.items.as_deref()), spath, errors);
        if name.is_empty() {
            errors.push(FieldError::new(format!("{spath}.secretName"), "required"));
        }
        if let Some(m) = s.and_then(|s| s.default_mode) {
            file_mode(m, &format!("{spath}.defaultMode"), errors);
        }
    } else if kind == "hostPath" {
        check_fields(source, spath, support::HOST_PATH, errors);
        let hp = volume.host_path.as_ref();
        let p = hp.map(|h| h.path.as_str()).unwrap_or_default();
        if !p.starts_with('/') {
            errors.push(FieldError::new(
                format!("{spath}.path"),
                "must be an absolute path",
            ));
        }
        one_of(
            hp.and_then(|h| h.type_.as_deref()),
            &format!("{spath}.type"),
            HOST_PATH_TYPES,
            errors,
        );
    } else if kind == "emptyDir" {
        check_fields(source, spath, support::EMPTY_DIR, errors);
        let ed = volume.empty_dir.as_ref();
        match ed.and_then(|e| e.medium.as_deref()) {
            None | Some("") | Some("Memory") => {}
            Some(_) => errors.push(FieldError::unsupported(format!("{spath}.medium"))),
        }
        if let Some(q) = ed.and_then(|e| e.size_limit.as_ref()) {
            quantity(q, &format!("{spath}.sizeLimit"), parse_memory_bytes, errors);
        }
    } else if kind == "image" {
        check_fields(source, spath, support::IMAGE_VOLUME, errors);
        let image = volume.image.as_ref();
        if image
            .and_then(|i| i.reference.as_deref())
            .unwrap_or("")
            .is_empty()
        {
            errors.push(FieldError::new(format!("{spath}.reference"), "required"));
        }
        one_of(
            image.and_then(|i| i.pull_policy.as_deref()),
            &format!("{spath}.pullPolicy"),
            &["Always", "IfNotPresent", "Never"],
            errors,
        );
    } else {
        debug_assert!(!support::VOLUME_SOURCES.contains(&kind));
        errors.push(FieldError::unsupported(spath));
    }
}

/// The object name and the `items` of a configMap or secret volume (or projection).
fn key_items(
    name: &str,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    spath: &str,
    errors: &mut Vec<FieldError>,
) {
    if name.is_empty() && !spath.ends_with(".secret") {
        errors.push(FieldError::new(format!("{spath}.name"), "required"));
    }
    for (k, item) in items.into_iter().flatten().enumerate() {
        let at = format!("{spath}.items[{k}]");
        if !super::keys::is_valid_key(&item.key) {
            errors.push(FieldError::new(format!("{at}.key"), "not a valid key"));
        }
        let p = std::path::Path::new(&item.path);
        let bad = item.path.is_empty()
            || p.is_absolute()
            || item.path.starts_with("..")
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        if bad {
            errors.push(FieldError::new(
                format!("{at}.path"),
                "must be a relative path without '..' and not starting with '..'",
            ));
        }
        if let Some(m) = item.mode {
            file_mode(m, &format!("{at}.mode"), errors);
        }
    }
}

fn file_mode(mode: i32, field: &str, errors: &mut Vec<FieldError>) {
    if !(0..=0o777).contains(&mode) {
        errors.push(FieldError::new(
            field,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
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
