//! The kubelet's cgroup formulas (pkg/kubelet/cm/helpers_linux.go), the pod cgroup's limits
//! (`ResourceConfigForPod`) and where the pod cgroup is.

use k8s_openapi::api::core::v1::Pod;

use super::hierarchy::Hierarchy;
use super::hugepages::{self, HugepageLimit};
use super::pod_level::PodLevel;
use super::qos::{containers, init_containers, qos_class, Compute, QosClass};
use super::root::CgroupRoot;

pub const CFS_PERIOD: u64 = 100_000;
pub(crate) const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const MIN_QUOTA: i64 = 1_000;

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

/// The pod cgroup's limits (`ResourceConfigForPod`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLimits {
    pub cpu_shares: u64,
    /// CFS quota (µs per [`CFS_PERIOD`]); only when every container limits cpu.
    pub cpu_quota: Option<i64>,
    /// Only when every container limits memory.
    pub memory: Option<i64>,
    /// `--pod-max-pids`, when positive.
    pub pids: Option<i64>,
    /// Per page size: the most any phase of the pod needs (`PodRequests`: the app
    /// containers together, or the largest init container).
    pub hugepages: Vec<HugepageLimit>,
}

pub fn pod_limits(pod: &Pod, pod_max_pids: i64) -> PodLimits {
    let all: Vec<Compute> = containers(pod).iter().map(Compute::of).collect();
    let pids = (pod_max_pids > 0).then_some(pod_max_pids);
    let hugepages = pod_hugepages(pod);
    let qos = qos_class(pod);
    if qos == QosClass::BestEffort {
        return PodLimits {
            cpu_shares: MIN_SHARES,
            pids,
            hugepages,
            ..Default::default()
        };
    }
    let cpu_limited = all.iter().all(|c| c.cpu_limit.is_some());
    let memory_limited = all.iter().all(|c| c.memory_limit.is_some());
    let cpu_requests: i64 = all.iter().filter_map(|c| c.cpu_request).sum();
    let cpu_limits: i64 = all.iter().filter_map(|c| c.cpu_limit).sum();
    let memory_limits: i64 = all.iter().filter_map(|c| c.memory_limit).sum();
    let mut limits = PodLimits {
        cpu_shares: cpu_shares(cpu_requests),
        cpu_quota: cpu_limited.then(|| cpu_quota(cpu_limits)),
        memory: memory_limited.then_some(memory_limits),
        pids,
        hugepages,
    };
    // Pod-level values win, resource by resource (`PodRequests`/`PodLimits` with them):
    // the pod's own limit bounds containers that set none.
    if let Some(level) = PodLevel::of(pod) {
        if let Some(r) = level.cpu_request {
            limits.cpu_shares = cpu_shares(r);
        }
        if let Some(l) = level.cpu_limit {
            limits.cpu_quota = Some(cpu_quota(l));
        }
        if let Some(l) = level.memory_limit {
            limits.memory = Some(l);
        }
        for h in level.hugepages {
            match limits
                .hugepages
                .iter_mut()
                .find(|x| x.page_size == h.page_size)
            {
                Some(x) => *x = h,
                None => limits.hugepages.push(h),
            }
        }
        limits.hugepages.sort_by_key(|l| l.page_size);
    }
    limits
}

/// The pod's cpu request in millicores as `PodRequests` counts it: the app containers'
/// sum, or the largest init container's when that is more.
pub fn pod_cpu_request(pod: &Pod) -> i64 {
    let apps: i64 = containers(pod)
        .iter()
        .filter_map(|c| Compute::of(c).cpu_request)
        .sum();
    let init = init_containers(pod)
        .iter()
        .filter_map(|c| Compute::of(c).cpu_request)
        .max()
        .unwrap_or(0);
    // The pod's own request, when it sets one, is what it requests.
    PodLevel::of(pod)
        .and_then(|l| l.cpu_request)
        .unwrap_or(apps.max(init))
}

fn pod_hugepages(pod: &Pod) -> Vec<HugepageLimit> {
    let mut total: Vec<HugepageLimit> = Vec::new();
    let mut add =
        |l: HugepageLimit, sum: bool| match total.iter_mut().find(|t| t.page_size == l.page_size) {
            Some(t) if sum => t.limit += l.limit,
            Some(t) => t.limit = t.limit.max(l.limit),
            None => total.push(l),
        };
    for c in containers(pod) {
        for l in hugepages::container_limits(c) {
            add(l, true);
        }
    }
    for c in init_containers(pod) {
        for l in hugepages::container_limits(c) {
            add(l, false);
        }
    }
    total.sort_by_key(|l| l.page_size);
    total
}

/// Where a pod's cgroup is, relative to the root of every hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    pub qos: QosClass,
    pub uid: String,
    /// `<root>/kubepods[/burstable|/besteffort]/pod<UID>`.
    pub path: String,
    /// `--cgroup-root`.
    pub root: CgroupRoot,
}

impl PodCgroup {
    /// The pod's cgroup under the default root (`/`).
    pub fn of(pod: &Pod, uid: &str) -> Self {
        Self::under(&CgroupRoot::default(), pod, uid)
    }

    /// The pod's cgroup under `root` (`--cgroup-root`).
    pub fn under(root: &CgroupRoot, pod: &Pod, uid: &str) -> Self {
        let qos = qos_class(pod);
        let mut path = root.kubepods();
        if !qos.dir().is_empty() {
            path = format!("{path}/{}", qos.dir());
        }
        Self {
            qos,
            uid: uid.to_string(),
            path: format!("{path}/pod{uid}"),
            root: root.clone(),
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
                format!("{}:{}:{id}", pod_slice(self), SCOPE_PREFIX)
            }
            _ => self.container(id),
        }
    }

    /// Ancestors to create first, outermost first (the root's own levels, `kubepods`,
    /// then the QoS level).
    pub(crate) fn ancestors(&self) -> Vec<String> {
        let mut out = self.root.levels();
        let kubepods = self.root.kubepods();
        out.push(kubepods.clone());
        if !self.qos.dir().is_empty() {
            out.push(format!("{kubepods}/{}", self.qos.dir()));
        }
        out
    }
}

/// Limits of one cgroup, whatever its level; `None` leaves the file as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    /// (page size label, bytes).
    pub hugetlb: Vec<(String, i64)>,
}

/// The limits of `kubepods`, `kubepods/burstable` and `kubepods/besteffort`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Levels {
    pub(crate) kubepods: Settings,
    pub(crate) burstable: Settings,
    pub(crate) besteffort: Settings,
}

/// The scope prefix of container units (`hostlet-<ID>.scope`).
pub const SCOPE_PREFIX: &str = "hostlet";

/// The pod's slice unit, e.g. `kubepods-burstable-pod0a0b_c1.slice`.
pub fn pod_slice(cg: &PodCgroup) -> String {
    let mut name = cg.root.kubepods_unit();
    if !cg.qos.dir().is_empty() {
        name = format!("{name}-{}", cg.qos.dir());
    }
    // '-' is the slice hierarchy separator: the kubelet escapes it in the uid.
    format!("{name}-pod{}.slice", cg.uid.replace('-', "_"))
}
