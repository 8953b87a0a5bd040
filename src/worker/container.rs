//! Starting one instance of a container: pull its image (with back-off), build and write
//! the bundle, hand it to the runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use tokio::sync::watch;

use super::backoff::Backoff;
use super::deps::{sleep_or_stop, stopped, HandleOf, PodCtx};
use super::error::SetupError;
use super::services::{ContainerHandle, ContainerRuntime, Images, Services};
use super::states::ContainerLife;
use crate::bundle::{self, BundleInputs};
use crate::image::{Image, PullPolicy};
use crate::runtime::{ExitRecord, MonitorConfig};

/// Why no container process is running.
pub(super) enum NotStarted {
    /// The pod is being stopped.
    Stopping,
    /// The attempt failed the way a container run fails; the restart policy decides.
    Failed(ExitRecord),
}

pub(super) fn log_exit(id: &str, restart_count: u32, exit: &ExitRecord) {
    tracing::info!(
        container_id = %id,
        restart_count,
        exit_code = exit.exit_code,
        signal = exit.signal,
        reason = exit.reason(),
        "container exited"
    );
}

pub(super) fn ran_for(started_at: &str) -> Duration {
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
async fn pull<S: Services>(
    ctx: &PodCtx<S>,
    c: &Container,
    life: &ContainerLife<S::Status>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Image> {
    let reference = c.image.clone().unwrap_or_default();
    let mut backoff = Backoff::retries(ctx.deps.pull_backoff);
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            // Read at every attempt: a pull secret that appears later is used by the retry.
            r = ctx.deps.images.ensure(
                &reference,
                pull_policy(c),
                super::pull_secrets::keyring(&ctx.pod, &ctx.deps.objects.current()),
            ) => r,
            _ = stopped(stop) => return None,
        };
        match result {
            Ok(image) => {
                life.image_ready(&image.digest);
                tracing::debug!(image = %reference, digest = %image.digest, elapsed_ms = started.elapsed().as_millis() as u64, "image ready");
                return Some(image);
            }
            Err(e) => {
                let reason = e.reason();
                let delay = backoff.next(Duration::ZERO);
                life.image_waiting(reason, &e.to_string());
                tracing::warn!(image = %reference, reason, error = %e, retry_in_s = delay.as_secs(), "image not available; reason ImagePullBackOff until retry");
                if sleep_or_stop(delay, stop).await {
                    return None;
                }
                let message = format!("Back-off pulling image {reference:?}");
                life.image_waiting("ImagePullBackOff", &message);
            }
        }
    }
}

/// Bundles being built at once, across all pods (`Deps::bundle_builds`).
pub const BUNDLE_BUILDS: usize = 2;

pub(crate) fn container_id(uid: &str, name: &str, restart_count: u32) -> String {
    format!("{}-{name}-{restart_count}", &uid[..uid.len().min(16)])
}

/// How an attempt that got no process ended, as the runtime would report a failed run.
fn start_failed(message: String) -> NotStarted {
    NotStarted::Failed(ExitRecord {
        exit_code: 128,
        signal: None,
        oom_killed: false,
        started_at: None,
        finished_at: crate::logs::rfc3339_nano(jiff::Timestamp::now()),
        start_error: Some(message),
        message: None,
    })
}

/// Starts instance `restart_count` of `c`: its image, its bundle, the runtime.
pub(super) async fn start<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    c: &Container,
    life: &ContainerLife<S::Status>,
    stop: &mut watch::Receiver<bool>,
) -> Result<HandleOf<S>, NotStarted> {
    let restart_count = life.restart_count();
    // The pull's future and the image (its config is ~2 KB) are boxed, so they do not
    // make every start's future larger: 100 pods starting at once keep 100 of these
    // (BENCHMARKS.md row 4a).
    let image = Box::new(
        Box::pin(pull(ctx, c, life, stop))
            .await
            .ok_or(NotStarted::Stopping)?,
    );
    let id = container_id(&ctx.pod.uid, &c.name, restart_count);
    let bundle_dir = ctx.deps.layout.container(&id).join("bundle");
    // A directory under this id can only be debris of an attempt that never started.
    ctx.deps.runtime.remove(&id);
    let cgroups_path = ctx.cgroup.container_with(ctx.deps.cgroups.as_ref(), &id);
    // A shared PID namespace whose pause process died takes no new process: replace it.
    super::host_resources::ensure_sandbox(ctx)
        .await
        .map_err(|e| start_failed(format!("pod sandbox: {e}")))?;
    let (image, user) =
        Box::pin(build_bundle(ctx, c, &id, &bundle_dir, &cgroups_path, image)).await?;
    life.user(user.uid, user.gid, &user.groups);
    let cfg = monitor_config(ctx, c, restart_count, &id, bundle_dir, cgroups_path, image);
    let started = Instant::now();
    let result = Box::pin(ctx.deps.runtime.start(&cfg)).await;
    crate::heap::release_soon();
    crate::metrics::container_start(started.elapsed(), result.is_ok());
    match result {
        Ok(h) => {
            tracing::info!(container_id = %id, pid = h.init_pid(), restart_count, elapsed_ms = started.elapsed().as_millis() as u64, "container started");
            Ok(h)
        }
        Err(e) => {
            // The failure is reported through the restart policy; the attempt's debris
            // (bundle, overlay dirs) must not pile up across a crash loop.
            ctx.deps.runtime.remove(&id);
            Err(start_failed(e.to_string()))
        }
    }
}

/// Builds and writes the bundle of container `id`; hands the image back for the monitor.
async fn build_bundle<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    c: &Container,
    id: &str,
    bundle_dir: &std::path::Path,
    cgroups_path: &str,
    image: Box<Image>,
) -> Result<(Box<Image>, bundle::ProcessIds), NotStarted> {
    // A few at a time: 100 pods written at once otherwise built 100 specs on as many pool
    // threads together, and the heap kept that peak (BENCHMARKS.md row 4a). Building is
    // a millisecond of CPU; two keep both cores of a small host busy.
    let permit = ctx
        .deps
        .bundle_builds
        .acquire()
        .await
        .map_err(|e| start_failed(e.to_string()))?;
    // Building and writing the bundle reads image files and writes config.json: off the
    // agent's one async thread, so a slow disk does not stall the other pods. The job
    // finds the container by name rather than taking a copy (2.3 KB before its strings).
    let (job_ctx, job_name, job_bundle, job_cgroups, job_id) = (
        ctx.clone(),
        c.name.clone(),
        bundle_dir.to_path_buf(),
        cgroups_path.to_string(),
        id.to_string(),
    );
    let span = tracing::Span::current();
    let job = tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let written = write_bundle(
            &job_ctx,
            &job_name,
            &job_bundle,
            &job_cgroups,
            &job_id,
            &image,
        );
        (image, written)
    });
    let (image, written) = job
        .await
        .map_err(|e| start_failed(format!("building the bundle: {e}")))?;
    drop(permit);
    let user = written.map_err(|e| start_failed(e.to_string()))?;
    Ok((image, user))
}

/// Blocking: builds the runtime spec of container `name` and writes its bundle; returns
/// the identity its process runs as.
fn write_bundle<S: Services>(
    ctx: &PodCtx<S>,
    name: &str,
    bundle_dir: &std::path::Path,
    cgroups_path: &str,
    id: &str,
    image: &Image,
) -> Result<bundle::ProcessIds, SetupError> {
    let Some(c) = ctx.container(name) else {
        return Err(SetupError::NoContainer(name.to_string()));
    };
    let pod_dir = ctx.deps.layout.pod(&ctx.pod.uid);
    super::termination::prepare(&pod_dir, c).map_err(|source| SetupError::TerminationLog {
        container: c.name.clone(),
        source,
    })?;
    // The resources (and the downward API's view of them) of the latest in-place resize.
    let (pod, c) = (ctx.spec(), ctx.current(c));
    let node = &ctx.deps.node;
    let spec = bundle::build_spec(
        &pod.pod,
        &c,
        &BundleInputs {
            image: &image.config,
            image_file: &|rel| image.read_file(rel),
            rootfs: &bundle_dir.join("rootfs"),
            cgroups_path,
            volumes: &ctx.volumes,
            pod_dir: &pod_dir,
            node,
            seccomp_file: &|rel| std::fs::read(node.seccomp_dir.join(rel)).ok(),
            objects: &ctx.deps.objects.current(),
            user_ids: crate::userns::recorded(&ctx.deps.layout.pod(&ctx.pod.uid))?,
        },
    )
    .inspect_err(|e| {
        tracing::warn!(reason = "CreateContainerConfigError", error = %e, "cannot build the runtime config");
    })?;
    let config_at =
        super::secret_env::needs(&c).then(|| super::secret_env::config_path(&pod_dir, name));
    bundle::write(bundle_dir, &spec, config_at.as_deref()).map_err(|e| {
        ctx.deps.runtime.remove(id);
        SetupError::from(e)
    })?;
    Ok(bundle::ProcessIds::of(&spec))
}

/// What the monitor needs; takes the image so it is not kept across the start.
fn monitor_config<S: Services>(
    ctx: &PodCtx<S>,
    c: &Container,
    restart_count: u32,
    id: &str,
    bundle: PathBuf,
    cgroups_path: String,
    image: Box<Image>,
) -> MonitorConfig {
    let pod_dir = ctx.deps.layout.pod(&ctx.pod.uid);
    // The bundle was built with this range a moment ago; read again rather than carried.
    let userns = crate::userns::recorded(&pod_dir)
        .ok()
        .flatten()
        .filter(|_| crate::sandbox::Shared::of(&ctx.pod.pod).user)
        .map(|ids| crate::runtime::UserNamespace {
            ns: crate::sandbox::PodFiles::new(&pod_dir).ns("user"),
            ids,
        });
    MonitorConfig {
        id: id.to_string(),
        pod_uid: ctx.pod.uid.clone(),
        pod_name: ctx.pod.name().to_string(),
        pod_namespace: ctx.pod.namespace().to_string(),
        container: c.name.clone(),
        restart_count,
        bundle,
        lower: image.lower_dirs(),
        image_digest: image.digest,
        log_path: crate::logs::container_log_path(&ctx.log_dir, &c.name, restart_count),
        stop_signal: bundle::stop_signal(&image.config),
        cgroups_path,
        cgroup_driver: ctx
            .deps
            .cgroups
            .as_ref()
            .map_or_else(Default::default, |h| h.driver()),
        log_limits: ctx.deps.log_limits,
        userns,
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
    }
}
