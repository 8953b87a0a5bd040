//! Reliability drill (RELIABILITY.md, issue 20 item 8): hostile input. A `--manifest-url`
//! serves, one after another, pods whose name or namespace walks out of the agent's
//! directories, a deeply nested document, an alias bomb, an oversized body and a body that
//! never ends; meanwhile a pod from the file source must keep running untouched, the agent
//! must stay up with bounded memory, nothing may be written outside its directories, and
//! a good body afterwards must still be applied. The status socket refuses non-root
//! users. Prints one `DRILL name key=value …` line.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// What the URL serves.
#[derive(Clone)]
enum Body {
    Text(String),
    /// Headers, then a byte a second for ever (until the client hangs up).
    Endless,
}

/// A one-request-per-connection HTTP server on 127.0.0.1.
struct Server {
    url: String,
    body: Arc<Mutex<Body>>,
    served: Arc<Mutex<usize>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/pods.yaml", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(Body::Text(String::new())));
        let served = Arc::new(Mutex::new(0));
        let (b, s) = (body.clone(), served.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let body = b.lock().unwrap().clone();
                *s.lock().unwrap() += 1;
                std::thread::spawn(move || {
                    let Ok(clone) = conn.try_clone() else { return };
                    let mut reader = BufReader::new(clone);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    match body {
                        Body::Text(t) => {
                            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{t}", t.len());
                        }
                        Body::Endless => {
                            let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\n");
                            while conn.write_all(b" ").is_ok() {
                                std::thread::sleep(Duration::from_secs(1));
                            }
                        }
                    }
                });
            }
        });
        Server { url, body, served }
    }

    fn set(&self, body: Body) {
        *self.body.lock().unwrap() = body;
    }

    fn served(&self) -> usize {
        *self.served.lock().unwrap()
    }
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pod_yaml(name: &str, namespace: &str, image: &str, marker: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name:?}, namespace: {namespace:?}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, 'while :; do sleep 1; done', {marker}]\n"
    )
}

/// True when a non-root user can connect to the socket at `path`.
fn connects_as_nobody(path: &Path) -> bool {
    let st = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "--unix-socket",
        ])
        .arg(path)
        .arg("http://localhost/healthz")
        .status()
        .expect("setpriv and curl");
    st.success()
}

#[test]
fn hostile_input() {
    let mut f = Fixture::with_args(&[]);
    let pid = std::process::id();
    let srv = Server::start();
    let args = [
        "--manifest-url",
        &srv.url,
        "--http-check-frequency",
        "500ms",
    ];
    drop(f.agent.take());
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &args));
    let steady_marker = format!("steady{pid}-end");
    write_manifest(
        &f.dirs,
        "steady.yaml",
        &pod_yaml("steady", "default", &f.image(), &steady_marker),
    );
    let steady = f.container_pid(&steady_marker);
    let agent = f.agent().pid();
    let escape = format!("evil-{pid}");
    let deep = format!("a: {}", "[".repeat(200_000));
    let bomb = {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        s
    };
    let huge = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: huge, annotations: {{a: \"{}\"}}}}\n",
        "x".repeat(12 << 20)
    );
    let image = f.image();
    let cases: Vec<(&str, Body)> = vec![
        (
            "name-traversal",
            Body::Text(pod_yaml(
                &format!("../../../../tmp/{escape}"),
                "default",
                &image,
                &format!("{escape}-a"),
            )),
        ),
        (
            "namespace-traversal",
            Body::Text(pod_yaml(
                "n",
                &format!("../../../../tmp/{escape}"),
                &image,
                &format!("{escape}-b"),
            )),
        ),
        (
            "name-slash",
            Body::Text(pod_yaml(
                &format!("a/{escape}"),
                "default",
                &image,
                &format!("{escape}-c"),
            )),
        ),
        ("deep-nesting", Body::Text(deep)),
        ("alias-bomb", Body::Text(bomb)),
        ("oversized", Body::Text(huge)),
        ("endless", Body::Endless),
    ];
    let started = Instant::now();
    let (mut agent_died, mut steady_lost, mut escaped, mut peak_rss) = (0, 0, 0, 0);
    let mut ran = 0;
    for (what, body) in &cases {
        let before = srv.served();
        srv.set(body.clone());
        // Two fetches of it (the endless one: until the client gives up and asks again).
        let patience = if matches!(body, Body::Endless) {
            30
        } else {
            10
        };
        wait_until(
            Duration::from_secs(patience),
            &format!("{what} served twice"),
            || f.dirs.agent_log(),
            || {
                peak_rss = peak_rss.max(rss_kib(agent));
                std::thread::sleep(Duration::from_millis(50));
                (srv.served() >= before + 2).then_some(())
            },
        );
        agent_died += usize::from(!f.agent.as_mut().unwrap().is_running());
        steady_lost += usize::from(find_pids_by_cmdline(&steady_marker) != vec![steady]);
        for x in ["a", "b", "c"] {
            ran += find_pids_by_cmdline(&format!("{escape}-{x}")).len();
        }
        escaped += usize::from(Path::new("/tmp").join(&escape).exists());
        escaped += usize::from(f.dirs.base.join("tmp").exists());
        eprintln!("{what}: agent rss {} KiB", rss_kib(agent));
    }
    // The source still works: a good body is applied.
    let good = format!("good{pid}-end");
    srv.set(Body::Text(pod_yaml("good", "default", &image, &good)));
    f.container_pid(&good);
    let sock = f.dirs.root.join("hostlet.sock");
    let nobody_connected = connects_as_nobody(&sock);
    println!(
        "DRILL hostile_input cases={} secs={} agent_died={agent_died} steady_pod_lost={steady_lost} hostile_pods_ran={ran} escaped_paths={escaped} peak_agent_rss_kib={peak_rss} socket_open_to_nobody={nobody_connected}",
        cases.len(),
        started.elapsed().as_secs()
    );
    srv.set(Body::Text(String::new()));
    f.gone(&good);
    assert_eq!((agent_died, steady_lost, escaped), (0, 0, 0));
    assert!(
        !nobody_connected,
        "a non-root user reached the status socket"
    );
    assert!(peak_rss < 200 << 10, "agent RSS peaked at {peak_rss} KiB");
}

/// Item 8's last part: `hostlet logs` and `hostlet exec` cannot be pointed outside a
/// container's own files. Names that walk out of the pod logs dir are refused; and a
/// container that can reach its own log directory (a log shipper's hostPath of the pod
/// logs dir) and swaps its log file for a link to a root-only host file makes neither the
/// monitor write into that file nor `hostlet logs` print it.
#[test]
fn exec_and_logs_stay_inside_their_container() {
    let f = Fixture::new();
    let pid = std::process::id();
    let secret = format!("HOSTSECRET-{pid}");
    let secret_file = std::env::temp_dir().join(format!("hostlet-host-secret-{pid}"));
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let marker = format!("shipper{pid}-end");
    let script = format!(
        "d=$(ls -d /pod-logs/default_shipper-*/c); echo before-the-swap; sleep 1; rm $d/0.log; ln -s {} $d/0.log; while :; do echo after-the-swap; sleep 0.2; done",
        secret_file.display()
    );
    write_manifest(
        &f.dirs,
        "shipper.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: shipper}}\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: logs\n    hostPath: {{path: {}}}\n  containers:\n  - name: c\n    image: {}\n    command: [sh, -c, {script:?}, {marker}]\n    volumeMounts:\n    - {{name: logs, mountPath: /pod-logs}}\n",
            f.dirs.logs.display(),
            f.image()
        ),
    );
    f.container_pid(&marker);
    let link = f.wait("the log file swapped for a link", || {
        let dir = cri_log_files(&f.dirs.logs, "shipper", "c")
            .first()?
            .parent()?
            .to_path_buf();
        let p = dir.join("0.log");
        std::fs::symlink_metadata(&p)
            .ok()?
            .file_type()
            .is_symlink()
            .then_some(p)
    });
    // Long enough for the monitor to notice the swap and write dozens of lines.
    std::thread::sleep(Duration::from_secs(3));
    let host_file = std::fs::read_to_string(&secret_file).unwrap();
    let (_, logs) = hostlet_cli(&f.dirs.root, &["logs", "shipper"]);
    let (_, follow) = hostlet_cli(&f.dirs.root, &["logs", "shipper", "--tail", "5"]);
    let tries: [&[&str]; 6] = [
        &["logs", "../../../../../etc/passwd"],
        &["logs", "shipper", "-c", "../../../../etc/passwd"],
        &["logs", "-n", "../../..", "shipper"],
        &["logs", "../shipper"],
        &[
            "exec",
            "shipper",
            "-c",
            "../../../x",
            "--",
            "cat",
            "/etc/hostname",
        ],
        &["exec", "../../shipper", "--", "cat", "/etc/hostname"],
    ];
    let mut walked_out = Vec::new();
    for args in tries {
        let (ok, out) = hostlet_cli(&f.dirs.root, args);
        // Refused by the lookup, not by anything else (no agent, a bad flag).
        if ok || !out.contains("not found") || out.contains("root:x:0:0") || out.contains(&secret) {
            walked_out.push(format!("{args:?}: {out}"));
        }
    }
    let _ = std::fs::remove_file(&secret_file);
    println!(
        "DRILL exec_logs_confinement names_tried={} walked_out={} host_file_written={} secret_printed={}",
        tries.len(),
        walked_out.len(),
        host_file != format!("{secret}\n"),
        logs.contains(&secret) || follow.contains(&secret)
    );
    assert_eq!(
        host_file,
        format!("{secret}\n"),
        "the monitor wrote through the link {}",
        link.display()
    );
    assert!(
        !logs.contains(&secret) && !follow.contains(&secret),
        "hostlet logs printed the host file: {logs}"
    );
    assert!(walked_out.is_empty(), "{walked_out:#?}");
    f.log_has("dropped");
}
