//! Reliability drills that guard the host (RELIABILITY.md, issue 20 items 2 and 9): pod
//! cgroups left by pods nobody knows, and containers that misbehave (a killed pause
//! process, SIGTERM ignored, zombies, a fork bomb). Each prints one `DRILL name key=value …`
//! line and fails on any loss or leak. `HOSTLET_DRILLS=long` runs more rounds.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Instant;

use common::*;

fn long() -> bool {
    std::env::var("HOSTLET_DRILLS").is_ok_and(|v| v == "long")
}

/// The directories of cgroup `rel` in the controllers every agent makes pod cgroups in
/// (cpu, memory, pids on v1; the one tree on v2).
fn pod_level_dirs(rel: &str) -> Vec<PathBuf> {
    let base = std::path::Path::new("/sys/fs/cgroup");
    let rel = rel.trim_start_matches('/');
    if cgroup_v2() {
        return vec![base.join(rel)];
    }
    ["cpu", "memory", "pids"]
        .iter()
        .map(|c| base.join(c).join(rel))
        .collect()
}

/// Kills and reaps a helper process on drop, also when the test fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Drill 9: pod cgroups of pods the agent does not know, under its own `--cgroup-root`,
/// are removed once it is synced, at start and after a `kill -9`; one that still holds a
/// process is kept, and so is the empty cgroup of a pod the agent knows (a completed
/// `restartPolicy: Never` pod). Nothing outside its root is touched.
#[test]
fn orphaned_pod_cgroups() {
    let rounds = if long() { 5 } else { 2 };
    let reg = Registry::start();
    let mut dirs = AgentDirs::new();
    let pid = std::process::id();
    // Under systemd the harness gives no root: this drill needs one, with the cgroupfs
    // layout it creates its orphans in.
    let root = dirs
        .cgroup_root
        .get_or_insert_with(|| format!("/hostlet_test_{pid}_orphans"))
        .clone();
    let driver = ["--cgroup-driver", "cgroupfs"];
    let orphan = |n: usize, qos: &str| format!("{root}/kubepods/{qos}pod0rphan-{pid}-{n}");
    let mut f = Fixture {
        agent: None,
        dirs,
        reg,
        patience: T,
    };
    // A neighbour: another agent's root, never looked at.
    let other = format!("/hostlet_test_{pid}_neighbour/kubepods/podn-{pid}");
    let make = |rel: &str| {
        for d in pod_level_dirs(rel) {
            fs::create_dir_all(d.join("ctr")).unwrap();
        }
    };
    make(&other);
    // A cgroup of an unknown pod with a live process: kept.
    let busy_rel = format!("{root}/kubepods/burstable/podbusy-{pid}");
    make(&busy_rel);
    let sleeper = Reaped(Command::new("sleep").arg("1000").spawn().unwrap());
    let busy_ctl = pod_level_dirs(&busy_rel).pop().unwrap();
    fs::write(
        busy_ctl.join("ctr/cgroup.procs"),
        sleeper.0.id().to_string(),
    )
    .unwrap();

    // A pod the agent knows whose cgroup is empty once its container completed.
    write_manifest(
        &f.dirs,
        "done.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: done}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: c, image: {}, command: [sh, -c, \"echo done-{pid}\"]}}\n",
            f.image()
        ),
    );
    let started = Instant::now();
    let (mut made, mut removed) = (0, 0);
    let mut known_kept = true;
    let mut known_uid = None;
    for round in 0..rounds {
        let qos = ["besteffort/", "", "burstable/"];
        let names: Vec<String> = (0..3).map(|i| orphan(round * 3 + i, qos[i])).collect();
        for n in &names {
            make(n);
            made += 1;
        }
        f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &driver));
        f.wait("the orphaned pod cgroups removed", || {
            let left = names
                .iter()
                .flat_map(|n| pod_level_dirs(n))
                .filter(|d| d.exists())
                .count();
            (left == 0).then_some(())
        });
        removed += names.len();
        if round == 0 {
            // The completed pod: known, its cgroup empty. The next round's sweep must keep it.
            let uid = f.wait("the pod dir of the completed pod", || {
                fs::read_dir(f.dirs.root.join("pods"))
                    .ok()?
                    .flatten()
                    .next()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
            });
            f.output("done", "c", &format!("done-{pid}"));
            f.wait("the completed pod's container exited", || {
                let procs = pod_cgroups_of(std::slice::from_ref(&uid));
                let empty = !procs.is_empty()
                    && procs.iter().all(|d| {
                        fs::read_to_string(format!("{d}/cgroup.procs"))
                            .is_ok_and(|p| p.trim().is_empty())
                    });
                empty.then_some(())
            });
            known_uid = Some(uid);
        } else if let Some(uid) = &known_uid {
            known_kept &= !pod_cgroups_of(std::slice::from_ref(uid)).is_empty();
        }
        f.agent.as_mut().unwrap().kill9();
    }
    let busy_kept = pod_level_dirs(&busy_rel).iter().all(|d| d.is_dir());
    let neighbour_kept = pod_level_dirs(&other).iter().all(|d| d.is_dir());
    println!(
        "DRILL orphaned_pod_cgroups rounds={rounds} secs={} orphans_made={made} removed={removed} busy_kept={busy_kept} known_kept={known_kept} neighbour_kept={neighbour_kept}",
        started.elapsed().as_secs()
    );
    drop(sleeper);
    for rel in [busy_rel.as_str(), other.as_str()] {
        for d in pod_level_dirs(rel) {
            let _ = fs::remove_dir(d.join("ctr"));
            let _ = fs::remove_dir(d);
        }
    }
    remove_cgroup_root(&format!("/hostlet_test_{pid}_neighbour"));
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &driver));
    assert!(busy_kept, "a pod cgroup with a live process was removed");
    assert!(
        neighbour_kept,
        "a pod cgroup outside the agent's root was removed"
    );
    assert!(known_kept, "the empty cgroup of a known pod was removed");
}
