//! Memory-cgroup OOM kills of a container's cgroup and of its pod's, read by the monitor
//! to tell `OOMKilled` from any other exit.

use std::path::Path;

/// How many times the kernel OOM-killed in this cgroup (v1 `memory.oom_control`, v2
/// `memory.events`); 0 when unknown.
pub fn oom_kills(cgroups_path: &str) -> u64 {
    oom_kills_in(&crate::cgroups::systemd::fs_path(cgroups_path))
}

/// The cgroup (file system path) a container's cgroup sits in: its pod's.
pub(super) fn pod_cgroup(cgroups_path: &str) -> String {
    let path = crate::cgroups::systemd::fs_path(cgroups_path);
    Path::new(&path)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn oom_kills_in(path: &str) -> u64 {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return 0;
    }
    let candidates = [
        (
            format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
            "oom_kill ",
        ),
        (format!("/sys/fs/cgroup/{rel}/memory.events"), "oom_kill "),
    ];
    for (path, key) in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    0
}
