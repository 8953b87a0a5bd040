//! Container-level restart policy and rules (KEP-5307, `containers[].restartPolicy` and
//! `restartPolicyRules`): their validation, as the API server's, and the kubelet's decision
//! (`podutil.ContainerShouldRestart`) for a container that exited. Here, below the worker and
//! the status, so both decide the same way.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Container;

use super::field_error::FieldError;

const POLICIES: &[&str] = &["Always", "OnFailure", "Never"];

/// The API server's limits on rules and on the values of one rule.
const MAX_RULES: usize = 20;
const MAX_VALUES: usize = 255;

/// What the container's own restart policy and rules decide for an exit with `exit_code`:
/// `None` when the container has no `restartPolicy` and the pod's decides. Rules are tried in
/// order and the first that matches acts; with none matching, the container's policy decides.
pub fn container_decides(c: &Container, exit_code: i32) -> Option<bool> {
    let policy = c.restart_policy.as_deref()?;
    if matching_rule_restarts(c, exit_code) {
        return Some(true);
    }
    match policy {
        "Always" => Some(true),
        "OnFailure" => Some(exit_code != 0),
        "Never" => Some(false),
        // Validation refuses any other value; the pod's policy is the kubelet's fallback.
        _ => None,
    }
}

fn matching_rule_restarts(c: &Container, exit_code: i32) -> bool {
    let rules = c.restart_policy_rules.iter().flatten();
    for rule in rules {
        let Some(codes) = &rule.exit_codes else {
            continue;
        };
        let listed = codes.values.iter().flatten().any(|v| *v == exit_code);
        let matched = match codes.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        if matched {
            // "Restart" is the only action there is.
            return rule.action == "Restart";
        }
    }
    false
}

/// Checks the container at `path`: `init` for an init container, where `Always` makes a
/// sidecar (which always restarts, so rules would say nothing).
pub fn validate(c: &Container, path: &str, init: bool, errors: &mut Vec<FieldError>) {
    if let Some(p) = c.restart_policy.as_deref() {
        if !POLICIES.contains(&p) {
            errors.push(FieldError::new(
                format!("{path}.restartPolicy"),
                format!("unsupported value {p:?}: supported values: \"Always\", \"OnFailure\", \"Never\""),
            ));
        }
    }
    let Some(rules) = c.restart_policy_rules.as_deref().filter(|r| !r.is_empty()) else {
        return;
    };
    let at = format!("{path}.restartPolicyRules");
    match c.restart_policy.as_deref() {
        None => errors.push(FieldError::new(
            format!("{path}.restartPolicy"),
            "must be set when restartPolicyRules are used",
        )),
        Some("Always") if init => errors.push(FieldError::new(
            at.clone(),
            "not allowed for init containers with restartPolicy \"Always\" (sidecars)",
        )),
        _ => {}
    }
    if rules.len() > MAX_RULES {
        errors.push(FieldError::new(
            at.clone(),
            format!("must have at most {MAX_RULES} items"),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("{at}[{i}]");
        if rule.action != "Restart" {
            errors.push(FieldError::new(
                format!("{at}.action"),
                format!(
                    "unsupported value {:?}: supported values: \"Restart\"",
                    rule.action
                ),
            ));
        }
        let Some(codes) = &rule.exit_codes else {
            errors.push(FieldError::new(format!("{at}.exitCodes"), "required"));
            continue;
        };
        if !matches!(codes.operator.as_str(), "In" | "NotIn") {
            errors.push(FieldError::new(
                format!("{at}.exitCodes.operator"),
                format!(
                    "unsupported value {:?}: supported values: \"In\", \"NotIn\"",
                    codes.operator
                ),
            ));
        }
        let values = codes.values.as_deref().unwrap_or_default();
        if values.len() > MAX_VALUES {
            errors.push(FieldError::new(
                format!("{at}.exitCodes.values"),
                format!("must have at most {MAX_VALUES} items"),
            ));
        }
        let mut seen = HashSet::new();
        for (j, v) in values.iter().enumerate() {
            if !seen.insert(*v) {
                errors.push(FieldError::new(
                    format!("{at}.exitCodes.values[{j}]"),
                    format!("duplicate value {v}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> Container {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn errors(yaml: &str, init: bool) -> Vec<String> {
        let mut errors = Vec::new();
        validate(&container(yaml), "c", init, &mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn without_a_container_policy_the_pod_decides() {
        let c = container("{name: a, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42]}}]}");
        assert_eq!(container_decides(&c, 42), None);
    }

    #[test]
    fn the_first_matching_rule_restarts_else_the_container_policy() {
        let c = container(
            "{name: a, restartPolicy: Never, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [42, 43]}}]}",
        );
        assert_eq!(container_decides(&c, 42), Some(true));
        assert_eq!(container_decides(&c, 43), Some(true));
        assert_eq!(container_decides(&c, 1), Some(false));
        assert_eq!(container_decides(&c, 0), Some(false));
        let c = container(
            "{name: a, restartPolicy: OnFailure, restartPolicyRules: [{action: Restart, exitCodes: {operator: NotIn, values: [0, 7]}}]}",
        );
        assert_eq!(container_decides(&c, 1), Some(true));
        // Not matched: OnFailure decides, and 7 is a failure.
        assert_eq!(container_decides(&c, 7), Some(true));
        assert_eq!(container_decides(&c, 0), Some(false));
        let c = container("{name: a, restartPolicy: Always}");
        assert_eq!(container_decides(&c, 0), Some(true));
        let c = container("{name: a, restartPolicy: OnFailure}");
        assert_eq!(container_decides(&c, 0), Some(false));
        assert_eq!(container_decides(&c, 3), Some(true));
    }

    #[test]
    fn validation_follows_the_api_server() {
        assert!(errors("{name: a, restartPolicy: Never, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [1]}}]}", false).is_empty());
        assert_eq!(
            errors("{name: a, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [1]}}]}", false),
            ["c.restartPolicy: must be set when restartPolicyRules are used"]
        );
        assert_eq!(
            errors("{name: a, restartPolicy: Sometimes}", false),
            ["c.restartPolicy: unsupported value \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""]
        );
        assert_eq!(
            errors("{name: a, restartPolicy: Never, restartPolicyRules: [{action: Stop, exitCodes: {operator: Is, values: [1, 1]}}, {action: Restart}]}", false),
            [
                "c.restartPolicyRules[0].action: unsupported value \"Stop\": supported values: \"Restart\"",
                "c.restartPolicyRules[0].exitCodes.operator: unsupported value \"Is\": supported values: \"In\", \"NotIn\"",
                "c.restartPolicyRules[0].exitCodes.values[1]: duplicate value 1",
                "c.restartPolicyRules[1].exitCodes: required",
            ]
        );
        let sidecar = "{name: a, restartPolicy: Always, restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [1]}}]}";
        assert!(errors(sidecar, false).is_empty());
        assert_eq!(
            errors(sidecar, true),
            ["c.restartPolicyRules: not allowed for init containers with restartPolicy \"Always\" (sidecars)"]
        );
    }
}
