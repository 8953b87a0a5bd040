//! One auto-update check: the latest digest of every candidate's tag (at the registry or
//! in the store, per its policy), and, unless it is a dry run, the new images pulled and
//! pinned before anything restarts.

use std::collections::HashMap;
use std::future::Future;

use super::plan::{self, Candidate, Report, Updated};
use super::policy::AutoUpdate;
use crate::image::{ImageError, ImageStore};

/// The image store as a check uses it (a fake in the unit tests).
pub trait Store: Send + Sync {
    fn registry_digest(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<String, ImageError>> + Send;
    fn stored_digest(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, ImageError>> + Send;
    /// `reference` pinned to `digest`, its content present (pulled if needed).
    fn pinned(
        &self,
        reference: &str,
        digest: &str,
    ) -> impl Future<Output = Result<String, ImageError>> + Send;
}

impl Store for ImageStore {
    fn registry_digest(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<String, ImageError>> + Send {
        ImageStore::registry_digest(self, reference)
    }
    fn stored_digest(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, ImageError>> + Send {
        ImageStore::stored_digest(self, reference)
    }
    fn pinned(
        &self,
        reference: &str,
        digest: &str,
    ) -> impl Future<Output = Result<String, ImageError>> + Send {
        ImageStore::pinned(self, reference, digest)
    }
}

/// A container to restart on a new image: its pod, name, pinned reference and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub uid: String,
    pub container: String,
    pub reference: String,
    pub digest: String,
    /// The image the container ran, pinned too, to roll back to whatever the tag names
    /// by then (after `hostlet image import`, the store's tag names the new image).
    pub running: Option<String>,
}

/// Checks `candidates`; returns the report and, unless `dry_run`, the pins to apply. A
/// pod is updated only when every changed container of it was pulled, so a pod never
/// runs half a new revision.
pub async fn check(
    store: &impl Store,
    candidates: &[Candidate],
    dry_run: bool,
) -> (Report, Vec<Pin>) {
    // Each reference is asked once per check, however many containers use it.
    let mut latest: HashMap<(String, AutoUpdate), Result<String, String>> = HashMap::new();
    for c in candidates {
        let key = (c.image.clone(), c.policy);
        if latest.contains_key(&key) {
            continue;
        }
        let found = match c.policy {
            AutoUpdate::Registry => store.registry_digest(&c.image).await,
            AutoUpdate::Local => match store.stored_digest(&c.image).await {
                Ok(Some(d)) => Ok(d),
                Ok(None) => Err(ImageError::NotFound {
                    reference: c.image.clone(),
                }),
                Err(e) => Err(e),
            },
        };
        latest.insert(key, found.map_err(|e| e.to_string()));
    }
    let mut rows = Vec::with_capacity(candidates.len());
    let mut pins = Vec::new();
    for c in candidates {
        let found = &latest[&(c.image.clone(), c.policy)];
        let mut row = plan::row(
            c,
            found.as_ref().map(String::as_str).map_err(Clone::clone),
            dry_run,
        );
        if row.updated == Updated::True {
            let digest = row.latest.clone().unwrap_or_default();
            let running = match c.running.rsplit('@').next() {
                Some(d) if !d.is_empty() => store.pinned(&c.image, d).await.ok(),
                _ => None,
            };
            match store.pinned(&c.image, &digest).await {
                Ok(reference) => pins.push(Pin {
                    uid: c.uid.clone(),
                    container: c.container.clone(),
                    reference,
                    digest,
                    running,
                }),
                Err(e) => {
                    row.updated = Updated::Failed;
                    row.error = Some(e.to_string());
                }
            }
        }
        rows.push(row);
    }
    // A pod with a failed row keeps its current images: drop its other pins.
    let failed: Vec<&str> = candidates
        .iter()
        .zip(&rows)
        .filter(|(_, r)| r.updated == Updated::Failed && r.latest.is_some())
        .map(|(c, _)| c.uid.as_str())
        .collect();
    pins.retain(|p| !failed.contains(&p.uid.as_str()));
    for (c, r) in candidates.iter().zip(rows.iter_mut()) {
        if r.updated == Updated::True && failed.contains(&c.uid.as_str()) {
            r.updated = Updated::False;
        }
    }
    (Report { dry_run, rows }, pins)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        registry: HashMap<String, String>,
        stored: HashMap<String, String>,
        unpullable: Vec<String>,
        pulled: Mutex<Vec<String>>,
    }

    impl Store for Fake {
        async fn registry_digest(&self, reference: &str) -> Result<String, ImageError> {
            self.registry
                .get(reference)
                .cloned()
                .ok_or_else(|| ImageError::NotFound {
                    reference: reference.into(),
                })
        }
        async fn stored_digest(&self, reference: &str) -> Result<Option<String>, ImageError> {
            Ok(self.stored.get(reference).cloned())
        }
        async fn pinned(&self, reference: &str, digest: &str) -> Result<String, ImageError> {
            if self.unpullable.iter().any(|d| d == digest) {
                return Err(ImageError::Pull {
                    reference: reference.into(),
                    message: "unauthorized".into(),
                });
            }
            self.pulled.lock().unwrap().push(digest.to_string());
            Ok(format!("{reference}@{digest}"))
        }
    }

    fn cand(
        uid: &str,
        container: &str,
        image: &str,
        policy: AutoUpdate,
        running: &str,
    ) -> Candidate {
        Candidate {
            uid: uid.into(),
            pod: format!("default/{uid}"),
            container: container.into(),
            image: image.into(),
            policy,
            running: running.into(),
            failed: None,
        }
    }

    #[tokio::test]
    async fn dry_run_pulls_nothing() {
        let store = Fake {
            registry: HashMap::from([("r/app:1".into(), "sha256:bb".into())]),
            ..Default::default()
        };
        let cs = [cand(
            "p1",
            "app",
            "r/app:1",
            AutoUpdate::Registry,
            "sha256:aa",
        )];
        let (report, pins) = check(&store, &cs, true).await;
        assert_eq!(report.rows[0].updated, Updated::Pending);
        assert!(pins.is_empty());
        assert!(store.pulled.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn registry_and_local_policies() {
        let store = Fake {
            registry: HashMap::from([("r/app:1".into(), "sha256:bb".into())]),
            stored: HashMap::from([("r/side:1".into(), "sha256:cc".into())]),
            ..Default::default()
        };
        let cs = [
            cand("p1", "app", "r/app:1", AutoUpdate::Registry, "sha256:aa"),
            cand("p1", "side", "r/side:1", AutoUpdate::Local, "sha256:cc"),
            cand("p2", "app", "r/app:1", AutoUpdate::Registry, "sha256:bb"),
        ];
        let (report, pins) = check(&store, &cs, false).await;
        let updated: Vec<_> = report.rows.iter().map(|r| r.updated).collect();
        assert_eq!(updated, [Updated::True, Updated::False, Updated::False]);
        assert_eq!(
            pins,
            [Pin {
                uid: "p1".into(),
                container: "app".into(),
                reference: "r/app:1@sha256:bb".into(),
                digest: "sha256:bb".into(),
                running: Some("r/app:1@sha256:aa".into()),
            }]
        );
    }

    #[tokio::test]
    async fn a_failed_pull_keeps_the_whole_pod() {
        let store = Fake {
            registry: HashMap::from([
                ("r/app:1".into(), "sha256:bb".into()),
                ("r/side:1".into(), "sha256:dd".into()),
            ]),
            unpullable: vec!["sha256:dd".into()],
            ..Default::default()
        };
        let cs = [
            cand("p1", "app", "r/app:1", AutoUpdate::Registry, "sha256:aa"),
            cand("p1", "side", "r/side:1", AutoUpdate::Registry, "sha256:cc"),
        ];
        let (report, pins) = check(&store, &cs, false).await;
        assert!(pins.is_empty(), "{pins:?}");
        assert_eq!(report.rows[0].updated, Updated::False);
        assert_eq!(report.rows[1].updated, Updated::Failed);
        assert!(report.rows[1]
            .error
            .as_deref()
            .unwrap()
            .contains("unauthorized"));
    }

    #[tokio::test]
    async fn an_unknown_tag_is_a_failed_row() {
        let store = Fake::default();
        let cs = [cand("p1", "app", "r/app:1", AutoUpdate::Local, "sha256:aa")];
        let (report, pins) = check(&store, &cs, false).await;
        assert_eq!(report.rows[0].updated, Updated::Failed);
        assert!(pins.is_empty());
    }
}
