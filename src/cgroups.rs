//! Pod cgroups as the kubelet lays them out with the cgroupfs driver: QoS class, the pod
//! cgroup `pod<UID>` under `kubepods[/burstable|/besteffort]` with the pod-level limits of
//! `ResourceConfigForPod` (pkg/kubelet/cm/helpers_linux.go), the container cgroups inside
//! it, and oom_score_adj by QoS (pkg/kubelet/qos/policy.go).
//!
//! The pure part (class, paths, limits, scores) is used by the bundle and `hostlet render`;
//! [`create`]/[`remove`] write the cgroup tree, on v1 (one hierarchy per controller) or v2,
//! or have systemd make it as slices ([`systemd`], `--cgroup-driver systemd`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::manifest::quantity::{parse_cpu_millis, parse_memory_bytes};

pub mod systemd;
pub use systemd::Driver;

pub const CFS_PERIOD: u64 = 100_000;
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const MIN_QUOTA: i64 = 1_000;
const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
const BESTEFFORT_OOM_SCORE_ADJ: i32 = 1000;
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
    #[error("systemd unit {unit}: {message}")]
    Systemd { unit: String, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The QoS level's cgroup under `kubepods` ("" for Guaranteed).
    fn dir(self) -> &'static str {
        match self {
            Self::Guaranteed => "",
            Self::Burstable => "burstable",
            Self::BestEffort => "besteffort",
        }
    }
}

/// A container's cpu and memory requests and limits, in millicores and bytes, with the API
/// server's defaulting applied (a missing request is the limit). Unparsable quantities count
/// as absent: validation rejects them before a pod gets here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compute {
    pub cpu_request: Option<i64>,
    pub cpu_limit: Option<i64>,
    pub memory_request: Option<i64>,
    pub memory_limit: Option<i64>,
}

fn quantity<'a>(map: &'a Option<BTreeMap<String, Quantity>>, k: &str) -> Option<&'a Quantity> {
    map.as_ref().and_then(|m| m.get(k))
}

impl Compute {
    pub fn of(c: &Container) -> Self {
        let r = c.resources.clone().unwrap_or_default();
        let cpu =
            |q: Option<&Quantity>| q.and_then(|q| parse_cpu_millis(q).ok()).filter(|v| *v > 0);
        let mem = |q: Option<&Quantity>| {
            q.and_then(|q| parse_memory_bytes(q).ok())
                .filter(|v| *v > 0)
        };
        let cpu_limit = cpu(quantity(&r.limits, "cpu"));
        let memory_limit = mem(quantity(&r.limits, "memory"));
        Self {
            cpu_request: cpu(quantity(&r.requests, "cpu")).or(cpu_limit),
            cpu_limit,
            memory_request: mem(quantity(&r.requests, "memory")).or(memory_limit),
            memory_limit,
        }
    }
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice())
}

/// `GetPodQOS`: Guaranteed when every container limits cpu and memory and the summed
/// requests equal the summed limits; BestEffort with no request or limit at all.
pub fn qos_class(pod: &Pod) -> QosClass {
    let all: Vec<Compute> = containers(pod).iter().map(Compute::of).collect();
    let sum = |f: fn(&Compute) -> Option<i64>| {
        let v: Vec<i64> = all.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<i64>())
    };
    let (cr, cl) = (sum(|c| c.cpu_request), sum(|c| c.cpu_limit));
    let (mr, ml) = (sum(|c| c.memory_request), sum(|c| c.memory_limit));
    if cr.is_none() && cl.is_none() && mr.is_none() && ml.is_none() {
        return QosClass::BestEffort;
    }
    let all_limited = all
        .iter()
        .all(|c| c.cpu_limit.is_some() && c.memory_limit.is_some());
    if all_limited && cr == cl && mr == ml {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// cpu.shares from millicores: milli × 1024 / 1000, clamped to [2, 262144].
pub fn cpu_shares(milli: i64) -> u64 {
    ((milli.max(0) as u64) * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// CFS quota for a limit in millicores: milli × period / 1000, at least 1000 µs.
pub fn cpu_quota(milli: i64) -> i64 {
    (milli * CFS_PERIOD as i64 / 1000).max(MIN_QUOTA)
}

/// cgroup v2 cpu.weight for v1 shares: the quadratic mapping of runc and youki's
/// libcgroups (`convert_shares_to_cgroup2`), so containers and pods agree.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= MIN_SHARES {
        return 1;
    }
    if shares >= MAX_SHARES {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

/// The node-critical static pods (kubeadm's control plane) get Guaranteed's score.
fn node_critical(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        == Some("system-node-critical")
}

/// `GetContainerOOMScoreAdjust`, for a node with `memory_capacity` bytes.
pub fn oom_score_adj(pod: &Pod, c: &Container, memory_capacity: i64) -> i32 {
    if node_critical(pod) {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match qos_class(pod) {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BESTEFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let request = Compute::of(c).memory_request.unwrap_or(0) as i128;
            let capacity = memory_capacity.max(1) as i128;
            let adj = (1000 - 1000 * request / capacity) as i32;
            if adj < 1000 + GUARANTEED_OOM_SCORE_ADJ {
                1000 + GUARANTEED_OOM_SCORE_ADJ
            } else if adj == BESTEFFORT_OOM_SCORE_ADJ {
                adj - 1
            } else {
                adj
            }
        }
    }
}

/// The pod cgroup's limits (`ResourceConfigForPod`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodLimits {
    pub cpu_shares: u64,
    /// CFS quota (µs per [`CFS_PERIOD`]); only when every container limits cpu.
    pub cpu_quota: Option<i64>,
    /// Only when every container limits memory.
    pub memory: Option<i64>,
    /// `--pod-max-pids`, when positive.
    pub pids: Option<i64>,
}

pub fn pod_limits(pod: &Pod, pod_max_pids: i64) -> PodLimits {
    let all: Vec<Compute> = containers(pod).iter().map(Compute::of).collect();
    let pids = (pod_max_pids > 0).then_some(pod_max_pids);
    let qos = qos_class(pod);
    if qos == QosClass::BestEffort {
        return PodLimits {
            cpu_shares: MIN_SHARES,
            pids,
            ..Default::default()
        };
    }
    let cpu_limited = all.iter().all(|c| c.cpu_limit.is_some());
    let memory_limited = all.iter().all(|c| c.memory_limit.is_some());
    let cpu_requests: i64 = all.iter().filter_map(|c| c.cpu_request).sum();
    let cpu_limits: i64 = all.iter().filter_map(|c| c.cpu_limit).sum();
    let memory_limits: i64 = all.iter().filter_map(|c| c.memory_limit).sum();
    PodLimits {
        cpu_shares: cpu_shares(cpu_requests),
        cpu_quota: cpu_limited.then(|| cpu_quota(cpu_limits)),
        memory: memory_limited.then_some(memory_limits),
        pids,
    }
}

/// Where a pod's cgroup is, relative to the root of every hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    pub qos: QosClass,
    pub uid: String,
    /// `/kubepods[/burstable|/besteffort]/pod<UID>`.
    pub path: String,
}

impl PodCgroup {
    pub fn of(pod: &Pod, uid: &str) -> Self {
        let qos = qos_class(pod);
        let mut path = format!("/{KUBEPODS}");
        if !qos.dir().is_empty() {
            path = format!("{path}/{}", qos.dir());
        }
        Self {
            qos,
            uid: uid.to_string(),
            path: format!("{path}/pod{uid}"),
        }
    }

    /// The spec's `cgroupsPath` of a container of this pod (cgroupfs driver).
    pub fn container(&self, id: &str) -> String {
        format!("{}/{id}", self.path)
    }

    /// The spec's `cgroupsPath` of a container of this pod with the host's driver: with
    /// systemd, `<pod slice>:hostlet:<id>` (libcontainer's form for a scope in a slice).
    pub fn container_with(&self, h: Option<&Hierarchy>, id: &str) -> String {
        match h {
            Some(Hierarchy::Systemd { .. }) => {
                format!(
                    "{}:{}:{id}",
                    systemd::pod_slice(self),
                    systemd::SCOPE_PREFIX
                )
            }
            _ => self.container(id),
        }
    }

    /// Ancestors to create first, outermost first (`/kubepods`, then the QoS level).
    fn ancestors(&self) -> Vec<String> {
        let mut out = vec![format!("/{KUBEPODS}")];
        if !self.qos.dir().is_empty() {
            out.push(format!("/{KUBEPODS}/{}", self.qos.dir()));
        }
        out
    }
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One mount per controller under the root (`<root>/cpu`, `<root>/memory` …); this
    /// includes the "hybrid" layout whose cgroup2 mount has no controllers.
    V1 {
        root: PathBuf,
    },
    V2 {
        root: PathBuf,
    },
    /// v2 with systemd managing the tree: pod slices and container scopes.
    Systemd {
        root: PathBuf,
    },
}

/// The v1 controllers hostlet creates pod cgroups in: those libcontainer puts containers in.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "pids",
    "devices",
    "freezer",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
];

impl Hierarchy {
    /// v2 when the root is a cgroup2 mount (it has `cgroup.controllers`), else v1.
    pub fn detect(root: &Path) -> Result<Self, CgroupError> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(Self::V2 { root: root.into() });
        }
        if root.join("memory").is_dir() || root.join("cpu").is_dir() {
            return Ok(Self::V1 { root: root.into() });
        }
        Err(CgroupError::NoHierarchy(root.into()))
    }

    /// The hierarchy `driver` works with: [`Self::detect`] for cgroupfs; for systemd, a
    /// running systemd and v2.
    pub fn for_driver(root: &Path, driver: Driver) -> Result<Self, CgroupError> {
        match driver {
            Driver::Cgroupfs => Self::detect(root),
            Driver::Systemd if !systemd::booted() => Err(CgroupError::NoSystemd),
            Driver::Systemd => match Self::detect(root) {
                Ok(Self::V2 { root }) => Ok(Self::Systemd { root }),
                _ => Err(CgroupError::SystemdNeedsV2(root.into())),
            },
        }
    }

    pub fn driver(&self) -> Driver {
        match self {
            Self::Systemd { .. } => Driver::Systemd,
            _ => Driver::Cgroupfs,
        }
    }

    /// Every directory that holds cgroup `rel` (one per v1 controller, or one on v2).
    fn dirs(&self, rel: &str) -> Vec<(&'static str, PathBuf)> {
        let rel = rel.trim_start_matches('/');
        match self {
            Self::V2 { root } | Self::Systemd { root } => vec![("", root.join(rel))],
            Self::V1 { root } => {
                let mut seen: Vec<PathBuf> = Vec::new();
                let mut out = Vec::new();
                for ctl in V1_CONTROLLERS {
                    let base = root.join(ctl);
                    if !base.is_dir() {
                        continue;
                    }
                    // "cpu" and "cpuacct" are often one mount reached through symlinks.
                    let real = base.canonicalize().unwrap_or(base.clone());
                    if seen.contains(&real) {
                        continue;
                    }
                    seen.push(real);
                    out.push((*ctl, base.join(rel)));
                }
                out
            }
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(io(&path))
}

/// A new v1 cpuset cgroup starts with no cpus or memory nodes; a task cannot join it
/// until they are copied from the parent.
fn init_cpuset(dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let path = dir.join(file);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current.trim().is_empty() {
            if let Some(parent) = dir.parent() {
                let p = parent.join(file);
                let v = std::fs::read_to_string(&p).map_err(io(&p))?;
                write(dir, file, v.trim())?;
            }
        }
    }
    Ok(())
}

/// Creates the pod cgroup (and `kubepods`, the QoS level) with the pod-level limits.
pub fn create(h: &Hierarchy, cg: &PodCgroup, limits: &PodLimits) -> Result<(), CgroupError> {
    if let Hierarchy::Systemd { .. } = h {
        return systemd::create(cg, limits);
    }
    let mut levels = cg.ancestors();
    levels.push(cg.path.clone());
    for level in &levels {
        for (ctl, dir) in h.dirs(level) {
            let fresh = !dir.exists();
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            if ctl == "cpuset" {
                init_cpuset(&dir)?;
            }
            if let Hierarchy::V2 { .. } = h {
                // Children get the controllers only when each parent delegates them.
                let parent = dir.parent().unwrap_or(&dir).to_path_buf();
                enable_v2_controllers(&parent)?;
            }
            // The kubelet's besteffort level: the least cpu weight there is.
            if fresh && *level == format!("/{KUBEPODS}/besteffort") {
                match (h, ctl) {
                    (Hierarchy::V1 { .. }, "cpu") => write(&dir, "cpu.shares", "2")?,
                    (Hierarchy::V2 { .. }, _) => write(&dir, "cpu.weight", "1")?,
                    _ => {}
                }
            }
        }
    }
    for (ctl, dir) in h.dirs(&cg.path) {
        match (h, ctl) {
            (Hierarchy::V1 { .. }, "cpu") => {
                write(&dir, "cpu.shares", &limits.cpu_shares.to_string())?;
                if let Some(q) = limits.cpu_quota {
                    write(&dir, "cpu.cfs_period_us", &CFS_PERIOD.to_string())?;
                    write(&dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
            }
            (Hierarchy::V1 { .. }, "memory") => {
                if let Some(m) = limits.memory {
                    write(&dir, "memory.limit_in_bytes", &m.to_string())?;
                }
            }
            (Hierarchy::V1 { .. }, "pids") => {
                if let Some(p) = limits.pids {
                    write(&dir, "pids.max", &p.to_string())?;
                }
            }
            (Hierarchy::V2 { .. }, _) => {
                enable_v2_controllers(&dir)?;
                write(
                    &dir,
                    "cpu.weight",
                    &shares_to_weight(limits.cpu_shares).to_string(),
                )?;
                if let Some(q) = limits.cpu_quota {
                    write(&dir, "cpu.max", &format!("{q} {CFS_PERIOD}"))?;
                }
                if let Some(m) = limits.memory {
                    write(&dir, "memory.max", &m.to_string())?;
                }
                if let Some(p) = limits.pids {
                    write(&dir, "pids.max", &p.to_string())?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Delegates to children every controller this v2 cgroup has.
fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.controllers");
    let Ok(available) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    let wanted: Vec<String> = available
        .split_whitespace()
        .filter(|c| ["cpu", "cpuset", "memory", "pids", "io", "hugetlb"].contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write(dir, "cgroup.subtree_control", &wanted.join(" "))
}

/// Removes the pod cgroup and whatever container cgroups are left in it. The QoS levels
/// stay, as with the kubelet.
pub fn remove(h: &Hierarchy, cg: &PodCgroup) -> Result<(), CgroupError> {
    if let Hierarchy::Systemd { .. } = h {
        return systemd::remove(cg);
    }
    for (_, dir) in h.dirs(&cg.path) {
        if !dir.exists() {
            continue;
        }
        // Leftover container cgroups (a monitor that died before deleting its container).
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&dir)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
