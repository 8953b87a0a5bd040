//! Combines the snapshots of several sources into the single stream of full snapshots the
//! manager reads.
//!
//! Sources are given in priority order (the file source first): when two sources declare the
//! same namespace/name, the earlier source wins and the other pod is reported as a duplicate
//! and not run, whichever appeared first. A fixed rule keeps the outcome the same across agent
//! restarts, which "first seen" would not.

use std::collections::{HashMap, HashSet};

use tokio::sync::mpsc;

use super::{ProblemKind, Snapshot, SourceProblem};

/// Forwards merged snapshots of `inputs` to `tx` until every input ends or `tx` closes.
///
/// Nothing is sent before every source has sent its first snapshot: the manager's first
/// snapshot decides which containers of an earlier agent are stopped, so it must be complete.
pub async fn run(inputs: Vec<mpsc::Receiver<Snapshot>>, tx: mpsc::Sender<Snapshot>) {
    let n = inputs.len();
    let (itx, mut irx) = mpsc::channel::<(usize, Snapshot)>(16);
    for (i, mut rx) in inputs.into_iter().enumerate() {
        let itx = itx.clone();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if itx.send((i, s)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(itx);
    let mut latest: Vec<Option<Snapshot>> = vec![None; n];
    let mut merger = Merger::default();
    let mut last_sent: Option<Snapshot> = None;
    loop {
        let (i, snap) = tokio::select! {
            _ = tx.closed() => return,
            msg = irx.recv() => match msg {
                Some(m) => m,
                None => return,
            },
        };
        latest[i] = Some(snap);
        let Some(all) = latest.iter().cloned().collect::<Option<Vec<_>>>() else {
            continue;
        };
        let merged = merger.merge(&all);
        if last_sent.as_ref() != Some(&merged) {
            if tx.send(merged.clone()).await.is_err() {
                return;
            }
            last_sent = Some(merged);
        }
    }
}

/// The merge itself, with the memory of which duplicates were already logged.
#[derive(Default)]
pub struct Merger {
    reported: HashSet<(String, String)>,
}

impl Merger {
    /// One snapshot of everything `snaps` (in priority order) declare.
    pub fn merge(&mut self, snaps: &[Snapshot]) -> Snapshot {
        let mut out = Snapshot::default();
        let mut names: HashMap<String, String> = HashMap::new();
        let mut uids = HashSet::new();
        let mut reported = HashSet::new();
        for snap in snaps {
            out.problems.extend(snap.problems.iter().cloned());
            for pod in &snap.pods {
                let full_name = pod.full_name();
                let origin = pod.source.to_string();
                let first = names.get(&full_name).cloned().or_else(|| {
                    (!uids.insert(pod.uid.clone())).then(|| format!("the pod with uid {}", pod.uid))
                });
                let Some(first) = first else {
                    names.insert(full_name, origin);
                    out.pods.push(pod.clone());
                    continue;
                };
                let key = (origin.clone(), full_name.clone());
                if !self.reported.contains(&key) {
                    tracing::warn!(origin = %origin, pod = %full_name, first = %first,
                        "duplicate pod: another source declares the same namespace/name; not running this one");
                }
                reported.insert(key);
                out.problems.push(SourceProblem {
                    origin,
                    kind: ProblemKind::Duplicate,
                    message: format!(
                        "pod {full_name} is already declared by {first}; not running this one"
                    ),
                });
            }
        }
        let mut objects = HashMap::new();
        for snap in snaps {
            for obj in &snap.objects {
                let id = format!("{} {}", obj.kind.as_str(), obj.full_name());
                if let Some(first) = objects.get(&id) {
                    let origin = obj.source.to_string();
                    let key = (origin.clone(), id.clone());
                    if !self.reported.contains(&key) {
                        tracing::warn!(origin = %origin, object = %id, first = %first,
                            "duplicate object: another source declares the same kind/namespace/name; not using this one");
                    }
                    reported.insert(key);
                    out.problems.push(SourceProblem {
                        origin,
                        kind: ProblemKind::Duplicate,
                        message: format!("{id} is already declared by {first}; not using this one"),
                    });
                    continue;
                }
                objects.insert(id, obj.source.to_string());
                out.objects.push(obj.clone());
            }
        }
        self.reported = reported;
        out.problems.sort();
        out
    }
}

#[cfg(test)]
mod tests;
