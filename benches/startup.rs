//! Start-up latency: manifest written → the container's first instruction, for hostlet,
//! beside `runc run` of the same image as the floor. The container touches a file on a
//! hostPath; the host times its creation with inotify.
//!
//! Run as root: `cargo bench --bench startup` (env `RUNS`, default 10). Prints a markdown
//! table of medians; numbers go to BENCHMARKS.md with the command that produced them.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use notify::{EventKind, RecursiveMode, Watcher};

/// Blocks until `dir/name` is created; returns when inotify reported it.
struct Waiter {
    _w: notify::RecommendedWatcher,
    rx: mpsc::Receiver<PathBuf>,
}

impl Waiter {
    fn new(dir: &Path) -> Waiter {
        let (tx, rx) = mpsc::channel();
        let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if matches!(ev.kind, EventKind::Create(_)) {
                    for p in ev.paths {
                        let _ = tx.send(p);
                    }
                }
            }
        })
        .expect("inotify watcher");
        w.watch(dir, RecursiveMode::NonRecursive).expect("watch");
        Waiter { _w: w, rx }
    }

    fn wait(&self, name: &str) -> Instant {
        loop {
            let p = self.rx.recv_timeout(Duration::from_secs(60)).expect("file never appeared");
            if p.file_name().is_some_and(|n| n == name) {
                return Instant::now();
            }
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn pod(name: &str, image: &str, out: &Path) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: {image}
    command: ["/bin/touch", "/out/ready"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  volumes:
  - {{name: out, hostPath: {{path: {out}, type: Directory}}}}
"#,
        out = out.display()
    )
}

fn containers(root: &Path) -> usize {
    fs::read_dir(root.join("containers")).map(|d| d.count()).unwrap_or(0)
}

fn bench_hostlet(runs: usize, reg: &Registry) -> Vec<Duration> {
    let dirs = AgentDirs::new();
    let agent = Agent::start_with(&dirs, Some(reg), &["--file-check-frequency", "20s"]);
    let out_root = dirs.base.join("out");
    // Warm-up: pulls the image, so the runs measure a present image.
    let mut samples = Vec::new();
    for i in 0..=runs {
        let out = out_root.join(format!("r{i}"));
        fs::create_dir_all(&out).unwrap();
        let waiter = Waiter::new(&out);
        let name = format!("bench{i}.yaml");
        let tmp = dirs.manifests.join(format!(".{name}"));
        fs::write(&tmp, pod(&format!("bench{i}"), &reg.image("test"), &out)).unwrap();
        let t0 = Instant::now();
        fs::rename(&tmp, dirs.manifests.join(&name)).unwrap();
        let t1 = waiter.wait("ready");
        if i > 0 {
            samples.push(t1 - t0);
        }
        fs::remove_file(dirs.manifests.join(&name)).unwrap();
        agent.wait_until(Duration::from_secs(30), "pod removed", || (containers(&dirs.root) == 0).then_some(()));
    }
    samples
}

fn bench_runc(runs: usize) -> Vec<Duration> {
    let base = tempfile::Builder::new().prefix("hostlet-bench-runc-").tempdir().unwrap();
    let bundle = base.path().join("bundle");
    let layout = test_image_layout();
    let st = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:test", layout.display()))
        .arg(&bundle)
        .status()
        .expect("umoci");
    assert!(st.success(), "umoci unpack failed");
    let out = base.path().join("out");
    fs::create_dir_all(&out).unwrap();
    // umoci writes a runc-compatible config.json; point it at our command and hostPath.
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["args"] = serde_json::json!(["/bin/touch", "/out/ready"]);
    cfg["process"]["terminal"] = serde_json::json!(false);
    cfg["mounts"].as_array_mut().unwrap().push(serde_json::json!({
        "destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}));
    fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let mut samples = Vec::new();
    for i in 0..=runs {
        let _ = fs::remove_file(out.join("ready"));
        let waiter = Waiter::new(&out);
        let id = format!("hostlet-bench-{}-{i}", std::process::id());
        let t0 = Instant::now();
        let mut child = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("runc");
        let t1 = waiter.wait("ready");
        let _ = child.wait();
        let _ = Command::new("runc").args(["delete", "-f", &id]).status();
        if i > 0 {
            samples.push(t1 - t0);
        }
    }
    samples
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` also runs bench targets; measuring is `cargo bench`'s job.
        return;
    }
    let runs: usize = std::env::var("RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    require_root_and_tools();
    assert!(which("runc").is_some(), "runc is missing: apt-get install runc");
    let reg = Registry::start();
    let h = bench_hostlet(runs, &reg);
    let r = bench_runc(runs);
    println!("| what | median of {runs} | min | max |");
    println!("|---|---|---|---|");
    for (name, v) in [("hostlet: manifest written → first instruction", h), ("runc run → first instruction", r)] {
        let (min, max) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
        println!("| {name} | {} | {} | {} |", ms(median(v)), ms(min), ms(max));
    }
}
