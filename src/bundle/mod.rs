//! OCI runtime bundles: a pure `build_spec` from the pod, the container and the image
//! config, and `write` to put it on disk. Runs nothing.

mod defaults;
mod process;
mod resources;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

pub use resources::{cpu_quota, cpu_shares, CFS_PERIOD};

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
    pub cgroups_path: &'a str,
    /// Host directory of each pod volume, by volume name.
    pub volumes: &'a BTreeMap<String, PathBuf>,
}

/// Builds the OCI runtime config for one container of a pod.
pub fn build_spec(pod: &Pod, c: &Container, inp: &BundleInputs) -> Result<Spec, BundleError> {
    let image = inp.image.config().as_ref();
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| BundleError::Config("pod has no spec".into()))?;
    let host_network = spec.host_network.unwrap_or(false);
    let host_pid = spec.host_pid.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);

    let args = process::argv(c, image)?;
    let env = process::env(pod, c, image)?;
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
    let (uid, gid) = process::user(image, inp.image_file)?;
    let caps = defaults::CAPABILITIES;

    // The network namespace is not listed: the monitor creates it (with lo up) before
    // libcontainer runs, and the container inherits it; hostNetwork keeps the host's.
    let mut namespaces = vec![json!({"type": "mount"})];
    if !host_pid {
        namespaces.push(json!({"type": "pid"}));
    }
    if !host_ipc {
        namespaces.push(json!({"type": "ipc"}));
    }
    if !host_network {
        namespaces.push(json!({"type": "uts"}));
    }

    let mut mounts = defaults::mounts();
    if host_ipc {
        // The host's IPC namespace: /dev/shm must be the host's too, as with the kubelet.
        mounts.retain(|m| m["destination"] != "/dev/shm" && m["destination"] != "/dev/mqueue");
        mounts.push(
            json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                           "options": ["rbind", "rprivate", "rw"]}),
        );
    }
    for (i, vm) in c.volume_mounts.iter().flatten().enumerate() {
        let source = inp.volumes.get(&vm.name).ok_or_else(|| {
            BundleError::field(
                &c.name,
                &format!("volumeMounts[{i}].name"),
                &format!("no volume named {:?} in the pod", vm.name),
            )
        })?;
        let mode = if vm.read_only.unwrap_or(false) {
            "ro"
        } else {
            "rw"
        };
        mounts.push(json!({"destination": vm.mount_path, "type": "bind",
                           "source": source, "options": ["rbind", "rprivate", mode]}));
    }

    let value = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false,
        },
        "root": {"path": inp.rootfs, "readonly": false},
        "hostname": if host_network { Value::Null } else { json!(pod.metadata.name) },
        "mounts": mounts,
        "linux": {
            "cgroupsPath": inp.cgroups_path,
            "resources": resources::linux_resources(c)?,
            "namespaces": namespaces,
            "maskedPaths": defaults::MASKED_PATHS,
            "readonlyPaths": defaults::READONLY_PATHS,
        },
    });
    let value = strip_nulls(value);
    serde_json::from_value(value)
        .map_err(|e| BundleError::Config(format!("building runtime spec: {e}")))
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
