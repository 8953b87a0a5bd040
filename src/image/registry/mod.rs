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
use super::mirrors::{self, RegistriesConf, Source};
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
    /// Mirrors and blocked registries (registries.conf); empty: every name is its own source.
    conf: RegistriesConf,
}

/// One pull's client, bound to the credential it authenticates with.
pub struct Session {
    client: Client,
    auth: RegistryAuth,
    /// The reference the registry is asked for (a mirror's, when a mirror serves).
    pub reference: Reference,
    /// Which credential served (`anonymous` or its origin), for logs.
    pub credential: String,
    /// The source that served: `mirror <location>` or `primary <location>`.
    pub served_by: String,
}

impl Registry {
    /// `extra_roots` are PEM bundles trusted besides the system roots; `credentials` the
    /// docker config files searched for registry credentials, in order.
    pub fn new(
        insecure: Vec<String>,
        extra_roots: Vec<Vec<u8>>,
        credentials: Vec<PathBuf>,
        providers: Option<std::sync::Arc<super::provider::Providers>>,
        conf: RegistriesConf,
    ) -> Self {
        Self {
            insecure,
            extra_roots,
            credentials,
            providers,
            conf,
        }
    }

    /// A client reaching the `insecure` registries, and `plain_http` too, over plain HTTP.
    fn client(&self, plain_http: Option<&str>) -> Client {
        crate::tls::provider();
        let mut insecure = self.insecure.clone();
        insecure.extend(plain_http.map(str::to_string));
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure),
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

    /// Where `reference` may be pulled from, in order: its registries.conf entry's mirrors
    /// that apply, then the primary; the name itself when no entry matches. A blocked entry
    /// refuses the pull.
    fn sources(&self, reference: &Reference) -> Result<Vec<Source>, ManifestError> {
        let name = format!("{}/{}", reference.registry(), reference.repository());
        let whole = reference.whole();
        let own = || Source {
            reference: whole.clone(),
            location: reference.registry().to_string(),
            insecure: false,
            mirror: false,
        };
        let Some(entry) = self.conf.find(&name) else {
            return Ok(vec![own()]);
        };
        if entry.blocked {
            return Err(self.blocked(entry));
        }
        Ok(entry
            .sources(&whole, reference.digest().is_some())
            .unwrap_or_else(|| vec![own()]))
    }

    fn blocked(&self, entry: &mirrors::Entry) -> ManifestError {
        ManifestError::Blocked {
            entry: entry.describe(),
            path: self
                .conf
                .path
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
        }
    }

    /// Resolves `reference` from each of its sources in turn (mirrors first), as
    /// containers/image does; the first that serves the manifest is the session the blobs
    /// are fetched with. A single source's failure is returned as it is; several are listed.
    pub async fn open(
        &self,
        reference: &Reference,
        secrets: &Keyring,
    ) -> Result<(Session, Resolved), ManifestError> {
        let sources = self.sources(reference)?;
        let mut failures = Vec::new();
        for source in &sources {
            let target = match super::reference::parse(&source.reference) {
                Ok(t) => t,
                Err(e) => {
                    failures.push((source.describe(), ManifestError::Rewrite(e.to_string())));
                    continue;
                }
            };
            // A mirror that is itself a blocked registry is never asked.
            let name = format!("{}/{}", target.registry(), target.repository());
            if let Some(entry) = self.conf.find(&name).filter(|e| e.blocked && source.mirror) {
                failures.push((source.describe(), self.blocked(entry)));
                continue;
            }
            match self.open_at(&target, source, secrets).await {
                Ok(found) => return Ok(found),
                Err(e) => {
                    if sources.len() > 1 {
                        tracing::info!(reference = %reference, source = %source.describe(), error = %e, "source did not serve the image");
                    }
                    failures.push((source.describe(), e));
                }
            }
        }
        if failures.len() == 1 {
            return Err(failures.pop().expect("one failure").1);
        }
        Err(ManifestError::Sources(failures))
    }

    /// Resolves `reference` at one source with each matching credential in turn
    /// (anonymously when none matches), as the kubelet tries every credential its keyring
    /// returns. Credentials are read afresh for each pull (edited files apply at once).
    async fn open_at(
        &self,
        reference: &Reference,
        source: &Source,
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
        let plain_http = source.insecure.then(|| reference.registry());
        let mut last = None;
        for (auth, credential) in attempts {
            // A client per credential: its token cache must not carry one credential's
            // tokens into another's attempt.
            let session = Session {
                client: self.client(plain_http),
                auth,
                reference: reference.clone(),
                credential,
                served_by: source.describe(),
            };
            match session.resolve(reference).await {
                Ok(resolved) => {
                    tracing::debug!(reference = %reference, credential = %session.credential, served_by = %session.served_by, "manifest resolved");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(conf: &str) -> Registry {
        let path = std::path::Path::new("/etc/containers/registries.conf");
        let conf = RegistriesConf::parse(path, conf).unwrap();
        Registry::new(Vec::new(), Vec::new(), Vec::new(), None, conf)
    }

    #[tokio::test]
    async fn a_blocked_registry_is_refused_before_any_request() {
        let r = registry(
            "[[registry]]\nprefix = \"quay.io/bad\"\nlocation = \"quay.io/bad\"\nblocked = true\n",
        );
        let reference = crate::image::reference::parse("quay.io/bad/app:1").unwrap();
        let Err(e) = r.open(&reference, &Keyring::default()).await else {
            panic!("a blocked registry was opened")
        };
        assert_eq!(
            e.to_string(),
            "registry blocked by /etc/containers/registries.conf: [[registry]] #1 (prefix \"quay.io/bad\") sets blocked = true"
        );
        let other = crate::image::reference::parse("quay.io/good/app:1").unwrap();
        assert_eq!(r.sources(&other).unwrap().len(), 1);
    }

    #[test]
    fn mirrors_come_first_and_the_primary_last() {
        let r = registry(
            "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"10.0.0.5:5000/hub\"\ninsecure = true\n",
        );
        let reference = crate::image::reference::parse("busybox").unwrap();
        let sources = r.sources(&reference).unwrap();
        let shown: Vec<_> = sources
            .iter()
            .map(|s| (s.describe(), s.reference.as_str(), s.insecure))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "mirror 10.0.0.5:5000/hub".to_string(),
                    "10.0.0.5:5000/hub/library/busybox:latest",
                    true
                ),
                (
                    "primary docker.io".to_string(),
                    "docker.io/library/busybox:latest",
                    false
                ),
            ]
        );
    }
}
