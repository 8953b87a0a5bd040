//! ConfigMaps and Secrets declared beside the pods, one object per manifest file (hostlet's
//! extension: the kubelet refuses references to them in static pods, having no API server
//! to hold them). Decoding, the kubelet's checks on keys, types and sizes, and the set of
//! objects pods look their references up in.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;

use super::field_error::FieldError;
pub use super::keys::is_valid_key;
use super::keys::{is_dns1123_label, is_dns1123_subdomain};
use super::{typed, unknown, ManifestError, Origin};

/// What output shows in place of a secret value.
pub const REDACTED: &str = "<redacted>";

/// The API server's limit on the data of one ConfigMap or Secret.
pub const MAX_OBJECT_DATA: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Secret => "Secret",
        }
    }
    /// The lower-case name the kubelet's "not found" messages use.
    pub fn resource(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmap",
            Self::Secret => "secret",
        }
    }
}

/// A decoded ConfigMap or Secret. `Debug` shows keys and sizes only: values never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigObject {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    /// A Secret's type (`Opaque` by default); empty for a ConfigMap.
    pub type_: String,
    pub immutable: bool,
    /// `data` and `binaryData` of a ConfigMap; `data` with `stringData` merged over it for a
    /// Secret (as the API server does).
    pub data: BTreeMap<String, Vec<u8>>,
    pub source: Origin,
}

impl fmt::Debug for ConfigObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: BTreeMap<&str, usize> = self
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect();
        f.debug_struct("ConfigObject")
            .field("kind", &self.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("type", &self.type_)
            .field("immutable", &self.immutable)
            .field("sizes", &sizes)
            .field("source", &self.source)
            .finish()
    }
}

impl ConfigObject {
    /// `namespace/name`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    /// What two declarations of the same object are compared on (for `immutable`).
    pub fn same_content(&self, other: &Self) -> bool {
        self.data == other.data && self.type_ == other.type_ && self.immutable == other.immutable
    }
    pub fn is_secret(&self) -> bool {
        self.kind == ObjectKind::Secret
    }
}

/// A decoded object and the unknown fields tolerated in it (without `--strict`).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedObject {
    pub object: ConfigObject,
    pub warnings: Vec<FieldError>,
}

/// The kind of a generic document, when it is a ConfigMap or a Secret.
pub fn kind_of(value: &Value) -> Option<ObjectKind> {
    match value.get("kind").and_then(Value::as_str) {
        Some("ConfigMap") => Some(ObjectKind::ConfigMap),
        Some("Secret") => Some(ObjectKind::Secret),
        _ => None,
    }
}

/// Decodes and checks one ConfigMap or Secret (`value` is `bytes` parsed).
pub fn decode(
    origin: &Origin,
    kind: ObjectKind,
    value: Value,
    bytes: &[u8],
    is_json: bool,
    strict: bool,
) -> Result<DecodedObject, ManifestError> {
    let path = origin.error_path();
    let invalid = |errors| ManifestError::Invalid {
        path: path.clone(),
        errors,
    };
    match value.get("apiVersion") {
        Some(Value::String(v)) if v == "v1" => {}
        Some(_) => return Err(invalid(vec![FieldError::new("apiVersion", "must be v1")])),
        None => {
            return Err(invalid(vec![FieldError::new(
                "apiVersion",
                "required (expected v1)",
            )]))
        }
    }
    let (meta, type_, immutable, data, mut errors, typed_value) = match kind {
        ObjectKind::ConfigMap => {
            let cm: ConfigMap = typed(&path, bytes, &value, is_json)?;
            let typed_value = serde_json::to_value(&cm).unwrap_or_default();
            let (data, errors) = config_map_data(&cm);
            (
                cm.metadata,
                String::new(),
                cm.immutable,
                data,
                errors,
                typed_value,
            )
        }
        ObjectKind::Secret => {
            // serde quotes the offending value: never in a Secret's errors.
            let s: Secret = typed(&path, bytes, &value, is_json).map_err(hide_value)?;
            let typed_value = serde_json::to_value(&s).unwrap_or_default();
            let (data, type_, errors) = secret_data(&s);
            (s.metadata, type_, s.immutable, data, errors, typed_value)
        }
    };
    let name = meta.name.clone().unwrap_or_default();
    if name.is_empty() {
        errors.push(FieldError::new("metadata.name", "required"));
    } else if !is_dns1123_subdomain(&name) {
        errors.push(FieldError::new(
            "metadata.name",
            format!("{name:?} must be a lowercase RFC 1123 subdomain"),
        ));
    }
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    if !is_dns1123_label(&namespace) {
        errors.push(FieldError::new(
            "metadata.namespace",
            format!("{namespace:?} must be a lowercase RFC 1123 label"),
        ));
    }
    let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_OBJECT_DATA {
        errors.push(FieldError::new(
            "data",
            format!("{size} bytes of data: must be at most 1 MiB"),
        ));
    }
    let warnings = unknown::unknown_fields(&value, &typed_value);
    if strict {
        errors.extend(warnings.iter().cloned());
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(DecodedObject {
        object: ConfigObject {
            kind,
            namespace,
            name,
            type_,
            immutable: immutable.unwrap_or(false),
            data,
            source: origin.clone(),
        },
        warnings,
    })
}

fn hide_value(e: ManifestError) -> ManifestError {
    match e {
        ManifestError::Syntax {
            path,
            line,
            column,
            field,
            ..
        } => {
            let what = "invalid value (not shown: it may be secret); data values are base64";
            let message = match &field {
                Some(f) => format!("{f}: {what}"),
                None => what.to_string(),
            };
            ManifestError::Syntax {
                path,
                line,
                column,
                field,
                message,
            }
        }
        other => other,
    }
}

fn config_map_data(cm: &ConfigMap) -> (BTreeMap<String, Vec<u8>>, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut data = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        check_key("data", k, &mut errors);
        data.insert(k.clone(), v.as_bytes().to_vec());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        check_key("binaryData", k, &mut errors);
        if data.insert(k.clone(), v.0.clone()).is_some() {
            errors.push(FieldError::new(
                format!("binaryData[{k}]"),
                "duplicate of a key in data",
            ));
        }
    }
    (data, errors)
}

fn secret_data(s: &Secret) -> (BTreeMap<String, Vec<u8>>, String, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut data = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        check_key("data", k, &mut errors);
        data.insert(k.clone(), v.0.clone());
    }
    for (k, v) in s.string_data.iter().flatten() {
        check_key("stringData", k, &mut errors);
        data.insert(k.clone(), v.as_bytes().to_vec());
    }
    let type_ = s
        .type_
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Opaque".into());
    let required: &[&str] = match type_.as_str() {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/service-account-token" => {
            errors.push(FieldError::new(
                "type",
                "service account token secrets need an API server",
            ));
            &[]
        }
        _ => &[],
    };
    for key in required {
        if !data.contains_key(*key) {
            errors.push(FieldError::new(
                "data",
                format!("type {type_} requires the key {key:?}"),
            ));
        }
    }
    for key in [".dockerconfigjson", ".dockercfg"] {
        if type_.ends_with(key.trim_start_matches('.')) {
            if let Some(v) = data.get(key) {
                if serde_json::from_slice::<Value>(v).is_err() {
                    errors.push(FieldError::new(
                        format!("data[{key}]"),
                        "must be valid JSON",
                    ));
                }
            }
        }
    }
    (data, type_, errors)
}

fn check_key(field: &str, key: &str, errors: &mut Vec<FieldError>) {
    if !is_valid_key(key) {
        errors.push(FieldError::new(
            format!("{field}[{key}]"),
            "a key must consist of alphanumeric characters, '-', '_' or '.', at most 253, and not start with '..'",
        ));
    }
}

/// Every ConfigMap and Secret the sources declare, by kind, namespace and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectSet {
    objects: BTreeMap<(ObjectKind, String, String), Arc<ConfigObject>>,
}

impl ObjectSet {
    pub fn new(objects: impl IntoIterator<Item = Arc<ConfigObject>>) -> Self {
        let objects = objects
            .into_iter()
            .map(|o| ((o.kind, o.namespace.clone(), o.name.clone()), o))
            .collect();
        Self { objects }
    }
    pub fn get(&self, kind: ObjectKind, namespace: &str, name: &str) -> Option<&Arc<ConfigObject>> {
        self.objects
            .get(&(kind, namespace.to_string(), name.to_string()))
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ConfigObject>> {
        self.objects.values()
    }
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
    /// The same set with every Secret value replaced by `<redacted>` (for output).
    pub fn redacted(&self) -> Self {
        let objects = self
            .objects
            .iter()
            .map(|(k, o)| {
                if !o.is_secret() {
                    return (k.clone(), o.clone());
                }
                let mut o = (**o).clone();
                for v in o.data.values_mut() {
                    *v = REDACTED.as_bytes().to_vec();
                }
                (k.clone(), Arc::new(o))
            })
            .collect();
        Self { objects }
    }
}

#[cfg(test)]
mod tests;
