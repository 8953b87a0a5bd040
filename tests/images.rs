//! The image store for real: `hostlet pull` against docker-registry with htpasswd auth and
//! with TLS from a CA made here, a fault-injecting registry written here, malicious layers
//! pushed to a real registry, archive import and preload with pods running with no registry,
//! and `rmi` refused while a container uses the image.

mod common;
#[path = "images_support/mod.rs"]
mod images_support;

use std::fs;

use common::*;
use images_support::*;

#[test]
fn pull_with_credentials_from_docker_config() {
    let reg = ExtraRegistry::start(Some(("alice", "s3cret")), None);
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/busybox:test", reg.addr);
    let insecure = ["--insecure-registry", reg.addr.as_str()];

    let out = hostlet(root.path(), &[&["pull"][..], &insecure, &[&image]].concat());
    assert!(!out.status.success(), "pull without credentials succeeded");
    assert!(out.stderr.contains("ErrImagePull"), "{}", out.stderr);
    assert_store_clean(root.path());

    // `auth` is base64("alice:s3cret"), as `docker login` writes it.
    fs::write(
        root.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let out = hostlet(root.path(), &[&["pull"][..], &insecure, &[&image]].concat());
    assert!(out.status.success(), "{}", out.stderr);
    assert!(out.stdout.contains("sha256:"), "{}", out.stdout);

    let out = hostlet(root.path(), &["images", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(list[0]["references"][0], image.as_str(), "{list}");
    assert!(list[0]["size"].as_u64().unwrap() > 100_000, "{list}");
    let table = hostlet(root.path(), &["images"]).stdout;
    assert!(
        table.starts_with("REFERENCE") && table.contains(&image),
        "{table}"
    );
}

#[test]
fn pull_over_tls_needs_the_registry_ca() {
    let ca = TestCa::new();
    let reg = ExtraRegistry::start(None, Some(&ca));
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/library/busybox:test", reg.addr);

    let out = hostlet(root.path(), &["pull", &image]);
    assert!(!out.status.success(), "pull trusted an unknown CA");
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    let ca_file = ca.dir.path().join("ca.pem");
    let out = hostlet(
        root.path(),
        &["pull", "--registry-ca", ca_file.to_str().unwrap(), &image],
    );
    assert!(out.status.success(), "{}", out.stderr);
}

#[test]
fn zstd_and_gzip_layers() {
    let reg = Registry::start();
    let zstd = format!("{}/library/busybox:zstd", reg.addr);
    skopeo_copy(
        &format!("oci:{}:test", test_image_layout().display()),
        &format!("docker://{zstd}"),
        &["--dest-compress-format", "zstd"],
    );
    let root = tempfile::tempdir().unwrap();
    for image in [reg.image("test"), zstd] {
        let out = hostlet(
            root.path(),
            &["pull", "--insecure-registry", &reg.addr, &image],
        );
        assert!(out.status.success(), "{image}: {}", out.stderr);
    }
    // Same uncompressed layer either way: one layer directory, with busybox in it.
    let layers: Vec<_> = fs::read_dir(root.path().join("images/layers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert!(layers[0].path().join("bin/busybox").is_file());
}

#[test]
fn faulty_registry_fails_cleanly() {
    // The uncompressed variant of the test image: also covers plain tar layers.
    let image = FaultImage::uncompressed_test_image();
    for fault in [
        Fault::Status500,
        Fault::ResetMidBlob,
        Fault::Truncated,
        Fault::WrongContent,
        Fault::Oversized,
    ] {
        let server = FaultServer::start(image.clone(), fault);
        let root = tempfile::tempdir().unwrap();
        let out = hostlet(
            root.path(),
            &[
                "pull",
                "--insecure-registry",
                &server.addr,
                &format!("{}/library/busybox:test", server.addr),
            ],
        );
        assert!(!out.status.success(), "{fault:?}: pull succeeded");
        assert!(
            out.stderr.contains("ErrImagePull"),
            "{fault:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&image.layer_digest),
            "{fault:?}: error does not name the layer: {}",
            out.stderr
        );
        assert_store_clean(root.path());
    }
    // Slow but steady: succeeds.
    let server = FaultServer::start(image.clone(), Fault::Slow);
    let root = tempfile::tempdir().unwrap();
    let out = hostlet(
        root.path(),
        &[
            "pull",
            "--insecure-registry",
            &server.addr,
            &format!("{}/library/busybox:test", server.addr),
        ],
    );
    assert!(out.status.success(), "slow: {}", out.stderr);
}

#[test]
fn malicious_layers_are_refused_or_contained() {
    let reg = Registry::start();
    let victim = tempfile::tempdir().unwrap();
    fs::write(victim.path().join("file"), b"original").unwrap();
    let v = victim
        .path()
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let before = snapshot(victim.path());
    let cases: Vec<(&str, Vec<Entry>, Result<(), &str>)> = vec![
        (
            "dotdot",
            vec![Entry::file(
                &format!("../../../../../../{v}/file"),
                b"pwned",
            )],
            Err("'..'"),
        ),
        (
            "symlink-then-write",
            vec![
                Entry::symlink("evil", &format!("/{v}")),
                Entry::file("evil/file", b"pwned"),
                Entry::file("evil/new", b"pwned"),
            ],
            Ok(()),
        ),
        (
            "symlink-dotdot",
            vec![
                Entry::symlink("up", "../../../../../../../.."),
                Entry::file(&format!("up/{v}/file"), b"pwned"),
            ],
            Ok(()),
        ),
        (
            "hardlink-outside",
            vec![Entry::hardlink("passwd", &format!("/{v}/file"))],
            Err("hardlink target does not exist"),
        ),
        (
            "devices",
            vec![Entry::device("sda", 8, 0), Entry::file("ok", b"ok")],
            Ok(()),
        ),
        (
            "too-large",
            vec![Entry::file("big", &vec![0u8; 3 << 20])],
            Err("--max-layer-size"),
        ),
    ];
    let layouts = tempfile::tempdir().unwrap();
    for (tag, entries, _) in &cases {
        let layout = layouts.path().join(tag);
        write_layout(&layout, &[entries.as_slice()]);
        skopeo_copy(
            &format!("oci:{}:t", layout.display()),
            &format!("docker://{}/evil/{tag}:t", reg.addr),
            &[],
        );
    }
    let root = tempfile::tempdir().unwrap();
    for (tag, _, expect) in &cases {
        let out = hostlet(
            root.path(),
            &[
                "pull",
                "--insecure-registry",
                &reg.addr,
                "--max-layer-size",
                "2Mi",
                &format!("{}/evil/{tag}:t", reg.addr),
            ],
        );
        match expect {
            Ok(()) => assert!(out.status.success(), "{tag}: {}", out.stderr),
            Err(msg) => {
                assert!(!out.status.success(), "{tag}: pull succeeded");
                assert!(out.stderr.contains(msg), "{tag}: {}", out.stderr);
            }
        }
        assert_eq!(
            snapshot(victim.path()),
            before,
            "{tag} changed the victim dir"
        );
        assert_no_tmp(root.path());
    }
    // What was contained landed inside its own layer directory.
    let layers = root.path().join("images/layers");
    let found: Vec<String> = walk(&layers)
        .into_iter()
        .filter(|p| p.ends_with("file") || p.ends_with("new") || p.ends_with("sda"))
        .collect();
    assert!(
        found.iter().any(|p| p.ends_with(&format!("{v}/new"))),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|p| p.ends_with("sda")),
        "device created: {found:?}"
    );
}

#[test]
fn imported_and_preloaded_images_run_pods_without_a_registry() {
    let f = AgentFixture::new();
    let archives = tempfile::tempdir().unwrap();
    let layout = test_image_layout();
    let imported = archives.path().join("imported.tar");
    skopeo_copy(
        &format!("oci:{}:test", layout.display()),
        &format!("oci-archive:{}:busybox:imported", imported.display()),
        &[],
    );
    let out = hostlet(
        &f.dirs.root,
        &["image", "import", imported.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("docker.io/library/busybox:imported"),
        "{}",
        out.stdout
    );

    f.start_agent();
    // Dropped into the preload directory while the agent runs (copied, then renamed in).
    let preload = f.dirs.root.join("images/preload");
    let tmp = preload.join("appliance.tar.part");
    skopeo_copy(
        &format!("oci:{}:entry", layout.display()),
        &format!("oci-archive:{}:appliance/tool:1.0", tmp.display()),
        &[],
    );
    fs::rename(&tmp, preload.join("appliance.tar")).unwrap();

    for (name, image) in [("imp", "busybox:imported"), ("pre", "appliance/tool:1.0")] {
        write_manifest(
            &f.dirs,
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", \"echo {name}-ran; sleep 300\"]\n"
            ),
        );
    }
    for name in ["imp", "pre"] {
        f.wait(&format!("{name} runs"), || {
            cri_log_messages(&f.dirs.logs, name, "main")
                .iter()
                .any(|l| l == &format!("{name}-ran"))
                .then_some(())
        });
    }

    // In use: refused, and nothing removed.
    let out = hostlet(&f.dirs.root, &["rmi", "busybox:imported"]);
    assert!(!out.status.success(), "rmi of an image in use succeeded");
    assert!(out.stderr.contains("in use"), "{}", out.stderr);
    let images = hostlet(&f.dirs.root, &["images", "-o", "json"]).stdout;
    assert!(images.contains("busybox:imported"), "{images}");

    remove_manifest(&f.dirs, "imp.yaml");
    f.wait("imp's container removed", || {
        let out = hostlet(&f.dirs.root, &["rmi", "busybox:imported"]);
        out.status.success().then_some(())
    });
    let images = hostlet(&f.dirs.root, &["images", "-o", "json"]).stdout;
    assert!(!images.contains("busybox:imported"), "{images}");
    assert!(images.contains("appliance/tool:1.0"), "{images}");
}

#[test]
fn gc_removes_unused_images_over_the_threshold() {
    let f = AgentFixture::new();
    let archive = f.dirs.base.join("a.tar");
    skopeo_copy(
        &format!("oci:{}:test", test_image_layout().display()),
        &format!("oci-archive:{}:busybox:unused", archive.display()),
        &[],
    );
    let out = hostlet(
        &f.dirs.root,
        &["image", "import", archive.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", out.stderr);
    // Any disk is above 0%: the agent collects at once what is older than 1s.
    f.start_agent_with(&[
        "--image-gc-high-threshold",
        "0",
        "--image-gc-low-threshold",
        "0",
        "--image-gc-min-age",
        "1s",
        "--image-gc-period",
        "1s",
    ]);
    f.wait("image collected", || {
        let images = hostlet(&f.dirs.root, &["images", "-o", "json"]).stdout;
        (images.trim() == "[]").then_some(())
    });
    assert!(f.dirs.agent_log().contains("image garbage-collected"));
    let left = fs::read_dir(f.dirs.root.join("images/layers"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}
