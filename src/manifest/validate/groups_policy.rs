//! `securityContext.supplementalGroupsPolicy` (KEP-3619): Merge (the default: the groups of
//! the image's /etc/group for the user too) or Strict (only the groups the pod names).

use k8s_openapi::api::core::v1::PodSpec;

use crate::manifest::field_error::FieldError;

pub(super) fn validate(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    let policy = spec
        .security_context
        .as_ref()
        .and_then(|s| s.supplemental_groups_policy.as_deref());
    if let Some(p) = policy.filter(|p| !matches!(*p, "Merge" | "Strict")) {
        errors.push(FieldError::new(
            "spec.securityContext.supplementalGroupsPolicy",
            format!("unsupported value {p:?}: supported values: \"Merge\", \"Strict\""),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        crate::manifest::validate::spec_errors(yaml, validate)
    }

    #[test]
    fn merge_and_strict_only() {
        assert!(errors("{containers: []}").is_empty());
        for p in ["Merge", "Strict"] {
            let y =
                format!("{{containers: [], securityContext: {{supplementalGroupsPolicy: {p}}}}}");
            assert!(errors(&y).is_empty(), "{p}");
        }
        assert_eq!(
            errors("{containers: [], securityContext: {supplementalGroupsPolicy: Loose}}"),
            ["spec.securityContext.supplementalGroupsPolicy: unsupported value \"Loose\": supported values: \"Merge\", \"Strict\""]
        );
    }
}
