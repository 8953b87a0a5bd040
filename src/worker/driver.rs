//! The pod driver: takes one pod through its states (see `states::PodState`): waits for
//! the pod it replaces to be gone, prepares its host resources, runs its containers in
//! order and, when told to stop, terminates them and removes everything the pod had.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::backoff::Backoff;
use super::deps::{stopped, Deps, HandleOf, PodCtx, POD_RECORD};
use super::error::SetupError;
use super::rules::{self, RestartPolicy};
use super::services::{Services, StatusSink};
use super::states::PodLife;
use super::volumes::VolumeError;
use super::{eviction, host_resources, image_volumes, pod, resizer};
use crate::manifest::StaticPod;
use crate::runtime::Adopted;
use crate::state;

/// Runs the pod until `stop` turns true, then terminates it; `predecessors` are the
/// "done" flags of earlier pods with the same name, which must be fully gone first;
/// `resize` brings the edited specs the pod resizes to in place (`resize::decide`).
pub async fn run_pod<S: Services>(
    pod: Arc<StaticPod>,
    adopted: Vec<Adopted<HandleOf<S>>>,
    deps: Arc<Deps<S>>,
    stop: watch::Receiver<bool>,
    predecessors: Vec<watch::Receiver<bool>>,
    resize: watch::Receiver<Arc<StaticPod>>,
) {
    let span = tracing::info_span!("pod", pod = %pod.full_name(), uid = %pod.uid);
    let pod = if deps.user_namespaces_default {
        with_user_namespace(pod)
    } else {
        pod
    };
    let mut stop = explicit_stop(stop);
    async move {
        wait_for(predecessors, &mut stop).await;
        let pod_dir = deps.layout.pod(&pod.uid);
        let stopping = *stop.borrow_and_update();
        let life = PodLife::new(&pod.uid, deps.status.clone(), !stopping, app_names(&pod));
        life.preparing(&pod);
        if let Some(message) = eviction::recorded(&pod_dir) {
            // Evicted before the agent restarted: it stays so until the manifest changes.
            Box::pin(eviction::hold_recorded(&life, &message, &mut stop)).await;
            life.terminating();
            life.terminated();
            remove_pod_dir(&pod_dir);
            return;
        }
        Box::pin(host_resources::network_ready(
            &pod.pod, &pod.uid, &deps, &life, &mut stop,
        ))
        .await;
        let volumes = Box::pin(prepare_until_ready(&pod, &pod_dir, &deps, &life, &mut stop)).await;
        let (ctx, run_stop) = pod_ctx(&pod, &deps, &life, volumes, &stop);
        let ctx = Arc::new(ctx);
        if !stopping {
            tracing::info!("pod started");
        }
        let watch_stop = terminating_on(stop.clone(), life.clone());
        let refresher = keep_projections_fresh(&pod, &pod_dir, &deps);
        let resizer = resizer::follow(ctx.clone(), resize);
        let evicted = ctx.evicted.clone();
        // Boxed, as the other phases below: each lives in the task only while it runs.
        Box::pin(pod::run_containers(ctx, adopted, run_stop)).await;
        let evicted = evicted.borrow().clone();
        if let Some(e) = evicted {
            Box::pin(eviction::hold(&pod, &pod_dir, &deps, &e, &mut stop)).await;
        }
        watch_stop.abort();
        resizer.abort();
        if let Some(r) = refresher {
            r.abort();
        }
        life.terminating();
        life.terminated();
        host_resources::network_down(&pod.uid, &deps).await;
        release(&pod, &pod_dir, &deps);
        if !stopping {
            gc_logs_later(&deps, &pod);
        }
        tracing::info!("pod terminated");
        crate::heap::release_soon();
    }
    .instrument(span)
    .await
}

/// `--user-namespaces-default`: the pod as the worker runs it, `hostUsers: false` when it
/// leaves it unset and can (the pod's record on disk says so too, for an orphan's stop).
fn with_user_namespace(pod: Arc<StaticPod>) -> Arc<StaticPod> {
    let mut p = pod.pod.clone();
    if !crate::userns::default_to_user_namespace(&mut p) {
        return pod;
    }
    Arc::new(StaticPod {
        pod: p,
        uid: pod.uid.clone(),
        source: pod.source.clone(),
    })
}

/// The manager's stop flag as the pod sees it: set only when the manager sets it. A
/// manager that goes away (the agent stopping, its tasks dropped) says nothing to its
/// pods: their containers outlive the agent, for the next one to adopt. Read as "stop",
/// the closed channel had every worker send its containers their stop signal while the
/// agent shut down.
fn explicit_stop(mut from: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*from.borrow_and_update());
    tokio::spawn(async move {
        tokio::select! {
            set = async { from.wait_for(|s| *s).await.is_ok() } => {
                if set {
                    let _ = tx.send(true);
                } else {
                    // Kept until the pod's own receivers are gone (never, while the
                    // agent shuts down).
                    tx.closed().await;
                }
            }
            _ = tx.closed() => {}
        }
    });
    rx
}

/// Waits until every predecessor is gone, or the pod is stopped.
async fn wait_for(predecessors: Vec<watch::Receiver<bool>>, stop: &mut watch::Receiver<bool>) {
    for mut p in predecessors {
        tokio::select! {
            _ = stopped(&mut p) => {}
            _ = stopped(stop) => {}
        }
    }
}

fn app_names(pod: &StaticPod) -> Vec<String> {
    let spec = pod.pod.spec.as_ref();
    spec.map_or_else(Vec::new, |s| {
        s.containers.iter().map(|c| c.name.clone()).collect()
    })
}

/// The pod is Terminating as soon as it is told to stop, while its containers stop.
fn terminating_on<St: StatusSink>(
    mut stop: watch::Receiver<bool>,
    life: PodLife<St>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        stopped(&mut stop).await;
        life.terminating();
    })
}

/// Rewrites the pod's configMap, secret and projected volumes whenever the ConfigMaps and
/// Secrets change (the kubelet's periodic sync, but at once); env vars and subPath mounts
/// keep the values they had when their container started.
fn keep_projections_fresh<S: Services>(
    pod: &Arc<StaticPod>,
    pod_dir: &Path,
    deps: &Arc<Deps<S>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let volumes = pod.pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    if !volumes.is_some_and(|v| v.iter().any(super::projection::is_projection)) {
        return None;
    }
    let mut rx = deps.objects.subscribe();
    let (pod, dir, deps) = (pod.clone(), pod_dir.to_path_buf(), deps.clone());
    let task = async move {
        loop {
            let set = rx.borrow_and_update().clone();
            let (p, d, dd) = (pod.clone(), dir.clone(), deps.clone());
            let job = tokio::task::spawn_blocking(move || {
                super::volumes::refresh(&p.pod, &d, &dd.node, &set)
            });
            for r in job.await.unwrap_or_default() {
                match r {
                    Ok(name) => {
                        tracing::info!(volume = %name, "volume updated from its ConfigMaps and Secrets")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot update volume; it keeps its files")
                    }
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    };
    Some(tokio::spawn(task.instrument(tracing::Span::current())))
}

/// What the pod's supervisors share, with the eviction guard watching its volumes; and
/// the stop flag of its containers, set when the pod is stopped or evicted.
fn pod_ctx<S: Services>(
    pod: &Arc<StaticPod>,
    deps: &Arc<Deps<S>>,
    life: &PodLife<S::Status>,
    volumes: BTreeMap<String, PathBuf>,
    stop: &watch::Receiver<bool>,
) -> (PodCtx<S>, watch::Receiver<bool>) {
    let spec = pod.pod.spec.as_ref();
    let interval = deps.housekeeping_interval;
    let (run_stop, evicted) = eviction::guard(
        pod,
        &volumes,
        interval,
        life.clone(),
        stop.clone(),
        &deps.node_kills,
    );
    let ctx = PodCtx {
        log_dir: crate::logs::pod_log_dir(
            &deps.pod_logs_dir,
            pod.namespace(),
            pod.name(),
            &pod.uid,
        ),
        pod: pod.clone(),
        deps: deps.clone(),
        life: life.clone(),
        volumes,
        cgroup: crate::cgroups::PodCgroup::under(deps.node_cgroups.root(), &pod.pod, &pod.uid),
        grace: rules::pod_grace(spec),
        restart_policy: RestartPolicy::of(spec),
        evicted,
        resized: watch::Sender::new(Default::default()),
    };
    (ctx, run_stop)
}

/// Nothing starts in a pod whose directory, volumes, namespaces or cgroup could not be
/// made: retried with back-off, as the kubelet re-syncs a pod. A pod on its way out
/// creates nothing (no hostPath directories for it) and gets no volumes.
async fn prepare_until_ready<S: Services>(
    pod: &StaticPod,
    pod_dir: &Path,
    deps: &Arc<Deps<S>>,
    life: &PodLife<S::Status>,
    stop: &mut watch::Receiver<bool>,
) -> BTreeMap<String, PathBuf> {
    let mut backoff = Backoff::retries(deps.pull_backoff);
    let mut objects = deps.objects.subscribe();
    while !*stop.borrow() {
        objects.mark_unchanged();
        let Some(images) = Box::pin(image_volumes::pull(pod, deps, life, stop)).await else {
            break;
        };
        match prepare(pod, pod_dir, deps, images).await {
            Ok(v) => return v,
            Err(e) => {
                let delay = backoff.next(Duration::ZERO);
                tracing::error!(error = %e, reason = "CreateContainerConfigError", retry_in_s = delay.as_secs(), "preparing pod");
                life.prepare_failed("CreateContainerConfigError", &e.to_string());
                // A ConfigMap or Secret that appears is tried at once, as the kubelet's
                // pod worker is woken by the object's informer.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = objects.changed() => {}
                    _ = stopped(stop) => {}
                }
            }
        }
    }
    BTreeMap::new()
}

/// The pod's directory, record, environment (volumes, with the pulled `images` of its
/// image volumes mounted; namespaces, cgroup).
async fn prepare<S: Services>(
    pod: &StaticPod,
    pod_dir: &Path,
    deps: &Arc<Deps<S>>,
    images: Vec<(String, crate::image::Image)>,
) -> Result<BTreeMap<String, PathBuf>, SetupError> {
    let missing = crate::manifest::refs::check(&pod.pod, &deps.objects.current());
    if !missing.is_empty() {
        let all: Vec<String> = missing.iter().map(ToString::to_string).collect();
        return Err(SetupError::References(all.join("; ")));
    }
    state::create_dir_all(pod_dir)?;
    state::write_json(&pod_dir.join(POD_RECORD), &pod.pod)?;
    let (p, uid, dir, d) = (
        pod.pod.clone(),
        pod.uid.clone(),
        pod_dir.to_path_buf(),
        deps.clone(),
    );
    tokio::task::spawn_blocking(move || {
        // The QoS levels first, as the kubelet's UpdateQOSCgroups before the pod cgroup.
        if let Err(e) = d.node_cgroups.pod_started(&uid, &p) {
            tracing::warn!(error = %e, "updating QoS cgroups");
        }
        let vols = host_resources::prepare(&p, &uid, &dir, &d)?;
        // Recorded before they are mounted: image GC keeps what a pod may be mounting.
        image_volumes::record(&dir, &uid, &images)?;
        for (name, image) in &images {
            if let Some(path) = vols.get(name) {
                image_volumes::mount(path, image).map_err(|reason| VolumeError::Invalid {
                    index: volume_index(&p, name),
                    name: name.clone(),
                    reason,
                })?;
            }
        }
        Ok(vols)
    })
    .await
    .unwrap_or_else(|source| {
        Err(SetupError::Task {
            what: "preparing pod",
            source,
        })
    })
}

fn volume_index(pod: &k8s_openapi::api::core::v1::Pod, name: &str) -> usize {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .and_then(|v| v.iter().position(|v| v.name == name))
        .unwrap_or_default()
}

/// Removes what the pod had on the host once its containers are gone.
fn release<S: Services>(pod: &StaticPod, pod_dir: &Path, deps: &Deps<S>) {
    let clear = host_resources::teardown(&pod.pod, &pod.uid, pod_dir, deps);
    if let Err(e) = deps.node_cgroups.pod_stopped(&pod.uid) {
        tracing::warn!(error = %e, "updating QoS cgroups");
    }
    if clear {
        remove_pod_dir(pod_dir);
    }
}

fn remove_pod_dir(pod_dir: &Path) {
    if let Err(e) = state::remove_dir_all(pod_dir) {
        tracing::warn!(error = %e, "removing pod directory");
    }
}

/// Removes a deleted pod's log directory after a while, as the kubelet's garbage
/// collection does, so `hostlet logs` still works right after a pod went away.
fn gc_logs_later<S: Services>(deps: &Arc<Deps<S>>, pod: &StaticPod) {
    let dir = crate::logs::pod_log_dir(&deps.pod_logs_dir, pod.namespace(), pod.name(), &pod.uid);
    let (deps, uid) = (deps.clone(), pod.uid.clone());
    tokio::spawn(async move {
        tokio::time::sleep(deps.pod_logs_gc_delay).await;
        // The same manifest may have come back meanwhile: its logs are in use again.
        if deps.status.has_pod(&uid) {
            return;
        }
        match state::remove_dir_all(&dir) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "removed logs of a deleted pod"),
            Err(e) => tracing::warn!(error = %e, "removing logs of a deleted pod"),
        }
    });
}

/// Terminates a pod an earlier agent started and no source declares any more.
pub async fn stop_orphan<S: Services>(
    uid: String,
    adopted: Vec<Adopted<HandleOf<S>>>,
    deps: Arc<Deps<S>>,
) {
    let record = deps.layout.pod(&uid).join(POD_RECORD);
    let pod = match state::read_json::<k8s_openapi::api::core::v1::Pod>(&record) {
        Ok(Some(pod)) => pod,
        _ => Default::default(),
    };
    let pod = Arc::new(StaticPod {
        pod,
        uid,
        source: crate::manifest::Origin::default(),
    });
    let (tx, rx) = watch::channel(true);
    let (_resize, specs) = watch::channel(pod.clone());
    run_pod(pod, adopted, deps, rx, Vec::new(), specs).await;
    drop(tx);
}
