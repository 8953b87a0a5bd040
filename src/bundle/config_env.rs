//! Environment variables from ConfigMaps and Secrets (`envFrom`, `configMapKeyRef`,
//! `secretKeyRef`), as the kubelet's makeEnvironmentVariables reads them. Values are
//! taken when the container is created and keep those values until it is created again.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::BundleError;
use crate::manifest::validate::is_env_var_name;
use crate::manifest::{ObjectKind, ObjectSet};

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// The variables of `c`'s `envFrom`, in order (later sources replace earlier names). Keys
/// that are not valid variable names are skipped, as the kubelet does.
pub fn env_from(
    pod: &Pod,
    c: &Container,
    objects: &ObjectSet,
) -> Result<Vec<(String, String)>, BundleError> {
    let ns = namespace(pod);
    let mut out: Vec<(String, String)> = Vec::new();
    for (j, from) in c.env_from.iter().flatten().enumerate() {
        let (kind, name, optional, field) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (ObjectKind::ConfigMap, &r.name, r.optional, "configMapRef"),
            (None, Some(r)) => (ObjectKind::Secret, &r.name, r.optional, "secretRef"),
            (None, None) => continue,
        };
        let Some(obj) = objects.get(kind, ns, name) else {
            if optional.unwrap_or(false) {
                continue;
            }
            return Err(BundleError::field(
                &c.name,
                &format!("envFrom[{j}].{field}"),
                &format!("{} \"{ns}/{name}\" not found", kind.resource()),
            ));
        };
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let mut skipped = Vec::new();
        for (k, v) in &obj.data {
            let var = format!("{prefix}{k}");
            if !is_env_var_name(&var) {
                skipped.push(var);
                continue;
            }
            let value = String::from_utf8_lossy(v).into_owned();
            match out.iter_mut().find(|(n, _)| *n == var) {
                Some(slot) => slot.1 = value,
                None => out.push((var, value)),
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(container = %c.name, object = %format!("{ns}/{name}"), keys = ?skipped,
                "envFrom: keys that are not valid environment variable names were skipped");
        }
    }
    Ok(out)
}

/// One `configMapKeyRef` or `secretKeyRef`, and its field (`env[i].valueFrom...`).
pub struct KeyRef<'a> {
    pub kind: ObjectKind,
    pub name: &'a str,
    pub key: &'a str,
    pub optional: Option<bool>,
    pub field: String,
}

/// The value of a `configMapKeyRef` or `secretKeyRef`; `None` when it is optional and
/// missing (the variable is then not set).
pub fn key_ref(
    pod: &Pod,
    c: &Container,
    r: &KeyRef,
    objects: &ObjectSet,
) -> Result<Option<String>, BundleError> {
    let ns = namespace(pod);
    let KeyRef {
        kind,
        name,
        key,
        field,
        ..
    } = r;
    let kind = *kind;
    let optional = r.optional.unwrap_or(false);
    let missing = |message: String| {
        if optional {
            Ok(None)
        } else {
            Err(BundleError::field(&c.name, field, &message))
        }
    };
    let Some(obj) = objects.get(kind, ns, name) else {
        return missing(format!("{} \"{ns}/{name}\" not found", kind.resource()));
    };
    match obj.data.get(*key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None => missing(format!(
            "couldn't find key {key} in {} {ns}/{name}",
            kind.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use crate::manifest::{decode_manifest, Manifest, Origin};
    use crate::node::NodeInfo;

    fn object(text: &str) -> Arc<crate::manifest::ConfigObject> {
        let origin = Origin::File(PathBuf::from("/m/o.yaml"));
        match decode_manifest(&origin, text.as_bytes(), "n", false).unwrap() {
            Manifest::Object(o) => Arc::new(o.object),
            Manifest::Pod(_) => panic!("a pod"),
        }
    }

    fn env(container: &str, objects: &super::ObjectSet) -> Result<Vec<(String, String)>, String> {
        let text = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{container}");
        let pod = crate::manifest::decode(Path::new("/m/p.yaml"), text.as_bytes(), "n")
            .unwrap()
            .pod;
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let node = NodeInfo {
            name: "n".into(),
            host_ip: "127.0.0.1".into(),
            cpu_milli: 1000,
            memory_bytes: 1 << 30,
            seccomp_default: false,
            seccomp_dir: PathBuf::new(),
            pod_max_pids: 0,
            min_oom_score_adj: -1000,
            apparmor: false,
        };
        crate::bundle::process::container_env(&pod, c, &node, objects).map_err(|e| e.to_string())
    }

    #[test]
    fn env_from_then_env_with_key_refs() {
        let set = super::ObjectSet::new([
            object("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {MODE: fast, bad-name: x, LEVEL: '1'}\n"),
            object("apiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData: {pass: pw}\n"),
        ]);
        let got = env(
            "    envFrom:\n    - configMapRef: {name: cfg}\n      prefix: APP_\n    - secretRef: {name: gone, optional: true}\n    env:\n    - {name: APP_MODE, value: slow}\n    - {name: PASS, valueFrom: {secretKeyRef: {name: sec, key: pass}}}\n    - {name: OPT, valueFrom: {configMapKeyRef: {name: cfg, key: nope, optional: true}}}\n    - {name: BOTH, value: '$(PASS)-$(APP_LEVEL)'}\n",
            &set,
        )
        .unwrap();
        let want: Vec<(String, String)> = [
            ("APP_LEVEL", "1"),
            ("APP_MODE", "slow"),
            ("APP_bad-name", "x"),
            ("PASS", "pw"),
            ("BOTH", "pw-1"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn missing_references_name_object_and_key() {
        let set = super::ObjectSet::new([object(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n",
        )]);
        let e = env("    envFrom:\n    - secretRef: {name: sec}\n", &set).unwrap_err();
        assert!(
            e.contains("envFrom[0].secretRef: secret \"default/sec\" not found"),
            "{e}"
        );
        let e = env(
            "    env:\n    - {name: A, valueFrom: {configMapKeyRef: {name: cfg, key: k}}}\n",
            &set,
        )
        .unwrap_err();
        assert!(
            e.contains("couldn't find key k in ConfigMap default/cfg"),
            "{e}"
        );
    }
}
