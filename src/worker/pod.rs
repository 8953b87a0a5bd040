//! The order of a pod's containers: init containers one after the other (sidecars
//! started and kept running), then the app containers together; on stop, the app
//! containers in parallel, then the sidecars in reverse order.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::supervisor::{self, Links, Outcome, Role};
use super::{stopped, PodCtx};
use crate::runtime::Adopted;

struct Running {
    task: JoinHandle<Outcome>,
    stop: watch::Sender<bool>,
}

fn take(adopted: &mut Vec<Adopted>, name: &str) -> Vec<Adopted> {
    let (mine, rest) = std::mem::take(adopted)
        .into_iter()
        .partition(|a| a.config.container == name);
    *adopted = rest;
    mine
}

/// Starts the supervisor of the `index`th container of `role`'s list.
fn spawn(
    ctx: &Arc<PodCtx>,
    index: usize,
    role: Role,
    adopted: Vec<Adopted>,
    stop: watch::Receiver<bool>,
) -> (
    JoinHandle<Outcome>,
    watch::Receiver<bool>,
    watch::Receiver<bool>,
) {
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

pub(super) async fn run_containers(
    ctx: Arc<PodCtx>,
    mut adopted: Vec<Adopted>,
    mut stop: watch::Receiver<bool>,
) {
    let (init_containers, containers) = ctx.containers();
    let app_names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    // An app container that ran means the init phase is over (the kubelet's rule too).
    let initialized_before = adopted
        .iter()
        .any(|a| app_names.contains(&a.config.container.as_str()));
    let mut sidecars: Vec<Running> = Vec::new();
    let mut init_ok = true;
    for (i, c) in init_containers.iter().enumerate() {
        let mine = take(&mut adopted, &c.name);
        if c.restart_policy.as_deref() == Some("Always") {
            let (stop_tx, stop_rx) = watch::channel(false);
            let (task, mut started, _) = spawn(&ctx, i, Role::Sidecar, mine, stop_rx);
            sidecars.push(Running {
                task,
                stop: stop_tx,
            });
            tokio::select! {
                _ = stopped(&mut started) => {}
                _ = stopped(&mut stop) => { init_ok = false; break; }
            }
        } else if initialized_before {
            for a in mine {
                // Boxed here and below: stopping (preStop hooks, probes' HTTP client) is
                // the largest state, and inline it would size this future, which lives as
                // long as the pod, for it.
                Box::pin(supervisor::stop_instance(&ctx, None, a)).await;
            }
        } else {
            let (task, _, _) = spawn(&ctx, i, Role::Init, mine, stop.clone());
            match task.await.unwrap_or(Outcome::Failed) {
                Outcome::Succeeded => {}
                outcome => {
                    if outcome == Outcome::Failed {
                        tracing::warn!("init container failed and the pod's restartPolicy is Never: the pod failed");
                    }
                    init_ok = false;
                    break;
                }
            }
        }
    }
    let mut apps = Vec::new();
    let mut finished = Vec::new();
    if init_ok {
        for (i, c) in containers.iter().enumerate() {
            let mine = take(&mut adopted, &c.name);
            let (task, _, done) = spawn(&ctx, i, Role::App, mine, stop.clone());
            apps.push(task);
            finished.push(done);
        }
    }
    // Containers left over from an earlier version of this pod's spec.
    for a in adopted {
        apps.push(tokio::spawn(async move { Outcome::Stopped }));
        Box::pin(supervisor::stop_adopted(ctx.clone(), a)).await;
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
