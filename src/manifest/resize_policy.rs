//! `containers[].resizePolicy` (KEP-1287): accepted with the API server's rules. It says
//! what a resize of a running container's resources does: `worker::resize` reads it when an
//! edit of the manifest changes only resources (the kubelet would recreate a static pod).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Container;

use super::field_error::FieldError;

/// Checks the resize policy of the container at `path`; `init` for a regular (not sidecar)
/// init container, which may not have one; `pod_always` when the pod's restartPolicy is
/// Always (unset counts).
pub fn validate(
    c: &Container,
    path: &str,
    init: bool,
    pod_always: bool,
    errors: &mut Vec<FieldError>,
) {
    let Some(policies) = c.resize_policy.as_deref().filter(|p| !p.is_empty()) else {
        return;
    };
    let at = format!("{path}.resizePolicy");
    if init {
        errors.push(FieldError::new(
            at,
            "may not be set for non-restartable init containers",
        ));
        return;
    }
    let mut seen = HashSet::new();
    for (i, p) in policies.iter().enumerate() {
        let at = format!("{at}[{i}]");
        match p.resource_name.as_str() {
            "cpu" | "memory" => {
                if !seen.insert(p.resource_name.as_str()) {
                    errors.push(FieldError::new(
                        format!("{at}.resourceName"),
                        format!("duplicate value {:?}", p.resource_name),
                    ));
                }
            }
            other => errors.push(FieldError::new(
                format!("{at}.resourceName"),
                format!("unsupported value {other:?}: supported values: \"cpu\", \"memory\""),
            )),
        }
        match p.restart_policy.as_str() {
            "NotRequired" => {}
            "RestartContainer" if pod_always => {}
            "RestartContainer" => errors.push(FieldError::new(
                format!("{at}.restartPolicy"),
                "must be \"NotRequired\" when the pod's restartPolicy is not \"Always\"",
            )),
            other => errors.push(FieldError::new(
                format!("{at}.restartPolicy"),
                format!("unsupported value {other:?}: supported values: \"NotRequired\", \"RestartContainer\""),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str, init: bool, pod_always: bool) -> Vec<String> {
        let c: Container = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        validate(&c, "c", init, pod_always, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_api_server_rules() {
        let ok = "{name: a, resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}, {resourceName: memory, restartPolicy: RestartContainer}]}";
        assert!(errors(ok, false, true).is_empty());
        assert_eq!(
            errors(ok, false, false),
            ["c.resizePolicy[1].restartPolicy: must be \"NotRequired\" when the pod's restartPolicy is not \"Always\""]
        );
        assert_eq!(
            errors(ok, true, true),
            ["c.resizePolicy: may not be set for non-restartable init containers"]
        );
        assert_eq!(
            errors("{name: a, resizePolicy: [{resourceName: cpu, restartPolicy: Later}, {resourceName: cpu, restartPolicy: NotRequired}, {resourceName: gpu, restartPolicy: NotRequired}]}", false, true),
            [
                "c.resizePolicy[0].restartPolicy: unsupported value \"Later\": supported values: \"NotRequired\", \"RestartContainer\"",
                "c.resizePolicy[1].resourceName: duplicate value \"cpu\"",
                "c.resizePolicy[2].resourceName: unsupported value \"gpu\": supported values: \"cpu\", \"memory\"",
            ]
        );
    }
}
