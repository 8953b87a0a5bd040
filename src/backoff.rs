//! The back-off policy: the kubelet's numbers for crash loops and image pulls. A leaf, so
//! configuration can name it without knowing the worker that applies it.

use std::time::Duration;

/// Exponential back-off: `initial`, doubled per failure up to `max`; a container that ran
/// `reset_after` starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// A container that ran at least this long starts its back-off over.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}
