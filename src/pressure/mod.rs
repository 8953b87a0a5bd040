//! Node-pressure eviction for one host, by the kubelet's rules
//! (pkg/kubelet/eviction/eviction_manager.go `synchronize`, helpers.go): which thresholds
//! are met (soft ones only after their grace period, met ones until the minimum reclaim
//! is back), the node conditions they raise (kept for the pressure transition period),
//! which pod goes first, and the eviction message. Pure: the manager observes the
//! filesystems, reclaims and evicts (`manager/pressure.rs`).
//!
//! **hostlet:** the kubelet never evicts a static pod (all are critical to it). hostlet
//! calls a pod critical only by its priority (`priorityClassName`
//! `system-node-critical`/`system-cluster-critical`, or `priority` ≥ 2000000000), so a
//! disk filled by an ordinary static pod can be freed. Memory and PID signals raise their
//! conditions but evict nothing: the pods' memory limits and the kernel's OOM killer
//! act there.

pub mod thresholds;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use tokio::time::Instant;

pub use thresholds::{Condition, Signal, Threshold, ThresholdFlags, Value, CONDITIONS};

/// The kubelet's reason of an evicted pod (eviction.Reason).
pub const REASON: &str = "Evicted";

/// The kubelet's default evictionPressureTransitionPeriod.
pub const DEFAULT_TRANSITION: Duration = Duration::from_secs(300);

/// The priority from which the kubelet calls a pod critical (scheduling.SystemCriticalPriority).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// What one signal measures now, in its unit (bytes, inodes, pids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: u64,
    pub capacity: u64,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// Whether `t` is met by `obs`; with `min_reclaim`, until the minimum reclaim is back too.
pub fn is_met(t: &Threshold, obs: &Observations, min_reclaim: bool) -> bool {
    let Some(o) = obs.get(&t.signal) else {
        return false;
    };
    let mut need = t.value.of(o.capacity);
    if min_reclaim {
        need += t.min_reclaim.map_or(0, |r| r.of(o.capacity));
    }
    o.available < need
}

/// The evaluation state kept between rounds.
#[derive(Debug, Default)]
pub struct Evaluator {
    /// Thresholds met in the last round, kept met until their minimum reclaim is back.
    met: Vec<Threshold>,
    first_observed: HashMap<(Signal, bool), Instant>,
    condition_seen: HashMap<Condition, Instant>,
}

/// One round's outcome.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The node conditions that are true (met now, or within the transition period).
    pub conditions: BTreeSet<Condition>,
    /// Thresholds to act on now (met, and past the grace period of a soft one), hard first.
    pub act: Vec<Threshold>,
}

impl Evaluator {
    pub fn evaluate(
        &mut self,
        thresholds: &[Threshold],
        obs: &Observations,
        transition: Duration,
        now: Instant,
    ) -> Verdict {
        let mut met: Vec<Threshold> = thresholds
            .iter()
            .filter(|t| is_met(t, obs, false))
            .cloned()
            .collect();
        for t in &self.met {
            if !met.contains(t) && is_met(t, obs, true) {
                met.push(t.clone());
            }
        }
        self.first_observed
            .retain(|k, _| met.iter().any(|t| (t.signal, t.is_hard()) == *k));
        for t in &met {
            self.first_observed
                .entry((t.signal, t.is_hard()))
                .or_insert(now);
            self.condition_seen.insert(t.signal.condition(), now);
        }
        self.condition_seen
            .retain(|_, seen| now.saturating_duration_since(*seen) < transition || *seen == now);
        let mut act: Vec<Threshold> = met
            .iter()
            .filter(|t| {
                let since = self.first_observed[&(t.signal, t.is_hard())];
                now.saturating_duration_since(since) >= t.grace
            })
            .cloned()
            .collect();
        act.sort_by_key(|t| !t.is_hard());
        self.met = met;
        Verdict {
            conditions: self.condition_seen.keys().copied().collect(),
            act,
        }
    }
}

/// Whether the kubelet calls the pod critical (kubelettypes.IsCriticalPod, without its
/// static-pod rule: see the module comment).
pub fn is_critical(spec: Option<&PodSpec>) -> bool {
    let Some(s) = spec else { return false };
    matches!(
        s.priority_class_name.as_deref(),
        Some("system-node-critical" | "system-cluster-critical")
    ) || s.priority.is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// One container's use of the resource, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUse {
    pub name: String,
    pub usage: u64,
    pub request: u64,
}

/// A pod that may be evicted, with what it uses of the resource being reclaimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub uid: String,
    pub priority: i32,
    /// The pod's usage: containers' writable layers, logs and local volumes.
    pub usage: u64,
    /// The sum of its containers' requests (ephemeral-storage; none for inodes).
    pub request: u64,
    pub containers: Vec<ContainerUse>,
}

/// The kubelet's disk ranking (rankDiskPressureFunc): pods using more than they request
/// first, then lower priority, then higher usage. Ties keep their order.
pub fn rank(pods: &mut [Candidate]) {
    pods.sort_by(|a, b| {
        let exceeds = |c: &Candidate| c.usage > c.request;
        exceeds(b)
            .cmp(&exceeds(a))
            .then(a.priority.cmp(&b.priority))
            .then(b.usage.cmp(&a.usage))
    });
}

/// The kubelet's eviction message (evictionMessage): the resource, the threshold and what
/// is available, and each container using more than it requests.
pub fn message(t: &Threshold, obs: &Observations, pod: &Candidate) -> String {
    let resource = t.signal.resource();
    let count = t.signal.is_count();
    let mut m = format!("The node was low on resource: {resource}. ");
    if let Some(o) = obs.get(&t.signal) {
        m += &format!(
            "Threshold quantity: {}, available: {}. ",
            thresholds::format_quantity(t.value.of(o.capacity), count),
            thresholds::format_quantity(o.available, count)
        );
    }
    for c in pod.containers.iter().filter(|c| c.usage > c.request) {
        m += &format!(
            "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
            c.name,
            thresholds::format_quantity(c.usage, count),
            thresholds::format_quantity(c.request, count)
        );
    }
    m
}

#[cfg(test)]
mod tests;
