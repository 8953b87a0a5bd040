//! Shared pieces of the benchmark harness: inotify waits, the agent as a user runs it,
//! podman with its private configuration, /proc readings and statistics.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};

use crate::common::*;

/// Reports every file created in one directory, with the instant inotify told us.
pub struct Waiter {
    _w: notify::RecommendedWatcher,
    rx: mpsc::Receiver<(PathBuf, Instant)>,
}

impl Waiter {
    pub fn new(dir: &Path) -> Waiter {
        let (tx, rx) = mpsc::channel();
        let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if matches!(ev.kind, EventKind::Create(_)) {
                    let now = Instant::now();
                    for p in ev.paths {
                        let _ = tx.send((p, now));
                    }
                }
            }
        })
        .expect("inotify watcher");
        w.watch(dir, RecursiveMode::NonRecursive).expect("watch");
        Waiter { _w: w, rx }
    }

    /// The instant a file whose name starts with `prefix` was created, or None after `timeout`.
    pub fn wait(&self, prefix: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (p, at) = self.rx.recv_timeout(left).ok()?;
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
            {
                return Some(at);
            }
        }
    }

    /// The instant the `n`-th file was created (counting from now), or None after `timeout`.
    pub fn wait_count(&self, n: usize, timeout: Duration) -> Option<Instant> {
        let mut last = None;
        for _ in 0..n {
            last = Some(self.wait("", timeout)?);
        }
        last
    }
}

/// A pod whose single container runs `script` with busybox sh, a hostPath on `out` at /out.
/// `BENCH_HOST_NETWORK=1` gives it the host's network (no CNI ADD), as before pod
/// networking existed.
pub fn pod(name: &str, image: &str, out: &Path, restart: &str, script: &str) -> String {
    let host_network = std::env::var("BENCH_HOST_NETWORK").is_ok_and(|v| v == "1");
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  hostNetwork: {host_network}
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: ["/bin/sh", "-c", "{script}"]
    env: [{{name: BENCH_POD, value: {name}}}]
    volumeMounts: [{{name: out, mountPath: /out}}]
  volumes:
  - {{name: out, hostPath: {{path: {out}, type: Directory}}}}
"#,
        out = out.display()
    )
}

/// `hostlet run` with the flags a user gives (default file check period of 20 s), its
/// output in `dirs.agent_log`. RUST_LOG comes from BENCH_RUST_LOG (default `info`).
pub struct BenchAgent {
    child: Child,
}

impl BenchAgent {
    pub fn start(dirs: &AgentDirs, reg: &Registry) -> BenchAgent {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dirs.agent_log)
            .expect("open agent.log");
        // BENCH_AGENT_WRAPPER: a profiler that runs the agent (`heaptrack -o FILE`); the
        // memory and CPU rows then measure the wrapper, not the agent.
        let wrapper = std::env::var("BENCH_AGENT_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(prog) => {
                let mut c = Command::new(prog);
                c.args(words).arg(hostlet_exe());
                c
            }
            None => Command::new(hostlet_exe()),
        };
        cmd.arg("run")
            .arg("--pod-manifest-path")
            .arg(&dirs.manifests)
            .arg("--root-dir")
            .arg(&dirs.root)
            .arg("--pod-logs-dir")
            .arg(&dirs.logs)
            .args([
                "--hostname-override",
                NODE_NAME,
                "--insecure-registry",
                &reg.addr,
            ]);
        // Its own cgroup root (removed with `dirs`): the pod cgroups of its pods are found
        // and counted there, and no other agent's orphan sweep touches them.
        if let Some(root) = &dirs.cgroup_root {
            cmd.args(["--cgroup-root", root]);
        }
        let _ = writeln!(log, "===== bench: starting {cmd:?}");
        let level = std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into());
        // A user's agent does not capture backtraces; with RUST_BACKTRACE set (as test shells
        // often have) every error would walk and symbolize the stack.
        let child = cmd
            .env("RUST_LOG", level)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn hostlet");
        BenchAgent { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn hostlet_exe() -> &'static str {
    env!("CARGO_BIN_EXE_hostlet")
}

/// Containers the agent has state for.
pub fn containers(root: &Path) -> usize {
    fs::read_dir(root.join("containers"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Removes every manifest and waits until the agent has no container left.
pub fn drain(dirs: &AgentDirs) {
    for e in fs::read_dir(&dirs.manifests).unwrap().flatten() {
        let _ = fs::remove_file(e.path());
    }
    wait_until(
        Duration::from_secs(120),
        "pods removed",
        || dirs.agent_log(),
        || (containers(&dirs.root) == 0).then_some(()),
    );
}

/// Writes manifests to dot-files first, then renames them all in a burst: returns the
/// instant before the first rename.
pub fn write_all(dirs: &AgentDirs, pods: &[(String, String)]) -> Instant {
    for (name, yaml) in pods {
        fs::write(dirs.manifests.join(format!(".{name}.yaml")), yaml).unwrap();
    }
    let t0 = Instant::now();
    for (name, _) in pods {
        let from = dirs.manifests.join(format!(".{name}.yaml"));
        fs::rename(from, dirs.manifests.join(format!("{name}.yaml"))).unwrap();
    }
    t0
}

// ---------------------------------------------------------------------------
// podman, configured by benches/run.sh through CONTAINERS_CONF / CONTAINERS_STORAGE_CONF

pub fn podman_configured() -> bool {
    std::env::var_os("CONTAINERS_CONF").is_some() && which("podman").is_some()
}

pub fn podman(args: &[&str]) -> Output {
    let out = Command::new("podman")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("spawn podman");
    if !out.status.success() {
        eprintln!(
            "podman {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// conmon processes of podman's run root (ours, not another podman's).
pub fn conmon_pids() -> Vec<i32> {
    let runroot = std::env::var("BENCH_PODMAN_RUNROOT").unwrap_or_default();
    all_pids()
        .into_iter()
        .filter(|&p| {
            cmdline(p).is_some_and(|c| c.starts_with("/usr/bin/conmon") && c.contains(&runroot))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// /proc

/// (RSS, PSS) in KiB from /proc/<pid>/smaps_rollup.
pub fn rss_pss(pid: i32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// utime + stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// PIDs of every `hostlet-monitor monitor` under `root`.
pub fn monitor_pids(root: &Path) -> Vec<i32> {
    let needle = format!("monitor {}", root.display());
    find_pids_by_cmdline(&needle)
}

// ---------------------------------------------------------------------------
// Statistics and output

pub fn median<T: Ord + Copy>(v: &[T]) -> Option<T> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn mib(kib: u64) -> String {
    format!("{:.2} MiB", kib as f64 / 1024.0)
}

/// "median (min–max, n=N)" of durations, or "failed".
pub fn summary(v: &[Duration]) -> String {
    match (median(v), v.iter().min(), v.iter().max()) {
        (Some(m), Some(lo), Some(hi)) => {
            format!("{} ({}–{}, n={})", ms(m), ms(*lo), ms(*hi), v.len())
        }
        _ => "failed".into(),
    }
}

/// Rows of the results table, printed as they come and collected for the file.
#[derive(Default)]
pub struct Table {
    pub rows: Vec<String>,
}

impl Table {
    pub fn row(&mut self, what: &str, hostlet: &str, peers: &str, target: &str) {
        let r = format!("| {what} | {hostlet} | {peers} | {target} |");
        println!("{r}");
        self.rows.push(r);
    }
}

/// First line of `cmd --version`-like output, or "missing".
pub fn version(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "missing".into())
}
