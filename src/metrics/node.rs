//! The node's pressure conditions and what node-pressure eviction and node shutdown did.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::text::{header, label, lock};
use crate::status::StatusStore;

/// (what, signal or reason) → count: `eviction` by signal, `shutdown` by pod group.
fn counts() -> &'static Mutex<BTreeMap<(&'static str, String), u64>> {
    static C: std::sync::OnceLock<Mutex<BTreeMap<(&'static str, String), u64>>> =
        std::sync::OnceLock::new();
    C.get_or_init(Default::default)
}

/// A pod was evicted for `signal` (the kubelet's `evictions` counter).
pub fn eviction(signal: &str) {
    *lock(counts())
        .entry(("eviction", signal.into()))
        .or_default() += 1;
}

/// A pod was stopped for a node shutdown; `group` is `regular` or `critical`.
pub fn shutdown_stop(group: &str) {
    *lock(counts())
        .entry(("shutdown", group.into()))
        .or_default() += 1;
}

pub(super) fn render(out: &mut String, status: &StatusStore) {
    let conditions = status.node_conditions();
    header(
        out,
        "hostlet_node_condition",
        "The node's pressure conditions: 1 while true",
        "gauge",
    );
    for c in &conditions {
        let _ = writeln!(
            out,
            "hostlet_node_condition{{condition=\"{}\"}} {}",
            label(&c.type_),
            u8::from(c.status == "True")
        );
    }
    let c = lock(counts());
    header(
        out,
        "hostlet_evictions_total",
        "Pods evicted for node pressure, by eviction signal",
        "counter",
    );
    for ((what, key), n) in c.iter() {
        if *what == "eviction" {
            let _ = writeln!(
                out,
                "hostlet_evictions_total{{signal=\"{}\"}} {n}",
                label(key)
            );
        }
    }
    header(
        out,
        "hostlet_shutdown_pod_stops_total",
        "Pods stopped for a node shutdown, by group (regular, critical)",
        "counter",
    );
    for ((what, key), n) in c.iter() {
        if *what == "shutdown" {
            let _ = writeln!(
                out,
                "hostlet_shutdown_pod_stops_total{{group=\"{}\"}} {n}",
                label(key)
            );
        }
    }
}
