//! Shared helpers for hostlet's integration tests (`mod common;` in each `tests/*.rs`).
//!
//! Integration tests run real containers: they need root and a few Debian packages
//! (`apt-get install busybox-static umoci skopeo docker-registry`). When either is
//! missing they FAIL with a message saying what to do; they never skip silently.
//!
//! Typical use:
//! ```ignore
//! let reg = Registry::start();
//! let dirs = AgentDirs::new();
//! let agent = Agent::start(&dirs, &reg);
//! write_manifest(&dirs, "hello.yaml", &format!("... image: {} ...", reg.image("test")));
//! agent.wait_until(Duration::from_secs(20), "hello logs", || {
//!     let lines = cri_log_messages(&dirs.logs, "hello", "hello");
//!     lines.iter().any(|l| l.contains("hi")).then_some(())
//! });
//! remove_manifest(&dirs, "hello.yaml");
//! ```
//!
//! Set `HOSTLET_TEST_KEEP=1` to keep the temporary directories (their paths are printed).
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod fixture;
#[allow(unused_imports)]
pub use fixture::*;
mod net;
pub use net::TestNet;

/// Tags `rootfs/build.sh` creates and [`Registry::start`] pushes.
pub const IMAGE_TAGS: &[&str] = &["test", "entry"];
/// Repository the test image is pushed to.
pub const IMAGE_REPO: &str = "library/busybox";
/// `--hostname-override` given to the agent: static pod names end in `-testnode`.
pub const NODE_NAME: &str = "testnode";

const APT_HINT: &str = "apt-get install busybox-static umoci skopeo docker-registry";

// ---------------------------------------------------------------------------
// Preconditions

/// Panics (the test fails, it does not skip) unless running as root with every tool
/// the integration tests need.
pub fn require_root_and_tools() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "integration tests must run as root (euid is {euid}): they create real containers; \
         run `sudo -E cargo test` or .ci/run as root"
    );
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/busybox").is_file() {
        missing.push("/usr/bin/busybox (package busybox-static)".to_string());
    }
    for (tool, pkg) in [
        ("umoci", "umoci"),
        ("skopeo", "skopeo"),
        ("docker-registry", "docker-registry"),
        ("flock", "util-linux"),
    ] {
        if which(tool).is_none() {
            missing.push(format!("{tool} (package {pkg})"));
        }
    }
    assert!(
        missing.is_empty(),
        "integration tests need tools that are missing: {}; install them with `{APT_HINT}`",
        missing.join(", ")
    );
}

/// First executable named `tool` on `$PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// Test image

/// Builds the busybox test image once per test process (and, thanks to the flock
/// in `rootfs/build.sh`, once across concurrently running test binaries).
/// Returns the OCI layout directory.
pub fn test_image_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        require_root_and_tools();
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-image");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/build.sh");
        let output = Command::new(&script)
            .arg(&out)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} {} failed ({}):\n{}{}",
            script.display(),
            out.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        out.join("layout")
    })
}

// ---------------------------------------------------------------------------
// Registry

/// A private `docker-registry` on 127.0.0.1 holding the test image under
/// `library/busybox:{test,entry}`. Killed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`
    pub addr: String,
    child: Child,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry on a free port and pushes every tag of the test image.
    pub fn start() -> Registry {
        require_root_and_tools();
        let layout = test_image_layout();
        let mut last_log = String::new();
        // The port is free when we pick it but could be taken before the registry
        // binds it: retry a few times.
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("hostlet-registry-")
                .tempdir()
                .expect("create registry temp dir");
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n",
                    dir.path().join("data").display()
                ),
            )
            .expect("write registry config");
            let log_path = dir.path().join("registry.log");
            let log = fs::File::create(&log_path).expect("create registry log");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log fd"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn docker-registry ({APT_HINT}): {e}"));
            let mut reg = Registry { addr, child, dir };
            if reg.wait_ready(Duration::from_secs(10)) {
                reg.push(layout);
                return reg;
            }
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
            drop(reg);
        }
        panic!("docker-registry did not answer GET /v2/ within 10 s; its log:\n{last_log}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if http_get_status(&self.addr, "/v2/") == Some(200) {
                return true;
            }
            sleep(Duration::from_millis(50));
        }
        false
    }

    fn push(&self, layout: &Path) {
        for tag in IMAGE_TAGS {
            let src = format!("oci:{}:{tag}", layout.display());
            let dst = format!("docker://{}", self.image(tag));
            let out = Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false", &src, &dst])
                .output()
                .unwrap_or_else(|e| panic!("cannot run skopeo ({APT_HINT}): {e}"));
            assert!(
                out.status.success(),
                "skopeo copy {src} {dst} failed ({}):\n{}{}\nregistry log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
    }

    /// `"<addr>/library/busybox:<tag>"`
    pub fn image(&self, tag: &str) -> String {
        format!("{}/{IMAGE_REPO}:{tag}", self.addr)
    }

    /// PID of the registry process.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The registry's own log (warnings and errors; a HEAD 404 "blob unknown" per
    /// pushed blob is normal).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the drills' long profile runs (`HOSTLET_DRILLS=long`, RELIABILITY.md).
/// Runs `cmd ARGS…` and fails the test, with its stderr, unless it succeeds.
pub fn run_ok(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `hostlet SUBCOMMAND --root-dir ROOT ARGS…` (the flag right after the subcommand, so it
/// never lands after an `exec … --`): (success, stdout then stderr).
pub fn hostlet_cli(root: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .arg(args[0])
        .arg("--root-dir")
        .arg(root)
        .args(&args[1..])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn long() -> bool {
    std::env::var("HOSTLET_DRILLS").is_ok_and(|v| v == "long")
}

/// A port that was free a moment ago, from below the kernel's ephemeral range: a port the
/// kernel handed out for `:0` can be given again as the local port of any outgoing
/// connection (a pull, a probe) before the agent under test binds it. Each test process
/// walks its own pid-derived sequence, so concurrent test binaries rarely try the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (base, span) = (10_000u32, low.saturating_sub(10_000).max(1000));
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..span {
        let port = base + start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        let tcp = TcpListener::bind(("0.0.0.0", port)).is_ok();
        if tcp && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range {low}")
}

/// Status code of a plain HTTP/1.0 `GET path` to `addr`, or None if unreachable.
pub fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    let (status, _) = http_get(addr, path)?;
    Some(status)
}

/// Plain HTTP/1.0 `GET path` to `addr` (`host:port`): status code and body.
/// Std only; 2 s timeouts.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

// ---------------------------------------------------------------------------
// Agent

/// Directories one agent (or several successive agents) run on. Owns a temp dir:
/// `manifests/`, `root/`, `logs/`, and `agent.log`. Restarting an agent on the same
/// `AgentDirs` is how the restart/adoption tests work.
///
/// On drop, mounts left under the directory are detached (so removal cannot walk into
/// a container rootfs) before the tree is removed. Containers are NOT killed: remove
/// their manifests and let an agent stop them.
pub struct AgentDirs {
    pub base: PathBuf,
    pub manifests: PathBuf,
    pub root: PathBuf,
    pub logs: PathBuf,
    pub agent_log: PathBuf,
    /// The pod network of this test's agents.
    pub net: TestNet,
    /// This test's `--cgroup-root` (`/hostlet_test_<pid>_<n>`): agents remove the idle pod
    /// cgroups of pods they do not know under their root, so concurrent tests' agents
    /// each need their own. None under systemd (the VM suite), whose tests check the
    /// kubelet's slice names at the hierarchy's root: its agents do not sweep.
    pub cgroup_root: Option<String>,
    tmp: Option<TempDir>,
}

impl AgentDirs {
    pub fn new() -> AgentDirs {
        let tmp = tempfile::Builder::new()
            .prefix("hostlet-test-")
            .tempdir()
            .expect("create agent temp dir");
        let base = tmp.path().to_path_buf();
        let dirs = AgentDirs {
            manifests: base.join("manifests"),
            root: base.join("root"),
            logs: base.join("logs"),
            agent_log: base.join("agent.log"),
            net: TestNet::new(&base),
            base,
            cgroup_root: own_cgroup_root(),
            tmp: Some(tmp),
        };
        for d in [&dirs.manifests, &dirs.root, &dirs.logs] {
            fs::create_dir_all(d).expect("create agent dir");
        }
        eprintln!("test dirs: {}", dirs.base.display());
        dirs
    }

    /// Everything the agent wrote to stdout/stderr so far (all agents on these dirs).
    pub fn agent_log(&self) -> String {
        fs::read_to_string(&self.agent_log).unwrap_or_default()
    }
}

impl Default for AgentDirs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for AgentDirs {
    fn drop(&mut self) {
        if std::env::var_os("HOSTLET_TEST_KEEP").is_some() {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("HOSTLET_TEST_KEEP: keeping {}", tmp.keep().display());
            }
            return;
        }
        detach_mounts_under(&self.base);
        if let Some(root) = &self.cgroup_root {
            remove_cgroup_root(root);
        }
    }
}

/// A `--cgroup-root` of its own for a test's agents, unless systemd is init.
fn own_cgroup_root() -> Option<String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(format!("/hostlet_test_{}_{n}", std::process::id()))
}

/// The directories of cgroup `rel` (relative to the hierarchy's root): one per v1
/// controller mount, or one on v2.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let rel = rel.trim_start_matches('/');
    if cgroup_v2() {
        return vec![base.join(rel)];
    }
    fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().join(rel))
        .collect()
}

/// Removes the levels an agent made under a test's cgroup root (the QoS levels,
/// `kubepods` and the root itself), once its pods are gone; a pod cgroup still there
/// keeps them (and the fixture reports it).
pub fn remove_cgroup_root(root: &str) {
    for rel in ["kubepods/burstable", "kubepods/besteffort", "kubepods", ""] {
        for d in cgroup_dirs(&format!("{root}/{rel}")) {
            let _ = fs::remove_dir(d);
        }
    }
}

/// `kubepods` of the agents on `dirs` for `controller`, whatever the layout: under the
/// test's cgroup root, or at the hierarchy's root (`kubepods.slice` with systemd).
pub fn kubepods_dir(dirs: &AgentDirs, controller: &str) -> PathBuf {
    let base = Path::new("/sys/fs/cgroup");
    let v1 = |rel: &str| base.join(controller).join(rel.trim_start_matches('/'));
    match (&dirs.cgroup_root, cgroup_v2()) {
        (Some(r), false) => v1(&format!("{r}/kubepods")),
        (Some(r), true) => base.join(r.trim_start_matches('/')).join("kubepods"),
        (None, false) => v1("kubepods"),
        (None, true) if base.join("kubepods.slice").is_dir() => base.join("kubepods.slice"),
        (None, true) => base.join("kubepods"),
    }
}

/// Lazily unmounts (MNT_DETACH) every mount point at or under `dir`, deepest first.
pub fn detach_mounts_under(dir: &Path) {
    let Ok(dir) = dir.canonicalize() else { return };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: c is a valid NUL-terminated path; umount2 does not retain it.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `yaml` to `<manifests>/<name>` atomically (temp file + rename, so the
/// agent never reads half a manifest). The temp name starts with a dot, which the
/// kubelet's file source ignores.
pub fn write_manifest(dirs: &AgentDirs, name: &str, yaml: &str) {
    let tmp = dirs.manifests.join(format!(".{name}.tmp"));
    fs::write(&tmp, yaml).expect("write manifest");
    fs::rename(&tmp, dirs.manifests.join(name)).expect("rename manifest");
}

/// [`write_manifest`] with mode 0600, as a Secret's manifest must be.
pub fn write_private_manifest(dirs: &AgentDirs, name: &str, yaml: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dirs.manifests.join(format!(".{name}.tmp"));
    fs::write(&tmp, yaml).expect("write manifest");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).expect("chmod manifest");
    fs::rename(&tmp, dirs.manifests.join(name)).expect("rename manifest");
}

/// Removes `<manifests>/<name>` (no error if absent).
pub fn remove_manifest(dirs: &AgentDirs, name: &str) {
    match fs::remove_file(dirs.manifests.join(name)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove manifest {name}: {e}"),
    }
}

/// The real `hostlet` binary running `hostlet run` on an [`AgentDirs`].
/// Drop sends SIGTERM, waits up to 10 s, then SIGKILLs.
pub struct Agent {
    child: Option<Child>,
    log_path: PathBuf,
}

impl Agent {
    /// `hostlet run` on `dirs`, trusting `registry` over plain HTTP, checking the
    /// manifest dir every second.
    pub fn start(dirs: &AgentDirs, registry: &Registry) -> Agent {
        Agent::start_with(dirs, Some(registry), &[])
    }

    /// Like [`Agent::start`], with an optional registry and extra arguments appended
    /// to `hostlet run ...`.
    pub fn start_with(dirs: &AgentDirs, registry: Option<&Registry>, extra: &[&str]) -> Agent {
        require_root_and_tools();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostlet"));
        cmd.arg("run")
            .arg("--pod-manifest-path")
            .arg(&dirs.manifests)
            .arg("--root-dir")
            .arg(&dirs.root)
            .arg("--pod-logs-dir")
            .arg(&dirs.logs)
            .args(["--hostname-override", NODE_NAME])
            .args(["--file-check-frequency", "1s"])
            // The kubelet's default eviction thresholds would act on a shared test host
            // with little free disk; tests of eviction set their own.
            .arg("--eviction-hard=")
            .args(dirs.net.args());
        match &dirs.cgroup_root {
            Some(root) => cmd.args(["--cgroup-root", root]),
            // Concurrent tests' agents share the root: none may remove another's idle pods'
            // cgroups.
            None => cmd.arg("--orphan-cgroup-sweep=false"),
        };
        if let Some(r) = registry {
            cmd.args(["--insecure-registry", &r.addr]);
        }
        cmd.args(extra);
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&dirs.agent_log)
            .expect("open agent.log");
        let _ = writeln!(log, "===== test harness: starting {cmd:?}");
        cmd.env("RUST_LOG", "info,hostlet=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup agent.log fd"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", env!("CARGO_BIN_EXE_hostlet")));
        Agent {
            child: Some(child),
            log_path: dirs.agent_log.clone(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("agent already stopped").id() as i32
    }

    /// Everything in `agent.log` (this and earlier agents on the same dirs).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// True while the agent process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM, then wait (no timeout beyond the harness's: panics after 30 s).
    /// Returns the exit status.
    pub fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("agent already stopped");
        signal(child.id() as i32, libc::SIGTERM);
        match wait_child(&mut child, Duration::from_secs(30)) {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "agent did not exit within 30 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// SIGKILL and reap: simulates an agent crash.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("agent already stopped");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// [`wait_until`] with this agent's log in the panic message.
    pub fn wait_until<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_until(timeout, what, || self.log(), f)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, libc::SIGTERM);
            if wait_child(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Sends `sig` to `pid` (errors ignored).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

// ---------------------------------------------------------------------------
// Waiting

/// Factor for [`wait_until`]'s timeouts: `HOSTLET_TEST_TIME_SCALE` (default 1). The VM
/// suite (vm/run.sh) sets it, as everything runs ~5x slower under software emulation.
/// Upper bounds that tests assert on durations are not scaled.
pub fn time_scale() -> u32 {
    std::env::var("HOSTLET_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u32| n >= 1)
        .unwrap_or(1)
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with
/// `what` and `log()` (typically the agent log).
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    log: impl Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let timeout = timeout * time_scale();
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!(
                "timed out after {:?} waiting for: {what}\n----- log -----\n{}\n----- end of log -----",
                timeout,
                log()
            );
        }
        sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// CRI logs

/// Log files of `container` in pods whose name starts with `pod_name_prefix`:
/// `<logs>/<ns>_<pod>_<uid>/<container>/<restart>.log`, oldest pod directory first
/// (by mtime), lowest restart count first (so the newest file is last).
pub fn cri_log_files(logs_dir: &Path, pod_name_prefix: &str, container: &str) -> Vec<PathBuf> {
    let mut pods: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    if let Ok(rd) = fs::read_dir(logs_dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.splitn(3, '_');
            let (Some(_ns), Some(pod), Some(_uid)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if pod.starts_with(pod_name_prefix) && e.path().is_dir() {
                let mtime = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                pods.push((mtime, e.path()));
            }
        }
    }
    pods.sort();
    let mut files = Vec::new();
    for (_, pod_dir) in pods {
        let mut logs: Vec<(u64, PathBuf)> = Vec::new();
        if let Ok(rd) = fs::read_dir(pod_dir.join(container)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = name.strip_suffix(".log").and_then(|n| n.parse().ok()) {
                    logs.push((n, e.path()));
                }
            }
        }
        logs.sort();
        files.extend(logs.into_iter().map(|(_, p)| p));
    }
    files
}

/// Raw CRI log lines (`<RFC3339Nano> <stdout|stderr> <F|P> <content>`) of every file
/// [`cri_log_files`] finds, in that order.
pub fn cri_log_lines(logs_dir: &Path, pod_name_prefix: &str, container: &str) -> Vec<String> {
    cri_log_files(logs_dir, pod_name_prefix, container)
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|s| s.lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Just the content part of [`cri_log_lines`] (fourth field onward).
pub fn cri_log_messages(logs_dir: &Path, pod_name_prefix: &str, container: &str) -> Vec<String> {
    cri_log_lines(logs_dir, pod_name_prefix, container)
        .iter()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// /proc

/// PIDs whose parent is `pid` (scans /proc/*/stat).
pub fn children_of(pid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| ppid_of(p) == Some(pid))
        .collect()
}

/// Parent PID of `pid`, from /proc/<pid>/stat.
pub fn ppid_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The comm field may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(1)?.parse().ok()
}

/// Process state letter (R, S, D, Z, ...) of `pid`.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// `readlink /proc/<pid>/ns/<ns>`, e.g. `net:[4026531840]`.
pub fn ns_link(pid: i32, ns: &str) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Command line of `pid` with NULs replaced by spaces (None if gone; empty for kernel
/// threads and zombies).
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let s = String::from_utf8_lossy(&raw);
    Some(
        s.trim_end_matches('\0')
            .split('\0')
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// True if `pid` exists and is not a zombie.
pub fn process_exists(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z')
}

/// Live (non-zombie) PIDs, other than this process, whose command line contains `substr`.
pub fn find_pids_by_cmdline(substr: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| cmdline(p).is_some_and(|c| c.contains(substr)))
        .filter(|&p| process_exists(p))
        .collect()
}

/// Every PID in /proc.
pub fn all_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

// ---------------------------------------------------------------------------
// Cgroups: v1 on hybrid hosts (CI's), v2 in the VM suite (vm/run.sh)

/// True when /sys/fs/cgroup is the unified (v2) hierarchy.
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").is_file()
}

/// The cgroup directory of `pid` holding `controller`'s files (`memory`, `cpu`, `pids`):
/// on v2 the process's single directory, on v1 that controller's hierarchy.
pub fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"));
    let v2 = cgroup_v2();
    let rel = text
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (id, ctrls, path) = (it.next()?, it.next()?, it.next()?);
            let hit = if v2 {
                id == "0" && ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == controller)
            };
            hit.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup for {pid} (v2: {v2}): {text}"));
    let base = if v2 {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    base.join(rel.trim_start_matches('/'))
}

/// Limits of the cgroup of a process, in cgroup v2's terms whatever the host runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLimits {
    /// memory.max in bytes, None for `max` (v1: memory.limit_in_bytes).
    pub memory_max: Option<u64>,
    /// cpu.max: quota (None for `max`) and period, in µs (v1: cpu.cfs_quota_us, cpu.cfs_period_us).
    pub cpu_max: (Option<u64>, u64),
    /// cpu.weight (v1: cpu.shares through [`cpu_shares_to_weight`]).
    pub cpu_weight: u64,
    /// cpu.shares as written on v1; None on v2, where only the (lossy) weight exists.
    pub cpu_shares: Option<u64>,
    /// pids.max, None for `max`.
    pub pids_max: Option<u64>,
}

/// Reads [`CgroupLimits`] from the cgroup(s) of `pid`.
pub fn cgroup_limits(pid: i32) -> CgroupLimits {
    limits_in(&format!("cgroup of {pid}"), |c| cgroup_dir(pid, c))
}

/// Reads [`CgroupLimits`] from the pod cgroup holding `pid`'s container cgroup.
pub fn pod_cgroup_limits(pid: i32) -> CgroupLimits {
    limits_in(&format!("pod cgroup of {pid}"), |c| pod_cgroup_dir(pid, c))
}

/// The pod cgroup directory (for `controller`) holding `pid`'s container cgroup, whatever
/// the driver: `.../pod<uid>` (cgroupfs) or `.../kubepods-...-pod<uid>.slice` (systemd).
pub fn pod_cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let dir = cgroup_dir(pid, controller);
    let parent = dir.parent().unwrap().to_path_buf();
    let name = parent.file_name().unwrap().to_string_lossy().to_string();
    let systemd_pod =
        name.starts_with("kubepods-") && name.contains("pod") && name.ends_with(".slice");
    assert!(
        name.starts_with("pod") || systemd_pod,
        "{} is not in a pod cgroup",
        dir.display()
    );
    parent
}

/// The QoS class a pod cgroup directory sits under: "guaranteed", "burstable" or
/// "besteffort", for cgroupfs (`kubepods/burstable/pod<uid>`, v1 or v2) and systemd
/// (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`) layouts.
pub fn pod_cgroup_qos(pod_dir: &Path) -> &'static str {
    let name = pod_dir.file_name().unwrap().to_string_lossy().to_string();
    let parent = pod_dir
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    match (parent.as_str(), name.as_str()) {
        ("kubepods" | "kubepods.slice", n)
            if n.starts_with("pod") || n.starts_with("kubepods-pod") =>
        {
            "guaranteed"
        }
        ("burstable" | "kubepods-burstable.slice", _) => "burstable",
        ("besteffort" | "kubepods-besteffort.slice", _) => "besteffort",
        _ => panic!("{} is not a pod cgroup under kubepods", pod_dir.display()),
    }
}

fn limits_in(what: &str, dir: impl Fn(&str) -> PathBuf) -> CgroupLimits {
    let read = |controller: &str, file: &str| {
        let p = dir(controller).join(file);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    let num = |s: &str, w: &str| -> u64 {
        s.parse()
            .unwrap_or_else(|e| panic!("{file} of {what}: {s:?}: {e}", file = w))
    };
    let max_or = |s: &str, w: &str| (s != "max").then(|| num(s, w));
    let pids_max = max_or(&read("pids", "pids.max"), "pids.max");
    if cgroup_v2() {
        let cpu_max = read("cpu", "cpu.max");
        let (quota, period) = cpu_max
            .split_once(' ')
            .unwrap_or_else(|| panic!("cpu.max of {what}: {cpu_max:?}"));
        CgroupLimits {
            memory_max: max_or(&read("memory", "memory.max"), "memory.max"),
            cpu_max: (max_or(quota, "cpu.max"), num(period, "cpu.max")),
            cpu_weight: num(&read("cpu", "cpu.weight"), "cpu.weight"),
            cpu_shares: None,
            pids_max,
        }
    } else {
        // v1 has no "max": unlimited memory reads as PAGE_COUNTER_MAX pages in bytes,
        // unlimited CFS quota as -1.
        let mem = num(
            &read("memory", "memory.limit_in_bytes"),
            "memory.limit_in_bytes",
        );
        let quota = read("cpu", "cpu.cfs_quota_us");
        let shares = num(&read("cpu", "cpu.shares"), "cpu.shares");
        CgroupLimits {
            memory_max: (mem < 1 << 62).then_some(mem),
            cpu_max: (
                (quota != "-1").then(|| num(&quota, "cpu.cfs_quota_us")),
                num(&read("cpu", "cpu.cfs_period_us"), "cpu.cfs_period_us"),
            ),
            cpu_weight: cpu_shares_to_weight(shares),
            cpu_shares: Some(shares),
            pids_max,
        }
    }
}

/// cpu.shares → cpu.weight as youki's libcgroups converts it on v2 (the quadratic
/// formula runc and crun use too; SEMANTICS.md).
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

/// MemTotal of /proc/meminfo, in bytes (the node's memory capacity as the kubelet reads it).
pub fn mem_total() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in /proc/meminfo: {text}"));
    kb * 1024
}

/// Pod cgroups (any controller, cgroupfs or systemd naming) of the pods with `uids`.
pub fn pod_cgroups_of(uids: &[String]) -> Vec<String> {
    if uids.is_empty() {
        return Vec::new();
    }
    let mut dirs: Vec<(PathBuf, usize)> = Vec::new();
    for e in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with("kubepods") {
            dirs.push((p.clone(), 0));
        }
        for name in ["kubepods", "kubepods.slice"] {
            if p.join(name).is_dir() {
                dirs.push((p.join(name), 0));
            }
        }
        // Test agents' own cgroup roots (`--cgroup-root /hostlet_test_…`).
        for sub in fs::read_dir(&p).into_iter().flatten().flatten() {
            if sub
                .file_name()
                .to_string_lossy()
                .starts_with("hostlet_test_")
            {
                dirs.push((sub.path().join("kubepods"), 0));
            }
        }
    }
    let mut found = Vec::new();
    while let Some((d, depth)) = dirs.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = uids
                .iter()
                .any(|u| name.contains(u.as_str()) || name.contains(&u.replace('-', "_")));
            if ours {
                found.push(e.path().display().to_string());
            } else if depth < 2 {
                dirs.push((e.path(), depth + 1));
            }
        }
    }
    found
}

/// Mount points at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or(dir.to_path_buf());
    let prefix = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix))
        .collect()
}
