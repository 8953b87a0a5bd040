//! OCI runtime bundles: a pure `build_spec` from the pod, the container and the image
//! config, and `write` to put it on disk. Runs nothing.

mod defaults;
mod process;
mod resources;
mod seccomp;
mod security;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

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
}

/// Builds the OCI runtime config for one container of a pod.
pub fn build_spec(pod: &Pod, c: &Container, inp: &BundleInputs) -> Result<Spec, BundleError> {
    let image = inp.image.config().as_ref();
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| BundleError::Config("pod has no spec".into()))?;
    let host_network = spec.host_network.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);
    let files = PodFiles::new(inp.pod_dir);

    let sec = security::resolve(
        pod,
        c,
        &security::Inputs {
            image,
            image_file: inp.image_file,
            node: inp.node,
            seccomp_file: inp.seccomp_file,
        },
    )?;
    let vars = process::container_env(pod, c, inp.node)?;
    let args = process::argv(c, image, &vars)?;
    let hostname = if host_network {
        inp.node.name.clone()
    } else {
        sandbox::hostname(pod).map_err(|e| BundleError::Config(e.to_string()))?
    };
    let env = process::env(image, &vars, &hostname);
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| {
            image
                .and_then(|i| i.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".into());

    // The pod's sandbox namespaces are joined by path; hostNetwork/hostIPC/hostPID keep
    // the host's.
    let namespaces = sandbox::oci_namespaces(pod, &files);

    let mut mounts = defaults::mounts();
    let readonly_paths: &[&str] = if sec.unmasked {
        &[]
    } else {
        defaults::READONLY_PATHS
    };
    let masked_paths: &[&str] = if sec.unmasked {
        &[]
    } else {
        defaults::MASKED_PATHS
    };
    if sec.privileged {
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" {
                m["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
            }
        }
    }
    // /dev/shm is the pod's (or the host's with hostIPC), shared by its containers.
    let shm = if host_ipc {
        PathBuf::from("/dev/shm")
    } else {
        files.shm()
    };
    mounts.retain(|m| {
        m["destination"] != "/dev/shm" && !(host_ipc && m["destination"] == "/dev/mqueue")
    });
    mounts.push(
        json!({"destination": "/dev/shm", "type": "bind", "source": shm,
                       "options": ["rbind", "rprivate", "rw"]}),
    );
    let etc_mode = if sec.readonly_root { "ro" } else { "rw" };
    let mounted_by_user = |dest: &str| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|vm| vm.mount_path.trim_end_matches('/') == dest)
    };
    for (dest, source) in [
        ("/etc/hosts", files.hosts()),
        ("/etc/hostname", files.hostname()),
        ("/etc/resolv.conf", files.resolv_conf()),
    ] {
        if !mounted_by_user(dest) {
            mounts.push(
                json!({"destination": dest, "type": "bind", "source": source,
                               "options": ["rbind", "rprivate", etc_mode]}),
            );
        }
    }
    let mut rootfs_propagation: Option<&str> = None;
    for (i, vm) in c.volume_mounts.iter().flatten().enumerate() {
        let f = |name: &str| format!("volumeMounts[{i}].{name}");
        let mut source = inp.volumes.get(&vm.name).cloned().ok_or_else(|| {
            BundleError::field(
                &c.name,
                &f("name"),
                &format!("no volume named {:?} in the pod", vm.name),
            )
        })?;
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            let p = Path::new(sub);
            if p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(BundleError::field(
                    &c.name,
                    &f("subPath"),
                    &format!("{sub:?} must be a relative path without '..'"),
                ));
            }
            source = source.join(p);
        }
        let propagation = match vm.mount_propagation.as_deref() {
            None | Some("None") => "rprivate",
            Some("HostToContainer") => {
                rootfs_propagation.get_or_insert("rslave");
                "rslave"
            }
            Some("Bidirectional") if sec.privileged => {
                rootfs_propagation = Some("rshared");
                "rshared"
            }
            Some("Bidirectional") => {
                return Err(BundleError::field(
                    &c.name,
                    &f("mountPropagation"),
                    "Bidirectional needs a privileged container",
                ))
            }
            Some(other) => {
                return Err(BundleError::field(
                    &c.name,
                    &f("mountPropagation"),
                    &format!("unknown mode {other:?}"),
                ))
            }
        };
        let mode = if vm.read_only.unwrap_or(false) {
            "ro"
        } else {
            "rw"
        };
        mounts.push(json!({"destination": vm.mount_path, "type": "bind",
                           "source": source, "options": ["rbind", propagation, mode]}));
    }

    let oom_score_adj = crate::cgroups::oom_score_adj(pod, c, inp.node.memory_bytes)
        .max(inp.node.min_oom_score_adj);
    let caps = &sec.caps;
    let value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": sec.uid, "gid": sec.gid,
                     "additionalGids": if sec.additional_gids.is_empty() { Value::Null } else { json!(sec.additional_gids) }},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            // Absent, not false, when unset: libcontainer 0.7 loads the seccomp filter
            // after dropping capabilities whenever the field is present, which fails
            // without no_new_privs (EACCES: "failed to load seccomp context").
            "noNewPrivileges": if sec.no_new_privs { Some(true) } else { None },
            "oomScoreAdj": oom_score_adj,
        },
        "root": {"path": inp.rootfs, "readonly": sec.readonly_root},
        "mounts": mounts,
        "linux": {
            "cgroupsPath": inp.cgroups_path,
            "resources": resources::linux_resources(c, sec.privileged)?,
            "namespaces": namespaces,
            "maskedPaths": masked_paths,
            "readonlyPaths": readonly_paths,
            "rootfsPropagation": rootfs_propagation,
            "seccomp": sec.seccomp,
            "sysctl": if sec.sysctls.is_empty() { Value::Null } else { json!(sec.sysctls) },
        },
    });
    let value = strip_nulls(value);
    serde_json::from_value(value)
        .map_err(|e| BundleError::Config(format!("building runtime spec: {e}")))
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

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
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

/// Writes `config.json` into `dir` and creates the rootfs mount point.
pub fn write(dir: &Path, spec: &Spec) -> Result<(), BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    std::fs::create_dir_all(dir.join("rootfs")).map_err(io(dir))?;
    let bytes = serde_json::to_vec_pretty(spec).map_err(|e| BundleError::Config(e.to_string()))?;
    crate::state::write_atomic(&dir.join("config.json"), &bytes)
        .map_err(|e| BundleError::Config(e.to_string()))
}

#[cfg(test)]
mod tests;
