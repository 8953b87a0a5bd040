//! Node-pressure eviction on a small filesystem made for the test (a 64 MiB tmpfs holding
//! --root-dir and --pod-logs-dir): when a pod fills it past the threshold, unused images
//! go first, then the pod using the most over its request is evicted (Failed, reason
//! Evicted, the kubelet's message), a critical pod using even more is left alone, the
//! node reports DiskPressure, and the evicted pod runs again once the pressure is gone.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

/// A 64 MiB tmpfs under the test's base dir, with the root and logs dirs in it (the
/// fixture's paths become symlinks into it; the test dirs' cleanup detaches it).
fn small_fs(dirs: &AgentDirs) {
    let small = dirs.base.join("small");
    fs::create_dir_all(&small).unwrap();
    run_ok(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=64m",
            "tmpfs",
            small.to_str().unwrap(),
        ],
    );
    for (link, target) in [(&dirs.root, "root"), (&dirs.logs, "logs")] {
        fs::remove_dir_all(link).unwrap();
        fs::create_dir_all(small.join(target)).unwrap();
        std::os::unix::fs::symlink(small.join(target), link).unwrap();
    }
}

fn pod(
    name: &str,
    image: &str,
    ctl: &Path,
    extra_spec: &str,
    request: &str,
    (script, marker): (String, &str),
) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 2
{extra_spec}  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", {script:?}, {marker:?}]
    resources: {{requests: {{ephemeral-storage: {request}}}}}
    volumeMounts: [{{name: data, mountPath: /data}}, {{name: ctl, mountPath: /ctl}}]
  volumes:
  - {{name: data, emptyDir: {{}}}}
  - {{name: ctl, hostPath: {{path: {ctl}, type: Directory}}}}
"#,
        ctl = ctl.display()
    )
}

/// The script of a pod that writes `mib` MiB to its emptyDir while /ctl/fill exists; the
/// marker is its `$0`, so its shell's command line holds it.
fn fill(mib: u32, marker: &str) -> (String, &str) {
    let script = format!(
        "if [ -e /ctl/fill ]; then dd if=/dev/zero of=/data/fill bs=1M count={mib} 2>&1; fi; echo filled; while :; do sleep 1; done"
    );
    (script, marker)
}

fn images(root: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["images", "--root-dir"])
        .arg(root)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn disk_pressure_reclaims_images_then_evicts_the_right_pod_and_restarts_it() {
    let port = free_port().to_string();
    let f = Fixture::prepared(
        &[
            "--read-only-port",
            &port,
            "--eviction-hard=nodefs.available<50%",
            "--eviction-pressure-transition-period=6s",
            "--housekeeping-interval=1s",
            "--image-gc-min-age=0s",
        ],
        small_fs,
    );
    let addr = format!("127.0.0.1:{port}");
    let ctl = f.dirs.base.join("ctl");
    fs::create_dir_all(&ctl).unwrap();
    fs::write(ctl.join("fill"), "").unwrap();
    // An image no pod uses: reclaimed before any pod is evicted.
    let unused = f.reg.image("entry");
    let out = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["pull", "--insecure-registry", &f.reg.addr, "--root-dir"])
        .arg(&f.dirs.root)
        .arg(&unused)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        images(&f.dirs.root).contains(&unused),
        "{}",
        images(&f.dirs.root)
    );

    let id = std::process::id();
    // The critical pod uses the most and over its request: first in the kubelet's order
    // if critical pods were candidates. The bystander stays within its request.
    let critical_marker = format!("np-critical-{id}");
    let filler_marker = format!("np-filler-{id}");
    let bystander_marker = format!("np-bystander-{id}");
    let image = f.image();
    write_manifest(
        &f.dirs,
        "critical.yaml",
        &pod(
            "critical",
            &image,
            &ctl,
            "  priorityClassName: system-node-critical\n",
            "0",
            fill(20, &critical_marker),
        ),
    );
    f.output("critical", "main", "filled");
    write_manifest(
        &f.dirs,
        "bystander.yaml",
        &pod(
            "bystander",
            &image,
            &ctl,
            "",
            "30Mi",
            fill(1, &bystander_marker),
        ),
    );
    f.output("bystander", "main", "filled");
    let critical_pid = f.container_pid(&critical_marker);
    let bystander_pid = f.container_pid(&bystander_marker);
    write_manifest(
        &f.dirs,
        "filler.yaml",
        &pod("filler", &image, &ctl, "", "0", fill(16, &filler_marker)),
    );

    let status = f.wait("the filler evicted", || {
        let st = f.pod_status("filler")?;
        (st["reason"] == "Evicted").then_some(st)
    });
    assert_eq!(status["phase"], "Failed", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("The node was low on resource: ephemeral-storage. Threshold quantity: 32Mi, available: "),
        "{message}"
    );
    assert!(
        message.contains("Container main was using ")
            && message.ends_with("request is 0, has larger consumption of ephemeral-storage. "),
        "{message}"
    );
    let (_, health) = http_get(&addr, "/healthz?verbose").unwrap();
    assert!(
        health.contains("DiskPressure True KubeletHasDiskPressure"),
        "{health}"
    );
    // Reclaim came first: the unused image is gone, and was removed before the eviction.
    let log = f.dirs.agent_log();
    let reclaimed = log
        .find("removed unused images for node pressure")
        .expect("image reclaim logged");
    let evicted = log.find("evicting pod for node pressure").unwrap();
    assert!(reclaimed < evicted, "{log}");
    assert!(!images(&f.dirs.root).contains(&unused));
    // The filler's containers are gone; the critical pod and the bystander were not touched.
    f.gone(&filler_marker);
    assert_eq!(find_pids_by_cmdline(&critical_marker), [critical_pid]);
    assert_eq!(find_pids_by_cmdline(&bystander_marker), [bystander_pid]);
    for name in ["critical", "bystander"] {
        let st = f.pod_status(name).unwrap();
        assert_eq!(st["phase"], "Running", "{name}: {st}");
        assert_eq!(
            st["containerStatuses"][0]["restartCount"], 0,
            "{name}: {st}"
        );
    }

    // The evicted pod's volume went with it, so the pressure is over: once the condition
    // has cleared, the pod runs again (without filling this time).
    fs::remove_file(ctl.join("fill")).unwrap();
    f.wait("the filler running again", || {
        let st = f.pod_status("filler")?;
        (st["phase"] == "Running" && st["reason"].is_null()).then_some(())
    });
    f.container_pid(&filler_marker);
    let (_, health) = http_get(&addr, "/healthz?verbose").unwrap();
    assert!(
        health.contains("DiskPressure False KubeletHasNoDiskPressure"),
        "{health}"
    );
    let (_, metrics) = http_get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("hostlet_evictions_total{signal=\"nodefs.available\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("hostlet_node_condition{condition=\"DiskPressure\"} 0\n"));
    assert_eq!(find_pids_by_cmdline(&critical_marker), [critical_pid]);
}
