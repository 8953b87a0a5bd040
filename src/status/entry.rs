//! One pod as the store keeps it, and how it renders into the `Pod` the API serves: the
//! spec with its `PodStatus` built from the containers' states.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::log_drops::{self, LogDrops};
use super::phase::{self, pod_phase, PodPhase};
use super::{pod_resources, resize};
use crate::cgroups::PodLimits;
use crate::manifest::StaticPod;

/// Which list of the pod spec a container belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Init,
    App,
}

#[derive(Debug, Clone)]
pub(super) struct PodEntry {
    /// Shared with the pod's worker, not a copy.
    pub pod: Arc<StaticPod>,
    pub started: Timestamp,
    /// In spec order, init containers first. A Vec, not a map: a B-tree node holds room
    /// for eleven ContainerStatus (~7.8 KB) even for the usual one container.
    pub containers: Vec<(Kind, ContainerStatus)>,
    pub terminating_since: Option<Timestamp>,
    /// Set when the pod was evicted: (reason, message); the phase is then Failed.
    pub evicted: Option<(String, String)>,
    /// Containers whose log lines were dropped; empty for nearly every pod.
    pub log_drops: Vec<LogDrops>,
    /// The pod network's addresses (CNI ADD result); empty for hostNetwork pods.
    pub pod_ips: Vec<String>,
    /// An in-place resize being applied.
    pub resizing: Option<resize::Resizing>,
    /// The limits the pod cgroup has, once the worker made it.
    pub cgroup: Option<PodLimits>,
}

pub(super) fn last_app_start(p: &PodEntry) -> Option<Timestamp> {
    let mut last = p.started;
    let mut any = false;
    for (kind, c) in &p.containers {
        if *kind != Kind::App {
            continue;
        }
        let s = c.state.as_ref()?;
        let at = s
            .running
            .as_ref()
            .and_then(|r| r.started_at.as_ref())
            .or_else(|| s.terminated.as_ref().and_then(|t| t.started_at.as_ref()))?;
        last = last.max(at.0);
        any = true;
    }
    any.then_some(last)
}

pub(super) fn render(p: &PodEntry, host_ip: Option<String>) -> Pod {
    let mut pod = p.pod.pod.clone();
    let spec = pod.spec.clone().unwrap_or_default();
    // Spec order, as the kubelet reports.
    let list = |kind: Kind| -> Vec<ContainerStatus> {
        p.containers
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, c)| c.clone())
            .collect()
    };
    let mut init = list(Kind::Init);
    let mut app = list(Kind::App);
    resize::fill(&spec, &mut init);
    resize::fill(&spec, &mut app);
    let phase = match p.evicted {
        Some(_) => PodPhase::Failed,
        None => pod_phase(&spec, &init, &app),
    };
    let (pod_ip, pod_ips) = if spec.host_network.unwrap_or(false) {
        (host_ip.clone(), None)
    } else {
        let ips: Vec<PodIP> = p
            .pod_ips
            .iter()
            .map(|ip| PodIP { ip: ip.clone() })
            .collect();
        (p.pod_ips.first().cloned(), (!ips.is_empty()).then_some(ips))
    };
    let (allocated_resources, resources) = pod_resources::of(&p.pod.pod, p.cgroup.as_ref());
    pod.status = Some(PodStatus {
        allocated_resources,
        resources,
        phase: Some(phase.as_str().into()),
        conditions: Some({
            let mut c = phase::conditions(&spec, &init, &app, p.started, phase);
            c.extend(log_drops::condition(&p.log_drops));
            c.extend(p.resizing.as_ref().map(resize::Resizing::condition));
            c
        }),
        host_ip,
        pod_ip,
        pod_ips,
        start_time: Some(Time(p.started)),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(app),
        reason: p.evicted.as_ref().map(|e| e.0.clone()),
        message: p.evicted.as_ref().map(|e| e.1.clone()),
        ..Default::default()
    });
    // What `kubectl get` reads to print Terminating.
    pod.metadata.deletion_timestamp = p.terminating_since.map(Time);
    pod
}
