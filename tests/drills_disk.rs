//! Reliability drill (RELIABILITY.md, issue 20 item 5): `--root-dir` on a small filesystem
//! made for the test (a size-limited tmpfs). A pull that does not fit, whether its blob or
//! its unpacked layer is what overflows, fails with a reason that says so and leaves
//! nothing half-written in the store; once space is freed the same pull succeeds. Prints
//! one `DRILL name key=value …` line.

mod common;
#[path = "images_support/mod.rs"]
mod images_support;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::*;
use images_support::*;

/// A tmpfs mounted for the test, detached on drop.
struct SmallFs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root");
        std::fs::create_dir(&path).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a {size} tmpfs");
        SmallFs { _dir: dir, path }
    }

    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success(), "resizing the tmpfs to {size}");
    }

    fn used(&self) -> u64 {
        let c = CString::new(self.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid NUL-terminated path, st a plain out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        detach_mounts_under(&self.path);
    }
}

/// `n` bytes that no compressor shrinks.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn pull(root: &Path, reg: &Registry, image: &str) -> Out {
    hostlet(root, &["pull", "--insecure-registry", &reg.addr, image])
}

#[test]
fn root_dir_full() {
    let reg = Registry::start();
    let mib = 12;
    let layout = tempfile::tempdir().unwrap();
    write_layout(layout.path(), &[&[Entry::file("big", &noise(mib << 20))]]);
    let image = format!("{}/drill/big-{}:t", reg.addr, std::process::id());
    skopeo_copy(
        &format!("oci:{}:t", layout.path().display()),
        &format!("docker://{image}"),
        &[],
    );
    let started = Instant::now();
    // 6 MiB: the blob does not fit. 18 MiB: the blob fits, its unpacked layer does not.
    let mut failed_cleanly = 0;
    let mut cases = 0;
    for size in ["6m", "18m"] {
        cases += 1;
        let fs = SmallFs::new(size);
        let out = pull(&fs.path, &reg, &image);
        assert!(!out.status.success(), "{size}: the pull fit");
        assert!(
            out.stderr.contains("No space left on device"),
            "{size}: the error does not say the disk is full: {}",
            out.stderr
        );
        assert_store_clean(&fs.path);
        // Nothing half-written holds the space: what is left is complete blobs only.
        let blobs: u64 = walk(&fs.path.join("images/blobs"))
            .iter()
            .filter_map(|p| std::fs::metadata(fs.path.join("images/blobs").join(p)).ok())
            .map(|m| m.len())
            .sum();
        let used = fs.used();
        assert!(
            used <= blobs + (1 << 20),
            "{size}: {used} bytes used, {blobs} of them complete blobs"
        );
        eprintln!("{size}: {}", out.stderr.trim());
        // Space freed: the same pull now succeeds.
        fs.resize("64m");
        let out = pull(&fs.path, &reg, &image);
        assert!(out.status.success(), "{size} → 64m: {}", out.stderr);
        assert_no_tmp(&fs.path);
        failed_cleanly += 1;
    }
    println!(
        "DRILL root_dir_full cases={cases} layer_mib={mib} failed_cleanly={failed_cleanly} recovered={failed_cleanly} secs={}",
        started.elapsed().as_secs()
    );
}
