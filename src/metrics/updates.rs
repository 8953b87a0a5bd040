//! Safe updates' counters: auto-update results and rollbacks, each rollback labelled
//! with its pod, what was rolled back and why.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::text::{header, label, lock};

#[derive(Default)]
struct Counts {
    /// Per container checked: `false`, `pending`, `true`, `failed`.
    auto_updates: BTreeMap<String, u64>,
    /// (namespace/name, kind, reason, failed revision) → count.
    rollbacks: BTreeMap<(String, String, String, String), u64>,
}

fn counts() -> &'static Mutex<Counts> {
    static C: std::sync::OnceLock<Mutex<Counts>> = std::sync::OnceLock::new();
    C.get_or_init(Default::default)
}

/// A container's row of an auto-update check ended with `updated`.
pub fn auto_update(updated: &str) {
    *lock(counts())
        .auto_updates
        .entry(updated.to_string())
        .or_default() += 1;
}

/// Pod `pod` was rolled back from `revision` (an image digest or a manifest's UID);
/// `kind` is `image` or `manifest`.
pub fn rollback(pod: &str, kind: &str, reason: &str, revision: &str) {
    let key = (pod.into(), kind.into(), reason.into(), revision.into());
    *lock(counts()).rollbacks.entry(key).or_default() += 1;
}

pub(super) fn render(out: &mut String) {
    let c = lock(counts());
    header(
        out,
        "hostlet_auto_update_checks_total",
        "Containers checked by auto-update, by the UPDATED column's value",
        "counter",
    );
    for (updated, n) in &c.auto_updates {
        let _ = writeln!(
            out,
            "hostlet_auto_update_checks_total{{updated=\"{}\"}} {n}",
            label(updated)
        );
    }
    header(
        out,
        "hostlet_rollbacks_total",
        "Revisions rolled back, by pod, kind (image or manifest), reason and failed revision",
        "counter",
    );
    for ((pod, kind, reason, revision), n) in &c.rollbacks {
        let _ = writeln!(
            out,
            "hostlet_rollbacks_total{{pod=\"{}\",kind=\"{}\",reason=\"{}\",revision=\"{}\"}} {n}",
            label(pod),
            label(kind),
            label(reason),
            label(revision)
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rollbacks_are_rendered_with_their_revision() {
        super::rollback("default/web-n1", "image", "CrashLoopBackOff", "sha256:bb");
        super::auto_update("true");
        let mut out = String::new();
        super::render(&mut out);
        assert!(out.contains(
            "hostlet_rollbacks_total{pod=\"default/web-n1\",kind=\"image\",reason=\"CrashLoopBackOff\",revision=\"sha256:bb\"} 1"
        ), "{out}");
        assert!(out.contains("hostlet_auto_update_checks_total{updated=\"true\"}"));
    }
}
