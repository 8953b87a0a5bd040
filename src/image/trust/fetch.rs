//! Reading the cosign signatures stored beside an image in its registry.

use futures_util::StreamExt;
use oci_client::manifest::{OciDescriptor, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE};
use oci_client::Reference;
use sha2::{Digest, Sha256};

use super::cosign::{self, Signature};
use crate::image::registry::{chain, Session};

/// The signatures of the manifest `digest` in `reference`'s repository, and a note saying
/// why there are none when the `.sig` manifest could not be read (an absent one is the
/// common case: an unsigned image). A signature whose blob cannot be read is left out.
pub async fn from_registry(
    session: &Session,
    reference: &Reference,
    digest: &str,
) -> (Vec<Signature>, String) {
    let Some(tag) = cosign::signature_tag(digest) else {
        return (Vec::new(), format!("no signature tag for digest {digest}"));
    };
    let sig_ref = Reference::with_tag(
        reference.registry().to_string(),
        reference.repository().to_string(),
        tag.clone(),
    );
    let (client, auth) = session.raw();
    let manifest = match client
        .pull_manifest_raw(
            &sig_ref,
            auth,
            &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
        )
        .await
    {
        Ok((bytes, _)) => bytes,
        Err(e) => return (Vec::new(), format!("reading tag {tag}: {}", chain(&e))),
    };
    let layers = match cosign::signature_layers(&manifest) {
        Ok(l) => l,
        Err(e) => return (Vec::new(), e),
    };
    let mut signatures = Vec::new();
    let mut problems = Vec::new();
    for layer in layers {
        match blob(session, &sig_ref, &layer).await {
            Ok(payload) => signatures.push(Signature {
                payload,
                signature: layer.signature,
            }),
            Err(e) => problems.push(format!("signature blob {}: {e}", layer.digest)),
        }
    }
    if signatures.is_empty() && problems.is_empty() {
        problems.push(format!("tag {tag} holds no signature layer"));
    }
    (signatures, problems.join("; "))
}

/// A payload blob, at most its declared size (itself capped), checked against its digest.
async fn blob(
    session: &Session,
    reference: &Reference,
    layer: &cosign::Layer,
) -> Result<Vec<u8>, String> {
    let (client, _) = session.raw();
    let desc = OciDescriptor {
        media_type: cosign::SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
        digest: layer.digest.clone(),
        size: i64::try_from(layer.size).unwrap_or(0),
        ..Default::default()
    };
    let mut stream = client
        .pull_blob_stream(reference, &desc)
        .await
        .map_err(|e| chain(&e))?;
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        data.extend_from_slice(&chunk);
        if data.len() as u64 > layer.size {
            return Err("larger than declared".into());
        }
    }
    check_digest(&data, &layer.digest)?;
    Ok(data)
}

/// `data` hashes to `digest` (sha256 only, what cosign writes).
pub fn check_digest(data: &[u8], digest: &str) -> Result<(), String> {
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(data)));
    if actual == digest {
        Ok(())
    } else {
        Err(format!("digest mismatch: got {actual}"))
    }
}
