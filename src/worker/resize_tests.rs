use super::*;

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).unwrap()
}

const BASE: &str = r#"
metadata: {name: p, uid: one, annotations: {kubernetes.io/config.hash: one}}
spec:
  containers:
  - name: a
    image: img
    resources: {requests: {cpu: 100m, memory: 32Mi}, limits: {cpu: 500m, memory: 64Mi}}
  - name: b
    image: img
    resizePolicy: [{resourceName: memory, restartPolicy: RestartContainer}]
    resources: {requests: {cpu: 100m, memory: 32Mi}, limits: {cpu: 500m, memory: 64Mi}}
"#;

fn edited(from: &str, to: &str) -> Pod {
    let mut y = BASE.replacen(from, to, 1);
    y = y
        .replace("uid: one", "uid: two")
        .replace("hash: one", "hash: two");
    pod(&y)
}

fn plan(d: Decision) -> Plan {
    match d {
        Decision::InPlace(p) => p,
        other => panic!("not in place: {other:?}"),
    }
}

#[test]
fn a_cpu_change_of_a_not_required_container_is_in_place() {
    let d = decide(&pod(BASE), &edited("cpu: 500m", "cpu: 700m"));
    let p = plan(d);
    assert!(!p.pod_level);
    assert_eq!(
        p.containers,
        [ContainerResize {
            name: "a".into(),
            restart: false,
            memory_decrease: false
        }]
    );
}

#[test]
fn restart_container_policy_restarts_only_for_its_resource() {
    // b's policy restarts it for memory, not for cpu.
    let at = BASE.rfind("memory: 64Mi").unwrap();
    let mut y = BASE.to_string();
    y.replace_range(at..at + "memory: 64Mi".len(), "memory: 96Mi");
    let p = plan(decide(&pod(BASE), &pod(&y)));
    assert_eq!(
        p.restarts().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let at = BASE.rfind("cpu: 500m").unwrap();
    let mut y = BASE.to_string();
    y.replace_range(at..at + "cpu: 500m".len(), "cpu: 600m");
    let p = plan(decide(&pod(BASE), &pod(&y)));
    assert_eq!(p.restarts().count(), 0);
    assert_eq!(
        p.in_place().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
}

#[test]
fn a_memory_limit_decrease_is_marked() {
    let p = plan(decide(&pod(BASE), &edited("memory: 64Mi", "memory: 48Mi")));
    assert!(p.containers[0].memory_decrease);
    assert!(!p.containers[0].restart);
}

#[test]
fn any_other_edit_recreates() {
    for (from, to) in [("image: img", "image: other"), ("name: a", "name: c")] {
        assert_eq!(
            decide(&pod(BASE), &edited(from, to)),
            Decision::Recreate(Why::NotOnlyResources),
            "{from} → {to}"
        );
    }
    // Resources and something else at once.
    let mut new = edited("cpu: 500m", "cpu: 700m");
    new.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    assert_eq!(
        decide(&pod(BASE), &new),
        Decision::Recreate(Why::NotOnlyResources)
    );
}

#[test]
fn only_the_content_uid_differs_unchanged() {
    assert_eq!(decide(&pod(BASE), &edited("", "")), Decision::Unchanged);
}

#[test]
fn a_qos_class_change_is_infeasible() {
    // Guaranteed → Burstable.
    let g = r#"
spec:
  containers:
  - name: a
    image: img
    resources: {requests: {cpu: 500m, memory: 64Mi}, limits: {cpu: 500m, memory: 64Mi}}
"#;
    let d = decide(&pod(g), &pod(&g.replacen("cpu: 500m", "cpu: 200m", 1)));
    let Decision::Recreate(Why::Infeasible(m)) = d else {
        panic!("{d:?}")
    };
    assert!(m.contains("QOS Class may not change"), "{m}");
}

#[test]
fn other_resources_and_removed_limits_are_infeasible() {
    let d = decide(
        &pod(BASE),
        &edited(
            "limits: {cpu: 500m, memory: 64Mi}",
            "limits: {cpu: 500m, memory: 64Mi, ephemeral-storage: 1Gi}",
        ),
    );
    assert!(matches!(d, Decision::Recreate(Why::Infeasible(_))), "{d:?}");
    let d = decide(
        &pod(BASE),
        &edited("limits: {cpu: 500m, memory: 64Mi}", "limits: {cpu: 500m}"),
    );
    let Decision::Recreate(Why::Infeasible(m)) = d else {
        panic!("{d:?}")
    };
    assert!(m.contains("memory limit cannot be removed"), "{m}");
}

#[test]
fn pod_level_resources_resize_the_pod_cgroup() {
    let y = r#"
spec:
  resources: {requests: {cpu: 200m, memory: 64Mi}, limits: {cpu: "1", memory: 128Mi}}
  containers:
  - name: a
    image: img
"#;
    let p = plan(decide(
        &pod(y),
        &pod(&y.replace("cpu: \"1\"", "cpu: \"2\"")),
    ));
    assert!(p.pod_level);
    assert!(p.containers.is_empty());
}

#[test]
fn a_regular_init_container_cannot_be_resized_but_a_sidecar_can() {
    let y = r#"
spec:
  initContainers:
  - name: i
    image: img
    RP
    resources: {requests: {cpu: 100m}}
  containers:
  - name: a
    image: img
    resources: {requests: {cpu: 100m}}
"#;
    let init = y.replace("RP", "command: [true]");
    let d = decide(
        &pod(&init),
        &pod(&init.replacen("cpu: 100m", "cpu: 200m", 1)),
    );
    assert!(matches!(d, Decision::Recreate(Why::Infeasible(_))), "{d:?}");
    let sidecar = y.replace("RP", "restartPolicy: Always");
    let p = plan(decide(
        &pod(&sidecar),
        &pod(&sidecar.replacen("cpu: 100m", "cpu: 200m", 1)),
    ));
    assert_eq!(p.containers[0].name, "i");
}

#[test]
fn decoded_manifests_that_differ_in_resources_only_resize() {
    let m = |cpu: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n  - name: a\n    image: img\n    command: [sh, -c, 'x', m]\n    resources:\n      requests: {{cpu: 100m, memory: 32Mi}}\n      limits: {{cpu: {cpu}, memory: 64Mi}}\n"
        )
    };
    let path = std::path::Path::new("/m/p.yaml");
    let decoded = |cpu: &str, seen: &str| {
        let mut p = crate::manifest::decode(path, m(cpu).as_bytes(), "n").unwrap();
        // What the source adds: when it first saw the UID.
        let a = p
            .pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        a.insert(CONFIG_SEEN_ANNOTATION.into(), seen.into());
        p
    };
    let old = decoded("500m", "2026-01-01T00:00:00Z");
    let new = decoded("700m", "2026-01-02T00:00:00Z");
    assert_ne!(old.uid, new.uid);
    let d = decide(&old.pod, &new.pod);
    assert!(matches!(d, Decision::InPlace(_)), "{d:?}");
}

#[test]
fn a_resized_pod_keeps_its_metadata() {
    let running = StaticPod {
        pod: pod(BASE),
        uid: "one".into(),
        source: Default::default(),
    };
    let edited = StaticPod {
        pod: edited("cpu: 500m", "cpu: 700m"),
        uid: "two".into(),
        source: Default::default(),
    };
    let kept = with_identity(&running, &edited);
    assert_eq!(kept.uid, "one");
    assert_eq!(kept.pod.metadata, running.pod.metadata);
    assert_eq!(kept.pod.spec, edited.pod.spec);
}
