//! The host's cgroup layout (v1, v2, or v2 under systemd) and the driver that owns it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::CgroupError;

/// `--cgroup-driver`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    #[default]
    Cgroupfs,
    Systemd,
}

impl Driver {
    /// systemd when it is PID 1 (libsystemd's `sd_booted` test), else cgroupfs.
    pub fn detect() -> Self {
        if booted() {
            Self::Systemd
        } else {
            Self::Cgroupfs
        }
    }
}

/// A `--cgroup-driver` / `cgroupDriver` value that names no driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cgroup driver {0:?}: expected cgroupfs or systemd")]
pub struct UnknownDriver(pub String);

impl std::str::FromStr for Driver {
    type Err = UnknownDriver;
    fn from_str(s: &str) -> Result<Self, UnknownDriver> {
        match s {
            "cgroupfs" => Ok(Self::Cgroupfs),
            "systemd" => Ok(Self::Systemd),
            _ => Err(UnknownDriver(s.to_string())),
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cgroupfs => "cgroupfs",
            Self::Systemd => "systemd",
        })
    }
}

pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
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
            Driver::Systemd if !booted() => Err(CgroupError::NoSystemd),
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

    pub fn root(&self) -> &Path {
        match self {
            Self::V1 { root } | Self::V2 { root } | Self::Systemd { root } => root,
        }
    }

    /// Every directory that holds cgroup `rel` (one per v1 controller, or one on v2).
    pub(crate) fn dirs(&self, rel: &str) -> Vec<(&'static str, PathBuf)> {
        let rel = rel.trim_start_matches('/');
        match self {
            Self::V2 { root } | Self::Systemd { root } => vec![("", root.join(rel))],
            Self::V1 { root } => v1_controllers(root)
                .into_iter()
                .map(|ctl| (ctl, root.join(ctl).join(rel)))
                .collect(),
        }
    }
}

/// The v1 controller mounts under `root`, one name per mount: "cpu" and "cpuacct" are
/// often one mount reached through symlinks. Found once per root: each pod start asks
/// ten times, and finding them is ~60 system calls (stat and realpath per controller).
fn v1_controllers(root: &Path) -> Vec<&'static str> {
    static FOUND: Mutex<Vec<(PathBuf, Vec<&'static str>)>> = Mutex::new(Vec::new());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, ctls)) = found.iter().find(|(r, _)| r == root) {
        return ctls.clone();
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut ctls = Vec::new();
    for ctl in V1_CONTROLLERS {
        let base = root.join(ctl);
        if !base.is_dir() {
            continue;
        }
        let real = base.canonicalize().unwrap_or(base);
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        ctls.push(*ctl);
    }
    // An empty list is not kept: the mounts may not be there yet.
    if !ctls.is_empty() {
        found.push((root.to_path_buf(), ctls.clone()));
    }
    ctls
}
