//! Exponential back-off with the kubelet's numbers: crash loops restart at once the first
//! time, then after 10s, 20s, 40s … capped at 300s, and forgive after 10 minutes of
//! running. Image pulls back off the same way but never retry at once.

use std::time::Duration;

use crate::backoff::BackoffPolicy;

#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    first_is_free: bool,
    failures: u32,
}

impl Backoff {
    /// Crash-loop back-off: the first restart is immediate.
    pub fn restarts(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            first_is_free: true,
            failures: 0,
        }
    }

    /// Retry back-off (image pulls): the first retry already waits `initial`.
    pub fn retries(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            first_is_free: false,
            failures: 0,
        }
    }

    /// The delay before the next attempt, given how long the last attempt ran.
    pub fn next(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.policy.reset_after {
            self.failures = 0;
        }
        let step = if self.first_is_free {
            self.failures.checked_sub(1)
        } else {
            Some(self.failures)
        };
        self.failures = self.failures.saturating_add(1);
        match step {
            None => Duration::ZERO,
            Some(n) => self
                .policy
                .initial
                .checked_mul(1u32 << n.min(20))
                .map_or(self.policy.max, |d| d.min(self.policy.max)),
        }
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[Duration]) -> Vec<u64> {
        v.iter().map(Duration::as_secs).collect()
    }

    #[test]
    fn crash_loop_sequence_matches_kubelet() {
        let mut b = Backoff::restarts(BackoffPolicy::default());
        let got: Vec<_> = (0..9).map(|_| b.next(Duration::from_secs(1))).collect();
        assert_eq!(secs(&got), [0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn long_run_resets_back_off() {
        let mut b = Backoff::restarts(BackoffPolicy::default());
        for _ in 0..5 {
            b.next(Duration::from_secs(1));
        }
        assert_eq!(b.next(Duration::from_secs(600)), Duration::ZERO);
        assert_eq!(b.next(Duration::from_secs(1)), Duration::from_secs(10));
    }

    #[test]
    fn pull_retries_wait_from_the_start_and_never_overflow() {
        let mut b = Backoff::retries(BackoffPolicy::default());
        let got: Vec<_> = (0..40).map(|_| b.next(Duration::ZERO)).collect();
        assert_eq!(secs(&got[..6]), [10, 20, 40, 80, 160, 300]);
        assert!(got.iter().all(|d| *d <= Duration::from_secs(300)));
    }
}
