//! The volumes of a `hostUsers: false` pod, seen through idmapped mounts
//! ([`crate::userns::idmap`]) under `pods/<uid>/idmapped/<volume>`: the spec bind-mounts
//! these instead of the volumes' own directories, so owners show right inside the pod's
//! user namespace and nothing on the host is chowned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::sandbox::PodFiles;
use crate::userns::{idmap, UsernsError};

const DIR: &str = "idmapped";

/// The idmapped view of each volume by name, made unless there already (an adopted pod).
pub(super) fn volumes(
    files: &PodFiles,
    vols: BTreeMap<String, PathBuf>,
) -> Result<BTreeMap<String, PathBuf>, UsernsError> {
    let ns = files.ns("user");
    let userns = std::fs::File::open(&ns).map_err(|source| UsernsError::Io {
        path: ns.clone(),
        source,
    })?;
    let mounted = mount_points();
    let mut out = BTreeMap::new();
    for (name, source) in vols {
        let target = files.dir.join(DIR).join(&name);
        if !mounted.contains(&target) {
            idmap::mount(&source, &target, &userns).map_err(|e| match e {
                UsernsError::Unsupported(m) => {
                    UsernsError::Unsupported(format!("volume {name:?}: {m}"))
                }
                e => e,
            })?;
        }
        out.insert(name, target);
    }
    Ok(out)
}

/// Detaches the pod's idmapped mounts so its directory can be removed; false when one
/// stays, and the directory must then be kept: removing it would walk into a host volume.
pub(super) fn cleanup(pod_dir: &Path) -> bool {
    let dir = pod_dir.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return true;
    };
    let mut clear = true;
    for e in entries.flatten() {
        idmap::unmount(&e.path());
        // An empty mount point (or file) goes now; one still mounted fails here and is
        // logged, so the pod directory's removal does not start inside a host volume.
        let gone = if e.path().is_dir() {
            std::fs::remove_dir(e.path())
        } else {
            std::fs::remove_file(e.path())
        };
        if let Err(err) = gone {
            tracing::error!(path = %e.path().display(), error = %err, "an idmapped volume stays mounted");
            clear = false;
        }
    }
    clear
}

/// Mount points of the agent's mount namespace (mountinfo's field 5, unescaped enough for
/// the paths hostlet makes: no spaces in pod UIDs or volume names).
fn mount_points() -> std::collections::BTreeSet<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
}
