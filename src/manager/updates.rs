//! The manager's side of safe updates: running auto-update checks (on request or every
//! `--auto-update-interval`), restarting updated pods, guarding new revisions and acting
//! on the guards' verdicts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::revisions::{Action, Guarded, Revisions};
use crate::manifest::StaticPod;
use crate::update::check::Pin;
use crate::update::{policy, Candidate, Report, Request, Verdict};
use crate::worker::Deps;

pub(super) enum Event {
    Checked {
        report: Report,
        pins: Vec<Pin>,
        reply: Option<oneshot::Sender<Report>>,
    },
    Verdict {
        pod: Arc<StaticPod>,
        guarded: Guarded,
        verdict: Verdict,
    },
}

pub(super) struct Updates {
    pub revisions: Revisions,
    pub requests: Option<mpsc::Receiver<Request>>,
    pub interval: Option<Duration>,
    pub events_tx: mpsc::UnboundedSender<Event>,
    pub events_rx: mpsc::UnboundedReceiver<Event>,
    /// Checks and guards in flight; dropped (aborted) with the manager.
    pub jobs: JoinSet<()>,
    /// What `revisions` was last saved as (written again only when it changes).
    saved: super::record::Record,
}

impl Default for Updates {
    fn default() -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Self {
            revisions: Revisions::default(),
            requests: None,
            interval: None,
            events_tx,
            events_rx,
            jobs: JoinSet::new(),
            saved: Default::default(),
        }
    }
}

/// What the manager does with its workers after an event.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Effect {
    /// Stop pod `uid`'s worker; it starts again from `desired` once gone, with its pins.
    Restart(String),
    /// Apply the latest snapshot again (a revision is now held back).
    Reapply,
}

type Desired = std::collections::HashMap<String, Arc<StaticPod>>;

impl Updates {
    /// The revisions an earlier agent recorded under `root_dir`, their rollbacks reported.
    pub(super) fn restore(&mut self, deps: &Deps) {
        let record = super::record::load(&deps.layout.root);
        self.revisions = Revisions::restore(record.clone());
        self.saved = record;
        for (name, (reason, message)) in self.revisions.reports() {
            deps.status.set_rolled_back(name, reason, message);
        }
    }

    /// Writes the revisions under `--root-dir` when they changed.
    pub(super) fn save(&mut self, deps: &Deps) {
        let record = self.revisions.record();
        if record != self.saved {
            super::record::save(&deps.layout.root, &record);
            self.saved = record;
        }
    }

    /// The containers of pods that opted in to auto-update, as they run now.
    fn candidates(&self, deps: &Deps, desired: &Desired) -> Vec<Candidate> {
        let mut out = Vec::new();
        for pod in desired.values() {
            let policy = match policy::auto_update(pod) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "auto-update skipped");
                    continue;
                }
            };
            let running: BTreeMap<String, String> = deps
                .status
                .pod_by_uid(&pod.uid)
                .and_then(|p| p.status)
                .into_iter()
                .flat_map(|s| {
                    s.init_container_statuses
                        .into_iter()
                        .flatten()
                        .chain(s.container_statuses.into_iter().flatten())
                })
                .map(|c| (c.name, c.image_id))
                .collect();
            let Some(spec) = pod.pod.spec.as_ref() else {
                continue;
            };
            let inits = spec.init_containers.iter().flatten();
            for c in inits.chain(&spec.containers) {
                let Some(image) = c.image.clone() else {
                    continue;
                };
                out.push(Candidate {
                    uid: pod.uid.clone(),
                    pod: pod.full_name(),
                    container: c.name.clone(),
                    image,
                    policy,
                    running: running.get(&c.name).cloned().unwrap_or_default(),
                    failed: self.revisions.failed_digest(&pod.uid, &c.name),
                });
            }
        }
        out.sort_by(|a, b| (&a.pod, &a.container).cmp(&(&b.pod, &b.container)));
        out
    }

    /// Starts a check; its result comes back as [`Event::Checked`].
    pub(super) fn start_check(
        &mut self,
        deps: &Arc<Deps>,
        desired: &Desired,
        dry_run: bool,
        reply: Option<oneshot::Sender<Report>>,
    ) {
        let candidates = self.candidates(deps, desired);
        tracing::info!(containers = candidates.len(), dry_run, "auto-update check");
        let deps = deps.clone();
        let tx = self.events_tx.clone();
        self.jobs.spawn(async move {
            let (report, pins) = crate::update::check(&deps.images, &candidates, dry_run).await;
            let _ = tx.send(Event::Checked {
                report,
                pins,
                reply,
            });
        });
    }

    pub(super) fn on_event(&mut self, deps: &Arc<Deps>, ev: Event) -> Vec<Effect> {
        let mut effects = Vec::new();
        match ev {
            Event::Checked {
                report,
                pins,
                reply,
            } => {
                for row in &report.rows {
                    crate::metrics::auto_update(row.updated.as_str());
                    if let Some(e) = &row.error {
                        tracing::warn!(pod = %row.pod, container = %row.container, image = %row.image, error = %e, "auto-update failed");
                    }
                }
                for pin in pins {
                    tracing::info!(uid = %pin.uid, container = %pin.container, image = %pin.reference, "auto-update: new image pulled; restarting the pod on it");
                    let r = &mut self.revisions;
                    r.update_image(
                        &pin.uid,
                        &pin.container,
                        &pin.reference,
                        &pin.digest,
                        pin.running.as_deref(),
                    );
                    let effect = Effect::Restart(pin.uid);
                    if !effects.contains(&effect) {
                        effects.push(effect);
                    }
                }
                if let Some(reply) = reply {
                    let _ = reply.send(report);
                }
            }
            Event::Verdict {
                pod,
                guarded,
                verdict,
            } => {
                tracing::debug!(pod = %pod.full_name(), uid = %pod.uid, ?verdict, "guard's verdict");
                let ready = verdict == Verdict::Ready;
                if ready && matches!(guarded, Guarded::Image { .. }) {
                    self.promote(deps, &pod.uid);
                }
                let (action, rollback) = self.revisions.verdict(&pod, guarded, verdict);
                let name = pod.full_name();
                if ready {
                    tracing::info!(pod = %name, uid = %pod.uid, "new revision is Ready");
                    deps.status.clear_rolled_back(&name);
                }
                if let Some((kind, reason, revision, message)) = rollback {
                    tracing::warn!(pod = %name, uid = %pod.uid, kind, reason, %revision, "{message}");
                    deps.status.set_rolled_back(&name, reason, &message);
                    crate::metrics::rollback(&name, kind, reason, &revision);
                }
                match action {
                    Action::None => {}
                    Action::Restart(uid) => effects.push(Effect::Restart(uid)),
                    Action::Reapply => effects.push(Effect::Reapply),
                }
            }
        }
        effects
    }

    /// The tags of `uid`'s pinned images now name the pinned digests (they proved Ready).
    fn promote(&mut self, deps: &Arc<Deps>, uid: &str) {
        let pinned = self.revisions.pins_of(uid);
        let deps = deps.clone();
        self.jobs.spawn(async move {
            for reference in pinned {
                if let Err(e) = deps.images.promote(&reference).await {
                    tracing::warn!(image = %reference, error = %e, "could not point the tag at the updated image");
                }
            }
        });
    }

    /// Guards the start of `pod` (as declared) when it is a new revision to judge.
    pub(super) fn guard(&mut self, deps: &Deps, pod: &Arc<StaticPod>) {
        let Some(guarded) = self.revisions.guard_for(pod) else {
            return;
        };
        let deadline = policy::rollback_after(pod).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "using the default");
            policy::ROLLBACK_AFTER_DEFAULT
        });
        tracing::info!(pod = %pod.full_name(), uid = %pod.uid, deadline_s = deadline.as_secs(), guarded = ?guarded, "new revision guarded: rolled back unless Ready in time");
        let status = deps.status.clone();
        let tx = self.events_tx.clone();
        let pod = pod.clone();
        self.jobs.spawn(async move {
            let verdict = crate::update::watch(&status, &pod.uid, deadline).await;
            let _ = tx.send(Event::Verdict {
                pod,
                guarded,
                verdict,
            });
        });
    }
}
