use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::manifest::{decode_manifest, Manifest, Origin};

fn object(text: &str) -> Arc<crate::manifest::ConfigObject> {
    let origin = Origin::File(PathBuf::from("/m/o.yaml"));
    match decode_manifest(&origin, text.as_bytes(), "n", false).unwrap() {
        Manifest::Object(o) => Arc::new(o.object),
        Manifest::Pod(_) => panic!("a pod"),
    }
}

fn pod(text: &str) -> Pod {
    crate::manifest::decode(std::path::Path::new("/m/p.yaml"), text.as_bytes(), "n")
        .unwrap()
        .pod
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: p, namespace: prod}
spec:
  volumes:
  - {name: c, configMap: {name: cfg, items: [{key: a, path: a}]}}
  - {name: s, secret: {secretName: sec, optional: true}}
  - name: p
    projected:
      sources:
      - secret: {name: sec2}
  containers:
  - name: main
    image: busybox
    envFrom: [{configMapRef: {name: envs}}]
    env:
    - {name: X, valueFrom: {secretKeyRef: {name: sec2, key: x}}}
";

#[test]
fn every_reference_in_field_order() {
    let refs = references(&pod(POD));
    let fields: Vec<&str> = refs.iter().map(|r| r.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.volumes[0].configMap.items[0]",
            "spec.volumes[1].secret",
            "spec.volumes[2].projected.sources[0].secret",
            "spec.containers[0].envFrom[0].configMapRef",
            "spec.containers[0].env[0].valueFrom.secretKeyRef",
        ]
    );
    assert_eq!(refs[0].key.as_deref(), Some("a"));
    assert!(refs[1].optional);
}

#[test]
fn missing_objects_and_keys_in_the_pods_namespace_only() {
    let p = pod(POD);
    let empty = ObjectSet::default();
    let errs: Vec<String> = check(&p, &empty).iter().map(ToString::to_string).collect();
    assert_eq!(
        errs,
        [
            "spec.volumes[0].configMap.items[0]: configmap \"prod/cfg\" not found",
            "spec.volumes[2].projected.sources[0].secret: secret \"prod/sec2\" not found",
            "spec.containers[0].envFrom[0].configMapRef: configmap \"prod/envs\" not found",
            "spec.containers[0].env[0].valueFrom.secretKeyRef: secret \"prod/sec2\" not found",
        ]
    );
    // Objects of another namespace do not count.
    let other = ObjectSet::new([object(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\n",
    )]);
    assert_eq!(check(&p, &other).len(), 4);
    let set = ObjectSet::new([
        object("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: prod}\ndata: {b: '1'}\n"),
        object("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: envs, namespace: prod}\n"),
        object("apiVersion: v1\nkind: Secret\nmetadata: {name: sec2, namespace: prod}\nstringData: {x: '1'}\n"),
    ]);
    let errs: Vec<String> = check(&p, &set).iter().map(ToString::to_string).collect();
    assert_eq!(
        errs,
        ["spec.volumes[0].configMap.items[0]: couldn't find key a in ConfigMap prod/cfg"]
    );
}
