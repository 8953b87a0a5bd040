//! Store tests without a registry: images come from archives built here (which also tests
//! import), then are listed, removed and garbage-collected.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::*;
use crate::image::store::DbFile;
use crate::image::PullPolicy;

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// An uncompressed layer tar holding `files`.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn config(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": crate::image::registry::host_arch(), "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
}

/// An oci-archive with one image per `(name, layers)`.
pub(super) fn oci_archive(images: &[(&str, &[&[u8]])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let mut manifests = Vec::new();
    let mut written = std::collections::HashSet::new();
    let mut blob = |b: &mut tar::Builder<Vec<u8>>, data: &[u8]| {
        let d = digest(data);
        if written.insert(d.clone()) {
            append(b, &format!("blobs/sha256/{}", &d[7..]), data);
        }
        d
    };
    for (name, layers) in images {
        let cfg = config(layers);
        let cfg_d = blob(&mut b, &cfg);
        let descs: Vec<_> = layers
            .iter()
            .map(|l| {
                serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blob(&mut b, l), "size": l.len()})
            })
            .collect();
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": cfg.len()},
            "layers": descs
        }))
        .unwrap();
        let md = blob(&mut b, &m);
        manifests.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": m.len(),
            "annotations": {"org.opencontainers.image.ref.name": name}}),
        );
    }
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
            .unwrap();
    append(&mut b, "index.json", &index);
    b.into_inner().unwrap()
}

/// A `docker save` archive (legacy layout) of one image.
fn docker_archive(tags: &[&str], layers: &[&[u8]]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let cfg = config(layers);
    let cfg_name = format!("{}.json", &digest(&cfg)[7..]);
    append(&mut b, &cfg_name, &cfg);
    let mut names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let n = format!("layer{i}/layer.tar");
        append(&mut b, &n, l);
        append(&mut b, &format!("layer{i}/VERSION"), b"1.0");
        names.push(n);
    }
    let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": tags, "Layers": names}]);
    append(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

fn store(dir: &Path) -> ImageStore {
    ImageStore::new(&dir.join("images"), vec![]).unwrap()
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

#[tokio::test]
async fn import_list_remove_keeps_shared_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let base = layer(&[("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")]);
    let a_top = layer(&[("a", b"a")]);
    let b_top = layer(&[("b", b"b")]);
    let oci = tmp.path().join("a.tar");
    std::fs::write(&oci, oci_archive(&[("app-a:1", &[&base, &a_top])])).unwrap();
    let docker = tmp.path().join("b.tar");
    std::fs::write(
        &docker,
        docker_archive(&["example.com/app-b:2"], &[&base, &b_top]),
    )
    .unwrap();

    let a = s.import(&oci).await.unwrap();
    assert_eq!(a[0].references, vec!["docker.io/library/app-a:1"]);
    let b = s.import(&docker).await.unwrap();
    assert_eq!(b[0].references, vec!["example.com/app-b:2"]);
    // The VERSION files were stored while streaming, then dropped as unused.
    assert_eq!(count(&tmp.path().join("images/blobs/sha256")), 7);
    assert_eq!(count(&tmp.path().join("images/layers")), 3);

    let img = s
        .ensure("example.com/app-b:2", PullPolicy::Never)
        .await
        .unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(
        img.read_file("/etc/passwd").unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(img.read_file("b").unwrap(), b"b");
    assert!(img.read_file("a").is_none());

    let list = s.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0].references,
        vec!["example.com/app-b:2"],
        "most recent first"
    );
    assert!(list[0].last_used > 0 && list[0].size > 0);

    assert_eq!(
        s.remove("app-a:1").unwrap(),
        vec!["docker.io/library/app-a:1"]
    );
    assert_eq!(
        count(&tmp.path().join("images/layers")),
        2,
        "base layer kept"
    );
    assert!(matches!(
        s.remove("app-a:1"),
        Err(ImageError::NotFound { .. })
    ));
    let b_digest = &b[0].digest;
    s.remove(&b_digest[7..19]).unwrap();
    assert_eq!(count(&tmp.path().join("images/layers")), 0);
    assert_eq!(count(&tmp.path().join("images/blobs/sha256")), 0);
    assert!(s.list().unwrap().is_empty());
}

#[tokio::test]
async fn remove_refused_while_a_container_uses_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let f = tmp.path().join("a.tar");
    std::fs::write(&f, oci_archive(&[("app:1", &[&layer(&[("x", b"x")])])])).unwrap();
    let d = s.import(&f).await.unwrap()[0].digest.clone();
    let c = tmp.path().join("containers/abc-main-0");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("monitor.json"),
        serde_json::to_vec(&serde_json::json!({"id": "abc-main-0", "image_digest": d})).unwrap(),
    )
    .unwrap();
    match s.remove("app:1") {
        Err(e @ ImageError::InUse { .. }) => assert!(e.to_string().contains("abc-main-0"), "{e}"),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert_eq!(s.list().unwrap()[0].containers, vec!["abc-main-0"]);
    std::fs::remove_dir_all(&c).unwrap();
    s.remove("app:1").unwrap();
}

#[tokio::test]
async fn an_image_mounted_as_a_pod_volume_is_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let f = tmp.path().join("a.tar");
    std::fs::write(&f, oci_archive(&[("data:1", &[&layer(&[("x", b"x")])])])).unwrap();
    let d = s.import(&f).await.unwrap()[0].digest.clone();
    let pod = tmp.path().join("pods/uid1");
    std::fs::create_dir_all(&pod).unwrap();
    let rec = serde_json::json!([{"id": "uid1/volume/data", "image_digest": d, "lower": []}]);
    std::fs::write(
        pod.join("image-volumes.json"),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    match s.remove("data:1") {
        Err(e @ ImageError::InUse { .. }) => {
            assert!(e.to_string().contains("uid1/volume/data"), "{e}")
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    std::fs::remove_dir_all(&pod).unwrap();
    s.remove("data:1").unwrap();
}

#[tokio::test]
async fn gc_removes_least_recently_used_until_low_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let f = tmp.path().join("a.tar");
    let (l1, l2, l3, l4) = (
        layer(&[("1", b"1")]),
        layer(&[("2", b"2")]),
        layer(&[("3", b"3")]),
        layer(&[("4", b"4")]),
    );
    std::fs::write(
        &f,
        oci_archive(&[
            ("old:1", &[&l1]),
            ("older:1", &[&l2]),
            ("young:1", &[&l3]),
            ("used:1", &[&l4]),
        ]),
    )
    .unwrap();
    let imported = s.import(&f).await.unwrap();
    let digest_of = |name: &str| {
        imported
            .iter()
            .find(|i| i.references[0].contains(name))
            .unwrap()
            .digest
            .clone()
    };
    let now = now_unix();
    let db = DbFile::open(&tmp.path().join("images")).unwrap();
    db.update(|db| {
        for (name, age) in [
            ("old:1", 600),
            ("older:1", 900),
            ("young:1", 30),
            ("used:1", 1000),
        ] {
            let r = db.images.get_mut(&digest_of(name)).unwrap();
            r.added = now - 2000;
            r.last_used = now - age;
        }
    })
    .unwrap();
    let c = tmp.path().join("containers/c1");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("monitor.json"),
        serde_json::to_vec(&serde_json::json!({"id": "c1", "image_digest": digest_of("used:1")}))
            .unwrap(),
    )
    .unwrap();

    let policy = GcPolicy::default();
    // Below the high threshold: nothing happens.
    let r = s.gc_with(&policy, || Ok(50.0)).unwrap();
    assert!(r.removed.is_empty());
    // 90% used, each removal frees 6%: two removals reach 78% ≤ 80%.
    let mut usage = 90.0;
    let r = s
        .gc_with(&policy, || {
            let u = usage;
            usage -= 6.0;
            Ok(u)
        })
        .unwrap();
    assert_eq!(r.removed, vec![digest_of("older:1"), digest_of("old:1")]);
    // Still above: only the young and the in-use images are left, and they stay.
    let r = s.gc_with(&policy, || Ok(99.0)).unwrap();
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    let left: Vec<String> = s
        .list()
        .unwrap()
        .into_iter()
        .flat_map(|i| i.references)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(disk_usage(tmp.path()).unwrap() > 0.0);
}

#[tokio::test]
async fn import_refuses_blobs_that_do_not_match_their_name() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path());
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    append(
        &mut b,
        &format!("blobs/sha256/{}", "0".repeat(64)),
        b"not what the name says",
    );
    append(
        &mut b,
        "index.json",
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    let f = tmp.path().join("bad.tar");
    std::fs::write(&f, b.into_inner().unwrap()).unwrap();
    let e = s.import(&f).await.unwrap_err();
    assert!(e.to_string().contains("does not hash to its name"), "{e}");
    assert_eq!(
        count(&tmp.path().join("images/blobs/sha256")),
        0,
        "nothing left behind"
    );
}
