//! A log disk that fails the monitor (full, its file removed, its directory read-only)
//! while a container floods its stdout: the monitor's memory stays under a ceiling, the
//! container runs on untouched, the dropped lines are counted in the pod's status and in
//! `/metrics`, the agent logs each episode once, and logging resumes by itself with one
//! line saying how much was lost.

mod common;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// The monitor's own memory (anonymous resident pages: heap, stacks; what a backlog of
/// log lines would grow) may never exceed this, whatever the log disk does. Its file-backed
/// pages are the executable's, bounded by its size (12 MiB for a debug build, where the
/// release build's whole RSS is under 8 MiB: BENCHMARKS.md, row 4c).
const MONITOR_ANON_CEILING_KIB: u64 = 4 * 1024;
const MARKER: &str = "hostlet: dropped ";

fn pod(name: &str, image: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    command: ["sh", "-c", {script:?}]
"#
    )
}

struct Flood {
    f: Fixture,
    addr: String,
    pod: String,
    log_dir: PathBuf,
}

impl Flood {
    /// An agent with `extra` flags whose log dir was set up by `prepare`, running one pod
    /// named `name` with `script`; returns once the container runs.
    fn start(name: &str, script: &str, extra: &[&str], prepare: impl FnOnce(&Path)) -> Flood {
        let port = free_port().to_string();
        let mut args = vec!["--read-only-port", &port];
        args.extend_from_slice(extra);
        let f = Fixture::prepared(&args, |dirs| prepare(&dirs.logs));
        write_manifest(
            &f.dirs,
            &format!("{name}.yaml"),
            &pod(name, &f.image(), script),
        );
        let pod = format!("{name}-{NODE_NAME}");
        let log_dir = f.wait("the container's log file", || {
            let files = cri_log_files(&f.dirs.logs, &pod, "main");
            Some(files.last()?.parent()?.to_path_buf())
        });
        let flood = Flood {
            addr: format!("127.0.0.1:{port}"),
            pod,
            f,
            log_dir,
        };
        flood.f.wait("the flooding container running", || {
            let c = flood.container_status()?;
            c["state"]["running"].is_object().then_some(())
        });
        flood
    }

    fn pod_json(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(&self.addr, "/pods")?;
        if code != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let items = v["items"].as_array()?.clone();
        items
            .into_iter()
            .find(|p| p["metadata"]["name"] == self.pod.as_str())
    }

    fn container_status(&self) -> Option<serde_json::Value> {
        Some(self.pod_json()?["status"]["containerStatuses"][0].clone())
    }

    /// The pod's log-drops condition: (status, message).
    fn drops_condition(&self) -> Option<(String, String)> {
        let pod = self.pod_json()?;
        let c = pod["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "hostlet/ContainerLogsDropped")?
            .clone();
        Some((
            c["status"].as_str()?.to_string(),
            c["message"].as_str()?.to_string(),
        ))
    }

    /// `hostlet_container_log_dropped_{lines,bytes}_total` of the container.
    fn dropped_metric(&self, what: &str) -> Option<u64> {
        let (_, body) = http_get(&self.addr, "/metrics")?;
        let prefix = format!("hostlet_container_log_{what}_total{{");
        let pod = format!("pod=\"{}\"", self.pod);
        body.lines()
            .find(|l| l.starts_with(&prefix) && l.contains(&pod))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The monitor's anonymous resident memory in KiB.
    fn monitor_anon_kib(&self) -> u64 {
        let dirs = self.f.container_dirs();
        assert_eq!(dirs.len(), 1, "one container expected: {dirs:?}");
        let st: serde_json::Value =
            serde_json::from_slice(&fs::read(dirs[0].join("state.json")).unwrap()).unwrap();
        let pid = st["monitor_pid"].as_i64().unwrap();
        let status = fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("monitor {pid} is gone: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Samples the monitor's memory for `d` and checks it against the ceiling.
    fn monitor_memory_bounded_over(&self, d: Duration) {
        let end = Instant::now() + d;
        let mut max = 0;
        while Instant::now() < end {
            max = max.max(self.monitor_anon_kib());
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(
            max <= MONITOR_ANON_CEILING_KIB,
            "monitor's anonymous memory {max} KiB (ceiling {MONITOR_ANON_CEILING_KIB} KiB)"
        );
    }

    /// Every log message of the container, rotated files (decompressed) first.
    fn messages(&self) -> Vec<String> {
        let dir = &self.log_dir;
        let mut names: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
            .collect();
        // `0.log.<stamp>[.gz]` sort by time, and after them the live `0.log`.
        names.sort_by_key(|p| (p.extension().is_some_and(|e| e == "log"), p.clone()));
        let mut out = Vec::new();
        for p in names {
            let mut text = String::new();
            let Ok(file) = fs::File::open(&p) else {
                continue;
            };
            let read = if p.extension().is_some_and(|e| e == "gz") {
                flate2::read::GzDecoder::new(file).read_to_string(&mut text)
            } else {
                let mut file = file;
                file.read_to_string(&mut text)
            };
            if read.is_err() {
                continue;
            }
            out.extend(
                text.lines()
                    .map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_string()),
            );
        }
        out
    }

    /// Waits until a drop record is followed by `line` in the log; returns the record.
    fn resumed_with(&self, line: &str) -> String {
        self.f.wait("a drop record followed by new lines", || {
            let msgs = self.messages();
            let at = msgs.iter().rposition(|m| m.starts_with(MARKER))?;
            msgs[at + 1..]
                .iter()
                .any(|m| m.contains(line))
                .then(|| msgs[at].clone())
        })
    }

    /// The container still runs, never restarted.
    fn still_running(&self) {
        let c = self.container_status().expect("container status");
        assert!(c["state"]["running"].is_object(), "{c}");
        assert_eq!(c["restartCount"], 0, "{c}");
    }

    /// Lines were dropped: counted in `/metrics` and in the pod's condition.
    fn drops_reported(&self, while_dropping: bool) -> (u64, String) {
        let lines = self.f.wait("dropped lines in /metrics", || {
            self.dropped_metric("dropped_lines").filter(|&n| n > 0)
        });
        assert!(self.dropped_metric("dropped_bytes").unwrap() > 0);
        let want = if while_dropping { "True" } else { "False" };
        let (_, message) = self.f.wait(&format!("the log-drops condition {want}"), || {
            self.drops_condition().filter(|(s, _)| s == want)
        });
        assert!(message.starts_with("main: "), "{message}");
        (lines, message)
    }
}

#[test]
fn a_full_log_disk_costs_lines_not_memory_and_logging_resumes() {
    let flood = Flood::start("flood", "exec yes flooding-the-log-disk", &[], |logs| {
        run_ok(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=1m",
                "logdisk",
                logs.to_str().unwrap(),
            ],
        )
    });
    flood.monitor_memory_bounded_over(Duration::from_secs(20));
    flood.still_running();
    let (_, message) = flood.drops_reported(true);
    assert!(message.contains("No space left on device"), "{message}");

    // Space returns: logging resumes by itself, starting with the drop record.
    run_ok(
        "mount",
        &[
            "-o",
            "remount,size=64m",
            flood.f.dirs.logs.to_str().unwrap(),
        ],
    );
    let record = flood.resumed_with("flooding-the-log-disk");
    assert!(record.contains("No space left on device"), "{record}");
    flood.drops_reported(false);
    flood.still_running();
    // One episode, one line in the agent's log (not one per dropped line).
    let log = flood.f.dirs.agent_log();
    let warned = log.matches("container log cannot be written").count();
    assert_eq!(warned, 1, "agent log:\n{log}");
    flood.f.log_has("container log writes resumed");
}

/// About a thousand lines a second, numbered.
const STEADY: &str = "i=0; while true; do i=$((i+1)); echo steady-line-$i; usleep 1000; done";

#[test]
fn a_removed_log_file_is_reopened_and_the_loss_counted() {
    let flood = Flood::start("removed", STEADY, &[], |_| {});
    flood.f.wait("some lines logged", || {
        (flood.messages().len() > 100).then_some(())
    });
    fs::remove_file(flood.log_dir.join("0.log")).unwrap();
    let record = flood.resumed_with("steady-line-");
    assert!(record.contains("was removed"), "{record}");
    flood.drops_reported(false);
    flood.monitor_memory_bounded_over(Duration::from_secs(2));
    flood.still_running();
}

#[test]
fn a_read_only_log_dir_bounds_the_live_file_and_logging_resumes() {
    let flood = Flood::start(
        "readonly",
        STEADY,
        &["--container-log-max-size", "64Ki"],
        |_| {},
    );
    let dir = flood.log_dir.clone();
    let d = dir.to_str().unwrap();
    // A read-only bind mount over the directory: the open log file stays writable (it
    // belongs to the mount underneath), but rotation can rename and create nothing.
    run_ok("mount", &["--bind", d, d]);
    run_ok("mount", &["-o", "remount,bind,ro", d]);
    let (_, message) = flood.drops_reported(true);
    assert!(message.contains("Read-only file system"), "{message}");
    let live = dir.join("0.log");
    let size = fs::metadata(&live).unwrap().len();
    assert!(
        size <= 2 * 64 * 1024 + 4096,
        "live log {size} bytes while rotation fails (limit 64Ki)"
    );
    flood.monitor_memory_bounded_over(Duration::from_secs(2));
    flood.still_running();

    run_ok("umount", &[d]);
    let record = flood.resumed_with("steady-line-");
    assert!(record.contains("Read-only file system"), "{record}");
    flood.drops_reported(false);
    flood.still_running();
}
