//! Rows 2–5 on one agent: N pods written at once → all running (10 and 100, with podman
//! kube play of 10 pods interleaved), the first restart of a killed container, memory
//! (agent, monitor vs conmon) and idle CPU with 100 pods running.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::util::*;

const T: Duration = Duration::from_secs(180);

#[derive(Default)]
pub struct Scale {
    pub hostlet10: Vec<Duration>,
    pub hostlet100: Vec<Duration>,
    pub podman10: Vec<Duration>,
    pub restart_hostlet: Vec<Duration>,
    pub restart_podman: Vec<Duration>,
    /// Agent (RSS, PSS) KiB with 100 pods.
    pub agent_mem: Option<(u64, u64)>,
    /// The same at the end of the idle window.
    pub agent_mem_idle: Option<(u64, u64)>,
    /// Medians over monitors / conmons: (RSS, PSS) KiB and how many.
    pub monitor_mem: Option<(u64, u64, usize)>,
    pub conmon_mem: Option<(u64, u64, usize)>,
    /// Percent of one core over the idle window: agent, all monitors together.
    pub idle_cpu: Option<(f64, f64, u64)>,
}

/// Each start creates `/out/<pod>.<uuid>`, so restarts show up as new files.
fn script() -> &'static str {
    "touch /out/$BENCH_POD.$(cat /proc/sys/kernel/random/uuid); exec sleep 3600"
}

fn pods(prefix: &str, n: usize, image: &str, out: &Path) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}{i}");
            let yaml = pod(&name, image, out, "Always", script());
            (name, yaml)
        })
        .collect()
}

pub fn run(runs10: usize, runs100: usize, idle: Duration, reg: &Registry) -> Scale {
    let dirs = AgentDirs::new();
    let agent = BenchAgent::start(&dirs, reg);
    let image = reg.image("test");
    let use_podman = podman_configured();
    let mut s = Scale::default();
    let out_root = dirs.base.join("out");

    // Warm-up: the image is pulled and unpacked once.
    let out = out_root.join("warm");
    fs::create_dir_all(&out).unwrap();
    let w = Waiter::new(&out);
    write_all(&dirs, &pods("warm", 1, &image, &out));
    w.wait("", T).expect("warm-up pod never started");
    drain(&dirs);

    for r in 0..runs10 {
        let last = r + 1 == runs10;
        let out = out_root.join(format!("h10-{r}"));
        fs::create_dir_all(&out).unwrap();
        let w = Waiter::new(&out);
        let t0 = write_all(&dirs, &pods(&format!("s{r}-"), 10, &image, &out));
        let t1 = w.wait_count(10, T).expect("10 pods never all ran");
        s.hostlet10.push(t1 - t0);
        if last {
            s.restart_hostlet = restarts(&format!("s{r}-"), 10, &out);
        }
        drain(&dirs);

        if use_podman {
            let out = out_root.join(format!("p10-{r}"));
            fs::create_dir_all(&out).unwrap();
            let prefix = format!("p{}-{r}-", std::process::id());
            let file = dirs.base.join(format!("{prefix}.yaml"));
            let docs: Vec<String> = pods(&prefix, 10, &image, &out)
                .into_iter()
                .map(|p| p.1)
                .collect();
            fs::write(&file, docs.join("---\n")).unwrap();
            let w = Waiter::new(&out);
            let t0 = Instant::now();
            let mut child = Command::new("podman")
                .args(["kube", "play", "--tls-verify=false", "-q"])
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("podman");
            let t1 = w.wait_count(10, T);
            let _ = child.wait();
            match t1 {
                Some(t1) => s.podman10.push(t1 - t0),
                None => eprintln!("podman kube play of 10 pods: not all ran"),
            }
            if last && t1.is_some() {
                let mems: Vec<(u64, u64)> = conmon_pids().into_iter().filter_map(rss_pss).collect();
                s.conmon_mem = med_mem(&mems);
                s.restart_podman = restarts(&prefix, 10, &out);
            }
            podman(&["kube", "down", file.to_str().unwrap()]);
        }
    }

    for r in 0..runs100 {
        let last = r + 1 == runs100;
        let out = out_root.join(format!("h100-{r}"));
        fs::create_dir_all(&out).unwrap();
        let w = Waiter::new(&out);
        let t0 = write_all(&dirs, &pods(&format!("m{r}-"), 100, &image, &out));
        let t1 = w.wait_count(100, T).expect("100 pods never all ran");
        s.hostlet100.push(t1 - t0);
        if last {
            // Let start-up work (status writes, log files) settle before measuring idle.
            std::thread::sleep(Duration::from_secs(5));
            s.agent_mem = rss_pss(agent.pid());
            let mons = monitor_pids(&dirs.root);
            let mems: Vec<(u64, u64)> = mons.iter().copied().filter_map(rss_pss).collect();
            s.monitor_mem = med_mem(&mems);
            let smaps = std::env::var_os("BENCH_SMAPS").is_some();
            if smaps {
                keep_smaps("", agent.pid(), mons.first().copied());
            }
            s.idle_cpu = idle_cpu(agent.pid(), &mons, idle);
            s.agent_mem_idle = rss_pss(agent.pid());
            if smaps {
                keep_smaps("-idle", agent.pid(), None);
            }
        }
        drain(&dirs);
    }
    s
}

/// BENCH_SMAPS: keeps `/proc/PID/{smaps,status}` of the agent and of one monitor in
/// target/bench/ (`agent.smaps`, …; `agent-idle.smaps` after the idle window), for
/// profiling rows 4a and 4b.
fn keep_smaps(suffix: &str, agent: i32, monitor: Option<i32>) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    let _ = fs::create_dir_all(&out);
    for (name, pid) in [("agent", Some(agent)), ("monitor", monitor)] {
        let Some(pid) = pid else { continue };
        for file in ["smaps", "status"] {
            if let Ok(text) = fs::read(format!("/proc/{pid}/{file}")) {
                let _ = fs::write(out.join(format!("{name}{suffix}.{file}")), text);
            }
        }
    }
}

fn med_mem(v: &[(u64, u64)]) -> Option<(u64, u64, usize)> {
    let rss: Vec<u64> = v.iter().map(|m| m.0).collect();
    let pss: Vec<u64> = v.iter().map(|m| m.1).collect();
    Some((median(&rss)?, median(&pss)?, v.len()))
}

/// CPU of the agent and of all monitors together over `window`, percent of one core.
fn idle_cpu(agent: i32, monitors: &[i32], window: Duration) -> Option<(f64, f64, u64)> {
    let mons = |pids: &[i32]| pids.iter().filter_map(|&p| cpu_ticks(p)).sum::<u64>();
    let (a0, m0) = (cpu_ticks(agent)?, mons(monitors));
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (a1, m1) = (cpu_ticks(agent)?, mons(monitors));
    let secs = t0.elapsed().as_secs_f64();
    let pct = |ticks: u64| ticks as f64 / clk_tck() / secs * 100.0;
    Some((pct(a1 - a0), pct(m1.saturating_sub(m0)), a1 - a0))
}

/// SIGKILLs the container of each of the `n` pods in turn and times until its restarted
/// container touched its file again.
fn restarts(prefix: &str, n: usize, out: &Path) -> Vec<Duration> {
    let mut v = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        let Some(pid) = sleeper_of(&name) else {
            eprintln!("restart: no container process for {name}");
            continue;
        };
        let w = Waiter::new(out);
        let t0 = Instant::now();
        signal(pid, libc::SIGKILL);
        match w.wait(&format!("{name}."), Duration::from_secs(30)) {
            Some(t1) => v.push(t1 - t0),
            None => eprintln!("restart: {name} did not run again within 30 s"),
        }
    }
    v
}

/// The container process (`sleep 3600`) whose environment names `pod`.
fn sleeper_of(pod: &str) -> Option<i32> {
    let needle = format!("BENCH_POD={pod}\0");
    find_pids_by_cmdline("sleep 3600").into_iter().find(|p| {
        fs::read(format!("/proc/{p}/environ"))
            .is_ok_and(|e| e.windows(needle.len()).any(|w| w == needle.as_bytes()))
    })
}
