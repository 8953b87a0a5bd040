use std::path::{Path, PathBuf};

use super::*;

const NODE: &str = "node1";

fn fixture(rel: &str) -> (PathBuf, Vec<u8>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/manifests")
        .join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, bytes)
}

fn decode_str(yaml: &str) -> Result<StaticPod, ManifestError> {
    decode(Path::new("/etc/manifests/test.yaml"), yaml.as_bytes(), NODE)
}

/// A valid pod with `spec` lines (indented by two) and `container` lines (indented by four)
/// spliced in.
fn pod(spec: &str, container: &str) -> String {
    let indent = |s: &str, n: usize| {
        s.lines()
            .map(|l| format!("{}{l}\n", " ".repeat(n)))
            .collect::<String>()
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: test\nspec:\n{}  containers:\n  - name: main\n    image: busybox:1.36\n{}",
        indent(spec, 2),
        indent(container, 4)
    )
}

fn err(yaml: &str) -> String {
    match decode_str(yaml) {
        Ok(p) => panic!("decoded unexpectedly: {:?}", p.pod.spec),
        Err(e) => e.to_string(),
    }
}

fn assert_err(yaml: &str, want: &str) {
    let got = err(yaml);
    assert!(
        got.contains(want),
        "error {got:?} does not contain {want:?}"
    );
}

#[test]
fn good_fixtures_decode() {
    for name in ["good/etcd.yaml", "good/nginx.json", "good/minimal.yml"] {
        let (path, bytes) = fixture(name);
        if let Err(e) = decode(&path, &bytes, NODE) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn etcd_defaults_and_identity() {
    let (path, bytes) = fixture("good/etcd.yaml");
    let sp = decode(&path, &bytes, "Node1").unwrap();
    assert_eq!(sp.name(), "etcd-node1");
    assert_eq!(sp.namespace(), "kube-system");
    assert_eq!(sp.full_name(), "kube-system/etcd-node1");
    assert_eq!(sp.source, Origin::File(path));
    assert_eq!(sp.uid.len(), 32);
    assert!(sp.uid.bytes().all(|b| b.is_ascii_hexdigit()));
    let meta = &sp.pod.metadata;
    assert_eq!(meta.uid.as_deref(), Some(sp.uid.as_str()));
    let ann = meta.annotations.as_ref().unwrap();
    assert_eq!(ann[CONFIG_HASH_ANNOTATION], sp.uid);
    assert_eq!(ann[CONFIG_SOURCE_ANNOTATION], "file");
    assert!(ann.contains_key("kubeadm.kubernetes.io/etcd.advertise-client-urls"));
    assert!(
        !ann.contains_key(CONFIG_SEEN_ANNOTATION),
        "decode must stay pure"
    );
    let spec = sp.pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("node1"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.host_network, Some(true));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
}

#[test]
fn json_and_defaults() {
    let (path, bytes) = fixture("good/nginx.json");
    let sp = decode(&path, &bytes, NODE).unwrap();
    assert_eq!(sp.full_name(), "default/web-node1");
    let spec = sp.pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(
        spec.containers[1].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(
        spec.containers[0].ports.as_ref().unwrap()[0]
            .protocol
            .as_deref(),
        Some("TCP")
    );
}

#[test]
fn pull_policy_defaults() {
    for (image, want) in [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:1.36", "IfNotPresent"),
        ("localhost:5000/busybox", "Always"),
        ("localhost:5000/busybox:1.0", "IfNotPresent"),
        ("busybox@sha256:abcd", "IfNotPresent"),
        ("busybox:latest@sha256:abcd", "IfNotPresent"),
    ] {
        assert_eq!(default_pull_policy(image), want, "{image}");
    }
    let sp = decode_str(&pod("", "imagePullPolicy: Never")).unwrap();
    assert_eq!(
        sp.pod.spec.unwrap().containers[0]
            .image_pull_policy
            .as_deref(),
        Some("Never")
    );
}

#[test]
fn uid_is_content_hash() {
    let yaml = pod("", "");
    let a = decode_str(&yaml).unwrap();
    // Formatting and comments are not content.
    let reformatted = format!(
        "# a comment\n{}",
        yaml.replace("busybox:1.36", "\"busybox:1.36\"")
    );
    assert_eq!(decode_str(&reformatted).unwrap().uid, a.uid);
    assert_eq!(decode_str(&yaml).unwrap(), a, "decode is deterministic");
    assert_ne!(decode_str(&pod("", "args: [x]")).unwrap().uid, a.uid);
    let other_node = decode(
        Path::new("/etc/manifests/test.yaml"),
        yaml.as_bytes(),
        "node2",
    )
    .unwrap();
    assert_ne!(other_node.uid, a.uid);
    let other_file = decode(
        Path::new("/etc/manifests/other.yaml"),
        yaml.as_bytes(),
        NODE,
    )
    .unwrap();
    assert_ne!(other_file.uid, a.uid);
}

#[test]
fn explicit_uid_is_kept() {
    let yaml = pod("", "").replace("  name: test\n", "  name: test\n  uid: 1234-abcd\n");
    let sp = decode_str(&yaml).unwrap();
    assert_eq!(sp.uid, "1234-abcd");
    assert_eq!(
        sp.pod.metadata.annotations.unwrap()[CONFIG_HASH_ANNOTATION],
        "1234-abcd"
    );
}

#[test]
fn volume_without_source_becomes_empty_dir() {
    let sp = decode_str(&pod(
        "volumes:\n- name: scratch",
        "volumeMounts:\n- {name: scratch, mountPath: /tmp}",
    ))
    .unwrap();
    assert!(sp.pod.spec.unwrap().volumes.unwrap()[0].empty_dir.is_some());
}

#[test]
fn bad_fixtures() {
    for (name, want_field, want) in [
        (
            "bad/list.yaml",
            Some("kind"),
            "kind \"List\" is not supported",
        ),
        (
            "bad/deployment.yaml",
            Some("kind"),
            "kind \"Deployment\" is not supported",
        ),
        (
            "bad/syntax.yaml",
            None,
            "syntax.yaml:9:4: did not find expected key",
        ),
        ("bad/syntax.json", None, "syntax.json:3:"),
        (
            "bad/wrong-type.yaml",
            Some("spec.containers[0].ports[0].containerPort"),
            "wrong-type.yaml:10:",
        ),
        (
            "bad/no-name.yaml",
            Some("metadata.name"),
            "metadata.name: required",
        ),
        (
            "bad/secret-env.yaml",
            Some("spec.containers[0].env[0].valueFrom.secretKeyRef.key"),
            "is not a valid key",
        ),
        (
            "bad/probe.yaml",
            Some("spec.containers[0].livenessProbe.httpGet.scheme"),
            "livenessProbe.httpGet.scheme: not supported by hostlet yet",
        ),
        (
            "bad/bad-quantity.yaml",
            Some("spec.containers[0].resources.limits[memory]"),
            "\"12Gx\"",
        ),
        ("bad/multi-doc.yaml", None, "more than one document"),
    ] {
        let (path, bytes) = fixture(name);
        let e = decode(&path, &bytes, NODE).expect_err(name);
        assert_eq!(e.path(), path, "{name}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&path.display().to_string()),
            "{name}: {msg}"
        );
        assert!(
            msg.contains(want),
            "{name}: {msg:?} does not contain {want:?}"
        );
        if want_field.is_some() {
            assert_eq!(e.field(), want_field, "{name}: {msg}");
        }
        assert!(!msg.ends_with('.'), "{name}: {msg}");
    }
}

#[test]
fn kind_and_api_version() {
    assert_err(
        &pod("", "").replace("kind: Pod", "kind: PodList"),
        "kind \"PodList\" is not supported",
    );
    assert_err(
        &pod("", "").replace("apiVersion: v1", "apiVersion: v2"),
        "apiVersion \"v2\" is not supported",
    );
    assert_err(&pod("", "").replace("kind: Pod\n", ""), "kind: required");
    assert_err(
        &pod("", "").replace("apiVersion: v1\n", ""),
        "apiVersion: required",
    );
    assert_err("", "manifest is empty");
    assert_err("   \n# only a comment\n", "manifest is empty");
    assert_err("- a\n- b\n", "must be a mapping");
    assert_err("42", "must be a mapping");
}

#[test]
fn never_panics_on_garbage() {
    let inputs: &[&[u8]] = &[
        b"\xff\xfe\x00garbage",
        b"{",
        b"}",
        b"[",
        b"{\"kind\": \"Pod\", \"apiVersion\": \"v1\"}",
        b"kind: Pod\napiVersion: v1\nspec: 3\n",
        b"kind: Pod\napiVersion: v1\nmetadata: {name: x}\nspec: {containers: null}\n",
        b"kind: Pod\napiVersion: v1\nmetadata: {name: x}\nspec: {containers: [{}]}\n",
        b"a: &a [*a]",
        b"kind: [Pod]\napiVersion: v1",
        b"kind: Pod\napiVersion: 1",
        b"\t\t",
    ];
    for input in inputs {
        assert!(
            decode(Path::new("x.yaml"), input, NODE).is_err(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_err(
        "kind: Pod\napiVersion: v1\nmetadata: {name: x}\n",
        "spec: required",
    );
}

#[test]
fn names() {
    assert_err(
        &pod("", "").replace("name: test", "name: Test"),
        "metadata.name: \"Test\" must be a lowercase",
    );
    assert_err(
        &pod("", "").replace("name: test", "name: \"\""),
        "metadata.name: required",
    );
    let long = "a".repeat(250);
    assert_err(
        &pod("", "").replace("name: test", &format!("name: {long}")),
        "(name and node name)",
    );
    assert!(decode_str(&pod("", "").replace("name: test", "name: kube.apiserver")).is_ok());
    assert_err(
        &pod("", "").replace("  name: test", "  name: test\n  namespace: Kube_System"),
        "metadata.namespace",
    );
    assert_err(
        &pod("", "").replace("name: main", "name: Main"),
        "spec.containers[0].name: \"Main\" must be a lowercase",
    );
    assert_err(
        &pod("", "").replace("name: main", &format!("name: {}", "c".repeat(64))),
        "spec.containers[0].name",
    );
    let two = format!("{}  - name: main\n    image: busybox\n", pod("", ""));
    assert_err(
        &two,
        "spec.containers[1].name: duplicate container name \"main\"",
    );
    assert_err(
        &pod("", "").replace("    image: busybox:1.36\n", ""),
        "spec.containers[0].image: required",
    );
    assert_err(
        &pod("", "").replace("image: busybox:1.36", "image: \" \""),
        "spec.containers[0].image: required",
    );
    let none = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n";
    assert_err(none, "spec.containers: at least one container is required");
    assert_err(&pod("hostname: Not_Valid", ""), "spec.hostname");
}

#[test]
fn enums() {
    assert_err(
        &pod("restartPolicy: Sometimes", ""),
        "spec.restartPolicy: unsupported value \"Sometimes\"",
    );
    assert_err(
        &pod("", "imagePullPolicy: Maybe"),
        "spec.containers[0].imagePullPolicy: unsupported value",
    );
    assert_err(&pod("dnsPolicy: Bogus", ""), "spec.dnsPolicy");
    assert_err(
        &pod("dnsPolicy: None", ""),
        "spec.dnsPolicy: None is not supported by hostlet yet",
    );
    assert!(decode_str(&pod(
        "dnsPolicy: ClusterFirstWithHostNet\nhostNetwork: true",
        ""
    ))
    .is_ok());
    assert_err(
        &pod("", "terminationMessagePolicy: Sometimes"),
        "terminationMessagePolicy",
    );
    assert_err(
        &pod("terminationGracePeriodSeconds: -1", ""),
        "must be greater than or equal to 0",
    );
    for policy in ["Always", "OnFailure", "Never"] {
        assert!(decode_str(&pod(&format!("restartPolicy: {policy}"), "")).is_ok());
    }
}

#[test]
fn ports() {
    assert!(decode_str(&pod(
        "",
        "ports:\n- {containerPort: 8080, protocol: UDP, name: metrics}"
    ))
    .is_ok());
    assert_err(
        &pod("", "ports:\n- containerPort: 0"),
        "spec.containers[0].ports[0].containerPort: must be between 1 and 65535",
    );
    assert_err(
        &pod("", "ports:\n- containerPort: 70000"),
        "containerPort: must be between",
    );
    assert_err(
        &pod("", "ports:\n- {containerPort: 80, protocol: HTTP}"),
        "ports[0].protocol",
    );
    assert_err(
        &pod("", "ports:\n- {containerPort: 80, name: HTTP}"),
        "ports[0].name",
    );
    assert!(decode_str(&pod(
        "",
        "ports:\n- {containerPort: 80, hostPort: 8080, hostIP: 127.0.0.1}"
    ))
    .is_ok());
    assert_err(
        &pod("", "ports:\n- {containerPort: 80, hostPort: 70000}"),
        "ports[0].hostPort: must be between 1 and 65535",
    );
    assert!(decode_str(&pod(
        "hostNetwork: true",
        "ports:\n- {containerPort: 80, hostPort: 80}"
    ))
    .is_ok());
    assert_err(
        &pod(
            "hostNetwork: true",
            "ports:\n- {containerPort: 80, hostPort: 81}",
        ),
        "must match containerPort",
    );
}

#[test]
fn resources() {
    let ok =
        "resources:\n  requests: {cpu: 100m, memory: 1.5Gi}\n  limits: {cpu: \"2\", memory: 2e9}";
    assert!(decode_str(&pod("", ok)).is_ok());
    assert_err(
        &pod("", "resources:\n  requests: {cpu: lots}"),
        "spec.containers[0].resources.requests[cpu]: invalid quantity \"lots\"",
    );
    assert_err(
        &pod("", "resources:\n  limits: {hugepages-2Mi: 1Gi}"),
        "spec.containers[0].resources: HugePages require cpu or memory",
    );
    assert!(decode_str(&pod(
        "",
        "resources:\n  limits: {memory: 1Gi, hugepages-2Mi: 4Mi}"
    ))
    .is_ok());
    assert_err(
        &pod("", "resources:\n  limits: {nvidia.com/gpu: 1}"),
        "resources.limits[nvidia.com/gpu]: not supported",
    );
    assert_err(
        &pod(
            "",
            "resources:\n  requests: {cpu: \"2\"}\n  limits: {cpu: \"1\"}",
        ),
        "requests[cpu]: must be less than or equal to cpu limit",
    );
    assert_err(
        &pod("", "resources:\n  requests: {memory: -1Mi}"),
        "must not be negative",
    );
    assert_err(
        &pod("", "resources:\n  claims: [{name: gpu}]"),
        "resources.claims: not supported by hostlet yet",
    );
}

#[test]
fn api_references() {
    for (spec, container, want) in [
        ("serviceAccountName: default", "", "spec.serviceAccountName: static pods may not reference serviceaccounts"),
        ("serviceAccount: default", "", "spec.serviceAccount: static pods may not reference serviceaccounts"),
        ("volumes:\n- {name: p, persistentVolumeClaim: {claimName: c}}", "", "static pods may not reference persistentvolumeclaims"),
        ("volumes:\n- {name: e, ephemeral: {}}", "", "spec.volumes[0].ephemeral: static pods may not reference persistentvolumeclaims"),
        ("volumes:\n- {name: c, csi: {driver: d}}", "", "spec.volumes[0].csi: static pods may not reference csidrivers"),
        ("volumes:\n- name: p\n  projected:\n    sources:\n    - serviceAccountToken: {path: token}", "", "spec.volumes[0].projected.sources[0].serviceAccountToken: static pods may not reference serviceaccounts"),
        ("resourceClaims: [{name: gpu}]", "", "spec.resourceClaims: static pods may not reference resourceclaims"),
    ] {
        assert_err(&pod(spec, container), want);
    }
    assert_err(
        &pod("ephemeralContainers:\n- {name: debug, image: busybox}", ""),
        "spec.ephemeralContainers: static pods may not have ephemeral containers",
    );
}

/// hostlet's extension: ConfigMaps and Secrets of the manifest sources may be referenced.
#[test]
fn config_and_secret_references_accepted_and_checked() {
    for (spec, container) in [
        ("", "env:\n- name: A\n  valueFrom: {configMapKeyRef: {name: c, key: k, optional: true}}"),
        ("", "envFrom:\n- secretRef: {name: s}\n  prefix: S_"),
        ("", "envFrom:\n- configMapRef: {name: c}"),
        ("volumes:\n- {name: s, secret: {secretName: s, defaultMode: 0o400, items: [{key: a, path: x/a, mode: 384}]}}", ""),
        ("volumes:\n- {name: c, configMap: {name: c, optional: true}}", ""),
        ("imagePullSecrets: [{name: regcred}]", ""),
        ("volumes:\n- name: p\n  projected:\n    sources:\n    - downwardAPI: {}\n    - secret: {name: s}\n    - configMap: {name: c}", ""),
    ] {
        if let Err(e) = decode_str(&pod(spec, container)) {
            panic!("{spec} {container}: {e}");
        }
    }
    for (spec, container, want) in [
        ("", "env:\n- name: A\n  valueFrom: {configMapKeyRef: {name: c, key: 'a/b'}}", "configMapKeyRef.key: \"a/b\" is not a valid key"),
        ("", "env:\n- name: A\n  valueFrom: {secretKeyRef: {name: '', key: k}}", "secretKeyRef.name: required"),
        ("", "env:\n- name: A\n  valueFrom: {secretKeyRef: {name: s, key: k}, configMapKeyRef: {name: c, key: k}}", "may not have more than one field specified"),
        ("", "envFrom:\n- {prefix: A}", "envFrom[0]: must specify one of configMapRef or secretRef"),
        ("", "envFrom:\n- secretRef: {name: s}\n  configMapRef: {name: c}", "envFrom[0]: may not have more than one field"),
        ("", "envFrom:\n- secretRef: {name: s}\n  prefix: 'A=B'", "envFrom[0].prefix"),
        ("volumes:\n- {name: s, secret: {}}", "", "spec.volumes[0].secret.secretName: required"),
        ("volumes:\n- {name: c, configMap: {name: c, items: [{key: a, path: ../x}]}}", "", "spec.volumes[0].configMap.items[0].path"),
        ("volumes:\n- {name: c, configMap: {name: c, items: [{key: a, path: ..x}]}}", "", "spec.volumes[0].configMap.items[0].path"),
        ("volumes:\n- {name: c, configMap: {name: c, defaultMode: 0o1777}}", "", "spec.volumes[0].configMap.defaultMode"),
        ("volumes:\n- {name: c, secret: {secretName: c, items: [{key: a, path: a, mode: 4096}]}}", "", "items[0].mode"),
        ("volumes:\n- name: p\n  projected:\n    sources:\n    - configMap: {name: c, items: [{key: 'k/', path: a}]}", "", "projected.sources[0].configMap.items[0].key"),
    ] {
        assert_err(&pod(spec, container), want);
    }
}

#[test]
fn unsupported_fields() {
    for (spec, container, want) in [
        (
            "",
            "readinessProbe: {httpGet: {port: 80, scheme: FTP}}",
            "spec.containers[0].readinessProbe.httpGet.scheme: not supported",
        ),
        (
            "",
            "startupProbe: {httpGet: {port: 80, scheme: https}}",
            "spec.containers[0].startupProbe.httpGet.scheme: not supported",
        ),
        (
            "",
            "lifecycle: {preStop: {tcpSocket: {port: 80}}}",
            "spec.containers[0].lifecycle.preStop.tcpSocket: not supported",
        ),
        (
            "",
            "securityContext: {seLinuxOptions: {level: s0}}",
            "spec.containers[0].securityContext.seLinuxOptions: not supported",
        ),
        (
            "securityContext: {seLinuxOptions: {level: s0}}",
            "",
            "spec.securityContext.seLinuxOptions: not supported",
        ),
        (
            "",
            "volumeDevices: [{name: d, devicePath: /dev/d}]",
            "spec.containers[0].volumeDevices: not supported",
        ),
        (
            "shareProcessNamespace: true\nhostPID: true",
            "",
            "spec.shareProcessNamespace: ShareProcessNamespace and HostPID cannot both be enabled",
        ),
        (
            "runtimeClassName: gvisor",
            "",
            "spec.runtimeClassName: not supported",
        ),
        ("overhead: {cpu: 1}", "", "spec.overhead: not supported"),
        (
            "activeDeadlineSeconds: 5",
            "",
            "spec.activeDeadlineSeconds: not supported",
        ),
        (
            "hostUsers: false\nhostNetwork: true",
            "",
            "spec.hostNetwork: forbidden when `hostUsers` is false",
        ),
        (
            "hostUsers: false\nhostIPC: true",
            "",
            "spec.hostIPC: forbidden when `hostUsers` is false",
        ),
        (
            "hostUsers: false",
            "securityContext: {privileged: true}",
            "spec.containers[0].securityContext.privileged: forbidden when `hostUsers` is false",
        ),
        (
            "automountServiceAccountToken: true",
            "",
            "spec.automountServiceAccountToken: not supported",
        ),
        ("os: {name: windows}", "", "spec.os: not supported"),
        (
            "volumes:\n- {name: n, nfs: {server: s, path: /}}",
            "",
            "spec.volumes[0].nfs: not supported",
        ),
        (
            "volumes:\n- name: p\n  projected:\n    sources:\n    - clusterTrustBundle: {path: x}",
            "",
            "projected.sources[0].clusterTrustBundle: static pods may not reference clustertrustbundles",
        ),
        (
            "volumes:\n- {name: m, emptyDir: {medium: HugePages}}",
            "",
            "spec.volumes[0].emptyDir.medium: not supported",
        ),
        (
            "volumes:\n- {name: d, hostPath: {path: /d}, emptyDir: {}}",
            "",
            "spec.volumes[0]: may not specify more than one volume type",
        ),
        (
            "volumes:\n- {name: d, hostPath: {path: /d}}",
            "volumeMounts:\n- {name: d, mountPath: /d, subPathExpr: x}",
            "volumeMounts[0].subPathExpr: not supported",
        ),
        (
            "",
            "volumeDevices: [{name: v, devicePath: /dev/x}]",
            "spec.containers[0].volumeDevices: not supported",
        ),
        (
            "",
            "restartPolicy: Sometimes",
            "spec.containers[0].restartPolicy: unsupported value \"Sometimes\"",
        ),
        (
            "",
            "restartPolicyRules: [{action: Restart, exitCodes: {operator: In, values: [3]}}]",
            "spec.containers[0].restartPolicy: must be set when restartPolicyRules are used",
        ),
    ] {
        assert_err(&pod(spec, container), want);
    }
}

#[test]
fn accepted_fields() {
    let spec = "\
priorityClassName: system-node-critical
priority: 2000001000
tolerations: [{operator: Exists}]
affinity: {nodeAffinity: {}}
nodeSelector: {kubernetes.io/os: linux}
schedulerName: default-scheduler
preemptionPolicy: Never
topologySpreadConstraints: [{maxSkew: 1, topologyKey: k, whenUnsatisfiable: DoNotSchedule}]
enableServiceLinks: true
automountServiceAccountToken: false
securityContext: {}
shareProcessNamespace: false
hostUsers: true
hostPID: true
hostIPC: true
os: {name: linux}
nodeName: elsewhere
hostname: custom
volumes:
- {name: a, hostPath: {path: /var/a, type: Directory}}
- {name: b, emptyDir: {}}";
    let container = "\
securityContext: {}
stdin: false
tty: false
workingDir: /work
command: [sh]
args: [-c, \"true\"]
env:
- {name: A, value: b}
- name: NODE
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: APP
  valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}
volumeMounts:
- {name: a, mountPath: /a, readOnly: true, mountPropagation: None}
- {name: b, mountPath: /b}
terminationMessagePath: /tmp/msg
terminationMessagePolicy: FallbackToLogsOnError";
    let sp = decode_str(&pod(spec, container)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sp.pod.spec.unwrap().node_name.as_deref(), Some(NODE));
}

#[test]
fn yaml_scalars_keep_their_types() {
    // As the kubelet's YAML-to-JSON step: an unquoted `true` or `3600` is no string.
    let e = decode_str(&pod("", "command: [sleep]\nargs: [-c, 3600]")).unwrap_err();
    assert_eq!(e.field(), Some("spec.containers[0].args[1]"), "{e}");
    let shown = e.to_string();
    assert!(shown.contains("test.yaml:10:"), "{shown}");
    assert!(
        shown.contains("invalid type: integer `3600`, expected a string"),
        "{shown}"
    );
    // Numbers and booleans where they belong, and strings that only look like them.
    let sp = decode_str(&pod(
        "hostPID: true",
        "args: [\"3600\", 'true']\nports: [{containerPort: 80}]",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let c = &sp.pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        c.args.as_deref(),
        Some(&["3600".to_string(), "true".to_string()][..])
    );
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 80);
}

#[test]
fn volume_checks() {
    let mount = "volumeMounts:\n- {name: a, mountPath: /a}";
    assert_err(
        &pod("", mount),
        "volumeMounts[0].name: volume \"a\" not found",
    );
    assert_err(
        &pod("volumes:\n- {name: a, hostPath: {path: rel}}", mount),
        "spec.volumes[0].hostPath.path: must be an absolute path",
    );
    assert_err(
        &pod(
            "volumes:\n- {name: a, hostPath: {path: /a, type: Pipe}}",
            mount,
        ),
        "hostPath.type: unsupported value \"Pipe\"",
    );
    assert_err(
        &pod("volumes:\n- {name: a, emptyDir: {sizeLimit: big}}", mount),
        "emptyDir.sizeLimit: invalid quantity \"big\"",
    );
    assert_err(
        &pod(
            "volumes:\n- {name: a, emptyDir: {}}\n- {name: a, emptyDir: {}}",
            mount,
        ),
        "spec.volumes[1].name: duplicate volume name",
    );
    assert_err(
        &pod("volumes:\n- {name: A_b, emptyDir: {}}", ""),
        "spec.volumes[0].name",
    );
    assert_err(
        &pod(
            "volumes:\n- {name: a, emptyDir: {}}",
            "volumeMounts:\n- {name: a, mountPath: rel}",
        ),
        "mountPath: must be an absolute path",
    );
    assert_err(
        &pod(
            "volumes:\n- {name: a, emptyDir: {}}",
            "volumeMounts:\n- {name: a, mountPath: /x}\n- {name: a, mountPath: /x/}",
        ),
        "volumeMounts[1].mountPath: \"/x/\" is mounted twice",
    );
}

#[test]
fn env_checks() {
    assert_err(
        &pod("", "env:\n- {value: x, name: \"\"}"),
        "env[0].name: required",
    );
    assert_err(
        &pod(
            "",
            "env:\n- name: A\n  value: x\n  valueFrom: {fieldRef: {fieldPath: metadata.name}}",
        ),
        "env[0].valueFrom: may not be specified",
    );
    assert_err(
        &pod(
            "",
            "env:\n- name: A\n  valueFrom: {fieldRef: {fieldPath: spec.bogus}}",
        ),
        "fieldRef.fieldPath: \"spec.bogus\" is not a supported field path",
    );
    assert_err(
        &pod("", "env:\n- name: A\n  valueFrom: {}"),
        "env[0].valueFrom: must specify a source",
    );
}

#[test]
fn all_errors_are_reported() {
    let e = decode_str(&pod(
        "restartPolicy: Sometimes",
        "livenessProbe: {httpGet: {port: 80, scheme: FTP}}",
    ))
    .unwrap_err();
    let ManifestError::Invalid { errors, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(errors.len(), 2, "{e}");
    assert!(e.to_string().contains("; "), "{e}");
}

#[test]
fn url_origin_hashes_the_url_and_sets_the_http_source() {
    let yaml = pod("", "");
    let file = decode_with_origin(
        &Origin::File("/m/a.yaml".into()),
        yaml.as_bytes(),
        NODE,
        false,
    )
    .unwrap()
    .pod;
    let url = decode_with_origin(
        &Origin::Url("http://h/p".into()),
        yaml.as_bytes(),
        NODE,
        false,
    )
    .unwrap()
    .pod;
    let url2 = decode_url_body("http://h/q", yaml.as_bytes(), NODE, false).unwrap();
    assert_ne!(file.uid, url.uid);
    assert_ne!(url.uid, url2[0].pod.uid, "the url is part of the uid");
    let ann = |p: &StaticPod| {
        p.pod.metadata.annotations.clone().unwrap()[CONFIG_SOURCE_ANNOTATION].clone()
    };
    assert_eq!(ann(&file), "file");
    assert_eq!(ann(&url), "http");
    assert_eq!(url.source.to_string(), "http://h/p");
    // A file may not hold a PodList; a URL body may.
    let list = "apiVersion: v1\nkind: PodList\nitems: []\n";
    assert_err(list, "kind \"PodList\" is not supported");
    assert!(decode_url_body("http://h/p", list.as_bytes(), NODE, false)
        .unwrap()
        .is_empty());
    let e = decode_url_body(
        "http://h/p",
        b"apiVersion: v1\nkind: PodList\nitems: 3\n",
        NODE,
        false,
    )
    .unwrap_err();
    assert_eq!(e.field(), Some("items"));
    // A type error inside an item names the item, without a position in text the user
    // never wrote.
    let e = decode_url_body(
        "http://h/p",
        b"apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a}\n  spec: {containers: 3}\n",
        NODE,
        false,
    )
    .unwrap_err();
    assert_eq!(e.field(), Some("items[0]"));
    let shown = e.to_string();
    assert!(shown.contains("invalid type: integer `3`"), "{shown}");
    assert!(!shown.contains("at line"), "{shown}");
}

#[test]
fn unknown_fields_are_warnings_or_strict_errors() {
    let yaml = pod("restartPolice: Always", "imagePullPolcy: Always");
    let origin = Origin::File("/m/a.yaml".into());
    let d = decode_with_origin(&origin, yaml.as_bytes(), NODE, false).unwrap();
    let fields: Vec<_> = d.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.containers[0].imagePullPolcy", "spec.restartPolice"]
    );
    let e = decode_with_origin(&origin, yaml.as_bytes(), NODE, true).unwrap_err();
    let shown: Vec<String> = e
        .diagnostics(yaml.as_bytes())
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(
        shown,
        [
            format!("10:5: spec.containers[0].imagePullPolcy: {UNKNOWN_FIELD}"),
            format!("6:3: spec.restartPolice: {UNKNOWN_FIELD}"),
        ]
    );
    // Known fields, nulls and the fields of generated manifests are not reported.
    let generated = pod("dnsPolicy: ClusterFirst", "resources: {}").replace(
        "  name: test\n",
        "  name: test\n  creationTimestamp: null\n",
    ) + "status: {}\n";
    let d = decode_with_origin(&origin, generated.as_bytes(), NODE, true).unwrap();
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert!(decode_with_origin(
        &origin,
        include_bytes!("../../testdata/manifests/good/etcd.yaml"),
        NODE,
        true
    )
    .is_ok());
}

#[test]
fn validation_errors_are_located() {
    let yaml = pod("", "ports:\n- containerPort: 70000");
    let e = decode_str(&yaml).unwrap_err();
    let d = e.diagnostics(yaml.as_bytes());
    assert_eq!(d[0].line, Some(10), "{d:?}");
    assert_eq!(
        d[0].field.as_deref(),
        Some("spec.containers[0].ports[0].containerPort")
    );
    let e = decode_str("kind: Deployment\napiVersion: apps/v1\n").unwrap_err();
    assert_eq!(
        e.diagnostics(b"kind: Deployment\napiVersion: apps/v1\n")[0].to_string(),
        "1:1: kind \"Deployment\" is not supported: a manifest file holds exactly one v1 Pod, ConfigMap or Secret"
    );
}
