//! Image volumes (issue 22, KEP-4639): an OCI image mounted read-only and noexec as a pod
//! volume, through the image store; subPath; a pull failure keeps the pod's containers
//! waiting with the kubelet's reasons; `hostlet render` shows the mount.

mod common;

use common::*;

fn manifest(volume_image: &str, img: &str, pid: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: imgvol}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: data
    image: {{reference: "{volume_image}", pullPolicy: IfNotPresent}}
  containers:
  - name: app
    image: {img}
    command:
    - sh
    - -c
    - |
      head -c 4 /data/bin/busybox | od -c | head -1 | sed 's/^/magic /'
      grep -q root /etc-from-image/passwd && echo subpath-ok
      touch /data/x 2>/dev/null && echo write-ok || echo write-refused
      /data/bin/busybox true 2>/dev/null && echo exec-ok || echo exec-refused
      echo done; while :; do sleep 1; done
    - imgvol-{pid}
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: data, mountPath: /etc-from-image, subPath: etc}}
"#
    )
}

#[test]
fn an_image_volume_is_read_only_noexec_with_subpath_and_a_pull_failure_waits() {
    let f = Fixture::new();
    let img = f.image();
    let pid = std::process::id();

    // `hostlet render` shows the volume's mount with its options.
    let path = f.dirs.base.join("render.yaml");
    std::fs::write(&path, manifest(&img, &img, pid)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .arg("render")
        .arg("--root-dir")
        .arg(&f.dirs.root)
        .args([
            "--insecure-registry",
            &f.reg.addr,
            "--cgroup-driver",
            "cgroupfs",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let data = spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["destination"] == "/data")
        .cloned()
        .unwrap_or_else(|| panic!("no /data mount in {text}"));
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            data["options"].as_array().unwrap().iter().any(|x| x == o),
            "{data}"
        );
    }
    std::fs::remove_file(&path).unwrap();

    // A volume image that does not exist: the container waits with the pull's reason.
    let missing = img.replace(":test", ":no-such-tag");
    write_manifest(&f.dirs, "imgvol.yaml", &manifest(&missing, &img, pid));
    let reason = f.wait("the container waits for the volume's image", || {
        let st = f.pod_status("imgvol")?;
        let r = st["containerStatuses"][0]["state"]["waiting"]["reason"]
            .as_str()?
            .to_string();
        ["ErrImagePull", "ImagePullBackOff"]
            .contains(&r.as_str())
            .then_some(r)
    });
    assert!(
        find_pids_by_cmdline(&format!("imgvol-{pid}")).is_empty(),
        "{reason}"
    );

    // The image exists: the container reads it, cannot write to it or run from it.
    write_manifest(&f.dirs, "imgvol.yaml", &manifest(&img, &img, pid));
    let lines = f.output("imgvol", "app", "done");
    let text = lines.join("\n");
    assert!(text.contains("magic 0000000 177   E   L   F"), "{text}");
    assert!(text.contains("subpath-ok"), "{text}");
    assert!(text.contains("write-refused"), "{text}");
    assert!(text.contains("exec-refused"), "{text}");
    remove_manifest(&f.dirs, "imgvol.yaml");
    f.gone(&format!("imgvol-{pid}"));
}

/// Pushes, as `layered-PID`, the test image with a second layer that overrides
/// `/etc/group`, deletes `/etc/passwd` and `/root` (whiteouts) and adds `/added/new.txt`.
fn push_two_layer_image(f: &Fixture, pid: u32) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let bundle = tmp.path().join("bundle");
    let (l, b) = (layout.to_str().unwrap(), bundle.to_str().unwrap());
    run_ok("cp", &["-a", test_image_layout().to_str().unwrap(), l]);
    run_ok("umoci", &["unpack", "--image", &format!("{l}:test"), b]);
    let root = bundle.join("rootfs");
    std::fs::write(root.join("etc/group"), "overridden\n").unwrap();
    std::fs::remove_file(root.join("etc/passwd")).unwrap();
    std::fs::remove_dir_all(root.join("root")).unwrap();
    std::fs::create_dir(root.join("added")).unwrap();
    std::fs::write(root.join("added/new.txt"), "added\n").unwrap();
    let tagged = format!("{l}:layered");
    run_ok("umoci", &["repack", "--image", &tagged, b]);
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", &format!("oci:{tagged}")])
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = manifest["layers"].as_array().map_or(0, Vec::len);
    assert_eq!(layers, 2, "{manifest:#}");
    let image = f.reg.image(&format!("layered-{pid}"));
    run_ok(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{tagged}"),
            &format!("docker://{image}"),
        ],
    );
    image
}

#[test]
fn a_multi_layer_image_volume_shows_the_merged_layers_read_only() {
    let f = Fixture::new();
    let img = f.image();
    let pid = std::process::id();
    let layered = push_two_layer_image(&f, pid);
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: layered}}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: data
    image: {{reference: "{layered}", pullPolicy: IfNotPresent}}
  containers:
  - name: app
    image: {img}
    command:
    - sh
    - -c
    - |
      echo "group=$(cat /data/etc/group)"
      echo "added=$(cat /data/added/new.txt)"
      test -e /data/etc/passwd && echo passwd-present || echo passwd-gone
      test -e /data/root && echo root-present || echo root-gone
      test -f /data/bin/busybox && echo lower-ok
      ls -a /data/etc /data | grep -q '^\.wh\.' && echo whiteout-visible
      echo x > /data/etc/group 2>/dev/null && echo write-ok || echo write-refused
      touch /data/new 2>/dev/null && echo create-ok || echo create-refused
      echo done; while :; do sleep 1; done
    - layered-{pid}
    volumeMounts:
    - {{name: data, mountPath: /data}}
"#
    );
    write_manifest(&f.dirs, "layered.yaml", &yaml);
    let text = f.output("layered", "app", "done").join("\n");
    for want in [
        "group=overridden",
        "added=added",
        "passwd-gone",
        "root-gone",
        "lower-ok",
        "write-refused",
        "create-refused",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    assert!(!text.contains("whiteout-visible"), "{text}");
    remove_manifest(&f.dirs, "layered.yaml");
    f.gone(&format!("layered-{pid}"));
}
