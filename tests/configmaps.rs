//! ConfigMaps and Secrets from the manifest directory with real containers (issue 17):
//! volumes, env, items and modes, subPath, live updates through the `..data` swap,
//! CreateContainerConfigError until an object appears, secrets on tmpfs and never shown.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn config_map(name: &str, greeting: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  greeting: {greeting}\n  level: \"3\"\n")
}

fn secret(name: &str, password: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  password: {password}\n")
}

/// The pod's directory under the root dir (the only pod of the test).
fn pod_dir(f: &Fixture) -> std::path::PathBuf {
    f.wait("the pod directory", || {
        let mut dirs: Vec<_> = fs::read_dir(f.dirs.root.join("pods"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        (dirs.len() == 1).then(|| dirs.remove(0))
    })
}

fn fstype_at(point: &Path) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let point = point.to_string_lossy().into_owned();
    info.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        (fields.get(4) == Some(&point.as_str())).then(|| fields[sep + 1].to_string())
    })
}

#[test]
fn volumes_env_items_modes_subpath_and_live_update() {
    let port = free_port().to_string();
    let f = Fixture::with_args(&["--read-only-port", &port]);
    let marker = format!("cm-reader-{}", std::process::id());
    let password = format!("pw-{}-Zq9", std::process::id());
    write_manifest(&f.dirs, "cm.yaml", &config_map("app", "hello"));
    write_private_manifest(&f.dirs, "secret.yaml", &secret("db", &password));
    let script = format!(
        r#"echo "env greeting=$GREETING level=$APP_level"
[ -n "$PASS" ] && [ "$PASS" = "$(cat /etc/sec/password)" ] && echo "pass-ok len=${{#PASS}}"
echo "modes sec=$(stat -Lc %a /etc/sec/password) item=$(stat -Lc %a /etc/items/dir/g.txt) all=$(stat -Lc %a /etc/cfg/greeting)"
touch /etc/cfg/x 2>/dev/null || echo ro-ok
echo "item=$(cat /etc/items/dir/g.txt) sub=$(cat /etc/greeting.txt)"
saw=0
while true; do
  v=$(cat /etc/cfg/greeting)
  case "$v" in hello|world) ;; *) echo "BAD[$v]";; esac
  if [ "$v" = world ] && [ $saw = 0 ]; then saw=1; echo "SAW world sub=$(cat /etc/greeting.txt) env=$GREETING"; fi
done # {marker}"#
    );
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: cmpod
spec:
  volumes:
  - name: cfg
    configMap: {{name: app}}
  - name: items
    configMap:
      name: app
      items: [{{key: greeting, path: dir/g.txt, mode: 0o600}}]
  - name: sec
    secret: {{secretName: db, defaultMode: 0o400}}
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", {script:?}]
    env:
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: app, key: greeting}}}}
    - name: PASS
      valueFrom: {{secretKeyRef: {{name: db, key: password}}}}
    envFrom:
    - configMapRef: {{name: app}}
      prefix: APP_
    volumeMounts:
    - {{name: cfg, mountPath: /etc/cfg}}
    - {{name: items, mountPath: /etc/items}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: cfg, mountPath: /etc/greeting.txt, subPath: greeting}}
"#,
        image = f.image()
    );
    write_manifest(&f.dirs, "pod.yaml", &pod);
    let out = f.output("cmpod", "main", "sub=");
    let all = out.join("\n");
    assert!(all.contains("env greeting=hello level=3"), "{all}");
    assert!(
        all.contains(&format!("pass-ok len={}", password.len())),
        "{all}"
    );
    assert!(all.contains("modes sec=400 item=600 all=644"), "{all}");
    assert!(all.contains("item=hello sub=hello"), "{all}");
    assert!(all.contains("ro-ok"), "configMap volume writable: {all}");
    let pid = f.container_pid(&marker);

    // The secret volume is a tmpfs; the configMap volume is on disk.
    let dir = pod_dir(&f);
    assert_eq!(
        fstype_at(&dir.join("volumes/sec")).as_deref(),
        Some("tmpfs"),
        "secret volume mount"
    );
    assert_eq!(fstype_at(&dir.join("volumes/cfg")), None);
    // Nor is the env value (PASS) on disk: the bundle's config.json is a link into a tmpfs.
    let on_disk = Command::new("sh")
        .arg("-c")
        .arg(r#"find "$1" -xdev -type f -print0 | xargs -0 grep -lF -- "$2""#)
        .args(["sh", f.dirs.root.to_str().unwrap(), &password])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&on_disk.stdout);
    assert!(found.is_empty(), "secret value on disk in: {found}");
    assert_eq!(
        fstype_at(&dir.join("secret-env")).as_deref(),
        Some("tmpfs"),
        "secret env tmpfs"
    );
    let data = fs::read_link(dir.join("volumes/cfg/..data")).unwrap();
    assert!(data.to_string_lossy().starts_with(".."), "{data:?}");

    // An edit reaches the running container within 2 s, atomically; env and subPath keep
    // their start-time values.
    let t0 = Instant::now();
    write_manifest(&f.dirs, "cm.yaml", &config_map("app", "world"));
    let out = f.output("cmpod", "main", "SAW world");
    let elapsed = t0.elapsed();
    assert!(
        elapsed < Duration::from_secs(2) * time_scale(),
        "update took {elapsed:?}"
    );
    let all = out.join("\n");
    assert!(all.contains("SAW world sub=hello env=hello"), "{all}");
    let new_data = fs::read_link(dir.join("volumes/cfg/..data")).unwrap();
    assert_ne!(new_data, data);
    // A few more swaps while the reader loops.
    for i in 0..5 {
        let g = if i % 2 == 0 { "hello" } else { "world" };
        write_manifest(&f.dirs, "cm.yaml", &config_map("app", g));
        std::thread::sleep(Duration::from_millis(300));
    }
    let all = cri_log_messages(&f.dirs.logs, "cmpod", "main").join("\n");
    assert!(
        !all.contains("BAD["),
        "a reader saw a partial update:\n{all}"
    );
    assert_eq!(
        f.container_pid(&marker),
        pid,
        "the container was not restarted"
    );
    let log = f.dirs.agent_log();
    assert!(log.contains("volume updated"), "{log}");

    // The secret value is nowhere the operator looks.
    let root = f.dirs.root.clone();
    let mut seen = vec![("agent log", log)];
    let (ok, inspect) = hostlet_cli(&root, &["inspect", "cmpod"]);
    assert!(ok, "{inspect}");
    seen.push(("inspect", inspect));
    let (ok, pods) = hostlet_cli(&root, &["pods", "-o", "json"]);
    assert!(ok, "{pods}");
    seen.push(("status api", pods));
    let addr = format!("127.0.0.1:{port}");
    let (code, metrics) = http_get(&addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    seen.push(("metrics", metrics));
    let (_, api_pods) = http_get(&addr, "/pods").expect("GET /pods");
    seen.push(("read-only /pods", api_pods));
    let manifest = f.dirs.manifests.join("pod.yaml");
    let manifest = manifest.to_str().unwrap();
    let (ok, render) = hostlet_cli(
        &root,
        &[
            "render",
            "--insecure-registry",
            &f.reg.addr,
            "--hostname-override",
            NODE_NAME,
            manifest,
        ],
    );
    assert!(ok, "{render}");
    assert!(render.contains("PASS=<redacted>"), "{render}");
    assert!(render.contains("GREETING="), "{render}");
    seen.push(("render", render));
    for (what, text) in &seen {
        assert!(!text.contains(&password), "{what} shows the secret value");
    }
}

#[test]
fn missing_object_waits_with_create_container_config_error_then_starts() {
    let f = Fixture::new();
    let marker = format!("cm-late-{}", std::process::id());
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: late
spec:
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "echo got=$LEVEL; sleep 3600 # {marker}"]
    env:
    - name: LEVEL
      valueFrom: {{configMapKeyRef: {{name: later, key: level}}}}
"#,
        image = f.image()
    );
    write_manifest(&f.dirs, "pod.yaml", &pod);
    let status = f.wait("CreateContainerConfigError in the status", || {
        let (ok, out) = hostlet_cli(&f.dirs.root, &["pods", "-o", "json"]);
        (ok && out.contains("CreateContainerConfigError")).then_some(out)
    });
    assert!(
        status.contains(r#"configmap \"default/later\" not found"#),
        "{status}"
    );
    assert!(find_pids_by_cmdline(&marker).is_empty());
    // Missing key: still waiting, now naming the key.
    write_manifest(
        &f.dirs,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\ndata: {other: x}\n",
    );
    f.wait("the missing key in the status", || {
        let (ok, out) = hostlet_cli(&f.dirs.root, &["pods", "-o", "json"]);
        (ok && out.contains("couldn't find key level in ConfigMap default/later")).then_some(())
    });
    write_manifest(&f.dirs, "cm.yaml", &config_map("later", "x"));
    let out = f.output("late", "main", "got=");
    assert!(out.join("\n").contains("got=3"), "{out:?}");
}

#[test]
fn readable_secret_manifest_is_refused_until_chmod_600() {
    let f = Fixture::new();
    let marker = format!("cm-secret-{}", std::process::id());
    let password = format!("pw-{}-Kx7", std::process::id());
    write_manifest(&f.dirs, "secret.yaml", &secret("db", &password));
    fs::set_permissions(
        f.dirs.manifests.join("secret.yaml"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sec
spec:
  # Not root: the kubelet's fsGroup gives the group read (0400 becomes 0440, group 2000).
  securityContext: {{runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000}}
  volumes:
  - {{name: s, secret: {{secretName: db, defaultMode: 0o400}}}}
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", "echo mode=$(stat -Lc '%a %g' /s/password) uid=$(id -u); wc -c /s/password; sleep 3600 # {marker}"]
    volumeMounts: [{{name: s, mountPath: /s}}]
"#,
        image = f.image()
    );
    write_manifest(&f.dirs, "pod.yaml", &pod);
    f.log_has("chmod 600");
    f.log_has(r#"secret "default/db" not found"#);
    assert!(find_pids_by_cmdline(&marker).is_empty());
    fs::set_permissions(
        f.dirs.manifests.join("secret.yaml"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = f.output("sec", "main", "/s/password");
    let want = format!("{} /s/password", password.len());
    let all = out.join("\n");
    assert!(all.contains(&want), "{out:?}");
    assert!(all.contains("mode=440 2000 uid=1000"), "{out:?}");
    assert!(!f.dirs.agent_log().contains(&password));
}
