//! Safe updates against a real registry and real containers: `hostlet auto-update`
//! (and `--dry-run`) picking up a tag pushed anew, a new digest that crashes rolled
//! back, and a manifest with `hostlet.io/rollback: "true"` edited into a broken revision
//! going back to the previous one until the next edit.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

/// Pushes tag `from` of the test image (`test` or `entry`: the same rootfs, different
/// configs, so different digests) to `to` in `reg`.
fn push_as(reg: &Registry, from: &str, to: &str) {
    let src = format!("oci:{}:{from}", test_image_layout().display());
    let dst = format!("docker://{}", reg.image(to));
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false", &src, &dst])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {src} {dst}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A shell that stays (its command line holds the marker) and exits on SIGTERM.
const KEEP: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

fn hostlet(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .arg(args[0])
        .arg("--root-dir")
        .arg(root)
        .args(&args[1..])
        .output()
        .expect("run hostlet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The pod as `hostlet inspect` shows it, if the agent knows it.
fn inspect(f: &Fixture, name: &str) -> Option<serde_json::Value> {
    let o = hostlet(&f.dirs.root, &["inspect", name]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

/// The imageID of the pod's running, ready container `c`.
fn running_digest(pod: &serde_json::Value, c: &str) -> Option<String> {
    let st = pod["status"]["containerStatuses"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == c)?
        .clone();
    (st["state"]["running"].is_object() && st["ready"] == true)
        .then(|| st["imageID"].as_str().map(str::to_string))
        .flatten()
        .filter(|d| !d.is_empty())
}

fn rolled_back(pod: &serde_json::Value) -> Option<serde_json::Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "hostlet.io/RolledBack")
        .cloned()
}

/// The UPDATED column of `container`'s row in `hostlet auto-update`'s table.
fn updated(table: &str, container: &str) -> String {
    let row = table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(container))
        .unwrap_or_else(|| panic!("no row for {container} in:\n{table}"));
    row.split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string()
}

fn auto_update_pod(name: &str, image: &str, extra_annotations: &str, container: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations:
    hostlet.io/auto-update: registry
{extra_annotations}
spec:
  terminationGracePeriodSeconds: 2
  containers:
{container}    image: {image}
"#
    )
}

#[test]
fn auto_update_picks_up_a_tag_pushed_anew_and_dry_run_changes_nothing() {
    let f = Fixture::new();
    push_as(&f.reg, "entry", "auto");
    let marker = format!("au-{}", std::process::id());
    let container =
        format!("  - name: app\n    command: [\"sh\", \"-c\", \"{KEEP} # {marker}\"]\n");
    write_manifest(
        &f.dirs,
        "web.yaml",
        &auto_update_pod("web", &f.reg.image("auto"), "", &container),
    );
    let name = format!("web-{NODE_NAME}");
    let first = f.wait("the pod running", || {
        inspect(&f, &name).and_then(|p| running_digest(&p, "app"))
    });
    let pid = f.container_pid(&marker);

    let o = hostlet(&f.dirs.root, &["auto-update", "--dry-run"]);
    assert!(o.status.success(), "{o:?}");
    let table = stdout(&o);
    assert!(table.starts_with("UNIT"), "{table}");
    assert_eq!(updated(&table, "app"), "false", "{table}");

    push_as(&f.reg, "test", "auto");
    let o = hostlet(&f.dirs.root, &["auto-update", "--dry-run"]);
    assert!(o.status.success(), "{o:?}");
    let table = stdout(&o);
    assert_eq!(updated(&table, "app"), "pending", "{table}");
    assert!(table.contains(&format!("default/{name}")), "{table}");
    // A dry run changes nothing: the same container, on the same image.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(find_pids_by_cmdline(&marker), [pid]);
    let pod = inspect(&f, &name).unwrap();
    assert_eq!(running_digest(&pod, "app").as_deref(), Some(first.as_str()));

    let o = hostlet(&f.dirs.root, &["auto-update", "-o", "json"]);
    assert!(o.status.success(), "{o:?}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &report["rows"][0];
    assert_eq!(row["updated"], "true", "{report}");
    let latest = row["latest"].as_str().unwrap().to_string();
    assert_ne!(latest, first);
    // The pod restarts on the new digest, gracefully (the old container is stopped first).
    let now = f.wait("the pod running the new digest", || {
        inspect(&f, &name)
            .and_then(|p| running_digest(&p, "app"))
            .filter(|d| *d == latest)
    });
    assert_eq!(now, latest);
    let new_pid = f.container_pid(&marker);
    assert_ne!(new_pid, pid);
    assert!(!process_exists(pid));
    let pod = inspect(&f, &name).unwrap();
    let image = pod["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(image.ends_with(&format!("@{latest}")), "{image}");
    // Nothing newer now.
    let table = stdout(&hostlet(&f.dirs.root, &["auto-update", "--dry-run"]));
    assert_eq!(updated(&table, "app"), "false", "{table}");
}

#[test]
fn a_new_digest_whose_container_exits_is_rolled_back() {
    let f = Fixture::with_args(&["--crash-loop-backoff-initial", "2s"])
        .patient(Duration::from_secs(90));
    push_as(&f.reg, "entry", "auto");
    // Only args: with `entry` (ENTRYPOINT sh -c) this runs; with `test` (no ENTRYPOINT)
    // the container cannot start, so the new digest crash-loops.
    let marker = format!("rb-{}", std::process::id());
    let container = format!("  - name: app\n    args: [\"{KEEP} # {marker}\"]\n");
    write_manifest(
        &f.dirs,
        "crash.yaml",
        &auto_update_pod(
            "crash",
            &f.reg.image("auto"),
            "    hostlet.io/rollback-after: 60s",
            &container,
        ),
    );
    let name = format!("crash-{NODE_NAME}");
    let good = f.wait("the pod running", || {
        inspect(&f, &name).and_then(|p| running_digest(&p, "app"))
    });
    push_as(&f.reg, "test", "auto");
    let o = hostlet(&f.dirs.root, &["auto-update", "-o", "json"]);
    assert!(o.status.success(), "{o:?}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["rows"][0]["updated"], "true", "{report}");
    let bad = report["rows"][0]["latest"].as_str().unwrap().to_string();

    let cond = f.wait("the rollback condition", || {
        inspect(&f, &name).and_then(|p| rolled_back(&p))
    });
    let message = cond["message"].as_str().unwrap();
    assert!(message.contains(&bad), "{cond}");
    assert_eq!(cond["reason"], "CrashLoopBackOff", "{cond}");
    // Back on the digest that was Ready, and it stays there.
    f.wait("the pod running the old digest again", || {
        inspect(&f, &name)
            .and_then(|p| running_digest(&p, "app"))
            .filter(|d| *d == good)
    });
    f.container_pid(&marker);
    let table = stdout(&hostlet(&f.dirs.root, &["pods"]));
    assert!(table.contains("Running/RolledBack"), "{table}");
    // The failed digest is not tried again.
    let table = stdout(&hostlet(&f.dirs.root, &["auto-update"]));
    assert_eq!(updated(&table, "app"), "false", "{table}");
    std::thread::sleep(Duration::from_secs(3));
    let pod = inspect(&f, &name).unwrap();
    assert_eq!(running_digest(&pod, "app").as_deref(), Some(good.as_str()));
}

fn rollback_pod(marker: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: guarded
  annotations:
    hostlet.io/rollback: "true"
    hostlet.io/rollback-after: 30s
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: IMAGE
    command: ["sh", "-c", "{script} # {marker}"]
"#
    )
}

#[test]
fn a_broken_manifest_revision_is_rolled_back_until_the_next_edit() {
    let mut f = Fixture::with_args(&["--crash-loop-backoff-initial", "2s"])
        .patient(Duration::from_secs(90));
    let image = f.image();
    let pid = std::process::id();
    let (v1, v2, v3) = (
        format!("v1-{pid}"),
        format!("v2-{pid}"),
        format!("v3-{pid}"),
    );
    let write = |marker: &str, script: &str| {
        let yaml = rollback_pod(marker, script).replace("IMAGE", &image);
        write_manifest(&f.dirs, "guarded.yaml", &yaml);
    };
    let name = format!("guarded-{NODE_NAME}");
    let uid = |p: &serde_json::Value| p["metadata"]["uid"].as_str().unwrap().to_string();

    write(&v1, KEEP);
    let good = f.wait("v1 Ready", || {
        inspect(&f, &name).filter(|p| running_digest(p, "app").is_some())
    });
    let good_uid = uid(&good);
    let v1_pid = f.container_pid(&v1);
    // v1 proved Ready (it stays Ready for 10 s): the revision to go back to.
    f.log_has(&format!(
        "new revision is Ready pod=default/{name} uid={good_uid}"
    ));

    write(&v2, "exit 3");
    f.wait("v2 started", || {
        inspect(&f, &name)
            .filter(|p| uid(p) != good_uid)
            .map(|_| ())
    });
    let bad_uid = uid(&inspect(&f, &name).unwrap());
    let cond = f.wait("v1 back after the rollback", || {
        inspect(&f, &name)
            .filter(|p| uid(p) == good_uid && running_digest(p, "app").is_some())
            .and_then(|p| rolled_back(&p))
    });
    assert!(
        cond["message"].as_str().unwrap().contains(&bad_uid),
        "{cond}"
    );
    assert!(!process_exists(v1_pid), "v1 was stopped for v2");
    let v1_again = f.container_pid(&v1);
    // The broken file is unchanged: v1 keeps running (no flapping back to v2).
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(find_pids_by_cmdline(&v1), [v1_again]);
    assert_eq!(uid(&inspect(&f, &name).unwrap()), good_uid);
    // Nor after an agent restart: the held-back revision and the report are recorded.
    f.agent.as_mut().unwrap().sigterm_and_wait();
    f.agent = Some(Agent::start_with(
        &f.dirs,
        Some(&f.reg),
        &["--crash-loop-backoff-initial", "2s"],
    ));
    f.wait("the rollback reported again", || {
        inspect(&f, &name)
            .filter(|p| uid(p) == good_uid)
            .and_then(|p| rolled_back(&p))
    });
    // v1 runs (the broken v2 is not tried again after the restart).
    f.container_pid(&v1);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(find_pids_by_cmdline(&v1).len(), 1);
    assert!(find_pids_by_cmdline(&v2).is_empty());
    assert_eq!(uid(&inspect(&f, &name).unwrap()), good_uid);

    write(&v3, KEEP);
    f.container_pid(&v3);
    let pod = f.wait("v3 Ready and the rollback cleared", || {
        inspect(&f, &name)
            .filter(|p| uid(p) != good_uid && running_digest(p, "app").is_some())
            .filter(|p| rolled_back(p).is_none())
    });
    assert_ne!(uid(&pod), bad_uid);
    f.gone(&v1);
}

/// Imports tag `from` of the test image into the agent's store as `name`.
fn import_as(f: &Fixture, from: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let src = format!("oci:{}:{from}", test_image_layout().display());
    let dst = format!("oci-archive:{}:{name}", archive.display());
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", &src, &dst])
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo copy {src} {dst}: {out:?}");
    let o = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["image", "import", "--root-dir"])
        .arg(&f.dirs.root)
        .arg(&archive)
        .output()
        .expect("run hostlet image import");
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn local_auto_update_uses_a_newer_imported_image() {
    let f = Fixture::new();
    import_as(&f, "entry", "appliance/web:1");
    let marker = format!("lo-{}", std::process::id());
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: local
  annotations:
    hostlet.io/auto-update: local
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: appliance/web:1
    imagePullPolicy: Never
    command: ["sh", "-c", "{KEEP} # {marker}"]
"#
    );
    write_manifest(&f.dirs, "local.yaml", &yaml);
    let name = format!("local-{NODE_NAME}");
    let first = f.wait("the pod running", || {
        inspect(&f, &name).and_then(|p| running_digest(&p, "app"))
    });
    let table = stdout(&hostlet(&f.dirs.root, &["auto-update", "--dry-run"]));
    assert_eq!(updated(&table, "app"), "false", "{table}");

    import_as(&f, "test", "appliance/web:1");
    let table = stdout(&hostlet(&f.dirs.root, &["auto-update", "--dry-run"]));
    assert_eq!(updated(&table, "app"), "pending", "{table}");
    let o = hostlet(&f.dirs.root, &["auto-update"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(updated(&stdout(&o), "app"), "true", "{}", stdout(&o));
    let now = f.wait("the pod running the imported digest", || {
        inspect(&f, &name)
            .and_then(|p| running_digest(&p, "app"))
            .filter(|d| *d != first)
    });
    f.container_pid(&marker);
    let table = stdout(&hostlet(&f.dirs.root, &["auto-update", "--dry-run"]));
    assert_eq!(updated(&table, "app"), "false", "{table}");
    assert!(now.starts_with("sha256:"));
}
