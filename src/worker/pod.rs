//! The order of a pod's containers: init containers one after the other (sidecars
//! started and kept running), then the app containers together; on stop, the app
//! containers in parallel, then the sidecars in reverse order. The rules are in
//! `rules`; this drives them.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::deps::Links;
use super::deps::{stopped, HandleOf, PodCtx};
use super::instance;
use super::rules::{self, InitStep, Outcome, Role};
use super::services::Services;
use super::supervisor;
use crate::runtime::Adopted;

struct Running {
    task: JoinHandle<Outcome>,
    stop: watch::Sender<bool>,
}

/// A supervisor's task with its `started` and `finished` flags.
type Spawned = (
    JoinHandle<Outcome>,
    watch::Receiver<bool>,
    watch::Receiver<bool>,
);

/// Starts the supervisor of the `index`th container of `role`'s list.
fn spawn<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    index: usize,
    role: Role,
    adopted: Vec<Adopted<HandleOf<S>>>,
    stop: watch::Receiver<bool>,
) -> Spawned {
    let (started, started_rx) = watch::channel(false);
    let (finished, finished_rx) = watch::channel(false);
    let links = Links {
        stop,
        started,
        finished,
    };
    let task = tokio::spawn(
        supervisor::supervise(ctx.clone(), index, role, adopted, links).in_current_span(),
    );
    (task, started_rx, finished_rx)
}

/// Runs the init containers in order; returns the sidecars started (running) and
/// whether the app containers may start.
async fn run_init<S: Services>(
    ctx: &Arc<PodCtx<S>>,
    adopted: &mut Vec<Adopted<HandleOf<S>>>,
    stop: &mut watch::Receiver<bool>,
) -> (Vec<Running>, bool) {
    let (init_containers, containers) = ctx.containers();
    let initialized = rules::initialized_before(containers, adopted);
    let mut sidecars: Vec<Running> = Vec::new();
    for (i, c) in init_containers.iter().enumerate() {
        let mine = rules::take_adopted(adopted, &c.name);
        match rules::init_step(c, initialized) {
            InitStep::StartSidecar => {
                let (stop_tx, stop_rx) = watch::channel(false);
                let (task, mut started, _) = spawn(ctx, i, Role::Sidecar, mine, stop_rx);
                sidecars.push(Running {
                    task,
                    stop: stop_tx,
                });
                tokio::select! {
                    _ = stopped(&mut started) => {}
                    _ = stopped(stop) => return (sidecars, false),
                }
            }
            InitStep::AlreadyDone => {
                for a in mine {
                    // Boxed here and below: stopping (preStop hooks, probes' HTTP client) is
                    // the largest state, and inline it would size this future, which lives
                    // as long as the pod, for it.
                    Box::pin(instance::stop_instance(ctx, None, a)).await;
                }
            }
            InitStep::RunToCompletion => {
                let (task, _, _) = spawn(ctx, i, Role::Init, mine, stop.clone());
                match task.await.unwrap_or(Outcome::Failed) {
                    Outcome::Succeeded => {}
                    outcome => {
                        if outcome == Outcome::Failed {
                            tracing::warn!("init container failed and its restart policy does not restart it: the pod failed");
                        }
                        return (sidecars, false);
                    }
                }
            }
        }
    }
    (sidecars, true)
}

pub(super) async fn run_containers<S: Services>(
    ctx: Arc<PodCtx<S>>,
    mut adopted: Vec<Adopted<HandleOf<S>>>,
    mut stop: watch::Receiver<bool>,
) {
    ctx.life.initializing();
    let (sidecars, init_ok) = Box::pin(run_init(&ctx, &mut adopted, &mut stop)).await;
    let mut apps = Vec::new();
    let mut finished = Vec::new();
    if init_ok {
        // Also for a pod being stopped: its supervisors terminate adopted instances
        // with their spec (preStop hooks).
        ctx.life.starting();
        for (i, c) in ctx.containers().1.iter().enumerate() {
            let mine = rules::take_adopted(&mut adopted, &c.name);
            let (task, _, done) = spawn(&ctx, i, Role::App, mine, stop.clone());
            apps.push(task);
            finished.push(done);
        }
    }
    // Containers left over from an earlier version of this pod's spec.
    for a in adopted {
        apps.push(tokio::spawn(async move { Outcome::Stopped }));
        Box::pin(instance::stop_adopted(ctx.clone(), a)).await;
    }
    // Sidecars stop when the pod stops, or once every app container is done for good
    // (a pod with restartPolicy Never/OnFailure that completed), as the kubelet does.
    let all_done = async move {
        for mut f in finished {
            stopped(&mut f).await;
        }
    };
    if !apps.is_empty() {
        tokio::select! {
            _ = stopped(&mut stop) => {}
            _ = all_done => {}
        }
    } else {
        stopped(&mut stop).await;
    }
    for t in apps {
        let _ = t.await;
    }
    for s in sidecars.into_iter().rev() {
        let _ = s.stop.send(true);
        let _ = s.task.await;
    }
}
