//! `hostUsers: false` (issue 23) with real containers: root inside is an unprivileged
//! range outside, volumes through idmapped mounts, exec probes, `hostlet exec` and
//! `hostlet attach` inside (with either cgroup driver), ranges kept across an agent kill
//! -9, and the pool as it was after create/remove cycles. One agent for all of it (the file
//! also runs in the VM suite).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// The pod's recorded range: its first host ID.
fn range_of(root: &Path, uid: &str) -> Option<u32> {
    let text = fs::read_to_string(root.join("pods").join(uid).join("userns.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    assert_eq!(v["size"], 65536, "{text}");
    v["hostID"].as_u64().map(|h| h as u32)
}

fn ranges(root: &Path) -> BTreeSet<u32> {
    fs::read_dir(root.join("pods"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| range_of(root, &e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

/// The first field of a `/proc/<pid>/status` line (`Uid:`, `Gid:`).
fn status_id(pid: i32, key: &str) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn pod_yaml(name: &str, img: &str, marker: &str, extra_spec: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
{extra_spec}  containers:
  - name: c
    image: {img}
    command: ["sh", "-c", "{script} touch /tmp/ready; echo done; while :; do sleep 1; done", "{marker}"]
    readinessProbe:
      exec: {{command: ["test", "-e", "/tmp/ready"]}}
      periodSeconds: 1
"#
    )
}

fn ready(f: &Fixture, name: &str) -> serde_json::Value {
    f.wait(&format!("{name} ready"), || {
        f.pod(name)
            .filter(|p| p["status"]["containerStatuses"][0]["ready"] == true)
    })
}

#[test]
fn root_inside_is_the_pods_own_range_outside() {
    let pid = std::process::id();
    let mut f = Fixture::with_args(&["--user-namespaces-default"]);
    let img = f.image();
    let vol = f.dirs.base.join("vol");
    fs::create_dir_all(&vol).unwrap();
    // A host user's file shows as that user's inside; another range's root-only file
    // (an ID outside the pod's map) cannot be read by the pod's root.
    fs::write(vol.join("users"), "x").unwrap();
    std::os::unix::fs::chown(vol.join("users"), Some(1000), Some(1000)).unwrap();
    fs::write(vol.join("foreign"), "secret").unwrap();
    std::os::unix::fs::chown(vol.join("foreign"), Some(3_000_000), Some(3_000_000)).unwrap();
    fs::set_permissions(vol.join("foreign"), fs::Permissions::from_mode(0o600)).unwrap();
    // Host root's root-only file shows as the pod root's (README): it reads it.
    fs::write(vol.join("rootonly"), "host-root").unwrap();
    fs::set_permissions(vol.join("rootonly"), fs::Permissions::from_mode(0o600)).unwrap();

    let a_marker = format!("userns-a-{pid}");
    let script = "echo uid=$(id -u); cat /proc/self/uid_map; touch /vol/by-root; \
        echo users=$(stat -c %u /vol/users) empty=$(stat -c %u /scratch); \
        echo ping=$(cat /proc/sys/net/ipv4/ping_group_range); \
        echo x > /tmp/m.ko; insmod /tmp/m.ko; echo insmod=$?; \
        echo 3 > /proc/sys/vm/drop_caches; echo sysctl=$?; \
        cat /vol/foreign; echo foreign=$?; echo rootonly=$(cat /vol/rootonly);";
    let spec = format!(
        "  hostUsers: false\n  securityContext:\n    sysctls: [{{name: net.ipv4.ping_group_range, value: '0 1000'}}]\n  volumes:\n  - {{name: vol, hostPath: {{path: {}}}}}\n  - {{name: scratch, emptyDir: {{}}}}\n",
        vol.display()
    );
    let a = pod_yaml("a", &img, &a_marker, &spec, script)
        .replace("      periodSeconds: 1\n", "      periodSeconds: 1\n    volumeMounts: [{name: vol, mountPath: /vol}, {name: scratch, mountPath: /scratch}]\n");
    write_manifest(&f.dirs, "a.yaml", &a);
    // No hostUsers: --user-namespaces-default gives it one.
    let b_marker = format!("userns-b-{pid}");
    write_manifest(&f.dirs, "b.yaml", &pod_yaml("b", &img, &b_marker, "", ""));

    let out = f.output("a", "c", "done").join("\n");
    let a_uid = ready(&f, "a")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let b_uid = ready(&f, "b")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let a_base = range_of(&f.dirs.root, &a_uid).expect("a's range");
    let b_base = range_of(&f.dirs.root, &b_uid).expect("b's range");
    assert!(a_base >= 65536 && a_base % 65536 == 0, "{a_base}");
    assert!(
        a_base.abs_diff(b_base) >= 65536,
        "disjoint: {a_base} {b_base}"
    );

    // Inside: root, mapped to the range.
    assert!(out.contains("uid=0"), "{out}");
    let map: Vec<String> = out
        .lines()
        .find(|l| l.trim_start().starts_with('0') && l.split_whitespace().count() == 3)
        .unwrap_or_else(|| panic!("no uid_map line: {out}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(map, ["0", &a_base.to_string(), "65536"], "{out}");
    // Idmapped volumes: host owners show as themselves, the pod's root's file is host
    // root's on disk, nothing was chowned.
    assert!(out.contains("users=1000 empty=0"), "{out}");
    assert_eq!(fs::metadata(vol.join("by-root")).unwrap().uid(), 0);
    assert_eq!(fs::metadata(vol.join("users")).unwrap().uid(), 1000);
    // A namespaced sysctl in the pod's network namespace, owned by its user namespace.
    assert!(
        out.contains("ping=0\t1000") || out.contains("ping=0 1000"),
        "{out}"
    );
    // What a host root could do is denied.
    for denied in ["insmod=1", "sysctl=1", "foreign=1"] {
        assert!(out.contains(denied), "{denied}: {out}");
    }
    assert!(!out.contains("secret"), "{out}");
    assert!(out.contains("rootonly=host-root"), "{out}");

    // Outside: the processes run as the mapped IDs.
    let a_pid = f.container_pid(&a_marker);
    assert_eq!(status_id(a_pid, "Uid:"), a_base);
    assert_eq!(status_id(a_pid, "Gid:"), a_base);
    let b_pid = f.container_pid(&b_marker);
    assert_eq!(status_id(b_pid, "Uid:"), b_base);

    // exec joins the pod's user namespace too (the readiness probes above are execs).
    let (ok, text) = hostlet_cli(
        &f.dirs.root,
        &[
            "exec",
            "a",
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map",
        ],
    );
    assert!(
        ok && text.starts_with("0\n") && text.contains(&a_base.to_string()),
        "{text}"
    );
    // Outside, an exec's process runs as the pod's root and sits in the container's
    // cgroup: under systemd, its scope, joined by path (never through a session bus).
    let e_marker = format!("userns-exec-{pid}");
    let mut exec = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["exec", "--root-dir"])
        .arg(&f.dirs.root)
        .args(["a", "--", "sh", "-c", "sleep 600; :", &e_marker])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let e_pid = f.wait("the exec's shell", || {
        find_pids_by_cmdline(&e_marker)
            .into_iter()
            .find(|&p| cmdline(p).is_some_and(|c| c.starts_with("sh -c")))
    });
    assert_eq!(status_id(e_pid, "Uid:"), a_base);
    let cgroup = |p: i32| fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
    assert_eq!(cgroup(e_pid), cgroup(a_pid));
    if Path::new("/run/systemd/system").exists() {
        assert!(cgroup(e_pid).contains(".scope\n"), "{}", cgroup(e_pid));
    }
    signal(e_pid, 9);
    let _ = exec.wait();
    // `exec -t` (the helper's terminal path) likewise.
    let (ok, text) = hostlet_cli(
        &f.dirs.root,
        &[
            "exec",
            "-t",
            "a",
            "--",
            "sh",
            "-c",
            "tty; echo uid=$(id -u); cat /proc/self/cgroup",
        ],
    );
    assert!(
        ok && text.contains("/dev/pts/") && text.contains("uid=0"),
        "{text}"
    );
    for line in cgroup(a_pid).lines() {
        assert!(text.contains(line), "{line} in {text}");
    }

    // attach: a terminal in the pod's user namespace.
    let t_marker = format!("userns-tty-{pid}");
    write_manifest(
        &f.dirs,
        "t.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: t}}\nspec:\n  hostUsers: false\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {img}\n    stdin: true\n    tty: true\n    command: [sh, -i, -s, {t_marker}]\n"
        ),
    );
    f.container_pid(&t_marker);
    let mut attach = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["attach", "--root-dir"])
        .arg(&f.dirs.root)
        .args(["-it", "t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    attach
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo tty-$(id -u)-$((40+2))\n")
        .unwrap();
    let out = attach.wait_with_output().unwrap();
    assert!(out.status.success(), "attach -it t: {out:?}");
    f.output("t", "c", "tty-0-42");
    remove_manifest(&f.dirs, "t.yaml");
    f.gone(&t_marker);
    f.wait("t's range free", || {
        (ranges(&f.dirs.root).len() == 2).then_some(())
    });

    // kill -9 and a new agent: the same containers, the same ranges.
    f.agent.as_mut().unwrap().kill9();
    f.agent = Some(Agent::start_with(
        &f.dirs,
        Some(&f.reg),
        &["--user-namespaces-default"],
    ));
    ready(&f, "a");
    assert_eq!(f.container_pid(&a_marker), a_pid);
    assert_eq!(range_of(&f.dirs.root, &a_uid), Some(a_base));
    assert_eq!(range_of(&f.dirs.root, &b_uid), Some(b_base));

    // Create/remove cycles leave the pool as it was.
    let before = ranges(&f.dirs.root);
    let cycles = if long() { 100 } else { 3 };
    for i in 0..cycles {
        let marker = format!("userns-c{i}-{pid}");
        write_manifest(&f.dirs, "c.yaml", &pod_yaml("c", &img, &marker, "", ""));
        let c = ready(&f, "c");
        let base = range_of(&f.dirs.root, c["metadata"]["uid"].as_str().unwrap());
        assert!(
            base.is_some_and(|b| !before.contains(&b)),
            "{base:?} {before:?}"
        );
        remove_manifest(&f.dirs, "c.yaml");
        f.gone(&marker);
        f.wait("c's pod directory gone", || {
            (ranges(&f.dirs.root) == before).then_some(())
        });
    }
    println!(
        "USERNS cycles={cycles} pool_after={:?}",
        ranges(&f.dirs.root)
    );

    // Gone pods free their ranges; their idmapped volumes go, the host's files stay.
    remove_manifest(&f.dirs, "a.yaml");
    remove_manifest(&f.dirs, "b.yaml");
    f.wait("every range free", || {
        ranges(&f.dirs.root).is_empty().then_some(())
    });
    assert_eq!(fs::read_to_string(vol.join("foreign")).unwrap(), "secret");
    assert!(vol.join("by-root").exists() && vol.join("users").exists());
    assert!(
        mounts_under(&f.dirs.root).is_empty(),
        "{:?}",
        mounts_under(&f.dirs.root)
    );
}
