//! The cgroup driver (`--cgroup-driver cgroupfs|systemd`, detected by default) on real
//! containers. These tests run on both kinds of host and assert what each must do: where
//! systemd is PID 1 (the VM suite, vm/run.sh), pod cgroups are slices
//! (`kubepods-burstable-pod<UID>.slice`) holding container scopes (`hostlet-<ID>.scope`),
//! with the kubelet's pod-level limits, removed with the pod, and `systemctl restart
//! hostlet` leaves containers running; without systemd (CI's hybrid v1 host) the default
//! is cgroupfs and `--cgroup-driver systemd` fails with a clear error.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(40);
const PODS_MAX: &str = "77";

/// The tests of this file run one at a time: one of them starts the packaged agent
/// (vm/guest.sh stops it before the tests), whose orphan cgroup sweep shares the default
/// cgroup root with the other tests' agents and would take their idle pod slices.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The uid of the only pod.
fn pod_uid(f: &Fixture) -> String {
    let pods: Vec<String> = fs::read_dir(f.dirs.root.join("pods"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(pods.len(), 1, "one pod expected: {pods:?}");
    pods[0].clone()
}

/// A Burstable pod `name` with one container `c` (requests 250m/64Mi, limits
/// 500m/128Mi) running a loop tagged `marker`; returns the container's pid.
fn run_burstable(f: &Fixture, name: &str, marker: &str) -> i32 {
    let img = f.reg.image("test");
    write_manifest(
        &f.dirs,
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {img}\n    command: [sh, -c, 'while :; do sleep 1; done', {marker}]\n    resources: {{requests: {{cpu: 250m, memory: 64Mi}}, limits: {{cpu: 500m, memory: 128Mi}}}}\n"
        ),
    );
    f.container_pid(marker)
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The v2 cgroup of `pid` (the `0::` line of /proc/PID/cgroup).
fn unified_cgroup(pid: i32) -> String {
    let text = read(Path::new(&format!("/proc/{pid}/cgroup")));
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no unified cgroup for {pid}: {text}"))
        .to_string()
}

fn container_id(uid: &str, name: &str) -> String {
    format!("{}-{name}-0", &uid[..16])
}

fn systemctl(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("systemctl {args:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// The pod cgroup under cgroupfs (kubepods/burstable/pod<UID>), holding the container's:
/// on v1 in each controller's hierarchy, on v2 the unified one.
fn assert_cgroupfs_layout(f: &Fixture, pid: i32) {
    let uid = pod_uid(f);
    let id = container_id(&uid, "c");
    // Under the test agent's own --cgroup-root, if it has one (tests/common).
    let root = f.dirs.cgroup_root.as_deref().unwrap_or("/");
    let rel = format!("{}/kubepods/burstable/pod{uid}", root.trim_matches('/'));
    let rel = rel.trim_start_matches('/');
    let (mem, cpu, pids) = if cgroup_v2() {
        let d = Path::new("/sys/fs/cgroup").join(rel);
        (d.clone(), d.clone(), d)
    } else {
        let d = |ctl: &str| Path::new("/sys/fs/cgroup").join(ctl).join(rel);
        (d("memory"), d("cpu"), d("pids"))
    };
    assert_eq!(cgroup_dir(pid, "memory"), mem.join(&id));
    if cgroup_v2() {
        assert_eq!(read(&mem.join("memory.max")), (128 << 20).to_string());
        assert_eq!(read(&cpu.join("cpu.max")), "50000 100000");
        assert_eq!(
            read(&cpu.join("cpu.weight")),
            cpu_shares_to_weight(256).to_string()
        );
    } else {
        assert_eq!(
            read(&mem.join("memory.limit_in_bytes")),
            (128 << 20).to_string()
        );
        assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&cpu.join("cpu.shares")), "256");
    }
    assert_eq!(read(&pids.join("pids.max")), PODS_MAX);
    remove_manifest(&f.dirs, "cg.yaml");
    f.wait("pod cgroup removed", || (!mem.exists()).then_some(()));
}

/// The busctl/systemctl calls the agent made so far and their wall time, from its debug
/// log (`systemd call elapsed_us=…`): what the systemd driver costs a pod start, printed
/// for `vm/run.sh -- --nocapture` (src/cgroups/systemd.rs keeps busctl on these numbers).
fn print_systemd_call_costs(log: &str) {
    let mut us: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("systemd call"))
        .filter_map(|l| {
            l.split("elapsed_us=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    us.sort_unstable();
    if let (Some(min), Some(max)) = (us.first(), us.last()) {
        let total: u64 = us.iter().sum();
        println!(
            "systemd calls until the first pod ran: {} calls, {:.1} ms in all, median {:.1} ms (min {:.1}, max {:.1})",
            us.len(),
            total as f64 / 1000.0,
            us[us.len() / 2] as f64 / 1000.0,
            *min as f64 / 1000.0,
            *max as f64 / 1000.0
        );
    }
}

#[test]
fn pod_cgroups_follow_the_detected_driver() {
    let _serial = one_at_a_time();
    let f = Fixture::with_args(&["--pod-max-pids", PODS_MAX]).patient(T);
    let pid = run_burstable(&f, "cg", "drv-default");
    if !systemd_booted() {
        assert!(
            f.dirs.agent_log().contains("cgroup_driver=cgroupfs"),
            "{}",
            f.dirs.agent_log()
        );
        assert_cgroupfs_layout(&f, pid);
        return;
    }
    assert!(
        f.dirs.agent_log().contains("cgroup_driver=systemd"),
        "{}",
        f.dirs.agent_log()
    );
    print_systemd_call_costs(&f.dirs.agent_log());
    let uid = pod_uid(&f);
    let slice = format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_"));
    let scope = format!("hostlet-{}.scope", container_id(&uid, "c"));
    let slice_dir = format!("/kubepods.slice/kubepods-burstable.slice/{slice}");
    assert_eq!(unified_cgroup(pid), format!("{slice_dir}/{scope}"));
    for unit in ["kubepods.slice", "kubepods-burstable.slice", &slice, &scope] {
        assert_eq!(
            systemctl(&["is-active", unit]).1,
            "active",
            "{unit} is not active"
        );
    }
    // The kubelet's ResourceConfigForPod, as unit properties systemd wrote out.
    let dir = Path::new("/sys/fs/cgroup").join(slice_dir.trim_start_matches('/'));
    assert_eq!(read(&dir.join("memory.max")), (128 << 20).to_string());
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(
        read(&dir.join("cpu.weight")),
        cpu_shares_to_weight(256).to_string()
    );
    assert_eq!(read(&dir.join("pids.max")), PODS_MAX);
    // The container's own limits are on its scope.
    let lim = cgroup_limits(pid);
    assert_eq!(lim.memory_max, Some(128 << 20));

    remove_manifest(&f.dirs, "cg.yaml");
    f.wait("pod slice and container scope removed", || {
        (!dir.exists() && !process_exists(pid)).then_some(())
    });
    let (active, state) = systemctl(&["is-active", &slice]);
    assert!(!active, "{slice} still {state}");
}

#[test]
fn explicit_cgroupfs_driver_and_systemd_without_systemd() {
    let _serial = one_at_a_time();
    if !systemd_booted() {
        let dirs = AgentDirs::new();
        let mut agent = Agent::start_with(&dirs, None, &["--cgroup-driver", "systemd"]);
        wait_until(
            T,
            "the agent exits",
            || dirs.agent_log(),
            || (!agent.is_running()).then_some(()),
        );
        let log = dirs.agent_log();
        assert!(log.contains("systemd is not running"), "{log}");
        assert!(log.contains("--cgroup-driver cgroupfs"), "{log}");
    }
    // cgroupfs on request, with or without systemd.
    let f =
        Fixture::with_args(&["--pod-max-pids", PODS_MAX, "--cgroup-driver", "cgroupfs"]).patient(T);
    let pid = run_burstable(&f, "cg", "drv-cgroupfs");
    assert_cgroupfs_layout(&f, pid);
}

/// With systemd: `systemctl restart hostlet` (the unit vagrant/provision.sh installs,
/// running the demo pods) leaves the containers running in their scopes and the new
/// agent adopts them. Without systemd: the same through a restarted agent process.
#[test]
fn agent_restart_leaves_containers_in_their_cgroups() {
    let _serial = one_at_a_time();
    if !systemd_booted() {
        let mut f = Fixture::with_args(&[]).patient(T);
        let pid = run_burstable(&f, "cg", "drv-restart");
        let before = cgroup_dir(pid, "memory");
        f.agent.as_mut().unwrap().sigterm_and_wait();
        f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &[]));
        f.wait("the new agent adopts the container", || {
            f.dirs
                .agent_log()
                .contains("found containers of an earlier agent")
                .then_some(())
        });
        assert!(process_exists(pid));
        assert_eq!(cgroup_dir(pid, "memory"), before);
        return;
    }
    // Started for this test and stopped after it, as vm/guest.sh left it.
    let (ok, _) = systemctl(&["start", "hostlet.service"]);
    assert!(ok, "systemctl start hostlet failed");
    struct StopService;
    impl Drop for StopService {
        fn drop(&mut self) {
            systemctl(&["stop", "hostlet.service"]);
        }
    }
    let _stop = StopService;
    assert_eq!(systemctl(&["is-active", "hostlet.service"]).1, "active");
    let web = wait_until(T, "the demo web pod's httpd", String::new, || {
        let pids = find_pids_by_cmdline("httpd -f -vv -p 8080");
        (pids.len() == 1).then(|| pids[0])
    });
    let cg = unified_cgroup(web);
    assert!(
        cg.starts_with("/kubepods.slice/kubepods-pod") && cg.contains(".slice/hostlet-"),
        "the demo web pod (Guaranteed) is not in a pod slice scope: {cg}"
    );
    let since = chrono_now();
    let (ok, _) = systemctl(&["restart", "hostlet.service"]);
    assert!(ok, "systemctl restart hostlet failed");
    assert_eq!(systemctl(&["is-active", "hostlet.service"]).1, "active");
    wait_until(
        T,
        "the restarted agent adopts the containers",
        String::new,
        || {
            let out = Command::new("journalctl")
                .args([
                    "-u",
                    "hostlet.service",
                    "--no-pager",
                    "-o",
                    "cat",
                    "--since",
                    &since,
                ])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("found containers of an earlier agent")
                .then_some(())
        },
    );
    assert!(
        process_exists(web),
        "httpd {web} did not survive the restart"
    );
    assert_eq!(unified_cgroup(web), cg);
}

/// `journalctl --since` wants local wall time; `date` gives it.
fn chrono_now() -> String {
    let out = Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S")
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// READY=1 waits for the first sync of every source: with a manifest URL whose server
/// holds its first answer, the agent stays "activating" (systemd) or sends nothing on
/// `$NOTIFY_SOCKET` (elsewhere) until the answer arrives, and turns ready right after.
#[test]
fn ready_only_after_the_first_sync() {
    let _serial = one_at_a_time();
    require_root_and_tools();
    let dirs = AgentDirs::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/pods", listener.local_addr().unwrap());
    let (asked_tx, asked) = std::sync::mpsc::channel::<()>();
    let (release, released_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().expect("accept the agent's request");
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        asked_tx.send(()).unwrap();
        let _ = released_rx.recv();
        let body = r#"{"apiVersion":"v1","kind":"PodList","items":[]}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let args = [
        env!("CARGO_BIN_EXE_hostlet").to_string(),
        "run".into(),
        "--manifest-url".into(),
        url,
        "--root-dir".into(),
        dirs.root.display().to_string(),
        "--pod-logs-dir".into(),
        dirs.logs.display().to_string(),
        "--hostname-override".into(),
        NODE_NAME.into(),
    ]
    .into_iter()
    .chain(dirs.net.args())
    .collect::<Vec<String>>();
    let log = || dirs.agent_log();
    let held = Duration::from_secs(2);
    if systemd_booted() {
        let unit = format!("hostlet-ready-test-{}.service", std::process::id());
        struct StopUnit(String);
        impl Drop for StopUnit {
            fn drop(&mut self) {
                let _ = systemctl(&["stop", &self.0]);
            }
        }
        let mut run = Command::new("systemd-run");
        run.args(["--no-block", "--collect", "--unit", &unit])
            .args(["-p", "Type=notify", "-p", "KillMode=process"])
            .args(["--setenv", "RUST_LOG=info"])
            .args(&args);
        let out = run.output().expect("systemd-run");
        assert!(out.status.success(), "systemd-run: {out:?}");
        let _stop = StopUnit(unit.clone());
        let journal = || {
            let out = Command::new("journalctl")
                .args(["-u", &unit, "--no-pager", "-o", "cat"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            out.unwrap_or_default()
        };
        wait_until(T, "the agent's first manifest request", journal, || {
            asked.try_recv().ok()
        });
        std::thread::sleep(held);
        assert_eq!(
            systemctl(&["is-active", &unit]).1,
            "activating",
            "the agent is not synced yet: {}",
            journal()
        );
        release.send(()).unwrap();
        wait_until(T, "the unit to turn active", journal, || {
            (systemctl(&["is-active", &unit]).1 == "active").then_some(())
        });
    } else {
        let notify_path = dirs.base.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
        sock.set_nonblocking(true).unwrap();
        let agent_log = fs::File::create(&dirs.agent_log).unwrap();
        let mut agent = Command::new(&args[0])
            .args(&args[1..])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(agent_log.try_clone().unwrap())
            .stderr(agent_log)
            .spawn()
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let mut received = String::new();
        let mut drain = |received: &mut String| {
            while let Ok(n) = sock.recv(&mut buf) {
                received.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        wait_until(T, "the agent's first manifest request", log, || {
            asked.try_recv().ok()
        });
        std::thread::sleep(held);
        drain(&mut received);
        let early = !received.contains("READY=1");
        if early {
            release.send(()).unwrap();
            wait_until(T, "READY=1 after the first sync", log, || {
                drain(&mut received);
                received.contains("READY=1").then_some(())
            });
        }
        signal(agent.id() as i32, libc::SIGTERM);
        let _ = agent.wait();
        assert!(
            early,
            "READY=1 before the first sync: {received}\n{}",
            log()
        );
    }
    server.join().unwrap();
}
