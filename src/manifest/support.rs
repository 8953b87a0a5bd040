//! Which pod fields hostlet runs, which it accepts and ignores, and (by omission) which it
//! rejects as "not supported by hostlet yet".
//!
//! These tables are allow-lists on purpose: a field missing from them — including fields that a
//! newer Kubernetes adds to k8s-openapi — is an error unless it holds its zero value (`false`,
//! `0`, `""`, `[]`, `{}`), so nothing that changes how a container runs is silently ignored.
//! Today that rejects, among others: `securityContext` fields such as `seLinuxOptions`,
//! `seLinuxChangePolicy`, `fsGroupChangePolicy`;
//! `runtimeClassName`, `overhead`, `activeDeadlineSeconds`, `volumeDevices`, volume types
//! other than those of [`VOLUME_SOURCES`]. A [`Support::Within`] table names the refused
//! field inside its object (`spec.securityContext.seLinuxChangePolicy`).
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
    /// An object whose own fields are checked against this table, so what is refused is
    /// named down to the field (`spec.securityContext.seLinuxChangePolicy`).
    Within(&'static [(&'static str, Support)]),
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
    ("securityContext", Within(POD_SECURITY_CONTEXT)),
    // Pod-level resources (cpu, memory, hugepages): validate::container::resources and
    // pod_resources.
    ("resources", Implemented),
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
    // false: a user namespace per pod (crate::userns); validate::host_users.
    ("hostUsers", Implemented),
    ("os", Only(is_linux_os)),
    ("serviceAccountName", Forbidden),
    ("serviceAccount", Forbidden),
    // Secrets of the pod's namespace from the manifest sources (hostlet's extension).
    ("imagePullSecrets", Implemented),
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
    ("securityContext", Within(SECURITY_CONTEXT)),
    ("livenessProbe", Within(PROBE)),
    ("readinessProbe", Within(PROBE)),
    ("startupProbe", Within(PROBE)),
    ("lifecycle", Within(LIFECYCLE)),
    // Checked in validate (restart_rules): Always, OnFailure or Never; "Always" on an init
    // container makes a sidecar.
    ("restartPolicy", Implemented),
    ("restartPolicyRules", Implemented),
    // Checked with the API server's rules (resize_policy); applied by worker::resize when
    // an edit of the manifest changes only resources.
    ("resizePolicy", Implemented),
    // The monitor holds stdin (a pipe) and the terminal for `hostlet attach`.
    ("stdin", Implemented),
    ("stdinOnce", Implemented),
    ("tty", Implemented),
];

/// Probes run exec, httpGet (HTTP or HTTPS), tcpSocket and grpc.
pub const PROBE: &[(&str, Support)] = &[
    ("exec", Implemented),
    ("grpc", Implemented),
    ("httpGet", Within(HTTP_GET)),
    ("tcpSocket", Implemented),
    ("initialDelaySeconds", Implemented),
    ("periodSeconds", Implemented),
    ("timeoutSeconds", Implemented),
    ("successThreshold", Implemented),
    ("failureThreshold", Implemented),
    ("terminationGracePeriodSeconds", Implemented),
];

pub const HTTP_GET: &[(&str, Support)] = &[
    ("host", Implemented),
    ("httpHeaders", Implemented),
    ("path", Implemented),
    ("port", Implemented),
    ("scheme", Only(http_scheme_supported)),
];

fn http_scheme_supported(v: &Value) -> bool {
    v.as_str().is_some_and(|s| matches!(s, "HTTP" | "HTTPS"))
}

/// postStart/preStop with exec, httpGet or sleep.
pub const LIFECYCLE: &[(&str, Support)] =
    &[("postStart", Within(HANDLER)), ("preStop", Within(HANDLER))];

pub const HANDLER: &[(&str, Support)] = &[
    ("exec", Implemented),
    ("httpGet", Within(HTTP_GET)),
    ("sleep", Implemented),
];

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
    "image",
];

pub const HOST_PATH: &[(&str, Support)] = &[("path", Implemented), ("type", Implemented)];

pub const EMPTY_DIR: &[(&str, Support)] = &[("medium", Implemented), ("sizeLimit", Implemented)];

/// An OCI image (or artifact) as a read-only volume (KEP-4639): pulled through the image
/// store as a container's image is.
pub const IMAGE_VOLUME: &[(&str, Support)] =
    &[("reference", Implemented), ("pullPolicy", Implemented)];

/// Resources a container may request or limit.
pub const RESOURCE_NAMES: &[&str] = &["cpu", "memory"];

fn is_false(v: &Value) -> bool {
    v.as_bool() == Some(false)
}

fn is_linux_os(v: &Value) -> bool {
    v.get("name").and_then(Value::as_str) == Some("linux")
}

pub const POD_SECURITY_CONTEXT: &[(&str, Support)] = &[
    ("runAsUser", Implemented),
    ("runAsGroup", Implemented),
    ("runAsNonRoot", Implemented),
    ("supplementalGroups", Implemented),
    ("supplementalGroupsPolicy", Implemented),
    ("fsGroup", Implemented),
    ("sysctls", Implemented),
    ("seccompProfile", Implemented),
    // bundle::apparmor: the kubelet's precedence, hostlet-default for RuntimeDefault.
    ("appArmorProfile", Implemented),
];

pub const SECURITY_CONTEXT: &[(&str, Support)] = &[
    ("runAsUser", Implemented),
    ("runAsGroup", Implemented),
    ("runAsNonRoot", Implemented),
    ("privileged", Implemented),
    ("capabilities", Implemented),
    ("readOnlyRootFilesystem", Implemented),
    ("allowPrivilegeEscalation", Implemented),
    ("procMount", Implemented),
    ("seccompProfile", Implemented),
    ("appArmorProfile", Implemented),
];

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
            Some((_, Within(inner))) => {
                check_fields(value, &format!("{path}.{key}"), inner, errors);
                true
            }
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

    fn refused(v: Value, table: &[(&str, Support)]) -> Vec<String> {
        let mut errors = Vec::new();
        check_fields(&v, "c", table, &mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn probes_and_hooks_name_what_they_refuse() {
        let life = |v| refused(json!({ "lifecycle": v }), CONTAINER);
        assert!(life(json!({"preStop": {"exec": {"command": ["x"]}}})).is_empty());
        assert!(life(json!({"postStart": {"sleep": {"seconds": 1}}})).is_empty());
        assert_eq!(
            life(json!({"postStart": {"tcpSocket": {"port": 1}}})),
            ["c.lifecycle.postStart.tcpSocket"]
        );
        assert!(life(json!({"preStop": {"httpGet": {"port": 1, "scheme": "HTTPS"}}})).is_empty());
        assert_eq!(
            life(json!({"preStop": {"httpGet": {"port": 1, "scheme": "FTP"}}})),
            ["c.lifecycle.preStop.httpGet.scheme"]
        );
        assert_eq!(
            life(json!({"stopSignal": "SIGUSR1"})),
            ["c.lifecycle.stopSignal"]
        );
        assert!(
            life(json!({"preStop": 3})).is_empty(),
            "a type error is serde's"
        );
        let probe = |v| refused(json!({ "livenessProbe": v }), CONTAINER);
        assert!(probe(json!({"tcpSocket": {"port": 1}, "periodSeconds": 2})).is_empty());
        assert!(probe(json!({"grpc": {"port": 1}})).is_empty());
        assert_eq!(
            probe(json!({"httpGet": {"port": 1, "scheme": "FTP"}})),
            ["c.livenessProbe.httpGet.scheme"]
        );
        assert!(probe(json!([])).is_empty());
    }

    #[test]
    fn security_contexts_name_the_field_they_refuse() {
        let pod = refused(
            json!({"securityContext": {"runAsUser": 1, "seLinuxChangePolicy": "Recursive", "fsGroupChangePolicy": ""}}),
            POD_SPEC,
        );
        assert_eq!(pod, ["c.securityContext.seLinuxChangePolicy"]);
        let c = refused(
            json!({"securityContext": {"appArmorProfile": {"type": "RuntimeDefault"}, "seLinuxOptions": {"level": "s0"}, "privileged": true}}),
            CONTAINER,
        );
        assert_eq!(c, ["c.securityContext.seLinuxOptions"]);
    }
}
