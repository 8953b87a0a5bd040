//! Row 1: manifest written → the container's first instruction, for hostlet, `podman kube
//! play` of the same manifest and `runc run` of the same image, interleaved run by run so
//! background load hits all three alike. Beside them, the same pod with `hostUsers: false`
//! (a user namespace, idmapped layers and volume) in the same agent.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::util::*;

const T: Duration = Duration::from_secs(60);

pub struct Startup {
    pub hostlet: Vec<Duration>,
    /// The same pod with `hostUsers: false`.
    pub userns: Vec<Duration>,
    pub podman: Vec<Duration>,
    pub runc: Vec<Duration>,
}

pub fn run(runs: usize, reg: &Registry) -> Startup {
    let dirs = AgentDirs::new();
    let _agent = BenchAgent::start(&dirs, reg);
    let out_root = dirs.base.join("out");
    let bundle = RuncBundle::new(&dirs.base.join("runc"));
    let image = reg.image("test");
    let use_podman = podman_configured();
    if use_podman {
        podman(&["pull", "-q", "--tls-verify=false", &image]);
    }
    let mut s = Startup {
        hostlet: vec![],
        userns: vec![],
        podman: vec![],
        runc: vec![],
    };
    // Run 0 warms every path up (hostlet pulls the image); it is not counted.
    for i in 0..=runs {
        let out = out_root.join(format!("h{i}"));
        fs::create_dir_all(&out).unwrap();
        let waiter = Waiter::new(&out);
        let name = format!("start{i}");
        let yaml = pod(&name, &image, &out, "Never", "touch /out/ready");
        let t0 = write_all(&dirs, &[(name.clone(), yaml)]);
        let t1 = waiter
            .wait("ready", T)
            .expect("hostlet: container never touched its file");
        if i > 0 {
            s.hostlet.push(t1 - t0);
        }
        fs::remove_file(dirs.manifests.join(format!("{name}.yaml"))).unwrap();
        wait_removed(&dirs);
        s.userns.extend(userns_run(&dirs, &image, &out_root, i));

        if use_podman {
            let out = out_root.join(format!("p{i}"));
            fs::create_dir_all(&out).unwrap();
            let waiter = Waiter::new(&out);
            let name = format!("pstart{}-{i}", std::process::id());
            let file = dirs.base.join(format!("{name}.yaml"));
            fs::write(&file, pod(&name, &image, &out, "Never", "touch /out/ready")).unwrap();
            let t0 = std::time::Instant::now();
            let mut child = Command::new("podman")
                .args(["kube", "play", "--tls-verify=false", "-q"])
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("podman");
            let t1 = waiter.wait("ready", T);
            let _ = child.wait();
            match t1 {
                Some(t1) if i > 0 => s.podman.push(t1 - t0),
                Some(_) => {}
                None => eprintln!("podman kube play: the container never touched its file"),
            }
            podman(&["kube", "down", file.to_str().unwrap()]);
        }

        s.runc.push(bundle.run(i));
    }
    s.runc.remove(0);
    s
}

/// One run of the pod with `hostUsers: false` (never hostNetwork, which it may not have);
/// None for the warm-up run.
fn userns_run(dirs: &AgentDirs, image: &str, out_root: &Path, i: usize) -> Option<Duration> {
    let out = out_root.join(format!("u{i}"));
    fs::create_dir_all(&out).unwrap();
    let waiter = Waiter::new(&out);
    let name = format!("ustart{i}");
    let yaml = pod(&name, image, &out, "Never", "touch /out/ready")
        .replacen("hostNetwork: true", "hostNetwork: false", 1)
        .replacen("spec:\n", "spec:\n  hostUsers: false\n", 1);
    let t0 = write_all(dirs, &[(name.clone(), yaml)]);
    let t1 = waiter
        .wait("ready", T)
        .expect("hostlet hostUsers: false: container never touched its file");
    fs::remove_file(dirs.manifests.join(format!("{name}.yaml"))).unwrap();
    wait_removed(dirs);
    (i > 0).then(|| t1 - t0)
}

/// Waits until the removed pod is gone entirely: no container and no pod directory, which
/// goes after its network (CNI DEL runs several plugins) and sandbox. The next start must
/// not share the machine with a teardown: with only the containers gone, the pod started
/// right after (the `hostUsers: false` one, every run) paid for its predecessor's CNI DEL
/// (measured: +35 to +50 ms in its network attach under load).
fn wait_removed(dirs: &AgentDirs) {
    let pods = dirs.root.join("pods");
    wait_until(
        T,
        "pod removed",
        || dirs.agent_log(),
        || {
            let dirs_left = fs::read_dir(&pods).map(|d| d.count()).unwrap_or(0);
            (containers(&dirs.root) == 0 && dirs_left == 0).then_some(())
        },
    );
}

/// A runc bundle of the test image from `umoci unpack`, its command set to touch a file.
struct RuncBundle {
    bundle: PathBuf,
    out: PathBuf,
}

impl RuncBundle {
    fn new(base: &Path) -> RuncBundle {
        let bundle = base.join("bundle");
        let layout = test_image_layout();
        let st = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:test", layout.display()))
            .arg(&bundle)
            .stdout(Stdio::null())
            .status()
            .expect("umoci");
        assert!(st.success(), "umoci unpack failed");
        let out = base.join("out");
        fs::create_dir_all(&out).unwrap();
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["args"] = serde_json::json!(["/bin/touch", "/out/ready"]);
        cfg["process"]["terminal"] = serde_json::json!(false);
        cfg["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
            "destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}));
        fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        RuncBundle { bundle, out }
    }

    fn run(&self, i: usize) -> Duration {
        let _ = fs::remove_file(self.out.join("ready"));
        let waiter = Waiter::new(&self.out);
        let id = format!("hostlet-bench-{}-{i}", std::process::id());
        let t0 = std::time::Instant::now();
        let mut child = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&self.bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .spawn()
            .expect("runc");
        let t1 = waiter
            .wait("ready", T)
            .expect("runc: never touched its file");
        let _ = child.wait();
        let _ = Command::new("runc").args(["delete", "-f", &id]).status();
        t1 - t0
    }
}
