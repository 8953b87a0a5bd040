//! Row 4c: the per-container process while its container floods stdout and the log disk
//! is full (a 1 MiB tmpfs): hostlet's monitor beside podman's conmon, each writing the
//! container's log to its own full tmpfs. Memory is sampled every 200 ms for the window.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::util::*;

const FLOOD: &str = "exec yes flooding-the-log-disk";

/// Largest (RSS, PSS) KiB seen over the window, and the last sample.
pub type Peak = Option<((u64, u64), (u64, u64))>;

#[derive(Default)]
pub struct LogFlood {
    pub monitor: Peak,
    pub conmon: Peak,
    /// Percent of a core the process used over the window.
    pub monitor_cpu: Option<f64>,
    pub conmon_cpu: Option<f64>,
}

fn tmpfs(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "logflood"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mounting a tmpfs on {}", dir.display());
}

fn full(dir: &Path) -> bool {
    nix::sys::statvfs::statvfs(dir).is_ok_and(|s| s.blocks_available() == 0)
}

/// Samples `pid` for `window`: (largest (RSS, PSS), last (RSS, PSS)), % of a core.
fn sample(pid: i32, window: Duration) -> (Peak, Option<f64>) {
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let mut max = (0, 0);
    let mut last = None;
    while t0.elapsed() < window {
        if let Some(m) = rss_pss(pid) {
            max = (max.0.max(m.0), max.1.max(m.1));
            last = Some(m);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let cpu = match (ticks0, cpu_ticks(pid)) {
        (Some(a), Some(b)) => Some((b - a) as f64 / clk_tck() / t0.elapsed().as_secs_f64() * 100.0),
        _ => None,
    };
    (last.map(|l| (max, l)), cpu)
}

pub fn run(window: Duration, reg: &Registry) -> LogFlood {
    let mut r = LogFlood::default();
    let image = reg.image("test");
    let dirs = AgentDirs::new();
    tmpfs(&dirs.logs);
    let agent = BenchAgent::start(&dirs, reg);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: flood}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, {FLOOD:?}]\n"
    );
    fs::write(dirs.manifests.join("flood.yaml"), manifest).unwrap();
    let mon = wait_until(
        Duration::from_secs(60),
        "the flooding pod's monitor, log disk full",
        || dirs.agent_log(),
        || {
            let m = monitor_pids(&dirs.root);
            (m.len() == 1 && full(&dirs.logs)).then(|| m[0])
        },
    );
    (r.monitor, r.monitor_cpu) = sample(mon, window);
    drain(&dirs);
    drop(agent);

    if podman_configured() {
        let logs = dirs.base.join("podman-logs");
        tmpfs(&logs);
        let path = format!("path={}", logs.join("ctr.log").display());
        let name = format!("flood-{}", std::process::id());
        let out = podman(&[
            "run",
            "-d",
            "--name",
            &name,
            "--tls-verify=false",
            "--log-driver",
            "k8s-file",
            "--log-opt",
            &path,
            &image,
            "sh",
            "-c",
            FLOOD,
        ]);
        if out.status.success() {
            let conmon = wait_until(
                Duration::from_secs(60),
                "conmon of the flooding container, log disk full",
                String::new,
                || {
                    let c = conmon_pids();
                    (c.len() == 1 && full(&logs)).then(|| c[0])
                },
            );
            (r.conmon, r.conmon_cpu) = sample(conmon, window);
        }
        podman(&["rm", "-f", "-t", "0", &name]);
        detach_mounts_under(&logs);
    }
    r
}

pub fn describe(m: Peak, cpu: Option<f64>) -> String {
    match m {
        Some((max, last)) => format!(
            "RSS {} at most, {} at the end; PSS {} at most; {:.0}% of a core",
            mib(max.0),
            mib(last.0),
            mib(max.1),
            cpu.unwrap_or(f64::NAN)
        ),
        None => "n/a".into(),
    }
}
