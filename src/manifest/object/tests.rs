use std::path::PathBuf;

use super::*;
use crate::manifest::{decode_manifest, Manifest};

fn origin() -> Origin {
    Origin::File(PathBuf::from("/etc/hostlet/o.yaml"))
}

fn decode_obj(text: &str) -> Result<DecodedObject, ManifestError> {
    match decode_manifest(&origin(), text.as_bytes(), "node1", false)? {
        Manifest::Object(o) => Ok(o),
        Manifest::Pod(_) => panic!("decoded as a pod"),
    }
}

fn errors(text: &str) -> String {
    decode_obj(text).unwrap_err().to_string()
}

#[test]
fn config_map_data_and_binary_data() {
    let d = decode_obj(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a.conf: hello\nbinaryData:\n  b.bin: AAEC\n",
    )
    .unwrap();
    let o = d.object;
    assert_eq!(o.kind, ObjectKind::ConfigMap);
    assert_eq!(o.full_name(), "default/app");
    assert_eq!(o.data["a.conf"], b"hello");
    assert_eq!(o.data["b.bin"], vec![0, 1, 2]);
    assert!(!o.immutable);
    assert_eq!(o.type_, "");
    assert!(d.warnings.is_empty());
}

#[test]
fn secret_data_string_data_type_and_immutable() {
    let d = decode_obj(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\nimmutable: true\ndata:\n  user: YWRtaW4=\n  pass: b2xk\nstringData:\n  pass: s3cr3t\n",
    )
    .unwrap();
    let o = d.object;
    assert_eq!(o.full_name(), "prod/db");
    assert_eq!(o.type_, "Opaque");
    assert!(o.immutable);
    assert_eq!(o.data["user"], b"admin");
    // stringData wins over data, as on the API server.
    assert_eq!(o.data["pass"], b"s3cr3t");
}

#[test]
fn debug_shows_sizes_not_values() {
    let o = decode_obj(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  pass: hunter2-value\n",
    )
    .unwrap()
    .object;
    let dbg = format!("{o:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("\"pass\": 13"), "{dbg}");
}

#[test]
fn typed_secret_types_need_their_keys() {
    let e = errors("apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: x\n");
    assert!(e.contains("requires the key \"tls.key\""), "{e}");
    let e = errors("apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: 'not json'\n");
    assert!(
        e.contains("data[.dockerconfigjson]: must be valid JSON"),
        "{e}"
    );
    let ok = decode_obj("apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\":{}}'\n");
    assert!(ok.is_ok(), "{ok:?}");
    let e = errors("apiVersion: v1\nkind: Secret\nmetadata:\n  name: t\ntype: kubernetes.io/service-account-token\n");
    assert!(e.contains("need an API server"), "{e}");
}

#[test]
fn bad_keys_names_duplicates_and_base64() {
    let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\ndata:\n  ..x: a\n  'a/b': c\n");
    assert!(e.contains("metadata.name"), "{e}");
    assert!(e.contains("data[..x]"), "{e}");
    assert!(e.contains("data[a/b]"), "{e}");
    let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: a\nbinaryData:\n  k: AA==\n");
    assert!(e.contains("binaryData[k]: duplicate"), "{e}");
    let e =
        errors("apiVersion: v1\nkind: Secret\nmetadata:\n  name: a\ndata:\n  k: 'hunter2***'\n");
    assert!(e.contains("data.k"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = errors("apiVersion: v2\nkind: Secret\nmetadata:\n  name: a\n");
    assert!(e.contains("apiVersion: must be v1"), "{e}");
    let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n");
    assert!(e.contains("metadata.name: required"), "{e}");
}

#[test]
fn size_limit() {
    let big = "x".repeat(MAX_OBJECT_DATA + 1);
    let e = errors(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: {big}\n"
    ));
    assert!(e.contains("must be at most 1 MiB"), "{e}");
}

#[test]
fn unknown_fields_warn_or_refuse_with_strict() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndatta:\n  k: v\n";
    let d = decode_obj(text).unwrap();
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert_eq!(d.warnings[0].field, "datta");
    let e = decode_manifest(&origin(), text.as_bytes(), "node1", true).unwrap_err();
    assert!(e.to_string().contains("datta"), "{e}");
}

#[test]
fn other_kinds_still_refused() {
    let e = decode_manifest(
        &origin(),
        b"apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n",
        "node1",
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("Pod, ConfigMap or Secret"), "{e}");
}

#[test]
fn object_set_lookup() {
    let o = decode_obj("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
        .unwrap()
        .object;
    let set = ObjectSet::new([Arc::new(o)]);
    assert!(set.get(ObjectKind::ConfigMap, "default", "a").is_some());
    assert!(set.get(ObjectKind::Secret, "default", "a").is_none());
    assert!(set.get(ObjectKind::ConfigMap, "other", "a").is_none());
}

#[test]
fn fixtures_decode() {
    for name in ["configmap.yaml", "secret.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/manifests/good")
            .join(name);
        let bytes = std::fs::read(&path).unwrap();
        match decode_manifest(&Origin::File(path), &bytes, "n", true) {
            Ok(Manifest::Object(_)) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}
