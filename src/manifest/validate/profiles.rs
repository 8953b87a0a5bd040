//! `seccompProfile` and `appArmorProfile`, pod- and container-level, by the API server's
//! rules (validateSeccompProfileField, ValidateAppArmorProfileField): a known type, and
//! `localhostProfile` exactly when the type is `Localhost`. Checked here so that
//! `hostlet validate` and the sources refuse such a pod with its line, instead of each
//! container failing to start.

use k8s_openapi::api::core::v1::{AppArmorProfile, PodSpec, SeccompProfile};

use crate::manifest::field_error::FieldError;

const TYPES: &[&str] = &["RuntimeDefault", "Unconfined", "Localhost"];
/// The API server's bound on an AppArmor profile name.
const MAX_APPARMOR_PROFILE: usize = 4095;

pub(super) fn validate(spec: &PodSpec, errors: &mut Vec<FieldError>) {
    if let Some(sc) = &spec.security_context {
        let (seccomp, apparmor) = (sc.seccomp_profile.as_ref(), sc.app_armor_profile.as_ref());
        both("spec.securityContext", seccomp, apparmor, errors);
    }
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c));
    let inits = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    for (path, c) in containers.chain(inits) {
        if let Some(sc) = &c.security_context {
            let (seccomp, apparmor) = (sc.seccomp_profile.as_ref(), sc.app_armor_profile.as_ref());
            both(
                &format!("{path}.securityContext"),
                seccomp,
                apparmor,
                errors,
            );
        }
    }
}

fn both(
    path: &str,
    seccomp: Option<&SeccompProfile>,
    apparmor: Option<&AppArmorProfile>,
    errors: &mut Vec<FieldError>,
) {
    if let Some(p) = seccomp {
        check(
            path,
            "seccompProfile",
            &p.type_,
            p.localhost_profile.as_deref(),
            errors,
        );
    }
    if let Some(p) = apparmor {
        check(
            path,
            "appArmorProfile",
            &p.type_,
            p.localhost_profile.as_deref(),
            errors,
        );
    }
}

fn check(path: &str, field: &str, type_: &str, local: Option<&str>, errors: &mut Vec<FieldError>) {
    let at = |sub: &str| format!("{path}.{field}.{sub}");
    if !TYPES.contains(&type_) {
        errors.push(FieldError::new(
            at("type"),
            format!("unsupported value {type_:?}: supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\""),
        ));
        return;
    }
    match (type_, local) {
        ("Localhost", None | Some("")) => errors.push(FieldError::new(
            at("localhostProfile"),
            "required when type is Localhost",
        )),
        ("Localhost", Some(name)) if field == "appArmorProfile" => {
            if name.len() > MAX_APPARMOR_PROFILE {
                errors.push(FieldError::new(
                    at("localhostProfile"),
                    format!("must be no more than {MAX_APPARMOR_PROFILE} characters"),
                ));
            }
            if name.trim() != name {
                errors.push(FieldError::new(
                    at("localhostProfile"),
                    "must not be padded with whitespace",
                ));
            }
        }
        ("Localhost", Some(_)) => {}
        (_, Some(_)) => errors.push(FieldError::new(
            at("localhostProfile"),
            "can only be set when type is Localhost",
        )),
        (_, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(yaml: &str) -> Vec<String> {
        crate::manifest::validate::spec_errors(yaml, validate)
    }

    #[test]
    fn localhost_needs_its_profile_and_only_it_may_have_one() {
        assert!(errors("{containers: [{name: c}]}").is_empty());
        for t in ["RuntimeDefault", "Unconfined"] {
            let y = format!("{{securityContext: {{seccompProfile: {{type: {t}}}, appArmorProfile: {{type: {t}}}}}, containers: []}}");
            assert!(errors(&y).is_empty(), "{t}");
        }
        assert!(errors("{containers: [{name: c, securityContext: {appArmorProfile: {type: Localhost, localhostProfile: mine}, seccompProfile: {type: Localhost, localhostProfile: p.json}}}]}").is_empty());
        assert_eq!(
            errors("{containers: [{name: c, securityContext: {appArmorProfile: {type: Localhost}}}]}"),
            ["spec.containers[0].securityContext.appArmorProfile.localhostProfile: required when type is Localhost"]
        );
        assert_eq!(
            errors("{containers: [], initContainers: [{name: i, securityContext: {seccompProfile: {type: Localhost, localhostProfile: ''}}}]}"),
            ["spec.initContainers[0].securityContext.seccompProfile.localhostProfile: required when type is Localhost"]
        );
        assert_eq!(
            errors("{securityContext: {seccompProfile: {type: RuntimeDefault, localhostProfile: x}}, containers: []}"),
            ["spec.securityContext.seccompProfile.localhostProfile: can only be set when type is Localhost"]
        );
    }

    #[test]
    fn unknown_types_and_bad_apparmor_names() {
        assert_eq!(
            errors("{securityContext: {appArmorProfile: {type: Complain}}, containers: []}"),
            ["spec.securityContext.appArmorProfile.type: unsupported value \"Complain\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\""]
        );
        assert_eq!(
            errors("{securityContext: {appArmorProfile: {type: Localhost, localhostProfile: ' p'}}, containers: []}"),
            ["spec.securityContext.appArmorProfile.localhostProfile: must not be padded with whitespace"]
        );
        let long = "p".repeat(4096);
        let y = format!("{{securityContext: {{appArmorProfile: {{type: Localhost, localhostProfile: {long}}}}}, containers: []}}");
        assert_eq!(errors(&y).len(), 1);
    }
}
