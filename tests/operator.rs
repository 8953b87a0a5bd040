//! The operator's interface against a real agent with real containers: the status API
//! on its Unix socket and the read-only port, `/metrics` through a Prometheus text
//! parser, the CLI verbs (pods, ps, inspect, logs, exec, version), log rotation under a
//! container printing megabytes, `--config`, and systemd's notify protocol.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn pod(name: &str, image: &str, script: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{extra_spec}
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", {script:?}]
"#
    )
}

fn hostlet(root: &Path, args: &[&str]) -> Output {
    hostlet_stdin(root, args, None)
}

fn hostlet_stdin(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    // --root-dir right after the verb: whatever follows `--` belongs to the command.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hostlet"));
    cmd.arg(args[0])
        .arg("--root-dir")
        .arg(root)
        .args(&args[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn hostlet");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("wait hostlet")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        text(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    text(&o)
}

fn metrics(addr: &str) -> prometheus_parse::Scrape {
    let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
}

/// The value of the sample `name` whose labels include every `labels` pair.
fn sample(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples.iter().find_map(|x| {
        let matches = x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v));
        if !matches {
            return None;
        }
        match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(*v),
            prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count),
            _ => None,
        }
    })
}

#[test]
fn cli_and_api_against_a_running_agent() {
    let port = free_port();
    let port_s = port.to_string();
    let f = Fixture::with_args(&[
        "--read-only-port",
        &port_s,
        "--crash-loop-backoff-initial",
        "1s",
    ]);
    let root = f.dirs.root.clone();
    let addr = format!("127.0.0.1:{port}");
    let web =
        "echo hello-from-web; echo second line; echo to-stderr >&2; while true; do sleep 1; done";
    write_manifest(&f.dirs, "web.yaml", &pod("web", &f.image(), web, ""));
    let crash = "echo run-$(cat /proc/uptime); exit 3";
    write_manifest(&f.dirs, "crash.yaml", &pod("crash", &f.image(), crash, ""));

    let sock = root.join("hostlet.sock");
    f.wait("the status socket", || sock.exists().then_some(()));
    let mode = fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    f.wait("web Running in `hostlet pods`", || {
        let out = text(&hostlet(&root, &["pods"]));
        out.lines()
            .any(|l| {
                l.starts_with("web-testnode ") && l.contains(" 1/1 ") && l.contains(" Running ")
            })
            .then_some(())
    });
    let table = ok(hostlet(&root, &["pods"]), "pods");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );

    let list: serde_json::Value =
        serde_json::from_str(&ok(hostlet(&root, &["pods", "-o", "json"]), "pods -o json")).unwrap();
    assert_eq!(list["kind"], "PodList");
    let web_pod = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "web-testnode")
        .expect("web in the list")
        .clone();
    assert_eq!(web_pod["status"]["phase"], "Running");
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&ok(hostlet(&root, &["pods", "-o", "yaml"]), "pods -o yaml")).unwrap();
    assert_eq!(yaml["kind"], serde_yaml::Value::from("PodList"));

    // The read-only port serves the same API.
    let (code, body) = http_get(&addr, "/pods/default/web-testnode").unwrap();
    assert_eq!(code, 200, "{body}");
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["metadata"]["name"], "web-testnode");
    assert_eq!(one["kind"], "Pod");
    assert_eq!(http_get(&addr, "/pods/default/nope").unwrap().0, 404);
    assert_eq!(
        http_get(&addr, "/healthz").unwrap(),
        (200, "ok".to_string())
    );

    // ps and inspect.
    let ps = ok(hostlet(&root, &["ps"]), "ps");
    let web_row = ps
        .lines()
        .find(|l| l.ends_with("web-testnode"))
        .unwrap_or_else(|| panic!("{ps}"));
    assert!(web_row.contains("Running"), "{ps}");
    let id = web_row.split_whitespace().next().unwrap().to_string();
    let all: serde_json::Value =
        serde_json::from_str(&ok(hostlet(&root, &["ps", "-a", "-o", "json"]), "ps -a")).unwrap();
    assert!(
        all["containers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["podName"] == "crash-testnode"),
        "{all}"
    );
    let pod_json: serde_json::Value =
        serde_json::from_str(&ok(hostlet(&root, &["inspect", "web"]), "inspect web")).unwrap();
    assert_eq!(pod_json["metadata"]["name"], "web-testnode");
    let c_json: serde_json::Value = serde_json::from_str(&ok(
        hostlet(&root, &["inspect", &id[..id.len() - 2]]),
        "inspect id prefix",
    ))
    .unwrap();
    assert_eq!(c_json["id"], id.as_str());
    assert!(
        c_json["info"]["config"]["log_path"]
            .as_str()
            .unwrap()
            .ends_with("/main/0.log"),
        "{c_json}"
    );

    // logs.
    // The container writes asynchronously to its start being reported.
    let logs = f.wait("web's three lines in `hostlet logs`", || {
        let l = text(&hostlet(&root, &["logs", "web"]));
        (l.lines().count() >= 3).then_some(l)
    });
    assert_eq!(logs, "hello-from-web\nsecond line\nto-stderr\n");
    assert_eq!(
        ok(
            hostlet(&root, &["logs", "--tail", "1", "web-testnode", "main"]),
            "logs --tail"
        ),
        "to-stderr\n"
    );
    let ts = ok(
        hostlet(
            &root,
            &["logs", "--timestamps", "-c", "main", "default/web"],
        ),
        "logs --timestamps",
    );
    let first = ts.lines().next().unwrap();
    let (stamp, rest) = first.split_once(' ').unwrap();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{first}");
    assert_eq!(rest, "hello-from-web");
    assert_eq!(
        ok(
            hostlet(&root, &["logs", "--since", "1h", "web"]),
            "logs --since"
        )
        .lines()
        .count(),
        3
    );

    // exec: output, stdin, exit code passthrough, error for a missing container.
    assert_eq!(
        ok(
            hostlet(&root, &["exec", "web", "--", "cat", "/etc/hostname"]),
            "exec cat"
        )
        .trim(),
        "web-testnode"
    );
    let echoed = hostlet_stdin(
        &root,
        &["exec", "-i", "web", "--", "cat"],
        Some("piped input\n"),
    );
    assert_eq!(ok(echoed, "exec -i cat"), "piped input\n");
    let code = hostlet(&root, &["exec", "web", "--", "sh", "-c", "exit 7"])
        .status
        .code();
    assert_eq!(code, Some(7));
    // -t: a real terminal inside the container (here without a terminal outside).
    let tty = ok(
        hostlet(
            &root,
            &[
                "exec",
                "-t",
                "web",
                "--",
                "sh",
                "-c",
                "tty; echo term=$TERM; exit 0",
            ],
        ),
        "exec -t",
    );
    assert!(tty.contains("/dev/pts/"), "{tty:?}");
    assert!(tty.contains("term="), "{tty:?}");
    let code = hostlet(&root, &["exec", "-t", "web", "--", "sh", "-c", "exit 5"])
        .status
        .code();
    assert_eq!(code, Some(5));
    let missing = hostlet(&root, &["exec", "web", "-c", "nope", "--", "true"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("container \"nope\" not found"));

    // The crashing pod restarts; --previous shows the dead instance.
    f.wait("crash restarted", || {
        let p = text(&hostlet(&root, &["pods"]));
        let row = p
            .lines()
            .find(|l| l.starts_with("crash-testnode "))?
            .to_string();
        let restarts: u32 = row.split_whitespace().nth(3)?.parse().ok()?;
        (restarts >= 1).then_some(())
    });
    // The crash loop goes on meanwhile: a restart between reading the status and
    // opening the file removes the instance before the previous one, as with the
    // kubelet, so ask again until one answer is whole.
    f.wait("`logs --previous crash` to show a dead instance", || {
        let out = hostlet(&root, &["logs", "--previous", "crash"]);
        (out.status.success() && text(&out).starts_with("run-")).then_some(())
    });
    let no_prev = hostlet(&root, &["logs", "--previous", "web"]);
    assert!(String::from_utf8_lossy(&no_prev.stderr).contains("previous terminated container"));

    // /metrics through a real Prometheus text parser.
    let m = f.wait("metrics with the restart and the pod start", || {
        let m = metrics(&addr);
        let restarts = sample(
            &m,
            "hostlet_container_restarts_total",
            &[("pod", "crash-testnode")],
        )?;
        let starts = sample(&m, "hostlet_pod_start_duration_seconds", &[])?;
        (restarts >= 1.0 && starts >= 1.0).then_some(m)
    });
    assert!(sample(&m, "hostlet_pods", &[("phase", "Running")]).unwrap() >= 1.0);
    assert!(sample(&m, "hostlet_containers", &[("state", "running")]).unwrap() >= 1.0);
    assert!(sample(&m, "hostlet_image_pulls_total", &[("result", "success")]).unwrap() >= 1.0);
    assert!(sample(&m, "hostlet_image_pull_duration_seconds", &[]).unwrap() >= 1.0);
    assert!(
        sample(
            &m,
            "hostlet_container_starts_total",
            &[("result", "success")]
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(sample(&m, "hostlet_sources_synced", &[]), Some(1.0));
    assert!(sample(&m, "hostlet_manifest_errors", &[("kind", "invalid")]).is_some());
    for s in &m.samples {
        assert!(s.metric.starts_with("hostlet_"), "{}", s.metric);
    }

    let v = ok(hostlet(&root, &["version"]), "version");
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("agent: running, synced"),
        "{v}"
    );
}

#[test]
fn without_an_agent_every_verb_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for verb in [
        &["pods"][..],
        &["ps", "-a"],
        &["inspect", "x"],
        &["logs", "x"],
        &["exec", "x", "--", "true"],
    ] {
        let o = hostlet(dir.path(), verb);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{verb:?}: {o:?}");
        assert_eq!(err.lines().count(), 1, "{verb:?}: {err}");
        assert!(
            err.contains("no hostlet agent is running at"),
            "{verb:?}: {err}"
        );
    }
    let v = ok(hostlet(dir.path(), &["version"]), "version without agent");
    assert!(v.contains("no hostlet agent"), "{v}");
    for shell in ["bash", "zsh", "fish"] {
        let o = Command::new(env!("CARGO_BIN_EXE_hostlet"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(
            o.status.success() && text(&o).contains("hostlet"),
            "{shell}"
        );
    }
}

fn log_dir_files(logs: &Path, pod: &str) -> Vec<PathBuf> {
    let dir = fs::read_dir(logs)
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("default_{pod}-testnode_"))
        })
        .map(|e| e.path().join("main"));
    dir.and_then(|d| fs::read_dir(d).ok())
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Whether `pod`'s log holds `needle`, in the live file or a compressed rotated one: the
/// write that brings the live file to its size limit rotates it, so the last line written
/// may already sit in a `.gz`.
fn logged(logs: &Path, pod: &str, needle: &str) -> bool {
    log_dir_files(logs, pod).iter().any(|p| {
        let Ok(file) = fs::File::open(p) else {
            return false;
        };
        let mut text = String::new();
        let read = if p.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(file).read_to_string(&mut text)
        } else {
            std::io::BufReader::new(file).read_to_string(&mut text)
        };
        read.is_ok() && text.contains(needle)
    })
}

#[test]
fn logs_rotate_bounded_and_follow_across_rotation() {
    let f = Fixture::with_args(&[
        "--container-log-max-size",
        "64Ki",
        "--container-log-max-files",
        "3",
    ]);
    let root = f.dirs.root.clone();
    // Paced: ~1 KiB lines every 5 ms, a rotation about every third of a second.
    let paced =
        "sleep 2; pad=$(printf '%0900d' 0); i=0; while [ $i -lt 400 ]; do echo \"n=$i $pad\"; \
                 i=$((i+1)); usleep 5000; done; echo done-paced; while true; do sleep 1; done";
    write_manifest(&f.dirs, "paced.yaml", &pod("paced", &f.image(), paced, ""));
    // Megabytes as fast as the container can print them.
    let burst = "yes 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' \
                 | head -n 60000; echo done-burst; while true; do sleep 1; done";
    write_manifest(&f.dirs, "burst.yaml", &pod("burst", &f.image(), burst, ""));

    f.wait("paced running", || {
        let p = text(&hostlet(&root, &["pods"]));
        p.lines()
            .any(|l| l.starts_with("paced-testnode ") && l.contains("Running"))
            .then_some(())
    });
    let out_path = f.dirs.base.join("follow.out");
    let mut follower = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["logs", "-f", "paced", "--root-dir"])
        .arg(&root)
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    f.wait("burst done", || {
        logged(&f.dirs.logs, "burst", "done-burst").then_some(())
    });
    f.wait("paced done", || {
        logged(&f.dirs.logs, "paced", "done-paced").then_some(())
    });
    // Bounded: the live file and at most two compressed ones, each about 64 KiB.
    for pod in ["burst", "paced"] {
        let files = log_dir_files(&f.dirs.logs, pod);
        assert!(files.len() <= 3, "{pod}: {files:?}");
        let rotated: Vec<&PathBuf> = files.iter().filter(|p| !p.ends_with("0.log")).collect();
        assert!(!rotated.is_empty(), "{pod}: no rotation: {files:?}");
        for r in &rotated {
            let name = r.file_name().unwrap().to_string_lossy();
            assert!(
                name.starts_with("0.log.") && name.ends_with(".gz"),
                "{name}"
            );
        }
        let total: u64 = files.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
        assert!(
            total < 3 * (64 * 1024 + 64 * 1024),
            "{pod}: {total} bytes in {files:?}"
        );
    }
    // Several megabytes went through, yet the directory holds well under one.
    let burst_total: u64 = log_dir_files(&f.dirs.logs, "burst")
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert!(burst_total < 1024 * 1024, "{burst_total}");

    // The follower saw every line, in order, across the rotations.
    f.wait("the follower printing the last line", || {
        fs::read_to_string(&out_path)
            .ok()?
            .contains("done-paced")
            .then_some(())
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let seen = fs::read_to_string(&out_path).unwrap();
    let numbers: Vec<u32> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("n=")?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(
        numbers,
        (0..400).collect::<Vec<u32>>(),
        "follower output in {}",
        out_path.display()
    );
}

/// Receives datagrams until one contains `want` (or the time is up).
fn receive_until(
    sock: &UnixDatagram,
    want: &str,
    within: Duration,
    log: &dyn Fn() -> String,
) -> String {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(want) {
                return msg;
            }
            got.push(msg);
        }
    }
    panic!(
        "no {want:?} within {within:?}; got {got:?}; agent log:\n{}",
        log()
    );
}

#[test]
fn config_file_and_systemd_notify() {
    require_root_and_tools();
    let dirs = AgentDirs::new();
    let file_port = free_port();
    let flag_port = free_port();
    let config = dirs.base.join("kubelet.yaml");
    fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             staticPodPath: {}\nfileCheckFrequency: 1s\ncontainerLogMaxSize: 1Mi\n\
             containerLogMaxFiles: 2\nreadOnlyPort: {file_port}\nclusterDNS: [10.96.0.10]\n\
             authentication: {{anonymous: {{enabled: false}}}}\n",
            dirs.manifests.display()
        ),
    )
    .unwrap();
    let notify_path = dirs.base.join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = fs::File::create(&dirs.agent_log).unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--root-dir")
        .arg(&dirs.root)
        .arg("--pod-logs-dir")
        .arg(&dirs.logs)
        .args([
            "--hostname-override",
            NODE_NAME,
            "--read-only-port",
            &flag_port.to_string(),
        ])
        .args(dirs.net.args())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "300000")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = agent.id();
    let agent_log = || dirs.agent_log();

    let ready = receive_until(&sock, "READY=1", Duration::from_secs(30), &agent_log);
    assert!(ready.contains(&format!("MAINPID={pid}")), "{ready}");
    receive_until(&sock, "WATCHDOG=1", Duration::from_secs(5), &agent_log);
    receive_until(&sock, "WATCHDOG=1", Duration::from_secs(5), &agent_log);

    // The flag's port wins over the file's; the file's other fields apply.
    let flag_addr = format!("127.0.0.1:{flag_port}");
    assert_eq!(http_get(&flag_addr, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(
        http_get(&format!("127.0.0.1:{file_port}"), "/healthz"),
        None
    );
    let logged = agent_log();
    assert!(
        logged.contains("ignoring config fields")
            && logged.contains("clusterDNS")
            && logged.contains("authentication"),
        "{logged}"
    );

    signal(pid as i32, libc::SIGTERM);
    receive_until(&sock, "STOPPING=1", Duration::from_secs(10), &agent_log);
    let status = agent.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !dirs.root.join("hostlet.sock").exists(),
        "socket left behind"
    );
}
