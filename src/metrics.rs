//! Process-wide counters and histograms for `/metrics`, and their Prometheus text
//! rendering. Events (image pulls, container starts) are recorded where they happen
//! through the small functions below; what the status store already knows (pods by
//! phase, containers by state, restarts) is read from it at scrape time.

mod histogram;
mod node;
mod probes;
mod text;
mod updates;

pub use node::{eviction, shutdown_stop};
pub use probes::{ProbeLabels, ProbeSeries};
pub use updates::{auto_update, rollback};

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use crate::source::{ProblemKind, SourceProblem};
use crate::status::StatusStore;
use histogram::Histogram;
use text::{header, label, lock};

/// Bucket bounds in seconds: pulls take from milliseconds (local registry) to minutes.
const PULL_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// The kubelet's `pod_start_duration_seconds` buckets.
const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];
const CONTAINER_START_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Registry {
    pulls_ok: AtomicU64,
    pulls_failed: AtomicU64,
    starts_ok: AtomicU64,
    starts_failed: AtomicU64,
    hist: Mutex<Hists>,
    /// Latest snapshot's problems by kind (replaced, not accumulated).
    manifest: Mutex<BTreeMap<&'static str, u64>>,
    /// Images refused by the signature policy, by reason (rejected, unsigned, invalid).
    signature_failures: [AtomicU64; 3],
}

struct Hists {
    pull: Histogram,
    pod_start: Histogram,
    container_start: Histogram,
}

fn registry() -> &'static Registry {
    static R: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    R.get_or_init(|| Registry {
        pulls_ok: AtomicU64::new(0),
        pulls_failed: AtomicU64::new(0),
        starts_ok: AtomicU64::new(0),
        starts_failed: AtomicU64::new(0),
        hist: Mutex::new(Hists {
            pull: Histogram::new(PULL_BUCKETS),
            pod_start: Histogram::new(POD_START_BUCKETS),
            container_start: Histogram::new(CONTAINER_START_BUCKETS),
        }),
        manifest: Mutex::new(BTreeMap::new()),
        signature_failures: Default::default(),
    })
}

/// The labels of `hostlet_image_signature_failures_total`, in the counters' order.
const SIGNATURE_FAILURES: [&str; 3] = ["rejected", "unsigned", "invalid"];

/// An image was refused by the signature policy; `reason` is one of SIGNATURE_FAILURES.
pub fn signature_failure(reason: &str) {
    let r = registry();
    if let Some(i) = SIGNATURE_FAILURES.iter().position(|l| *l == reason) {
        r.signature_failures[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// An image pull from a registry finished (not a local hit); `ok` says how.
pub fn image_pull(duration: Duration, ok: bool) {
    let r = registry();
    if ok {
        r.pulls_ok.fetch_add(1, Ordering::Relaxed);
        lock(&r.hist).pull.observe(duration.as_secs_f64());
    } else {
        r.pulls_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The runtime was asked to start a container; `duration` is create + start.
pub fn container_start(duration: Duration, ok: bool) {
    let r = registry();
    if ok {
        r.starts_ok.fetch_add(1, Ordering::Relaxed);
        lock(&r.hist)
            .container_start
            .observe(duration.as_secs_f64());
    } else {
        r.starts_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The sources' latest problems; called with every snapshot.
pub fn manifest_problems(problems: &[SourceProblem]) {
    let mut by_kind = BTreeMap::new();
    for kind in ERROR_KINDS {
        by_kind.insert(kind.as_str(), 0);
    }
    for p in problems {
        if let Some(n) = by_kind.get_mut(p.kind.as_str()) {
            *n += 1;
        }
    }
    *lock(&registry().manifest) = by_kind;
}

const ERROR_KINDS: [ProblemKind; 5] = [
    ProblemKind::Invalid,
    ProblemKind::Insecure,
    ProblemKind::Unreadable,
    ProblemKind::Duplicate,
    ProblemKind::Warning,
];

/// A pod reached Running: `latency` from the agent first seeing it to its last app
/// container running (the kubelet's `pod_start_duration_seconds`). Recorded by the
/// pod's worker on that transition, once per pod.
pub fn pod_start(latency: Duration) {
    lock(&registry().hist)
        .pod_start
        .observe(latency.as_secs_f64());
}

/// The whole `/metrics` body.
/// Log lines (and their bytes) each container's log writer could not write.
fn render_log_drops(out: &mut String, status: &StatusStore) {
    let drops = status.dropped_logs();
    let families = [
        (
            "hostlet_container_log_dropped_lines_total",
            "Log lines of each container of the current pods dropped because the log could not be written",
        ),
        (
            "hostlet_container_log_dropped_bytes_total",
            "Bytes of CRI log records dropped because the log could not be written",
        ),
    ];
    for (i, (name, help)) in families.into_iter().enumerate() {
        header(out, name, help, "counter");
        for (ns, pod, c, lines, bytes) in &drops {
            let n = if i == 0 { lines } else { bytes };
            let _ = writeln!(
                out,
                "{name}{{namespace=\"{}\",pod=\"{}\",container=\"{}\"}} {n}",
                label(ns),
                label(pod),
                label(c)
            );
        }
    }
}

pub fn render(status: &StatusStore) -> String {
    let r = registry();
    let mut out = String::with_capacity(8192);
    agent_gauges(&mut out, status);
    pod_gauges(&mut out, &status.pods());
    render_log_drops(&mut out, status);
    counters(&mut out, r);
    updates::render(&mut out);
    probes::render(&mut out);
    node::render(&mut out, status);
    let h = lock(&r.hist);
    h.pull.render(
        &mut out,
        "hostlet_image_pull_duration_seconds",
        "Duration of successful image pulls",
    );
    h.container_start.render(
        &mut out,
        "hostlet_container_start_duration_seconds",
        "Duration of container create and start",
    );
    h.pod_start.render(
        &mut out,
        "hostlet_pod_start_duration_seconds",
        "From the agent seeing a pod to all its containers running",
    );
    out
}

/// The agent's own state: its version and whether the sources have synced.
fn agent_gauges(out: &mut String, status: &StatusStore) {
    header(
        out,
        "hostlet_build_info",
        "hostlet's version; always 1",
        "gauge",
    );
    let _ = writeln!(
        out,
        "hostlet_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    header(
        out,
        "hostlet_sources_synced",
        "1 once every manifest source delivered its first complete view",
        "gauge",
    );
    let _ = writeln!(out, "hostlet_sources_synced {}", u8::from(status.synced()));
}

/// Pods by phase, containers by state, and each container's restarts.
fn pod_gauges(out: &mut String, pods: &[Pod]) {
    let mut phases: BTreeMap<&str, u64> = ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
        .into_iter()
        .map(|p| (p, 0))
        .collect();
    let mut states: BTreeMap<&str, u64> =
        [("running", 0), ("waiting", 0), ("terminated", 0)].into();
    let mut restarts = Vec::new();
    for pod in pods {
        let st = pod.status.clone().unwrap_or_default();
        let phase = st.phase.as_deref().unwrap_or("Unknown");
        let known = if phases.contains_key(phase) {
            phase
        } else {
            "Unknown"
        };
        if let Some(n) = phases.get_mut(known) {
            *n += 1;
        }
        let all = st
            .init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten());
        for c in all {
            let state = match &c.state {
                Some(s) if s.running.is_some() => "running",
                Some(s) if s.terminated.is_some() => "terminated",
                _ => "waiting",
            };
            *states.entry(state).or_default() += 1;
            restarts.push((
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
                c.name.clone(),
                c.restart_count,
            ));
        }
    }
    header(out, "hostlet_pods", "Pods by phase", "gauge");
    for (phase, n) in &phases {
        let _ = writeln!(out, "hostlet_pods{{phase=\"{phase}\"}} {n}");
    }
    header(out, "hostlet_containers", "Containers by state", "gauge");
    for (state, n) in &states {
        let _ = writeln!(out, "hostlet_containers{{state=\"{state}\"}} {n}");
    }
    header(
        out,
        "hostlet_container_restarts_total",
        "Restarts of each container of the current pods",
        "counter",
    );
    for (ns, pod, c, n) in &restarts {
        let _ = writeln!(
            out,
            "hostlet_container_restarts_total{{namespace=\"{}\",pod=\"{}\",container=\"{}\"}} {n}",
            label(ns),
            label(pod),
            label(c)
        );
    }
}

/// Container starts and image pulls by result, and the sources' manifest errors.
fn counters(out: &mut String, r: &Registry) {
    by_result(
        out,
        "hostlet_container_starts_total",
        "Container start attempts by result",
        [&r.starts_ok, &r.starts_failed],
    );
    by_result(
        out,
        "hostlet_image_pulls_total",
        "Image pulls from a registry by result",
        [&r.pulls_ok, &r.pulls_failed],
    );
    header(
        out,
        "hostlet_image_signature_failures_total",
        "Images refused by the signature policy, by reason",
        "counter",
    );
    for (label, n) in SIGNATURE_FAILURES.iter().zip(&r.signature_failures) {
        let _ = writeln!(
            out,
            "hostlet_image_signature_failures_total{{reason=\"{label}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    header(
        out,
        "hostlet_manifest_errors",
        "Manifests not (or not entirely) applied, by kind, in the sources' latest view",
        "gauge",
    );
    let manifest = lock(&r.manifest).clone();
    for kind in ERROR_KINDS {
        let n = manifest.get(kind.as_str()).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "hostlet_manifest_errors{{kind=\"{}\"}} {n}",
            kind.as_str()
        );
    }
}

/// A counter with a `success` and a `failure` series.
fn by_result(out: &mut String, name: &str, help: &str, [ok, failed]: [&AtomicU64; 2]) {
    header(out, name, help, "counter");
    for (result, n) in [("success", ok), ("failure", failed)] {
        let _ = writeln!(
            out,
            "{name}{{result=\"{result}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(5.0);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"2\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 7\n"), "{out}");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn render_lists_every_family() {
        let out = render(&StatusStore::new());
        for name in [
            "hostlet_pods{phase=\"Running\"} 0",
            "hostlet_containers{state=\"waiting\"} 0",
            "hostlet_image_pulls_total{result=\"success\"}",
            "hostlet_manifest_errors{kind=\"invalid\"} 0",
            "hostlet_pod_start_duration_seconds_count",
            "hostlet_sources_synced 0",
        ] {
            assert!(out.contains(name), "{name} missing in\n{out}");
        }
    }
    #[test]
    fn log_drops_are_counted_per_container_and_shown_as_a_condition() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: app, image: busybox}]}\n";
        let sp = crate::manifest::decode(std::path::Path::new("web.yaml"), yaml.as_bytes(), "n1")
            .unwrap();
        let status = StatusStore::new();
        status.pod_added(&std::sync::Arc::new(sp));
        let full = Some("No space left on device (os error 28)".to_string());
        status.log_drops(&pod_uid(&status), "app", (10, 500), true, full.clone());
        status.log_drops(&pod_uid(&status), "app", (5, 250), false, None);
        let out = render(&status);
        for want in [
            "hostlet_container_log_dropped_lines_total{namespace=\"default\",pod=\"web-n1\",container=\"app\"} 15\n",
            "hostlet_container_log_dropped_bytes_total{namespace=\"default\",pod=\"web-n1\",container=\"app\"} 750\n",
        ] {
            assert!(out.contains(want), "{want} missing in\n{out}");
        }
        let pod = status.pod("default", "web-n1").unwrap();
        let cond = pod.status.unwrap().conditions.unwrap();
        let c = cond
            .iter()
            .find(|c| c.type_ == crate::status::LOG_DROPS_CONDITION)
            .unwrap();
        assert_eq!(c.status, "False");
        assert!(c
            .message
            .as_deref()
            .unwrap()
            .contains("app: 15 lines (750 bytes) dropped, last: No space"));
    }

    fn pod_uid(status: &StatusStore) -> String {
        status.start_times()[0].0.clone()
    }
}
