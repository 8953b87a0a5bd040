//! A pod's host resources, what it has on the host besides its containers: volumes,
//! the sandbox (namespaces, the pause process of a shared PID namespace, /etc files,
//! /dev/shm) and the pod cgroup. Made before the first container starts and removed after the last one ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use std::sync::Arc;

use tokio::sync::watch;

use super::deps::{stopped, stopping, Deps, PodCtx};
use super::error::SetupError;
use super::services::{PodReport, Services, StatusSink};
use super::states::PodLife;
use super::{idmapped, volumes};
use crate::cgroups::{self, PodCgroup};
use crate::network::NetworkError;
use crate::sandbox::{self, Placement, PodFiles, Shared};

/// Blocking: writes cgroup files and runs the sandbox helper.
pub(super) fn prepare<S: Services>(
    pod: &Pod,
    uid: &str,
    pod_dir: &Path,
    deps: &Deps<S>,
) -> Result<BTreeMap<String, PathBuf>, SetupError> {
    let vols = volumes::prepare(pod, pod_dir, &deps.node, &deps.objects.current())?;
    super::secret_env::prepare(pod, pod_dir).map_err(SetupError::SecretEnv)?;
    let files = PodFiles::new(pod_dir);
    sandbox::write_etc(pod, &files, &deps.network.opts.resolv_conf)?;
    let cg = PodCgroup::under(deps.node_cgroups.root(), pod, uid);
    // The pod cgroup first: the pause process is started in it.
    if let Some(h) = &deps.cgroups {
        let limits = cgroups::pod_limits(pod, deps.node.pod_max_pids);
        cgroups::create(h, &cg, &limits)?;
        deps.status.pod(uid, PodReport::Cgroup(&limits));
    }
    let fresh_netns = sandbox::missing(&files, Shared::of(pod)).net;
    ensure_sandbox_blocking(pod, &cg, &files, deps)?;
    let vols = if Shared::of(pod).user {
        idmapped::volumes(&files, vols)?
    } else {
        vols
    };
    if Shared::of(pod).net {
        // CNI ADD once the netns exists and before any container (CHECK when adopted).
        let net = (deps.network).setup(pod, uid, &files.ns("net"), fresh_netns)?;
        sandbox::write_hosts(pod, &files, &net.ips)?;
        deps.status.pod(uid, PodReport::Ips(&net.ips));
    }
    Ok(vols)
}

/// Makes whatever the pod's sandbox misses: everything at pod setup; nothing for an
/// adopted pod whose sandbox is intact; a new PID namespace and pause process when the
/// pause process died.
fn ensure_sandbox_blocking<S: Services>(
    pod: &Pod,
    cg: &PodCgroup,
    files: &PodFiles,
    deps: &Deps<S>,
) -> Result<(), SetupError> {
    let shared = Shared::of(pod);
    if sandbox::exists(files, shared) {
        return Ok(());
    }
    let ids = if shared.user {
        // Refused with the missing piece named, never run with the host's users.
        crate::userns::idmap::host_support()?;
        Some(deps.userns.allocate(&files.dir)?)
    } else {
        None
    };
    let hostname = sandbox::hostname(pod)?;
    // The small helper binary: the pause process is a fork of it and maps it for life.
    let exe = &deps.sandbox_helper;
    let placement = Placement::of(deps.cgroups.as_ref(), cg);
    Ok(sandbox::ensure(
        exe, files, shared, &hostname, &placement, ids,
    )?)
}

/// Called before each container start. When the pause process of a shared PID namespace
/// died, the kernel killed every process of the pod with it; the containers that restart
/// (per restartPolicy) get a new PID namespace with a new pause process, as the kubelet
/// restarts a pod's containers in a new sandbox.
pub(super) async fn ensure_sandbox<S: Services>(ctx: &PodCtx<S>) -> Result<(), SetupError> {
    let pod = &ctx.pod.pod;
    let files = PodFiles::new(&ctx.deps.layout.pod(&ctx.pod.uid));
    if !Shared::of(pod).pid || sandbox::pause::alive(&files).is_some() {
        return Ok(());
    }
    let (pod, cg, deps) = (pod.clone(), ctx.cgroup.clone(), ctx.deps.clone());
    tokio::task::spawn_blocking(move || ensure_sandbox_blocking(&pod, &cg, &files, &deps))
        .await
        .unwrap_or_else(|source| {
            Err(SetupError::Task {
                what: "recreating the pod sandbox",
                source,
            })
        })
}

/// A pod on the pod network waits while the network is not ready (its config does not
/// parse or a plugin is missing), as the kubelet holds pods while the runtime reports
/// NetworkReady=false: every container waits with reason `NetworkNotReady`. It is looked
/// at again whenever the CNI dirs change. hostNetwork pods and pods attached already
/// (adopted) never wait.
pub(super) async fn network_ready<S: Services>(
    pod: &Pod,
    uid: &str,
    deps: &Arc<Deps<S>>,
    life: &PodLife<S::Status>,
    stop: &mut watch::Receiver<bool>,
) {
    if !Shared::of(pod).net {
        return;
    }
    let mut changes = deps.network.changes();
    let mut waited: Option<String> = None;
    while !stopping(stop) {
        changes.borrow_and_update();
        let (d, u) = (deps.clone(), uid.to_string());
        let ready = tokio::task::spawn_blocking(move || {
            if d.network.attached(&u) {
                return Ok(());
            }
            d.network.readiness().map(drop)
        })
        .await;
        let message = match ready {
            Ok(Ok(())) => break,
            Ok(Err(e @ NetworkError::NotReady { .. })) => e.to_string(),
            Ok(Err(e)) => format!("network is not ready: {e}"),
            Err(e) => format!("network is not ready: {e}"),
        };
        if waited.as_ref() != Some(&message) {
            tracing::warn!(reason = NETWORK_NOT_READY, message = %message, "pod waits for the network");
            life.prepare_failed(NETWORK_NOT_READY, &message);
            waited = Some(message);
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = stopped(stop) => {}
        }
    }
    if waited.is_some() && !stopping(stop) {
        tracing::info!("pod network ready");
    }
}

/// The kubelet's reason (its event) for a pod held while the network is not ready.
pub const NETWORK_NOT_READY: &str = "NetworkNotReady";

/// CNI DEL of the pod's network, whichever agent attached it (the cache says what), while
/// its netns still exists. Nothing cached (hostNetwork), nothing to do.
pub(super) async fn network_down<S: Services>(uid: &str, deps: &Arc<Deps<S>>) {
    let (uid, d) = (uid.to_string(), deps.clone());
    let done = tokio::task::spawn_blocking(move || d.network.teardown(&uid)).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(error = %e, "detaching the pod network");
    }
}

/// Removes the sandbox, tmpfs volumes and the pod cgroup; what does not exist is skipped.
/// False when the pod directory must be kept (an idmapped volume stays mounted in it).
pub(super) fn teardown<S: Services>(pod: &Pod, uid: &str, pod_dir: &Path, deps: &Deps<S>) -> bool {
    sandbox::remove(&PodFiles::new(pod_dir));
    let clear = idmapped::cleanup(pod_dir);
    volumes::cleanup(pod_dir);
    super::secret_env::cleanup(pod_dir);
    if let Some(h) = &deps.cgroups {
        if let Err(e) = cgroups::remove(h, &PodCgroup::under(deps.node_cgroups.root(), pod, uid)) {
            tracing::warn!(error = %e, "removing pod cgroup");
        }
    }
    clear
}
