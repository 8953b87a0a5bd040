//! The container's mounts: containerd's defaults, the pod's /dev/shm and /etc files, and
//! the container's volume mounts.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, VolumeMount};
use oci_spec::runtime::Mount;

use super::defaults::{self, mount};
use super::security::Security;
use super::{oci, BundleError, BundleInputs};
use crate::sandbox::PodFiles;

/// Every mount of the container, in order, and the rootfs propagation its volume mounts
/// need (`None`: the runtime's default).
pub fn mounts(
    c: &Container,
    inp: &BundleInputs,
    sec: &Security,
    files: &PodFiles,
    host_ipc: bool,
    read_only: &[&str],
    images: &[&str],
) -> Result<(Vec<Mount>, Option<&'static str>), BundleError> {
    let mut mounts = defaults::mounts().map_err(oci)?;
    if sec.privileged {
        for m in mounts.iter_mut() {
            if m.destination() == Path::new("/sys") {
                m.set_options(Some(
                    ["nosuid", "noexec", "nodev", "rw"]
                        .map(String::from)
                        .to_vec(),
                ));
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
        let dest = m.destination();
        dest != Path::new("/dev/shm") && !(host_ipc && dest == Path::new("/dev/mqueue"))
    });
    mounts.push(mount("/dev/shm", "bind", shm, &["rbind", "rprivate", "rw"]).map_err(oci)?);
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
            mounts
                .push(mount(dest, "bind", source, &["rbind", "rprivate", etc_mode]).map_err(oci)?);
        }
    }
    // Read-write even with a read-only root filesystem, as the kubelet mounts it.
    if let Some(path) = c.termination_message_path.as_deref() {
        if !path.is_empty() && !mounted_by_user(path.trim_end_matches('/')) {
            let source = files.termination_log(&c.name);
            mounts.push(mount(path, "bind", source, &["rbind", "rprivate", "rw"]).map_err(oci)?);
        }
    }
    let mut rootfs_propagation: Option<&'static str> = None;
    for (i, vm) in c.volume_mounts.iter().flatten().enumerate() {
        let ro = read_only.contains(&vm.name.as_str());
        let mut m = volume_mount(c, i, vm, inp, sec, ro, &mut rootfs_propagation)?;
        if images.contains(&vm.name.as_str()) {
            // An image volume, as containerd mounts it: read-only, no devices, no setuid,
            // nothing executed from it.
            let mut opts = m.options().clone().unwrap_or_default();
            opts.retain(|o| o != "rw");
            for o in ["ro", "nosuid", "nodev", "noexec"] {
                if !opts.iter().any(|x| x == o) {
                    opts.push(o.to_string());
                }
            }
            m.set_options(Some(opts));
        }
        mounts.push(m);
    }
    Ok((mounts, rootfs_propagation))
}

/// `volumeMounts[i]`: a bind mount of the pod volume (or its subPath).
fn volume_mount(
    c: &Container,
    i: usize,
    vm: &VolumeMount,
    inp: &BundleInputs,
    sec: &Security,
    force_read_only: bool,
    rootfs_propagation: &mut Option<&'static str>,
) -> Result<Mount, BundleError> {
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
            *rootfs_propagation = Some("rshared");
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
    let mode = if force_read_only || vm.read_only.unwrap_or(false) {
        "ro"
    } else {
        "rw"
    };
    mount(
        vm.mount_path.as_str(),
        "bind",
        source,
        &["rbind", propagation, mode],
    )
    .map_err(oci)
}
