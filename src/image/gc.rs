//! Listing, removing and garbage-collecting images. All blocking (call from a blocking thread).
//!
//! An image is in use while a container directory (`<root-dir>/containers/*/monitor.json`)
//! or a pod's image volumes (`<root-dir>/pods/*/image-volumes.json`) name its digest, or one
//! of its layer directories is a container's overlay lower dir or a volume's.
//! Removing an image removes its references and record, then every blob and unpacked directory
//! of it that no other image, no container and no pull in progress (in this process) uses —
//! all under the store lock, so two processes never interleave removals and record updates.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_client::manifest::OciImageManifest;

use super::layers;
use super::store::{now_unix, sha256_hex, Db};
use super::{reference, ImageError, ImageStore};

/// One stored image, for `hostlet images`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageInfo {
    pub references: Vec<String>,
    pub digest: String,
    /// Bytes of the manifest, config and (compressed) layers.
    pub size: u64,
    /// Unix seconds.
    pub added: i64,
    /// Unix seconds a container last used it (0: never).
    pub last_used: i64,
    /// Container ids using it now.
    pub containers: Vec<String>,
    /// The signature policy requirement that accepted it, when it was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// The registry source its last pull came from (`mirror <location>`, `primary <location>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
}

/// `--image-gc-high-threshold` / `--image-gc-low-threshold` and the minimum age.
#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    /// Collect when the filesystem holding the root dir is more than this % used.
    pub high_percent: u8,
    /// Then remove images until usage is at most this %.
    pub low_percent: u8,
    /// Never remove an image used (or stored) more recently than this.
    pub min_age: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        Self {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct GcReport {
    pub usage_before: f64,
    pub usage_after: f64,
    /// Digests removed, least recently used first.
    pub removed: Vec<String>,
}

#[derive(Debug, Default)]
struct InUse {
    /// Image digest → container ids.
    images: BTreeMap<String, Vec<String>>,
    lower: HashSet<PathBuf>,
}

#[derive(serde::Deserialize)]
struct ContainerRecord {
    #[serde(default)]
    id: String,
    #[serde(default)]
    image_digest: String,
    #[serde(default)]
    lower: Vec<PathBuf>,
}

impl ImageStore {
    /// Every stored image, most recently used first.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        let db = self.db.read()?;
        let in_use = self.in_use();
        let mut out: Vec<ImageInfo> = db
            .images
            .iter()
            .map(|(digest, rec)| ImageInfo {
                references: db.refs_to(digest),
                digest: digest.clone(),
                size: rec.size,
                added: rec.added,
                last_used: rec.last_used,
                containers: in_use.images.get(digest).cloned().unwrap_or_default(),
                verified: rec.verified.clone(),
                served_by: rec.served_by.clone(),
            })
            .collect();
        out.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.digest.cmp(&b.digest)));
        Ok(out)
    }

    /// `hostlet rmi`: removes the reference (or, given a digest or a 12+ hex prefix, every
    /// reference to it); the image's content goes once no reference is left. Refused while a
    /// container uses the image. Returns the references removed.
    pub fn remove(&self, what: &str) -> Result<Vec<String>, ImageError> {
        let in_use = self.in_use();
        self.db.update(|db| {
            let (digest, refs) = resolve(db, what)?;
            if let Some(containers) = in_use.images.get(&digest) {
                return Err(ImageError::InUse {
                    reference: what.to_string(),
                    containers: containers.clone(),
                });
            }
            for r in &refs {
                db.refs.remove(r);
            }
            if db.refs_to(&digest).is_empty() {
                self.remove_content(db, &digest, &in_use)?;
            }
            Ok(refs)
        })?
    }

    /// Removes unused images, least recently used first, while the root dir's filesystem is
    /// above `high_percent` used, until it is at most `low_percent`.
    pub fn gc(&self, policy: &GcPolicy) -> Result<GcReport, ImageError> {
        self.gc_with(policy, || disk_usage(&self.root))
    }

    fn gc_with(
        &self,
        policy: &GcPolicy,
        mut usage: impl FnMut() -> Result<f64, ImageError>,
    ) -> Result<GcReport, ImageError> {
        let before = usage()?;
        let mut report = GcReport {
            usage_before: before,
            usage_after: before,
            removed: Vec::new(),
        };
        if before <= f64::from(policy.high_percent) {
            return Ok(report);
        }
        let in_use = self.in_use();
        let now = now_unix();
        let min_age = policy.min_age.as_secs() as i64;
        let db = self.db.read()?;
        let mut candidates: Vec<(i64, String)> = db
            .images
            .iter()
            .filter(|(d, _)| !in_use.images.contains_key(*d) && !self.is_pinned(d))
            .map(|(d, r)| (r.last_used.max(r.added), d.clone()))
            .filter(|(t, _)| now - t >= min_age)
            .collect();
        candidates.sort();
        for (_, digest) in candidates {
            let removed = self.db.update(|db| {
                // Re-checked under the lock: another process may have used or removed it.
                let fresh = db
                    .images
                    .get(&digest)
                    .is_some_and(|r| now_unix() - r.last_used.max(r.added) >= min_age);
                if !fresh || self.is_pinned(&digest) {
                    return Ok(false);
                }
                db.refs.retain(|_, d| d != &digest);
                self.remove_content(db, &digest, &in_use)?;
                Ok::<_, ImageError>(true)
            })??;
            if removed {
                tracing::info!(%digest, "image garbage-collected");
                report.removed.push(digest);
            }
            report.usage_after = usage()?;
            if report.usage_after <= f64::from(policy.low_percent) {
                break;
            }
        }
        Ok(report)
    }

    /// Removes the record of `digest` and its content that nothing else uses (lock held).
    fn remove_content(&self, db: &mut Db, digest: &str, in_use: &InUse) -> Result<(), ImageError> {
        let Some(rec) = db.images.remove(digest) else {
            return Ok(());
        };
        let mut keep = BTreeSet::new();
        for (d, r) in &db.images {
            keep.extend(self.content(d, &r.extra).0);
        }
        let (blobs, diff_ids) = self.content(digest, &rec.extra);
        for b in blobs {
            if !keep.contains(&b) && !self.is_pinned(&b) {
                self.blobs.remove(&b)?;
            }
        }
        let layers_dir = self.root.join("layers");
        for id in diff_ids {
            let Some(dir) = layers::layer_dir(&layers_dir, &id) else {
                continue;
            };
            if !keep.contains(&id) && !self.is_pinned(&id) && !in_use.lower.contains(&dir) {
                layers::remove_dir(&dir)?;
            }
        }
        if let Some(hex) = sha256_hex(digest) {
            let flat = self.root.join("rootfs").join(hex);
            if !in_use.lower.contains(&flat) {
                layers::remove_dir(&flat)?;
            }
        }
        Ok(())
    }

    /// Blob digests (manifest, config, layers, `extra`) and diff_ids of image `digest`, as far
    /// as its blobs can be read. The diff_ids are also included in the first set.
    fn content(&self, digest: &str, extra: &[String]) -> (BTreeSet<String>, Vec<String>) {
        let mut blobs: BTreeSet<String> = extra.iter().cloned().collect();
        blobs.insert(digest.to_string());
        let mut diff_ids = Vec::new();
        let read = |d: &str| self.blobs.path(d).and_then(|p| std::fs::read(p).ok());
        if let Some(m) =
            read(digest).and_then(|b| serde_json::from_slice::<OciImageManifest>(&b).ok())
        {
            blobs.insert(m.config.digest.clone());
            blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
            if let Some(c) = read(&m.config.digest).and_then(|b| {
                serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&b).ok()
            }) {
                diff_ids = c.rootfs().diff_ids().clone();
            }
        }
        blobs.extend(diff_ids.iter().cloned());
        (blobs, diff_ids)
    }

    fn in_use(&self) -> InUse {
        let containers = self.root.parent().unwrap_or(&self.root).join("containers");
        let mut out = InUse::default();
        out.add_image_volumes(&self.root.parent().unwrap_or(&self.root).join("pods"));
        let Ok(rd) = std::fs::read_dir(&containers) else {
            return out;
        };
        for e in rd.flatten() {
            let path = e.path().join("monitor.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<ContainerRecord>(&bytes) else {
                tracing::warn!(path = %path.display(), "unreadable container record; its image counts as unused");
                continue;
            };
            let id = if rec.id.is_empty() {
                e.file_name().to_string_lossy().into_owned()
            } else {
                rec.id.clone()
            };
            out.add(id, rec);
        }
        out
    }
}

impl InUse {
    fn add(&mut self, id: String, rec: ContainerRecord) {
        if !rec.image_digest.is_empty() {
            self.images.entry(rec.image_digest).or_default().push(id);
        }
        self.lower.extend(rec.lower);
    }

    /// The images pods mount as volumes: `<pods>/<uid>/image-volumes.json` (the worker's
    /// `image_volumes::RECORD`), a list of records in the shape of `monitor.json`.
    fn add_image_volumes(&mut self, pods: &Path) {
        let Ok(rd) = std::fs::read_dir(pods) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path().join("image-volumes.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Vec<ContainerRecord>>(&bytes) {
                Ok(recs) => recs.into_iter().for_each(|r| self.add(r.id.clone(), r)),
                Err(_) => {
                    tracing::warn!(path = %path.display(), "unreadable image volume record; its images count as unused")
                }
            }
        }
    }
}

/// The digest `what` names and the references to remove.
fn resolve(db: &Db, what: &str) -> Result<(String, Vec<String>), ImageError> {
    let not_found = || ImageError::NotFound {
        reference: what.to_string(),
    };
    let hex = what.strip_prefix("sha256:").unwrap_or(what);
    let is_hex = hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let matches: Vec<&String> = db
            .images
            .keys()
            .filter(|d| {
                d.strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(hex))
            })
            .collect();
        return match matches.as_slice() {
            [d] => Ok(((*d).clone(), db.refs_to(d))),
            [] => Err(not_found()),
            _ => Err(ImageError::InvalidName {
                reference: what.to_string(),
                reason: reference::ReferenceError::AmbiguousDigest,
            }),
        };
    }
    let key = reference::normalised(&reference::parse(what)?);
    let digest = db.refs.get(&key).cloned().ok_or_else(not_found)?;
    Ok((digest, vec![key]))
}

/// Percent of the filesystem holding `path` in use, as `df` computes it.
pub fn disk_usage(path: &Path) -> Result<f64, ImageError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| ImageError::Io {
        path: path.to_path_buf(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    // SAFETY: all-zero is a valid statvfs; `c` is NUL-terminated and outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes only into `st`, which we own.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(ImageError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    let used = (st.f_blocks - st.f_bfree) as f64;
    let avail = st.f_bavail as f64;
    Ok(if used + avail > 0.0 {
        100.0 * used / (used + avail)
    } else {
        0.0
    })
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
