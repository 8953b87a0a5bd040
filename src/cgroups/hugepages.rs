//! Huge pages: `resources.limits.hugepages-<size>` becomes hugetlb limits on the pod and
//! container cgroups (the kubelet's `HugePageLimits`, containerd's `hugepageLimits`), and
//! only on a host that has both the hugetlb controller and that page size.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Container;

use super::hierarchy::Hierarchy;
use super::{write, CgroupError};
use crate::manifest::quantity::{hugepage_size, parse_memory_bytes};

/// Where the kernel lists its page sizes (`hugepages-2048kB/nr_hugepages` …).
pub const SYS_HUGEPAGES: &str = "/sys/kernel/mm/hugepages";
/// The QoS levels' limit: unbounded in effect (qos_container_manager's setHugePagesUnbounded).
pub const UNBOUNDED: i64 = 1 << 62;

/// One page size's limit, with the resource it came from for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepageLimit {
    /// `hugepages-2Mi`, as written in the manifest.
    pub resource: String,
    pub page_size: u64,
    pub limit: i64,
}

impl HugepageLimit {
    /// The page size as cgroup files and the OCI spec name it (`2MB`).
    pub fn label(&self) -> String {
        size_label(self.page_size)
    }
}

/// runc's `HugePageSizes` naming (units.CustomSize "%g%s" with 1024 steps and B, KB, MB,
/// GB, TB, PB): 2 MiB → `2MB`, 1 GiB → `1GB`, 64 KiB → `64KB`.
pub fn size_label(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{size}{}", UNITS[i])
}

/// A container's hugepage limits (requests equal limits: validation makes sure), in
/// page-size order. Sizes or amounts that do not parse are left out: validation rejects them.
pub fn container_limits(c: &Container) -> Vec<HugepageLimit> {
    limits_of(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

/// The hugepage entries of a `limits` map (a container's or the pod's), in page-size order.
pub fn limits_of(
    limits: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> Vec<HugepageLimit> {
    let mut out: Vec<HugepageLimit> = limits
        .into_iter()
        .flatten()
        .filter_map(|(name, q)| {
            let page_size = hugepage_size(name)?.ok().filter(|s| *s > 0)?;
            let limit = parse_memory_bytes(q).ok()?;
            Some(HugepageLimit {
                resource: name.clone(),
                page_size,
                limit,
            })
        })
        .collect();
    out.sort_by_key(|l| l.page_size);
    out
}

/// The page sizes of a `/sys/kernel/mm/hugepages`-like directory, smallest first.
pub fn host_sizes(mm: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(mm)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let kb = name.strip_prefix("hugepages-")?.strip_suffix("kB")?;
            kb.parse::<u64>().ok().map(|kb| kb * 1024)
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// Pre-allocated huge pages per size, in bytes (`nr_hugepages` × size): the node's
/// hugepages capacity, which is also taken off allocatable memory.
pub fn capacity(mm: &Path) -> BTreeMap<u64, i64> {
    host_sizes(mm)
        .into_iter()
        .map(|size| {
            let f = mm
                .join(format!("hugepages-{}kB", size / 1024))
                .join("nr_hugepages");
            let n: i64 = std::fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            (size, n.saturating_mul(size as i64))
        })
        .collect()
}

/// What the host offers for hugetlb limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostHugepages {
    pub sizes: Vec<u64>,
    /// The hierarchy hostlet uses has the hugetlb controller.
    pub controller: bool,
}

impl HostHugepages {
    pub fn detect(h: &Hierarchy) -> Self {
        Self::read(Path::new(SYS_HUGEPAGES), h)
    }

    pub fn read(mm: &Path, h: &Hierarchy) -> Self {
        let controller = match h {
            Hierarchy::V1 { root } => root.join("hugetlb").is_dir(),
            Hierarchy::V2 { root } | Hierarchy::Systemd { root } => {
                std::fs::read_to_string(root.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "hugetlb"))
            }
        };
        Self {
            sizes: host_sizes(mm),
            controller,
        }
    }

    /// Refuses limits the host cannot enforce, naming the first such resource.
    pub fn check(&self, limits: &[HugepageLimit], h: &Hierarchy) -> Result<(), CgroupError> {
        let Some(first) = limits.first() else {
            return Ok(());
        };
        if !self.controller {
            let reason = match h {
                Hierarchy::V1 { root } => format!(
                    "the host has no hugetlb cgroup controller ({} is not mounted)",
                    root.join("hugetlb").display()
                ),
                Hierarchy::V2 { root } | Hierarchy::Systemd { root } => format!(
                    "the host has no hugetlb cgroup controller (not in {})",
                    root.join("cgroup.controllers").display()
                ),
            };
            return Err(CgroupError::Hugepages {
                resource: first.resource.clone(),
                reason,
            });
        }
        for l in limits {
            if !self.sizes.contains(&l.page_size) {
                let have: Vec<String> = self.sizes.iter().map(|s| size_label(*s)).collect();
                return Err(CgroupError::Hugepages {
                    resource: l.resource.clone(),
                    reason: format!(
                        "the host has no {} huge pages (sizes: {})",
                        l.label(),
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ),
                });
            }
        }
        Ok(())
    }

    /// The hugetlb limits of a pod cgroup: every host size, 0 unless the pod asks for it,
    /// so a pod cannot use huge pages it did not request (the kubelet does the same).
    pub fn pod_values(&self, limits: &[HugepageLimit]) -> Vec<(String, i64)> {
        if !self.controller {
            return Vec::new();
        }
        self.sizes
            .iter()
            .map(|s| {
                let v = limits
                    .iter()
                    .find(|l| l.page_size == *s)
                    .map_or(0, |l| l.limit);
                (size_label(*s), v)
            })
            .collect()
    }

    /// Every host size with the same value (the QoS levels' unbounded limit).
    pub fn all(&self, value: i64) -> Vec<(String, i64)> {
        if !self.controller {
            return Vec::new();
        }
        self.sizes.iter().map(|s| (size_label(*s), value)).collect()
    }
}

/// The hugetlb limit file of a page size: `hugetlb.2MB.limit_in_bytes` (v1) or
/// `hugetlb.2MB.max` (v2).
pub fn file_name(label: &str, v2: bool) -> String {
    if v2 {
        format!("hugetlb.{label}.max")
    } else {
        format!("hugetlb.{label}.limit_in_bytes")
    }
}

/// Writes v2 hugetlb limits (`hugetlb.<size>.max`) into the cgroup `dir`.
pub(crate) fn write_v2(dir: &Path, values: &[(String, i64)]) -> Result<(), CgroupError> {
    for (label, v) in values {
        write(dir, &file_name(label, true), &v.to_string())?;
    }
    Ok(())
}
