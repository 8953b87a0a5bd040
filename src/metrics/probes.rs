//! The kubelet's prober metrics: `prober_probe_total` (results by probe type and
//! container) and `prober_probe_duration_seconds` (how long each check took). A series
//! lives while a probe of its container runs: the kubelet deletes a prober worker's
//! series when the worker stops, and so do the guards here, so pods that come and go do
//! not grow the registry.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::histogram::Histogram;
use super::text::{header, label, lock};

/// The kubelet's `metrics.DefBuckets`, which its prober duration histogram uses.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which container a probe checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProbeLabels {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
}

type Key = (&'static str, ProbeLabels);

struct Series {
    /// Probe tasks holding the series: a restarted container's new probe can start
    /// before the old one's task is dropped.
    holders: usize,
    successful: u64,
    failed: u64,
    duration: Histogram,
}

fn series() -> &'static Mutex<BTreeMap<Key, Series>> {
    static S: std::sync::OnceLock<Mutex<BTreeMap<Key, Series>>> = std::sync::OnceLock::new();
    S.get_or_init(Default::default)
}

/// One running probe's series; dropping the last holder of a series removes it.
#[derive(Debug)]
pub struct ProbeSeries {
    key: Key,
}

impl ProbeSeries {
    pub fn new(probe_type: &'static str, labels: ProbeLabels) -> Self {
        let key = (probe_type, labels);
        lock(series())
            .entry(key.clone())
            .or_insert_with(|| Series {
                holders: 0,
                successful: 0,
                failed: 0,
                duration: Histogram::new(BUCKETS),
            })
            .holders += 1;
        Self { key }
    }

    /// One check ended after `took`, successfully or not.
    pub fn observe(&self, ok: bool, took: Duration) {
        if let Some(s) = lock(series()).get_mut(&self.key) {
            if ok {
                s.successful += 1;
            } else {
                s.failed += 1;
            }
            s.duration.observe(took.as_secs_f64());
        }
    }
}

impl Drop for ProbeSeries {
    fn drop(&mut self) {
        let mut all = lock(series());
        if let Some(s) = all.get_mut(&self.key) {
            s.holders -= 1;
            if s.holders == 0 {
                all.remove(&self.key);
            }
        }
    }
}

fn labels(probe_type: &str, l: &ProbeLabels) -> String {
    format!(
        "probe_type=\"{}\",container=\"{}\",pod=\"{}\",namespace=\"{}\",",
        label(probe_type),
        label(&l.container),
        label(&l.pod),
        label(&l.namespace)
    )
}

pub(super) fn render(out: &mut String) {
    let all = lock(series());
    header(
        out,
        "prober_probe_total",
        "Cumulative number of a liveness, readiness or startup probe for a container by result",
        "counter",
    );
    for ((kind, l), s) in all.iter() {
        for (result, n) in [("successful", s.successful), ("failed", s.failed)] {
            let _ = writeln!(
                out,
                "prober_probe_total{{{}pod_uid=\"{}\",result=\"{result}\"}} {n}",
                labels(kind, l),
                label(&l.pod_uid)
            );
        }
    }
    let name = "prober_probe_duration_seconds";
    header(
        out,
        name,
        "Duration in seconds for a probe response",
        "histogram",
    );
    for ((kind, l), s) in all.iter() {
        s.duration.render_series(out, name, &labels(kind, l));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(container: &str) -> ProbeLabels {
        ProbeLabels {
            namespace: "default".into(),
            pod: "web-n1".into(),
            pod_uid: "u1".into(),
            container: container.into(),
        }
    }

    fn rendered() -> String {
        let mut out = String::new();
        render(&mut out);
        out
    }

    #[test]
    fn a_series_counts_results_and_durations_while_a_probe_holds_it() {
        let a = ProbeSeries::new("Readiness", web("probe-a"));
        a.observe(true, Duration::from_millis(3));
        a.observe(false, Duration::from_millis(700));
        let out = rendered();
        let l =
            "probe_type=\"Readiness\",container=\"probe-a\",pod=\"web-n1\",namespace=\"default\",";
        assert!(
            out.contains(&format!(
                "prober_probe_total{{{l}pod_uid=\"u1\",result=\"successful\"}} 1\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "prober_probe_total{{{l}pod_uid=\"u1\",result=\"failed\"}} 1\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "prober_probe_duration_seconds_bucket{{{l}le=\"0.005\"}} 1\n"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "prober_probe_duration_seconds_bucket{{{l}le=\"1\"}} 2\n"
            )),
            "{out}"
        );
        assert!(out.contains("prober_probe_duration_seconds_count{probe_type=\"Readiness\",container=\"probe-a\",pod=\"web-n1\",namespace=\"default\"} 2\n"), "{out}");
        drop(a);
        assert!(!rendered().contains("container=\"probe-a\""));
    }

    #[test]
    fn the_series_outlives_one_of_two_holders() {
        let old = ProbeSeries::new("Liveness", web("probe-b"));
        let new = ProbeSeries::new("Liveness", web("probe-b"));
        drop(old);
        new.observe(true, Duration::from_millis(1));
        assert!(rendered().contains("container=\"probe-b\",pod=\"web-n1\",namespace=\"default\",pod_uid=\"u1\",result=\"successful\"} 1"));
        drop(new);
        assert!(!rendered().contains("container=\"probe-b\""));
    }
}
