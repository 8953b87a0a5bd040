//! What a pod has on the host besides its containers: volumes, the sandbox (namespaces,
//! /etc files, /dev/shm) and the pod cgroup. Made before the first container starts and
//! removed after the last one ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::{volumes, Deps};
use crate::cgroups::{self, PodCgroup};
use crate::sandbox::{self, PodFiles, Shared};

/// Blocking: runs the sandbox helper and writes cgroup files.
pub(super) fn prepare(
    pod: &Pod,
    uid: &str,
    pod_dir: &Path,
    deps: &Deps,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let vols = volumes::prepare(pod, pod_dir, &deps.node).map_err(|e| e.to_string())?;
    let files = PodFiles::new(pod_dir);
    sandbox::write_etc(pod, &files).map_err(|e| e.to_string())?;
    let shared = Shared::of(pod);
    if (shared.net || shared.ipc || shared.uts) && !sandbox::exists(&files, shared) {
        let hostname = sandbox::hostname(pod).map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| format!("locating hostlet: {e}"))?;
        sandbox::create(&exe, &files, shared, &hostname).map_err(|e| e.to_string())?;
    }
    if let Some(h) = &deps.cgroups {
        let cg = PodCgroup::of(pod, uid);
        cgroups::create(h, &cg, &cgroups::pod_limits(pod, deps.node.pod_max_pids))
            .map_err(|e| e.to_string())?;
    }
    Ok(vols)
}

/// Removes the sandbox, tmpfs volumes and the pod cgroup; what does not exist is skipped.
pub(super) fn teardown(pod: &Pod, uid: &str, pod_dir: &Path, deps: &Deps) {
    sandbox::remove(&PodFiles::new(pod_dir));
    volumes::cleanup(pod_dir);
    if let Some(h) = &deps.cgroups {
        if let Err(e) = cgroups::remove(h, &PodCgroup::of(pod, uid)) {
            tracing::warn!(error = %e, "removing pod cgroup");
        }
    }
}
