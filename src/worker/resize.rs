//! In-place resize (KEP-1287) of a static pod: whether an edited manifest only changes
//! the cpu and memory of its containers (and of the pod, `spec.resources`), and what each
//! container then needs. The kubelet recreates a static pod on any edit; hostlet resizes
//! it in place when the kubelet would resize an API pod, and recreates it otherwise (pure).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cgroups::{qos_class, Compute};
use crate::manifest::{StaticPod, CONFIG_HASH_ANNOTATION, CONFIG_SEEN_ANNOTATION};

/// The resources a resize may change, as the API server allows.
const RESIZABLE: [&str; 2] = ["cpu", "memory"];

/// What an edit of a running pod's manifest calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing the pod runs with changed.
    Unchanged,
    /// Only resources changed, and the kubelet's rules allow resizing them in place.
    InPlace(Plan),
    /// A new pod: more than resources changed, or the resize is one the kubelet refuses.
    Recreate(Why),
}

/// Why an edit makes a new pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Something other than cpu and memory resources changed.
    NotOnlyResources,
    /// The kubelet marks the resize Infeasible: its message.
    Infeasible(String),
}

/// A resize in place: the pod cgroup and the containers it touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `spec.resources` changed.
    pub pod_level: bool,
    pub containers: Vec<ContainerResize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerResize {
    pub name: String,
    /// Its resizePolicy asks for a restart for one of the resources that changed.
    pub restart: bool,
    /// Its memory limit goes down: applied only once its usage fits.
    pub memory_decrease: bool,
}

impl Plan {
    /// The containers resized without a restart.
    pub fn in_place(&self) -> impl Iterator<Item = &ContainerResize> {
        self.containers.iter().filter(|c| !c.restart)
    }
    pub fn restarts(&self) -> impl Iterator<Item = &ContainerResize> {
        self.containers.iter().filter(|c| c.restart)
    }
}

/// Decides what replacing `old` by `new` (the same pod's manifest, edited) calls for.
pub fn decide(old: &Pod, new: &Pod) -> Decision {
    if without_resources(old) != without_resources(new) {
        return Decision::Recreate(Why::NotOnlyResources);
    }
    let (Some(os), Some(ns)) = (old.spec.as_ref(), new.spec.as_ref()) else {
        return Decision::Unchanged;
    };
    let mut plan = Plan {
        pod_level: os.resources != ns.resources,
        containers: Vec::new(),
    };
    if plan.pod_level {
        if let Err(m) = resizable(os.resources.as_ref(), ns.resources.as_ref(), "pod") {
            return Decision::Recreate(Why::Infeasible(m));
        }
    }
    let old_init = os.init_containers.as_deref().unwrap_or_default();
    let new_init = ns.init_containers.as_deref().unwrap_or_default();
    let pairs = old_init
        .iter()
        .zip(new_init)
        .chain(os.containers.iter().zip(&ns.containers));
    for (o, n) in pairs {
        if o.resources == n.resources {
            continue;
        }
        // Only containers that keep running may be resized: a regular init container ran
        // to completion (the API server refuses the edit).
        let sidecar = n.restart_policy.as_deref() == Some("Always");
        if old_init.iter().any(|c| c.name == n.name) && !sidecar {
            let m = format!("init container {}: only sidecars can be resized", n.name);
            return Decision::Recreate(Why::Infeasible(m));
        }
        match resize_of(o, n) {
            Ok(c) => plan.containers.push(c),
            Err(m) => return Decision::Recreate(Why::Infeasible(m)),
        }
    }
    if !plan.pod_level && plan.containers.is_empty() {
        return Decision::Unchanged;
    }
    let (from, to) = (qos_class(old), qos_class(new));
    if from != to {
        let m = format!("Pod QOS Class may not change as a result of resizing: {from:?} to {to:?}");
        return Decision::Recreate(Why::Infeasible(m));
    }
    Decision::InPlace(plan)
}

/// The `edited` spec as the running pod's: it keeps its metadata (UID, name, config
/// annotations), as a resized pod keeps its identity; only what the edit changed differs.
pub fn with_identity(running: &StaticPod, edited: &StaticPod) -> StaticPod {
    let mut pod = edited.pod.clone();
    pod.metadata = running.pod.metadata.clone();
    StaticPod {
        pod,
        uid: running.uid.clone(),
        source: edited.source.clone(),
    }
}

/// The pod with every container's and the pod's resources, and what derives from the
/// content (UID, config hash, when the source first saw that UID), left out.
fn without_resources(pod: &Pod) -> Pod {
    let mut p = pod.clone();
    p.metadata.uid = None;
    if let Some(a) = p.metadata.annotations.as_mut() {
        a.remove(CONFIG_HASH_ANNOTATION);
        a.remove(CONFIG_SEEN_ANNOTATION);
    }
    if let Some(s) = p.spec.as_mut() {
        s.resources = None;
        let init = s.init_containers.iter_mut().flatten();
        for c in init.chain(s.containers.iter_mut()) {
            c.resources = None;
        }
    }
    p
}

fn resize_of(o: &Container, n: &Container) -> Result<ContainerResize, String> {
    let what = format!("container {}", n.name);
    resizable(o.resources.as_ref(), n.resources.as_ref(), &what)?;
    let changed = changed(o.resources.as_ref(), n.resources.as_ref());
    let restart = changed.iter().any(|r| policy(n, r) == "RestartContainer");
    let (om, nm) = (Compute::of(o).memory_limit, Compute::of(n).memory_limit);
    Ok(ContainerResize {
        name: n.name.clone(),
        restart,
        memory_decrease: matches!((om, nm), (Some(a), Some(b)) if b < a),
    })
}

/// The container's resizePolicy for `resource` (NotRequired when unset).
fn policy<'a>(c: &'a Container, resource: &str) -> &'a str {
    c.resize_policy
        .iter()
        .flatten()
        .find(|p| p.resource_name == resource)
        .map_or("NotRequired", |p| p.restart_policy.as_str())
}

type Map = BTreeMap<String, Quantity>;

fn requests(r: Option<&ResourceRequirements>) -> Option<&Map> {
    r.and_then(|r| r.requests.as_ref())
}
fn limits(r: Option<&ResourceRequirements>) -> Option<&Map> {
    r.and_then(|r| r.limits.as_ref())
}
fn get<'a>(m: Option<&'a Map>, k: &str) -> Option<&'a Quantity> {
    m.and_then(|m| m.get(k))
}

/// The resources (cpu, memory) whose request or limit differs.
fn changed(
    o: Option<&ResourceRequirements>,
    n: Option<&ResourceRequirements>,
) -> Vec<&'static str> {
    RESIZABLE
        .into_iter()
        .filter(|r| {
            get(requests(o), r) != get(requests(n), r) || get(limits(o), r) != get(limits(n), r)
        })
        .collect()
}

/// The API server's and the kubelet's limits on what a resize may change: only cpu and
/// memory, and a limit once set cannot be removed.
fn resizable(
    o: Option<&ResourceRequirements>,
    n: Option<&ResourceRequirements>,
    what: &str,
) -> Result<(), String> {
    let names = |m: Option<&Map>| -> Vec<String> {
        m.into_iter().flatten().map(|(k, _)| k.clone()).collect()
    };
    let mut keys: Vec<String> = [requests(o), limits(o), requests(n), limits(n)]
        .into_iter()
        .flat_map(names)
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys.iter().filter(|k| !RESIZABLE.contains(&k.as_str())) {
        if get(requests(o), k) != get(requests(n), k) || get(limits(o), k) != get(limits(n), k) {
            return Err(format!(
                "{what}: resource {k} cannot be resized, only cpu and memory"
            ));
        }
    }
    for r in RESIZABLE {
        if get(limits(o), r).is_some() && get(limits(n), r).is_none() {
            return Err(format!("{what}: the {r} limit cannot be removed"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "resize_tests.rs"]
mod tests;
