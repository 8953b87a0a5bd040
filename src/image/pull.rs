//! Pulling an image into the store: resolve the reference, fetch and verify the manifest,
//! config and layer blobs (a few layers at once), unpack the layers that are missing, and
//! record the result in the database.

use super::*;

impl ImageStore {
    pub(super) async fn pull(
        &self,
        parsed: &Reference,
        key: &str,
        secrets: &Keyring,
    ) -> Result<Image, ImageError> {
        let start = Instant::now();
        let (session, resolved) = self
            .registry
            .open(parsed, secrets)
            .await
            .map_err(|reason| ImageError::Manifest {
                reference: key.to_string(),
                reason,
            })?;
        let digest = resolved.digest.clone();
        // Before anything of the image is stored: a refused image leaves nothing usable.
        // Judged as the name asked for, whichever source served it.
        let top = resolved.index.as_ref().map_or(&digest, |(d, _)| d);
        let verdict = self.verify(&session, parsed, key, top).await?;
        // The registry may be a mirror: blobs come from where the manifest came from.
        let parsed = &session.reference.clone();
        let manifest = &resolved.manifest;
        let mut pins = vec![digest.clone(), manifest.config.digest.clone()];
        pins.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let _pin = self.pin(pins);

        let mut small = vec![(digest.clone(), resolved.manifest_bytes.clone())];
        small.extend(resolved.index.clone());
        let blobs = self.blobs.clone();
        blocking(move || {
            small
                .iter()
                .try_for_each(|(d, b)| blobs.put(d, b).map(drop))
        })
        .await?;

        let (mut bytes, config) = self.fetch_config(&session, parsed, key, manifest).await?;
        let specs = layer_specs(key, manifest, &config)?;
        let _pin_layers = self.pin(specs.iter().map(|s| s.diff_id.clone()));
        bytes += self
            .fetch_layers(&session, parsed, manifest, &specs)
            .await?;

        let layers = self.materialise(key, &digest, &specs).await?;
        let size = stored_size(resolved.manifest_bytes.len(), manifest);
        let index = resolved.index.as_ref().map(|(d, _)| d.clone());
        let added = Added {
            size,
            index,
            verified: Some(verdict.to_string()),
            served_by: Some(session.served_by.clone()),
        };
        self.record(Some(key), &digest, Some(added), true).await?;
        tracing::info!(
            reference = %key,
            %digest,
            bytes,
            layers = manifest.layers.len(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            verified = %verdict,
            served_by = %session.served_by,
            "pulled image"
        );
        Ok(Image {
            reference: key.to_string(),
            digest,
            layers,
            config,
        })
    }

    /// Fetches the image config blob; returns the bytes fetched and the parsed config.
    async fn fetch_config(
        &self,
        session: &registry::Session,
        parsed: &Reference,
        key: &str,
        manifest: &OciImageManifest,
    ) -> Result<(u64, oci_spec::image::ImageConfiguration), ImageError> {
        let progress = &self.progress;
        progress
            .blobs_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        progress.bytes_total.fetch_add(
            u64::try_from(manifest.config.size).unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        let bytes = session
            .fetch_blob(parsed, &manifest.config, &self.blobs, progress)
            .await?;
        let config = parse_json(
            &manifest.config.digest,
            &self.read_blob(&manifest.config.digest).await?,
        )
        .map_err(|e| ImageError::Pull {
            reference: key.to_string(),
            message: format!("{e}"),
        })?;
        Ok((bytes, config))
    }

    /// Fetches the layer blobs the image still needs, a few at once; returns the bytes
    /// fetched. Layers already unpacked need no blob (unless the image must be flattened).
    async fn fetch_layers(
        &self,
        session: &registry::Session,
        parsed: &Reference,
        manifest: &OciImageManifest,
        specs: &[LayerSpec],
    ) -> Result<u64, ImageError> {
        let progress = &self.progress;
        let overlay = self.fits_overlay(specs);
        let needed: Vec<_> = manifest
            .layers
            .iter()
            .zip(specs)
            .filter(|(_, spec)| {
                !overlay
                    || !layers::layer_dir(&self.layers_dir(), &spec.diff_id)
                        .is_some_and(|d| d.is_dir())
            })
            .map(|(desc, _)| desc)
            .collect();
        for desc in &needed {
            progress
                .blobs_total
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            progress.bytes_total.fetch_add(
                u64::try_from(desc.size).unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        // Futures are lazy: collecting them starts nothing; buffer_unordered bounds how many run.
        let fetches: Vec<_> = needed
            .into_iter()
            .map(|desc| session.fetch_blob(parsed, desc, &self.blobs, progress))
            .collect();
        let mut downloads =
            futures_util::stream::iter(fetches).buffer_unordered(PARALLEL_DOWNLOADS);
        let mut bytes = 0;
        while let Some(fetched) = downloads.next().await {
            // Returning drops the other downloads: their temporary files are removed.
            bytes += fetched?;
        }
        Ok(bytes)
    }

    /// Whether the image's layer directories fit in one overlay `lowerdir=` option.
    pub(super) fn fits_overlay(&self, specs: &[LayerSpec]) -> bool {
        let dirs: Vec<PathBuf> = specs
            .iter()
            .filter_map(|s| layers::layer_dir(&self.layers_dir(), &s.diff_id))
            .collect();
        layers::lowerdir_len(&dirs) <= layers::MAX_LOWERDIR_LEN
    }

    /// The lower directories (topmost first) of manifest `digest`, unpacking what is missing
    /// from the (present) layer blobs.
    pub(super) async fn materialise(
        &self,
        key: &str,
        digest: &str,
        specs: &[LayerSpec],
    ) -> Result<Vec<PathBuf>, ImageError> {
        let unpack_err = |layer: &str, reason: LayerError| ImageError::Unpack {
            reference: key.to_string(),
            layer: layer.to_string(),
            reason,
        };
        let start = Instant::now();
        let blob_path = |spec: &LayerSpec| {
            self.blobs
                .path(&spec.blob)
                .ok_or_else(|| unpack_err(&spec.blob, LayerError::NotSha256))
        };
        if !self.fits_overlay(specs) {
            let hex = store::sha256_hex(digest)
                .ok_or_else(|| unpack_err(digest, LayerError::NotSha256))?
                .to_string();
            tracing::info!(reference = %key, layers = specs.len(), "too many layers for one overlay mount: flattening");
            let lock = self.lock_for(&format!("flatten {digest}"));
            let _guard = lock.lock().await;
            let list = specs
                .iter()
                .map(|s| Ok((s.clone(), blob_path(s)?)))
                .collect::<Result<Vec<_>, ImageError>>()?;
            let (dir, max, k) = (
                self.root.join("rootfs"),
                self.max_layer_size,
                key.to_string(),
            );
            let built = blocking(move || {
                layers::flatten(&dir, &hex, &list, max).map_err(|(layer, reason)| {
                    ImageError::Unpack {
                        reference: k,
                        layer,
                        reason,
                    }
                })
            })
            .await?;
            return Ok(vec![built]);
        }
        let mut dirs = Vec::with_capacity(specs.len());
        for spec in specs {
            let lock = self.lock_for(&format!("layer {}", spec.diff_id));
            let _guard = lock.lock().await;
            let (layers_dir, s, blob, max) = (
                self.layers_dir(),
                spec.clone(),
                blob_path(spec)?,
                self.max_layer_size,
            );
            let dir = blocking(move || {
                layers::unpack_layer(&layers_dir, &s, &blob, max).map_err(|reason| {
                    ImageError::Unpack {
                        reference: String::new(),
                        layer: s.blob.clone(),
                        reason,
                    }
                })
            })
            .await
            .map_err(|e| match e {
                ImageError::Unpack { layer, reason, .. } => unpack_err(&layer, reason),
                other => other,
            })?;
            dirs.push(dir);
        }
        dirs.reverse();
        tracing::debug!(%digest, elapsed_ms = start.elapsed().as_millis() as u64, "layers ready");
        Ok(dirs)
    }
}

/// The manifest's layers with their diff_ids and compression, bottom first.
pub(super) fn layer_specs(
    key: &str,
    manifest: &OciImageManifest,
    config: &oci_spec::image::ImageConfiguration,
) -> Result<Vec<LayerSpec>, ImageError> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::Pull {
            reference: key.to_string(),
            message: format!(
                "image config lists {} diff_ids for {} layers",
                diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| {
            let compression =
                Compression::for_media_type(&l.media_type).map_err(|e| ImageError::Pull {
                    reference: key.to_string(),
                    message: format!("layer {}: {e}", l.digest),
                })?;
            if store::sha256_hex(diff_id).is_none() {
                return Err(ImageError::Pull {
                    reference: key.to_string(),
                    message: format!(
                        "layer {}: diff_id {diff_id:?} is not a sha256 digest",
                        l.digest
                    ),
                });
            }
            Ok(LayerSpec {
                blob: l.digest.clone(),
                diff_id: diff_id.clone(),
                compression,
            })
        })
        .collect()
}
