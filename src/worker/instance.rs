//! One running container instance: its postStart hook, its probes and what their
//! results do, its exit, and graceful termination (preStop, stop signal, SIGKILL after
//! the grace period).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use super::deps::{stopped, HandleOf, Links, PodCtx, Resized};
use super::rules::{self, PreStop, ProbeEffect};
use super::services::{ContainerHandle, ContainerRuntime, Services};
use super::states::ContainerLife;
use crate::probe::{self, Action, Checker, Kind as ProbeKind, ProbeError, Target};
use crate::runtime::{Adopted, ExitRecord};

pub(super) enum InstanceEnd {
    Exited(ExitRecord),
    Stopped,
    /// Stopped for a resize whose resizePolicy restarts the container (`resizer`).
    Resized(ExitRecord),
}

/// Resolves once a resize asks the container `name` for a restart, `seen` restarts on.
async fn resize_restart(rx: &mut watch::Receiver<Resized>, name: &str, seen: u32) {
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        let now = rx.borrow_and_update().restarts.get(name).copied();
        if now.unwrap_or(0) > seen {
            return;
        }
    }
}

/// Where probes and hooks of the instance `h` of `c` reach it.
fn target<S: Services>(ctx: &PodCtx<S>, c: Option<&Container>, h: &HandleOf<S>) -> Target {
    Target {
        container_id: h.id().to_string(),
        init_pid: h.init_pid(),
        host_network: ctx.host_network(),
        ports: c.and_then(|c| c.ports.clone()).unwrap_or_default(),
        labels: crate::metrics::ProbeLabels {
            namespace: ctx.pod.namespace().to_string(),
            pod: ctx.pod.name().to_string(),
            pod_uid: ctx.pod.uid.clone(),
            container: c.map(|c| c.name.clone()).unwrap_or_default(),
        },
    }
}

/// The probes of one instance, sending their verdict changes to one channel.
struct Probes<'a, S: Services> {
    ctx: &'a Arc<PodCtx<S>>,
    target: Target,
    tx: mpsc::Sender<probe::Event>,
    tasks: JoinSet<()>,
}

impl<S: Services> Probes<'_, S> {
    fn spawn(&mut self, kind: ProbeKind, p: &Option<k8s_openapi::api::core::v1::Probe>) {
        if let Some(p) = p.clone() {
            let (deps, t, tx) = (self.ctx.deps.clone(), self.target.clone(), self.tx.clone());
            self.tasks
                .spawn(probe::run(kind, p, deps, t, tx).in_current_span());
        }
    }
}

/// Supervises one running instance: postStart, probes, exit, stop.
pub(super) async fn run_instance<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    c: &Container,
    h: &HandleOf<S>,
    fresh: bool,
    life: &mut ContainerLife<S::Status>,
    links: &mut Links,
) -> InstanceEnd {
    let rt = &ctx.deps.runtime;
    if fresh {
        if let Some(end) = post_start(ctx, c, h, life).await {
            return end;
        }
    }
    let (tx, mut rx) = mpsc::channel(8);
    let mut probes = Probes {
        ctx,
        target: target(ctx, Some(c), h),
        tx,
        tasks: JoinSet::new(),
    };
    let mut resized = ctx.resized.subscribe();
    let seen = resized.borrow_and_update().restarts.get(&c.name).copied();
    let mut started = c.startup_probe.is_none();
    if started {
        probes.spawn(ProbeKind::Liveness, &c.liveness_probe);
        probes.spawn(ProbeKind::Readiness, &c.readiness_probe);
        mark_started(c, life, links);
    } else {
        life.started(false);
        probes.spawn(ProbeKind::Startup, &c.startup_probe);
    }
    loop {
        tokio::select! {
            exit = rt.wait(h) => return InstanceEnd::Exited(exit),
            _ = stopped(&mut links.stop) => {
                life.terminating();
                Box::pin(terminate(ctx, Some(c), h)).await;
                return InstanceEnd::Stopped;
            }
            _ = resize_restart(&mut resized, &c.name, seen.unwrap_or(0)) => {
                tracing::info!("resized with resizePolicy RestartContainer: restarting the container");
                probes.tasks.abort_all();
                life.terminating();
                return InstanceEnd::Resized(Box::pin(terminate(ctx, Some(c), h)).await);
            }
            Some(ev) = rx.recv() => match rules::probe_effect(ev.kind, ev.success, started) {
                ProbeEffect::Started => {
                    started = true;
                    probes.spawn(ProbeKind::Liveness, &c.liveness_probe);
                    probes.spawn(ProbeKind::Readiness, &c.readiness_probe);
                    mark_started(c, life, links);
                }
                ProbeEffect::Ready(ready) => {
                    tracing::info!(ready, message = %ev.message, "readiness changed");
                    life.ready(ready);
                }
                ProbeEffect::Restart => {
                    tracing::info!(probe = ev.kind.as_str(), message = %ev.message, "container failed its probe, will be restarted");
                    probes.tasks.abort_all();
                    life.terminating();
                    return InstanceEnd::Exited(Box::pin(terminate(ctx, Some(c), h)).await);
                }
                ProbeEffect::Nothing => {}
            }
        }
    }
}

/// Runs the postStart hook of a new instance; the end of the instance when it exited
/// meanwhile or the hook failed (the container is then killed, as the kubelet does).
async fn post_start<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    c: &Container,
    h: &HandleOf<S>,
    life: &mut ContainerLife<S::Status>,
) -> Option<InstanceEnd> {
    let hook = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())?;
    let t = target(ctx, Some(c), h);
    let result = tokio::select! {
        r = Box::pin(run_hook(ctx, hook, &t, ctx.grace())) => r,
        exit = ctx.deps.runtime.wait(h) => return Some(InstanceEnd::Exited(exit)),
    };
    let message = result.err()?;
    tracing::warn!(reason = "FailedPostStartHook", %message, "postStart hook failed; killing the container");
    life.terminating();
    Some(InstanceEnd::Exited(
        Box::pin(terminate(ctx, Some(c), h)).await,
    ))
}

fn mark_started<St: super::services::StatusSink>(
    c: &Container,
    life: &ContainerLife<St>,
    links: &Links,
) {
    life.started(true);
    if rules::ready_when_started(c) {
        life.ready(true);
    }
    let _ = links.started.send(true);
}

/// Runs a postStart or preStop handler; `Err` is the message for the event.
async fn run_hook<S: Services>(
    ctx: &PodCtx<S>,
    hook: &LifecycleHandler,
    t: &Target,
    timeout: Duration,
) -> Result<(), ProbeError> {
    if let Some(s) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    let action = hook
        .exec
        .as_ref()
        .map(Action::Exec)
        .or_else(|| hook.http_get.as_ref().map(Action::HttpGet))
        .ok_or(ProbeError::NoHookAction)?;
    ctx.deps.runtime.check(t, &action, timeout).await
}

/// Stops and removes a container instance; `c` is its spec when known (for preStop).
pub(super) async fn stop_instance<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    c: Option<&Container>,
    a: Adopted<HandleOf<S>>,
) {
    if let Some(h) = &a.running {
        terminate(ctx, c, h).await;
    }
    ctx.deps.runtime.remove(&a.config.id);
}

/// Stops a container instance from a pod's adopted leftovers that the pod's current
/// spec no longer has.
pub(super) async fn stop_adopted<S: Services>(ctx: Arc<PodCtx<S>>, a: Adopted<HandleOf<S>>) {
    let span = tracing::info_span!("container", container = %a.config.container);
    stop_instance(&ctx, None, a).instrument(span).await
}

/// preStop, then the stop signal, then SIGKILL when the grace period is over. A preStop
/// that uses up the grace period gets the kubelet's one-time extension.
pub(super) async fn terminate<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    c: Option<&Container>,
    h: &HandleOf<S>,
) -> ExitRecord {
    let rt = &ctx.deps.runtime;
    let grace = ctx.grace();
    tracing::info!(container_id = %h.id(), grace_s = grace.as_secs(), "stopping container");
    let begun = Instant::now();
    let mut pre_stop = PreStop::Done;
    if let Some(hook) = c
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref())
    {
        let t = target(ctx, c, h);
        let run = tokio::select! {
            r = tokio::time::timeout(grace, Box::pin(run_hook(ctx, hook, &t, grace))) => r,
            exit = rt.wait(h) => return exit,
        };
        match run {
            Ok(Ok(())) => {}
            Ok(Err(message)) => tracing::warn!(%message, "preStop hook failed"),
            Err(_) => {
                tracing::warn!("preStop hook did not finish within the grace period");
                pre_stop = PreStop::TimedOut;
            }
        }
    }
    rt.stop(h);
    let left = rules::kill_deadline(grace, begun.elapsed(), pre_stop);
    let exit = match tokio::time::timeout(left, rt.wait(h)).await {
        Ok(exit) => exit,
        Err(_) => {
            tracing::info!(container_id = %h.id(), "grace period over, killing container");
            rt.kill(h);
            rt.wait(h).await
        }
    };
    tracing::info!(container_id = %h.id(), exit_code = exit.exit_code, reason = exit.reason(), "container terminated");
    exit
}
