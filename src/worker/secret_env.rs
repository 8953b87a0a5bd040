//! Containers whose env holds values from Secrets get their runtime config (`config.json`,
//! which libcontainer reads from the bundle) on a tmpfs in the pod's directory, with the
//! bundle's `config.json` a symlink to it: the values never reach a persistent filesystem,
//! as secret volumes do not. The tmpfs goes with the pod (or a reboot).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

/// The tmpfs in the pod's directory.
const DIR: &str = "secret-env";

/// Whether `c`'s env takes values from Secrets.
pub(super) fn needs(c: &Container) -> bool {
    let key_ref = c.env.iter().flatten().any(|e| {
        e.value_from
            .as_ref()
            .is_some_and(|v| v.secret_key_ref.is_some())
    });
    key_ref || c.env_from.iter().flatten().any(|e| e.secret_ref.is_some())
}

fn any_needs(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(needs)
    })
}

/// Where the config of container `name` lives when [`needs`] says so.
pub(super) fn config_path(pod_dir: &Path, name: &str) -> PathBuf {
    pod_dir.join(DIR).join(format!("{name}.json"))
}

/// Mounts the pod's tmpfs (root's only) when one of its containers needs it; idempotent,
/// so an adopted pod keeps the one it has.
pub(super) fn prepare(pod: &Pod, pod_dir: &Path) -> Result<(), std::io::Error> {
    if !any_needs(pod) {
        return Ok(());
    }
    let dir = pod_dir.join(DIR);
    std::fs::create_dir_all(&dir)?;
    if super::volumes::is_mount_point(&dir) {
        return Ok(());
    }
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some("mode=0700,size=16m"),
    )
    .map_err(|e| std::io::Error::other(format!("mounting tmpfs on {}: {e}", dir.display())))
}

/// Unmounts the pod's tmpfs, if any.
pub(super) fn cleanup(pod_dir: &Path) {
    let dir = pod_dir.join(DIR);
    if super::volumes::is_mount_point(&dir) {
        if let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(path = %dir.display(), error = %e, "unmounting the secret env tmpfs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_secret_env() {
        let c = |yaml: &str| -> Container { serde_yaml::from_str(yaml).unwrap() };
        assert!(!needs(&c(
            "name: a\nenv: [{name: X, value: y}]\nenvFrom: [{configMapRef: {name: c}}]"
        )));
        assert!(needs(&c(
            "name: a\nenv: [{name: X, valueFrom: {secretKeyRef: {name: s, key: k}}}]"
        )));
        assert!(needs(&c("name: a\nenvFrom: [{secretRef: {name: s}}]")));
    }
}
