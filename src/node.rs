//! Facts about this node that pod specs depend on (downward API, oom_score_adj, tmpfs
//! sizes), and the agent settings that shape every container. Detected once by the agent
//! or `hostlet render`; the bundle only reads them.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node name (`spec.nodeName`).
    pub name: String,
    /// `status.hostIP` (and `status.podIP` of hostNetwork pods).
    pub host_ip: String,
    /// Allocatable cpu in millicores: the default of `limits.cpu` in `resourceFieldRef`.
    pub cpu_milli: i64,
    /// Memory capacity in bytes (MemTotal): oom_score_adj and default limits.
    pub memory_bytes: i64,
    /// `--seccomp-default`: RuntimeDefault when a container names no profile.
    pub seccomp_default: bool,
    /// Where `Localhost` seccomp profiles are (`<root-dir>/seccomp`).
    pub seccomp_dir: PathBuf,
    /// `--pod-max-pids`; not positive means no limit.
    pub pod_max_pids: i64,
    /// The lowest oom_score_adj hostlet can give: -1000 with CAP_SYS_RESOURCE, else its
    /// own (lowering it needs the capability), as containerd restricts it in that case.
    pub min_oom_score_adj: i32,
    /// The kernel enforces AppArmor: containers get `hostlet-default` unless they ask
    /// otherwise; without it, asking for a profile is refused.
    pub apparmor: bool,
}

impl NodeInfo {
    /// Reads the host's cpus, memory and primary address.
    pub fn detect(name: String, root_dir: &std::path::Path) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        Self {
            name,
            host_ip: host_ip().unwrap_or_else(|| "127.0.0.1".into()),
            cpu_milli: cpus * 1000,
            memory_bytes: mem_total().unwrap_or(0),
            seccomp_default: true,
            seccomp_dir: root_dir.join("seccomp"),
            pod_max_pids: -1,
            min_oom_score_adj: min_oom_score_adj(),
            apparmor: std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|v| v.trim() == "Y"),
        }
    }
}

fn min_oom_score_adj() -> i32 {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if eff & (1 << CAP_SYS_RESOURCE) != 0 {
        return -1000;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn mem_total() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The address of the interface of the default route: a UDP "connect" picks the route
/// without sending anything (what the kubelet's node IP detection amounts to).
fn host_ip() -> Option<String> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}
