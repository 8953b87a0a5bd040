//! Which pod fields hostlet runs, which it accepts and ignores, and (by omission) which it
//! rejects as "not supported by hostlet yet".
//!
//! These tables are allow-lists on purpose: a field missing from them — including fields that a
//! newer Kubernetes adds to k8s-openapi — is an error unless it holds its zero value (`false`,
//! `0`, `""`, `[]`, `{}`), so nothing that changes how a container runs is silently ignored.
//! Today that rejects, among others: a non-empty `securityContext` (pod and container), `stdin`/`tty`,
//! `hostAliases`, `dnsConfig`, `runtimeClassName`, `overhead`,
//! `activeDeadlineSeconds`, `volumeMounts[].subPath`/`mountPropagation`, `volumeDevices`,
//! `env[].valueFrom.resourceFieldRef`, volume types other than hostPath/emptyDir.
//!
//! When a feature lands, add its field here as [`Support::Implemented`] (and its semantic checks
//! to `validate`).

use serde_json::Value;

use super::field_error::FieldError;

#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// hostlet runs it.
    Implemented,
    /// Only matters to a scheduler or a cluster; accepted and has no effect on one host.
    Ignored,
    /// Never allowed in a static pod (API object references, ephemeral containers);
    /// `validate` reports why, e.g. "static pods may not reference serviceaccounts".
    /// ConfigMaps and Secrets are the exception: the manifest sources declare them.
    Forbidden,
    /// Accepted only for the values the predicate allows; otherwise not supported yet.
    Only(fn(&Value) -> bool),
}

use Support::*;

pub const POD_SPEC: &[(&str, Support)] = &[
    ("containers", Implemented),
    ("initContainers", Implemented),
    ("restartPolicy", Implemented),
    ("terminationGracePeriodSeconds", Implemented),
    ("volumes", Implemented),
    ("hostNetwork", Implemented),
    ("hostPID", Implemented),
    ("hostIPC", Implemented),
    ("shareProcessNamespace", Implemented),
    ("nodeName", Implemented),
    ("dnsPolicy", Implemented),
    ("hostname", Implemented),
    ("subdomain", Implemented),
    ("hostAliases", Implemented),
    ("dnsConfig", Implemented),
    ("securityContext", Only(pod_security_supported)),
    ("priorityClassName", Ignored),
    ("priority", Ignored),
    ("tolerations", Ignored),
    ("affinity", Ignored),
    ("nodeSelector", Ignored),
    ("schedulerName", Ignored),
    ("preemptionPolicy", Ignored),
    ("topologySpreadConstraints", Ignored),
    ("schedulingGates", Ignored),
    ("enableServiceLinks", Ignored),
    ("automountServiceAccountToken", Only(is_false)),
    ("hostUsers", Only(is_true)),
    ("os", Only(is_linux_os)),
    ("serviceAccountName", Forbidden),
    ("serviceAccount", Forbidden),
    // Not yet read from local Secrets: registry credentials come from config.json files.
    ("imagePullSecrets", Forbidden),
    ("resourceClaims", Forbidden),
    ("ephemeralContainers", Forbidden),
];

pub const CONTAINER: &[(&str, Support)] = &[
    ("name", Implemented),
    ("image", Implemented),
    ("command", Implemented),
    ("args", Implemented),
    ("workingDir", Implemented),
    ("env", Implemented),
    // ConfigMaps and Secrets from the manifest sources (hostlet's extension).
    ("envFrom", Implemented),
    ("resources", Implemented),
    ("imagePullPolicy", Implemented),
    ("volumeMounts", Implemented),
    ("ports", Implemented),
    ("terminationMessagePath", Implemented),
    ("terminationMessagePolicy", Implemented),
    ("securityContext", Only(container_security_supported)),
    ("livenessProbe", Only(probe_supported)),
    ("readinessProbe", Only(probe_supported)),
    ("startupProbe", Only(probe_supported)),
    ("lifecycle", Only(lifecycle_supported)),
    // Checked in validate: init containers only, and only "Always" (sidecars).
    ("restartPolicy", Implemented),
];

const PROBE_FIELDS: &[&str] = &[
    "exec",
    "grpc",
    "httpGet",
    "tcpSocket",
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
    "terminationGracePeriodSeconds",
];

/// Probes run exec, httpGet (HTTP or HTTPS), tcpSocket and grpc.
fn probe_supported(v: &Value) -> bool {
    let Some(m) = v.as_object() else { return false };
    m.keys().all(|k| PROBE_FIELDS.contains(&k.as_str())) && http_get_supported(&v["httpGet"])
}

fn http_get_supported(v: &Value) -> bool {
    v.is_null()
        || v["scheme"].is_null()
        || v["scheme"]
            .as_str()
            .is_some_and(|s| matches!(s, "HTTP" | "HTTPS"))
}

/// postStart/preStop with exec, httpGet or sleep.
fn lifecycle_supported(v: &Value) -> bool {
    let Some(m) = v.as_object() else { return false };
    m.iter().all(|(k, h)| {
        matches!(k.as_str(), "postStart" | "preStop")
            && h.as_object().is_some_and(|m| {
                m.keys()
                    .all(|a| matches!(a.as_str(), "exec" | "httpGet" | "sleep"))
            })
            // Index the Value, not the Map: a Map panics on a missing key.
            && http_get_supported(&h["httpGet"])
    })
}

pub const ENV_VAR: &[(&str, Support)] = &[
    ("name", Implemented),
    ("value", Implemented),
    ("valueFrom", Implemented),
];

pub const ENV_VAR_SOURCE: &[(&str, Support)] = &[
    ("fieldRef", Implemented),
    ("resourceFieldRef", Implemented),
    ("secretKeyRef", Implemented),
    ("configMapKeyRef", Implemented),
];

pub const CONTAINER_PORT: &[(&str, Support)] = &[
    ("containerPort", Implemented),
    ("protocol", Implemented),
    ("name", Implemented),
    // With hostNetwork it must equal containerPort (validate); without, it goes to
    // the CNI portmap plugin, as hostIP does.
    ("hostPort", Implemented),
    ("hostIP", Implemented),
];

pub const VOLUME_MOUNT: &[(&str, Support)] = &[
    ("name", Implemented),
    ("mountPath", Implemented),
    ("readOnly", Implemented),
    ("subPath", Implemented),
    // Bidirectional only for privileged containers: checked when the spec is built.
    ("mountPropagation", Implemented),
];

/// Only `cpu` and `memory` keys are allowed inside; checked in validate.
pub const RESOURCES: &[(&str, Support)] = &[("requests", Implemented), ("limits", Implemented)];

/// Volume sources hostlet implements. Every other source of a volume is rejected in
/// validate, as an API reference or as not supported yet.
pub const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "downwardAPI",
    "projected",
    "configMap",
    "secret",
];

pub const HOST_PATH: &[(&str, Support)] = &[("path", Implemented), ("type", Implemented)];

pub const EMPTY_DIR: &[(&str, Support)] = &[("medium", Implemented), ("sizeLimit", Implemented)];

/// Resources a container may request or limit.
pub const RESOURCE_NAMES: &[&str] = &["cpu", "memory"];

fn is_false(v: &Value) -> bool {
    v.as_bool() == Some(false)
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn is_linux_os(v: &Value) -> bool {
    v.get("name").and_then(Value::as_str) == Some("linux")
}

/// Every key of `v` is in `allowed` or holds its zero value.
fn only_keys(v: &Value, allowed: &[&str]) -> bool {
    v.as_object().is_some_and(|m| {
        m.iter()
            .all(|(k, x)| allowed.contains(&k.as_str()) || is_zero(x))
    })
}

fn pod_security_supported(v: &Value) -> bool {
    only_keys(
        v,
        &[
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "supplementalGroups",
            "fsGroup",
            "sysctls",
            "seccompProfile",
        ],
    )
}

fn container_security_supported(v: &Value) -> bool {
    only_keys(
        v,
        &[
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "privileged",
            "capabilities",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "procMount",
            "seccompProfile",
        ],
    )
}

/// A value that means the same as an absent field.
pub fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Reports every field of `obj` (at `path`) that `table` does not allow.
pub fn check_fields(
    obj: &Value,
    path: &str,
    table: &[(&str, Support)],
    errors: &mut Vec<FieldError>,
) {
    let Some(obj) = obj.as_object() else { return };
    for (key, value) in obj {
        let allowed = match table.iter().find(|(name, _)| name == key) {
            Some((_, Implemented | Ignored | Forbidden)) => true,
            Some((_, Only(pred))) => pred(value) || value.is_null(),
            None => is_zero(value),
        };
        if !allowed {
            errors.push(FieldError::unsupported(format!("{path}.{key}")));
        }
    }
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probes_and_hooks_support_never_panics() {
        assert!(lifecycle_supported(
            &json!({"preStop": {"exec": {"command": ["x"]}}})
        ));
        assert!(lifecycle_supported(
            &json!({"postStart": {"sleep": {"seconds": 1}}})
        ));
        assert!(!lifecycle_supported(
            &json!({"postStart": {"tcpSocket": {"port": 1}}})
        ));
        assert!(lifecycle_supported(
            &json!({"preStop": {"httpGet": {"port": 1, "scheme": "HTTPS"}}})
        ));
        assert!(!lifecycle_supported(
            &json!({"preStop": {"httpGet": {"port": 1, "scheme": "FTP"}}})
        ));
        assert!(!lifecycle_supported(&json!({"preStop": 3})));
        assert!(probe_supported(
            &json!({"tcpSocket": {"port": 1}, "periodSeconds": 2})
        ));
        assert!(probe_supported(&json!({"grpc": {"port": 1}})));
        assert!(probe_supported(
            &json!({"httpGet": {"port": 1, "scheme": "HTTPS"}})
        ));
        assert!(!probe_supported(&json!([])));
    }
}
