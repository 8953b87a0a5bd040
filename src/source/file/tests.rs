use std::fs;
use std::path::Path;

use tokio::time::timeout;

use super::*;
use crate::manifest::{Origin, CONFIG_SEEN_ANNOTATION};
use crate::source::list::Lister;
use crate::source::ProblemKind;

const PERIOD: Duration = Duration::from_millis(200);
const WAIT: Duration = Duration::from_secs(5);

fn pod_yaml(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: main\n    image: {image}\n"
    )
}

fn write(dir: &Path, file: &str, content: &str) {
    // Write-then-rename, as editors and config management do, so no half-written file is seen.
    // The temporary file lives outside the watched directory, so a re-list never catches it
    // (it would be reported as an ignored dotfile: a snapshot the tests do not expect).
    let tmp = dir.parent().unwrap().join(format!(
        ".{}-{file}.tmp",
        dir.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, dir.join(file)).unwrap();
}

fn start(path: &Path, period: Duration) -> mpsc::Receiver<Snapshot> {
    let (tx, rx) = mpsc::channel(16);
    let source = FileSource {
        path: path.to_path_buf(),
        node: "Node1".into(),
        period,
        strict: false,
    };
    tokio::spawn(source.run(tx));
    rx
}

async fn next(rx: &mut mpsc::Receiver<Snapshot>) -> Snapshot {
    timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a snapshot")
        .expect("source ended")
}

/// Snapshots until one satisfies `pred`.
async fn until(rx: &mut mpsc::Receiver<Snapshot>, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = timeout(deadline - Instant::now(), rx.recv())
            .await
            .expect("timed out waiting for the expected snapshot")
            .expect("source ended");
        if pred(&s) {
            return s;
        }
    }
}

fn names(s: &Snapshot) -> Vec<String> {
    s.pods.iter().map(|p| p.name().to_string()).collect()
}

async fn assert_quiet(rx: &mut mpsc::Receiver<Snapshot>, for_: Duration) {
    if let Ok(Some(s)) = timeout(for_, rx.recv()).await {
        panic!("unexpected snapshot: {:?}", names(&s));
    }
}

#[tokio::test]
async fn initial_snapshot_sorted_and_ignored_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "b.yaml", &pod_yaml("bravo", "busybox:1"));
    write(
        d,
        "a.json",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"alpha"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    );
    write(d, "c.yml", &pod_yaml("charlie", "busybox:1"));
    // Never parsed: would be duplicates (or broken) if they were.
    fs::write(d.join(".hidden.yaml"), pod_yaml("hidden", "x")).unwrap();
    fs::write(d.join("b.yaml~"), pod_yaml("backup", "x")).unwrap();
    fs::write(d.join("b.yaml.bak"), pod_yaml("backup2", "x")).unwrap();
    fs::write(d.join("README.md"), "not a pod").unwrap();
    fs::create_dir(d.join("sub.yaml")).unwrap();
    fs::write(d.join("sub.yaml/d.yaml"), pod_yaml("nested", "x")).unwrap();

    let mut rx = start(d, PERIOD);
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["alpha-node1", "bravo-node1", "charlie-node1"]);
    for p in &s.pods {
        let ann = p.pod.metadata.annotations.as_ref().unwrap();
        assert!(ann[CONFIG_SEEN_ANNOTATION]
            .parse::<jiff::Timestamp>()
            .is_ok());
        assert_eq!(
            p.pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some("node1")
        );
    }
    assert_eq!(s.pods[1].source, Origin::File(d.join("b.yaml")));
    let ignored: Vec<String> = s
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Ignored)
        .map(|p| p.origin.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(
        ignored,
        [
            ".hidden.yaml",
            "README.md",
            "b.yaml.bak",
            "b.yaml~",
            "sub.yaml"
        ]
    );
    assert_eq!(s.problems.len(), 5, "{:?}", s.problems);
    // Unchanged content: no further snapshots however often it is re-listed.
    assert_quiet(&mut rx, PERIOD * 3).await;
}

#[tokio::test]
async fn watch_reports_new_changed_and_removed_files_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A period far beyond the test's timeouts: only the watch can deliver these changes.
    let mut rx = start(d, Duration::from_secs(3600));
    assert!(next(&mut rx).await.pods.is_empty());

    write(d, "web.yaml", &pod_yaml("web", "nginx:1"));
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["web-node1"]);
    let (uid1, seen1) = (s.pods[0].uid.clone(), seen(&s, 0));

    write(d, "db.yaml", &pod_yaml("db", "postgres:16"));
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["db-node1", "web-node1"]);
    assert_eq!(s.pods[1].uid, uid1);
    assert_eq!(seen(&s, 1), seen1, "config.seen is stable for the same uid");

    fs::write(d.join("web.yaml"), pod_yaml("web", "nginx:2")).unwrap();
    let s = until(&mut rx, |s| s.pods.len() == 2 && s.pods[1].uid != uid1).await;
    assert_eq!(names(&s), ["db-node1", "web-node1"]);

    fs::remove_file(d.join("db.yaml")).unwrap();
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["web-node1"]);
}

fn seen(s: &Snapshot, i: usize) -> String {
    s.pods[i].pod.metadata.annotations.as_ref().unwrap()[CONFIG_SEEN_ANNOTATION].clone()
}

#[tokio::test]
async fn broken_file_keeps_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "web.yaml", &pod_yaml("web", "nginx:1"));
    let mut rx = start(d, PERIOD);
    let good = next(&mut rx).await;
    assert_eq!(names(&good), ["web-node1"]);

    write(
        d,
        "web.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web\n",
    );
    let s = next(&mut rx).await;
    assert_eq!(s.pods, good.pods, "the last good version keeps running");
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert_eq!(s.problems[0].kind, ProblemKind::Invalid);
    let web = d.join("web.yaml").display().to_string();
    assert!(
        s.problems[0].message.starts_with(&format!("{web}:4:")),
        "{:?}",
        s.problems
    );
    // Re-lists of the same broken file send nothing new.
    assert_quiet(&mut rx, PERIOD * 3).await;
    write(
        d,
        "web.yaml",
        &pod_yaml("web", "nginx:1").replace(
            "image:",
            "volumeDevices: [{name: d, devicePath: /dev/d}]\n    image:",
        ),
    );
    let s = next(&mut rx).await;
    assert_eq!(s.pods, good.pods);
    assert_eq!(
        s.problems[0].message,
        format!("{web}:8:5: spec.containers[0].volumeDevices: not supported by hostlet yet")
    );
    assert_quiet(&mut rx, PERIOD * 3).await;

    write(d, "web.yaml", &pod_yaml("web", "nginx:2"));
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["web-node1"]);
    assert_ne!(s.pods[0].uid, good.pods[0].uid);
    assert!(s.problems.is_empty(), "{:?}", s.problems);

    // A broken file with no good version yet runs nothing, and does not disturb the others.
    write(d, "new.yaml", "kind: List\napiVersion: v1\n");
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["web-node1"]);
    assert!(s.problems[0]
        .message
        .contains("kind \"List\" is not supported"));
    assert_quiet(&mut rx, PERIOD * 3).await;
    fs::remove_file(d.join("web.yaml")).unwrap();
    assert!(next(&mut rx).await.pods.is_empty());
}

#[tokio::test]
async fn duplicates_first_file_wins() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.yaml", &pod_yaml("web", "nginx:1"));
    write(d, "b.yaml", &pod_yaml("web", "nginx:2"));
    write(d, "c.yaml", &pod_yaml("other", "nginx:2"));
    let mut rx = start(d, PERIOD);
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["web-node1", "other-node1"]);
    assert_eq!(s.pods[0].source, Origin::File(d.join("a.yaml")));
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    let dup = &s.problems[0];
    assert_eq!(dup.kind, ProblemKind::Duplicate);
    assert_eq!(dup.origin, d.join("b.yaml").display().to_string());
    assert!(dup.message.contains("a.yaml"), "{}", dup.message);

    fs::remove_file(d.join("a.yaml")).unwrap();
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["web-node1", "other-node1"]);
    assert_eq!(s.pods[0].source, Origin::File(d.join("b.yaml")));
}

#[tokio::test]
async fn missing_dir_is_empty_and_picked_up_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("manifests");
    let mut rx = start(&d, PERIOD);
    assert!(next(&mut rx).await.pods.is_empty());

    fs::create_dir(&d).unwrap();
    write(&d, "web.yaml", &pod_yaml("web", "nginx:1"));
    // A re-list may catch the writer's temporary dotfile first: a snapshot with a problem.
    let s = until(&mut rx, |s| !s.pods.is_empty()).await;
    assert_eq!(names(&s), ["web-node1"]);

    // Removed and recreated: the watch follows the new directory.
    fs::remove_dir_all(&d).unwrap();
    assert!(next(&mut rx).await.pods.is_empty());
    fs::create_dir(&d).unwrap();
    write(&d, "db.yaml", &pod_yaml("db", "postgres:16"));
    let s = until(&mut rx, |s| !s.pods.is_empty()).await;
    assert_eq!(names(&s), ["db-node1"]);
}

#[tokio::test]
async fn single_file_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("pod.conf");
    write(d, "pod.conf", &pod_yaml("web", "nginx:1"));
    write(d, "other.yaml", &pod_yaml("other", "nginx:1"));
    let mut rx = start(&file, Duration::from_secs(3600));
    let s = next(&mut rx).await;
    assert_eq!(
        names(&s),
        ["web-node1"],
        "a file named explicitly is read whatever its extension"
    );
    let uid = s.pods[0].uid.clone();

    write(d, "pod.conf", &pod_yaml("web", "nginx:2"));
    let s = next(&mut rx).await;
    assert_ne!(s.pods[0].uid, uid);

    write(d, "other.yaml", &pod_yaml("other", "nginx:2"));
    assert_quiet(&mut rx, Duration::from_millis(300)).await;

    fs::remove_file(&file).unwrap();
    assert!(next(&mut rx).await.pods.is_empty());
}

#[tokio::test]
async fn stops_when_receiver_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel(1);
    let source = FileSource {
        path: dir.path().to_path_buf(),
        node: "n".into(),
        period: PERIOD,
        strict: false,
    };
    let task = tokio::spawn(source.run(tx));
    drop(rx);
    timeout(WAIT, task)
        .await
        .expect("source did not stop")
        .unwrap();
}

#[test]
fn symlinks_and_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::write(
        elsewhere.path().join("real.yaml"),
        pod_yaml("linked", "nginx:1"),
    )
    .unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("real.yaml"), d.join("linked.yaml")).unwrap();
    std::os::unix::fs::symlink(d.join("nowhere.yaml"), d.join("dangling.yaml")).unwrap();
    write(d, "big.yaml", &pod_yaml("big", "nginx:1"));

    let mut lister = Lister::new(d.to_path_buf(), "node1".into(), false);
    let s = lister.list().unwrap();
    assert_eq!(names(&s), ["big-node1", "linked-node1"]);
    let seen_before = seen(&s, 0);

    // Too large: an error for that file, which keeps its last good version.
    let mut huge = pod_yaml("big", "nginx:2");
    huge.push_str(&format!(
        "# {}\n",
        "x".repeat(crate::source::MAX_MANIFEST_SIZE as usize)
    ));
    write(d, "big.yaml", &huge);
    let s = lister.list().unwrap();
    assert_eq!(names(&s), ["big-node1", "linked-node1"]);
    assert_eq!(
        s.pods[0].pod.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1")
    );
    assert_eq!(seen(&s, 0), seen_before);

    fs::remove_file(elsewhere.path().join("real.yaml")).unwrap();
    assert_eq!(
        names(&lister.list().unwrap()),
        ["big-node1"],
        "a dangling symlink runs nothing"
    );
}

#[tokio::test]
async fn writable_files_and_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.yaml", &pod_yaml("a", "busybox:1"));
    write(d, "b.yaml", &pod_yaml("b", "busybox:1"));
    let mut rx = start(d, PERIOD);
    assert_eq!(names(&next(&mut rx).await), ["a-node1", "b-node1"]);

    // A group-writable file: its pod stops, even the version that ran before.
    fs::set_permissions(d.join("b.yaml"), fs::Permissions::from_mode(0o664)).unwrap();
    let s = next(&mut rx).await;
    assert_eq!(names(&s), ["a-node1"]);
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert_eq!(s.problems[0].kind, ProblemKind::Insecure);
    let msg = &s.problems[0].message;
    assert!(
        msg.contains(&d.join("b.yaml").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("mode 0664"), "{msg}");
    assert!(msg.contains("owner uid"), "{msg}");
    fs::set_permissions(d.join("b.yaml"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(names(&next(&mut rx).await), ["a-node1", "b-node1"]);

    // A world-writable directory: nothing from it runs.
    fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    let s = until(&mut rx, |s| s.pods.is_empty()).await;
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert_eq!(s.problems[0].kind, ProblemKind::Insecure);
    assert!(s.problems[0].message.contains("manifest directory"));
    assert!(s.problems[0].message.contains("mode 0777"));
    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    let s = until(&mut rx, |s| !s.pods.is_empty()).await;
    assert_eq!(names(&s), ["a-node1", "b-node1"]);
}

#[test]
fn unknown_fields_warn_or_with_strict_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let typo = pod_yaml("web", "busybox:1")
        .replace("    image:", "    imagePullPolcy: Always\n    image:");
    fs::write(d.join("web.yaml"), &typo).unwrap();
    let s = Lister::new(d.to_path_buf(), "node1".into(), false)
        .list()
        .unwrap();
    assert_eq!(names(&s), ["web-node1"]);
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert_eq!(s.problems[0].kind, ProblemKind::Warning);
    assert!(
        s.problems[0]
            .message
            .starts_with("8:5: spec.containers[0].imagePullPolcy: unknown field"),
        "{:?}",
        s.problems
    );
    assert_eq!(
        s.problems[0].origin,
        d.join("web.yaml").display().to_string()
    );

    let s = Lister::new(d.to_path_buf(), "node1".into(), true)
        .list()
        .unwrap();
    assert!(s.pods.is_empty());
    assert_eq!(s.problems[0].kind, ProblemKind::Invalid);
    assert!(
        s.problems[0]
            .message
            .contains("web.yaml:8:5: spec.containers[0].imagePullPolcy: unknown field"),
        "{:?}",
        s.problems
    );
}

fn write_mode(dir: &Path, file: &str, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    write(dir, file, content);
    fs::set_permissions(dir.join(file), fs::Permissions::from_mode(mode)).unwrap();
}

const SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  pass: p1\n";

#[test]
fn objects_listed_beside_pods_duplicates_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.yaml", &pod_yaml("web", "busybox:1"));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  k: v\n";
    write_mode(d, "b.yaml", cm, 0o644);
    write_mode(d, "c.yaml", cm, 0o644);
    write_mode(d, "s.yaml", SECRET, 0o600);
    let s = Lister::new(d.to_path_buf(), "node1".into(), false)
        .list()
        .unwrap();
    assert_eq!(names(&s), ["web-node1"]);
    let objs: Vec<String> = s.objects.iter().map(|o| o.full_name()).collect();
    assert_eq!(objs, ["default/cfg", "default/db"]);
    assert_eq!(s.objects[0].source, Origin::File(d.join("b.yaml")));
    assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
    assert_eq!(s.problems[0].kind, ProblemKind::Duplicate);
    assert!(s.problems[0].message.contains("ConfigMap default/cfg"));
}

#[test]
fn readable_secret_file_is_refused_with_chmod_600() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_mode(d, "s.yaml", SECRET, 0o644);
    let mut lister = Lister::new(d.to_path_buf(), "node1".into(), false);
    let s = lister.list().unwrap();
    assert!(s.objects.is_empty());
    assert_eq!(s.problems[0].kind, ProblemKind::Insecure);
    let msg = &s.problems[0].message;
    assert!(msg.contains("chmod 600"), "{msg}");
    assert!(msg.contains("mode 0644"), "{msg}");
    assert!(!msg.contains("p1"), "{msg}");
    fs::set_permissions(
        d.join("s.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // Same bytes, new mode: accepted on the next listing.
    let s = lister.list().unwrap();
    assert_eq!(s.objects.len(), 1, "{:?}", s.problems);
}

#[test]
fn immutable_object_change_refused_last_good_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v = |val: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\nimmutable: true\ndata:\n  k: {val}\n")
    };
    write(d, "cm.yaml", &v("one"));
    let mut lister = Lister::new(d.to_path_buf(), "node1".into(), false);
    let s = lister.list().unwrap();
    assert_eq!(s.objects[0].data["k"], b"one");
    write(d, "cm.yaml", &v("two"));
    let s = lister.list().unwrap();
    assert_eq!(s.objects[0].data["k"], b"one");
    assert_eq!(s.problems[0].kind, ProblemKind::Invalid);
    assert!(
        s.problems[0].message.contains("is immutable"),
        "{:?}",
        s.problems
    );
    // Back to the content it had: fine again.
    write(d, "cm.yaml", &v("one"));
    let s = lister.list().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    // A mutable object changes.
    write(d, "cm.yaml", &v("three").replace("immutable: true\n", ""));
    let s = lister.list().unwrap();
    assert!(
        s.problems[0].message.contains("is immutable"),
        "{:?}",
        s.problems
    );
}
