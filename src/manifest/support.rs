//! Which pod fields hostlet runs, which it accepts and ignores, and (by omission) which it
//! rejects as "not supported by hostlet yet".
//!
//! These tables are allow-lists on purpose: a field missing from them — including fields that a
//! newer Kubernetes adds to k8s-openapi — is an error unless it holds its zero value (`false`,
//! `0`, `""`, `[]`, `{}`), so nothing that changes how a container runs is silently ignored.
//! Today that rejects, among others: `initContainers`, `livenessProbe`/`readinessProbe`/
//! `startupProbe`, `lifecycle`, a non-empty `securityContext` (pod and container), `stdin`/`tty`,
//! `shareProcessNamespace`, `hostAliases`, `dnsConfig`, `runtimeClassName`, `overhead`,
//! `activeDeadlineSeconds`, `volumeMounts[].subPath`/`mountPropagation`, `volumeDevices`,
//! `env[].valueFrom.resourceFieldRef`, volume types other than hostPath/emptyDir.
//!
//! When a feature lands, add its field here as [`Support::Implemented`] (and its semantic checks
//! to `validate.rs`).

use serde_json::Value;

use super::FieldError;

#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// hostlet runs it.
    Implemented,
    /// Only matters to a scheduler or a cluster; accepted and has no effect on one host.
    Ignored,
    /// Never allowed in a static pod (API object references, ephemeral containers);
    /// `validate.rs` reports why, e.g. "static pods may not reference secrets".
    Forbidden,
    /// Accepted only for the values the predicate allows; otherwise not supported yet.
    Only(fn(&Value) -> bool),
}

use Support::*;

pub const POD_SPEC: &[(&str, Support)] = &[
    ("containers", Implemented),
    ("restartPolicy", Implemented),
    ("terminationGracePeriodSeconds", Implemented),
    ("volumes", Implemented),
    ("hostNetwork", Implemented),
    ("hostPID", Implemented),
    ("hostIPC", Implemented),
    ("nodeName", Implemented),
    ("dnsPolicy", Implemented),
    ("hostname", Implemented),
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
    ("envFrom", Forbidden),
    ("resources", Implemented),
    ("imagePullPolicy", Implemented),
    ("volumeMounts", Implemented),
    ("ports", Implemented),
    ("terminationMessagePath", Implemented),
    ("terminationMessagePolicy", Implemented),
];

pub const ENV_VAR: &[(&str, Support)] = &[
    ("name", Implemented),
    ("value", Implemented),
    ("valueFrom", Implemented),
];

pub const ENV_VAR_SOURCE: &[(&str, Support)] = &[
    ("fieldRef", Implemented),
    ("secretKeyRef", Forbidden),
    ("configMapKeyRef", Forbidden),
];

pub const CONTAINER_PORT: &[(&str, Support)] = &[
    ("containerPort", Implemented),
    ("protocol", Implemented),
    ("name", Implemented),
    // Only with hostNetwork: checked in validate.rs.
    ("hostPort", Implemented),
];

pub const VOLUME_MOUNT: &[(&str, Support)] = &[
    ("name", Implemented),
    ("mountPath", Implemented),
    ("readOnly", Implemented),
    ("mountPropagation", Only(is_none_propagation)),
];

/// Only `cpu` and `memory` keys are allowed inside; checked in validate.rs.
pub const RESOURCES: &[(&str, Support)] = &[("requests", Implemented), ("limits", Implemented)];

/// Volume sources hostlet implements. Every other source of a volume is rejected in
/// validate.rs, as an API reference or as not supported yet.
pub const VOLUME_SOURCES: &[&str] = &["hostPath", "emptyDir"];

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

fn is_none_propagation(v: &Value) -> bool {
    v.as_str() == Some("None")
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
