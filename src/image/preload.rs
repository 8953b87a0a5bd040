//! The preload directory `<root-dir>/images/preload/`: archives dropped there are imported at
//! agent start and when they appear, so an appliance can ship its images with no registry.
//!
//! The directory is polled (every `period`); a file is imported once its size and mtime are
//! the same on two polls in a row, so a copy still being written is not read half-way. Names
//! starting with `.` or ending in `.tmp`/`.part` are ignored. What was imported is recorded
//! (name, size, mtime) in the store database: a file is imported again only if it changes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use super::{blocking, ImageStore};

impl ImageStore {
    pub fn preload_dir(&self) -> PathBuf {
        self.root.join("preload")
    }

    /// Imports preload archives forever (run it in a task).
    pub async fn run_preload(&self, period: Duration) {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut first = true;
        loop {
            if let Err(e) = self.preload_pass(&mut seen, first).await {
                tracing::warn!(error = %e, dir = %self.preload_dir().display(), "cannot scan the preload directory");
            }
            first = false;
            tokio::time::sleep(period).await;
        }
    }

    /// One poll. On the first (agent start), files are taken as complete at once.
    async fn preload_pass(
        &self,
        seen: &mut BTreeMap<String, String>,
        first: bool,
    ) -> Result<(), super::ImageError> {
        let dir = self.preload_dir();
        let d = dir.clone();
        let now: BTreeMap<String, String> = blocking(move || {
            let rd = std::fs::read_dir(&d).map_err(super::store::io_err(&d))?;
            Ok(rd
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    if name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part") {
                        return None;
                    }
                    let m = e.metadata().ok().filter(|m| m.is_file())?;
                    Some((name, format!("{}:{}", m.len(), m.mtime())))
                })
                .collect())
        })
        .await?;
        let done = self.db_read().await?.preloaded;
        for (name, stamp) in &now {
            let stable = first || seen.get(name) == Some(stamp);
            if !stable || done.get(name) == Some(stamp) {
                continue;
            }
            let path = dir.join(name);
            match self.import(&path).await {
                Ok(images) => {
                    tracing::info!(file = %path.display(), images = images.len(), "preloaded images");
                }
                Err(e) => {
                    // Recorded too: a broken archive is not retried until it changes.
                    tracing::error!(file = %path.display(), error = %e, "cannot import preload archive");
                }
            }
            let (db, n, s) = (self.db.clone(), name.clone(), stamp.clone());
            blocking(move || {
                db.update(|db| {
                    db.preloaded.insert(n, s);
                })
            })
            .await?;
        }
        *seen = now;
        Ok(())
    }
}
