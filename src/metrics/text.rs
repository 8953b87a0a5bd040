//! The text exposition format's pieces and the registries' lock, shared by every file
//! that renders metrics.

use std::fmt::Write;
use std::sync::Mutex;

pub(super) fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value per the text exposition format.
pub(super) fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Metrics must never take the agent down; a poisoned lock still holds usable numbers.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
