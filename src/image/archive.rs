//! `hostlet image import` and the preload directory: OCI archives (a tar of an `oci-layout`
//! directory, as `skopeo copy … oci-archive:FILE:NAME` writes) and docker archives
//! (`docker save`), optionally gzip- or zstd-compressed, keeping their image names.
//!
//! The archive is read once, streaming: every regular file goes into the blob store under the
//! digest of its content (a file under `blobs/sha256/<hex>` must hash to `<hex>`), only the
//! small index files are kept in memory. Layers are then unpacked (diff_ids verified) exactly
//! like pulled ones, and blobs the archive carried but no imported image uses are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_client::manifest::{OciDescriptor, OciImageManifest, IMAGE_MANIFEST_MEDIA_TYPE};

use super::registry::{parse_manifest, select_platform, ManifestError, Parsed};
use super::store::{io_err, Blobs};
use super::{
    blocking, layer_specs, parse_json, reference, stored_size, trust, Added, ImageError, ImageStore,
};

/// Why an archive cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("neither an OCI archive (index.json) nor a docker archive (manifest.json)")]
    Unrecognised,
    #[error("reading archive: {0}")]
    Read(io::Error),
    #[error("entry {0:?} climbs out of the archive")]
    Climbs(String),
    #[error("{name} is too large ({size} bytes)")]
    TooLarge { name: String, size: u64 },
    #[error("{name}: {error}")]
    Store { name: String, error: io::Error },
    #[error("{path} does not hash to its name (got {digest})")]
    Misnamed { path: String, digest: String },
    #[error("{file}: {error}")]
    Json {
        file: &'static str,
        error: serde_json::Error,
    },
    #[error("bad digest {0}")]
    BadDigest(String),
    #[error("blob {0} missing from the archive")]
    MissingBlob(String),
    #[error("{0} missing from the archive")]
    MissingFile(String),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{0}")]
    Manifest(ManifestError),
    #[error("no manifest for {0} in image index")]
    NoPlatform(String),
    #[error("{0}")]
    Image(Box<ImageError>),
}

impl From<ImageError> for ArchiveError {
    fn from(e: ImageError) -> Self {
        Self::Image(Box::new(e))
    }
}

/// Index files kept in memory; anything else is stored as a blob.
const SMALL: &[&str] = &["index.json", "oci-layout", "manifest.json", "repositories"];
const SMALL_MAX: u64 = 16 << 20;

/// An image found in an archive: (names, manifest digest, index digests to keep).
type Found = (Vec<String>, String, Vec<String>);

/// Cosign signatures found in an archive, by the digest they sign.
type Signatures = std::collections::HashMap<String, Vec<trust::Signature>>;

/// `sha256:<hex>` when `name` (a reference or a bare tag) has cosign's signature tag.
fn signed_digest(name: &str) -> Option<String> {
    let tag = name.rsplit(['/', ':']).next()?;
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| format!("sha256:{hex}"))
}

/// The signatures of a `.sig` manifest whose blobs are in the archive.
fn cosign_signatures(
    manifest: &[u8],
    read: &dyn Fn(&str) -> Result<Vec<u8>, ArchiveError>,
) -> Result<Vec<trust::Signature>, ArchiveError> {
    let layers = trust::cosign::signature_layers(manifest)
        .map_err(|e| ArchiveError::Manifest(ManifestError::Json(serde::de::Error::custom(e))))?;
    layers
        .into_iter()
        .map(|l| {
            Ok(trust::Signature {
                payload: read(&l.digest)?,
                signature: l.signature,
            })
        })
        .collect()
}

/// One image of an archive, as imported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Imported {
    /// Normalised references now naming it (empty if the archive gave it no name).
    pub references: Vec<String>,
    pub digest: String,
}

#[derive(Default)]
struct Scan {
    /// Archive path → (digest, size, newly stored).
    files: BTreeMap<String, (String, u64, bool)>,
    /// Archive path → normalised target path (symlinks and hardlinks).
    links: BTreeMap<String, String>,
    small: BTreeMap<String, Vec<u8>>,
}

impl Scan {
    fn file(&self, path: &str) -> Option<&(String, u64, bool)> {
        let mut p = normalise(path)?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&p) {
                return Some(f);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

impl ImageStore {
    /// Imports every image of the archive at `path`.
    pub async fn import(&self, path: &Path) -> Result<Vec<Imported>, ImageError> {
        let (p, blobs) = (path.to_path_buf(), self.blobs.clone());
        let scan = blocking(move || scan(&p, &blobs)).await?;
        let _pin = self.pin(scan.files.values().map(|(d, _, _)| d.clone()));
        // Blobs of images recorded so far: kept even if a later image of the archive fails.
        let mut used = BTreeSet::new();
        let result = self.import_scanned(path, &scan, &mut used).await;
        for (d, _, new) in scan.files.values() {
            if *new && !used.contains(d) {
                self.blobs.remove(d)?;
            }
        }
        result
    }

    async fn import_scanned(
        &self,
        path: &Path,
        scan: &Scan,
        used: &mut BTreeSet<String>,
    ) -> Result<Vec<Imported>, ImageError> {
        let err = |reason| ImageError::Import {
            path: path.to_path_buf(),
            reason,
        };
        let mut signatures = Signatures::new();
        let images = if scan.small.contains_key("index.json") {
            self.oci_images(scan, &mut signatures).map_err(err)?
        } else if let Some(m) = scan.small.get("manifest.json") {
            self.docker_images(scan, m).await.map_err(err)?
        } else {
            return Err(err(ArchiveError::Unrecognised));
        };
        let mut out = Vec::new();
        for (names, digest, extra) in images {
            let label = names.first().cloned().unwrap_or_else(|| digest.clone());
            // Before any layer is unpacked, as for a pull. An unnamed image is not checked:
            // no pod can name it until a pull (which verifies) gives it a name.
            let top = extra.first().unwrap_or(&digest);
            let sigs = signatures.get(top).map_or(&[][..], Vec::as_slice);
            let mut verified = None;
            for name in &names {
                verified = Some(self.judge_imported(name, top, sigs)?.to_string());
            }
            let image = self.local(&label, &digest).await?;
            let manifest_bytes = self.read_blob(&digest).await?;
            let manifest: OciImageManifest = parse_json(&digest, &manifest_bytes)?;
            let size = stored_size(manifest_bytes.len(), &manifest);
            let index = extra.first().cloned();
            if names.is_empty() {
                let added = Added {
                    size,
                    index: index.clone(),
                    verified: verified.clone(),
                    served_by: None,
                };
                self.record(None, &digest, Some(added), false).await?;
            }
            for name in &names {
                let added = Added {
                    size,
                    index: index.clone(),
                    verified: verified.clone(),
                    served_by: None,
                };
                self.record(Some(name), &digest, Some(added), false).await?;
            }
            used.insert(digest.clone());
            used.insert(manifest.config.digest.clone());
            used.extend(manifest.layers.iter().map(|l| l.digest.clone()));
            used.extend(extra.iter().cloned());
            tracing::info!(path = %path.display(), references = ?names, digest = %image.digest, layers = image.layers.len(), "imported image");
            out.push(Imported {
                references: names,
                digest,
            });
        }
        Ok(out)
    }

    /// (names, manifest digest, index digests) of an OCI layout.
    fn oci_images(
        &self,
        scan: &Scan,
        signatures: &mut Signatures,
    ) -> Result<Vec<Found>, ArchiveError> {
        for (path, (digest, _, _)) in &scan.files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                if digest.strip_prefix("sha256:") != Some(hex) {
                    return Err(ArchiveError::Misnamed {
                        path: path.clone(),
                        digest: digest.clone(),
                    });
                }
            }
        }
        #[derive(serde::Deserialize)]
        struct Index {
            manifests: Vec<OciDescriptor>,
        }
        let index: Index = serde_json::from_slice(&scan.small["index.json"]).map_err(|error| {
            ArchiveError::Json {
                file: "index.json",
                error,
            }
        })?;
        let read = |digest: &str| -> Result<Vec<u8>, ArchiveError> {
            let path = self
                .blobs
                .path(digest)
                .ok_or_else(|| ArchiveError::BadDigest(digest.to_string()))?;
            let hex = digest.trim_start_matches("sha256:");
            if scan.file(&format!("blobs/sha256/{hex}")).is_none() {
                return Err(ArchiveError::MissingBlob(digest.to_string()));
            }
            std::fs::read(&path).map_err(|error| ArchiveError::Io { path, error })
        };
        let mut out = Vec::new();
        for desc in &index.manifests {
            let annotations = desc.annotations.clone().unwrap_or_default();
            let name = annotations
                .get("io.containerd.image.name")
                .or_else(|| annotations.get("org.opencontainers.image.ref.name"));
            let names = match name.map(|n| reference::parse(n)) {
                Some(Ok(r)) => vec![reference::normalised(&r)],
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "archive image name unusable; importing it unnamed");
                    vec![]
                }
                None => vec![],
            };
            // Cosign's `<repo>:sha256-<hex>.sig` manifests travel beside the images they sign.
            if let Some(signed) = name.and_then(|n| signed_digest(n)) {
                let sigs = cosign_signatures(&read(&desc.digest)?, &read)?;
                signatures.entry(signed).or_default().extend(sigs);
                continue;
            }
            let parsed = parse_manifest(&read(&desc.digest)?).map_err(ArchiveError::Manifest)?;
            let (digest, extra) = match parsed {
                Parsed::Image(_) => (desc.digest.clone(), vec![]),
                Parsed::Index(idx) => {
                    let entry = select_platform(&idx.manifests).ok_or_else(|| {
                        ArchiveError::NoPlatform(super::registry::host_platform())
                    })?;
                    read(&entry.digest)?;
                    (entry.digest.clone(), vec![desc.digest.clone()])
                }
            };
            out.push((names, digest, extra));
        }
        Ok(out)
    }

    /// Docker archive entries, with a docker schema 2 manifest written for each.
    async fn docker_images(
        &self,
        scan: &Scan,
        manifest_json: &[u8],
    ) -> Result<Vec<Found>, ArchiveError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> =
            serde_json::from_slice(manifest_json).map_err(|error| ArchiveError::Json {
                file: "manifest.json",
                error,
            })?;
        let mut out = Vec::new();
        for e in entries {
            let file = |p: &str| {
                scan.file(p)
                    .cloned()
                    .ok_or_else(|| ArchiveError::MissingFile(p.to_string()))
            };
            let (config, config_size, _) = file(&e.config)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let (digest, size, _) = file(l)?;
                let media_type = match self.magic(&digest).await {
                    [0x1f, 0x8b, ..] => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.docker.image.rootfs.diff.tar.zstd",
                    _ => "application/vnd.docker.image.rootfs.diff.tar",
                };
                layers.push(
                    serde_json::json!({"mediaType": media_type, "size": size, "digest": digest}),
                );
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": IMAGE_MANIFEST_MEDIA_TYPE,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config_size, "digest": config},
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest).expect("json value serialises");
            let mut w = self.blobs.writer_any()?;
            io::Write::write_all(&mut w, &bytes).map_err(|error| ArchiveError::Io {
                path: "<blob temp file>".into(),
                error,
            })?;
            let (_, digest, _) = w.finish_digest()?;
            let mut names = Vec::new();
            for tag in e.repo_tags.unwrap_or_default() {
                match reference::parse(&tag) {
                    Ok(r) => names.push(reference::normalised(&r)),
                    Err(err) => tracing::warn!(tag, error = %err, "skipping unusable tag"),
                }
            }
            // Validate early: the config must list a diff_id per layer.
            let cfg = parse_json(&config, &self.read_blob(&config).await?)?;
            let m: OciImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| ArchiveError::Manifest(ManifestError::Manifest(e)))?;
            layer_specs(&digest, &m, &cfg)?;
            out.push((names, digest, vec![]));
        }
        Ok(out)
    }

    async fn magic(&self, digest: &str) -> [u8; 4] {
        let mut buf = [0u8; 4];
        if let Some(p) = self.blobs.path(digest) {
            if let Ok(mut f) = tokio::fs::File::open(&p).await {
                let _ = tokio::io::AsyncReadExt::read(&mut f, &mut buf).await;
            }
        }
        buf
    }
}

/// Lexically normalised archive path (`./a/../b/` → `b`); None if it climbs above the root.
fn normalise(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => out.push(s.to_str()?),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out.join("/"))
}

fn scan(path: &Path, blobs: &Blobs) -> Result<Scan, ImageError> {
    let err = |reason| ImageError::Import {
        path: path.to_path_buf(),
        reason,
    };
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(io_err(path))?.to_vec();
    let reader: Box<dyn Read> = match head.as_slice() {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(io_err(path))?)
        }
        _ => Box::new(reader),
    };
    let mut archive = tar::Archive::new(reader);
    let mut scan = Scan::default();
    let bad = |e: io::Error| err(ArchiveError::Read(e));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(name) = normalise(&raw) else {
            return Err(err(ArchiveError::Climbs(raw)));
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name().map_err(bad)?.unwrap_or_default();
            let target = target.to_string_lossy();
            let joined = if kind.is_symlink() {
                let parent = Path::new(&name).parent().unwrap_or(Path::new(""));
                parent.join(&*target).to_string_lossy().into_owned()
            } else {
                target.into_owned()
            };
            if let Some(t) = normalise(&joined) {
                scan.links.insert(name, t);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.header().size().map_err(bad)?;
        if SMALL.contains(&name.as_str()) {
            if size > SMALL_MAX {
                return Err(err(ArchiveError::TooLarge { name, size }));
            }
            let mut buf = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut buf).map_err(bad)?;
            scan.small.insert(name, buf);
            continue;
        }
        let mut w = blobs.writer_any()?;
        io::copy(&mut entry, &mut w).map_err(|error| {
            err(ArchiveError::Store {
                name: name.clone(),
                error,
            })
        })?;
        let (_, digest, new) = w.finish_digest()?;
        scan.files.insert(name, (digest, size, new));
    }
    Ok(scan)
}
