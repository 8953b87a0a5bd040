//! hostlet beside its peers (runc, podman kube play, skopeo): the six rows of
//! BENCHMARKS.md. Run as root through `benches/run.sh`, which installs and configures the
//! peers; `cargo bench --bench peers -- [startup] [scale] [pull]` runs some sections only.
//!
//! Environment: RUNS (row 1, default 10), RUNS_10 / RUNS_100 (row 2, defaults 5 / 2),
//! IDLE_SECS (row 5, default 60), PULL_RUNS / PULL_MIB (row 6, defaults 3 / 256),
//! BENCH_RUST_LOG (the agent's RUST_LOG, default `info`), BENCH_SMAPS (set: keep the
//! agent's and one monitor's /proc smaps and status at 100 pods in target/bench/),
//! BENCH_AGENT_WRAPPER (a profiler command the agent runs under, e.g. `heaptrack -o FILE`).
//! Prints a markdown table and writes it with the machine's description to
//! target/bench/results.md.

#[path = "../../tests/common/mod.rs"]
mod common;
mod logflood;
mod pull;
mod scale;
mod startup;
mod util;

use std::time::Duration;

use common::*;
use util::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn machine() -> Vec<String> {
    let cgroup = if cgroup_v2() {
        "v2 (unified)"
    } else {
        "v1 (hybrid)"
    };
    let rev = version(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "describe",
            "--always",
            "--dirty",
        ],
    );
    vec![
        format!(
            "- date: {}",
            version("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        ),
        format!(
            "- machine: {} cores ({}), kernel {}, cgroup {cgroup}, load average at start {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            version(
                "sh",
                &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]
            ),
            version("uname", &["-r"]),
            version("cut", &["-d ", "-f1-3", "/proc/loadavg"]),
        ),
        format!(
            "- versions: hostlet {rev}; {}; {}; {}; {}; {}",
            version("runc", &["--version"]),
            version("podman", &["--version"]),
            version("conmon", &["--version"]),
            version("skopeo", &["--version"]),
            version("umoci", &["--version"]),
        ),
    ]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` also runs bench targets; measuring is `cargo bench`'s job.
        return;
    }
    // `cargo bench` points LD_LIBRARY_PATH at build-script output (ring, zstd); every
    // dynamically linked program started under it (hostlet's helpers, runc, podman) then
    // searched ~80 directories for libc. A host has no such variable.
    std::env::remove_var("LD_LIBRARY_PATH");
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| wanted.is_empty() || wanted.iter().any(|w| w == s);
    require_root_and_tools();
    assert!(
        which("runc").is_some(),
        "runc is missing: run benches/run.sh"
    );
    if !podman_configured() {
        eprintln!("podman is not configured (CONTAINERS_CONF unset): its columns stay empty; run benches/run.sh");
    }
    let head = machine();
    for l in &head {
        println!("{l}");
    }
    let reg = Registry::start();
    let mut t = Table::default();
    println!("\n| row | hostlet | peers | target |\n|---|---|---|---|");

    if want("startup") {
        let runs = env_or("RUNS", 10) as usize;
        let s = startup::run(runs, &reg);
        let ratio = |a: &[Duration], b: &[Duration]| match (median(a), median(b)) {
            (Some(a), Some(b)) => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
            _ => "n/a".into(),
        };
        t.row(
            "1. manifest written → first instruction",
            &summary(&s.hostlet),
            &format!(
                "podman kube play {}; runc run {}",
                summary(&s.podman),
                summary(&s.runc)
            ),
            &format!(
                "≤ 1.5× runc: {}×; ≥ 7× faster than podman: {}×",
                ratio(&s.hostlet, &s.runc),
                ratio(&s.podman, &s.hostlet)
            ),
        );
        let extra = match (median(&s.userns), median(&s.hostlet)) {
            (Some(u), Some(h)) => format!("{:+.1} ms", (u.as_secs_f64() - h.as_secs_f64()) * 1e3),
            _ => "n/a".into(),
        };
        // A pod in a user namespace may not share the host's network: under
        // BENCH_HOST_NETWORK only row 1's pod skips the CNI ADD, and the row says so.
        let beside = if std::env::var("BENCH_HOST_NETWORK").is_ok_and(|v| v == "1") {
            "host users with hostNetwork (row 1; not comparable: the hostUsers: false pod has a pod network, its CNI ADD is in the difference)"
        } else {
            "host users (row 1)"
        };
        t.row(
            "1b. the same, hostUsers: false",
            &summary(&s.userns),
            &format!("{beside} {}", summary(&s.hostlet)),
            &format!("≤ 10 ms more: {extra}"),
        );
    }

    if want("scale") {
        let s = scale::run(
            env_or("RUNS_10", 5) as usize,
            env_or("RUNS_100", 2) as usize,
            Duration::from_secs(env_or("IDLE_SECS", 60)),
            &reg,
        );
        t.row(
            "2a. 10 pods written at once → all running",
            &summary(&s.hostlet10),
            &format!(
                "podman kube play (10 pods, one file) {}",
                summary(&s.podman10)
            ),
            "≤ 300 ms",
        );
        t.row(
            "2b. 100 pods written at once → all running",
            &summary(&s.hostlet100),
            "",
            "≤ 3 s",
        );
        t.row(
            "3. container killed → running again (first restart)",
            &summary(&s.restart_hostlet),
            &format!(
                "podman (restartPolicy Always) {}",
                summary(&s.restart_podman)
            ),
            "≤ 50 ms",
        );
        let mem = |m: Option<(u64, u64)>| {
            m.map_or("n/a".into(), |(r, p)| {
                format!("RSS {}, PSS {}", mib(r), mib(p))
            })
        };
        let per = |m: Option<(u64, u64, usize)>| {
            m.map_or("n/a".into(), |(r, p, n)| {
                format!("RSS {}, PSS {} (median of {n})", mib(r), mib(p))
            })
        };
        t.row(
            "4a. agent memory with 100 pods",
            &format!(
                "{} 5 s after the last start; {} after the idle window",
                mem(s.agent_mem),
                mem(s.agent_mem_idle)
            ),
            "podman: no daemon",
            "≤ 15 MB RSS",
        );
        t.row(
            "4b. per-container process",
            &format!("monitor {}", per(s.monitor_mem)),
            &format!("conmon {}", per(s.conmon_mem)),
            "≤ 0.5 MB PSS",
        );
        t.row(
            "5. idle CPU with 100 pods",
            &s.idle_cpu.map_or("n/a".into(), |(a, m, ticks)| {
                format!("agent {a:.3}% of a core ({ticks} ticks); all 100 monitors {m:.3}%")
            }),
            "",
            "≤ 0.5% of a core",
        );
    }

    if want("logflood") {
        let secs = env_or("FLOOD_SECS", 20);
        let f = logflood::run(Duration::from_secs(secs), &reg);
        t.row(
            &format!(
                "4c. per-container process, stdout flood, log disk full (1 MiB tmpfs), {secs} s"
            ),
            &format!("monitor {}", logflood::describe(f.monitor, f.monitor_cpu)),
            &format!("conmon {}", logflood::describe(f.conmon, f.conmon_cpu)),
            "≤ 8 MB RSS, flat",
        );
    }

    if want("pull") {
        let mib_size = env_or("PULL_MIB", 256);
        let p = pull::run(env_or("PULL_RUNS", 3) as usize, mib_size, &reg);
        let ratio = match (
            pull::throughput(&p.hostlet, p.bytes),
            pull::throughput(&p.skopeo, p.bytes),
        ) {
            (Some(h), Some(s)) => format!("{:.2}× skopeo's throughput", h / s),
            _ => "n/a".into(),
        };
        t.row(
            &format!(
                "6. cold pull, {mib_size} MiB random layer ({:.0} MiB)",
                p.bytes as f64 / 1048576.0
            ),
            &pull::describe(&p.hostlet, p.bytes),
            &format!(
                "skopeo copy to dir: {}; podman pull: {}",
                pull::describe(&p.skopeo, p.bytes),
                pull::describe(&p.podman, p.bytes)
            ),
            &format!("≥ 0.8× skopeo, flat memory: {ratio}"),
        );
    }

    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out).unwrap();
    let mut text = head.join("\n");
    text.push_str("\n\n| row | hostlet | peers | target |\n|---|---|---|---|\n");
    text.push_str(&t.rows.join("\n"));
    text.push('\n');
    let file = out.join("results.md");
    std::fs::write(&file, text).unwrap();
    println!("\nwritten to {}", file.display());
}
