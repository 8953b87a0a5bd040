//! Helpers for tests/images.rs: the CLI, extra registries (htpasswd, TLS), a fault-injecting
//! registry, crafted OCI layouts, and an agent fixture that cleans up its containers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::*;

pub struct Out {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// `hostlet ARGS --root-dir ROOT`.
pub fn hostlet(root: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(args)
        .arg("--root-dir")
        .arg(root)
        .env("HOME", root) // no credentials from the developer's own ~/.docker
        .stdin(Stdio::null())
        .output()
        .expect("run hostlet");
    Out {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) {
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .args(extra)
        .args([src, dst])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {src} {dst}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Every path under `dir` (not following symlinks), relative, sorted.
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Path → (mode, content) of everything under `dir`.
pub fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    walk(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                fs::read(&p).unwrap()
            } else {
                vec![]
            };
            (rel, (m.permissions().mode(), content))
        })
        .collect()
}

pub fn assert_no_tmp(root: &Path) {
    let tmp: Vec<String> = walk(&root.join("images"))
        .into_iter()
        .filter(|p| p.rsplit('/').next().is_some_and(|n| n.starts_with(".tmp-")))
        .collect();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
}

/// After a failed pull: no temporaries, no layer directory, no reference, and every blob
/// present is complete (hashes to its name).
pub fn assert_store_clean(root: &Path) {
    assert_no_tmp(root);
    let layers = walk(&root.join("images/layers"));
    assert!(layers.is_empty(), "layers left: {layers:?}");
    let blobs = root.join("images/blobs/sha256");
    for name in walk(&blobs) {
        let content = fs::read(blobs.join(&name)).unwrap();
        assert_eq!(sha256(&content), format!("sha256:{name}"), "corrupt blob");
    }
    let db = fs::read_to_string(root.join("images/db.json")).unwrap_or_default();
    assert!(!db.contains("busybox"), "reference recorded: {db}");
}

// ---------------------------------------------------------------------------
// Registries with auth or TLS

pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// A CA and a server certificate for 127.0.0.1 signed by it (openssl).
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!(
            "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=hostlet-test-ca
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext"
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("run openssl (package openssl)");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestCa { dir }
    }
}

/// A docker-registry with htpasswd auth and/or TLS, holding `library/busybox:test`.
pub struct ExtraRegistry {
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ExtraRegistry {
    pub fn start(auth: Option<(&str, &str)>, tls: Option<&TestCa>) -> ExtraRegistry {
        require_root_and_tools();
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cfg = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some(ca) = tls {
            let d = ca.dir.path();
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("server.pem").display(),
                d.join("server.key").display()
            ));
        }
        if let Some((user, pass)) = auth {
            let hash = bcrypt::hash(pass, 4).unwrap();
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config = dir.path().join("config.yml");
        fs::write(&config, cfg).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        let reg = ExtraRegistry {
            addr,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&reg.addr).is_err() {
            assert!(Instant::now() < deadline, "registry did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let creds = auth.map(|(u, p)| format!("{u}:{p}"));
        let mut extra = vec![];
        if let Some(c) = &creds {
            extra.extend(["--dest-creds", c.as_str()]);
        }
        skopeo_copy(
            &format!("oci:{}:test", test_image_layout().display()),
            &format!("docker://{}/library/busybox:test", reg.addr),
            &extra,
        );
        reg
    }
}

impl Drop for ExtraRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Fault-injecting registry

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Status500,
    ResetMidBlob,
    /// Declares and sends half the layer.
    Truncated,
    /// Right length, one byte changed.
    WrongContent,
    /// Sends more than the manifest declares.
    Oversized,
    /// Whole and right, in small chunks with pauses.
    Slow,
    /// 429 Too Many Requests with `Retry-After: 1`.
    TooMany,
    /// Declares the whole layer, sends half, then sends nothing more for 40 s (longer
    /// than the agent's 30 s read timeout) with the connection open: a slow loris.
    Stalled,
    /// Whole and right (a registry that behaves).
    None,
}

#[derive(Clone)]
pub struct FaultImage {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub layer: Vec<u8>,
    pub layer_digest: String,
}

impl FaultImage {
    /// The test image with its gzip layer decompressed (media type `…layer.v1.tar`).
    pub fn uncompressed_test_image() -> FaultImage {
        let layout = test_image_layout();
        let blob = |d: &str| fs::read(layout.join("blobs/sha256").join(&d[7..])).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let desc = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "test")
            .unwrap();
        let m: serde_json::Value =
            serde_json::from_slice(&blob(desc["digest"].as_str().unwrap())).unwrap();
        let config = blob(m["config"]["digest"].as_str().unwrap());
        let gz = blob(m["layers"][0]["digest"].as_str().unwrap());
        let mut layer = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut layer)
            .unwrap();
        let layer_digest = sha256(&layer);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": m["config"],
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer.len()}]
        }))
        .unwrap();
        FaultImage {
            manifest,
            config,
            layer,
            layer_digest,
        }
    }
}

/// A minimal registry (HTTP/1.1, one request per connection) serving one image as
/// `library/busybox:test`, misbehaving on the layer blob as `fault` says.
pub struct FaultServer {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl FaultServer {
    pub fn start(image: FaultImage, fault: Fault) -> FaultServer {
        Self::start_then_heal(image, fault, usize::MAX)
    }

    /// Misbehaves on the first `faulty` requests for the layer blob, then serves it right.
    pub fn start_then_heal(image: FaultImage, fault: Fault, faulty: usize) -> FaultServer {
        let blob_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            // Dropping the server stops it (also when a test panics); the deadline only
            // bounds a leaked one. It must outlive the slowest drill: three stalled bodies
            // and the back-off between them outlasted the 120 s it once was.
            let deadline = Instant::now() + Duration::from_secs(30 * 60);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let image = image.clone();
                        let n = blob_requests.clone();
                        std::thread::spawn(move || {
                            let fault_now = || {
                                if n.fetch_add(1, Ordering::Relaxed) < faulty {
                                    fault
                                } else {
                                    Fault::None
                                }
                            };
                            serve(conn, &image, fault_now)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FaultServer { addr, stop }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut conn: TcpStream, image: &FaultImage, fault: impl Fn() -> Fault) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let manifest_digest = sha256(&image.manifest);
    let respond = |conn: &mut TcpStream, status: &str, ctype: &str, extra: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        if method != "HEAD" {
            let _ = conn.write_all(body);
        }
    };
    let blob_path = |d: &str| format!("/v2/library/busybox/blobs/{d}");
    if path == "/v2/" {
        respond(&mut conn, "200 OK", "application/json", "", b"{}");
    } else if path == "/v2/library/busybox/manifests/test"
        || path == format!("/v2/library/busybox/manifests/{manifest_digest}")
    {
        let extra = format!("Docker-Content-Digest: {manifest_digest}\r\n");
        respond(
            &mut conn,
            "200 OK",
            "application/vnd.oci.image.manifest.v1+json",
            &extra,
            &image.manifest,
        );
    } else if path == blob_path(&sha256(&image.config)) {
        respond(
            &mut conn,
            "200 OK",
            "application/octet-stream",
            "",
            &image.config,
        );
    } else if path == blob_path(&image.layer_digest) {
        let l = &image.layer;
        let ctype = "application/octet-stream";
        match fault() {
            Fault::None => respond(&mut conn, "200 OK", ctype, "", l),
            Fault::TooMany => respond(
                &mut conn,
                "429 Too Many Requests",
                "text/plain",
                "Retry-After: 1\r\n",
                b"slow down",
            ),
            Fault::Status500 => respond(
                &mut conn,
                "500 Internal Server Error",
                "text/plain",
                "",
                b"boom",
            ),
            Fault::Truncated => respond(&mut conn, "200 OK", ctype, "", &l[..l.len() / 2]),
            Fault::WrongContent => {
                let mut bad = l.clone();
                bad[l.len() / 2] ^= 0xff;
                respond(&mut conn, "200 OK", ctype, "", &bad);
            }
            Fault::Oversized => {
                let mut more = l.clone();
                more.extend(vec![0u8; 100_000]);
                respond(&mut conn, "200 OK", ctype, "", &more);
            }
            Fault::ResetMidBlob => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    l.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&l[..l.len() / 2]);
                // SO_LINGER 0: close sends RST instead of FIN.
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                use std::os::fd::AsRawFd;
                // SAFETY: setsockopt on our own socket with a correctly sized linger struct.
                unsafe {
                    libc::setsockopt(
                        conn.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        std::mem::size_of::<libc::linger>() as u32,
                    );
                }
            }
            Fault::Stalled => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    l.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&l[..l.len() / 2]);
                std::thread::sleep(Duration::from_secs(40));
            }
            Fault::Slow => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    l.len()
                );
                let _ = conn.write_all(head.as_bytes());
                for chunk in l.chunks(128 * 1024) {
                    let _ = conn.write_all(chunk);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    } else {
        respond(
            &mut conn,
            "404 Not Found",
            "application/json",
            "",
            br#"{"errors":[{"code":"NOT_FOUND"}]}"#,
        );
    }
}

// ---------------------------------------------------------------------------
// Crafted layouts

pub struct Entry {
    name: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: String,
    dev: (u32, u32),
}

impl Entry {
    pub fn file(name: &str, data: &[u8]) -> Entry {
        Entry::new(name, tar::EntryType::Regular, data, "")
    }
    pub fn symlink(name: &str, target: &str) -> Entry {
        Entry::new(name, tar::EntryType::Symlink, b"", target)
    }
    pub fn hardlink(name: &str, target: &str) -> Entry {
        Entry::new(name, tar::EntryType::Link, b"", target)
    }
    pub fn device(name: &str, major: u32, minor: u32) -> Entry {
        let mut e = Entry::new(name, tar::EntryType::Block, b"", "");
        e.dev = (major, minor);
        e
    }
    fn new(name: &str, kind: tar::EntryType, data: &[u8], link: &str) -> Entry {
        Entry {
            name: name.into(),
            kind,
            data: data.into(),
            link: link.into(),
            dev: (0, 0),
        }
    }
}

/// A layer tar with names written raw (`..` and absolute paths included).
fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        assert!(
            e.name.len() <= 100 && e.link.len() <= 100,
            "name too long for the raw header"
        );
        h.as_ustar_mut().unwrap().name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.as_ustar_mut().unwrap().linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_000_000);
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        h.set_cksum();
        b.append(&h, &e.data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI layout at `dir` with one image tagged `t` whose layers (bottom first) hold `layers`.
pub fn write_layout(dir: &Path, layers: &[&[Entry]]) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let d = sha256(b);
        fs::write(blobs.join(&d[7..]), b).unwrap();
        d
    };
    let tars: Vec<Vec<u8>> = layers.iter().map(|l| layer_tar(l)).collect();
    let diff_ids: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let layer_descs: Vec<_> = tars
        .iter()
        .map(|t| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(t), "size": t.len()}))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(&config), "size": config.len()},
        "layers": layer_descs
    }))
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(&manifest),
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

// ---------------------------------------------------------------------------
// Agent without a registry

/// Agent dirs and (once started) an agent; on drop every manifest is removed and an agent
/// runs until every container is gone.
pub struct AgentFixture {
    pub dirs: AgentDirs,
    agent: std::cell::RefCell<Option<Agent>>,
}

impl AgentFixture {
    pub fn new() -> AgentFixture {
        require_root_and_tools();
        AgentFixture {
            dirs: AgentDirs::new(),
            agent: std::cell::RefCell::new(None),
        }
    }

    pub fn start_agent(&self) {
        self.start_agent_with(&[]);
    }

    pub fn start_agent_with(&self, extra: &[&str]) {
        *self.agent.borrow_mut() = Some(Agent::start_with(&self.dirs, None, extra));
    }

    pub fn wait<T>(&self, what: &str, f: impl FnMut() -> Option<T>) -> T {
        wait_until(Duration::from_secs(60), what, || self.dirs.agent_log(), f)
    }

    fn container_dirs(&self) -> usize {
        fs::read_dir(self.dirs.root.join("containers"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }
}

impl Drop for AgentFixture {
    fn drop(&mut self) {
        for e in fs::read_dir(&self.dirs.manifests)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_file(e.path());
        }
        let mut agent = self.agent.borrow_mut();
        if !agent.as_mut().is_some_and(|a| a.is_running()) {
            *agent = Some(Agent::start_with(&self.dirs, None, &[]));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && self.container_dirs() > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
