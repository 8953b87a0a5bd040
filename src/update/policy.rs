//! The annotations a pod opts in with: `hostlet.io/auto-update`, `hostlet.io/rollback`
//! and `hostlet.io/rollback-after`.

use std::time::Duration;

use crate::manifest::StaticPod;

pub const AUTO_UPDATE: &str = "hostlet.io/auto-update";
pub const ROLLBACK: &str = "hostlet.io/rollback";
pub const ROLLBACK_AFTER: &str = "hostlet.io/rollback-after";
/// How long a new revision has to become Ready (`hostlet.io/rollback-after`'s default).
pub const ROLLBACK_AFTER_DEFAULT: Duration = Duration::from_secs(300);

/// podman's auto-update policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AutoUpdate {
    /// Re-check the tag's digest at the registry.
    Registry,
    /// Use a newer image of the tag already in the store (`hostlet image import`).
    Local,
}

impl AutoUpdate {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoUpdate::Registry => "registry",
            AutoUpdate::Local => "local",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("pod {pod}: annotation {AUTO_UPDATE}={value:?}: expected registry, local or disabled")]
    AutoUpdate { pod: String, value: String },
    #[error("pod {pod}: annotation {ROLLBACK}={value:?}: expected \"true\" or \"false\"")]
    Rollback { pod: String, value: String },
    #[error(
        "pod {pod}: annotation {ROLLBACK_AFTER}={value:?}: expected a duration like 90s or 5m"
    )]
    RollbackAfter { pod: String, value: String },
}

fn annotation<'a>(pod: &'a StaticPod, key: &str) -> Option<&'a str> {
    pod.pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|v| v.trim())
}

/// The pod's auto-update policy; `None` when it has not opted in.
pub fn auto_update(pod: &StaticPod) -> Result<Option<AutoUpdate>, PolicyError> {
    match annotation(pod, AUTO_UPDATE) {
        None | Some("" | "disabled") => Ok(None),
        Some("registry" | "image") => Ok(Some(AutoUpdate::Registry)),
        Some("local") => Ok(Some(AutoUpdate::Local)),
        Some(v) => Err(PolicyError::AutoUpdate {
            pod: pod.full_name(),
            value: v.to_string(),
        }),
    }
}

/// Whether an edit of the pod's manifest is health-gated (`hostlet.io/rollback: "true"`).
pub fn manifest_rollback(pod: &StaticPod) -> Result<bool, PolicyError> {
    match annotation(pod, ROLLBACK) {
        None | Some("" | "false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(PolicyError::Rollback {
            pod: pod.full_name(),
            value: v.to_string(),
        }),
    }
}

/// How long a new revision of the pod has to become Ready.
pub fn rollback_after(pod: &StaticPod) -> Result<Duration, PolicyError> {
    match annotation(pod, ROLLBACK_AFTER) {
        None | Some("") => Ok(ROLLBACK_AFTER_DEFAULT),
        Some(v) => crate::config::parse_duration(v)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| PolicyError::RollbackAfter {
                pod: pod.full_name(),
                value: v.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pod(annotations: &[(&str, &str)]) -> StaticPod {
        let mut p = StaticPod {
            pod: Default::default(),
            uid: "u1".into(),
            source: Default::default(),
        };
        p.pod.metadata.name = Some("web-node".into());
        p.pod.metadata.namespace = Some("default".into());
        let map: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.pod.metadata.annotations = Some(map);
        p
    }

    #[test]
    fn auto_update_policies() {
        assert_eq!(auto_update(&pod(&[])), Ok(None));
        assert_eq!(
            auto_update(&pod(&[(AUTO_UPDATE, "registry")])),
            Ok(Some(AutoUpdate::Registry))
        );
        assert_eq!(
            auto_update(&pod(&[(AUTO_UPDATE, "local")])),
            Ok(Some(AutoUpdate::Local))
        );
        assert_eq!(auto_update(&pod(&[(AUTO_UPDATE, "disabled")])), Ok(None));
        let e = auto_update(&pod(&[(AUTO_UPDATE, "always")])).unwrap_err();
        assert!(e.to_string().contains("default/web-node"), "{e}");
    }

    #[test]
    fn rollback_annotations() {
        assert_eq!(manifest_rollback(&pod(&[])), Ok(false));
        assert_eq!(manifest_rollback(&pod(&[(ROLLBACK, "true")])), Ok(true));
        assert!(manifest_rollback(&pod(&[(ROLLBACK, "yes")])).is_err());
        assert_eq!(rollback_after(&pod(&[])), Ok(ROLLBACK_AFTER_DEFAULT));
        assert_eq!(
            rollback_after(&pod(&[(ROLLBACK_AFTER, "90s")])),
            Ok(Duration::from_secs(90))
        );
        assert!(rollback_after(&pod(&[(ROLLBACK_AFTER, "0")])).is_err());
        assert!(rollback_after(&pod(&[(ROLLBACK_AFTER, "soon")])).is_err());
    }
}
