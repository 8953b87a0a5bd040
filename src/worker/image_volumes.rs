//! Image volumes (KEP-4639): `volumes[].image` pulled through the image store (the same
//! pull, digest verification and credentials as a container's image) and mounted at the
//! volume's directory as the image's merged layers, read-only, nosuid, nodev and noexec:
//! a read-only overlay of the unpacked layers (a bind of the one layer of a one-layer
//! image), as containerd presents an image volume. A pull that fails keeps every container
//! of the pod waiting with the kubelet's reasons (ErrImagePull, then ImagePullBackOff).
//! The pod's directory records the images it mounts, so image GC keeps them.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use nix::mount::MsFlags;
use tokio::sync::watch;

use super::backoff::Backoff;
use super::deps::{sleep_or_stop, stopped, Deps};
use super::services::{Images, Services};
use super::states::PodLife;
use super::volumes::VolumeProblem;
use crate::image::{Image, PullPolicy};
use crate::manifest::StaticPod;

/// The file in a pod's directory naming the images its volumes mount (read by image GC).
pub const RECORD: &str = "image-volumes.json";

/// The image volumes of `pod`: (volume name, reference, pull policy).
pub fn of(pod: &Pod) -> Vec<(String, String, PullPolicy)> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let image = v.image.as_ref()?;
            let reference = image.reference.clone().unwrap_or_default();
            // The API server's default: Always for `:latest` or no tag.
            let policy = match image.pull_policy.as_deref() {
                Some(p) if !p.is_empty() => p,
                _ => crate::manifest::default_pull_policy(&reference),
            };
            let policy = match policy {
                "Always" => PullPolicy::Always,
                "Never" => PullPolicy::Never,
                _ => PullPolicy::IfNotPresent,
            };
            Some((v.name.clone(), reference, policy))
        })
        .collect()
}

/// Pulls every image volume of `pod`, retried with back-off while one fails; None when
/// the pod is stopped first.
pub(super) async fn pull<S: Services>(
    pod: &StaticPod,
    deps: &Deps<S>,
    life: &PodLife<S::Status>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<(String, Image)>> {
    let mut out = Vec::new();
    for (name, reference, policy) in of(&pod.pod) {
        let mut backoff = Backoff::retries(deps.pull_backoff);
        loop {
            let result = tokio::select! {
                // The pod's imagePullSecrets apply to its image volumes too.
                r = deps.images.ensure(
                    &reference,
                    policy,
                    super::pull_secrets::keyring(pod, &deps.objects.current()),
                ) => r,
                _ = stopped(stop) => return None,
            };
            match result {
                Ok(image) => {
                    tracing::info!(volume = %name, image = %reference, digest = %image.digest, "image volume ready");
                    out.push((name, image));
                    break;
                }
                Err(e) => {
                    let delay = backoff.next(Duration::ZERO);
                    let message = format!("image volume {name}: {e}");
                    tracing::warn!(volume = %name, image = %reference, reason = e.reason(), error = %e, retry_in_s = delay.as_secs(), "image volume not available; reason ImagePullBackOff until retry");
                    life.prepare_failed(e.reason(), &message);
                    if sleep_or_stop(delay, stop).await {
                        return None;
                    }
                    let message = format!("Back-off pulling image {reference:?} for volume {name}");
                    life.prepare_failed("ImagePullBackOff", &message);
                }
            }
        }
    }
    Some(out)
}

/// Blocking: mounts `image` on `dir` read-only (kept when already mounted).
pub(super) fn mount(dir: &Path, image: &Image) -> Result<(), VolumeProblem> {
    let io = |source| VolumeProblem::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    if super::volumes::is_mount_point(dir) {
        return Ok(());
    }
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let failed = |source: nix::Error| VolumeProblem::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(format!("mounting image {}: {source}", image.digest)),
    };
    match image.layers.as_slice() {
        [] => Ok(()),
        [one] => {
            // Overlay needs two lower layers without an upper one: a read-only bind.
            nix::mount::mount(Some(one), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(failed)?;
            nix::mount::mount(
                None::<&str>,
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                None::<&str>,
            )
            .map_err(failed)
        }
        layers => {
            let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
            let opts = format!("lowerdir={}", lower.join(":"));
            nix::mount::mount(
                Some("overlay"),
                dir,
                Some("overlay"),
                flags,
                Some(opts.as_str()),
            )
            .map_err(failed)
        }
    }
}

/// What image GC reads: one entry per image volume, in the shape of a container's
/// `monitor.json` (`id`, `image_digest`, `lower`).
pub(super) fn record(
    pod_dir: &Path,
    uid: &str,
    images: &[(String, Image)],
) -> Result<(), crate::state::StateError> {
    let entries: Vec<serde_json::Value> = images
        .iter()
        .map(|(name, image)| {
            serde_json::json!({
                "id": format!("{uid}/volume/{name}"),
                "image_digest": image.digest,
                "lower": image.layers,
            })
        })
        .collect();
    crate::state::write_json(&pod_dir.join(RECORD), &entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_as_the_api_server() {
        let pod: Pod = serde_yaml::from_str(
            "spec: {containers: [], volumes: [{name: a, image: {reference: 'r/x:1'}}, {name: b, image: {reference: 'r/x'}}, {name: c, image: {reference: 'r/x:1', pullPolicy: Never}}, {name: d, emptyDir: {}}]}",
        )
        .unwrap();
        let got: Vec<(String, PullPolicy)> = of(&pod).into_iter().map(|(n, _, p)| (n, p)).collect();
        assert_eq!(
            got,
            [
                ("a".to_string(), PullPolicy::IfNotPresent),
                ("b".to_string(), PullPolicy::Always),
                ("c".to_string(), PullPolicy::Never),
            ]
        );
    }
}
