//! The monitor's report of dropped log lines to the agent.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::logs::DropStats;
use crate::state;

/// How often the drop counts are written for the agent while lines are being dropped.
const DROPS_REPORT_EVERY: Duration = Duration::from_secs(1);

/// Tells the agent, through [`super::LOG_DROPS_FILE`], what the log writer dropped: when an
/// episode starts or ends, and at most once a second in between. The monitor's own log
/// gets one line per episode edge, not one per dropped line.
pub(super) struct DropReport {
    pub path: PathBuf,
    pub last: DropStats,
    pub at: Option<Instant>,
}

impl DropReport {
    pub fn update(&mut self, now: &DropStats, force: bool) {
        if *now == self.last {
            return;
        }
        let edge = now.dropping != self.last.dropping;
        let due = self.at.is_none_or(|t| t.elapsed() >= DROPS_REPORT_EVERY);
        if !(force || due || edge) {
            return;
        }
        if edge && now.dropping {
            tracing::warn!(
                error = now.error.as_deref().unwrap_or(""),
                "container log cannot be written; dropping its lines until it can"
            );
        } else if edge {
            tracing::info!(
                dropped_lines = now.dropped_lines,
                dropped_bytes = now.dropped_bytes,
                "container log writes resumed"
            );
        }
        self.at = Some(Instant::now());
        // On a full disk this can fail too; the next report tries again.
        if state::write_json(&self.path, now).is_ok() {
            self.last = now.clone();
        }
    }
}
