//! The agent's long-lived tasks, started through one handle so that stopping the agent
//! signals every one of them and waits for them (mini-redis's pattern): each task races
//! a shared [`CancellationToken`], and a [`TaskTracker`] says when all have ended.
//!
//! Pod workers are not among them on purpose: stopping the agent must leave containers
//! running for the next agent to adopt, and every record a worker writes is atomic, so a
//! worker dropped at any await point loses nothing (the kill storm in tests/drills.rs
//! drops them at random moments).

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `fut` until it ends by itself or the agent stops.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            if token.run_until_cancelled_owned(fut).await.is_none() {
                tracing::debug!(task = name, "task stopped");
            }
        });
    }

    /// Signals every task and waits up to `limit` for all of them to end; false if some
    /// did not (they are then dropped with the runtime).
    pub async fn stop(&self, limit: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }

    /// How many tasks have not ended yet.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stop_signals_every_task_and_waits_for_them() {
        let tasks = Tasks::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&str>(4);
        for name in ["a", "b"] {
            let tx = tx.clone();
            tasks.spawn(name, async move {
                // Dropped on cancel: its guard reports that it went.
                struct Gone(tokio::sync::mpsc::Sender<&'static str>, &'static str);
                impl Drop for Gone {
                    fn drop(&mut self) {
                        let _ = self.0.try_send(self.1);
                    }
                }
                let _g = Gone(tx, name);
                std::future::pending::<()>().await;
            });
        }
        drop(tx);
        tokio::task::yield_now().await;
        assert_eq!(tasks.running(), 2);
        assert!(tasks.stop(Duration::from_secs(1)).await);
        assert_eq!(tasks.running(), 0);
        let mut gone = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        gone.sort();
        assert_eq!(gone, ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ends_by_itself_leaves_the_tracker() {
        let tasks = Tasks::new();
        tasks.spawn("short", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(tasks.running(), 0);
        assert!(tasks.stop(Duration::from_secs(1)).await);
    }
}
