//! Pod cgroups as the kubelet lays them out: QoS class, the pod cgroup `pod<UID>` under
//! `kubepods[/burstable|/besteffort]` with the pod-level limits of `ResourceConfigForPod`
//! (pkg/kubelet/cm/helpers_linux.go), the container cgroups inside it, oom_score_adj by QoS
//! (pkg/kubelet/qos/policy.go), and the node-level cgroups above the pods: `kubepods` with
//! the node's allocatable resources and the QoS levels (node_container_manager_linux.go,
//! qos_container_manager_linux.go).
//!
//! - [`qos`]: QoS class, requests/limits, oom_score_adj (pure).
//! - [`limits`]: the kubelet's formulas, pod limits and cgroup paths (pure).
//! - [`hugepages`]: `hugepages-<size>` resources and the host's hugetlb support.
//! - [`hierarchy`]: the host's layout (v1, v2, systemd) and its driver.
//! - [`cgroupfs`]: the pod cgroup on disk, and the cgroupfs driver's writes.
//! - [`node`]: node allocatable and the `kubepods`/QoS level cgroups.
//! - [`systemd`]: the same as slices with `--cgroup-driver systemd`.
//! - [`root`]: `--cgroup-root`, the cgroup all of them live under.
//! - [`orphans`]: removes the pod cgroups of pods the agent no longer knows.
//! - [`resize`]: new limits for a running pod's cgroup and its containers' (in-place resize).
//!
//! The pod and node-level cgroups are written here, not through youki's libcgroups
//! managers: the agent binary links no libcgroups at all (`nm -C target/debug/hostlet |
//! grep -c " libcgroups::"` = 0; only `hostlet-monitor` does, 627 symbols), and its
//! managers fit containers, not pods: the v1/v2 managers create a cgroup only when adding
//! a task (`add_task(pid)`; a pod cgroup holds no process of its own), and the systemd
//! manager runs a container's scope, not a slice with unit properties. libcgroups does
//! set each container's own cgroup, inside the pod's, from the OCI spec in the monitor.
//!
//! Files import one way: orphans → node → cgroupfs → systemd → limits → root → hugepages →
//! hierarchy → qos → this file (the error and the write helper); tests/layering.rs checks it.

use std::path::{Path, PathBuf};

pub mod cgroupfs;
pub mod hierarchy;
pub mod hugepages;
pub mod limits;
pub mod node;
pub mod orphans;
pub mod pod_level;
pub mod qos;
pub mod resize;
pub mod root;
pub mod systemd;

pub use cgroupfs::{create, create_with, remove};
pub use hierarchy::{Driver, Hierarchy};
pub use hugepages::{HostHugepages, HugepageLimit};
pub use limits::{
    cpu_quota, cpu_shares, pod_limits, shares_to_weight, PodCgroup, PodLimits, CFS_PERIOD,
};
pub use node::{Allocatable, Capacity, NodeCgroups, Reserved};
pub use qos::{oom_score_adj, qos_class, Compute, QosClass};
pub use root::CgroupRoot;

/// The root of the hierarchy every pod cgroup lives under.
pub const KUBEPODS: &str = "kubepods";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cgroup hierarchy found under {0}")]
    NoHierarchy(PathBuf),
    #[error("the systemd cgroup driver needs systemd as init, but systemd is not running (no /run/systemd/system); use --cgroup-driver cgroupfs")]
    NoSystemd,
    #[error("the systemd cgroup driver needs the unified cgroup v2 hierarchy at {0}")]
    SystemdNeedsV2(PathBuf),
    #[error("systemd unit {unit}: {reason}")]
    Systemd { unit: String, reason: CommandError },
    #[error("--cgroup-root {input:?}: {reason}")]
    Root { input: String, reason: String },
    /// A pod asks for huge pages the host cannot limit or does not have.
    #[error("resources.limits[{resource}]: {reason}")]
    Hugepages { resource: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(io(&path))
}

/// A `busctl` or `systemctl` call of the systemd driver that failed. Defined here, beside
/// [`CgroupError`], so that the driver's file imports this one and not the reverse.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It ran and refused: its stderr, which callers match against systemd's messages.
    #[error("{0}")]
    Refused(String),
    #[error("{command}: {error}")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
}

#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod tests;
