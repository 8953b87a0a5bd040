//! One container's life: start, probes, hooks, the restart policy with crash-loop
//! back-off, and graceful termination (preStop, stop signal, SIGKILL after the grace
//! period). Every transition is written to the status store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::backoff::Backoff;
use super::container::{log_exit, ran_for, sleep_or_stop, start, stopping, NotStarted};
use super::{stopped, PodCtx, RestartPolicy};
use crate::probe::{self, Action, Kind as ProbeKind, Target};
use crate::runtime::{Adopted, ExitRecord, Handle};
use crate::status::Kind;

/// How a container relates to its pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A regular container.
    App,
    /// A regular init container: runs to success before anything after it.
    Init,
    /// An init container with `restartPolicy: Always`: started before the next init
    /// container, kept running, stopped after the app containers.
    Sidecar,
}

impl Role {
    fn kind(self) -> Kind {
        match self {
            Role::App => Kind::App,
            Role::Init | Role::Sidecar => Kind::Init,
        }
    }

    fn restarts(self, policy: RestartPolicy, exit_code: i32) -> bool {
        match self {
            Role::App => policy.restarts(exit_code),
            Role::Sidecar => true,
            // The kubelet retries a failed init container unless the pod never restarts.
            Role::Init => exit_code != 0 && policy != RestartPolicy::Never,
        }
    }
}

/// How a supervisor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Ran to completion with exit 0 and will not run again.
    Succeeded,
    /// Ended with an error and will not run again.
    Failed,
    /// The pod was stopped.
    Stopped,
}

/// The flags a supervisor shares with its pod.
pub(super) struct Links {
    pub stop: watch::Receiver<bool>,
    /// True once the container runs and passed its startup probe.
    pub started: watch::Sender<bool>,
    /// True once the container will not run again (until the pod is stopped).
    pub finished: watch::Sender<bool>,
}

pub(super) enum InstanceEnd {
    Exited(ExitRecord),
    Stopped,
}

/// Supervises the `index`th container of `role`'s list in the pod's spec.
pub(super) async fn supervise(
    ctx: Arc<PodCtx>,
    index: usize,
    role: Role,
    mut adopted: Vec<Adopted>,
    mut links: Links,
) -> Outcome {
    let (init, app) = ctx.containers();
    let list = if role == Role::App { app } else { init };
    // The spec is the one the pod's containers were started from: the index is in it.
    let Some(c) = list.get(index) else {
        return Outcome::Failed;
    };
    let span = tracing::info_span!("container", container = %c.name);
    async {
        let rt = &ctx.deps.runtime;
        let (uid, kind) = (ctx.pod.uid.clone(), role.kind());
        let status = &ctx.deps.status;
        // The newest instance is the one that counts; older ones are dead leftovers.
        adopted.sort_by_key(|a| a.config.restart_count);
        let newest = adopted.pop();
        for old in adopted {
            Box::pin(stop_instance(&ctx, None, old)).await;
        }
        let mut restart_count = newest.as_ref().map_or(0, |a| a.config.restart_count);
        status.set_restart_count(&uid, kind, &c.name, restart_count);
        let mut previous_id: Option<String> = None;
        let mut pending_exit: Option<(ExitRecord, Duration)> = None;
        let mut running: Option<(Handle, Instant, bool)> = None;
        if let Some(a) = newest {
            tracing::info!(container_id = %a.config.id, restart_count, running = a.running.is_some(), "adopted");
            previous_id = Some(a.config.id.clone());
            match (a.running, a.exit) {
                (Some(h), _) => {
                    status.running(&uid, kind, &c.name, &h.id, &h.started_at, &a.config.image_digest);
                    let since = Instant::now() - ran_for(&h.started_at);
                    running = Some((h, since, false));
                }
                (None, Some(exit)) => {
                    status.terminated(&uid, kind, &c.name, &a.config.id, &exit);
                    pending_exit = Some((exit, Duration::ZERO));
                }
                (None, None) => {}
            }
        }
        let mut crash = Backoff::restarts(ctx.deps.crash_backoff);
        let outcome = loop {
            if let Some((h, since, fresh)) = running.take() {
                // Boxed, as start and the stop paths: each phase's state is allocated
                // only while it runs, and this future lives as long as the container.
                match Box::pin(run_instance(&ctx, c, &h, fresh, &mut links)).await {
                    InstanceEnd::Exited(exit) => {
                        log_exit(&h.id, restart_count, &exit);
                        status.terminated(&uid, kind, &c.name, &h.id, &exit);
                        pending_exit = Some((exit, since.elapsed()));
                    }
                    InstanceEnd::Stopped => break Outcome::Stopped,
                }
            }
            if let Some((exit, ran)) = pending_exit.take() {
                let _ = links.started.send(false);
                if !role.restarts(ctx.restart_policy, exit.exit_code) {
                    let done = if exit.exit_code == 0 { Outcome::Succeeded } else { Outcome::Failed };
                    tracing::info!(restart_policy = ?ctx.restart_policy, outcome = ?done, "not restarting");
                    let _ = links.finished.send(true);
                    if role == Role::Init {
                        // Keep the record: an agent restarted later must not run it again.
                        return done;
                    }
                    stopped(&mut links.stop).await;
                    break done;
                }
                let delay = crash.next(ran);
                if !delay.is_zero() {
                    let message = format!("back-off {}s restarting failed container={}", delay.as_secs(), c.name);
                    tracing::info!(reason = "CrashLoopBackOff", delay_s = delay.as_secs(), "back-off restarting failed container");
                    status.waiting(&uid, kind, &c.name, "CrashLoopBackOff", Some(message));
                    if sleep_or_stop(delay, &mut links.stop).await {
                        break Outcome::Stopped;
                    }
                }
                restart_count += 1;
                status.restarting(&uid, kind, &c.name, restart_count);
            }
            if stopping(&links.stop) {
                break Outcome::Stopped;
            }
            status.waiting(&uid, kind, &c.name, "ContainerCreating", None);
            match Box::pin(start(&ctx, c, restart_count, &mut links.stop)).await {
                Ok(h) => {
                    if let Some(old) = previous_id.replace(h.id.clone()) {
                        rt.remove(&old);
                    }
                    status.running(&uid, kind, &c.name, &h.id, &h.started_at, "");
                    running = Some((h, Instant::now(), true));
                }
                Err(NotStarted::Stopping) => break Outcome::Stopped,
                Err(NotStarted::Failed(exit)) => {
                    tracing::warn!(reason = exit.reason(), error = exit.start_error.as_deref().unwrap_or(""), "container failed to start");
                    status.terminated(&uid, kind, &c.name, "", &exit);
                    pending_exit = Some((exit, Duration::ZERO));
                }
            }
        };
        if let Some(id) = previous_id {
            rt.remove(&id);
        }
        tracing::info!("container stopped");
        outcome
    }
    .instrument(span)
    .await
}

/// Supervises one running instance: postStart, probes, exit, stop.
pub(super) async fn run_instance(
    ctx: &Arc<PodCtx>,
    c: &Container,
    h: &Handle,
    fresh: bool,
    links: &mut Links,
) -> InstanceEnd {
    let rt = &ctx.deps.runtime;
    let status = &ctx.deps.status;
    let kind = ctx.kind_of(&c.name);
    let target = Target {
        container_id: h.id.clone(),
        init_pid: h.init_pid,
        host_network: ctx.host_network(),
        ports: c.ports.clone().unwrap_or_default(),
    };
    if fresh {
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let result = tokio::select! {
                r = Box::pin(run_hook(ctx, hook, &target, ctx.grace())) => r,
                exit = rt.wait(h) => return InstanceEnd::Exited(exit),
            };
            if let Err(message) = result {
                tracing::warn!(reason = "FailedPostStartHook", %message, "postStart hook failed; killing the container");
                return InstanceEnd::Exited(Box::pin(terminate(ctx, Some(c), h)).await);
            }
        }
    }
    let (tx, mut rx) = mpsc::channel(8);
    let mut probes = JoinSet::new();
    let spawn = |probes: &mut JoinSet<()>,
                 kind: ProbeKind,
                 p: &Option<k8s_openapi::api::core::v1::Probe>| {
        if let Some(p) = p.clone() {
            probes.spawn(
                probe::run(kind, p, ctx.deps.clone(), target.clone(), tx.clone()).in_current_span(),
            );
        }
    };
    let mut started = c.startup_probe.is_none();
    if started {
        spawn(&mut probes, ProbeKind::Liveness, &c.liveness_probe);
        spawn(&mut probes, ProbeKind::Readiness, &c.readiness_probe);
        mark_started(ctx, c, links);
    } else {
        status.started(&ctx.pod.uid, kind, &c.name, false);
        spawn(&mut probes, ProbeKind::Startup, &c.startup_probe);
    }
    loop {
        tokio::select! {
            exit = rt.wait(h) => return InstanceEnd::Exited(exit),
            _ = stopped(&mut links.stop) => {
                Box::pin(terminate(ctx, Some(c), h)).await;
                return InstanceEnd::Stopped;
            }
            Some(ev) = rx.recv() => {
                match (ev.kind, ev.success) {
                    (ProbeKind::Startup, true) if !started => {
                        started = true;
                        spawn(&mut probes, ProbeKind::Liveness, &c.liveness_probe);
                        spawn(&mut probes, ProbeKind::Readiness, &c.readiness_probe);
                        mark_started(ctx, c, links);
                    }
                    (ProbeKind::Readiness, ready) => {
                        tracing::info!(ready, message = %ev.message, "readiness changed");
                        status.ready(&ctx.pod.uid, kind, &c.name, ready);
                    }
                    (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                        tracing::info!(probe = ev.kind.as_str(), message = %ev.message, "container failed its probe, will be restarted");
                        probes.abort_all();
                        return InstanceEnd::Exited(Box::pin(terminate(ctx, Some(c), h)).await);
                    }
                    _ => {}
                }
            }
        }
    }
}

fn mark_started(ctx: &PodCtx, c: &Container, links: &Links) {
    let (uid, kind) = (&ctx.pod.uid, ctx.kind_of(&c.name));
    ctx.deps.status.started(uid, kind, &c.name, true);
    // Without a readiness probe a started container is ready.
    if c.readiness_probe.is_none() {
        ctx.deps.status.ready(uid, kind, &c.name, true);
    }
    let _ = links.started.send(true);
}

/// Runs a postStart or preStop handler; `Err` is the message for the event.
async fn run_hook(
    ctx: &PodCtx,
    hook: &LifecycleHandler,
    t: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(s) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    let action = hook
        .exec
        .as_ref()
        .map(Action::Exec)
        .or_else(|| hook.http_get.as_ref().map(Action::HttpGet))
        .ok_or_else(|| "hook has no exec, httpGet or sleep action".to_string())?;
    probe::check(&ctx.deps.runtime, t, &action, timeout)
        .await
        .map_err(|e| e.to_string())
}

/// Stops and removes a container instance; `c` is its spec when known (for preStop).
pub(super) async fn stop_instance(ctx: &Arc<PodCtx>, c: Option<&Container>, a: Adopted) {
    if let Some(h) = &a.running {
        terminate(ctx, c, h).await;
    }
    ctx.deps.runtime.remove(&a.config.id);
}

/// Stops a container instance from a pod's adopted leftovers that the pod's current
/// spec no longer has.
pub(super) async fn stop_adopted(ctx: Arc<PodCtx>, a: Adopted) {
    let span = tracing::info_span!("container", container = %a.config.container);
    stop_instance(&ctx, None, a).instrument(span).await
}

/// preStop, then the stop signal, then SIGKILL when the grace period is over. A preStop
/// that uses up the grace period gets the kubelet's one-time 2 s extension.
pub(super) async fn terminate(ctx: &Arc<PodCtx>, c: Option<&Container>, h: &Handle) -> ExitRecord {
    let rt = &ctx.deps.runtime;
    tracing::info!(container_id = %h.id, grace_s = ctx.grace().as_secs(), "stopping container");
    let mut deadline = Instant::now() + ctx.grace();
    if let Some(hook) = c
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref())
    {
        let target = Target {
            container_id: h.id.clone(),
            init_pid: h.init_pid,
            host_network: ctx.host_network(),
            ports: c.and_then(|c| c.ports.clone()).unwrap_or_default(),
        };
        let run = tokio::select! {
            r = tokio::time::timeout(ctx.grace(), Box::pin(run_hook(ctx, hook, &target, ctx.grace()))) => Some(r),
            exit = rt.wait(h) => return exit,
        };
        match run {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(message))) => tracing::warn!(%message, "preStop hook failed"),
            Some(Err(_)) | None => {
                tracing::warn!("preStop hook did not finish within the grace period");
                deadline = Instant::now() + Duration::from_secs(2);
            }
        }
    }
    rt.stop(h);
    let left = deadline.saturating_duration_since(Instant::now());
    let exit = match tokio::time::timeout(left, rt.wait(h)).await {
        Ok(exit) => exit,
        Err(_) => {
            tracing::info!(container_id = %h.id, "grace period over, killing container");
            rt.kill(h);
            rt.wait(h).await
        }
    };
    tracing::info!(container_id = %h.id, exit_code = exit.exit_code, reason = exit.reason(), "container terminated");
    exit
}
