//! The spine end to end: manifests in a directory → registry pull → OCI bundle →
//! libcontainer through a per-container monitor, supervised. Real containers, real
//! registry, assertions on the host.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::*;

/// A pod whose single container runs `script` in busybox sh, with `$0` set to `marker`
/// so the test can find exactly that process on the host.
fn pod(
    name: &str,
    image: &str,
    marker: &str,
    script: &str,
    extra_spec: &str,
    extra_container: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{extra_spec}
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", {script:?}, "{marker}"]
{extra_container}
"#
    )
}

fn messages(f: &Fixture, pod: &str) -> Vec<String> {
    cri_log_messages(&f.dirs.logs, pod, "main")
}

#[test]
fn pod_runs_isolated_with_limits_and_cri_logs() {
    let f = Fixture::new();
    let script = "echo host=$(hostname); echo lo=$(cat /sys/class/net/lo/flags); echo oops >&2; \
                  echo pid1=$$$$; while true; do sleep 1; done";
    let extra = "    resources:\n      requests: {cpu: 100m, memory: 32Mi}\n      limits: {cpu: 250m, memory: 64Mi}";
    write_manifest(
        &f.dirs,
        "web.yaml",
        &pod("web", &f.image(), "marker-iso", script, "", extra),
    );
    let pid = f.container_pid("marker-iso");

    for ns in ["pid", "net", "mnt", "uts", "ipc"] {
        assert_ne!(
            ns_link(pid, ns),
            ns_link(1, ns),
            "{ns} namespace of the container is the host's"
        );
    }
    // The container's init is a child of its monitor, not of the agent.
    let parent = ppid_of(pid).unwrap();
    assert!(
        cmdline(parent).unwrap().contains("hostlet-monitor monitor"),
        "parent {parent}: {:?}",
        cmdline(parent)
    );
    assert_ne!(parent, f.agent().pid());

    let mem = cgroup_dir(pid, "memory");
    assert!(
        mem.to_string_lossy().contains("/kubepods"),
        "{}",
        mem.display()
    );
    // cgroup v1 on hybrid hosts, v2 in the VM suite (vm/run.sh): compared in v2 terms.
    let lim = cgroup_limits(pid);
    assert_eq!(lim.memory_max, Some(67108864), "{lim:?}");
    assert_eq!(lim.cpu_max, (Some(25000), 100000), "{lim:?}");
    assert_eq!(lim.cpu_weight, cpu_shares_to_weight(102), "{lim:?}");
    assert!(matches!(lim.cpu_shares, None | Some(102)), "{lim:?}");

    let lines = f.wait("log lines", || {
        let l = cri_log_lines(&f.dirs.logs, "web", "main");
        (l.len() >= 4).then_some(l)
    });
    let has = |stream: &str, text: &str| {
        lines.iter().any(|l| {
            let p: Vec<&str> = l.splitn(4, ' ').collect();
            p.len() == 4 && p[1] == stream && p[2] == "F" && p[3] == text
        })
    };
    assert!(has("stdout", "host=web-testnode"), "{lines:#?}");
    // IFF_UP|IFF_LOOPBACK|IFF_RUNNING: lo is up in the pod's network namespace.
    assert!(
        has("stdout", "lo=0x49") || has("stdout", "lo=0x9"),
        "{lines:#?}"
    );
    assert!(has("stderr", "oops"), "{lines:#?}");
    assert!(has("stdout", "pid1=1"), "{lines:#?}");
    let log_dir = fs::read_dir(&f.dirs.logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    assert!(
        log_dir
            .to_string_lossy()
            .starts_with("default_web-testnode_"),
        "{log_dir:?}"
    );
}

#[test]
fn killed_container_restarts_then_removed_manifest_cleans_up() {
    let f = Fixture::with_args(&["--pod-logs-gc-delay", "2s"]);
    write_manifest(
        &f.dirs,
        "crash.yaml",
        &pod(
            "crash",
            &f.image(),
            "marker-kill",
            "echo run; while true; do sleep 1; done",
            "  terminationGracePeriodSeconds: 2",
            "",
        ),
    );
    let pid = f.container_pid("marker-kill");
    let mem = cgroup_dir(pid, "memory");
    signal(pid, libc::SIGKILL);
    // The first restart is immediate (kubelet back-off starts at the second).
    let started = Instant::now();
    let pid2 = f.wait("a new container process", || {
        let pids = find_pids_by_cmdline("marker-kill");
        (pids.len() == 1 && pids[0] != pid).then(|| pids[0])
    });
    assert!(
        started.elapsed() < Duration::from_secs(5) * time_scale(),
        "restart took {:?}",
        started.elapsed()
    );
    f.wait("1.log", || {
        let files = cri_log_files(&f.dirs.logs, "crash", "main");
        files
            .iter()
            .any(|p| p.ends_with("main/1.log"))
            .then_some(())
    });
    assert!(!mem.exists(), "old cgroup {} still exists", mem.display());
    let mem2 = cgroup_dir(pid2, "memory");
    assert!(
        f.dirs.agent_log().contains("exit_code=137"),
        "{}",
        f.dirs.agent_log()
    );

    remove_manifest(&f.dirs, "crash.yaml");
    f.wait("container gone", || (!process_exists(pid2)).then_some(()));
    f.wait("container state removed", || {
        f.container_dirs().is_empty().then_some(())
    });
    assert!(!mem2.exists(), "cgroup {} left behind", mem2.display());
    assert!(!cgroup_dir(std::process::id() as i32, "cpu")
        .join("hostlet")
        .join("x")
        .exists());
    // The pod's own state goes once its last container is gone.
    f.wait("pod dir removed", || {
        (!f.dirs.root.join("pods").read_dir().unwrap().any(|_| true)).then_some(())
    });
    let root = f.dirs.root.canonicalize().unwrap();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "mounts left under {}:\n{mounts}",
        root.display()
    );
    // Logs outlive the pod for --pod-logs-gc-delay, then they go too.
    assert!(!cri_log_files(&f.dirs.logs, "crash", "main").is_empty());
    f.wait("logs of the deleted pod removed", || {
        (!f.dirs.logs.read_dir().unwrap().any(|_| true)).then_some(())
    });
}

#[test]
fn agent_kill9_and_restart_adopts_running_containers() {
    let mut f = Fixture::new();
    // A stop signal would show: the trap says so and ends the container.
    let script =
        "trap 'echo got-TERM; exit 0' TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done";
    write_manifest(
        &f.dirs,
        "keep.yaml",
        &pod("keep", &f.image(), "marker-adopt", script, "", ""),
    );
    let pid = f.container_pid("marker-adopt");
    f.agent.as_mut().unwrap().kill9();

    // Logs keep flowing without an agent.
    let before = messages(&f, "keep").len();
    f.wait("log lines while the agent is down", || {
        (messages(&f, "keep").len() > before + 3).then_some(())
    });
    assert!(process_exists(pid));

    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &[]));
    f.wait("adoption logged", || {
        f.dirs.agent_log().contains("adopted").then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        find_pids_by_cmdline("marker-adopt"),
        vec![pid],
        "container was restarted or duplicated"
    );
    let files = cri_log_files(&f.dirs.logs, "keep", "main");
    assert_eq!(files.len(), 1, "{files:?}");

    // Supervision resumed: a kill is noticed and the container restarted (restartCount 1).
    signal(pid, libc::SIGKILL);
    f.wait("restart after adoption", || {
        let pids = find_pids_by_cmdline("marker-adopt");
        (pids.len() == 1 && pids[0] != pid).then_some(())
    });
    f.wait("1.log", || {
        cri_log_files(&f.dirs.logs, "keep", "main")
            .iter()
            .any(|p| p.ends_with("main/1.log"))
            .then_some(())
    });

    // SIGTERM of the agent also leaves the container running, and sends it nothing.
    let pid2 = find_pids_by_cmdline("marker-adopt")[0];
    let status = f.agent.as_mut().unwrap().sigterm_and_wait();
    assert!(status.success(), "agent exit status {status}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(process_exists(pid2));
    assert!(
        !messages(&f, "keep").iter().any(|m| m.contains("got-TERM")),
        "the agent's shutdown sent the container its stop signal"
    );
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &[]));
}

#[test]
fn changed_manifest_replaces_the_pod_after_the_old_one_is_gone() {
    let f = Fixture::new();
    let spec = "  terminationGracePeriodSeconds: 2";
    write_manifest(
        &f.dirs,
        "app.yaml",
        &pod(
            "app",
            &f.image(),
            "marker-v1",
            "while true; do sleep 1; done",
            spec,
            "",
        ),
    );
    let old = f.container_pid("marker-v1");
    write_manifest(
        &f.dirs,
        "app.yaml",
        &pod(
            "app",
            &f.image(),
            "marker-v2",
            "while true; do sleep 1; done",
            spec,
            "",
        ),
    );
    let new = f.container_pid("marker-v2");
    assert!(
        !process_exists(old),
        "old container still runs beside the new one"
    );
    // The process can be seen before the agent has logged its start.
    let log = f.wait("the new container's start logged", || {
        let log = f.dirs.agent_log();
        (log.matches("container started").count() >= 2).then_some(log)
    });
    let stop = log.find("stopping container").expect("old pod stopped");
    let start2 = log.rfind("container started").unwrap();
    assert!(
        stop < start2,
        "new pod started before the old one was stopped:\n{log}"
    );
    // Two log dirs: two pods (UIDs).
    assert_eq!(fs::read_dir(&f.dirs.logs).unwrap().count(), 2);
    assert!(process_exists(new));
}

#[test]
fn termination_sends_stop_signal_then_kills_after_grace_period() {
    let f = Fixture::new();
    // A trap for TERM that ignores it: only SIGKILL after the grace period ends it.
    let script = "trap 'echo got TERM' TERM; echo trap-set; while true; do sleep 0.1; done";
    write_manifest(
        &f.dirs,
        "stubborn.yaml",
        &pod(
            "stubborn",
            &f.image(),
            "marker-grace",
            script,
            "  terminationGracePeriodSeconds: 3",
            "",
        ),
    );
    let pid = f.container_pid("marker-grace");
    // The process shows up before its shell has run `trap` (seen under emulation).
    f.wait("the TERM trap set", || {
        messages(&f, "stubborn")
            .iter()
            .any(|m| m == "trap-set")
            .then_some(())
    });
    let t0 = Instant::now();
    remove_manifest(&f.dirs, "stubborn.yaml");
    f.wait("container gone", || (!process_exists(pid)).then_some(()));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "killed before the grace period: {took:?}"
    );
    assert!(
        took < Duration::from_secs(8) * time_scale(),
        "took too long: {took:?}"
    );
    f.wait("TERM seen by the container", || {
        messages(&f, "stubborn")
            .iter()
            .any(|m| m == "got TERM")
            .then_some(())
    });
    assert!(f.dirs.agent_log().contains("grace period over"));

    // A container that exits on TERM stops at once.
    write_manifest(
        &f.dirs,
        "polite.yaml",
        &pod(
            "polite",
            &f.image(),
            "marker-polite",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            "",
            "",
        ),
    );
    let pid = f.container_pid("marker-polite");
    let t0 = Instant::now();
    remove_manifest(&f.dirs, "polite.yaml");
    f.wait("container gone", || (!process_exists(pid)).then_some(()));
    assert!(
        t0.elapsed() < Duration::from_secs(3) * time_scale(),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn restart_policies_and_crash_loop_backoff() {
    let f = Fixture::with_args(&[
        "--crash-loop-backoff-initial",
        "1s",
        "--crash-loop-backoff-max",
        "2s",
    ]);
    write_manifest(
        &f.dirs,
        "never.yaml",
        &pod(
            "never",
            &f.image(),
            "m-never",
            "echo bye; exit 3",
            "  restartPolicy: Never",
            "",
        ),
    );
    write_manifest(
        &f.dirs,
        "onfail.yaml",
        &pod(
            "onfail",
            &f.image(),
            "m-onfail",
            "echo done",
            "  restartPolicy: OnFailure",
            "",
        ),
    );
    write_manifest(
        &f.dirs,
        "loop.yaml",
        &pod("loop", &f.image(), "m-loop", "echo crash; exit 1", "", ""),
    );

    // Always: instance 1 at once, then 1s, 2s, 2s apart (times from the agent's log).
    let starts = f.wait("5 crash-loop instances", || {
        let log = f.dirs.agent_log();
        let times: Vec<jiff::Timestamp> = log
            .lines()
            .filter(|l| l.contains("loop-testnode") && l.contains("container started"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        (times.len() >= 5).then_some(times)
    });
    let gaps: Vec<Duration> = starts
        .windows(2)
        .map(|w| Duration::try_from(w[1].duration_since(w[0])).unwrap())
        .collect();
    assert!(
        gaps[0] < Duration::from_millis(900) * time_scale(),
        "first restart not immediate: {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(900),
        "no back-off before the 2nd restart: {gaps:?}"
    );
    assert!(
        gaps[2] >= Duration::from_millis(1900),
        "back-off did not double: {gaps:?}"
    );
    assert!(
        gaps[3] >= Duration::from_millis(1900)
            && gaps[3] < Duration::from_millis(1900) + Duration::from_millis(1600) * time_scale(),
        "back-off not capped: {gaps:?}"
    );
    // Only the current and the previous instance keep their logs, as with the kubelet.
    assert!(cri_log_files(&f.dirs.logs, "loop", "main").len() <= 2);
    assert!(f.dirs.agent_log().contains("CrashLoopBackOff"));

    // Never and OnFailure (after success): one run each, never restarted.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cri_log_files(&f.dirs.logs, "never", "main").len(), 1);
    assert_eq!(cri_log_files(&f.dirs.logs, "onfail", "main").len(), 1);
    assert_eq!(messages(&f, "never"), ["bye"]);
    assert_eq!(messages(&f, "onfail"), ["done"]);
    let log = f.dirs.agent_log();
    assert!(
        log.contains("exit_code=3") && log.contains("not restarting"),
        "{log}"
    );
}

#[test]
fn bad_input_is_reported_and_never_disturbs_other_pods() {
    let f = Fixture::with_args(&[]);
    write_manifest(
        &f.dirs,
        "good.yaml",
        &pod(
            "good",
            &f.image(),
            "marker-good",
            "while true; do sleep 1; done",
            "",
            "",
        ),
    );
    let pid = f.container_pid("marker-good");
    write_manifest(
        &f.dirs,
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n",
    );
    write_manifest(
        &f.dirs,
        "noimage.yaml",
        &pod(
            "noimage",
            "127.0.0.1:1/nothing/here:v1",
            "marker-x",
            "true",
            "",
            "",
        ),
    );
    write_manifest(
        &f.dirs,
        "missing.yaml",
        &pod(
            "missing",
            &f.reg.image("no-such-tag"),
            "marker-y",
            "true",
            "",
            "",
        ),
    );
    fs::write(f.dirs.manifests.join("notes.txt"), "not a manifest").unwrap();
    f.wait("broken file reported", || {
        f.dirs.agent_log().contains("broken.yaml").then_some(())
    });
    f.wait("unreachable registry reported", || {
        let log = f.dirs.agent_log();
        (log.contains("127.0.0.1:1/nothing/here:v1") && log.contains("ErrImagePull")).then_some(())
    });
    f.wait("missing image reported", || {
        f.dirs.agent_log().contains("no-such-tag").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(f.agent.as_ref().is_some(), "agent gone");
    assert_eq!(
        find_pids_by_cmdline("marker-good"),
        vec![pid],
        "good pod disturbed"
    );
    assert!(
        !f.dirs.agent_log().contains("panicked"),
        "{}",
        f.dirs.agent_log()
    );
    // The same image in a second pod downloads nothing again.
    let pulls_before = f.dirs.agent_log().matches("pulled image").count();
    write_manifest(
        &f.dirs,
        "good2.yaml",
        &pod(
            "good2",
            &f.image(),
            "marker-good2",
            "while true; do sleep 1; done",
            "",
            "",
        ),
    );
    f.container_pid("marker-good2");
    assert_eq!(
        f.dirs.agent_log().matches("pulled image").count(),
        pulls_before,
        "image pulled twice"
    );
}

#[test]
fn restarted_agent_cleans_up_a_removed_pod_that_had_no_container() {
    let mut f = Fixture::new();
    // Never gets a container: its image is on a registry that does not answer.
    write_manifest(
        &f.dirs,
        "stuck.yaml",
        &pod(
            "stuck",
            "127.0.0.1:1/none:v1",
            "marker-stuck",
            "true",
            "",
            "",
        ),
    );
    f.wait("pull failure", || {
        f.dirs.agent_log().contains("ErrImagePull").then_some(())
    });
    let pods = f.dirs.root.join("pods");
    assert_eq!(pods.read_dir().unwrap().count(), 1, "pod dir expected");
    let uid = pods
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    // The pod cgroup, whatever the driver: `pod<uid>` (cgroupfs) or
    // `kubepods-…-pod<uid>.slice` (systemd), a few levels below the hierarchy's root.
    let pod_cgroup = || {
        let uid = uid.to_string_lossy().replace('-', "_");
        let root = if cgroup_v2() {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/memory"
        };
        let mut dirs = vec![(std::path::PathBuf::from(root), 0)];
        while let Some((d, depth)) = dirs.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if !p.is_dir() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                if name.contains(&format!("pod{uid}")) {
                    return Some(p);
                }
                let top = name.starts_with("kubepods") || name.starts_with("hostlet_test_");
                if depth < 4 && (depth > 0 || top) {
                    dirs.push((p, depth + 1));
                }
            }
        }
        None
    };
    assert!(pod_cgroup().is_some(), "pod cgroup expected");
    f.agent.as_mut().unwrap().kill9();
    remove_manifest(&f.dirs, "stuck.yaml");
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &[]));
    f.wait("pod dir of the removed pod cleaned up", || {
        (pods.read_dir().unwrap().count() == 0).then_some(())
    });
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = f.dirs.root.canonicalize().unwrap();
    assert!(!mounts.contains(root.to_str().unwrap()), "{mounts}");
    assert_eq!(pod_cgroup(), None, "pod cgroup left behind");
}
