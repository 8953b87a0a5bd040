//! One container's supervisor: pull, build the bundle, start through the runtime, wait,
//! apply the restart policy with crash-loop back-off, and stop gracefully when the pod
//! goes away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use tokio::sync::watch;
use tracing::Instrument;

use super::backoff::Backoff;
use super::{stopped, PodCtx};
use crate::bundle::{self, BundleInputs};
use crate::image::{Image, PullPolicy};
use crate::runtime::{Adopted, ExitRecord, Handle, MonitorConfig};

/// Why no container process is running.
enum NotStarted {
    /// The pod is being stopped.
    Stopping,
    /// The attempt failed the way a container run fails; the restart policy decides.
    Failed(ExitRecord),
}

pub(super) async fn supervise(
    ctx: Arc<PodCtx>,
    c: Container,
    mut adopted: Vec<Adopted>,
    mut stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("container", container = %c.name);
    async move {
        let rt = &ctx.deps.runtime;
        // The newest instance is the one that counts; older ones are dead leftovers.
        adopted.sort_by_key(|a| a.config.restart_count);
        let newest = adopted.pop();
        for old in adopted {
            stop_instance(&ctx, old).await;
        }
        let mut restart_count = newest.as_ref().map_or(0, |a| a.config.restart_count);
        let mut previous_id: Option<String> = None;
        let mut pending_exit: Option<(ExitRecord, Duration)> = None;
        let mut running: Option<(Handle, Instant)> = None;
        if let Some(a) = newest {
            tracing::info!(container_id = %a.config.id, restart_count, running = a.running.is_some(), "adopted");
            previous_id = Some(a.config.id.clone());
            match (a.running, a.exit) {
                (Some(h), _) => {
                    let ran = ran_for(&h.started_at);
                    running = Some((h, Instant::now() - ran));
                }
                (None, Some(exit)) => pending_exit = Some((exit, Duration::ZERO)),
                (None, None) => {}
            }
        }
        let mut crash = Backoff::restarts(ctx.deps.crash_backoff);
        loop {
            if let Some((h, since)) = running.take() {
                tokio::select! {
                    exit = rt.wait(&h) => {
                        log_exit(&h.id, restart_count, &exit);
                        pending_exit = Some((exit, since.elapsed()));
                    }
                    _ = stopped(&mut stop) => {
                        terminate(&ctx, &h).await;
                        break;
                    }
                }
            }
            if let Some((exit, ran)) = pending_exit.take() {
                if !ctx.restart_policy.restarts(exit.exit_code) {
                    tracing::info!(restart_policy = ?ctx.restart_policy, "not restarting");
                    stopped(&mut stop).await;
                    break;
                }
                let delay = crash.next(ran);
                if !delay.is_zero() {
                    tracing::info!(reason = "CrashLoopBackOff", delay_s = delay.as_secs(), "back-off restarting failed container");
                    if sleep_or_stop(delay, &mut stop).await {
                        break;
                    }
                }
                restart_count += 1;
            }
            if stopping(&stop) {
                break;
            }
            match start(&ctx, &c, restart_count, &mut stop).await {
                Ok(h) => {
                    if let Some(old) = previous_id.replace(h.id.clone()) {
                        rt.remove(&old);
                    }
                    running = Some((h, Instant::now()));
                }
                Err(NotStarted::Stopping) => break,
                Err(NotStarted::Failed(exit)) => {
                    tracing::warn!(reason = exit.reason(), error = exit.start_error.as_deref().unwrap_or(""), "container failed to start");
                    pending_exit = Some((exit, Duration::ZERO));
                }
            }
        }
        if let Some(id) = previous_id {
            rt.remove(&id);
        }
        tracing::info!("container stopped");
    }
    .instrument(span)
    .await
}

/// Stops (if it still runs) and removes a container left by an earlier agent that this
/// pod no longer supervises.
pub(super) async fn stop_adopted(ctx: Arc<PodCtx>, a: Adopted) {
    let span = tracing::info_span!("container", container = %a.config.container);
    stop_instance(&ctx, a).instrument(span).await
}

async fn stop_instance(ctx: &PodCtx, a: Adopted) {
    if let Some(h) = &a.running {
        terminate(ctx, h).await;
    }
    ctx.deps.runtime.remove(&a.config.id);
}

/// Stop signal, then SIGKILL once the grace period is over.
async fn terminate(ctx: &PodCtx, h: &Handle) {
    let rt = &ctx.deps.runtime;
    tracing::info!(container_id = %h.id, grace_s = ctx.grace.as_secs(), "stopping container");
    rt.stop(h);
    let exit = match tokio::time::timeout(ctx.grace, rt.wait(h)).await {
        Ok(exit) => exit,
        Err(_) => {
            tracing::info!(container_id = %h.id, "grace period over, killing container");
            rt.kill(h);
            rt.wait(h).await
        }
    };
    tracing::info!(container_id = %h.id, exit_code = exit.exit_code, reason = exit.reason(), "container terminated");
}

fn stopping(stop: &watch::Receiver<bool>) -> bool {
    // Copy the flag out so no lock guard lives across an await.
    let s = *stop.borrow();
    s
}

/// Returns true when stopped before the delay was over.
async fn sleep_or_stop(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stopped(stop) => true,
    }
}

fn log_exit(id: &str, restart_count: u32, exit: &ExitRecord) {
    tracing::info!(
        container_id = %id,
        restart_count,
        exit_code = exit.exit_code,
        signal = exit.signal,
        reason = exit.reason(),
        "container exited"
    );
}

fn ran_for(started_at: &str) -> Duration {
    started_at
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| jiff::Timestamp::now().duration_since(t).try_into().ok())
        .unwrap_or(Duration::ZERO)
}

fn pull_policy(c: &Container) -> PullPolicy {
    match c.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        _ => PullPolicy::IfNotPresent,
    }
}

/// The image, retried with back-off while the registry or the image is unavailable.
async fn pull(ctx: &PodCtx, c: &Container, stop: &mut watch::Receiver<bool>) -> Option<Image> {
    let reference = c.image.clone().unwrap_or_default();
    let mut backoff = Backoff::retries(ctx.deps.pull_backoff);
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = ctx.deps.images.ensure(&reference, pull_policy(c)) => r,
            _ = stopped(stop) => return None,
        };
        match result {
            Ok(image) => {
                tracing::debug!(image = %reference, digest = %image.digest, elapsed_ms = started.elapsed().as_millis() as u64, "image ready");
                return Some(image);
            }
            Err(e) => {
                let reason = e.reason();
                let delay = backoff.next(Duration::ZERO);
                tracing::warn!(image = %reference, reason, error = %e, retry_in_s = delay.as_secs(), "image not available; reason ImagePullBackOff until retry");
                if sleep_or_stop(delay, stop).await {
                    return None;
                }
            }
        }
    }
}

fn container_id(uid: &str, name: &str, restart_count: u32) -> String {
    format!("{}-{name}-{restart_count}", &uid[..uid.len().min(16)])
}

async fn start(
    ctx: &PodCtx,
    c: &Container,
    restart_count: u32,
    stop: &mut watch::Receiver<bool>,
) -> Result<Handle, NotStarted> {
    let image = pull(ctx, c, stop).await.ok_or(NotStarted::Stopping)?;
    let layout = &ctx.deps.layout;
    let id = container_id(&ctx.pod.uid, &c.name, restart_count);
    let dir = layout.container(&id);
    // A directory under this id can only be debris of an attempt that never started.
    ctx.deps.runtime.remove(&id);
    let bundle_dir = dir.join("bundle");
    let cgroups_path = format!("/hostlet/{id}");
    let failed = |message: String| {
        NotStarted::Failed(ExitRecord {
            exit_code: 128,
            signal: None,
            oom_killed: false,
            started_at: None,
            finished_at: crate::logs::rfc3339_nano(jiff::Timestamp::now()),
            start_error: Some(message),
        })
    };
    let spec = bundle::build_spec(
        &ctx.pod.pod,
        c,
        &BundleInputs {
            image: &image.config,
            image_file: &|rel| image.read_file(rel),
            rootfs: &bundle_dir.join("rootfs"),
            cgroups_path: &cgroups_path,
            volumes: &ctx.volumes,
        },
    )
    .map_err(|e| {
        tracing::warn!(reason = "CreateContainerConfigError", error = %e, "cannot build the runtime config");
        failed(e.to_string())
    })?;
    if let Err(e) = bundle::write(&bundle_dir, &spec) {
        ctx.deps.runtime.remove(&id);
        return Err(failed(e.to_string()));
    }
    let host_network = ctx
        .pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let cfg = MonitorConfig {
        id: id.clone(),
        pod_uid: ctx.pod.uid.clone(),
        pod_name: ctx.pod.name().to_string(),
        pod_namespace: ctx.pod.namespace().to_string(),
        container: c.name.clone(),
        restart_count,
        bundle: bundle_dir,
        lower: image.lower_dirs(),
        log_path: crate::logs::container_log_path(&ctx.log_dir, &c.name, restart_count),
        stop_signal: bundle::stop_signal(&image.config),
        new_netns: !host_network,
        cgroups_path,
    };
    let started = Instant::now();
    match ctx.deps.runtime.start(&cfg).await {
        Ok(h) => {
            tracing::info!(container_id = %id, pid = h.init_pid, restart_count, elapsed_ms = started.elapsed().as_millis() as u64, "container started");
            Ok(h)
        }
        Err(e) => {
            // The failure is reported through the restart policy; the attempt's debris
            // (bundle, overlay dirs) must not pile up across a crash loop.
            ctx.deps.runtime.remove(&id);
            Err(failed(e.to_string()))
        }
    }
}
