//! Cosign signatures as stored beside an image (cosign's SIGNATURE_SPEC): the manifest
//! tagged `sha256-<hex>.sig` in the image's repository, one layer per signature holding the
//! simple-signing payload, the base64 DER ECDSA signature over it in the layer's
//! `dev.cosignproject.cosign/signature` annotation.

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature as EcdsaSignature, VerifyingKey};
use serde::Deserialize;

pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// A payload is a few hundred bytes; more is not a signature.
pub const MAX_PAYLOAD: u64 = 64 << 10;
/// Signatures read per image: a repository anyone can push to must not make a pull slow.
pub const MAX_SIGNATURES: usize = 32;

/// One signature: the payload bytes exactly as signed, and the annotation's value.
#[derive(Debug, Clone)]
pub struct Signature {
    pub payload: Vec<u8>,
    pub signature: String,
}

/// The tag cosign stores the signatures of `digest` under (`sha256:ab…` → `sha256-ab….sig`).
pub fn signature_tag(digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(format!("{algorithm}-{hex}.sig"))
}

/// A signature layer of a `.sig` manifest: the payload blob and the signature annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub signature: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

/// The signature layers of a `.sig` manifest (others, and layers without the annotation,
/// are not signatures and are skipped), at most MAX_SIGNATURES.
pub fn signature_layers(manifest: &[u8]) -> Result<Vec<Layer>, String> {
    let m: Manifest =
        serde_json::from_slice(manifest).map_err(|e| format!("signature manifest: {e}"))?;
    Ok(m.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE)
        .filter_map(|l| {
            let signature = l.annotations.get(SIGNATURE_ANNOTATION)?.clone();
            let size = u64::try_from(l.size).ok().filter(|s| *s <= MAX_PAYLOAD)?;
            Some(Layer {
                digest: l.digest,
                size,
                signature,
            })
        })
        .take(MAX_SIGNATURES)
        .collect())
}

/// What a verified payload claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub manifest_digest: String,
    pub docker_reference: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimpleSigning {
    critical: Critical,
    #[serde(default)]
    #[allow(dead_code)] // free-form; read only so deny_unknown_fields accepts it
    optional: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: Image,
    identity: Identity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    reference: String,
}

/// The simple-signing payload's critical claims (its `critical` section is strict, as
/// containers/image reads it; `optional` is free).
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, String> {
    let s: SimpleSigning =
        serde_json::from_slice(bytes).map_err(|e| format!("signature payload: {e}"))?;
    if s.critical.kind != PAYLOAD_TYPE {
        return Err(format!(
            "signature payload type {:?}, not {PAYLOAD_TYPE:?}",
            s.critical.kind
        ));
    }
    Ok(Payload {
        manifest_digest: s.critical.image.digest,
        docker_reference: s.critical.identity.reference,
    })
}

/// Whether `sig` is a valid ECDSA P-256 / SHA-256 signature of its payload by one of `keys`.
pub fn signed_by(sig: &Signature, keys: &[VerifyingKey]) -> bool {
    let Ok(der) = base64::engine::general_purpose::STANDARD.decode(sig.signature.trim()) else {
        return false;
    };
    let Ok(signature) = EcdsaSignature::from_der(&der) else {
        return false;
    };
    keys.iter()
        .any(|k| k.verify(&sig.payload, &signature).is_ok())
}
