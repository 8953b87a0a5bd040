//! The one rustls crypto provider of the process: *ring*. reqwest's default would be
//! aws-lc-rs, about 1.6 MB more code in the agent for no feature hostlet uses (BENCHMARKS.md
//! row 4a); every place that makes a TLS client (registries, the manifest URL, HTTPS probes)
//! goes through [`provider`], so the choice is made once, before the first client exists.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The process-wide provider, installed as rustls' default on first use (reqwest and
/// oci-client pick it up from there; without one they would panic).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // Another thread may have installed one first; whichever won is the default.
            let _ = rustls::crypto::ring::default_provider().install_default();
            CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_provider_is_installed_and_offers_tls13() {
        let p = super::provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        assert!(p
            .cipher_suites
            .iter()
            .any(|s| s.version() == &rustls::version::TLS13));
    }
}
