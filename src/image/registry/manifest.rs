//! Manifests: fetching one (digest computed and checked here), telling an image manifest
//! from an index, and choosing this host's platform from an index.

use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    ImageIndexEntry, OciImageIndex, OciImageManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Reference;
use sha2::{Digest, Sha256};

use super::{chain, Resolved, Session};

/// Why the manifest a reference names could not be fetched or used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("fetch manifest: {}", chain(.0))]
    Fetch(OciDistributionError),
    /// The registry answered 401: the credentials tried (`credential`) were refused.
    #[error(
        "fetch manifest: registry answered 401 Unauthorized for {url} (credentials: {credential})"
    )]
    Unauthorized { url: String, credential: String },
    #[error("manifest digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: String, actual: String },
    #[error("no manifest for {platform} in image index (offers {})", offers.join(", "))]
    NoPlatform {
        platform: String,
        offers: Vec<String>,
    },
    #[error("image index entry is itself an index")]
    NestedIndex,
    #[error("invalid manifest: {0}")]
    Json(serde_json::Error),
    #[error("unsupported manifest schema version {0:?}")]
    SchemaVersion(Option<u32>),
    #[error("unsupported manifest media type {0}")]
    MediaType(String),
    #[error("invalid image index: {0}")]
    Index(serde_json::Error),
    #[error("invalid image manifest: {0}")]
    Manifest(serde_json::Error),
    /// registries.conf blocks the registry the image is named in (or a mirror's).
    #[error("registry blocked by {path}: {entry} sets blocked = true")]
    Blocked { entry: String, path: String },
    /// A registries.conf location turned the name into something that is not a reference.
    #[error("rewritten reference: {0}")]
    Rewrite(String),
    /// Every source (mirrors, then the primary) failed; each with its reason.
    #[error("no source served the image: {}", .0.iter().map(|(s, e)| format!("{s}: {e}")).collect::<Vec<_>>().join("; "))]
    Sources(Vec<(String, ManifestError)>),
}

const MANIFEST_TYPES: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

impl Session {
    /// Fetches the manifest `reference` names, descending through an index to this host's
    /// platform.
    pub async fn resolve(&self, reference: &Reference) -> Result<Resolved, ManifestError> {
        let (bytes, digest) = self.manifest(reference, reference.digest()).await?;
        match parse_manifest(&bytes)? {
            Parsed::Image(manifest) => Ok(Resolved {
                digest,
                manifest_bytes: bytes,
                manifest,
                index: None,
            }),
            Parsed::Index(index) => {
                let entry =
                    select_platform(&index.manifests).ok_or_else(|| ManifestError::NoPlatform {
                        platform: host_platform(),
                        offers: index.manifests.iter().filter_map(platform_string).collect(),
                    })?;
                let by_digest = reference.clone_with_digest(entry.digest.clone());
                let (mbytes, mdigest) = self.manifest(&by_digest, Some(&entry.digest)).await?;
                match parse_manifest(&mbytes)? {
                    Parsed::Image(manifest) => Ok(Resolved {
                        digest: mdigest,
                        manifest_bytes: mbytes,
                        manifest,
                        index: Some((digest, bytes)),
                    }),
                    Parsed::Index(_) => Err(ManifestError::NestedIndex),
                }
            }
        }
    }

    /// One manifest; its sha256 is computed here and must equal `expected` if given.
    async fn manifest(
        &self,
        reference: &Reference,
        expected: Option<&str>,
    ) -> Result<(Vec<u8>, String), ManifestError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(reference, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| match e {
                OciDistributionError::UnauthorizedError { url } => ManifestError::Unauthorized {
                    url,
                    credential: self.credential.clone(),
                },
                e => ManifestError::Fetch(e),
            })?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if let Some(expected) = expected {
            if expected != digest {
                return Err(ManifestError::Digest {
                    expected: expected.to_string(),
                    actual: digest,
                });
            }
        }
        Ok((bytes.to_vec(), digest))
    }
}

#[allow(clippy::large_enum_variant)] // short-lived
pub(crate) enum Parsed {
    Image(OciImageManifest),
    Index(OciImageIndex),
}

pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Parsed, ManifestError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
    if probe.schema_version != Some(2) {
        return Err(ManifestError::SchemaVersion(probe.schema_version));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_IMAGE_INDEX_MEDIA_TYPE | IMAGE_MANIFEST_LIST_MEDIA_TYPE) => true,
        Some(OCI_IMAGE_MEDIA_TYPE | IMAGE_MANIFEST_MEDIA_TYPE) => false,
        Some(other) => return Err(ManifestError::MediaType(other.to_string())),
        None => probe.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Parsed::Index)
            .map_err(ManifestError::Index)
    } else {
        serde_json::from_slice(bytes)
            .map(Parsed::Image)
            .map_err(ManifestError::Manifest)
    }
}

/// The running architecture under its OCI (GOARCH) name.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}

/// The CPU variant images are built for: `v8` on arm64, `v6`/`v7` on 32-bit arm.
pub fn host_variant() -> Option<String> {
    match host_arch() {
        "arm64" => Some("v8".into()),
        "arm" => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let v = cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("CPU architecture"))
                .and_then(|l| {
                    l.trim_start_matches([' ', '\t', ':'])
                        .trim()
                        .parse::<u32>()
                        .ok()
                })?;
            Some(format!("v{}", v.min(8)))
        }
        _ => None,
    }
}

pub fn host_platform() -> String {
    match host_variant() {
        Some(v) => format!("linux/{}/{v}", host_arch()),
        None => format!("linux/{}", host_arch()),
    }
}

fn platform_string(e: &ImageIndexEntry) -> Option<String> {
    e.platform.as_ref().map(|p| match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    })
}

/// The `linux/<host arch>` entry with the host's variant, else one without a variant (for
/// arm64 `v8` and no variant are the same), else None.
pub fn select_platform(entries: &[ImageIndexEntry]) -> Option<&ImageIndexEntry> {
    select_for(entries, host_arch(), host_variant().as_deref())
}

fn select_for<'a>(
    entries: &'a [ImageIndexEntry],
    arch: &str,
    variant: Option<&str>,
) -> Option<&'a ImageIndexEntry> {
    let matching: Vec<_> = entries
        .iter()
        .filter(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os.to_string() == "linux" && p.architecture.to_string() == arch)
        })
        .collect();
    let variant_of = |e: &ImageIndexEntry| e.platform.as_ref().and_then(|p| p.variant.clone());
    matching
        .iter()
        .find(|e| variant_of(e).as_deref() == variant)
        .or_else(|| matching.iter().find(|e| variant_of(e).is_none()))
        .or_else(|| {
            // No variant known for this host (amd64 …): any entry of the architecture.
            variant.is_none().then(|| matching.first()).flatten()
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_host_platform_from_index() {
        let arch = host_arch();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_IMAGE_INDEX_MEDIA_TYPE}","manifests":[
              {{"mediaType":"{OCI_IMAGE_MEDIA_TYPE}","digest":"sha256:{a}","size":1,"platform":{{"os":"windows","architecture":"{arch}"}}}},
              {{"mediaType":"{OCI_IMAGE_MEDIA_TYPE}","digest":"sha256:{b}","size":1,"platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
        );
        let Parsed::Index(index) = parse_manifest(index.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            select_platform(&index.manifests).unwrap().digest,
            format!("sha256:{}", "b".repeat(64))
        );
    }

    #[test]
    fn variant_selection() {
        let entry = |arch: &str, variant: Option<&str>, d: char| {
            let v = variant
                .map(|v| format!(r#","variant":"{v}""#))
                .unwrap_or_default();
            format!(
                r#"{{"mediaType":"{OCI_IMAGE_MEDIA_TYPE}","digest":"sha256:{}","size":1,"platform":{{"os":"linux","architecture":"{arch}"{v}}}}}"#,
                d.to_string().repeat(64)
            )
        };
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{},{}]}}"#,
            entry("arm", Some("v6"), 'a'),
            entry("arm", Some("v7"), 'b'),
            entry("arm64", Some("v8"), 'c'),
        );
        let Parsed::Index(index) = parse_manifest(index.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let pick = |arch, variant| {
            select_for(&index.manifests, arch, variant).map(|e| e.digest[7..8].to_string())
        };
        assert_eq!(pick("arm", Some("v7")).as_deref(), Some("b"));
        assert_eq!(pick("arm", Some("v6")).as_deref(), Some("a"));
        assert_eq!(pick("arm", Some("v5")), None);
        assert_eq!(pick("arm64", Some("v8")).as_deref(), Some("c"));
        assert_eq!(pick("amd64", None), None);
        assert_eq!(
            index
                .manifests
                .iter()
                .filter_map(platform_string)
                .collect::<Vec<_>>(),
            ["linux/arm/v6", "linux/arm/v7", "linux/arm64/v8"]
        );
    }

    #[test]
    fn parses_docker_schema2_manifest() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{IMAGE_MANIFEST_MEDIA_TYPE}",
              "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:{c}","size":2}},
              "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{c}","size":3}}]}}"#,
            c = "c".repeat(64)
        );
        let Parsed::Image(m) = parse_manifest(m.as_bytes()).unwrap() else {
            panic!("not an image")
        };
        assert_eq!(m.layers.len(), 1);
        assert!(parse_manifest(br#"{"schemaVersion":1}"#).is_err());
    }
}
