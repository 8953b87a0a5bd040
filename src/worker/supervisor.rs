//! One container's life: adoption, start, the running instance, the restart policy with
//! crash-loop back-off, until it will not run again or its pod stops. Each step moves
//! its `states::ContainerLife`, which logs and reports the transition.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::time::Instant;
use tracing::Instrument;

use super::backoff::Backoff;
use super::container::{log_exit, ran_for, start, NotStarted};
use super::deps::{sleep_or_stop, stopped, stopping, HandleOf, Links, PodCtx};
use super::instance::{self, InstanceEnd};
use super::rules::{self, AfterExit, Outcome, Role};
use super::services::{ContainerHandle, ContainerRuntime, Services};
use super::states::ContainerLife;
use crate::runtime::{Adopted, ExitRecord};

/// The supervisor's next step.
enum Next<H> {
    /// Start a new instance.
    Start,
    /// Supervise a running instance, up since `since`; `fresh` when this agent started
    /// it (its postStart hook runs).
    Run { h: H, since: Instant, fresh: bool },
    /// An instance ended after running for `ran`: the restart policy decides.
    Exited { exit: ExitRecord, ran: Duration },
    /// Done; the last instance is removed.
    Done(Outcome),
    /// Done, and the last instance's record stays (a completed init container).
    Kept(Outcome),
}

/// What the supervisor keeps between steps.
struct Supervisor<'a, S: Services> {
    ctx: &'a Arc<PodCtx<S>>,
    c: &'a Container,
    role: Role,
    life: ContainerLife<S::Status>,
    links: Links,
    crash: Backoff,
    /// The instance whose directory is left to remove.
    previous_id: Option<String>,
}

/// Supervises the `index`th container of `role`'s list in the pod's spec.
pub(super) async fn supervise<S: Services>(
    ctx: Arc<PodCtx<S>>,
    index: usize,
    role: Role,
    adopted: Vec<Adopted<HandleOf<S>>>,
    links: Links,
) -> Outcome {
    let (init, app) = ctx.containers();
    let list = if role == Role::App { app } else { init };
    // The spec is the one the pod's containers were started from: the index is in it.
    let Some(c) = list.get(index) else {
        return Outcome::Failed;
    };
    let span = tracing::info_span!("container", container = %c.name);
    async {
        let (newest, leftovers) = rules::newest(adopted);
        for old in leftovers {
            Box::pin(instance::stop_instance(&ctx, None, old)).await;
        }
        let restart_count = newest.as_ref().map_or(0, |a| a.config.restart_count);
        let mut s = Supervisor {
            ctx: &ctx,
            c,
            role,
            life: ContainerLife::new(ctx.life.clone(), role, &c.name, restart_count),
            links,
            crash: Backoff::restarts(ctx.deps.crash_backoff),
            previous_id: None,
        };
        let mut next = s.adopt(newest);
        loop {
            // Boxed, each step: its state is allocated only while it runs, and this
            // future lives as long as the container.
            next = match next {
                Next::Start => Box::pin(s.start()).await,
                Next::Run { h, since, fresh } => Box::pin(s.run(h, since, fresh)).await,
                Next::Exited { exit, ran } => Box::pin(s.after_exit(exit, ran)).await,
                Next::Kept(outcome) => {
                    s.life.done(outcome);
                    return outcome;
                }
                Next::Done(outcome) => {
                    s.life.done(outcome);
                    if let Some(id) = s.previous_id.take() {
                        ctx.deps.runtime.remove(&id);
                    }
                    tracing::info!("container stopped");
                    return outcome;
                }
            };
        }
    }
    .instrument(span)
    .await
}

impl<S: Services> Supervisor<'_, S> {
    /// Takes on the newest instance an earlier agent left, if any.
    fn adopt(&mut self, newest: Option<Adopted<HandleOf<S>>>) -> Next<HandleOf<S>> {
        let Some(a) = newest else {
            return Next::Start;
        };
        let restart_count = a.config.restart_count;
        tracing::info!(container_id = %a.config.id, restart_count, running = a.running.is_some(), "adopted");
        self.previous_id = Some(a.config.id.clone());
        if let Some(ids) = crate::bundle::ProcessIds::read(&a.config.bundle) {
            self.life.user(ids.uid, ids.gid, &ids.groups);
        }
        match (a.running, a.exit) {
            (Some(h), _) => {
                self.life
                    .running(h.id(), h.started_at(), &a.config.image_digest);
                self.life.resources(self.c.resources.as_ref());
                let now = Instant::now();
                let since = now.checked_sub(ran_for(h.started_at())).unwrap_or(now);
                Next::Run {
                    h,
                    since,
                    fresh: false,
                }
            }
            (None, Some(mut exit)) => {
                exit.message = self.termination_message(&exit, &a.config.log_path);
                self.life.exited(&a.config.id, &exit);
                Next::Exited {
                    exit,
                    ran: Duration::ZERO,
                }
            }
            (None, None) => Next::Start,
        }
    }

    async fn start(&mut self) -> Next<HandleOf<S>> {
        if stopping(&self.links.stop) {
            return Next::Done(Outcome::Stopped);
        }
        self.life.creating();
        let ctx = self.ctx;
        // With the resources of the latest in-place resize, if any.
        let c = ctx.current(self.c);
        match start(ctx, &c, &self.life, &mut self.links.stop).await {
            Ok(h) => {
                if let Some(old) = self.previous_id.replace(h.id().to_string()) {
                    ctx.deps.runtime.remove(&old);
                }
                self.life.running(h.id(), h.started_at(), "");
                self.life.resources(c.resources.as_ref());
                Next::Run {
                    h,
                    since: Instant::now(),
                    fresh: true,
                }
            }
            Err(NotStarted::Stopping) => Next::Done(Outcome::Stopped),
            Err(NotStarted::Failed(exit)) => {
                tracing::warn!(
                    reason = exit.reason(),
                    error = exit.start_error.as_deref().unwrap_or(""),
                    "container failed to start"
                );
                self.life.exited("", &exit);
                Next::Exited {
                    exit,
                    ran: Duration::ZERO,
                }
            }
        }
    }

    async fn run(&mut self, h: HandleOf<S>, since: Instant, fresh: bool) -> Next<HandleOf<S>> {
        let (ctx, c) = (self.ctx, self.c);
        let end = instance::run_instance(ctx, c, &h, fresh, &mut self.life, &mut self.links);
        match end.await {
            InstanceEnd::Exited(mut exit) => {
                log_exit(h.id(), self.life.restart_count(), &exit);
                let log = crate::logs::container_log_path(
                    &ctx.log_dir,
                    &c.name,
                    self.life.restart_count(),
                );
                exit.message = self.termination_message(&exit, &log);
                self.life.exited(h.id(), &exit);
                Next::Exited {
                    exit,
                    ran: since.elapsed(),
                }
            }
            InstanceEnd::Stopped => Next::Done(Outcome::Stopped),
            // A restart for a resize is no failure: no back-off, the next instance at once.
            InstanceEnd::Resized(exit) => {
                log_exit(h.id(), self.life.restart_count(), &exit);
                self.life.exited(h.id(), &exit);
                let _ = self.links.started.send(false);
                self.life.restarting();
                Next::Start
            }
        }
    }

    /// The terminated state's message of an instance that ended with `exit`.
    fn termination_message(&self, exit: &ExitRecord, log: &std::path::Path) -> Option<String> {
        let pod_dir = self.ctx.deps.layout.pod(&self.ctx.pod.uid);
        super::termination::message(&pod_dir, self.c, exit, log)
    }

    /// The restart policy's decision, with the crash-loop back-off before a restart.
    async fn after_exit(&mut self, exit: ExitRecord, ran: Duration) -> Next<HandleOf<S>> {
        let _ = self.links.started.send(false);
        let policy = self.ctx.restart_policy;
        match rules::after_exit(
            self.role,
            policy,
            self.c,
            exit.exit_code,
            ran,
            &mut self.crash,
        ) {
            AfterExit::Done(done) => {
                tracing::info!(restart_policy = ?policy, outcome = ?done, "not restarting");
                let _ = self.links.finished.send(true);
                if !rules::waits_for_pod_stop(self.role) {
                    // Keep the record: an agent restarted later must not run it again.
                    return Next::Kept(done);
                }
                stopped(&mut self.links.stop).await;
                Next::Done(done)
            }
            AfterExit::Restart { delay } => {
                if !delay.is_zero() {
                    tracing::info!(
                        reason = "CrashLoopBackOff",
                        delay_s = delay.as_secs(),
                        "back-off restarting failed container"
                    );
                    self.life.back_off(delay);
                    if sleep_or_stop(delay, &mut self.links.stop).await {
                        return Next::Done(Outcome::Stopped);
                    }
                }
                self.life.restarting();
                Next::Start
            }
        }
    }
}
