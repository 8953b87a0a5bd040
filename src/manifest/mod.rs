//! Decoding, defaulting, naming and hashing of static pod manifests (pure: bytes in, pod out).
//!
//! The pipeline is: syntax (YAML or JSON) → kind/apiVersion check → typed `Pod` →
//! [`validate::validate`] → UID from the pod as written → defaults (as the kubelet's
//! `pkg/kubelet/config/common.go` applyDefaults). Which pod fields hostlet implements lives in
//! [`support`].

mod defaults;
mod depth;
mod field_error;
mod flow;
mod jsonpath;
pub mod keys;
pub mod locate;
pub mod object;
mod parse;
pub mod pod_resources;
pub mod quantity;
pub mod refs;
pub mod resize_policy;
pub mod restart_rules;
pub mod support;
mod unknown;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

pub use field_error::FieldError;
pub use locate::{locate, locate_or_start, Diagnostic};
pub use object::{ConfigObject, DecodedObject, ObjectKind, ObjectSet};
pub use unknown::UNKNOWN_FIELD;
pub use validate::validate;

pub use defaults::default_pull_policy;
use defaults::{apply_defaults, content_uid};
use parse::{parse_value, typed};

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
    /// The manifest file or URL the pod came from.
    pub source: Origin,
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
    #[error("{}: kind {kind:?} is not supported: a manifest file holds exactly one v1 Pod, ConfigMap or Secret", path.display())]
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

    /// Every problem, located in the manifest's `bytes` where possible.
    pub fn diagnostics(&self, bytes: &[u8]) -> Vec<Diagnostic> {
        let text = String::from_utf8_lossy(bytes);
        match self {
            Self::Syntax {
                line,
                column,
                message,
                ..
            } => {
                let (l, c) = match line {
                    Some(l) => (*l, column.unwrap_or(1)),
                    None => locate_or_start(&text, ""),
                };
                vec![Diagnostic {
                    line: Some(l),
                    column: Some(c),
                    field: None,
                    message: message.clone(),
                }]
            }
            Self::Invalid { errors, .. } => errors
                .iter()
                .map(|e| Diagnostic::for_field(&text, e))
                .collect(),
            Self::Kind { path, .. } | Self::ApiVersion { path, .. } => {
                let field = self.field().unwrap_or_default();
                let (line, column) = locate_or_start(&text, field);
                let full = self.to_string();
                let prefix = format!("{}: ", path.display());
                vec![Diagnostic {
                    line: Some(line),
                    column: Some(column),
                    field: None,
                    message: full.strip_prefix(&prefix).unwrap_or(&full).to_string(),
                }]
            }
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

/// Where a manifest came from: its file, or the URL of `--manifest-url`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    File(PathBuf),
    Url(String),
}

impl Default for Origin {
    fn default() -> Self {
        Self::File(PathBuf::new())
    }
}

impl Origin {
    /// The `kubernetes.io/config.source` annotation, as the kubelet sets it.
    pub fn config_source(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Url(_) => "http",
        }
    }

    /// How errors name the origin (they carry a path: a URL is kept as written).
    pub fn error_path(&self) -> PathBuf {
        match self {
            Self::File(p) => p.clone(),
            Self::Url(u) => PathBuf::from(u),
        }
    }

    fn hash_input(&self) -> String {
        match self {
            Self::File(p) => format!("file:{}", p.display()),
            Self::Url(u) => format!("url:{u}"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Url(u) => f.write_str(u),
        }
    }
}

/// A decoded pod and what was tolerated in it: unknown fields, when not `strict`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub pod: StaticPod,
    pub warnings: Vec<FieldError>,
}

/// Decodes one manifest file's bytes (YAML or JSON) into a defaulted static pod for `node`;
/// unknown fields are tolerated.
pub fn decode(path: &Path, bytes: &[u8], node: &str) -> Result<StaticPod, ManifestError> {
    decode_with_origin(&Origin::File(path.to_path_buf()), bytes, node, false).map(|d| d.pod)
}

/// Decodes one Pod from `origin`. With `strict`, unknown fields are errors; otherwise they are
/// returned as warnings.
pub fn decode_with_origin(
    origin: &Origin,
    bytes: &[u8],
    node: &str,
    strict: bool,
) -> Result<Decoded, ManifestError> {
    let node = node.to_lowercase();
    let path = origin.error_path();
    let (raw, pod) = parse(&path, bytes, false)?;
    let mut pods = finish(origin, vec![(raw, pod)], &node, strict, "")
        .map_err(|errors| ManifestError::Invalid { path, errors })?;
    Ok(pods.remove(0))
}

/// What one manifest file declares: a pod, or a ConfigMap or Secret its pods may use.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    Pod(Box<Decoded>),
    Object(DecodedObject),
}

/// Decodes one manifest file of the manifest directory: a v1 Pod, ConfigMap or Secret.
pub fn decode_manifest(
    origin: &Origin,
    bytes: &[u8],
    node: &str,
    strict: bool,
) -> Result<Manifest, ManifestError> {
    let path = origin.error_path();
    let (value, is_json) = parse_value(&path, bytes)?;
    match object::kind_of(&value) {
        Some(kind) => {
            object::decode(origin, kind, value, bytes, is_json, strict).map(Manifest::Object)
        }
        None => decode_with_origin(origin, bytes, node, strict).map(|d| Manifest::Pod(Box::new(d))),
    }
}

/// Decodes the body of `--manifest-url`: one Pod or a v1 `PodList` (the kubelet accepts
/// both). One broken item rejects the whole body, so a half-applied list never runs.
pub fn decode_url_body(
    url: &str,
    bytes: &[u8],
    node: &str,
    strict: bool,
) -> Result<Vec<Decoded>, ManifestError> {
    let node = node.to_lowercase();
    let origin = Origin::Url(url.to_string());
    let path = origin.error_path();
    let invalid = |errors| ManifestError::Invalid {
        path: path.clone(),
        errors,
    };
    let (raw, pod) = parse(&path, bytes, true)?;
    if raw.get("kind").and_then(|k| k.as_str()) == Some("Pod") {
        return finish(&origin, vec![(raw, pod)], &node, strict, "").map_err(invalid);
    }
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let list = raw.get("items").and_then(|i| i.as_array());
    for (i, item) in list.into_iter().flatten().enumerate() {
        let mut item = item.clone();
        if let Some(obj) = item.as_object_mut() {
            // Items of a PodList usually omit their kind.
            obj.entry("kind").or_insert("Pod".into());
            obj.entry("apiVersion").or_insert("v1".into());
        }
        // Through bytes rather than `from_value`: one more deserializer of the whole Pod
        // type tree was ~150 KB of the agent's resident code (BENCHMARKS.md row 4a).
        let typed = serde_json::to_vec(&item).and_then(|b| serde_json::from_slice::<Pod>(&b));
        match typed {
            Ok(pod) => items.push((item, pod)),
            Err(e) => {
                // The position is in the re-encoded item, which the user never wrote.
                let msg = e.to_string();
                let msg = msg.rfind(" at line ").map_or(&*msg, |at| &msg[..at]);
                errors.push(FieldError::new(format!("items[{i}]"), msg.to_string()));
            }
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    finish(&origin, items, &node, strict, "items").map_err(invalid)
}

/// Decodes a `--manifest-url` body: one Pod, a v1 `PodList`, or a v1 `List` whose items
/// are Pods, ConfigMaps and Secrets. One broken item rejects the whole body.
pub fn decode_url_objects(
    url: &str,
    bytes: &[u8],
    node: &str,
    strict: bool,
) -> Result<(Vec<Decoded>, Vec<DecodedObject>), ManifestError> {
    let origin = Origin::Url(url.to_string());
    let path = origin.error_path();
    let (value, _) = parse_value(&path, bytes)?;
    if value.get("kind").and_then(|k| k.as_str()) != Some("List") {
        return decode_url_body(url, bytes, node, strict).map(|pods| (pods, Vec::new()));
    }
    let mut pods = Vec::new();
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let list = value.get("items").and_then(|i| i.as_array());
    for (i, item) in list.into_iter().flatten().enumerate() {
        match object::kind_of(item) {
            Some(kind) => {
                let json = serde_json::to_vec(item).unwrap_or_default();
                match object::decode(&origin, kind, item.clone(), &json, true, strict) {
                    Ok(o) => objects.push(o),
                    Err(e) => errors.push(FieldError::new(
                        format!("items[{i}]"),
                        e.to_string()
                            .strip_prefix(&format!("{url}: "))
                            .unwrap_or(&e.to_string())
                            .to_string(),
                    )),
                }
            }
            None => pods.push(item.clone()),
        }
    }
    if !errors.is_empty() {
        return Err(ManifestError::Invalid { path, errors });
    }
    let pod_list = serde_json::json!({"apiVersion": "v1", "kind": "PodList", "items": pods});
    let body = serde_json::to_vec(&pod_list).unwrap_or_default();
    let pods = decode_url_body(url, &body, node, strict)?;
    Ok((pods, objects))
}

/// Validation, unknown fields, UID and defaults for pods already decoded; `prefix` is the
/// field path of a list (`items`), empty for a single pod.
fn finish(
    origin: &Origin,
    pods: Vec<(serde_json::Value, Pod)>,
    node: &str,
    strict: bool,
    prefix: &str,
) -> Result<Vec<Decoded>, Vec<FieldError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, (raw, pod)) in pods.into_iter().enumerate() {
        let at = |e: FieldError| match prefix {
            "" => e,
            p if e.field.is_empty() => FieldError::new(format!("{p}[{i}]"), e.message),
            p => FieldError::new(format!("{p}[{i}].{}", e.field), e.message),
        };
        let typed = serde_json::to_value(&pod).unwrap_or_default();
        let unknown = unknown::unknown_fields(&raw, &typed);
        let mut errs: Vec<_> = validate(&pod, node).into_iter().map(at).collect();
        let warnings: Vec<_> = unknown.into_iter().map(at).collect();
        if strict {
            errs.extend(warnings.iter().cloned());
        }
        if !errs.is_empty() {
            errors.extend(errs);
            continue;
        }
        let uid = match pod.metadata.uid.as_deref() {
            Some(uid) if !uid.is_empty() => uid.to_string(),
            _ => content_uid(&pod, node, origin),
        };
        let pod = apply_defaults(pod, &uid, node, origin.config_source());
        out.push(Decoded {
            pod: StaticPod {
                pod,
                uid,
                source: origin.clone(),
            },
            warnings,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Syntax, kind and typed decoding; no semantic checks. Returns the document as written too.
fn parse(
    path: &Path,
    bytes: &[u8],
    allow_list: bool,
) -> Result<(serde_json::Value, Pod), ManifestError> {
    // A generic parse first, so a wrong kind is reported as such rather than as whatever field
    // of a Pod the other kind happens to lack.
    let (value, is_json) = parse_value(path, bytes)?;
    let invalid = |field: &str, message: &str| ManifestError::Invalid {
        path: path.to_path_buf(),
        errors: vec![FieldError::new(field, message)],
    };
    let obj = match &value {
        serde_json::Value::Object(obj) => obj,
        serde_json::Value::Null => return Err(invalid("", "manifest is empty")),
        _ => return Err(invalid("", "manifest must be a mapping holding one v1 Pod")),
    };
    let is_list = match obj.get("kind") {
        Some(serde_json::Value::String(k)) if k == "Pod" => false,
        Some(serde_json::Value::String(k)) if k == "PodList" && allow_list => true,
        Some(serde_json::Value::String(k)) => {
            return Err(ManifestError::Kind {
                path: path.to_path_buf(),
                kind: k.clone(),
            })
        }
        Some(_) => return Err(invalid("kind", "must be a string")),
        None => return Err(invalid("kind", "required (expected Pod)")),
    };
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
    if is_list {
        if !obj
            .get("items")
            .is_some_and(|i| i.is_array() || i.is_null())
        {
            return Err(invalid("items", "must be a list of pods"));
        }
        return Ok((value, Pod::default()));
    }
    // Typed decoding goes through serde_json only: a second typed deserializer (serde_yaml's)
    // was all of the Pod type tree again in code (see `jsonpath`). JSON is decoded from
    // its own bytes, so errors keep their positions; YAML from its value written as JSON,
    // so YAML scalars keep the types YAML gave them, as the kubelet's YAML-to-JSON step does
    // (`args: [-c, true]` is a boolean where a string belongs).
    let pod = typed(path, bytes, &value, is_json)?;
    Ok((value, pod))
}

#[cfg(test)]
mod tests;
