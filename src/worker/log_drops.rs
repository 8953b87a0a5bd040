//! Brings what the monitors report about dropped log lines into the status store and
//! the agent's log: one line when a container's log stops being written, one when it
//! resumes, never one per dropped line.

use std::collections::HashMap;
use std::time::Duration;

use crate::logs::DropStats;
use crate::state::Layout;
use crate::status::StatusStore;

/// How often the monitors' reports are read. They write at most once a second.
const EVERY: Duration = Duration::from_secs(2);

/// Runs for the agent's life.
pub async fn watch(layout: Layout, status: StatusStore) {
    let mut seen: HashMap<String, DropStats> = HashMap::new();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let ids = status.container_ids();
        for (uid, container, id) in &ids {
            // Absent for nearly every container: a failed open, microseconds each.
            let Some(now) = crate::runtime::log_drops(&layout, id) else {
                continue;
            };
            let before = seen.entry(id.clone()).or_default();
            if now == *before {
                continue;
            }
            report(&status, uid, container, id, before, &now);
            *before = now;
        }
        seen.retain(|id, _| ids.iter().any(|(_, _, i)| i == id));
    }
}

fn report(
    status: &StatusStore,
    uid: &str,
    container: &str,
    id: &str,
    before: &DropStats,
    now: &DropStats,
) {
    let span = tracing::info_span!("container", pod_uid = %uid, container = %container, container_id = %id);
    let _g = span.enter();
    if now.dropping && !before.dropping {
        tracing::warn!(
            error = now.error.as_deref().unwrap_or(""),
            "container log cannot be written; its lines are dropped until it can"
        );
    } else if !now.dropping && before.dropping {
        tracing::info!(
            dropped_lines = now.dropped_lines,
            dropped_bytes = now.dropped_bytes,
            "container log writes resumed"
        );
    }
    let lines = now.dropped_lines.saturating_sub(before.dropped_lines);
    let bytes = now.dropped_bytes.saturating_sub(before.dropped_bytes);
    status.log_drops(
        uid,
        container,
        (lines, bytes),
        now.dropping,
        now.error.clone(),
    );
}
