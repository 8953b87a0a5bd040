//! Applies in-place resizes to a running pod (the rules are in `resize`): new limits in
//! the pod cgroup and in the cgroups of the containers resized without a restart, a
//! restart of the containers whose resizePolicy asks for one; a memory limit that would
//! go below the usage waits, retried, with the kubelet's `PodResizeInProgress`/`Error`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::container::container_id;
use super::deps::PodCtx;
use super::resize::{decide, with_identity, Decision, Plan};
use super::services::{ResizeProgress, Services};
use crate::cgroups::resize::{self as cg, ContainerLimits};
use crate::cgroups::{pod_limits, CgroupError, Hierarchy, PodCgroup};
use crate::manifest::StaticPod;

/// How often a resize that waits (memory above the new limit) is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Follows the specs the manager sends for this running pod until the task is aborted.
pub(super) fn follow<S: Services>(
    ctx: Arc<PodCtx<S>>,
    mut specs: watch::Receiver<Arc<StaticPod>>,
) -> JoinHandle<()> {
    let task = async move {
        // Not marked unchanged: a spec sent while the pod was still being prepared is
        // applied now (the channel's first value is the pod's own spec, already seen).
        let mut pending: Option<(Arc<StaticPod>, Plan)> = None;
        loop {
            let retry = pending.is_some();
            tokio::select! {
                changed = specs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let edited = specs.borrow_and_update().clone();
                    let new = Arc::new(with_identity(&ctx.pod, &edited));
                    let old = ctx.spec();
                    match decide(&old.pod, &new.pod) {
                        Decision::InPlace(plan) => {
                            pending = Some((new.clone(), accept(&ctx, &new, &plan)));
                        }
                        Decision::Unchanged => {}
                        Decision::Recreate(why) => {
                            // The manager stops the pod instead; nothing to do here.
                            tracing::warn!(?why, "resize not applicable in place");
                        }
                    }
                }
                _ = tokio::time::sleep(RETRY), if retry => {}
            }
            if let Some((spec, plan)) = pending.take() {
                match apply(&ctx, &spec, &plan).await {
                    Ok(None) => {
                        tracing::info!("pod resized in place");
                        ctx.life.resize(&spec, None);
                        report_resources(&ctx, &spec, &plan);
                        if plan.pod_level && ctx.deps.cgroups.is_some() {
                            let max_pids = ctx.deps.node.pod_max_pids;
                            ctx.life.pod_cgroup(&pod_limits(&spec.pod, max_pids));
                        }
                    }
                    Ok(Some(why)) => {
                        tracing::info!(reason = "Error", message = %why, retry_in_s = RETRY.as_secs(), "pod resize in progress");
                        ctx.life.resize(&spec, Some(ResizeProgress::Error(&why)));
                        pending = Some((spec, plan));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = RETRY.as_secs(), "pod resize failed");
                        ctx.life
                            .resize(&spec, Some(ResizeProgress::Error(&e.to_string())));
                        pending = Some((spec, plan));
                    }
                }
            }
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()))
}

/// Takes `new` as the pod's spec: containers started from now on get its resources, and
/// the containers the plan restarts are told to. Returns the plan left to apply in place.
fn accept<S: Services>(ctx: &PodCtx<S>, new: &Arc<StaticPod>, plan: &Plan) -> Plan {
    let restart: Vec<&str> = plan.restarts().map(|c| c.name.as_str()).collect();
    tracing::info!(pod_level = plan.pod_level, in_place = ?plan.in_place().map(|c| &c.name).collect::<Vec<_>>(), restart = ?restart, "pod resize accepted");
    ctx.life.resize(new, Some(ResizeProgress::InProgress));
    // The pod keeps the UID it started with, whatever the edited manifest's is.
    let record = ctx
        .deps
        .layout
        .pod(&ctx.pod.uid)
        .join(super::deps::POD_RECORD);
    if let Err(e) = crate::state::write_json(&record, &new.pod) {
        tracing::warn!(error = %e, "writing the resized pod record");
    }
    ctx.resized.send_modify(|r| {
        r.pod = Some(new.clone());
        for name in &restart {
            *r.restarts.entry(name.to_string()).or_default() += 1;
        }
    });
    Plan {
        // Without pod-level resources the pod cgroup's limits are its containers' sums.
        pod_level: plan.pod_level || !plan.containers.is_empty(),
        containers: plan.in_place().cloned().collect(),
    }
}

/// Writes the plan's limits; `Some(why)` when a memory limit has to wait for the usage.
async fn apply<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    spec: &Arc<StaticPod>,
    plan: &Plan,
) -> Result<Option<String>, CgroupError> {
    let Some(h) = ctx.deps.cgroups.clone() else {
        return Ok(None);
    };
    let (ctx2, spec2, plan2) = (ctx.clone(), spec.clone(), plan.clone());
    let done = tokio::task::spawn_blocking(move || write(&h, &ctx2, &spec2, &plan2)).await;
    let out = done.unwrap_or_else(|e| {
        Err(CgroupError::Io {
            path: ctx.cgroup.path.clone().into(),
            source: std::io::Error::other(e.to_string()),
        })
    })?;
    if out.is_none() {
        // The burstable level's cpu shares follow the pods' requests.
        let (d, uid, pod) = (ctx.deps.clone(), ctx.pod.uid.clone(), spec.pod.clone());
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = d.node_cgroups.pod_started(&uid, &pod) {
                tracing::warn!(error = %e, "updating QoS cgroups");
            }
        })
        .await;
    }
    Ok(out)
}

/// Blocking: the pod cgroup before the containers when its memory grows, after them
/// when it shrinks, so a container's limit never waits on its pod's.
fn write<S: Services>(
    h: &Hierarchy,
    ctx: &PodCtx<S>,
    spec: &StaticPod,
    plan: &Plan,
) -> Result<Option<String>, CgroupError> {
    let pod_cg: &PodCgroup = &ctx.cgroup;
    let max_pids = ctx.deps.node.pod_max_pids;
    let new = pod_limits(&spec.pod, max_pids);
    let mut waits = Vec::new();
    let usage = |id: Option<&str>| cg::memory_usage(h, pod_cg, id);
    let over = new
        .memory
        .is_some_and(|m| usage(None).is_some_and(|u| u > m));
    if plan.pod_level && !over {
        cg::update_pod(h, pod_cg, &new)?;
    }
    let ids = cg::container_ids(h, pod_cg);
    for c in &plan.containers {
        let Some(container) = container_spec(spec, &c.name) else {
            continue;
        };
        let Some(id) = running_id(&ids, &ctx.pod.uid, &c.name) else {
            // Not running now: its next start has the new resources.
            continue;
        };
        let limits = ContainerLimits::of(container);
        let mut memory = true;
        if let (true, Some(limit), Some(used)) = (c.memory_decrease, limits.memory, usage(Some(id)))
        {
            if used > limit {
                memory = false;
                waits.push(format!(
                    "attempting to resize memory limit ({limit}) below memory usage ({used}) of container {}",
                    c.name
                ));
            }
        }
        cg::update_container(h, pod_cg, id, &limits, memory)?;
    }
    if plan.pod_level && over {
        let used = usage(None).unwrap_or(0);
        match new.memory {
            Some(limit) if used > limit => {
                let keep = crate::cgroups::PodLimits {
                    memory: None,
                    ..new.clone()
                };
                cg::update_pod(h, pod_cg, &keep)?;
                waits.push(format!(
                    "attempting to resize pod memory limit ({limit}) below memory usage ({used})"
                ));
            }
            _ => cg::update_pod(h, pod_cg, &new)?,
        }
    }
    Ok((!waits.is_empty()).then(|| waits.join("; ")))
}

fn container_spec<'a>(
    spec: &'a StaticPod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::Container> {
    let s = spec.pod.spec.as_ref()?;
    let init = s.init_containers.iter().flatten();
    init.chain(&s.containers).find(|c| c.name == name)
}

/// The id of container `name`'s newest instance among the pod cgroup's `ids`.
fn running_id<'a>(ids: &'a [String], uid: &str, name: &str) -> Option<&'a str> {
    let first = container_id(uid, name, 0);
    let prefix = first.strip_suffix('0').unwrap_or(&first);
    ids.iter()
        .filter_map(|id| {
            let n: u32 = id.strip_prefix(prefix)?.parse().ok()?;
            Some((n, id.as_str()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, id)| id)
}

/// The resources the containers resized in place have now.
fn report_resources<S: Services>(ctx: &PodCtx<S>, spec: &StaticPod, plan: &Plan) {
    for c in plan.in_place() {
        if let Some(container) = container_spec(spec, &c.name) {
            let kind = match ctx.containers().1.iter().any(|a| a.name == c.name) {
                true => crate::status::Kind::App,
                false => crate::status::Kind::Init,
            };
            ctx.life
                .container_resources(kind, &c.name, container.resources.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_instance_of_the_named_container() {
        let uid = "0123456789abcdef0123";
        let ids: Vec<String> = [
            "0123456789abcdef-a-0",
            "0123456789abcdef-a-b-3",
            "0123456789abcdef-a-2",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(running_id(&ids, uid, "a"), Some("0123456789abcdef-a-2"));
        assert_eq!(running_id(&ids, uid, "a-b"), Some("0123456789abcdef-a-b-3"));
        assert_eq!(running_id(&ids, uid, "b"), None);
    }
}
