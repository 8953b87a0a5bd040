//! A pod's imagePullSecrets as a keyring for its pulls (hostlet's extension: the kubelet
//! refuses them in static pods). As the kubelet's MakeDockerKeyring: only Secrets of type
//! `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg` count, and a missing or
//! unusable one is logged and the pull goes on without it.

use crate::image::Keyring;
use crate::manifest::{ObjectKind, ObjectSet, StaticPod};

/// The credentials of `pod`'s imagePullSecrets, in the order it names them.
pub(super) fn keyring(pod: &StaticPod, objects: &ObjectSet) -> Keyring {
    let mut ring = Keyring::default();
    let names = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref());
    for name in names.into_iter().flatten().map(|r| r.name.as_str()) {
        let ns = pod.namespace();
        let Some(secret) = objects.get(ObjectKind::Secret, ns, name) else {
            tracing::info!(secret = %format!("{ns}/{name}"), "unable to retrieve pull secret, the image pull may not succeed");
            continue;
        };
        let origin = format!("secret {ns}/{name}");
        let parsed = match secret.type_.as_str() {
            "kubernetes.io/dockerconfigjson" => secret
                .data
                .get(".dockerconfigjson")
                .map(|b| Keyring::from_config_json(&origin, b)),
            "kubernetes.io/dockercfg" => secret
                .data
                .get(".dockercfg")
                .map(|b| Keyring::from_dockercfg(&origin, b)),
            _ => None,
        };
        match parsed {
            Some(Ok(r)) => ring.extend(r),
            Some(Err(e)) => tracing::warn!(error = %e, "pull secret ignored"),
            None => tracing::warn!(
                secret = %format!("{ns}/{name}"),
                type_ = %secret.type_,
                "pull secret ignored: not of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg"
            ),
        }
    }
    ring
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::*;
    use crate::manifest::{decode_manifest, Manifest, Origin};

    fn secret(
        name: &str,
        type_: &str,
        key: &str,
        json: &str,
    ) -> Arc<crate::manifest::ConfigObject> {
        let text = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: ns}}\ntype: {type_}\nstringData:\n  {key}: '{json}'\n"
        );
        let origin = Origin::File(PathBuf::from("/m/o.yaml"));
        match decode_manifest(&origin, text.as_bytes(), "n", false).unwrap() {
            Manifest::Object(o) => Arc::new(o.object),
            Manifest::Pod(_) => panic!("a pod"),
        }
    }

    #[test]
    fn secrets_in_order_missing_and_wrong_types_skipped() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nspec:\n  imagePullSecrets: [{name: missing}, {name: opaque}, {name: b}, {name: a}]\n  containers: [{name: c, image: x}]\n";
        let pod = crate::manifest::decode(Path::new("/m/p.yaml"), text.as_bytes(), "n").unwrap();
        let objects = ObjectSet::new([
            secret(
                "opaque",
                "Opaque",
                ".dockerconfigjson",
                r#"{"auths":{"r.io":{"username":"o","password":"o"}}}"#,
            ),
            secret(
                "a",
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                r#"{"auths":{"r.io":{"username":"a","password":"pa"}}}"#,
            ),
            secret(
                "b",
                "kubernetes.io/dockercfg",
                ".dockercfg",
                r#"{"r.io":{"username":"b","password":"pb"}}"#,
            ),
        ]);
        let ring = keyring(&pod, &objects);
        let found = ring.lookup("r.io/app");
        let users: Vec<_> = found.iter().map(|c| c.user.as_str()).collect();
        assert_eq!(users, ["b", "a"]);
        assert_eq!(found[0].origin, "secret ns/b");
    }
}
