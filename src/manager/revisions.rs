//! The revisions the manager keeps for safe updates: images pinned by auto-update, the
//! last manifest revision of each pod that was Ready, the revisions rolled back, and the
//! guards to start. Pure bookkeeping; `updates.rs` runs checks and guards around it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::record::{Record, SavedPod};
use crate::manifest::{Origin, StaticPod};
use crate::update::{policy, Verdict};

/// What a guard watches over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// New image digests (container → digest); `previous` are the pins to go back to.
    Image {
        previous: BTreeMap<String, String>,
        new: BTreeMap<String, String>,
    },
    /// A manifest revision of a pod with `hostlet.io/rollback: "true"`.
    Manifest,
}

/// What the manager does after a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Restart pod `uid` (its pins changed back).
    Restart(String),
    /// Apply the latest snapshot again (a manifest revision is now held back).
    Reapply,
}

#[derive(Debug, Default)]
pub struct Revisions {
    /// uid → container → pinned reference (`name:tag@digest`).
    pins: HashMap<String, BTreeMap<String, String>>,
    /// uid → container → the digest rolled back from, never picked again.
    failed: HashMap<String, BTreeMap<String, String>>,
    /// namespace/name → its last revision seen Ready (pods with `hostlet.io/rollback`).
    last_good: HashMap<String, Arc<StaticPod>>,
    /// namespace/name → the UID of the manifest revision held back, until the file changes.
    rolled_back: HashMap<String, String>,
    /// uid → what its next start is guarded for (an image update waiting for its restart).
    pending: HashMap<String, Guarded>,
    /// namespace/name → (reason, message) of its last rollback, until a revision is Ready.
    reports: HashMap<String, (String, String)>,
}

impl Revisions {
    /// What to keep across agent restarts (guards in flight are not: a revision whose
    /// verdict was pending is judged again from its next start).
    pub fn record(&self) -> Record {
        let sorted = |m: &HashMap<String, BTreeMap<String, String>>| {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Record {
            pins: sorted(&self.pins),
            failed: sorted(&self.failed),
            last_good: self
                .last_good
                .iter()
                .map(|(name, p)| {
                    let (file, url) = match &p.source {
                        Origin::File(f) => (Some(f.clone()), None),
                        Origin::Url(u) => (None, Some(u.clone())),
                    };
                    let saved = SavedPod {
                        uid: p.uid.clone(),
                        file,
                        url,
                        pod: p.pod.clone(),
                    };
                    (name.clone(), saved)
                })
                .collect(),
            rolled_back: self.rolled_back.clone().into_iter().collect(),
            reports: self.reports.clone().into_iter().collect(),
        }
    }

    pub fn restore(r: Record) -> Self {
        let last_good = r
            .last_good
            .into_iter()
            .map(|(name, s)| {
                let source = match (s.file, s.url) {
                    (Some(f), _) => Origin::File(f),
                    (None, Some(u)) => Origin::Url(u),
                    (None, None) => Origin::default(),
                };
                let pod = StaticPod {
                    pod: s.pod,
                    uid: s.uid,
                    source,
                };
                (name, Arc::new(pod))
            })
            .collect();
        Self {
            pins: r.pins.into_iter().collect(),
            failed: r.failed.into_iter().collect(),
            last_good,
            rolled_back: r.rolled_back.into_iter().collect(),
            pending: HashMap::new(),
            reports: r.reports.into_iter().collect(),
        }
    }

    /// The rollbacks to report: namespace/name → (reason, message).
    pub fn reports(&self) -> impl Iterator<Item = (&String, &(String, String))> {
        self.reports.iter()
    }

    /// The snapshot's pods with held-back revisions replaced by their last Ready one. A
    /// revision that differs from the held-back one (the file changed again) is tried
    /// afresh.
    pub fn substitute(&mut self, pods: Vec<Arc<StaticPod>>) -> Vec<Arc<StaticPod>> {
        let declared: std::collections::HashSet<String> =
            pods.iter().map(|p| p.full_name()).collect();
        self.rolled_back.retain(|name, _| declared.contains(name));
        pods.into_iter()
            .map(|p| {
                let name = p.full_name();
                match self.rolled_back.get(&name) {
                    Some(uid) if *uid == p.uid => match self.last_good.get(&name) {
                        Some(good) => good.clone(),
                        None => p,
                    },
                    Some(_) => {
                        tracing::info!(pod = %name, uid = %p.uid, "manifest changed since its rollback; trying the new revision");
                        self.rolled_back.remove(&name);
                        p
                    }
                    None => p,
                }
            })
            .collect()
    }

    /// Forgets what belonged to pods no longer declared.
    pub fn retain(&mut self, uids: &std::collections::HashSet<&str>) {
        self.pins.retain(|u, _| uids.contains(u.as_str()));
        self.failed.retain(|u, _| uids.contains(u.as_str()));
        self.pending.retain(|u, _| uids.contains(u.as_str()));
    }

    /// `pod` as it runs: with its auto-updated containers on their pinned images.
    pub fn pinned_pod(&self, pod: &Arc<StaticPod>) -> Arc<StaticPod> {
        let Some(pins) = self.pins.get(&pod.uid).filter(|p| !p.is_empty()) else {
            return pod.clone();
        };
        let mut p = StaticPod::clone(pod);
        if let Some(spec) = p.pod.spec.as_mut() {
            let inits = spec.init_containers.iter_mut().flatten();
            for c in spec.containers.iter_mut().chain(inits) {
                if let Some(r) = pins.get(&c.name) {
                    c.image = Some(r.clone());
                }
            }
        }
        Arc::new(p)
    }

    /// The pinned references of `uid`'s containers.
    pub fn pins_of(&self, uid: &str) -> Vec<String> {
        self.pins
            .get(uid)
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn failed_digest(&self, uid: &str, container: &str) -> Option<String> {
        self.failed.get(uid)?.get(container).cloned()
    }

    /// Auto-update moves `uid`'s `container` to `reference` (pinned to `digest`) from
    /// `running` (the image it ran, pinned); the pod's next start is guarded.
    pub fn update_image(
        &mut self,
        uid: &str,
        container: &str,
        reference: &str,
        digest: &str,
        running: Option<&str>,
    ) {
        let pins = self.pins.entry(uid.to_string()).or_default();
        let mut before = pins.clone();
        if let Some(r) = running {
            before.entry(container.to_string()).or_insert(r.to_string());
        }
        pins.insert(container.to_string(), reference.to_string());
        let pending = self
            .pending
            .entry(uid.to_string())
            .or_insert(Guarded::Image {
                previous: BTreeMap::new(),
                new: BTreeMap::new(),
            });
        if *pending == Guarded::Manifest {
            *pending = Guarded::Image {
                previous: BTreeMap::new(),
                new: BTreeMap::new(),
            };
        }
        if let Guarded::Image { previous, new } = pending {
            for (c, r) in before {
                previous.entry(c).or_insert(r);
            }
            new.insert(container.to_string(), digest.to_string());
        }
    }

    /// What starting `pod` is guarded for, if anything.
    pub fn guard_for(&mut self, pod: &StaticPod) -> Option<Guarded> {
        if let Some(g) = self.pending.remove(&pod.uid) {
            return Some(g);
        }
        let name = pod.full_name();
        let opted_in = match policy::manifest_rollback(pod) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "manifest rollback not enabled");
                false
            }
        };
        // The revision restored by a rollback is not judged again: it was Ready before.
        let restored = self.rolled_back.contains_key(&name);
        (opted_in && !restored).then_some(Guarded::Manifest)
    }

    /// Applies a guard's verdict on `pod` (as declared, not pinned); returns what to do
    /// and, for a rollback, (kind, reason, message naming the failed revision).
    pub fn verdict(
        &mut self,
        pod: &Arc<StaticPod>,
        guarded: Guarded,
        verdict: Verdict,
    ) -> (Action, Option<(&'static str, &'static str, String, String)>) {
        let name = pod.full_name();
        let (reason, why) = match verdict {
            Verdict::Gone => return (Action::None, None),
            Verdict::Ready => {
                self.reports.remove(&name);
                if guarded == Guarded::Manifest {
                    self.last_good.insert(name, pod.clone());
                }
                return (Action::None, None);
            }
            Verdict::Failed { reason, message } => (reason, message),
        };
        match guarded {
            Guarded::Image { previous, new } => {
                let failed = self.failed.entry(pod.uid.clone()).or_default();
                failed.extend(new.clone());
                self.pins.insert(pod.uid.clone(), previous.clone());
                let revision: Vec<String> = new.values().cloned().collect();
                let back: Vec<String> = new
                    .keys()
                    .map(|c| match previous.get(c) {
                        Some(r) => r.rsplit('@').next().unwrap_or(r).to_string(),
                        None => "the image it ran before".into(),
                    })
                    .collect();
                let containers: Vec<&str> = new.keys().map(String::as_str).collect();
                let msg = format!(
                    "image {} of container {} failed ({why}); rolled back to {}",
                    revision.join(", "),
                    containers.join(", "),
                    back.join(", ")
                );
                self.reports.insert(name, (reason.to_string(), msg.clone()));
                (
                    Action::Restart(pod.uid.clone()),
                    Some(("image", reason, revision.join(","), msg)),
                )
            }
            Guarded::Manifest => match self.last_good.get(&name) {
                Some(good) if good.uid != pod.uid => {
                    let msg = format!(
                        "manifest revision {} from {} failed ({why}); rolled back to revision {}",
                        pod.uid, pod.source, good.uid
                    );
                    self.rolled_back.insert(name.clone(), pod.uid.clone());
                    self.reports.insert(name, (reason.to_string(), msg.clone()));
                    (
                        Action::Reapply,
                        Some(("manifest", reason, pod.uid.clone(), msg)),
                    )
                }
                _ => {
                    tracing::warn!(pod = %name, uid = %pod.uid, reason, "revision failed with no earlier Ready revision to go back to; keeping it");
                    (Action::None, None)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(uid: &str, image: &str, rollback: bool) -> Arc<StaticPod> {
        let mut p = StaticPod {
            pod: Default::default(),
            uid: uid.into(),
            source: Default::default(),
        };
        p.pod.metadata.name = Some("web-n1".into());
        p.pod.metadata.namespace = Some("default".into());
        if rollback {
            p.pod.metadata.annotations = Some(BTreeMap::from([(
                policy::ROLLBACK.to_string(),
                "true".to_string(),
            )]));
        }
        p.pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        Arc::new(p)
    }

    fn failed() -> Verdict {
        Verdict::Failed {
            reason: "CrashLoopBackOff",
            message: "container app is in CrashLoopBackOff".into(),
        }
    }

    fn image_of(p: &StaticPod) -> &str {
        p.pod.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref()
            .unwrap()
    }

    #[test]
    fn a_failed_image_update_goes_back_and_is_not_retried() {
        let mut r = Revisions::default();
        let p = pod("u1", "reg/app:1", false);
        assert_eq!(r.guard_for(&p), None);
        r.update_image("u1", "app", "reg/app:1@sha256:bb", "sha256:bb", None);
        assert_eq!(image_of(&r.pinned_pod(&p)), "reg/app:1@sha256:bb");
        let g = r.guard_for(&p).expect("the update's restart is guarded");
        let (action, report) = r.verdict(&p, g, failed());
        assert_eq!(action, Action::Restart("u1".into()));
        let (kind, reason, revision, msg) = report.unwrap();
        assert_eq!(
            (kind, reason, revision.as_str()),
            ("image", "CrashLoopBackOff", "sha256:bb")
        );
        assert!(
            msg.contains("image sha256:bb of container app failed"),
            "{msg}"
        );
        // Back on the tag as it was before the first update.
        assert_eq!(image_of(&r.pinned_pod(&p)), "reg/app:1");
        assert_eq!(r.failed_digest("u1", "app").as_deref(), Some("sha256:bb"));
        // The restart after the rollback is not guarded.
        assert_eq!(r.guard_for(&p), None);
    }

    #[test]
    fn a_second_update_rolls_back_to_the_first() {
        let mut r = Revisions::default();
        let p = pod("u1", "reg/app:1", false);
        r.update_image(
            "u1",
            "app",
            "reg/app:1@sha256:bb",
            "sha256:bb",
            Some("reg/app:1@sha256:aa"),
        );
        let g = r.guard_for(&p).unwrap();
        assert_eq!(r.verdict(&p, g, Verdict::Ready).0, Action::None);
        r.update_image(
            "u1",
            "app",
            "reg/app:1@sha256:cc",
            "sha256:cc",
            Some("reg/app:1@sha256:bb"),
        );
        let g = r.guard_for(&p).unwrap();
        let (_, report) = r.verdict(&p, g, failed());
        assert!(report.unwrap().3.ends_with("rolled back to sha256:bb"));
        assert_eq!(image_of(&r.pinned_pod(&p)), "reg/app:1@sha256:bb");
    }

    #[test]
    fn manifest_rollback_holds_the_revision_back_until_the_file_changes() {
        let mut r = Revisions::default();
        let good = pod("u1", "reg/app:1", true);
        let g = r.guard_for(&good).unwrap();
        r.verdict(&good, g, Verdict::Ready);
        let bad = pod("u2", "reg/app:broken", true);
        assert_eq!(r.substitute(vec![bad.clone()]), vec![bad.clone()]);
        let g = r.guard_for(&bad).unwrap();
        let (action, report) = r.verdict(&bad, g, failed());
        assert_eq!(action, Action::Reapply);
        assert_eq!(report.unwrap().2, "u2");
        // The same (broken) file keeps the good revision running: no flapping.
        for _ in 0..3 {
            let pods = r.substitute(vec![bad.clone()]);
            assert!(Arc::ptr_eq(&pods[0], &good));
            assert_eq!(
                r.guard_for(&pods[0]),
                None,
                "the restored revision is not judged"
            );
        }
        // The next edit is tried afresh, and guarded.
        let next = pod("u3", "reg/app:2", true);
        assert_eq!(r.substitute(vec![next.clone()]), vec![next.clone()]);
        assert_eq!(r.guard_for(&next), Some(Guarded::Manifest));
    }

    #[test]
    fn a_rollback_survives_an_agent_restart() {
        let mut r = Revisions::default();
        let good = pod("u1", "reg/app:1", true);
        let g = r.guard_for(&good).unwrap();
        r.verdict(&good, g, Verdict::Ready);
        let bad = pod("u2", "reg/app:broken", true);
        let g = r.guard_for(&bad).unwrap();
        r.verdict(&bad, g, failed());
        let json = serde_json::to_vec(&r.record()).unwrap();
        let mut again = Revisions::restore(serde_json::from_slice(&json).unwrap());
        assert_eq!(again.record(), r.record());
        // The broken file is still held back, and the good revision runs.
        let pods = again.substitute(vec![bad.clone()]);
        assert_eq!(*pods[0], *good);
        let reports: Vec<_> = again
            .reports()
            .map(|(n, (reason, _))| (n.clone(), reason.clone()))
            .collect();
        assert_eq!(
            reports,
            [("default/web-n1".to_string(), "CrashLoopBackOff".to_string())]
        );
    }

    #[test]
    fn without_a_ready_revision_or_opt_in_nothing_is_rolled_back() {
        let mut r = Revisions::default();
        let first = pod("u1", "reg/app:1", true);
        let g = r.guard_for(&first).unwrap();
        assert_eq!(r.verdict(&first, g, failed()), (Action::None, None));
        let plain = pod("u2", "reg/app:1", false);
        assert_eq!(r.guard_for(&plain), None);
    }
}
