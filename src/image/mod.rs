//! Images: references, registry pulls, the content-addressed blob store and unpacked layers.
//! The only module that talks to registries. See "Images" in the README.
//!
//! On disk, under `<root-dir>/images`:
//! - `blobs/sha256/<hex>`: manifests, indexes, configs and layers, verified while written;
//! - `layers/<diff_id hex>/`: one unpacked layer (overlayfs whiteouts), shared by every image
//!   that has it; a container's rootfs is an overlay of them;
//! - `rootfs/<manifest hex>/`: a flattened rootfs, only for images with too many layers for one
//!   overlay mount (see `layers::MAX_LOWERDIR_LEN`);
//! - `db.json` (+ `lock`): references, per-image records (last used, size), imported preloads;
//! - `preload/`: archives imported automatically by the agent.
//!
//! `.tmp-*` entries are leftovers of interrupted work, removed by `new`.

mod archive;
mod auth;
mod fsutil;
mod gc;
mod keyring;
mod layers;
pub mod mirrors;
mod pins;
mod preload;
mod provider;
mod pull;
pub(crate) mod reference;
mod registry;
mod store;
pub mod trust;
mod unpack;
mod update;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use oci_client::manifest::OciImageManifest;
use oci_client::Reference;

pub use archive::{ArchiveError, Imported};
pub use gc::{GcPolicy, GcReport, ImageInfo};
pub use keyring::{Keyring, KeyringError};
pub use layers::LayerError;
use layers::LayerSpec;
pub use provider::{ProviderError, Providers, DEFAULT_TIMEOUT as CREDENTIAL_PROVIDER_TIMEOUT};
use pull::layer_specs;
pub use reference::{parse as parse_reference, Named, ReferenceError};
pub use registry::{ManifestError, Progress};
pub use store::now_unix;
use store::{io_err, Blobs, DbFile};
use unpack::Compression;
pub use unpack::UnsupportedMediaType;

/// Default `--max-layer-size`: the unpacked size (file data + 512 bytes per entry) of one layer.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 16 << 30;
/// Layers downloaded at once by one pull.
const PARALLEL_DOWNLOADS: usize = 3;

/// kubelet's imagePullPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// An image present in the store, ready to be a container's lower layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// The reference as written in the manifest, normalised (`docker.io/library/x:latest`).
    pub reference: String,
    /// `sha256:<hex>` of the image manifest.
    pub digest: String,
    /// Read-only unpacked layer directories, topmost first (one flattened rootfs for images
    /// with very many layers).
    pub layers: Vec<PathBuf>,
    pub config: oci_spec::image::ImageConfiguration,
}

impl Image {
    /// The overlay lower directories for a container of this image, topmost first.
    pub fn lower_dirs(&self) -> Vec<PathBuf> {
        self.layers.clone()
    }

    /// Reads a file of the image (`etc/passwd`, …) as the container would see it, honouring
    /// whiteouts and without following symlinks out of the image.
    pub fn read_file(&self, rel: &str) -> Option<Vec<u8>> {
        layers::read_file(&self.layers, rel)
    }
}

/// How the store reaches registries and what it accepts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `host:port` registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// PEM file of CA certificates trusted besides the system roots (`--registry-ca`).
    pub registry_ca: Option<PathBuf>,
    pub max_layer_size: u64,
    /// docker config files searched for credentials; None: `<root-dir>/config.json`, then
    /// `$HOME/.docker/config.json`.
    pub credentials: Option<Vec<PathBuf>>,
    /// Kubelet credential provider plugins, asked before the config.json files.
    pub providers: Option<Arc<Providers>>,
    /// The signature policy images must satisfy before they are stored (`trust::load`).
    pub policy: Arc<trust::Policy>,
    /// Mirrors and blocked registries (`mirrors::RegistriesConf::load`).
    pub registries: mirrors::RegistriesConf,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            registry_ca: None,
            max_layer_size: DEFAULT_MAX_LAYER_SIZE,
            credentials: None,
            providers: None,
            policy: Arc::new(trust::Policy::accept_anything()),
            registries: mirrors::RegistriesConf::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image name {reference:?}: {reason}")]
    InvalidName {
        reference: String,
        reason: reference::ReferenceError,
    },
    #[error("pull {reference}: {message}")]
    Pull { reference: String, message: String },
    #[error("image {reference} is not present and imagePullPolicy is Never")]
    NeverPull { reference: String },
    #[error("image {reference} is not present")]
    NotFound { reference: String },
    #[error("image {reference} is in use by container(s) {}", containers.join(", "))]
    InUse {
        reference: String,
        containers: Vec<String>,
    },
    #[error("import {path}: {reason}")]
    Import {
        path: PathBuf,
        reason: archive::ArchiveError,
    },
    /// The registry's manifest for the reference could not be fetched or used.
    #[error("pull {reference}: {reason}")]
    Manifest {
        reference: String,
        reason: registry::ManifestError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Content did not hash to the digest it was stored or fetched under.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: String, actual: String },
    /// The signature policy refused the image; nothing of it was stored.
    #[error("verify {reference}: {reason}")]
    Signature {
        reference: String,
        reason: trust::TrustError,
    },
    /// A layer could not be applied (unsafe or corrupt archive, or a filesystem error).
    #[error("unpack {reference} layer {layer}: {reason}")]
    Unpack {
        reference: String,
        layer: String,
        reason: layers::LayerError,
    },
}

impl ImageError {
    /// The kubelet's waiting reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidName { .. } => "InvalidImageName",
            ImageError::NeverPull { .. } => "ErrImageNeverPull",
            // CRI-O's reason for the same refusal.
            ImageError::Signature { .. } => "SignatureValidationFailed",
            _ => "ErrImagePull",
        }
    }
}

pub struct ImageStore {
    root: PathBuf,
    blobs: Blobs,
    db: DbFile,
    registry: registry::Registry,
    max_layer_size: u64,
    progress: Arc<Progress>,
    /// Single-flight: one async mutex per normalised reference and per layer being unpacked.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Digests (manifests, blobs, diff_ids) of work in progress, which GC must not remove.
    pins: Arc<Mutex<HashMap<String, usize>>>,
    policy: Arc<trust::Policy>,
}

impl ImageStore {
    /// `root` is `<root-dir>/images`; `insecure` lists `host:port` registries reached over HTTP.
    pub fn new(root: &Path, insecure: Vec<String>) -> Result<Self, ImageError> {
        Self::with_options(
            root,
            StoreOptions {
                insecure,
                ..StoreOptions::default()
            },
        )
    }

    pub fn with_options(root: &Path, opts: StoreOptions) -> Result<Self, ImageError> {
        for dir in ["rootfs", "layers", "preload"] {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).map_err(io_err(&d))?;
            if dir != "preload" {
                store::remove_stale_tmp(&d)?;
            }
        }
        store::remove_stale_tmp(root)?;
        let extra_roots = match &opts.registry_ca {
            Some(path) => vec![std::fs::read(path).map_err(io_err(path))?],
            None => Vec::new(),
        };
        let root_dir = root.parent().unwrap_or(root);
        let credentials = opts
            .credentials
            .unwrap_or_else(|| auth::search_paths(root_dir));
        if !std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("\toverlay\n")) {
            tracing::error!("overlayfs is not available on this host (try `modprobe overlay`): containers cannot start; images can still be pulled");
        }
        Ok(Self {
            root: root.to_path_buf(),
            blobs: Blobs::open(root.join("blobs").join("sha256"))?,
            db: DbFile::open(root)?,
            registry: registry::Registry::new(
                opts.insecure,
                extra_roots,
                credentials,
                opts.providers,
                opts.registries,
            ),
            max_layer_size: opts.max_layer_size,
            progress: Arc::new(Progress::default()),
            locks: Mutex::new(HashMap::new()),
            pins: Arc::new(Mutex::new(HashMap::new())),
            policy: opts.policy,
        })
    }

    /// Counters of the downloads in progress (for `hostlet pull`'s display).
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Makes `reference` present per `policy` and returns it; records it as used now.
    pub async fn ensure(&self, reference: &str, policy: PullPolicy) -> Result<Image, ImageError> {
        self.ensure_with(reference, policy, &Keyring::default())
            .await
    }

    /// [`ImageStore::ensure`] with a pod's credentials (its imagePullSecrets), tried before
    /// the node's.
    pub async fn ensure_with(
        &self,
        reference: &str,
        policy: PullPolicy,
        secrets: &Keyring,
    ) -> Result<Image, ImageError> {
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
            let db = self.db_read().await?;
            if let Some(digest) = db.refs.get(&key) {
                let _pin = self.pin([digest.clone()]);
                match self.local(&key, digest).await {
                    Ok(image) => {
                        self.record(None, &image.digest, None, true).await?;
                        return Ok(image);
                    }
                    Err(e) => {
                        tracing::warn!(reference = %key, %digest, error = %e, "stored image unusable")
                    }
                }
            }
            if policy == PullPolicy::Never {
                return Err(ImageError::NeverPull { reference: key });
            }
        }
        let started = Instant::now();
        // Boxed: the network pull is most of this future's size, and every container
        // start awaits this future even when the image is present.
        let pulled = Box::pin(self.pull(&parsed, &key, secrets)).await;
        crate::metrics::image_pull(started.elapsed(), pulled.is_ok());
        pulled
    }

    /// The image `key` → `digest` from local content only (unpacking again if a layer is gone).
    async fn local(&self, key: &str, digest: &str) -> Result<Image, ImageError> {
        let manifest: OciImageManifest = parse_json(digest, &self.read_blob(digest).await?)?;
        let config = parse_json(
            &manifest.config.digest,
            &self.read_blob(&manifest.config.digest).await?,
        )?;
        let specs = layer_specs(key, &manifest, &config)?;
        let layers = self.materialise(key, digest, &specs).await?;
        Ok(Image {
            reference: key.to_string(),
            digest: digest.to_string(),
            layers,
            config,
        })
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Records `digest` (as used now if `used`); with `key`, points it there; with `added`,
    /// sets the record's size, index digest and how it was verified.
    async fn record(
        &self,
        key: Option<&str>,
        digest: &str,
        added: Option<Added>,
        used: bool,
    ) -> Result<(), ImageError> {
        let (key, digest) = (key.map(str::to_string), digest.to_string());
        let db = self.db.clone();
        blocking(move || {
            db.update(|db| {
                let now = now_unix();
                if let Some(key) = key {
                    db.refs.insert(key, digest.clone());
                }
                let rec = db
                    .images
                    .entry(digest)
                    .or_insert_with(|| store::ImageRecord {
                        added: now,
                        ..Default::default()
                    });
                if let Some(Added {
                    size,
                    index,
                    verified,
                    served_by,
                }) = added
                {
                    rec.size = size;
                    if verified.is_some() {
                        rec.verified = verified;
                    }
                    if served_by.is_some() {
                        rec.served_by = served_by;
                    }
                    rec.extra.extend(index);
                    rec.extra.sort();
                    rec.extra.dedup();
                }
                // Coarse: a write per minute per image is plenty for LRU.
                if used && now - rec.last_used >= 60 {
                    rec.last_used = now;
                }
            })
        })
        .await
    }

    async fn db_read(&self) -> Result<store::Db, ImageError> {
        let db = self.db.clone();
        blocking(move || db.read()).await
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

/// What a pull or an import learnt about an image it stored.
struct Added {
    size: u64,
    /// The image index it was resolved from.
    index: Option<String>,
    /// The policy requirement that accepted it (`sigstoreSigned (scope)`).
    verified: Option<String>,
    /// The registry source a pull got it from (`mirror <location>`, `primary <location>`).
    served_by: Option<String>,
}

/// The bytes an image's blobs take in the store: its manifest, config and layers.
fn stored_size(manifest_len: usize, manifest: &OciImageManifest) -> u64 {
    let blob = |size: i64| u64::try_from(size).unwrap_or(0);
    manifest_len as u64
        + blob(manifest.config.size)
        + manifest.layers.iter().map(|l| blob(l.size)).sum::<u64>()
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
