//! Turns successive snapshots into pod workers: a new UID starts a worker, a UID that
//! disappears is told to stop. A pod that replaces another of the same namespace/name
//! (an edited manifest is a new UID) starts only once the old one is fully gone, as the
//! kubelet's pod workers do for static pods. Unlike the kubelet, an edit that only
//! changes cpu and memory resources resizes the running pod in place when the kubelet's
//! rules for API pods allow it (`worker::resize`): its worker then serves the new UID.

pub mod pressure;
mod record;
mod revisions;
pub mod shutdown;
mod updates;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::manifest::StaticPod;
use crate::runtime::{Adopted, Leftovers};
use crate::source::Snapshot;
use crate::worker::{self, Deps};

struct Entry {
    full_name: String,
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    /// The UID of the declared pod this worker runs: its own, or that of the edited
    /// manifest it was resized to.
    serves: String,
    /// The spec the worker runs (None for an orphan) and where resizes are sent.
    running: Option<(Arc<StaticPod>, watch::Sender<Arc<StaticPod>>)>,
}

impl Entry {
    /// Resizes the running pod to `new` when only its resources changed and the kubelet's
    /// rules allow it in place; false when it must be replaced.
    fn resize_to(&mut self, new: &Arc<StaticPod>) -> bool {
        let Some((running, tx)) = self.running.as_mut() else {
            return false;
        };
        match worker::decide_resize(&running.pod, &new.pod) {
            worker::ResizeDecision::InPlace(_) | worker::ResizeDecision::Unchanged => {
                tracing::info!(pod = %self.full_name, uid = %self.serves, new_uid = %new.uid, "pod changed in its source: only resources, resizing it in place");
                *running = new.clone();
                let _ = tx.send(new.clone());
                self.serves = new.uid.clone();
                true
            }
            worker::ResizeDecision::Recreate(worker::resize::Why::Infeasible(why)) => {
                tracing::info!(pod = %self.full_name, uid = %self.serves, reason = "Infeasible", message = %why, "resize not possible in place; recreating the pod");
                false
            }
            worker::ResizeDecision::Recreate(worker::resize::Why::NotOnlyResources) => false,
        }
    }
}

pub struct Manager {
    deps: Arc<Deps>,
    workers: HashMap<String, Entry>,
    /// What an earlier agent left, until the first snapshot claims it.
    leftovers: Option<Leftovers>,
    tasks: JoinSet<String>,
    /// The pods the latest snapshot declares, to restart one whose worker was still
    /// stopping when it came back (the same file removed and restored quickly).
    desired: HashMap<String, Arc<StaticPod>>,
    /// The latest snapshot, applied again when a rollback holds a revision back.
    last_snapshot: Option<Snapshot>,
    /// Auto-update and rollback (hostlet extensions; `updates.rs`).
    updates: updates::Updates,
    /// Pods the node stopped on its own (eviction, shutdown) to run again: their
    /// workers are stopped and, as they are still declared, started anew.
    node_restarts: Option<mpsc::Receiver<String>>,
}

impl Manager {
    pub fn new(deps: Arc<Deps>, leftovers: Leftovers) -> Self {
        let mut updates = updates::Updates::default();
        updates.restore(&deps);
        Self {
            deps,
            workers: HashMap::new(),
            leftovers: Some(leftovers),
            tasks: JoinSet::new(),
            desired: HashMap::new(),
            last_snapshot: None,
            updates,
            node_restarts: None,
        }
    }

    /// Applies snapshots until the source ends.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Snapshot>) {
        let mut tick = self.updates.interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let requests = async {
                match self.updates.requests.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            let ticked = async {
                match tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            let node_restart = async {
                match self.node_restarts.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(uid) = node_restart => {
                    if let Some(e) = self.workers.get(&uid) {
                        let _ = e.stop.send(true);
                    }
                }
                Some(req) = requests => {
                    self.updates.start_check(&self.deps, &self.desired, req.dry_run, Some(req.reply))
                }
                _ = ticked => self.updates.start_check(&self.deps, &self.desired, false, None),
                Some(ev) = self.updates.events_rx.recv() => {
                    for effect in self.updates.on_event(&self.deps, ev) {
                        self.act(effect);
                    }
                    self.updates.save(&self.deps);
                }
                Some(_) = self.updates.jobs.join_next(), if !self.updates.jobs.is_empty() => {}
                snap = rx.recv() => match snap {
                    Some(s) => self.apply(s),
                    None => break,
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(uid) = done {
                        let serves = self.workers.remove(&uid).map_or(uid, |e| e.serves);
                        let running = self.workers.values().any(|e| e.serves == serves);
                        if let Some(pod) = self.desired.get(&serves).cloned().filter(|_| !running) {
                            self.start_pod(pod, Vec::new());
                        }
                    }
                }
            }
        }
    }

    pub fn apply(&mut self, mut snap: Snapshot) {
        self.last_snapshot = Some(snap.clone());
        snap.pods = self.updates.revisions.substitute(snap.pods);
        let desired: HashMap<&str, _> = snap.pods.iter().map(|p| (p.uid.as_str(), p)).collect();
        let served: std::collections::HashSet<String> =
            self.workers.values().map(|e| e.serves.clone()).collect();
        for (uid, e) in self.workers.iter_mut() {
            if *e.stop.borrow() {
                continue;
            }
            match desired.get(e.serves.as_str()) {
                None => {
                    // An edited manifest has a new UID (a hash of its content): the pod
                    // of the same name in the snapshot, not run by another worker.
                    let edited = snap
                        .pods
                        .iter()
                        .find(|p| p.full_name() == e.full_name && !served.contains(&p.uid));
                    if let Some(new) = edited {
                        let new = self.updates.revisions.pinned_pod(new);
                        if e.resize_to(&new) {
                            continue;
                        }
                    }
                    tracing::info!(pod = %e.full_name, uid = %uid, "pod removed from its source; stopping");
                    let _ = e.stop.send(true);
                }
                // Only a manifest that pins `metadata.uid` keeps its UID across an edit
                // (otherwise the UID is a hash of the content). The kubelet then restarts
                // the changed containers; hostlet resizes it in place or replaces the
                // whole pod, once the old one is gone (the worker's end restarts it from
                // `desired`).
                Some(new)
                    if self
                        .desired
                        .get(&e.serves)
                        .is_some_and(|old| !Arc::ptr_eq(old, new) && old != *new) =>
                {
                    let new = self.updates.revisions.pinned_pod(new);
                    if e.resize_to(&new) {
                        continue;
                    }
                    tracing::info!(pod = %e.full_name, uid = %uid, "pod changed in its source under the same metadata.uid; replacing it");
                    let _ = e.stop.send(true);
                }
                Some(_) => {}
            }
        }
        // Before any pod starts: the new ones read their ConfigMaps and Secrets from it.
        self.deps.objects.publish(crate::manifest::ObjectSet::new(
            snap.objects.iter().cloned(),
        ));
        // The first snapshot decides what happens to what an earlier agent left.
        let mut leftovers = self.leftovers.take().unwrap_or_default();
        let served: std::collections::HashSet<String> =
            self.workers.values().map(|e| e.serves.clone()).collect();
        for pod in &snap.pods {
            if self.workers.contains_key(&pod.uid) || served.contains(&pod.uid) {
                continue;
            }
            let mine = leftovers.take(&pod.uid);
            self.start_pod(pod.clone(), mine);
        }
        self.desired = snap.pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
        let uids = self.desired.keys().map(String::as_str).collect();
        self.updates.revisions.retain(&uids);
        self.updates.save(&self.deps);
        crate::metrics::manifest_problems(&snap.problems);
        self.deps.status.set_synced();
        for (uid, containers) in leftovers.into_pods() {
            tracing::info!(uid = %uid, containers = containers.len(), "pod no longer declared by any source; stopping what an earlier agent started");
            self.spawn(
                uid.clone(),
                format!("orphan/{uid}"),
                None,
                move |deps, _| worker::stop_orphan(uid, containers, deps),
            );
        }
    }

    /// Serves auto-update checks from `requests` and, with `interval`, runs one that often.
    pub fn with_auto_update(
        mut self,
        requests: mpsc::Receiver<crate::update::Request>,
        interval: Option<std::time::Duration>,
    ) -> Self {
        self.updates.requests = Some(requests);
        self.updates.interval = interval.filter(|d| !d.is_zero());
        self
    }

    /// Restarts the pods whose UIDs arrive on `rx` (the node stopped them on its own).
    pub fn with_node_restarts(mut self, rx: mpsc::Receiver<String>) -> Self {
        self.node_restarts = Some(rx);
        self
    }

    fn act(&mut self, effect: updates::Effect) {
        match effect {
            updates::Effect::Restart(uid) => {
                if let Some(e) = self.workers.values().find(|e| e.serves == uid) {
                    let _ = e.stop.send(true);
                }
            }
            updates::Effect::Reapply => {
                if let Some(snap) = self.last_snapshot.clone() {
                    self.apply(snap);
                }
            }
        }
    }

    fn start_pod(&mut self, pod: Arc<StaticPod>, adopted: Vec<Adopted>) {
        let full_name = pod.full_name();
        let predecessors: Vec<_> = self
            .workers
            .values()
            .filter(|e| e.full_name == full_name)
            .map(|e| e.done.clone())
            .collect();
        self.updates.guard(&self.deps, &pod);
        let pod = self.updates.revisions.pinned_pod(&pod);
        let (resize, specs) = watch::channel(pod.clone());
        let running = Some((pod.clone(), resize));
        self.spawn(pod.uid.clone(), full_name, running, move |deps, stop| {
            worker::run_pod(pod, adopted, deps, stop, predecessors, specs)
        });
    }

    fn spawn<F, Fut>(
        &mut self,
        uid: String,
        full_name: String,
        running: Option<(Arc<StaticPod>, watch::Sender<Arc<StaticPod>>)>,
        f: F,
    ) where
        F: FnOnce(Arc<Deps>, watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        // Boxed: awaited inline, the worker's future (tens of KB, kept for the pod's life)
        // would be stored twice in the task, as the captured value and as the awaitee.
        let fut = Box::pin(f(self.deps.clone(), stop_rx));
        let key = uid.clone();
        self.tasks.spawn(async move {
            fut.await;
            let _ = done_tx.send(true);
            key
        });
        self.workers.insert(
            uid.clone(),
            Entry {
                full_name,
                stop: stop_tx,
                done: done_rx,
                serves: uid,
                running,
            },
        );
    }
}
