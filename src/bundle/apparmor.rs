//! AppArmor (KEP-24): which profile a container runs under, as the kubelet picks it
//! (pkg/security/apparmor `GetProfile`) and containerd turns it into the OCI
//! `process.apparmorProfile` (which libcontainer applies at exec).
//!
//! Precedence: the container's `securityContext.appArmorProfile`, then the deprecated
//! annotation `container.apparmor.security.beta.kubernetes.io/<container>` (static pods
//! never had it synced into the fields), then the pod's `securityContext.appArmorProfile`.
//! No profile: `hostlet-default` on a host with AppArmor (containerd's default), nothing on
//! a host without; a privileged container's RuntimeDefault is unconfined (containerd).
//! On a host without AppArmor, asking for any profile but Unconfined is refused with the
//! kubelet's admission message.

use k8s_openapi::api::core::v1::{AppArmorProfile, Container, Pod};

use super::BundleError;

/// The profile RuntimeDefault means, shipped with hostlet ([`DEFAULT_PROFILE_TEXT`]).
pub const DEFAULT_PROFILE: &str = "hostlet-default";
pub const DEFAULT_PROFILE_TEXT: &str = include_str!("../../packaging/apparmor/hostlet-default");
/// The deprecated per-container annotation's prefix.
pub const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
/// The kubelet's admission message on a host without AppArmor.
pub const NOT_ENABLED: &str = "Cannot enforce AppArmor: AppArmor is not enabled on the host";

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
const LOADED: &str = "/sys/kernel/security/apparmor/profiles";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    RuntimeDefault,
    Localhost(String),
    Unconfined,
}

/// The profile asked for, by the kubelet's precedence; None when nothing asks.
pub fn requested(pod: &Pod, c: &Container) -> Result<Option<Profile>, BundleError> {
    let field = |f: &str, m: String| BundleError::field(&c.name, f, &m);
    let own = c
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref());
    if let Some(p) = own {
        return from_field(p)
            .map(Some)
            .map_err(|m| field("securityContext.appArmorProfile", m));
    }
    let key = format!("{ANNOTATION_PREFIX}{}", c.name);
    if let Some(v) = pod.metadata.annotations.as_ref().and_then(|a| a.get(&key)) {
        return from_annotation(v)
            .map(Some)
            .map_err(|m| field(&format!("metadata.annotations[{key}]"), m));
    }
    let pod_level = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.app_armor_profile.as_ref());
    match pod_level {
        Some(p) => from_field(p)
            .map(Some)
            .map_err(|m| field("spec.securityContext.appArmorProfile", m)),
        None => Ok(None),
    }
}

fn from_field(p: &AppArmorProfile) -> Result<Profile, String> {
    let local = p.localhost_profile.as_deref().filter(|s| !s.is_empty());
    match (p.type_.as_str(), local) {
        ("RuntimeDefault", None) => Ok(Profile::RuntimeDefault),
        ("Unconfined", None) => Ok(Profile::Unconfined),
        ("Localhost", Some(name)) => Ok(Profile::Localhost(name.to_string())),
        ("Localhost", None) => Err("localhostProfile must be set when type is Localhost".into()),
        ("RuntimeDefault" | "Unconfined", Some(_)) => {
            Err("localhostProfile can only be set when type is Localhost".into())
        }
        (t, _) => Err(format!(
            "unsupported type {t:?}: RuntimeDefault, Localhost or Unconfined"
        )),
    }
}

fn from_annotation(v: &str) -> Result<Profile, String> {
    match v {
        "runtime/default" => Ok(Profile::RuntimeDefault),
        "unconfined" => Ok(Profile::Unconfined),
        _ => match v.strip_prefix("localhost/") {
            Some(name) if !name.is_empty() => Ok(Profile::Localhost(name.to_string())),
            _ => Err(format!(
                "invalid AppArmor profile name: {v:?} (runtime/default, unconfined or localhost/<name>)"
            )),
        },
    }
}

/// The OCI `process.apparmorProfile` for what was asked.
pub fn oci_profile(
    asked: Option<Profile>,
    privileged: bool,
    host_enabled: bool,
) -> Result<Option<String>, &'static str> {
    match asked {
        None if host_enabled && !privileged => Ok(Some(DEFAULT_PROFILE.into())),
        None | Some(Profile::Unconfined) => Ok(None),
        Some(_) if !host_enabled => Err(NOT_ENABLED),
        Some(Profile::RuntimeDefault) if privileged => Ok(None),
        Some(Profile::RuntimeDefault) => Ok(Some(DEFAULT_PROFILE.into())),
        Some(Profile::Localhost(name)) => Ok(Some(name)),
    }
}

/// Whether the kernel enforces AppArmor (the check runc and the kubelet make).
pub fn host_enabled() -> bool {
    std::fs::read_to_string(ENABLED).is_ok_and(|v| v.trim() == "Y")
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("apparmor_parser failed loading {DEFAULT_PROFILE}: {0}")]
    Parser(String),
}

/// Whether the kernel has a profile of that name loaded.
pub fn loaded(profiles: &str, name: &str) -> bool {
    profiles.lines().any(|l| {
        l.strip_suffix(')')
            .and_then(|l| l.rsplit_once(" ("))
            .is_some_and(|(n, _)| n == name)
    })
}

/// Loads [`DEFAULT_PROFILE`] with `apparmor_parser` unless the kernel has it; true when
/// it was loaded now. Only on a host with AppArmor.
pub fn ensure_default_loaded() -> Result<bool, LoadError> {
    let profiles = std::fs::read_to_string(LOADED).map_err(|source| LoadError::Io {
        path: LOADED.into(),
        source,
    })?;
    if loaded(&profiles, DEFAULT_PROFILE) {
        return Ok(false);
    }
    use std::io::Write;
    use std::process::{Command, Stdio};
    // -K: no cache files written; -r: replace. The text comes on stdin, as containerd
    // loads its generated profile.
    let mut child = Command::new("apparmor_parser")
        .args(["-Kr"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LoadError::Io {
            path: "apparmor_parser".into(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(DEFAULT_PROFILE_TEXT.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| LoadError::Io {
        path: "apparmor_parser".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(LoadError::Parser(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &str, pod_profile: &str, c_profile: &str) -> Pod {
        serde_yaml::from_str(&format!(
            "metadata: {{name: p, annotations: {{{annotations}}}}}\nspec:\n  securityContext: {{{pod_profile}}}\n  containers:\n  - name: c\n    securityContext: {{{c_profile}}}\n"
        ))
        .unwrap()
    }

    fn asked(
        annotations: &str,
        pod_profile: &str,
        c_profile: &str,
    ) -> Result<Option<Profile>, String> {
        let p = pod(annotations, pod_profile, c_profile);
        let c = &p.spec.as_ref().unwrap().containers[0];
        requested(&p, c).map_err(|e| e.to_string())
    }

    const ANN_LOCAL: &str = "container.apparmor.security.beta.kubernetes.io/c: localhost/ann";
    const POD_UNCONFINED: &str = "appArmorProfile: {type: Unconfined}";
    const C_LOCAL: &str = "appArmorProfile: {type: Localhost, localhostProfile: mine}";

    #[test]
    fn the_kubelets_precedence() {
        let local = |n: &str| Ok(Some(Profile::Localhost(n.into())));
        assert_eq!(asked(ANN_LOCAL, POD_UNCONFINED, C_LOCAL), local("mine"));
        assert_eq!(asked(ANN_LOCAL, POD_UNCONFINED, ""), local("ann"));
        assert_eq!(asked("", POD_UNCONFINED, ""), Ok(Some(Profile::Unconfined)));
        assert_eq!(asked("", "", ""), Ok(None));
        // Another container's annotation is not this one's.
        let other = "container.apparmor.security.beta.kubernetes.io/d: unconfined";
        assert_eq!(asked(other, "", ""), Ok(None));
        let ann = |v: &str| {
            asked(
                &format!("container.apparmor.security.beta.kubernetes.io/c: {v}"),
                "",
                "",
            )
        };
        assert_eq!(ann("runtime/default"), Ok(Some(Profile::RuntimeDefault)));
        assert_eq!(ann("unconfined"), Ok(Some(Profile::Unconfined)));
    }

    #[test]
    fn malformed_profiles_name_their_field() {
        let e = asked("", "", "appArmorProfile: {type: Localhost}").unwrap_err();
        assert!(
            e.contains("securityContext.appArmorProfile: localhostProfile must be set"),
            "{e}"
        );
        let e = asked(
            "",
            "appArmorProfile: {type: RuntimeDefault, localhostProfile: x}",
            "",
        )
        .unwrap_err();
        assert!(
            e.contains("spec.securityContext.appArmorProfile: localhostProfile can only"),
            "{e}"
        );
        let e = asked("", "", "appArmorProfile: {type: Strict}").unwrap_err();
        assert!(e.contains("unsupported type \"Strict\""), "{e}");
        let e = asked(
            "container.apparmor.security.beta.kubernetes.io/c: localhost/",
            "",
            "",
        )
        .unwrap_err();
        assert!(e.contains("metadata.annotations[container.apparmor.security.beta.kubernetes.io/c]: invalid AppArmor profile name"), "{e}");
    }

    #[test]
    fn oci_profile_on_hosts_with_and_without_apparmor() {
        let local = Some(Profile::Localhost("deny-write".into()));
        let d = Some(DEFAULT_PROFILE.to_string());
        // With AppArmor: containerd's defaults.
        assert_eq!(oci_profile(None, false, true), Ok(d.clone()));
        assert_eq!(oci_profile(None, true, true), Ok(None));
        assert_eq!(
            oci_profile(Some(Profile::RuntimeDefault), false, true),
            Ok(d)
        );
        assert_eq!(
            oci_profile(Some(Profile::RuntimeDefault), true, true),
            Ok(None)
        );
        assert_eq!(
            oci_profile(Some(Profile::Unconfined), false, true),
            Ok(None)
        );
        assert_eq!(
            oci_profile(local.clone(), true, true),
            Ok(Some("deny-write".into()))
        );
        // Without: nothing unless asked; asking is refused as the kubelet's admission does.
        assert_eq!(oci_profile(None, false, false), Ok(None));
        assert_eq!(
            oci_profile(Some(Profile::Unconfined), false, false),
            Ok(None)
        );
        assert_eq!(oci_profile(local, false, false), Err(NOT_ENABLED));
        assert_eq!(
            oci_profile(Some(Profile::RuntimeDefault), false, false),
            Err(NOT_ENABLED)
        );
    }

    #[test]
    fn loaded_profiles_are_read_from_the_kernels_list() {
        let list =
            "hostlet-default (enforce)\n/usr/bin/man (enforce)\nhostlet-default-x (complain)\n";
        assert!(loaded(list, DEFAULT_PROFILE));
        assert!(loaded(list, "/usr/bin/man"));
        assert!(!loaded(list, "hostlet"));
        assert!(!loaded("", DEFAULT_PROFILE));
        assert!(DEFAULT_PROFILE_TEXT.contains("profile hostlet-default flags="));
    }
}
