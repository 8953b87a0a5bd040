//! Golden and unit tests of the Containers rules: sandbox sharing, env expansion and the
//! downward API, securityContext, seccomp, volumes, QoS.

use super::*;
use serde_json::json;

fn spec_json(yaml: &str, i: usize) -> Result<Value, BundleError> {
    render(&pod(yaml), i, &image(IMAGE), Path::new("/nonexistent")).map(|s| stable_json(&s))
}

const RULES: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: rules-node1, namespace: default, uid: 0a0b, labels: {tier: db}, annotations: {note: hi}}
spec:
  nodeName: node1
  hostname: db-0
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    supplementalGroups: [4000]
    fsGroup: 2000
    sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "80"}]
  volumes:
  - {name: data, emptyDir: {}}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "echo $(GREETING) $$(HOME) $(MISSING)"]
    env:
    - {name: NAME, value: world}
    - {name: GREETING, value: "hello $(NAME)"}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: CPU_LIMIT, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}
    resources:
      requests: {cpu: 250m, memory: 64Mi}
      limits: {memory: 100Mi}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {add: [NET_ADMIN, CAP_SYS_TIME], drop: [MKNOD, cap_net_raw]}
      seccompProfile: {type: RuntimeDefault}
    volumeMounts:
    - {name: data, mountPath: /data, subPath: sub/dir}
    - {name: data, mountPath: /host, mountPropagation: HostToContainer, readOnly: true}
"#;

#[test]
fn golden_rules_pod() {
    let spec = render(&pod(RULES), 0, &image(IMAGE), Path::new("/nonexistent")).unwrap();
    golden("rules.json", &spec);
}

#[test]
fn sandbox_namespaces_and_etc_files() {
    let v = spec_json(RULES, 0).unwrap();
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    let path = |t: &str| {
        ns.iter()
            .find(|n| n["type"] == t)
            .map(|n| n["path"].clone())
    };
    assert_eq!(
        path("network").unwrap(),
        "/var/lib/hostlet/pods/0a0b/ns/net"
    );
    assert_eq!(path("ipc").unwrap(), "/var/lib/hostlet/pods/0a0b/ns/ipc");
    assert_eq!(path("uts").unwrap(), "/var/lib/hostlet/pods/0a0b/ns/uts");
    assert_eq!(
        path("pid").unwrap(),
        Value::Null,
        "own pid namespace, not shared"
    );
    assert!(
        v.get("hostname").is_none(),
        "the sandbox holds the hostname"
    );
    let mounts = v["mounts"].as_array().unwrap();
    let src = |d: &str| mounts.iter().find(|m| m["destination"] == d).unwrap()["source"].clone();
    assert_eq!(src("/etc/hosts"), "/var/lib/hostlet/pods/0a0b/etc-hosts");
    assert_eq!(
        src("/etc/resolv.conf"),
        "/var/lib/hostlet/pods/0a0b/resolv.conf"
    );
    assert_eq!(src("/etc/hostname"), "/var/lib/hostlet/pods/0a0b/hostname");
    assert_eq!(src("/dev/shm"), "/var/lib/hostlet/pods/0a0b/shm");
    let env: Vec<String> = serde_json::from_value(v["process"]["env"].clone()).unwrap();
    assert!(env.contains(&"HOSTNAME=db-0".to_string()), "{env:?}");
}

#[test]
fn host_namespaces_are_not_joined() {
    let v = spec_json(
        "metadata: {name: h, uid: u}\nspec:\n  hostNetwork: true\n  hostIPC: true\n  hostPID: true\n  containers: [{name: c, image: x}]\n",
        0,
    )
    .unwrap();
    let types: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["mount"]);
    let shm = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap()
        .clone();
    assert_eq!(shm["source"], "/dev/shm");
}

#[test]
fn env_expansion_and_downward_api() {
    let v = spec_json(RULES, 0).unwrap();
    let env: Vec<String> = serde_json::from_value(v["process"]["env"].clone()).unwrap();
    for want in [
        "GREETING=hello world",
        "NODE=node1",
        "HOST_IP=192.0.2.10",
        "POD_IP=",
        "TIER=db",
        "MEM_MI=100",
        "CPU_M=250",
        // No cpu limit: the node's allocatable cpu, in cores.
        "CPU_LIMIT=4",
    ] {
        assert!(env.contains(&want.to_string()), "{want} not in {env:?}");
    }
    assert_eq!(
        v["process"]["args"][2],
        "echo hello world $(HOME) $(MISSING)"
    );
    assert_eq!(expand("a$(X)b$$c$", &[("X".into(), "1".into())]), "a1b$c$");
    assert_eq!(expand("$(X", &[]), "$(X");
}

#[test]
fn downward_api_limits_fall_back_to_the_pod_level_ones() {
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, uid: u}\nspec:\n  resources: {limits: {memory: 64Mi}}\n  containers:\n  - name: a\n    image: i\n    env:\n    - {name: MEM, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}\n    - {name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}\n    - {name: OWN, valueFrom: {resourceFieldRef: {containerName: b, resource: limits.memory, divisor: 1Mi}}}\n  - {name: b, image: i, resources: {limits: {memory: 32Mi}}}\n";
    let v = spec_json(yaml, 0).unwrap();
    let env: Vec<String> = serde_json::from_value(v["process"]["env"].clone()).unwrap();
    // The pod's memory limit; no cpu limit anywhere: the node's allocatable cpu.
    for want in ["MEM=64", "CPU=4000", "OWN=32"] {
        assert!(env.contains(&want.to_string()), "{want} not in {env:?}");
    }
}

#[test]
fn security_context_rules() {
    let v = spec_json(RULES, 0).unwrap();
    let p = &v["process"];
    assert_eq!(p["user"]["uid"], 1000);
    assert_eq!(p["user"]["gid"], 3000);
    assert_eq!(p["user"]["additionalGids"], json!([4000, 2000]));
    assert_eq!(p["noNewPrivileges"], true);
    assert_eq!(v["root"]["readonly"], true);
    let caps: Vec<String> = serde_json::from_value(p["capabilities"]["bounding"].clone()).unwrap();
    assert!(caps.contains(&"CAP_NET_ADMIN".into()) && caps.contains(&"CAP_SYS_TIME".into()));
    assert!(!caps.contains(&"CAP_MKNOD".into()) && !caps.contains(&"CAP_NET_RAW".into()));
    assert_eq!(
        v["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"],
        "80"
    );
    // /etc files follow a read-only rootfs.
    let hosts = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/etc/hosts")
        .unwrap()
        .clone();
    assert_eq!(hosts["options"][2], "ro");
    // Burstable with a 64Mi request on an 8Gi node.
    assert_eq!(p["oomScoreAdj"], 1000 - 1000 * 64 / (8 * 1024));
    assert_eq!(v["linux"]["cgroupsPath"], "/kubepods/burstable/pod0a0b/x");
}

#[test]
fn capabilities_all_and_privileged() {
    let caps = |sc: &str| {
        let v = spec_json(&format!("metadata: {{name: p, uid: u}}\nspec:\n  containers: [{{name: c, image: x, securityContext: {sc}}}]\n"), 0).unwrap();
        let c: Vec<String> =
            serde_json::from_value(v["process"]["capabilities"]["effective"].clone()).unwrap();
        (c, v)
    };
    let (c, _) = caps("{capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}");
    assert_eq!(c, ["CAP_NET_BIND_SERVICE"]);
    let (c, _) = caps("{capabilities: {add: [ALL], drop: [CHOWN]}}");
    assert_eq!(c.len(), defaults::ALL_CAPABILITIES.len() - 1);
    let (c, v) = caps("{privileged: true}");
    assert_eq!(c.len(), defaults::ALL_CAPABILITIES.len());
    assert!(
        v["linux"].get("seccomp").is_none(),
        "privileged runs unconfined"
    );
    assert_eq!(v["linux"]["maskedPaths"], json!([]));
    assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], true);
    let (_, v) = caps("{procMount: Unmasked}");
    assert_eq!(v["linux"]["readonlyPaths"], json!([]));
}

#[test]
fn run_as_non_root_is_refused_for_root() {
    let err = |sc: &str, img: &str| {
        let p = pod(&format!("metadata: {{name: p, uid: u}}\nspec:\n  containers: [{{name: c, image: x, securityContext: {sc}}}]\n"));
        render(&p, 0, &image(img), Path::new("/nonexistent"))
            .err()
            .map(|e| e.to_string())
    };
    let with_user = |u: &str| {
        IMAGE.replace(
            "\"WorkingDir\"",
            &format!("\"User\":\"{u}\",\"WorkingDir\""),
        )
    };
    let e = err("{runAsNonRoot: true}", IMAGE).unwrap();
    assert!(e.contains("image will run as root"), "{e}");
    let e = err("{runAsNonRoot: true, runAsUser: 0}", IMAGE).unwrap();
    assert!(e.contains("runAsUser breaks non-root policy"), "{e}");
    let e = err("{runAsNonRoot: true}", &with_user("www")).unwrap();
    assert!(e.contains("non-numeric user (www)"), "{e}");
    assert_eq!(err("{runAsNonRoot: true}", &with_user("1000")), None);
    assert_eq!(err("{runAsNonRoot: true, runAsUser: 5}", IMAGE), None);
}

#[test]
fn seccomp_profiles() {
    let sec = |sc: &str, default: bool| {
        let p = pod(&format!("metadata: {{name: p, uid: u}}\nspec:\n  containers: [{{name: c, image: x, securityContext: {sc}}}]\n"));
        let n = NodeInfo {
            seccomp_default: default,
            ..node()
        };
        render_with(&p, 0, &image(IMAGE), Path::new("/nonexistent"), &n)
            .map(|s| stable_json(&s)["linux"]["seccomp"].clone())
    };
    assert_eq!(sec("{}", true).unwrap()["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(sec("{}", false).unwrap(), Value::Null);
    assert_eq!(
        sec("{seccompProfile: {type: Unconfined}}", true).unwrap(),
        Value::Null
    );
    let l = sec(
        "{seccompProfile: {type: Localhost, localhostProfile: audit.json}}",
        true,
    )
    .unwrap();
    assert_eq!(l["defaultAction"], "SCMP_ACT_LOG");
    let e = sec(
        "{seccompProfile: {type: Localhost, localhostProfile: ../x.json}}",
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("relative path"), "{e}");
    let e = sec(
        "{seccompProfile: {type: Localhost, localhostProfile: missing.json}}",
        true,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("/var/lib/hostlet/seccomp/missing.json"),
        "{e}"
    );
}

#[test]
fn volume_mount_options() {
    let v = spec_json(RULES, 0).unwrap();
    let m = |d: &str| {
        v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == d)
            .unwrap()
            .clone()
    };
    assert_eq!(m("/data")["source"], "/var/lib/data/sub/dir");
    assert_eq!(m("/host")["options"], json!(["rbind", "rslave", "ro"]));
    assert_eq!(v["linux"]["rootfsPropagation"], "rslave");
    let e = spec_json(&RULES.replace("subPath: sub/dir", "subPath: ../etc"), 0).unwrap_err();
    assert!(e.to_string().contains("subPath"), "{e}");
    let e = spec_json(&RULES.replace("HostToContainer", "Bidirectional"), 0).unwrap_err();
    assert!(e.to_string().contains("privileged"), "{e}");
}

#[test]
fn unsafe_sysctls_are_refused() {
    let e = spec_json(
        &RULES.replace("net.ipv4.ip_unprivileged_port_start", "kernel.msgmax"),
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("SysctlForbidden"), "{e}");
}

#[test]
fn oom_score_adj_is_not_lowered_below_what_the_agent_may_set() {
    let p = pod("metadata: {name: g, uid: u}\nspec:\n  containers: [{name: c, image: x, resources: {limits: {cpu: 1, memory: 1Gi}}}]\n");
    let adj = |min: i32| {
        let n = NodeInfo {
            min_oom_score_adj: min,
            apparmor: false,
            ..node()
        };
        let s = render_with(&p, 0, &image(IMAGE), Path::new("/nonexistent"), &n).unwrap();
        stable_json(&s)["process"]["oomScoreAdj"].clone()
    };
    assert_eq!(adj(-1000), -997);
    assert_eq!(adj(0), 0);
}
