//! Graceful node shutdown (`--shutdown-grace-period`, `--shutdown-grace-period-critical-pods`).
//! Where systemd is PID 1 (the VM suite, vm/run.sh) the agent holds logind's delay
//! inhibitor lock (seen in `systemd-inhibit --list`), and a real shutdown request
//! (logind's `PowerOff`) stops the regular pod first and the critical pod after it, each
//! handling SIGTERM within its share of the grace period, reported Failed/`Terminated`.
//! The request is made harmless first: `systemd-poweroff.service` is masked for the
//! runtime, so once the lock is released logind's start of `poweroff.target` fails (the
//! target requires the masked service), logind sends `PrepareForShutdown(false)`, and the
//! agent restarts the pods and takes the lock again. Without systemd the agent says the
//! feature is unavailable and runs pods as usual.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn pod(name: &str, image: &str, extra: &str, marker: &str) -> String {
    let script = format!(
        "trap 'echo {name} got SIGTERM; sleep 1; echo {name} done; exit 0' TERM; echo {name} up; while :; do sleep 0.2; done"
    );
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 30
{extra}  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", {script:?}, {marker:?}]
"#
    )
}

/// The CRI timestamp of the first log line of `pod` holding `what`.
fn logged_at(f: &Fixture, pod: &str, what: &str) -> jiff::Timestamp {
    let lines = f.wait(&format!("{pod} logging {what:?}"), || {
        let l = cri_log_lines(&f.dirs.logs, pod, "main");
        l.iter().any(|l| l.contains(what)).then_some(l)
    });
    let line = lines.iter().find(|l| l.contains(what)).unwrap();
    line.split(' ').next().unwrap().parse().unwrap()
}

/// Unmasks systemd-poweroff.service however the test ends.
struct Unmask;

impl Drop for Unmask {
    fn drop(&mut self) {
        let _ = sh(
            "systemctl",
            &["unmask", "--runtime", "systemd-poweroff.service"],
        );
    }
}

#[test]
fn shutdown_stops_regular_pods_then_critical_ones() {
    let port = free_port().to_string();
    let f = Fixture::with_args(&[
        "--read-only-port",
        &port,
        "--shutdown-grace-period=12s",
        "--shutdown-grace-period-critical-pods=4s",
    ]);
    let id = std::process::id();
    let (rm, cm) = (format!("ns-regular-{id}"), format!("ns-critical-{id}"));
    let image = f.image();
    write_manifest(&f.dirs, "regular.yaml", &pod("regular", &image, "", &rm));
    write_manifest(
        &f.dirs,
        "critical.yaml",
        &pod(
            "critical",
            &image,
            "  priorityClassName: system-node-critical\n",
            &cm,
        ),
    );
    f.output("regular", "main", "regular up");
    f.output("critical", "main", "critical up");

    if !Path::new("/run/systemd/system").is_dir() {
        // No systemd, no logind: the agent says so and runs pods as usual.
        f.log_has("graceful node shutdown unavailable");
        f.container_pid(&rm);
        f.container_pid(&cm);
        return;
    }

    f.log_has("holding a shutdown delay inhibitor lock");
    let (_, list) = sh("systemd-inhibit", &["--list", "--no-pager"]);
    let line = list
        .lines()
        .find(|l| l.contains("hostlet"))
        .unwrap_or_else(|| panic!("no hostlet lock in systemd-inhibit --list:\n{list}"));
    assert!(
        line.contains("shutdown") && line.contains("delay"),
        "{line}"
    );
    // logind's default InhibitDelayMaxSec (5 s) was raised to the grace period.
    let (_, delay) = sh(
        "busctl",
        &[
            "get-property",
            "org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "InhibitDelayMaxUSec",
        ],
    );
    assert_eq!(delay.trim(), "t 12000000", "{delay}");

    // Make the shutdown harmless, and check that it is before asking for one.
    let _unmask = Unmask;
    let (ok, out) = sh(
        "systemctl",
        &["mask", "--runtime", "systemd-poweroff.service"],
    );
    assert!(ok, "{out}");
    let (_, state) = sh(
        "systemctl",
        &["show", "-p", "LoadState", "systemd-poweroff.service"],
    );
    assert_eq!(state.trim(), "LoadState=masked");
    let (_, requires) = sh("systemctl", &["show", "-p", "Requires", "poweroff.target"]);
    assert!(requires.contains("systemd-poweroff.service"), "{requires}");
    let (ok, out) = sh(
        "busctl",
        &[
            "call",
            "org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "PowerOff",
            "b",
            "false",
        ],
    );
    assert!(ok, "PowerOff: {out}");

    // Regular first: it handled SIGTERM and was done before the critical pod got its.
    let regular_term = logged_at(&f, "regular", "regular got SIGTERM");
    let regular_done = logged_at(&f, "regular", "regular done");
    // Reported as the kubelet reports it while the critical pod stops.
    let st = f.wait("the regular pod reported terminated", || {
        let st = f.pod_status("regular")?;
        (st["reason"] == "Terminated").then_some(st)
    });
    assert_eq!(st["phase"], "Failed", "{st}");
    assert_eq!(st["message"], MESSAGE, "{st}");
    let critical_term = logged_at(&f, "critical", "critical got SIGTERM");
    let critical_done = logged_at(&f, "critical", "critical done");
    assert!(
        regular_done <= critical_term,
        "{regular_done} > {critical_term}"
    );
    let took = |a: jiff::Timestamp, b: jiff::Timestamp| b.duration_since(a);
    // Each within its share: 12 s - 4 s for regular pods, 4 s for critical ones.
    assert!(took(regular_term, regular_done) < jiff::SignedDuration::from_secs(8));
    assert!(took(critical_term, critical_done) < jiff::SignedDuration::from_secs(4));
    f.log_has("releasing the shutdown inhibitor lock");
    let log = f.dirs.agent_log();
    let stops = log
        .lines()
        .filter(|l| l.contains("the node stops the pod") && l.contains("reason=Terminated"))
        .count();
    assert_eq!(stops, 2, "{log}");
    // logind could not start poweroff.target: the shutdown is cancelled, the pods run
    // again and the lock is held again.
    f.log_has("the node shutdown was cancelled");
    for (name, marker) in [("regular", &rm), ("critical", &cm)] {
        f.wait(&format!("{name} running again"), || {
            let st = f.pod_status(name)?;
            (st["phase"] == "Running" && st["reason"].is_null()).then_some(())
        });
        f.container_pid(marker);
    }
    f.wait("the lock held again", || {
        let (_, list) = sh("systemd-inhibit", &["--list", "--no-pager"]);
        list.contains("hostlet").then_some(())
    });
    let (_, metrics) = http_get(&format!("127.0.0.1:{port}"), "/metrics").unwrap();
    for group in ["regular", "critical"] {
        assert!(
            metrics.contains(&format!(
                "hostlet_shutdown_pod_stops_total{{group=\"{group}\"}} 1\n"
            )),
            "{metrics}"
        );
    }
}
