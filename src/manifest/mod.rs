//! Decoding, defaulting, naming and hashing of static pod manifests (pure: bytes in, pod out).
//!
//! The pipeline is: syntax (YAML or JSON) → kind/apiVersion check → typed `Pod` →
//! [`validate::validate`] → UID from the pod as written → defaults (as the kubelet's
//! `pkg/kubelet/config/common.go` applyDefaults). Which pod fields hostlet implements lives in
//! [`support`].

pub mod quantity;
pub mod support;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, PodSpec, Volume};
use sha2::{Digest, Sha256};

pub use validate::{validate, FieldError};

pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const CONFIG_SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";

/// A pod as hostlet will run it: defaulted, named `<name>-<node>`, with its UID.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    /// The defaulted pod: `metadata.name` is `<name>-<node>`, `metadata.namespace` is set,
    /// `metadata.uid` is `uid`, `spec.nodeName` is the node, config annotations are set.
    pub pod: Pod,
    pub uid: String,
    /// The manifest file the pod came from.
    pub source: PathBuf,
}

impl StaticPod {
    pub fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or_default()
    }
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }
    /// `namespace/name`: the key under which two pods are "the same pod".
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace(), self.name())
    }
}

/// Why a manifest was rejected. Every variant names the file; `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML/JSON, or a field of the wrong type (`field` is set when serde knows it).
    #[error("{}{}: {message}", path.display(), Location(*line, *column))]
    Syntax {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        field: Option<String>,
        message: String,
    },
    #[error("{}: kind {kind:?} is not supported: a manifest file holds exactly one v1 Pod", path.display())]
    Kind { path: PathBuf, kind: String },
    #[error("{}: apiVersion {api_version:?} is not supported: a Pod must be apiVersion v1", path.display())]
    ApiVersion { path: PathBuf, api_version: String },
    /// The pod is well-formed but breaks a validation rule; every broken rule is listed.
    #[error("{}: {}", path.display(), join(errors))]
    Invalid {
        path: PathBuf,
        errors: Vec<FieldError>,
    },
}

impl ManifestError {
    pub fn path(&self) -> &Path {
        match self {
            Self::Syntax { path, .. }
            | Self::Kind { path, .. }
            | Self::ApiVersion { path, .. }
            | Self::Invalid { path, .. } => path,
        }
    }

    /// The (first) offending field, e.g. `spec.containers[1].name`, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Syntax { field, .. } => field.as_deref(),
            Self::Kind { .. } => Some("kind"),
            Self::ApiVersion { .. } => Some("apiVersion"),
            Self::Invalid { errors, .. } => errors.first().map(|e| e.field.as_str()),
        }
    }
}

struct Location(Option<usize>, Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(l), Some(c)) => write!(f, ":{l}:{c}"),
            (Some(l), None) => write!(f, ":{l}"),
            _ => Ok(()),
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Decodes one manifest file's bytes (YAML or JSON) into a defaulted static pod for `node`.
pub fn decode(path: &Path, bytes: &[u8], node: &str) -> Result<StaticPod, ManifestError> {
    let node = node.to_lowercase();
    let pod = parse(path, bytes)?;
    let errors = validate(&pod, &node);
    if !errors.is_empty() {
        return Err(ManifestError::Invalid {
            path: path.to_path_buf(),
            errors,
        });
    }
    let uid = match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => uid.to_string(),
        _ => content_uid(&pod, &node, path),
    };
    let pod = apply_defaults(pod, &uid, &node);
    Ok(StaticPod {
        pod,
        uid,
        source: path.to_path_buf(),
    })
}

/// Syntax, kind and typed decoding; no semantic checks.
fn parse(path: &Path, bytes: &[u8]) -> Result<Pod, ManifestError> {
    let is_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    // A generic parse first, so a wrong kind is reported as such rather than as whatever field
    // of a Pod the other kind happens to lack.
    let value: serde_json::Value = if is_json {
        serde_json::from_slice(bytes).map_err(|e| json_error(path, &e))?
    } else {
        serde_yaml::from_slice(bytes).map_err(|e| yaml_error(path, &e))?
    };
    let invalid = |field: &str, message: &str| ManifestError::Invalid {
        path: path.to_path_buf(),
        errors: vec![FieldError::new(field, message)],
    };
    let obj = match &value {
        serde_json::Value::Object(obj) => obj,
        serde_json::Value::Null => return Err(invalid("", "manifest is empty")),
        _ => return Err(invalid("", "manifest must be a mapping holding one v1 Pod")),
    };
    match obj.get("kind") {
        Some(serde_json::Value::String(k)) if k == "Pod" => {}
        Some(serde_json::Value::String(k)) => {
            return Err(ManifestError::Kind {
                path: path.to_path_buf(),
                kind: k.clone(),
            })
        }
        Some(_) => return Err(invalid("kind", "must be a string")),
        None => return Err(invalid("kind", "required (expected Pod)")),
    }
    match obj.get("apiVersion") {
        Some(serde_json::Value::String(v)) if v == "v1" => {}
        Some(serde_json::Value::String(v)) => {
            return Err(ManifestError::ApiVersion {
                path: path.to_path_buf(),
                api_version: v.clone(),
            })
        }
        Some(_) => return Err(invalid("apiVersion", "must be a string")),
        None => return Err(invalid("apiVersion", "required (expected v1)")),
    }
    // Typed decoding from the bytes, not from `value`, so type errors keep their line numbers.
    if is_json {
        serde_json::from_slice(bytes).map_err(|e| json_error(path, &e))
    } else {
        serde_yaml::from_slice(bytes).map_err(|e| yaml_error(path, &e))
    }
}

fn yaml_error(path: &Path, e: &serde_yaml::Error) -> ManifestError {
    let loc = e.location();
    let (line, column) = (
        loc.as_ref().map(|l| l.line()),
        loc.as_ref().map(|l| l.column()),
    );
    syntax_error(path, e.to_string(), line, column)
}

fn json_error(path: &Path, e: &serde_json::Error) -> ManifestError {
    let (line, column) = if e.line() == 0 {
        (None, None)
    } else {
        (Some(e.line()), Some(e.column()))
    };
    syntax_error(path, e.to_string(), line, column)
}

fn syntax_error(
    path: &Path,
    mut message: String,
    line: Option<usize>,
    column: Option<usize>,
) -> ManifestError {
    // serde puts the location into its messages; we report it in front, compiler-style.
    if let (Some(l), Some(c)) = (line, column) {
        message = message.replacen(&format!(" at line {l} column {c}"), "", 1);
    }
    // serde_yaml prefixes the field path (`spec.containers[0]: missing field ...`).
    let mut field = None;
    if let Some((prefix, _)) = message.split_once(": ") {
        let looks_like_path = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._[]-".contains(c));
        if looks_like_path {
            field = Some(prefix.to_string());
        }
    }
    ManifestError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        field,
        message,
    }
}

/// The kubelet's static pod UID: a hash of the pod as written plus where it came from, so any
/// content change (but no formatting or comment change) yields a new UID.
fn content_uid(pod: &Pod, node: &str, path: &Path) -> String {
    let mut hasher = Sha256::new();
    // k8s-openapi serializes maps from BTreeMaps and fields in a fixed order: deterministic.
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    hasher.update(format!("host:{node}").as_bytes());
    hasher.update(format!("file:{}", path.display()).as_bytes());
    let mut uid = hex::encode(hasher.finalize());
    uid.truncate(32);
    uid
}

fn apply_defaults(mut pod: Pod, uid: &str, node: &str) -> Pod {
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
    annotations.insert(CONFIG_SOURCE_ANNOTATION.into(), "file".into());

    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.node_name = Some(node.to_string());
    default_str(&mut spec.restart_policy, "Always");
    default_str(&mut spec.dns_policy, "ClusterFirst");
    spec.termination_grace_period_seconds.get_or_insert(30);
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

#[cfg(test)]
mod tests;
