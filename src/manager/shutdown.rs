//! Graceful node shutdown, the manager's side: on logind's `PrepareForShutdown(true)`
//! regular pods are stopped first, within `shutdownGracePeriod` less
//! `shutdownGracePeriodCriticalPods`, then critical pods within the latter (the kubelet's
//! two priority groups); each pod is reported as the kubelet reports it (phase Failed,
//! reason `Terminated`). A cancelled shutdown restarts them. At the next boot pods
//! start again from their manifests: nothing of the stop is recorded on disk.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::shutdown::logind::{self, Event};
use crate::worker::{Deps, Kill, NodeKills};

/// The kubelet's pod status for a node shutdown (nodeshutdown manager).
pub const REASON: &str = "Terminated";
pub const MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";

/// `shutdownGracePeriod` and `shutdownGracePeriodCriticalPods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    pub period: Duration,
    pub critical: Duration,
}

impl ShutdownConfig {
    /// Off when both are zero, as in the kubelet.
    pub fn enabled(&self) -> bool {
        !self.period.is_zero()
    }
}

/// One group of pods stopped together, with its grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: &'static str,
    pub uids: Vec<String>,
    pub grace: Duration,
}

/// The pods to stop, in order: regular ones, then critical ones (`crate::pressure`'s
/// rule, the kubelet's `IsCriticalPod` without its static-pod clause).
pub fn groups(cfg: ShutdownConfig, pods: &[(String, bool)]) -> Vec<Group> {
    let pick = |critical: bool| -> Vec<String> {
        pods.iter()
            .filter(|(_, c)| *c == critical)
            .map(|(u, _)| u.clone())
            .collect()
    };
    vec![
        Group {
            name: "regular",
            uids: pick(false),
            grace: cfg.period.saturating_sub(cfg.critical),
        },
        Group {
            name: "critical",
            uids: pick(true),
            grace: cfg.critical,
        },
    ]
}

/// Stops each group's pods and waits until they are gone, or the group's grace period
/// is over, before the next group.
pub async fn stop_groups(kills: &NodeKills, groups: &[Group]) {
    for g in groups {
        if g.uids.is_empty() {
            continue;
        }
        tracing::info!(
            group = g.name,
            pods = g.uids.len(),
            grace_s = g.grace.as_secs_f64(),
            "stopping pods for the node shutdown"
        );
        for uid in &g.uids {
            kills.kill(
                uid,
                Kill {
                    reason: REASON.into(),
                    message: MESSAGE.into(),
                    grace: g.grace,
                    done: false,
                },
            );
            crate::metrics::shutdown_stop(g.name);
        }
        let mut rx = kills.subscribe();
        let all_done = rx.wait_for(|m| g.uids.iter().all(|u| m.get(u).is_none_or(|k| k.done)));
        if tokio::time::timeout(g.grace, all_done).await.is_err() {
            tracing::warn!(
                group = g.name,
                "pods still stopping when their shutdown grace period ended"
            );
        }
    }
}

/// Runs for the agent's life: takes the inhibitor lock through logind and stops the pods
/// on a shutdown; `restart` asks the manager to restart pods after a cancelled one.
pub async fn run(cfg: ShutdownConfig, deps: Arc<Deps>, restart: mpsc::Sender<String>) {
    let (tx, mut rx) = mpsc::channel(4);
    let period = cfg.period;
    let spawned = std::thread::Builder::new()
        .name("logind".into())
        .spawn(move || logind::serve(period, tx));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "graceful node shutdown unavailable");
        return;
    }
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Inhibited => tracing::info!(
                grace_period_s = cfg.period.as_secs_f64(),
                critical_s = cfg.critical.as_secs_f64(),
                "holding a shutdown delay inhibitor lock (graceful node shutdown)"
            ),
            Event::Failed(e) => {
                tracing::warn!(error = %e, "graceful node shutdown unavailable");
                return;
            }
            Event::Shutdown(done) => {
                tracing::warn!("the node is shutting down; stopping pods");
                let pods: Vec<(String, bool)> = deps
                    .status
                    .pods()
                    .into_iter()
                    .filter_map(|p| {
                        // Pods that finished have nothing to stop.
                        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                        if !matches!(phase, Some("Running" | "Pending")) {
                            return None;
                        }
                        let uid = p.metadata.uid.clone()?;
                        let critical = crate::pressure::is_critical(p.spec.as_ref());
                        Some((uid, critical))
                    })
                    .filter(|(uid, _)| deps.node_kills.get(uid).is_none())
                    .collect();
                stop_groups(&deps.node_kills, &groups(cfg, &pods)).await;
                let _ = done.send(());
            }
            Event::Cancelled => {
                tracing::info!("the node shutdown was cancelled; restarting the pods it stopped");
                for (uid, k) in deps.node_kills.all() {
                    if k.reason == REASON {
                        deps.node_kills.release(&uid);
                        let _ = restart.send(uid).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn cfg(period: u64, critical: u64) -> ShutdownConfig {
        ShutdownConfig {
            period: Duration::from_secs(period),
            critical: Duration::from_secs(critical),
        }
    }

    #[test]
    fn regular_pods_first_then_critical_ones_each_with_its_share() {
        let pods = [
            ("a".to_string(), false),
            ("c".to_string(), true),
            ("b".to_string(), false),
        ];
        let g = groups(cfg(30, 10), &pods);
        assert_eq!(g[0].uids, ["a", "b"]);
        assert_eq!(g[0].grace, Duration::from_secs(20));
        assert_eq!(g[1].uids, ["c"]);
        assert_eq!(g[1].grace, Duration::from_secs(10));
        assert!(!cfg(0, 0).enabled());
        assert!(cfg(5, 0).enabled());
    }

    /// A stand-in for the pods' workers: each stops `took` after its kill, and the time
    /// its kill arrived is recorded.
    fn workers(
        kills: Arc<NodeKills>,
        took: Vec<(&'static str, u64)>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<(&'static str, Duration)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        for (uid, secs) in took {
            let (kills, tx) = (kills.clone(), tx.clone());
            tokio::spawn(async move {
                let mut sub = kills.subscribe();
                let _ = sub.wait_for(|m| m.contains_key(uid)).await;
                let _ = tx.send((uid, start.elapsed()));
                tokio::time::sleep(Duration::from_secs(secs)).await;
                kills.done(uid);
            });
        }
        rx
    }

    #[tokio::test(start_paused = true)]
    async fn critical_pods_wait_for_the_regular_ones() {
        let kills = Arc::new(NodeKills::default());
        let mut seen = workers(kills.clone(), vec![("r1", 3), ("r2", 5), ("c1", 1)]);
        tokio::task::yield_now().await;
        let g = groups(
            cfg(30, 10),
            &[
                ("r1".into(), false),
                ("r2".into(), false),
                ("c1".into(), true),
            ],
        );
        let begun = Instant::now();
        stop_groups(&kills, &g).await;
        // The regular pods are gone after 5 s; the critical one is stopped then.
        assert_eq!(begun.elapsed(), Duration::from_secs(6));
        let mut order = Vec::new();
        while let Ok(x) = seen.try_recv() {
            order.push(x);
        }
        order.sort_by_key(|x| (x.1, x.0));
        assert_eq!(
            order,
            [
                ("r1", Duration::ZERO),
                ("r2", Duration::ZERO),
                ("c1", Duration::from_secs(5))
            ]
        );
        let k = kills.get("r1").unwrap();
        assert_eq!((k.reason.as_str(), k.message.as_str()), (REASON, MESSAGE));
        assert_eq!(k.grace, Duration::from_secs(20));
        assert_eq!(kills.get("c1").unwrap().grace, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_that_overruns_its_grace_does_not_hold_up_the_next() {
        let kills = Arc::new(NodeKills::default());
        let mut seen = workers(kills.clone(), vec![("slow", 100), ("c1", 1)]);
        tokio::task::yield_now().await;
        let g = groups(cfg(8, 3), &[("slow".into(), false), ("c1".into(), true)]);
        stop_groups(&kills, &g).await;
        let mut order = Vec::new();
        while let Ok(x) = seen.try_recv() {
            order.push(x);
        }
        order.sort_by_key(|x| (x.1, x.0));
        assert_eq!(
            order,
            [("slow", Duration::ZERO), ("c1", Duration::from_secs(5))]
        );
    }
}
