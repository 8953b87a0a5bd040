//! The last resort of a container's teardown: kill every process left in its cgroup.
//! libcontainer's own kill goes through its cgroup manager (with systemd, a D-Bus
//! connection and a freeze), and when that fails after the monitor was killed nothing
//! else would ever stop the container: it would run unsupervised beside its replacement.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// v1 controllers whose hierarchy holds a container's processes; one is enough to find
/// them, and every one is looked at in case a controller is not mounted.
const V1_CONTROLLERS: [&str; 4] = ["pids", "memory", "cpu,cpuacct", "freezer"];

/// Kills every process in the container cgroup `cgroups_path` (the spec's form: a path,
/// or `slice:prefix:name` with the systemd driver) and waits up to `limit` for the
/// cgroup to empty. Returns how many processes were still there at the end.
pub(super) fn kill_all(cgroups_path: &str, limit: Duration) -> usize {
    let rel = crate::cgroups::systemd::fs_path(cgroups_path);
    kill_all_under(
        Path::new("/sys/fs/cgroup"),
        rel.trim_start_matches('/'),
        limit,
    )
}

fn kill_all_under(root: &Path, rel: &str, limit: Duration) -> usize {
    if rel.is_empty() {
        return 0;
    }
    let dirs = cgroup_dirs(root, rel);
    // A cgroup frozen by a kill that failed half-way would hold its processes forever.
    thaw(root, rel);
    let deadline = Instant::now() + limit;
    loop {
        let pids = members(&dirs);
        if pids.is_empty() {
            return 0;
        }
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if Instant::now() >= deadline {
            return pids.len();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cgroup_dirs(root: &Path, rel: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.join(rel)];
    dirs.extend(V1_CONTROLLERS.iter().map(|c| root.join(c).join(rel)));
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

fn thaw(root: &Path, rel: &str) {
    let _ = std::fs::write(root.join(rel).join("cgroup.freeze"), "0");
    let _ = std::fs::write(
        root.join("freezer").join(rel).join("freezer.state"),
        "THAWED",
    );
}

fn members(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .filter(|pid| *pid > 0)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_of_every_hierarchy_once() {
        let root = tempfile::tempdir().unwrap();
        for (dir, procs) in [("c", "7\n9\n"), ("pids/c", "9\n11\n"), ("memory/c", "")] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join("cgroup.procs"), procs).unwrap();
        }
        let dirs = cgroup_dirs(root.path(), "c");
        assert_eq!(dirs.len(), 3);
        assert_eq!(members(&dirs), [7, 9, 11]);
    }

    #[test]
    fn an_absent_or_empty_cgroup_has_nothing_to_kill() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(kill_all_under(root.path(), "gone", Duration::ZERO), 0);
        assert_eq!(kill_all_under(root.path(), "", Duration::ZERO), 0);
    }
}
