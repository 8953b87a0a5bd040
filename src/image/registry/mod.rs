//! The registry side: resolving a reference to this host's image manifest and streaming blobs
//! into the blob store (verified while written, never held whole in memory).

mod blob;
mod manifest;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::keyring::{Credential, Keyring};
#[cfg(test)]
pub use manifest::host_arch;
pub use manifest::{host_platform, select_platform, ManifestError};
pub(crate) use manifest::{parse_manifest, Parsed};

/// A platform image manifest, with the raw bytes of everything that led to it.
pub struct Resolved {
    /// `sha256:` of `manifest_bytes`.
    pub digest: String,
    pub manifest_bytes: Vec<u8>,
    pub manifest: OciImageManifest,
    /// The image index / manifest list the reference named, if any: (digest, bytes).
    pub index: Option<(String, Vec<u8>)>,
}

/// Byte and layer counters of the pulls in progress, for progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub blobs_total: AtomicU64,
    pub blobs_done: AtomicU64,
}

/// How registries are reached: fixed for the life of the store.
pub struct Registry {
    insecure: Vec<String>,
    extra_roots: Vec<Vec<u8>>,
    credentials: Vec<PathBuf>,
    providers: Option<std::sync::Arc<super::provider::Providers>>,
}

/// One pull's client, bound to the credential it authenticates with.
pub struct Session {
    client: Client,
    auth: RegistryAuth,
    /// The reference the registry is asked for.
    pub reference: Reference,
    /// Which credential served (`anonymous` or its origin), for logs.
    pub credential: String,
}

impl Registry {
    /// `extra_roots` are PEM bundles trusted besides the system roots; `credentials` the
    /// docker config files searched for registry credentials, in order.
    pub fn new(
        insecure: Vec<String>,
        extra_roots: Vec<Vec<u8>>,
        credentials: Vec<PathBuf>,
        providers: Option<std::sync::Arc<super::provider::Providers>>,
    ) -> Self {
        Self {
            insecure,
            extra_roots,
            credentials,
            providers,
        }
    }

    fn client(&self) -> Client {
        crate::tls::provider();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure.clone()),
            platform_resolver: None, // we resolve indexes ourselves, keeping the raw bytes
            extra_root_certificates: self
                .extra_roots
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            connect_timeout: Some(Duration::from_secs(15)),
            // A registry that stops sending fails the pull instead of hanging it.
            read_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        Client::new(config)
    }

    /// The credentials tried for `reference`, in the kubelet's keyring order: the pod's
    /// imagePullSecrets, then the credential provider plugins, then the node's config.json
    /// files. Empty: anonymous.
    async fn candidates(&self, reference: &Reference, secrets: &Keyring) -> Vec<Credential> {
        let image = format!(
            "{}/{}",
            super::keyring::normalise_key(reference.resolve_registry()),
            reference.repository()
        );
        let mut found: Vec<Credential> = secrets.lookup(&image).into_iter().cloned().collect();
        if let Some(p) = &self.providers {
            let ring = p.lookup(&image).await;
            found.extend(ring.lookup(&image).into_iter().cloned());
        }
        found.extend(super::auth::lookup(&self.credentials, &image));
        found
    }

    /// Resolves `reference` with each matching credential in turn (anonymously when none
    /// matches), as the kubelet tries every credential its keyring returns; the first that
    /// works is the session the blobs are fetched with. Credentials are read afresh for
    /// each pull (edited files apply at once).
    pub async fn open(
        &self,
        reference: &Reference,
        secrets: &Keyring,
    ) -> Result<(Session, Resolved), ManifestError> {
        let mut attempts: Vec<(RegistryAuth, String)> = self
            .candidates(reference, secrets)
            .await
            .into_iter()
            .map(|c| (c.auth(), format!("{} ({})", c.origin, c.user)))
            .collect();
        if attempts.is_empty() {
            attempts.push((RegistryAuth::Anonymous, "anonymous".into()));
        }
        let mut last = None;
        for (auth, credential) in attempts {
            // A client per credential: its token cache must not carry one credential's
            // tokens into another's attempt.
            let session = Session {
                client: self.client(),
                auth,
                reference: reference.clone(),
                credential,
            };
            match session.resolve(reference).await {
                Ok(resolved) => {
                    tracing::debug!(reference = %reference, credential = %session.credential, "manifest resolved");
                    return Ok((session, resolved));
                }
                Err(e) => {
                    tracing::debug!(reference = %reference, credential = %session.credential, error = %e, "manifest not resolved");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

/// Raw access for image trust, which reads a signature manifest and its small blobs with
/// the pull's client and credentials.
impl Session {
    pub(super) fn raw(&self) -> (&Client, &RegistryAuth) {
        (&self.client, &self.auth)
    }
}

/// An error and its sources, `: `-separated (reqwest hides "connection refused" in a source).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        next = cause.source();
    }
    s
}
