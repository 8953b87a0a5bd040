//! Every refusal of a manifest in flow style (testdata/manifests/flow) carries its line and
//! column, at the field it names.

use std::path::Path;

use crate::manifest::decode;

fn shown(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/manifests/flow")
        .join(name);
    let bytes = std::fs::read(&path).unwrap();
    let e = decode(&path, &bytes, "node1").expect_err(name);
    let d = e.diagnostics(&bytes);
    assert!(
        d.iter().all(|d| d.line.is_some() && d.column.is_some()),
        "{name}: {d:?}"
    );
    d.iter().map(ToString::to_string).collect()
}

#[test]
fn a_pod_all_in_flow_style() {
    assert_eq!(
        shown("pod.yaml"),
        [
            "3:44: spec.securityContext.seLinuxChangePolicy: not supported by hostlet yet",
            "5:42: spec.containers[0].livenessProbe.httpGet.scheme: not supported by hostlet yet",
            "4:43: spec.containers[0].volumeDevices: not supported by hostlet yet",
        ]
    );
}

#[test]
fn flow_values_in_a_block_manifest() {
    assert_eq!(
        shown("mixed.yaml"),
        [
            "6:49: spec.containers[0].securityContext.seLinuxOptions: not supported by hostlet yet",
            "9:27: spec.containers[1].lifecycle.preStop.tcpSocket: not supported by hostlet yet",
            "10:26: spec.containers[1].resources.limits[memory]: invalid quantity \"12Gx\": expected a number with an optional suffix (m, k, Mi, Gi, e3, ...)",
        ]
    );
}

#[test]
fn type_errors_minified_json_and_missing_fields() {
    let typed = shown("wrong-type.yaml");
    assert_eq!(typed.len(), 1);
    assert!(
        typed[0].starts_with("5:14: spec.containers[0].ports[0].containerPort: invalid type"),
        "{typed:?}"
    );
    assert_eq!(
        shown("minified.json"),
        ["1:111: spec.containers[0].volumeDevices: not supported by hostlet yet"]
    );
    // Nothing to point at: the document's start.
    assert_eq!(shown("no-spec.yaml"), ["2:1: spec: required"]);
}

#[test]
fn a_flow_document_without_anything_before_its_brace() {
    // Not JSON (its keys are not quoted): YAML in flow style, as the kubelet reads it.
    assert_eq!(
        shown("bare.yaml"),
        [
            "1:40: metadata.name: \"Bare_Flow\" must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253 characters)",
            "2:27: spec.restartPolicy: unsupported value \"Sometimes\": must be one of Always, OnFailure, Never",
            "3:67: spec.initContainers[0].securityContext.privileged: forbidden when `hostUsers` is false",
            "4:53: spec.containers[0].ports[0].containerPort: must be between 1 and 65535, inclusive",
        ]
    );
    // A JSON document (its first key quoted) keeps JSON's error and location.
    let path = std::path::Path::new("bad.json");
    let bytes = br#"{"apiVersion": "v1", "kind": "Pod",}"#;
    let d = decode(path, bytes, "node1").unwrap_err().diagnostics(bytes);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].column), (Some(1), Some(36)), "{d:?}");
    assert!(d[0].message.contains("trailing comma"), "{d:?}");
}
