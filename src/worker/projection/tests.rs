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

fn pod(volumes: &str) -> Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, labels: {{app: a}}}}\nspec:\n  containers: [{{name: c, image: busybox}}]\n  volumes:\n{volumes}"
    );
    crate::manifest::decode(Path::new("/m/p.yaml"), text.as_bytes(), "n")
        .unwrap()
        .pod
}

fn node() -> NodeInfo {
    NodeInfo {
        name: "n".into(),
        host_ip: "127.0.0.1".into(),
        cpu_milli: 1000,
        memory_bytes: 1 << 30,
        seccomp_default: false,
        seccomp_dir: PathBuf::new(),
        pod_max_pids: 0,
        min_oom_score_adj: -1000,
        apparmor: false,
    }
}

fn set() -> ObjectSet {
    ObjectSet::new([
        object("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1', b: '2'}\n"),
        object("apiVersion: v1\nkind: Secret\nmetadata: {name: sec}\nstringData: {pass: pw}\n"),
    ])
}

fn files(p: &Payload) -> Vec<(String, String, u32)> {
    p.iter()
        .map(|(k, f)| {
            (
                k.clone(),
                String::from_utf8_lossy(&f.data).into_owned(),
                f.mode,
            )
        })
        .collect()
}

fn payload_of(volume: &str) -> Result<Payload, ProjectionError> {
    let p = pod(volume);
    let v = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    payload(&p, v, &set(), &node())
}

#[test]
fn all_keys_with_default_mode_or_items_with_their_modes() {
    let p = payload_of("  - {name: v, configMap: {name: cfg}}\n").unwrap();
    assert_eq!(
        files(&p),
        [
            ("a".into(), "1".into(), 0o644),
            ("b".into(), "2".into(), 0o644)
        ]
    );
    let p = payload_of(
        "  - {name: v, secret: {secretName: sec, defaultMode: 0o400, items: [{key: pass, path: x/p}, {key: pass, path: q, mode: 0o600}]}}\n",
    )
    .unwrap();
    assert_eq!(
        files(&p),
        [
            ("q".into(), "pw".into(), 0o600),
            ("x/p".into(), "pw".into(), 0o400)
        ]
    );
}

#[test]
fn missing_objects_and_keys_fail_unless_optional() {
    let e = payload_of("  - {name: v, configMap: {name: nope}}\n").unwrap_err();
    assert_eq!(e.to_string(), "configmap \"default/nope\" not found");
    assert!(
        payload_of("  - {name: v, configMap: {name: nope, optional: true}}\n")
            .unwrap()
            .is_empty()
    );
    let e = payload_of("  - {name: v, configMap: {name: cfg, items: [{key: z, path: z}]}}\n")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "couldn't find key z in ConfigMap default/cfg"
    );
    let p = payload_of(
        "  - {name: v, configMap: {name: cfg, optional: true, items: [{key: z, path: z}, {key: a, path: a}]}}\n",
    )
    .unwrap();
    assert_eq!(files(&p), [("a".into(), "1".into(), 0o644)]);
}

#[test]
fn projected_merges_config_maps_secrets_and_downward_api() {
    let p = payload_of(
        "  - name: v\n    projected:\n      defaultMode: 0o440\n      sources:\n      - configMap: {name: cfg, items: [{key: a, path: cm/a}]}\n      - secret: {name: sec}\n      - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}\n",
    )
    .unwrap();
    assert_eq!(
        files(&p),
        [
            ("cm/a".into(), "1".into(), 0o440),
            ("labels".into(), "app=\"a\"\n".into(), 0o440),
            ("pass".into(), "pw".into(), 0o440),
        ]
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn atomic_writer_swaps_data_and_prunes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("v");
    let file = |data: &str, mode| FileData {
        data: data.as_bytes().to_vec(),
        mode,
    };
    let mut p = Payload::new();
    p.insert("a".into(), file("1", 0o644));
    p.insert("sub/b".into(), file("2", 0o600));
    assert!(write_atomic(&dir, &p, None).unwrap());
    assert_eq!(read(&dir, "a"), "1");
    assert_eq!(read(&dir, "sub/b"), "2");
    assert_eq!(
        std::fs::read_link(dir.join("a")).unwrap(),
        Path::new("..data/a")
    );
    let first = std::fs::read_link(dir.join("..data")).unwrap();
    let mode = std::fs::metadata(dir.join("sub/b"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Unchanged: nothing written.
    assert!(!write_atomic(&dir, &p, None).unwrap());
    assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
    // Changed: a new timestamped directory, the old one and the removed key gone.
    p.remove("sub/b");
    p.insert("a".into(), file("3", 0o644));
    assert!(write_atomic(&dir, &p, None).unwrap());
    assert_eq!(read(&dir, "a"), "3");
    assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
    assert!(!dir.join(&first).exists());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}"); // a, ..data, ..<timestamp>
}

#[test]
fn fs_group_owns_files_and_can_read_them() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("v");
    let mut p = Payload::new();
    p.insert(
        "k".into(),
        FileData {
            data: b"x".to_vec(),
            mode: 0o400,
        },
    );
    write_atomic(&dir, &p, Some(1234)).unwrap();
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.join("k")).unwrap();
    assert_eq!(meta.gid(), 1234);
    assert_eq!(meta.mode() & 0o777, 0o440);
}
