//! OCI runtime bundles: a pure `build_spec` from the pod, the container and the image
//! config, and `write` to put it on disk. Runs nothing.

pub mod apparmor;
mod config_env;
mod defaults;
mod mounts;
mod process;
mod resources;
mod seccomp;
mod security;
mod users;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Linux, LinuxBuilder, LinuxIdMappingBuilder, LinuxSeccomp, RootBuilder, Spec, SpecBuilder,
};
use serde::Deserialize;
use serde_json::Value;

use crate::node::NodeInfo;
use crate::sandbox::{self, PodFiles};
pub use process::{expand, ResourceFieldError};
pub use resources::{cpu_quota, cpu_shares, CFS_PERIOD};
pub use seccomp::ProfileError;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A field of the container cannot be turned into a runtime config; the kubelet's
    /// reason for this is `CreateContainerConfigError`.
    #[error("container {container:?}: {field}: {message}")]
    Field {
        container: String,
        field: String,
        message: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BundleError {
    pub(crate) fn field(container: &str, field: &str, message: &str) -> Self {
        Self::Field {
            container: container.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The identity a container's process runs as, as the CRI's `ContainerUser` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessIds {
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups, the primary group first (containerd's
    /// `ensureAdditionalGids`), without duplicates.
    pub groups: Vec<u32>,
}

impl ProcessIds {
    /// The identity in the bundle written to `dir`, if it can be read (an adopted
    /// container's: its status is reported again by the agent that adopts it).
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(dir.join("config.json")).ok()?;
        let spec: Spec = serde_json::from_slice(&bytes).ok()?;
        Some(Self::of(&spec))
    }

    pub fn of(spec: &Spec) -> Self {
        let Some(user) = spec.process().as_ref().map(|p| p.user()) else {
            return Self::default();
        };
        let mut groups = vec![user.gid()];
        for g in user.additional_gids().iter().flatten() {
            if !groups.contains(g) {
                groups.push(*g);
            }
        }
        Self {
            uid: user.uid(),
            gid: user.gid(),
            groups,
        }
    }
}

/// Everything `build_spec` needs besides the pod and the container.
pub struct BundleInputs<'a> {
    pub image: &'a ImageConfiguration,
    /// Reads a file of the image by path relative to its root (USER name lookups).
    pub image_file: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    /// Where the container's rootfs will be mounted (absolute).
    pub rootfs: &'a Path,
    /// The container's cgroup, inside its pod's ([`crate::cgroups::PodCgroup::container`]).
    pub cgroups_path: &'a str,
    /// Host directory of each pod volume, by volume name.
    pub volumes: &'a BTreeMap<String, PathBuf>,
    /// The pod's directory: its namespace files, /etc files and /dev/shm
    /// ([`crate::sandbox::PodFiles`]).
    pub pod_dir: &'a Path,
    pub node: &'a NodeInfo,
    /// Reads a `Localhost` seccomp profile by its path relative to `node.seccomp_dir`.
    pub seccomp_file: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    /// The ConfigMaps and Secrets env vars are read from.
    pub objects: &'a crate::manifest::ObjectSet,
    /// The pod's host ID range when it runs in a user namespace (`hostUsers: false`).
    pub user_ids: Option<crate::userns::IdRange>,
}

/// Builds the OCI runtime config for one container of a pod.
pub fn build_spec(pod: &Pod, c: &Container, inp: &BundleInputs) -> Result<Spec, BundleError> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| BundleError::Config("pod has no spec".into()))?;
    let host_network = spec.host_network.unwrap_or(false);
    let files = PodFiles::new(inp.pod_dir);

    let sec = security::resolve(
        pod,
        c,
        &security::Inputs {
            image: inp.image.config().as_ref(),
            image_file: inp.image_file,
            node: inp.node,
            seccomp_file: inp.seccomp_file,
        },
    )?;
    let hostname = if host_network {
        inp.node.name.clone()
    } else {
        sandbox::hostname(pod).map_err(|e| BundleError::Config(e.to_string()))?
    };
    let process = process::process(pod, c, inp, &sec, &hostname)?;
    let user_ids = user_ids(pod, c, inp, &process)?;
    let host_ipc = spec.host_ipc.unwrap_or(false);
    // The kubelet mounts these read-only whatever `readOnly` says: their files are the
    // agent's to write (and swap on updates).
    let read_only: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.projected.is_some()
                || v.downward_api.is_some()
                || v.image.is_some()
        })
        .map(|v| v.name.as_str())
        .collect();
    let images: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .filter(|v| v.image.is_some())
        .map(|v| v.name.as_str())
        .collect();
    let (mounts, rootfs_propagation) =
        mounts::mounts(c, inp, &sec, &files, host_ipc, &read_only, &images)?;
    let linux = linux(pod, c, inp, &sec, &files, rootfs_propagation, user_ids)?;
    let root = RootBuilder::default()
        .path(inp.rootfs)
        .readonly(sec.readonly_root)
        .build()
        .map_err(oci)?;
    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(root)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(oci)?;
    // Unset builder fields take oci-spec's defaults: youki's hostname (the UTS namespace
    // is the pod's, and holds its name) and empty annotations.
    spec.set_hostname(None).set_annotations(None);
    Ok(spec)
}

/// `linux`: the container's cgroup and resources, the namespaces it joins or creates, and
/// its security settings (masked paths, seccomp, sysctls).
fn linux(
    pod: &Pod,
    c: &Container,
    inp: &BundleInputs,
    sec: &security::Security,
    files: &PodFiles,
    rootfs_propagation: Option<&str>,
    user_ids: Option<crate::userns::IdRange>,
) -> Result<Linux, BundleError> {
    let paths = |list: &[&str]| -> Vec<String> {
        if sec.unmasked {
            Vec::new()
        } else {
            list.iter().map(|p| p.to_string()).collect()
        }
    };
    let mut linux = LinuxBuilder::default()
        .cgroups_path(inp.cgroups_path)
        .resources(resources::linux_resources(c, sec.privileged)?)
        // The pod's sandbox namespaces are joined by path; hostNetwork/hostIPC/hostPID
        // keep the host's.
        .namespaces(sandbox::oci_namespaces(pod, files))
        .masked_paths(paths(defaults::MASKED_PATHS))
        .readonly_paths(paths(defaults::READONLY_PATHS));
    if let Some(p) = rootfs_propagation {
        linux = linux.rootfs_propagation(p);
    }
    if let Some(profile) = &sec.seccomp {
        let seccomp = LinuxSeccomp::deserialize(profile)
            .map_err(|e| BundleError::Config(format!("building runtime spec: {e}")))?;
        linux = linux.seccomp(seccomp);
    }
    if !sec.sysctls.is_empty() {
        linux = linux.sysctl(sec.sysctls.clone().into_iter().collect::<HashMap<_, _>>());
    }
    if let Some(ids) = user_ids {
        // The pod's user namespace is joined by path (the sandbox made it with these
        // maps); the maps say what it maps, as the CRI's do.
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(ids.host_id)
            .size(ids.size)
            .build()
            .map_err(oci)?;
        linux = linux.uid_mappings(vec![map]).gid_mappings(vec![map]);
    }
    linux.build().map_err(oci)
}

/// The pod's range when it has a user namespace; the container's IDs must be in it (an
/// unmapped ID cannot be taken inside).
fn user_ids(
    pod: &Pod,
    c: &Container,
    inp: &BundleInputs,
    process: &oci_spec::runtime::Process,
) -> Result<Option<crate::userns::IdRange>, BundleError> {
    if !sandbox::Shared::of(pod).user {
        return Ok(None);
    }
    let ids = inp.user_ids.ok_or_else(|| {
        BundleError::Config("hostUsers: false but the pod has no ID range".into())
    })?;
    let user = process.user();
    let all = [user.uid(), user.gid()]
        .into_iter()
        .chain(user.additional_gids().iter().flatten().copied());
    for id in all {
        if ids.to_host(id).is_none() {
            return Err(BundleError::field(
                &c.name,
                "securityContext",
                &format!(
                    "ID {id} is outside the pod's user namespace (0-{})",
                    ids.size - 1
                ),
            ));
        }
    }
    Ok(Some(ids))
}

/// A builder's error: only its own validation fails (mounts with ID mappings), which
/// hostlet's fields never trigger.
pub(crate) fn oci(e: oci_spec::OciSpecError) -> BundleError {
    BundleError::Config(format!("building runtime spec: {e}"))
}

/// A downward API file's content: a `fieldRef` path (`metadata.labels` and
/// `metadata.annotations` as whole maps, one `key="value"` line each, sorted).
pub fn downward_field(pod: &Pod, path: &str, node: &NodeInfo) -> Option<String> {
    let map = |m: &Option<BTreeMap<String, String>>| {
        m.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    match path {
        "metadata.labels" => Some(map(&pod.metadata.labels)),
        "metadata.annotations" => Some(map(&pod.metadata.annotations)),
        _ => process::field_ref(pod, path, node),
    }
}

/// A downward API file's content from a `resourceFieldRef` (its containerName is required).
pub fn downward_resource(
    pod: &Pod,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    node: &NodeInfo,
) -> Result<String, ResourceFieldError> {
    let name = r.container_name.clone().unwrap_or_default();
    let c = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
        .ok_or(ResourceFieldError::NoContainer(name))?;
    process::resource_field(pod, c, r, node)
}

/// The spec as JSON with its capability sets sorted (oci-spec keeps them in hash sets), so
/// the same pod always prints the same.
pub fn stable_json(spec: &Spec) -> Value {
    let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
    }
    v
}

/// The signal that asks this image's process to stop (image STOPSIGNAL, else SIGTERM).
pub fn stop_signal(image: &ImageConfiguration) -> i32 {
    image
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().clone())
        .and_then(|s| parse_signal(&s))
        .unwrap_or(libc::SIGTERM)
}

fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok().map(|s| s as i32);
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32)
}

/// Writes `config.json` into `dir` and creates the rootfs mount point. With `config_at`
/// (a file on a tmpfs), the config is written there and `dir/config.json` is a symlink to
/// it, so values from Secrets in it never reach the disk `dir` is on.
pub fn write(dir: &Path, spec: &Spec, config_at: Option<&Path>) -> Result<(), BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    std::fs::create_dir_all(dir.join("rootfs")).map_err(io(dir))?;
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| BundleError::Config(e.to_string()))?;
    let link = dir.join("config.json");
    let config = config_at.unwrap_or(&link);
    crate::state::write_atomic(config, &bytes).map_err(|e| BundleError::Config(e.to_string()))?;
    // It may hold values from Secrets (env): root's only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(config, std::fs::Permissions::from_mode(0o600)).map_err(io(config))?;
    if let Some(target) = config_at {
        match std::fs::remove_file(&link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&link)(e)),
            _ => {}
        }
        std::os::unix::fs::symlink(target, &link).map_err(io(&link))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
