//! `spec.volumes`: names, one source each, the sources hostlet supports checked and the
//! API-backed ones refused.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

use super::container::quantity;
use super::one_of;
use crate::manifest::field_error::FieldError;
use crate::manifest::keys::{self, is_dns1123_label};
use crate::manifest::quantity::parse_memory_bytes;
use crate::manifest::support::{self, check_fields};

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];
/// Volume sources that are references to API objects, and the resource each one names.
const API_VOLUME_SOURCES: &[(&str, &str)] = &[
    ("persistentVolumeClaim", "persistentvolumeclaims"),
    ("ephemeral", "persistentvolumeclaims"),
    ("csi", "csidrivers"),
];
const API_PROJECTIONS: &[(&str, &str)] = &[
    ("serviceAccountToken", "serviceaccounts"),
    ("clusterTrustBundle", "clustertrustbundles"),
    ("podCertificate", "podcertificaterequests"),
];

/// Checks `spec.volumes` and returns the volume names.
pub(super) fn validate_volumes(
    spec: &PodSpec,
    value: &Value,
    errors: &mut Vec<FieldError>,
) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if volume.name.is_empty() {
            errors.push(FieldError::new(format!("{path}.name"), "required"));
        } else if !is_dns1123_label(&volume.name) {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!("{:?} must be a lowercase RFC 1123 label", volume.name),
            ));
        } else if !names.insert(volume.name.clone()) {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!("duplicate volume name {:?}", volume.name),
            ));
        }

        let Some(obj) = value["volumes"][i].as_object() else {
            continue;
        };
        let sources: Vec<(&String, &Value)> = obj
            .iter()
            .filter(|(k, v)| *k != "name" && !v.is_null())
            .collect();
        if sources.len() > 1 {
            errors.push(FieldError::new(
                path.clone(),
                "may not specify more than one volume type",
            ));
        }
        for (kind, source) in sources {
            volume_source(volume, kind, source, &format!("{path}.{kind}"), errors);
        }
    }
    names
}

/// One source of a volume: the kinds hostlet supports, checked; API-backed and other
/// kinds refused.
fn volume_source(
    volume: &k8s_openapi::api::core::v1::Volume,
    kind: &str,
    source: &Value,
    spath: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some((_, resource)) = API_VOLUME_SOURCES.iter().find(|(k, _)| *k == kind) {
        errors.push(FieldError::api_reference(spath, resource));
    } else if kind == "projected" {
        let before = errors.len();
        for (k, projection) in source["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (pkind, resource) in API_PROJECTIONS {
                if projection.get(*pkind).is_some_and(|v| !v.is_null()) {
                    errors.push(FieldError::api_reference(
                        format!("{spath}.sources[{k}].{pkind}"),
                        resource,
                    ));
                }
            }
        }
        let only_downward = source["sources"].as_array().is_some_and(|a| {
            a.iter().all(|p| {
                p.as_object().is_some_and(|o| {
                    o.iter().all(|(k, v)| {
                        matches!(k.as_str(), "downwardAPI" | "configMap" | "secret") || v.is_null()
                    })
                })
            })
        });
        let projected = volume.projected.as_ref();
        for (k, p) in projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .enumerate()
        {
            let at = format!("{spath}.sources[{k}]");
            if let Some(cm) = &p.config_map {
                key_items(
                    &cm.name,
                    cm.items.as_deref(),
                    &format!("{at}.configMap"),
                    errors,
                );
            }
            if let Some(s) = &p.secret {
                key_items(&s.name, s.items.as_deref(), &format!("{at}.secret"), errors);
            }
        }
        if let Some(m) = projected.and_then(|p| p.default_mode) {
            file_mode(m, &format!("{spath}.defaultMode"), errors);
        }
        if errors.len() == before && !only_downward {
            errors.push(FieldError::unsupported(spath));
        }
    } else if kind == "downwardAPI" {
        // Items are checked when the pod's volumes are prepared.
    } else if kind == "configMap" {
        let cm = volume.config_map.as_ref();
        let items = cm.and_then(|c| c.items.as_deref());
        key_items(cm.map_or("", |c| &c.name), items, spath, errors);
        if let Some(m) = cm.and_then(|c| c.default_mode) {
            file_mode(m, &format!("{spath}.defaultMode"), errors);
        }
    } else if kind == "secret" {
        let s = volume.secret.as_ref();
        let name = s.and_then(|s| s.secret_name.as_deref()).unwrap_or_default();
        key_items(name, s.and_then(|s| s.items.as_deref()), spath, errors);
        if name.is_empty() {
            errors.push(FieldError::new(format!("{spath}.secretName"), "required"));
        }
        if let Some(m) = s.and_then(|s| s.default_mode) {
            file_mode(m, &format!("{spath}.defaultMode"), errors);
        }
    } else if kind == "hostPath" {
        check_fields(source, spath, support::HOST_PATH, errors);
        let hp = volume.host_path.as_ref();
        let p = hp.map(|h| h.path.as_str()).unwrap_or_default();
        if !p.starts_with('/') {
            errors.push(FieldError::new(
                format!("{spath}.path"),
                "must be an absolute path",
            ));
        }
        one_of(
            hp.and_then(|h| h.type_.as_deref()),
            &format!("{spath}.type"),
            HOST_PATH_TYPES,
            errors,
        );
    } else if kind == "emptyDir" {
        check_fields(source, spath, support::EMPTY_DIR, errors);
        let ed = volume.empty_dir.as_ref();
        match ed.and_then(|e| e.medium.as_deref()) {
            None | Some("") | Some("Memory") => {}
            Some(_) => errors.push(FieldError::unsupported(format!("{spath}.medium"))),
        }
        if let Some(q) = ed.and_then(|e| e.size_limit.as_ref()) {
            quantity(q, &format!("{spath}.sizeLimit"), parse_memory_bytes, errors);
        }
    } else if kind == "image" {
        check_fields(source, spath, support::IMAGE_VOLUME, errors);
        let image = volume.image.as_ref();
        if image
            .and_then(|i| i.reference.as_deref())
            .unwrap_or("")
            .is_empty()
        {
            errors.push(FieldError::new(format!("{spath}.reference"), "required"));
        }
        one_of(
            image.and_then(|i| i.pull_policy.as_deref()),
            &format!("{spath}.pullPolicy"),
            &["Always", "IfNotPresent", "Never"],
            errors,
        );
    } else {
        debug_assert!(!support::VOLUME_SOURCES.contains(&kind));
        errors.push(FieldError::unsupported(spath));
    }
}

/// The object name and the `items` of a configMap or secret volume (or projection).
fn key_items(
    name: &str,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    spath: &str,
    errors: &mut Vec<FieldError>,
) {
    if name.is_empty() && !spath.ends_with(".secret") {
        errors.push(FieldError::new(format!("{spath}.name"), "required"));
    }
    for (k, item) in items.into_iter().flatten().enumerate() {
        let at = format!("{spath}.items[{k}]");
        if !keys::is_valid_key(&item.key) {
            errors.push(FieldError::new(format!("{at}.key"), "not a valid key"));
        }
        let p = std::path::Path::new(&item.path);
        let bad = item.path.is_empty()
            || p.is_absolute()
            || item.path.starts_with("..")
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        if bad {
            errors.push(FieldError::new(
                format!("{at}.path"),
                "must be a relative path without '..' and not starting with '..'",
            ));
        }
        if let Some(m) = item.mode {
            file_mode(m, &format!("{at}.mode"), errors);
        }
    }
}

fn file_mode(mode: i32, field: &str, errors: &mut Vec<FieldError>) {
    if !(0..=0o777).contains(&mode) {
        errors.push(FieldError::new(
            field,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}
