//! Images: references, registry pulls, the content-addressed blob store and unpacked rootfs.
//! The only module that talks to registries.
//!
//! On disk, under `<root-dir>/images`:
//! - `blobs/sha256/<hex>`: manifests, indexes, configs and layers, verified while written;
//! - `refs.json`: normalised reference → image (platform) manifest digest, replaced atomically;
//! - `rootfs/<manifest-hex>/`: the flattened rootfs of that manifest, renamed into place only
//!   once complete and synced. `.tmp-*` entries are leftovers of interrupted work, removed by `new`.

mod fsutil;
mod pull;
mod reference;
mod store;
mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use oci_client::manifest::OciImageManifest;
use oci_client::Reference;

pub use reference::parse as parse_reference;
use store::{io_err, Blobs, Refs};
use unpack::Compression;

/// kubelet's imagePullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// An image present in the store, ready to be a container's lower layer.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference as written in the manifest, normalised (`docker.io/library/x:latest`).
    pub reference: String,
    /// `sha256:<hex>` of the image manifest.
    pub digest: String,
    /// Read-only, fully unpacked root filesystem (whiteouts applied).
    pub rootfs: PathBuf,
    pub config: oci_spec::image::ImageConfiguration,
}

impl Image {
    /// The overlay lower directories for a container of this image, topmost first.
    pub fn lower_dirs(&self) -> Vec<PathBuf> {
        vec![self.rootfs.clone()]
    }

    /// Reads a file of the image (`etc/passwd`, …) as the container would see it,
    /// without following symlinks out of the image.
    pub fn read_file(&self, rel: &str) -> Option<Vec<u8>> {
        let path = self.rootfs.join(rel.trim_start_matches('/'));
        let meta = std::fs::symlink_metadata(&path).ok()?;
        meta.is_file().then(|| std::fs::read(&path).ok()).flatten()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image name {reference:?}: {message}")]
    InvalidName { reference: String, message: String },
    #[error("pull {reference}: {message}")]
    Pull { reference: String, message: String },
    #[error("image {reference} is not present and imagePullPolicy is Never")]
    NeverPull { reference: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Content did not hash to the digest it was stored or fetched under.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: String, actual: String },
    /// A layer could not be applied (unsafe or corrupt archive, or a filesystem error).
    #[error("unpack {reference} layer {layer}: {message}")]
    Unpack {
        reference: String,
        layer: String,
        message: String,
    },
}

impl ImageError {
    /// The kubelet's waiting reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidName { .. } => "InvalidImageName",
            ImageError::NeverPull { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }
}

pub struct ImageStore {
    root: PathBuf,
    blobs: Blobs,
    refs: Arc<Refs>,
    registry: pull::Registry,
    /// Single-flight: one async mutex per normalised reference and per manifest being unpacked.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ImageStore {
    /// `root` is `<root-dir>/images`; `insecure` lists `host:port` registries reached over HTTP.
    pub fn new(root: &Path, insecure: Vec<String>) -> Result<Self, ImageError> {
        let rootfs = root.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io_err(&rootfs))?;
        store::remove_stale_tmp(root)?;
        store::remove_stale_tmp(&rootfs)?;
        Ok(Self {
            root: root.to_path_buf(),
            blobs: Blobs::open(root.join("blobs").join("sha256"))?,
            refs: Arc::new(Refs::open(root.join("refs.json"))?),
            registry: pull::Registry::new(insecure),
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Makes `reference` present per `policy` and returns it.
    pub async fn ensure(&self, reference: &str, policy: PullPolicy) -> Result<Image, ImageError> {
        let parsed = reference::parse(reference)?;
        let key = reference::normalised(&parsed);
        // A digest names immutable content: nothing to re-check at the registry.
        let policy = if parsed.digest().is_some() && policy == PullPolicy::Always {
            PullPolicy::IfNotPresent
        } else {
            policy
        };
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;

        if policy != PullPolicy::Always {
            if let Some(digest) = self.refs.get(&key) {
                match self.local(&key, &digest).await {
                    Ok(image) => return Ok(image),
                    Err(e) => {
                        tracing::warn!(reference = %key, %digest, error = %e, "stored image unusable")
                    }
                }
            }
            if policy == PullPolicy::Never {
                return Err(ImageError::NeverPull { reference: key });
            }
        }
        self.pull(&parsed, &key).await
    }

    /// The image `key` → `digest` from local content only (unpacking again if its rootfs is gone).
    async fn local(&self, key: &str, digest: &str) -> Result<Image, ImageError> {
        let manifest: OciImageManifest = parse_json(digest, &self.read_blob(digest).await?)?;
        let config = parse_json(
            &manifest.config.digest,
            &self.read_blob(&manifest.config.digest).await?,
        )?;
        let rootfs = self.materialise(key, digest, &manifest).await?;
        Ok(Image {
            reference: key.to_string(),
            digest: digest.to_string(),
            rootfs,
            config,
        })
    }

    async fn pull(&self, parsed: &Reference, key: &str) -> Result<Image, ImageError> {
        let start = Instant::now();
        let pull_err = |message: String| ImageError::Pull {
            reference: key.to_string(),
            message,
        };
        let resolved = self.registry.resolve(parsed).await.map_err(pull_err)?;
        let digest = resolved.digest.clone();
        let manifest = &resolved.manifest;
        for layer in &manifest.layers {
            Compression::for_media_type(&layer.media_type)
                .map_err(|m| pull_err(format!("layer {}: {m}", layer.digest)))?;
        }

        let mut small = vec![(digest.clone(), resolved.manifest_bytes.clone())];
        small.extend(resolved.index.clone());
        let blobs = self.blobs.clone();
        blocking(move || {
            small
                .iter()
                .try_for_each(|(d, b)| blobs.put(d, b).map(drop))
        })
        .await?;

        let mut bytes = self
            .registry
            .fetch_blob(parsed, &manifest.config, &self.blobs)
            .await?;
        let config = parse_json(
            &manifest.config.digest,
            &self.read_blob(&manifest.config.digest).await?,
        )
        .map_err(|e| pull_err(format!("{e}")))?;
        for layer in &manifest.layers {
            bytes += self.registry.fetch_blob(parsed, layer, &self.blobs).await?;
        }

        let rootfs = self.materialise(key, &digest, manifest).await?;
        let (refs, k, d) = (self.refs.clone(), key.to_string(), digest.clone());
        blocking(move || refs.set(&k, &d)).await?;
        tracing::info!(
            reference = %key,
            %digest,
            bytes,
            layers = manifest.layers.len(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "pulled image"
        );
        Ok(Image {
            reference: key.to_string(),
            digest,
            rootfs,
            config,
        })
    }

    /// The rootfs of manifest `digest`, unpacked from its (present) layer blobs if missing.
    async fn materialise(
        &self,
        key: &str,
        digest: &str,
        manifest: &OciImageManifest,
    ) -> Result<PathBuf, ImageError> {
        let hex = store::sha256_hex(digest).ok_or_else(|| ImageError::Digest {
            expected: digest.into(),
            actual: "not a sha256 digest".into(),
        })?;
        let dir = self.root.join("rootfs");
        let target = dir.join(hex);
        if tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
            return Ok(target);
        }
        let lock = self.lock_for(&format!("unpack {digest}"));
        let _guard = lock.lock().await;
        if tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
            return Ok(target);
        }
        let mut layers = Vec::new();
        for layer in &manifest.layers {
            let unpack_err = |message: String| ImageError::Unpack {
                reference: key.to_string(),
                layer: layer.digest.clone(),
                message,
            };
            let compression = Compression::for_media_type(&layer.media_type).map_err(unpack_err)?;
            let path = self
                .blobs
                .path(&layer.digest)
                .ok_or_else(|| unpack_err("not a sha256 digest".into()))?;
            layers.push((layer.digest.clone(), path, compression));
        }
        let start = Instant::now();
        let (key, hex) = (key.to_string(), hex.to_string());
        let built = blocking(move || build_rootfs(&dir, &hex, &key, &layers)).await?;
        tracing::debug!(%digest, elapsed_ms = start.elapsed().as_millis() as u64, "unpacked rootfs");
        Ok(built)
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blobs.path(digest).ok_or_else(|| ImageError::Digest {
            expected: digest.into(),
            actual: "not a sha256 digest".into(),
        })?;
        tokio::fs::read(&path).await.map_err(io_err(&path))
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("image lock map");
        // Forget locks nobody holds or waits for, so the map does not grow with every reference.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key.to_string()).or_default().clone()
    }
}

/// Unpacks `layers` in order into `<dir>/.tmp-<hex>-…`, syncs it and renames it to `<dir>/<hex>`.
fn build_rootfs(
    dir: &Path,
    hex: &str,
    key: &str,
    layers: &[(String, PathBuf, Compression)],
) -> Result<PathBuf, ImageError> {
    let target = dir.join(hex);
    let tmp = dir.join(store::tmp_name(hex));
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        for (digest, path, compression) in layers {
            unpack::apply_layer_file(path, *compression, &tmp).map_err(|e| ImageError::Unpack {
                reference: key.to_string(),
                layer: digest.clone(),
                message: e.to_string(),
            })?;
        }
        syncfs(&tmp)?;
        match std::fs::rename(&tmp, &target) {
            Ok(()) => {}
            // Another process finished the same rootfs first: identical content, keep theirs.
            Err(e)
                if target.is_dir()
                    && matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) =>
            {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(io_err(&target)(e)),
        }
        store::sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| target)
}

/// Flushes the filesystem holding `path`: one call instead of an fsync per unpacked file.
fn syncfs(path: &Path) -> Result<(), ImageError> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path).map_err(io_err(path))?;
    // SAFETY: `dir` is an open descriptor that outlives the call; syncfs only reads it.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io_err(path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn parse_json<T: serde::de::DeserializeOwned>(digest: &str, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Io {
        path: PathBuf::from(format!("blob {digest}")),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ImageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_send_sync() {
        assert_send_sync::<ImageStore>();
        fn assert_send<T: Send>(_: &T) {}
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path(), vec![]).unwrap();
        assert_send(&store.ensure("busybox", PullPolicy::IfNotPresent));
    }

    #[tokio::test]
    async fn never_without_local_image() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::new(tmp.path(), vec![]).unwrap();
        match store.ensure("busybox", PullPolicy::Never).await {
            Err(e @ ImageError::NeverPull { .. }) => {
                assert_eq!(e.reason(), "ErrImageNeverPull");
                assert!(e.to_string().contains("docker.io/library/busybox:latest"));
            }
            other => panic!("expected NeverPull, got {other:?}"),
        }
        let e = store
            .ensure("Bad Name", PullPolicy::IfNotPresent)
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "InvalidImageName");
    }
}
