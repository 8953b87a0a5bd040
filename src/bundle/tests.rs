//! Golden tests: the runtime config for a pod is compared with `testdata/golden/*.json`.
//! Regenerate after an intended change with `UPDATE_GOLDEN=1 cargo test --lib bundle`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use oci_spec::image::ImageConfiguration;

use super::*;
use crate::node::NodeInfo;

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).expect("test pod")
}

fn image(json: &str) -> ImageConfiguration {
    serde_json::from_str(json).expect("test image config")
}

const IMAGE: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
 "config":{"Env":["PATH=/bin:/usr/bin","LANG=C"],"Entrypoint":["/bin/entry"],"Cmd":["--default"],
 "WorkingDir":"/srv","StopSignal":"SIGQUIT"}}"#;

fn node() -> NodeInfo {
    NodeInfo {
        name: "node1".into(),
        host_ip: "192.0.2.10".into(),
        cpu_milli: 4000,
        memory_bytes: 8 << 30,
        seccomp_default: true,
        seccomp_dir: PathBuf::from("/var/lib/hostlet/seccomp"),
        pod_max_pids: -1,
        min_oom_score_adj: -1000,
        apparmor: false,
    }
}

fn render(
    pod: &Pod,
    container: usize,
    image: &ImageConfiguration,
    rootfs: &Path,
) -> Result<Spec, BundleError> {
    render_with(pod, container, image, rootfs, &node())
}

fn render_with(
    pod: &Pod,
    container: usize,
    image: &ImageConfiguration,
    rootfs: &Path,
    node: &NodeInfo,
) -> Result<Spec, BundleError> {
    let mut volumes = BTreeMap::new();
    volumes.insert("data".to_string(), PathBuf::from("/var/lib/data"));
    let c = &pod.spec.as_ref().unwrap().containers[container];
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    build_spec(
        pod,
        c,
        &BundleInputs {
            image,
            image_file: &|rel| std::fs::read(rootfs.join(rel)).ok(),
            rootfs: Path::new("/var/lib/hostlet/containers/x/bundle/rootfs"),
            cgroups_path: &crate::cgroups::PodCgroup::of(pod, &uid).container("x"),
            volumes: &volumes,
            pod_dir: &Path::new("/var/lib/hostlet/pods").join(&uid),
            node,
            seccomp_file: &|rel| {
                (rel == "audit.json").then(|| {
                    br#"{"defaultAction":"SCMP_ACT_LOG","syscalls":[{"name":"mkdir","action":"SCMP_ACT_ERRNO"}]}"#.to_vec()
                })
            },
            objects: &Default::default(),
            user_ids: pod
                .spec
                .as_ref()
                .unwrap()
                .host_users
                .and(Some(crate::userns::IdRange {
                    host_id: 1 << 20,
                    size: 65536,
                })),
        },
    )
}

fn golden(name: &str, spec: &Spec) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(name);
    let got = serde_json::to_string_pretty(&stable_json(spec)).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        got,
        want,
        "{} differs; UPDATE_GOLDEN=1 regenerates it",
        path.display()
    );
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-node1, namespace: default, uid: 0123abcd, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - name: app
    image: busybox
    args: ["--port", "8080"]
    env:
    - {name: LANG, value: en_US.UTF-8}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    resources:
      requests: {cpu: 250m, memory: 64Mi}
      limits: {cpu: 500m, memory: 128Mi}
    volumeMounts:
    - {name: data, mountPath: /data, readOnly: true}
"#;

#[test]
fn golden_web_pod() {
    let spec = render(&pod(WEB), 0, &image(IMAGE), Path::new("/nonexistent")).unwrap();
    golden("web.json", &spec);
}

#[test]
fn golden_host_network_pod() {
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: etcd-node1, namespace: kube-system, uid: ffff}
spec:
  hostNetwork: true
  hostPID: true
  containers:
  - name: etcd
    image: busybox
    command: [etcd, --data-dir=/var/lib/etcd]
    workingDir: /var/lib/etcd
    resources: {requests: {cpu: 100m}}
"#;
    let spec = render(&pod(yaml), 0, &image(IMAGE), Path::new("/nonexistent")).unwrap();
    golden("host-network.json", &spec);
}

#[test]
fn command_and_args_merge_like_the_kubelet() {
    let img = image(IMAGE);
    let argv = |cmd: Option<Vec<&str>>, args: Option<Vec<&str>>| {
        let c = Container {
            name: "c".into(),
            command: cmd.map(|v| v.into_iter().map(String::from).collect()),
            args: args.map(|v| v.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        process::argv(&c, img.config().as_ref(), &[])
    };
    assert_eq!(argv(None, None).unwrap(), ["/bin/entry", "--default"]);
    assert_eq!(argv(None, Some(vec!["-x"])).unwrap(), ["/bin/entry", "-x"]);
    assert_eq!(argv(Some(vec!["/bin/sh"]), None).unwrap(), ["/bin/sh"]);
    assert_eq!(
        argv(Some(vec!["/bin/sh"]), Some(vec!["-c", "true"])).unwrap(),
        ["/bin/sh", "-c", "true"]
    );
    let bare =
        image(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
    let c = Container {
        name: "c".into(),
        ..Default::default()
    };
    let e = process::argv(&c, bare.config().as_ref(), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no command specified"), "{e}");
}

#[test]
fn env_order_and_override() {
    let spec = render(&pod(WEB), 0, &image(IMAGE), Path::new("/nonexistent")).unwrap();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(
        env,
        [
            "PATH=/bin:/usr/bin",
            "LANG=en_US.UTF-8",
            "POD=web-node1",
            "APP=web",
            "HOSTNAME=web-node1"
        ]
    );
}

#[test]
fn unknown_volume_and_bad_field_ref_are_config_errors() {
    let mut p = pod(WEB);
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.volume_mounts.as_mut().unwrap()[0].name = "nope".into();
    let e = render(&p, 0, &image(IMAGE), Path::new("/x"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("volumeMounts[0].name") && e.contains("nope"),
        "{e}"
    );

    let mut p = pod(WEB);
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.env.as_mut().unwrap()[1]
        .value_from
        .as_mut()
        .unwrap()
        .field_ref
        .as_mut()
        .unwrap()
        .field_path = "status.bogus".into();
    let e = render(&p, 0, &image(IMAGE), Path::new("/x"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("env[1].valueFrom.fieldRef.fieldPath"), "{e}");
}

#[test]
fn image_user_is_resolved_in_the_image() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
    let with_user = |u: &str| {
        image(&IMAGE.replace(
            "\"WorkingDir\"",
            &format!("\"User\":\"{u}\",\"WorkingDir\""),
        ))
    };
    let files = |rel: &str| std::fs::read(dir.path().join(rel)).ok();
    let uid_gid = |u: &str| users::user(with_user(u).config().as_ref(), &files);
    assert_eq!(uid_gid("www").unwrap(), (33, 34));
    assert_eq!(uid_gid("www:staff").unwrap(), (33, 50));
    assert_eq!(uid_gid("1000").unwrap(), (1000, 0));
    assert_eq!(uid_gid("1000:7").unwrap(), (1000, 7));
    assert!(uid_gid("nobody")
        .unwrap_err()
        .to_string()
        .contains("no such user"));
}

#[test]
fn supplemental_groups_policy_merges_the_image_groups_or_not() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nwww:x:1000:1000::/var/www:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("etc/group"),
        "root:x:0:\nwww:x:1000:\nstaff:x:50:www,other\nnope:x:51:other\n",
    )
    .unwrap();
    let ids = |policy: &str| {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: g, uid: u}}\nspec:\n  securityContext: {{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], {policy}}}\n  containers: [{{name: c, image: i}}]\n"
        );
        let spec = render(&pod(&yaml), 0, &image(IMAGE), dir.path()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &spec, None).unwrap();
        let read = ProcessIds::read(dir.path()).unwrap();
        assert_eq!(read, ProcessIds::of(&spec));
        // Elsewhere (a tmpfs), behind a symlink, twice (a rewrite replaces the link).
        let bundle = dir.path().join("b");
        let at = dir.path().join("c.json");
        write(&bundle, &spec, Some(&at)).unwrap();
        write(&bundle, &spec, Some(&at)).unwrap();
        assert!(bundle.join("config.json").is_symlink());
        assert_eq!(ProcessIds::read(&bundle).as_ref(), Some(&read));
        read
    };
    let merged = ProcessIds {
        uid: 1000,
        gid: 3000,
        groups: vec![3000, 50, 4000],
    };
    assert_eq!(ids(""), merged);
    assert_eq!(ids("supplementalGroupsPolicy: Merge"), merged);
    assert_eq!(
        ids("supplementalGroupsPolicy: Strict"),
        ProcessIds {
            uid: 1000,
            gid: 3000,
            groups: vec![3000, 4000],
        }
    );
}

#[test]
fn stop_signal_from_image() {
    assert_eq!(stop_signal(&image(IMAGE)), libc::SIGQUIT);
    assert_eq!(parse_signal("USR1"), Some(libc::SIGUSR1));
    assert_eq!(parse_signal("9"), Some(libc::SIGKILL));
    assert_eq!(parse_signal("bogus"), None);
}

#[path = "rules_tests.rs"]
mod rules;

#[test]
fn the_termination_message_file_is_mounted_read_write() {
    let mut p = pod(WEB);
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.termination_message_path = Some("/dev/termination-log".into());
    c.security_context
        .get_or_insert_with(Default::default)
        .read_only_root_filesystem = Some(true);
    let spec = render(&p, 0, &image(IMAGE), Path::new("/x")).unwrap();
    let m = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/dev/termination-log"))
        .expect("a termination-log mount");
    let name = &p.spec.as_ref().unwrap().containers[0].name;
    assert!(m
        .source()
        .as_ref()
        .unwrap()
        .ends_with(format!("termination/{name}")));
    assert!(m.options().as_ref().unwrap().contains(&"rw".to_string()));

    // An empty path: no file, as with the kubelet.
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.termination_message_path = Some(String::new());
    let spec = render(&p, 0, &image(IMAGE), Path::new("/x")).unwrap();
    assert!(!spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .any(|m| m.destination() == Path::new("/dev/termination-log")));
}

#[test]
fn host_users_false_joins_the_pods_user_namespace_with_its_maps() {
    let yaml = "metadata: {name: u, uid: abc}\nspec:\n  hostUsers: false\n  containers: [{name: c, image: x}]\n";
    let spec = render(&pod(yaml), 0, &image(IMAGE), Path::new("/nonexistent")).unwrap();
    let v = stable_json(&spec);
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert_eq!(ns[0]["type"], "mount");
    // Joined first: the container's own namespaces are then owned by it.
    assert_eq!(ns[1]["type"], "user");
    assert_eq!(ns[1]["path"], "/var/lib/hostlet/pods/abc/ns/user");
    let map = serde_json::json!([{"containerID": 0, "hostID": 1 << 20, "size": 65536}]);
    assert_eq!(v["linux"]["uidMappings"], map);
    assert_eq!(v["linux"]["gidMappings"], map);

    // An ID the pod's namespace does not map cannot be run as.
    let yaml = "metadata: {name: u, uid: abc}\nspec:\n  hostUsers: false\n  containers: [{name: c, image: x, securityContext: {runAsUser: 70000}}]\n";
    let e = render(&pod(yaml), 0, &image(IMAGE), Path::new("/nonexistent")).unwrap_err();
    assert!(
        e.to_string()
            .contains("ID 70000 is outside the pod's user namespace"),
        "{e}"
    );

    // Host users: no user namespace, no maps.
    let yaml = "metadata: {name: u, uid: abc}\nspec:\n  containers: [{name: c, image: x}]\n";
    let v = stable_json(&render(&pod(yaml), 0, &image(IMAGE), Path::new("/nonexistent")).unwrap());
    assert!(v["linux"]["uidMappings"].is_null(), "{v:#}");
    let types: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["type"].as_str())
        .collect();
    assert!(!types.contains(&"user"), "{types:?}");
}

#[test]
fn apparmor_profile_in_the_process() {
    let yaml = |sc: &str| {
        format!("metadata: {{name: a-node1, uid: u1}}\nspec:\n  containers:\n  - name: c\n    image: x\n    securityContext: {{{sc}}}\n")
    };
    let on = NodeInfo {
        apparmor: true,
        ..node()
    };
    let profile = |sc: &str, n: &NodeInfo| {
        render_with(
            &pod(&yaml(sc)),
            0,
            &image(IMAGE),
            Path::new("/nonexistent"),
            n,
        )
        .map(|s| s.process().as_ref().unwrap().apparmor_profile().clone())
        .map_err(|e| e.to_string())
    };
    assert_eq!(profile("", &on), Ok(Some("hostlet-default".into())));
    assert_eq!(profile("privileged: true", &on), Ok(None));
    let local = "appArmorProfile: {type: Localhost, localhostProfile: k8s-deny}";
    assert_eq!(profile(local, &on), Ok(Some("k8s-deny".into())));
    assert_eq!(profile("", &node()), Ok(None));
    assert_eq!(
        profile(local, &node()),
        Err("Cannot enforce AppArmor: AppArmor is not enabled on the host".into())
    );
}
