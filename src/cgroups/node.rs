//! The cgroups above the pods, as the kubelet keeps them: `kubepods` limited to the node's
//! allocatable resources (node_container_manager_linux.go: capacity minus
//! `--kube-reserved` and `--system-reserved`, memory also minus the pre-allocated huge
//! pages; cpu as shares), `kubepods/burstable` with the shares of its pods' summed cpu
//! requests, `kubepods/besteffort` with 2 shares, and both QoS levels with unbounded hugetlb
//! limits (qos_container_manager_linux.go). Rewritten when pods come and go and
//! periodically, as the kubelet's UpdateQOSCgroups.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::cgroupfs;
use super::hierarchy::Hierarchy;
use super::hugepages::{self, size_label, HostHugepages};
use super::limits::{cpu_shares, pod_cpu_request, Levels, Settings, MIN_SHARES};
use super::qos::{qos_class, QosClass};
use super::root::CgroupRoot;
use super::{systemd, CgroupError};
use crate::manifest::quantity::{hugepage_size, parse_cpu_millis, parse_memory_bytes};

/// What the node has (the kubelet's internal capacity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    pub cpu_milli: i64,
    pub memory: i64,
    /// Most processes the kernel allows (`min(pid_max, threads-max)`).
    pub pids: Option<i64>,
    /// Pre-allocated huge pages, bytes per page size.
    pub hugepages: BTreeMap<u64, i64>,
}

impl Capacity {
    /// `cpu_milli`/`memory` as the node detected them; pids and huge pages from the kernel.
    pub fn detect(cpu_milli: i64, memory: i64) -> Self {
        let read =
            |p: &str| -> Option<i64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        let pids = match (
            read("/proc/sys/kernel/pid_max"),
            read("/proc/sys/kernel/threads-max"),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Self {
            cpu_milli,
            memory,
            pids,
            hugepages: hugepages::capacity(Path::new(hugepages::SYS_HUGEPAGES)),
        }
    }
}

/// `--kube-reserved` / `--system-reserved`: `cpu=100m,memory=256Mi,pid=1000,hugepages-2Mi=4Mi`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_milli: i64,
    pub memory: i64,
    pub pids: i64,
    pub hugepages: BTreeMap<u64, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reservation {input:?}: {reason}")]
pub struct ReservedError {
    pub input: String,
    pub reason: String,
}

impl std::str::FromStr for Reserved {
    type Err = ReservedError;
    fn from_str(s: &str) -> Result<Self, ReservedError> {
        let err = |reason: String| ReservedError {
            input: s.to_string(),
            reason,
        };
        let mut r = Self::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| err(format!("{pair:?} is not name=quantity")))?;
            let q = Quantity(v.to_string());
            let bad = |e: crate::manifest::quantity::QuantityError| err(format!("{k}: {e}"));
            match k {
                "cpu" => r.cpu_milli = parse_cpu_millis(&q).map_err(bad)?,
                "memory" => r.memory = parse_memory_bytes(&q).map_err(bad)?,
                "pid" => r.pids = parse_memory_bytes(&q).map_err(bad)?,
                _ => match hugepage_size(k) {
                    Some(Ok(size)) => {
                        r.hugepages
                            .insert(size, parse_memory_bytes(&q).map_err(bad)?);
                    }
                    Some(Err(e)) => return Err(bad(e)),
                    None => {
                        return Err(err(format!(
                            "unknown resource {k:?}: expected cpu, memory, pid or hugepages-<size>"
                        )))
                    }
                },
            }
        }
        Ok(r)
    }
}

/// `getNodeAllocatableAbsolute`: capacity minus the reservations, never negative; memory
/// also minus the huge pages, which the kernel has set aside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_milli: i64,
    pub memory: i64,
    pub pids: Option<i64>,
    pub hugepages: BTreeMap<u64, i64>,
}

impl Allocatable {
    pub fn of(capacity: &Capacity, reserved: &[&Reserved]) -> Self {
        let sub = |cap: i64, f: &dyn Fn(&Reserved) -> i64| {
            (cap - reserved.iter().map(|r| f(r)).sum::<i64>()).max(0)
        };
        let hugepages: BTreeMap<u64, i64> = capacity
            .hugepages
            .iter()
            .map(|(size, cap)| {
                let v = sub(*cap, &|r| r.hugepages.get(size).copied().unwrap_or(0));
                (*size, v)
            })
            .collect();
        let memory = sub(capacity.memory, &|r| r.memory);
        let memory = (memory - hugepages.values().sum::<i64>()).max(0);
        Self {
            cpu_milli: sub(capacity.cpu_milli, &|r| r.cpu_milli),
            memory,
            pids: capacity.pids.map(|p| sub(p, &|r| r.pids)),
            hugepages,
        }
    }

    /// `kubepods`' limits (`getCgroupConfig`): cpu as shares, no quota; every host page
    /// size gets its allocatable amount (0 when none is pre-allocated).
    pub(crate) fn settings(&self, host: &HostHugepages) -> Settings {
        let hugetlb = if host.controller {
            host.sizes
                .iter()
                .map(|s| (size_label(*s), self.hugepages.get(s).copied().unwrap_or(0)))
                .collect()
        } else {
            Vec::new()
        };
        Settings {
            cpu_shares: Some(cpu_shares(self.cpu_milli)),
            memory: Some(self.memory),
            pids: self.pids,
            hugetlb,
            ..Default::default()
        }
    }
}

/// The levels' limits for the given burstable pods' cpu requests (millicores).
pub(crate) fn levels(
    allocatable: &Allocatable,
    host: &HostHugepages,
    burstable_requests: impl IntoIterator<Item = i64>,
) -> Levels {
    let sum: i64 = burstable_requests.into_iter().sum();
    let qos = |shares: u64| Settings {
        cpu_shares: Some(shares),
        hugetlb: host.all(hugepages::UNBOUNDED),
        ..Default::default()
    };
    Levels {
        kubepods: allocatable.settings(host),
        burstable: qos(cpu_shares(sum)),
        besteffort: qos(MIN_SHARES),
    }
}

/// Writes the levels: directories with cgroupfs, slices (plus hugetlb files) with systemd.
pub(crate) fn write_levels(
    h: &Hierarchy,
    root: &CgroupRoot,
    l: &Levels,
) -> Result<(), CgroupError> {
    if let Hierarchy::Systemd { root: mount } = h {
        return systemd::update_levels(mount, root, l);
    }
    // The root's own levels first: a v1 cpuset cgroup takes its cpus from its parent.
    for level in root.levels() {
        cgroupfs::ensure(h, &level)?;
    }
    let kubepods = root.kubepods();
    cgroupfs::ensure(h, &kubepods)?;
    cgroupfs::apply(h, &kubepods, &l.kubepods)?;
    for (dir, s) in [("burstable", &l.burstable), ("besteffort", &l.besteffort)] {
        let rel = format!("{kubepods}/{dir}");
        cgroupfs::ensure(h, &rel)?;
        cgroupfs::apply(h, &rel, s)?;
    }
    Ok(())
}

/// The node's QoS cgroups and the burstable pods they account for; shared by the workers.
#[derive(Debug)]
pub struct NodeCgroups {
    hierarchy: Option<Hierarchy>,
    allocatable: Allocatable,
    host: HostHugepages,
    /// `--cgroup-root`.
    root: CgroupRoot,
    /// Burstable pods' cpu requests by uid.
    burstable: Mutex<BTreeMap<String, i64>>,
}

impl NodeCgroups {
    pub fn new(hierarchy: Option<Hierarchy>, allocatable: Allocatable) -> Self {
        let host = hierarchy
            .as_ref()
            .map(HostHugepages::detect)
            .unwrap_or_default();
        Self::with_host(hierarchy, allocatable, host)
    }

    pub fn with_host(
        hierarchy: Option<Hierarchy>,
        allocatable: Allocatable,
        host: HostHugepages,
    ) -> Self {
        Self {
            hierarchy,
            allocatable,
            host,
            root: CgroupRoot::default(),
            burstable: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same levels under `root` (`--cgroup-root`) instead of the hierarchy's root.
    pub fn under(mut self, root: CgroupRoot) -> Self {
        self.root = root;
        self
    }

    pub fn root(&self) -> &CgroupRoot {
        &self.root
    }

    pub fn hierarchy(&self) -> Option<&Hierarchy> {
        self.hierarchy.as_ref()
    }

    pub fn allocatable(&self) -> &Allocatable {
        &self.allocatable
    }

    /// Blocking: a pod's cgroup is about to be made; a burstable pod raises the level's
    /// shares first, as the kubelet updates the QoS cgroups before the pod cgroup.
    pub fn pod_started(&self, uid: &str, pod: &Pod) -> Result<(), CgroupError> {
        let mut g = self.burstable.lock().unwrap_or_else(|e| e.into_inner());
        if qos_class(pod) == QosClass::Burstable {
            g.insert(uid.to_string(), pod_cpu_request(pod));
        }
        // Written under the lock, so a later pod set is never overwritten by an earlier one.
        self.write(&g)
    }

    /// Blocking: the pod is gone; its share of the burstable level goes with it.
    pub fn pod_stopped(&self, uid: &str) -> Result<(), CgroupError> {
        let mut g = self.burstable.lock().unwrap_or_else(|e| e.into_inner());
        if g.remove(uid).is_some() {
            self.write(&g)?;
        }
        Ok(())
    }

    fn write(&self, burstable: &BTreeMap<String, i64>) -> Result<(), CgroupError> {
        let Some(h) = &self.hierarchy else {
            return Ok(());
        };
        let l = levels(&self.allocatable, &self.host, burstable.values().copied());
        write_levels(h, &self.root, &l)
    }

    /// Blocking: writes every level's limits again (periodically, as the kubelet's
    /// UpdateQOSCgroups); nothing without a cgroup hierarchy.
    pub fn update(&self) -> Result<(), CgroupError> {
        let g = self.burstable.lock().unwrap_or_else(|e| e.into_inner());
        self.write(&g)
    }
}

/// Writes the levels now (the kubelet creates `kubepods` when it starts) and again every
/// `period`.
pub async fn keep_updated(nc: std::sync::Arc<NodeCgroups>, period: std::time::Duration) {
    loop {
        let n = nc.clone();
        match tokio::task::spawn_blocking(move || n.update()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "updating QoS cgroups"),
            Ok(Ok(())) => tracing::debug!("QoS cgroups updated"),
            Err(_) => {}
        }
        tokio::time::sleep(period).await;
    }
}
