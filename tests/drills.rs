//! Reliability drills (RELIABILITY.md): faults injected at random moments, and every
//! promise counted afterwards. The short profile runs in `cargo test`; the long one is
//! `HOSTLET_DRILLS=long cargo test --test drills -- --nocapture` and prints the figures
//! RELIABILITY.md records. Each drill prints one `DRILL name key=value …` line.

mod common;
#[path = "images_support/mod.rs"]
mod images_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A small deterministic generator, seeded from the clock and printed, so that a failing
/// storm can be replayed with `HOSTLET_DRILL_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("HOSTLET_DRILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("drill seed: HOSTLET_DRILL_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

/// A pod whose one process carries `marker` in its command line for as long as it runs.
fn marked_pod(name: &str, image: &str, marker: &str) -> String {
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
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done", "{marker}"]
"#
    )
}

/// Pod UIDs the agent has a directory for.
fn pod_dirs(root: &Path) -> BTreeSet<String> {
    fs::read_dir(root.join("pods"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|rd| rd.count()).unwrap_or(0)
}

/// Restart counts by pod UID and container, from the status API.
fn restart_counts(addr: &str) -> Option<BTreeMap<String, i64>> {
    let (code, body) = http_get(addr, "/pods")?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut out = BTreeMap::new();
    for p in v["items"].as_array()? {
        let uid = p["metadata"]["uid"].as_str()?.to_string();
        for c in p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.insert(uid.clone(), c["restartCount"].as_i64()?);
        }
    }
    Some(out)
}

/// Drill 1: the agent is `kill -9`ed at random moments while manifests are added, edited
/// and removed (so kills land during pulls, bundle writes, monitor spawns and
/// terminations), and restarted each time. Afterwards every desired pod runs exactly once,
/// nothing of a removed or replaced pod runs, restart counts never went back, and once
/// every manifest is gone nothing of any pod is left on the host.
#[test]
fn agent_kill_storm() {
    let kills = if long() { 100 } else { 12 };
    let mut rng = Rng::new();
    let port = free_port().to_string();
    let args = ["--read-only-port", &port, "--pod-logs-gc-delay", "1s"];
    let mut f = Fixture::with_args(&args);
    let addr = format!("127.0.0.1:{port}");
    let image = f.image();
    let storm = format!("drill{}", std::process::id());
    // name → version of its manifest now on disk.
    let mut desired: BTreeMap<String, u32> = BTreeMap::new();
    let mut uids = BTreeSet::new();
    let mut last_restarts: BTreeMap<String, i64> = BTreeMap::new();
    let mut went_back = 0;
    let marker = |name: &str, v: u32| format!("{storm}-{name}-v{v}-end");
    let started = Instant::now();
    for k in 0..kills {
        // One or two manifest changes, then a kill somewhere in what they set off.
        for _ in 0..=rng.below(2) {
            let name = format!("p{}", rng.below(6));
            match (desired.get(&name).copied(), rng.below(3)) {
                (Some(_), 0) => {
                    remove_manifest(&f.dirs, &format!("{name}.yaml"));
                    desired.remove(&name);
                }
                (v, _) => {
                    let v = v.map_or(0, |v| v + 1);
                    let yaml = marked_pod(&name, &image, &marker(&name, v));
                    write_manifest(&f.dirs, &format!("{name}.yaml"), &yaml);
                    desired.insert(name, v);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        uids.extend(pod_dirs(&f.dirs.root));
        f.agent.as_mut().unwrap().kill9();
        uids.extend(pod_dirs(&f.dirs.root));
        f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &args));
        // Restart counts read by the new agent (adopted) must not be lower than before.
        let counts = f.wait("the new agent's status", || restart_counts(&addr));
        for (uid, n) in &counts {
            if last_restarts.get(uid).is_some_and(|before| n < before) {
                eprintln!("kill {k}: restart count of {uid} went back to {n}");
                went_back += 1;
            }
        }
        last_restarts.extend(counts);
    }

    // Every desired pod runs exactly once; nothing else of the storm runs.
    let settle = Duration::from_secs(120);
    let (dup, stale) = wait_until(
        settle,
        "desired pods each running once",
        || f.dirs.agent_log(),
        || {
            // One look at /proc. A shell's child between fork and exec still carries its
            // parent's command line: count only processes whose parent is not one of ours.
            let ours: Vec<(i32, String)> = find_pids_by_cmdline(&storm)
                .into_iter()
                .filter_map(|p| Some((p, cmdline(p)?)))
                .collect();
            let pids: BTreeSet<i32> = ours.iter().map(|(p, _)| *p).collect();
            let roots: Vec<&String> = ours
                .iter()
                .filter(|(p, _)| !ppid_of(*p).is_some_and(|pp| pids.contains(&pp)))
                .map(|(_, c)| c)
                .collect();
            let mut dup = 0;
            let mut matched = 0;
            for (name, v) in &desired {
                let m = marker(name, *v);
                let n = roots.iter().filter(|c| c.contains(&m)).count();
                if n == 0 {
                    return None;
                }
                dup += n - 1;
                matched += n;
            }
            // Processes of removed pods or older versions (given time to terminate).
            let stale = roots.len().saturating_sub(matched);
            (stale == 0 || dup > 0).then_some((dup, stale))
        },
    );
    uids.extend(pod_dirs(&f.dirs.root));

    // Remove everything: no trace of any pod may remain.
    for name in desired.keys() {
        remove_manifest(&f.dirs, &format!("{name}.yaml"));
    }
    let left = traces_after_removal(&f, &storm, &uids);
    println!(
        "DRILL agent_kill_storm kills={kills} pods_seen={} desired_at_end={} secs={} duplicates={dup} stale={stale} restart_count_went_back={went_back} {left}",
        uids.len(),
        desired.len(),
        started.elapsed().as_secs(),
    );
    assert_eq!((dup, stale, went_back), (0, 0, 0));
    left.assert_none();
}

/// What is left of a drill's pods once their manifests are gone.
struct Traces {
    mounts: Vec<String>,
    runtime_state: usize,
    log_dirs: usize,
    cgroups: Vec<String>,
}

impl std::fmt::Display for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "leaked_mounts={} leaked_runtime_state={} leaked_log_dirs={} leaked_cgroups={}",
            self.mounts.len(),
            self.runtime_state,
            self.log_dirs,
            self.cgroups.len()
        )
    }
}

impl Traces {
    fn assert_none(&self) {
        assert!(self.mounts.is_empty(), "mounts left: {:?}", self.mounts);
        assert_eq!(self.runtime_state, 0, "libcontainer state left");
        assert_eq!(self.log_dirs, 0, "pod log dirs left");
        assert!(
            self.cgroups.is_empty(),
            "pod cgroups left: {:?}",
            self.cgroups
        );
    }
}

/// Waits until the agent has removed every pod (no process with `marker`, no pod or
/// container directory), then counts what is left on the host, giving the log and cgroup
/// removal their time.
fn traces_after_removal(f: &Fixture, marker: &str, uids: &BTreeSet<String>) -> Traces {
    let settle = Duration::from_secs(120);
    wait_until(
        settle,
        "every pod gone",
        || f.dirs.agent_log(),
        || {
            (find_pids_by_cmdline(marker).is_empty()
                && pod_dirs(&f.dirs.root).is_empty()
                && entries(&f.dirs.root.join("containers")) == 0)
                .then_some(())
        },
    );
    let deadline = Instant::now() + Duration::from_secs(10) * time_scale();
    loop {
        let t = Traces {
            mounts: mounts_under(&f.dirs.root),
            runtime_state: entries(&f.dirs.root.join("runtime")),
            log_dirs: entries(&f.dirs.logs),
            cgroups: pod_cgroups_of(&uids.iter().cloned().collect::<Vec<_>>()),
        };
        let clean =
            t.mounts.is_empty() && t.runtime_state == 0 && t.log_dirs == 0 && t.cgroups.is_empty();
        if clean || Instant::now() >= deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every process of a storm's pods and the agent die at once and every mount under the
/// root dir is gone, as after a power cut; the next agent brings each pod back exactly once
/// and removes the debris, and removing the manifests then leaves nothing behind.
#[test]
fn power_cut() {
    let cuts = if long() { 10 } else { 2 };
    let port = free_port().to_string();
    let args = ["--read-only-port", &port, "--pod-logs-gc-delay", "1s"];
    let mut f = Fixture::with_args(&args);
    let image = f.image();
    let storm = format!("cut{}", std::process::id());
    let names = ["a", "b", "c", "d"];
    let marker = |name: &str| format!("{storm}-{name}-end");
    for name in names {
        write_manifest(
            &f.dirs,
            &format!("{name}.yaml"),
            &marked_pod(name, &image, &marker(name)),
        );
    }
    let each_once = || {
        let counts: Vec<usize> = names
            .iter()
            .map(|n| find_pids_by_cmdline(&marker(n)).len())
            .collect();
        counts.iter().all(|&n| n >= 1).then_some(counts)
    };
    let mut uids = BTreeSet::new();
    let mut duplicates = 0;
    let started = Instant::now();
    for _ in 0..cuts {
        f.wait("every pod running", &each_once);
        uids.extend(pod_dirs(&f.dirs.root));
        f.agent.as_mut().unwrap().kill9();
        let root = f.dirs.root.display().to_string();
        for pid in find_pids_by_cmdline(&format!("monitor {root}")) {
            signal(pid, libc::SIGKILL);
        }
        for pid in find_pids_by_cmdline(&storm) {
            signal(pid, libc::SIGKILL);
        }
        f.wait("every container process gone", || {
            find_pids_by_cmdline(&storm).is_empty().then_some(())
        });
        detach_mounts_under(&f.dirs.root);
        f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &args));
        let counts = f.wait("every pod back", &each_once);
        // Give a duplicate the time to show up.
        std::thread::sleep(Duration::from_secs(2));
        let counts_later = each_once().unwrap_or(counts);
        duplicates += counts_later.iter().map(|n| n - 1).sum::<usize>();
    }
    let debris = entries(&f.dirs.root.join("containers")).saturating_sub(names.len());
    uids.extend(pod_dirs(&f.dirs.root));
    for name in names {
        remove_manifest(&f.dirs, &format!("{name}.yaml"));
    }
    let left = traces_after_removal(&f, &storm, &uids);
    println!(
        "DRILL power_cut cuts={cuts} pods={} secs={} duplicates={duplicates} container_dirs_beyond_one_per_pod={debris} {left}",
        names.len(),
        started.elapsed().as_secs()
    );
    assert_eq!((duplicates, debris), (0, 0));
    left.assert_none();
}

/// `kill -9` of a container's monitor: the agent notices, the container is killed and
/// accounted for (never left running unsupervised), and it runs again per its policy.
#[test]
fn monitor_killed() {
    let kills = if long() { 20 } else { 3 };
    let port = free_port().to_string();
    let args = [
        "--read-only-port",
        &port,
        "--pod-logs-gc-delay",
        "1s",
        "--crash-loop-backoff-initial",
        "1s",
        "--crash-loop-backoff-max",
        "1s",
    ];
    let f = Fixture::with_args(&args);
    let storm = format!("mon{}", std::process::id());
    let marker = format!("{storm}-m-end");
    write_manifest(&f.dirs, "m.yaml", &marked_pod("m", &f.image(), &marker));
    let started = Instant::now();
    let mut orphans = 0;
    for _ in 0..kills {
        let pid = f.container_pid(&marker);
        let root = f.dirs.root.display().to_string();
        let monitors = find_pids_by_cmdline(&format!("monitor {root}"));
        assert_eq!(monitors.len(), 1, "one monitor: {monitors:?}");
        signal(monitors[0], libc::SIGKILL);
        // The old instance must go, and a new one come.
        f.wait("the unsupervised container gone", || {
            (!process_exists(pid)).then_some(())
        });
        let new = f.container_pid(&marker);
        let monitors = find_pids_by_cmdline(&format!("monitor {root}"));
        orphans += usize::from(new == pid || monitors.len() != 1);
    }
    let uids = pod_dirs(&f.dirs.root);
    remove_manifest(&f.dirs, "m.yaml");
    let left = traces_after_removal(&f, &storm, &uids);
    println!(
        "DRILL monitor_killed kills={kills} secs={} orphaned={orphans} {left}",
        started.elapsed().as_secs()
    );
    assert_eq!(orphans, 0);
    left.assert_none();
}

/// A registry that misbehaves on a layer (500, reset mid-blob, truncated body, wrong
/// content, too much content, 429 with Retry-After) and then behaves: the pod reports the
/// pull error, retries with back-off, and runs once the registry heals; no partial or
/// corrupt layer is ever stored or used. One agent per fault, so that no pull can borrow
/// another's verified layer.
#[test]
fn registry_faults_then_recovery() {
    use images_support::{Fault, FaultImage, FaultServer};
    let faults = [
        Fault::Status500,
        Fault::ResetMidBlob,
        Fault::Truncated,
        Fault::WrongContent,
        Fault::Oversized,
        Fault::TooMany,
        Fault::Stalled,
    ];
    let rounds = if long() { 3 } else { 1 };
    let image = FaultImage::uncompressed_test_image();
    let started = Instant::now();
    let mut runs = 0;
    let mut errors_reported = 0;
    let mut corrupt_used = 0;
    for fault in faults {
        let server = FaultServer::start_then_heal(image.clone(), fault, rounds);
        let dirs = AgentDirs::new();
        let port = free_port().to_string();
        let args = [
            "--insecure-registry",
            &server.addr,
            "--read-only-port",
            &port,
        ];
        let mut agent = Agent::start_with(&dirs, None, &args);
        let marker = format!("reg{}-{fault:?}-end", std::process::id());
        let reference = format!("{}/library/busybox:test", server.addr);
        write_manifest(&dirs, "p.yaml", &marked_pod("p", &reference, &marker));
        let addr = format!("127.0.0.1:{port}");
        let waiting_reason = || {
            let (_, body) = http_get(&addr, "/pods")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let c = &v["items"][0]["status"]["containerStatuses"][0];
            c["state"]["waiting"]["reason"].as_str().map(str::to_string)
        };
        // A stalled body is noticed when the agent's 30 s read timeout fires.
        let noticed = if matches!(fault, Fault::Stalled) {
            45
        } else {
            30
        };
        let reason = wait_until(
            Duration::from_secs(noticed),
            &format!("{fault:?}: a pull error in the status"),
            || dirs.agent_log(),
            || waiting_reason().filter(|r| r == "ErrImagePull" || r == "ImagePullBackOff"),
        );
        errors_reported += usize::from(!reason.is_empty());
        // The image back-off doubles from 10 s after each failed pull, and each retry of a
        // stalled body waits out the read timeout again, before the healed registry is met.
        let backoffs = 10 * ((1u64 << rounds) - 1);
        let stalls = if matches!(fault, Fault::Stalled) {
            30 * (rounds as u64 - 1)
        } else {
            0
        };
        let limit = Duration::from_secs(backoffs + stalls + 30);
        wait_until(
            limit,
            &format!("{fault:?}: the pod running after the registry healed"),
            || dirs.agent_log(),
            || (find_pids_by_cmdline(&marker).len() == 1).then_some(()),
        );
        // The layer in the store is the right one, and nothing half-written is left.
        let layers = dirs.root.join("images/layers");
        let stored: Vec<String> = fs::read_dir(&layers)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let diff_id = image.layer_digest.trim_start_matches("sha256:").to_string();
        corrupt_used += usize::from(stored != [diff_id.clone()]);
        let tmp = images_support::walk(&dirs.root.join("images"))
            .into_iter()
            .filter(|p| p.contains(".tmp-"))
            .count();
        corrupt_used += tmp;
        remove_manifest(&dirs, "p.yaml");
        wait_until(
            Duration::from_secs(60),
            "the pod gone",
            || dirs.agent_log(),
            || {
                (entries(&dirs.root.join("containers")) == 0 && pod_dirs(&dirs.root).is_empty())
                    .then_some(())
            },
        );
        agent.sigterm_and_wait();
        runs += 1;
    }
    println!(
        "DRILL registry_faults faults={} faulty_requests_each={rounds} secs={} errors_reported={errors_reported} corrupt_or_partial_used={corrupt_used}",
        runs,
        started.elapsed().as_secs()
    );
    assert_eq!(errors_reported, runs);
    assert_eq!(corrupt_used, 0);
}
