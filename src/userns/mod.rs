//! User namespaces for `hostUsers: false` pods: the pool of host ID ranges, one 65536-ID
//! range per pod, by the kubelet's rules (pkg/kubelet/userns):
//!
//! - the pool is the `hostlet` user's entry in `/etc/subuid` and `/etc/subgid` (the
//!   kubelet reads its `kubelet` user's); both must be the same, start on a multiple of
//!   65536 and be a multiple of 65536 long;
//! - without such an entry the pool is the kubelet's default: host IDs from 65536 up to
//!   2^32, so no pod ever shares the IDs 0-65535 the host's own users have. The last
//!   range is left out: its end, 2^32 - 1, is `(uid_t)-1`, which the kernel refuses in a map;
//! - a pod gets the lowest free range (the kubelet picks any free one).
//!
//! A pod's range is part of its state on disk (`pods/<uid>/userns.json`, as the kubelet
//! keeps one per pod), so a restarted agent that adopts the pod finds it again, and the
//! pool is what the pod directories hold: a range is free again only when its pod's
//! directory is removed, which the worker does after the pod's last process is gone.

pub mod idmap;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::state::{self, StateError};

/// IDs per pod, as the kubelet's `userNsLength`.
pub const RANGE: u32 = 65536;
/// The user whose subordinate IDs are the pool.
pub const POOL_USER: &str = "hostlet";
/// The kubelet's default first host ID when its user has no subordinate IDs.
pub const DEFAULT_FIRST: u32 = RANGE;
/// A pod's record in its directory.
pub const RECORD: &str = "userns.json";

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("{path}: line {line:?}: {message}")]
    SubId {
        path: PathBuf,
        line: String,
        message: String,
    },
    #[error("the {user} user's /etc/subuid and /etc/subgid ranges differ ({uid:?} and {gid:?}); they must be the same")]
    Differ {
        user: String,
        uid: Option<(u32, u64)>,
        gid: Option<(u32, u64)>,
    },
    #[error("no free user namespace range: all {0} ranges of 65536 IDs are in use")]
    Exhausted(u64),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The host cannot run the pod in a user namespace: names the missing piece.
    #[error("hostUsers: false is not possible on this host: {0}")]
    Unsupported(String),
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
}

/// A pod's host IDs: container IDs 0..65536 are host IDs `host_id..host_id + 65536`, for
/// users and groups alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdRange {
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

impl IdRange {
    /// The `/proc/<pid>/uid_map` (and `gid_map`) line.
    pub fn map_line(&self) -> String {
        format!("0 {} {}", self.host_id, self.size)
    }

    /// The host ID of container ID `id`, if mapped.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.host_id + id)
    }
}

/// The ranges pods may get: `count` ranges from `first`.
#[derive(Debug)]
pub struct Pool {
    first: u32,
    count: u64,
    pods_dir: PathBuf,
    /// One allocation at a time: choosing and recording a range is not atomic on disk.
    lock: Mutex<()>,
}

impl Pool {
    /// The pool of `POOL_USER` from `/etc/subuid` and `/etc/subgid`, or the default.
    pub fn from_host(pods_dir: &Path) -> Result<Self, UsernsError> {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let uid = parse_subid(Path::new("/etc/subuid"), read("/etc/subuid").as_deref())?;
        let gid = parse_subid(Path::new("/etc/subgid"), read("/etc/subgid").as_deref())?;
        Self::from_entries(pods_dir, uid, gid)
    }

    /// The pool of the subordinate ID entries found (start, length) for users and groups.
    pub fn from_entries(
        pods_dir: &Path,
        uid: Option<(u32, u64)>,
        gid: Option<(u32, u64)>,
    ) -> Result<Self, UsernsError> {
        let (first, len) = match (uid, gid) {
            (None, None) => (DEFAULT_FIRST, (1u64 << 32) - u64::from(DEFAULT_FIRST)),
            (Some(u), Some(g)) if u == g => u,
            _ => {
                return Err(UsernsError::Differ {
                    user: POOL_USER.into(),
                    uid,
                    gid,
                })
            }
        };
        // Never the range whose last ID is (uid_t)-1.
        let end = (u64::from(first) + len).min((1u64 << 32) - u64::from(RANGE));
        let count = end.saturating_sub(u64::from(first)) / u64::from(RANGE);
        Ok(Self {
            first,
            count,
            pods_dir: pods_dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    /// How many ranges the pool has.
    pub fn capacity(&self) -> u64 {
        self.count
    }

    /// The pod's range: the one recorded in its directory (an adopted or restarted pod
    /// keeps its range), else the lowest free one, recorded before it is returned.
    pub fn allocate(&self, pod_dir: &Path) -> Result<IdRange, UsernsError> {
        let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = recorded(pod_dir)? {
            return Ok(r);
        }
        let used = self.used();
        let host_id =
            choose(self.first, self.count, &used).ok_or(UsernsError::Exhausted(self.count))?;
        let r = IdRange {
            host_id,
            size: RANGE,
        };
        state::create_dir_all(pod_dir)?;
        state::write_json(&pod_dir.join(RECORD), &r)?;
        Ok(r)
    }

    /// The range the next pod would get (a preview: nothing is recorded).
    pub fn next_free(&self) -> Option<IdRange> {
        let host_id = choose(self.first, self.count, &self.used())?;
        Some(IdRange {
            host_id,
            size: RANGE,
        })
    }

    /// The first host IDs of the ranges pods hold now (every pod directory's record).
    pub fn used(&self) -> BTreeSet<u32> {
        let Ok(entries) = std::fs::read_dir(&self.pods_dir) else {
            return BTreeSet::new();
        };
        entries
            .flatten()
            .filter_map(|e| recorded(&e.path()).ok().flatten())
            .map(|r| r.host_id)
            .collect()
    }
}

/// `--user-namespaces-default`: sets `hostUsers: false` on a pod that does not set
/// `hostUsers` and could run in a user namespace (no host namespace, no privileged
/// container); true when it did.
pub fn default_to_user_namespace(pod: &mut k8s_openapi::api::core::v1::Pod) -> bool {
    let Some(spec) = pod.spec.as_mut() else {
        return false;
    };
    let host = [spec.host_network, spec.host_pid, spec.host_ipc];
    let privileged = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    if spec.host_users.is_some() || host.contains(&Some(true)) || privileged {
        return false;
    }
    spec.host_users = Some(false);
    true
}

/// The range recorded in a pod's directory, if any.
pub fn recorded(pod_dir: &Path) -> Result<Option<IdRange>, UsernsError> {
    Ok(state::read_json::<IdRange>(&pod_dir.join(RECORD))?)
}

/// The lowest range of `count` from `first` that no pod holds.
pub fn choose(first: u32, count: u64, used: &BTreeSet<u32>) -> Option<u32> {
    (0..count)
        .map(|i| u64::from(first) + i * u64::from(RANGE))
        .filter_map(|id| u32::try_from(id).ok())
        .find(|id| !used.contains(id))
}

/// `POOL_USER`'s first entry of a subuid/subgid file (`name:start:count`), checked as the
/// kubelet checks its own: a multiple of 65536 for both numbers. None: no file or entry.
pub fn parse_subid(path: &Path, text: Option<&str>) -> Result<Option<(u32, u64)>, UsernsError> {
    let Some(text) = text else { return Ok(None) };
    let bad = |line: &str, message: &str| UsernsError::SubId {
        path: path.to_path_buf(),
        line: line.to_string(),
        message: message.to_string(),
    };
    for line in text.lines() {
        let mut f = line.trim().split(':');
        if f.next() != Some(POOL_USER) {
            continue;
        }
        let (Some(start), Some(len), None) = (f.next(), f.next(), f.next()) else {
            return Err(bad(line, "want name:start:count"));
        };
        let start: u32 = start
            .parse()
            .map_err(|_| bad(line, "start is not a number"))?;
        let len: u64 = len
            .parse()
            .map_err(|_| bad(line, "count is not a number"))?;
        if start % RANGE != 0 {
            return Err(bad(line, "start is not a multiple of 65536"));
        }
        if len % u64::from(RANGE) != 0 || len == 0 {
            return Err(bad(line, "count is not a multiple of 65536"));
        }
        return Ok(Some((start, len)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
