//! What auto-update asks of the store: the digest a tag names now (at the registry or in
//! the store) and a reference pinned to one digest, which a container can then be started
//! from and rolled back to without the tag moving under it.

use super::*;

impl ImageStore {
    /// The manifest digest `reference`'s tag names at its registry now. The manifest is
    /// fetched and hashed as a pull does (an index is resolved to this host's platform);
    /// no blob is downloaded.
    pub async fn registry_digest(&self, reference: &str) -> Result<String, ImageError> {
        let parsed = reference::parse(reference)?;
        let key = reference::normalised(&parsed);
        let (_, resolved) = self
            .registry
            .open(&parsed, &Keyring::default())
            .await
            .map_err(|reason| ImageError::Manifest {
                reference: key,
                reason,
            })?;
        Ok(resolved.digest)
    }

    /// The digest the store's record of `reference` names (after a pull or an import), if any.
    pub async fn stored_digest(&self, reference: &str) -> Result<Option<String>, ImageError> {
        let key = reference::normalised(&reference::parse(reference)?);
        Ok(self.db_read().await?.refs.get(&key).cloned())
    }

    /// Makes image `digest` of `reference` present (pulling it by digest unless its content
    /// is already stored) and returns `reference` pinned to it (`name:tag@digest`), a
    /// reference a container can be started from with `IfNotPresent` and that keeps the
    /// image from garbage collection while it is recorded.
    pub async fn pinned(&self, reference: &str, digest: &str) -> Result<String, ImageError> {
        let parsed = reference::parse(reference)?;
        let pinned = parsed.clone_with_digest(digest.to_string());
        let key = reference::normalised(&pinned);
        let lock = self.lock_for(&key);
        let _guard = lock.lock().await;
        let _pin = self.pin([digest.to_string()]);
        let image = match self.local(&key, digest).await {
            Ok(image) => image,
            Err(local) => {
                tracing::debug!(reference = %key, error = %local, "pinned image not stored; pulling it");
                Box::pin(self.pull(&pinned, &key, &Keyring::default())).await?
            }
        };
        if image.digest != digest {
            return Err(ImageError::Digest {
                expected: digest.to_string(),
                actual: image.digest,
            });
        }
        self.record(Some(&key), digest, None, false).await?;
        Ok(key)
    }
}

impl ImageStore {
    /// Points the tag of `pinned` (`name:tag@digest`) at its digest: a new image that
    /// proved good becomes what the tag names locally, so a pod started from the tag
    /// (another revision, or after a restart of the agent) runs it too.
    pub async fn promote(&self, pinned: &str) -> Result<(), ImageError> {
        let parsed = reference::parse(pinned)?;
        let Some(digest) = parsed.digest().map(str::to_string) else {
            return Ok(());
        };
        let tag = Reference::with_tag(
            parsed.registry().to_string(),
            parsed.repository().to_string(),
            parsed.tag().unwrap_or("latest").to_string(),
        );
        let key = reference::normalised(&tag);
        self.record(Some(&key), &digest, None, false).await
    }
}
