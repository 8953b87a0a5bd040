//! Row 6: cold pull of a large image (one layer holding a 256 MiB random file) from the
//! local registry: `hostlet pull` into an empty root dir beside `skopeo copy` to a dir and
//! `podman pull`, interleaved; wall time and peak RSS from `/usr/bin/time -v`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::util::*;

pub const REPO: &str = "library/big:1";

#[derive(Default)]
pub struct Pull {
    pub bytes: u64,
    /// (wall time, peak RSS KiB) per run.
    pub hostlet: Vec<(Duration, u64)>,
    pub skopeo: Vec<(Duration, u64)>,
    pub podman: Vec<(Duration, u64)>,
}

/// The large image as an OCI layout, built once under the target dir (`umoci` + urandom).
fn big_layout(mib: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-big-{mib}m"));
    let layout = dir.join("layout");
    if layout.join("index.json").is_file() {
        return layout;
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let img = format!("{}:1", layout.display());
    let bundle = dir.join("bundle");
    let sh = format!(
        "set -e; umoci init --layout {l}; umoci new --image {img}; \
         umoci unpack --image {img} {b}; \
         head -c {mib}M /dev/urandom > {b}/rootfs/big; \
         umoci repack --image {img} {b}; rm -rf {b}",
        l = layout.display(),
        b = bundle.display()
    );
    let st = Command::new("sh").args(["-c", &sh]).status().expect("sh");
    assert!(st.success(), "building the large image failed");
    layout
}

/// Pushes the large image to `reg`; returns its compressed size in bytes.
fn push(reg: &Registry, mib: u64) -> u64 {
    let layout = big_layout(mib);
    let st = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{}/{REPO}", reg.addr))
        .status()
        .expect("skopeo");
    assert!(st.success(), "pushing the large image failed");
    fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Runs `args` under `/usr/bin/time -v`: wall time and peak RSS in KiB.
fn timed(args: &[&str], scratch: &Path) -> Option<(Duration, u64)> {
    let report = scratch.join("time.txt");
    let t0 = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg("-o")
        .arg(&report)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time");
    let wall = t0.elapsed();
    if !out.status.success() {
        eprintln!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = fs::read_to_string(&report).ok()?;
    let rss = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })?
        .parse()
        .ok()?;
    Some((wall, rss))
}

pub fn run(runs: usize, mib: u64, reg: &Registry) -> Pull {
    let mut p = Pull {
        bytes: push(reg, mib),
        ..Default::default()
    };
    let image = format!("{}/{REPO}", reg.addr);
    let scratch = tempfile::Builder::new()
        .prefix("hostlet-bench-pull-")
        .tempdir()
        .unwrap();
    let s = scratch.path();
    for i in 0..runs {
        let root = s.join(format!("hostlet{i}"));
        let r = root.to_str().unwrap();
        if let Some(m) = timed(
            &[
                hostlet_exe(),
                "pull",
                "--root-dir",
                r,
                "--insecure-registry",
                &reg.addr,
                &image,
            ],
            s,
        ) {
            p.hostlet.push(m);
        }
        let _ = fs::remove_dir_all(&root);

        let dir = s.join(format!("skopeo{i}"));
        let dest = format!("dir:{}", dir.display());
        let src = format!("docker://{image}");
        if let Some(m) = timed(
            &[
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                &src,
                &dest,
            ],
            s,
        ) {
            p.skopeo.push(m);
        }
        let _ = fs::remove_dir_all(&dir);

        if podman_configured() {
            podman(&["rmi", "-i", &image]);
            if let Some(m) = timed(&["podman", "pull", "-q", "--tls-verify=false", &image], s) {
                p.podman.push(m);
            }
            podman(&["rmi", "-i", &image]);
        }
    }
    p
}

/// "time (MiB/s), peak RSS" medians of `v` for an image of `bytes`.
pub fn describe(v: &[(Duration, u64)], bytes: u64) -> String {
    let times: Vec<Duration> = v.iter().map(|m| m.0).collect();
    let rss: Vec<u64> = v.iter().map(|m| m.1).collect();
    match (median(&times), median(&rss)) {
        (Some(t), Some(r)) => format!(
            "{:.2} s ({:.0} MiB/s), peak RSS {} (n={})",
            t.as_secs_f64(),
            bytes as f64 / 1048576.0 / t.as_secs_f64(),
            mib(r),
            v.len()
        ),
        _ => "failed".into(),
    }
}

pub fn throughput(v: &[(Duration, u64)], bytes: u64) -> Option<f64> {
    let times: Vec<Duration> = v.iter().map(|m| m.0).collect();
    median(&times).map(|t| bytes as f64 / t.as_secs_f64())
}
