//! What a pod references among the ConfigMaps and Secrets: volumes (and projected sources),
//! env `configMapKeyRef`/`secretKeyRef`, `envFrom`; and which of those
//! references cannot be satisfied, with the kubelet's messages.

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod};

use super::object::{ObjectKind, ObjectSet};
use super::FieldError;

/// One reference of a pod to a ConfigMap or Secret of its own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub kind: ObjectKind,
    pub name: String,
    /// The key needed, when one is (a keyRef or a volume item).
    pub key: Option<String>,
    pub optional: bool,
    /// Where the pod makes it, e.g. `spec.containers[0].env[1].valueFrom.secretKeyRef`.
    pub field: String,
}

/// Every reference `pod` makes, in field order.
pub fn references(pod: &Pod) -> Vec<Reference> {
    let mut out = Vec::new();
    let Some(spec) = &pod.spec else {
        return out;
    };
    let mut add = |kind, name: &str, key: Option<&str>, optional: Option<bool>, field: String| {
        out.push(Reference {
            kind,
            name: name.to_string(),
            key: key.map(str::to_string),
            optional: optional.unwrap_or(false),
            field,
        })
    };
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if let Some(cm) = &v.config_map {
            let f = format!("{path}.configMap");
            items(
                ObjectKind::ConfigMap,
                &cm.name,
                cm.items.as_deref(),
                cm.optional,
                &f,
                &mut add,
            );
        }
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let f = format!("{path}.secret");
            items(
                ObjectKind::Secret,
                &name,
                s.items.as_deref(),
                s.optional,
                &f,
                &mut add,
            );
        }
        for (j, src) in v
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .enumerate()
        {
            let f = format!("{path}.projected.sources[{j}]");
            if let Some(cm) = &src.config_map {
                let f = format!("{f}.configMap");
                items(
                    ObjectKind::ConfigMap,
                    &cm.name,
                    cm.items.as_deref(),
                    cm.optional,
                    &f,
                    &mut add,
                );
            }
            if let Some(s) = &src.secret {
                let f = format!("{f}.secret");
                items(
                    ObjectKind::Secret,
                    &s.name,
                    s.items.as_deref(),
                    s.optional,
                    &f,
                    &mut add,
                );
            }
        }
    }
    let all = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    for (kind, containers) in all {
        for (i, c) in containers.iter().enumerate() {
            container_refs(c, &format!("spec.{kind}[{i}]"), &mut add);
        }
    }
    out
}

type Add<'a> = dyn FnMut(ObjectKind, &str, Option<&str>, Option<bool>, String) + 'a;

fn items(
    kind: ObjectKind,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    field: &str,
    add: &mut Add,
) {
    match items {
        Some(items) if !items.is_empty() => {
            for (k, item) in items.iter().enumerate() {
                add(
                    kind,
                    name,
                    Some(&item.key),
                    optional,
                    format!("{field}.items[{k}]"),
                );
            }
        }
        _ => add(kind, name, None, optional, field.to_string()),
    }
}

fn container_refs(c: &Container, path: &str, add: &mut Add) {
    for (j, from) in c.env_from.iter().flatten().enumerate() {
        if let Some(r) = &from.config_map_ref {
            let f = format!("{path}.envFrom[{j}].configMapRef");
            add(ObjectKind::ConfigMap, &r.name, None, r.optional, f);
        }
        if let Some(r) = &from.secret_ref {
            let f = format!("{path}.envFrom[{j}].secretRef");
            add(ObjectKind::Secret, &r.name, None, r.optional, f);
        }
    }
    for (j, e) in c.env.iter().flatten().enumerate() {
        let Some(from) = &e.value_from else { continue };
        if let Some(r) = &from.config_map_key_ref {
            let f = format!("{path}.env[{j}].valueFrom.configMapKeyRef");
            add(ObjectKind::ConfigMap, &r.name, Some(&r.key), r.optional, f);
        }
        if let Some(r) = &from.secret_key_ref {
            let f = format!("{path}.env[{j}].valueFrom.secretKeyRef");
            add(ObjectKind::Secret, &r.name, Some(&r.key), r.optional, f);
        }
    }
}

/// Why `r` (of a pod in `namespace`) cannot be satisfied from `objects`, in the kubelet's
/// words; `None` when it can, or when it is optional.
pub fn unsatisfied(namespace: &str, r: &Reference, objects: &ObjectSet) -> Option<String> {
    if r.optional {
        return None;
    }
    let Some(obj) = objects.get(r.kind, namespace, &r.name) else {
        return Some(format!(
            "{} \"{namespace}/{}\" not found",
            r.kind.resource(),
            r.name
        ));
    };
    match &r.key {
        Some(key) if !obj.data.contains_key(key) => Some(format!(
            "couldn't find key {key} in {} {namespace}/{}",
            r.kind.as_str(),
            r.name
        )),
        _ => None,
    }
}

/// Every unsatisfied, non-optional reference of `pod`, as field errors.
pub fn check(pod: &Pod, objects: &ObjectSet) -> Vec<FieldError> {
    let namespace = pod
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default");
    references(pod)
        .iter()
        .filter_map(|r| unsatisfied(namespace, r, objects).map(|m| FieldError::new(&r.field, m)))
        .collect()
}

#[cfg(test)]
mod tests;
