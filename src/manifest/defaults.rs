//! The kubelet's defaulting of a static pod (pkg/kubelet/config/common.go applyDefaults)
//! and the API server's defaults hostlet applies in its place.

use k8s_openapi::api::core::v1::{Pod, PodSpec, Volume};
use sha2::{Digest, Sha256};

use super::{pod_resources, Origin, CONFIG_HASH_ANNOTATION, CONFIG_SOURCE_ANNOTATION};

/// The kubelet's static pod UID: a hash of the pod as written plus where it came from, so any
/// content change (but no formatting or comment change) yields a new UID.
pub(super) fn content_uid(pod: &Pod, node: &str, origin: &Origin) -> String {
    let mut hasher = Sha256::new();
    // k8s-openapi serializes maps from BTreeMaps and fields in a fixed order: deterministic.
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    hasher.update(format!("host:{node}").as_bytes());
    hasher.update(origin.hash_input().as_bytes());
    let mut uid = hex::encode(hasher.finalize());
    uid.truncate(32);
    uid
}

pub(super) fn apply_defaults(mut pod: Pod, uid: &str, node: &str, config_source: &str) -> Pod {
    let meta = &mut pod.metadata;
    meta.name = Some(format!(
        "{}-{node}",
        meta.name.as_deref().unwrap_or_default()
    ));
    if meta.namespace.as_deref().unwrap_or_default().is_empty() {
        meta.namespace = Some("default".into());
    }
    meta.uid = Some(uid.to_string());
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), uid.to_string());
    annotations.insert(CONFIG_SOURCE_ANNOTATION.into(), config_source.into());

    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.node_name = Some(node.to_string());
    default_str(&mut spec.restart_policy, "Always");
    default_str(&mut spec.dns_policy, "ClusterFirst");
    spec.termination_grace_period_seconds.get_or_insert(30);
    pod_resources::default(spec);
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
    for c in spec.containers.iter_mut() {
        let policy = default_pull_policy(c.image.as_deref().unwrap_or_default());
        default_str(&mut c.image_pull_policy, policy);
        default_str(&mut c.termination_message_path, "/dev/termination-log");
        default_str(&mut c.termination_message_policy, "File");
        for port in c.ports.iter_mut().flatten() {
            default_str(&mut port.protocol, "TCP");
        }
    }
    pod
}

fn default_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or_default().is_empty() {
        *field = Some(value.to_string());
    }
}

/// The API server turns a volume without a source into an emptyDir; do the same so later code
/// sees exactly one source.
fn default_volume(volume: &mut Volume) {
    let has_source = serde_json::to_value(&*volume)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.keys().any(|k| k != "name")))
        .unwrap_or(true);
    if !has_source {
        volume.empty_dir = Some(Default::default());
    }
}

/// `Always` for `:latest` or no tag, `IfNotPresent` otherwise (a digest counts as pinned).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() && tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}
