//! Registry credentials from docker `config.json` files, looked up as the kubelet does:
//! `<root-dir>/config.json`, then `$HOME/.docker/config.json`. The first file with an entry for
//! the registry wins. Files are read at every pull, so edited credentials apply without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_client::secrets::RegistryAuth;

#[derive(Debug, serde::Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    /// base64 of `user:password`.
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// A refresh token (`docker login` with an identity token) is sent as the password.
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// The files searched, in order.
pub fn search_paths(root_dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![root_dir.join("config.json")];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        paths.push(PathBuf::from(home).join(".docker").join("config.json"));
    }
    paths
}

/// Credentials for `registry` (as `Reference::resolve_registry` names it), or anonymous.
/// Unreadable or malformed files are logged and skipped.
pub fn lookup(paths: &[PathBuf], registry: &str) -> RegistryAuth {
    for path in paths {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read registry credentials");
                continue;
            }
        };
        let file: ConfigFile = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "invalid registry credentials file");
                continue;
            }
        };
        let want = normalise_host(registry);
        for (key, entry) in &file.auths {
            if normalise_host(key) != want {
                continue;
            }
            match credentials(entry) {
                Some((user, pass)) => {
                    tracing::debug!(path = %path.display(), registry, user = %user, "using registry credentials");
                    return RegistryAuth::Basic(user, pass);
                }
                None => {
                    tracing::warn!(path = %path.display(), registry = %key, "credentials entry without usable auth");
                }
            }
        }
    }
    RegistryAuth::Anonymous
}

fn credentials(e: &AuthEntry) -> Option<(String, String)> {
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        if !u.is_empty() {
            return Some((u.clone(), p.clone()));
        }
    }
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64_decode(auth.trim())?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some((u.to_string(), p.to_string()));
    }
    match (&e.username, &e.identity_token) {
        (Some(u), Some(t)) => Some((u.clone(), t.clone())),
        _ => None,
    }
}

/// `https://index.docker.io/v1/` → `docker.io`, `http://host:5000/path` → `host:5000`.
fn normalise_host(key: &str) -> String {
    let s = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// Standard base64 (with or without padding); None if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    // docker writes padded base64; hand-edited files sometimes lack the padding.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(a: RegistryAuth) -> Option<(String, String)> {
        match a {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn first_file_with_an_entry_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.json");
        let b = tmp.path().join("b.json");
        // "alice:s3cr:et" in base64: the password may contain ':'.
        std::fs::write(
            &a,
            r#"{"auths":{"reg.example:5000":{"auth":"YWxpY2U6czNjcjpldA=="}}}"#,
        )
        .unwrap();
        std::fs::write(
            &b,
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"bob","password":"pw"},
                "reg.example:5000":{"username":"ignored","password":"x"}}}"#,
        )
        .unwrap();
        let paths = [tmp.path().join("missing.json"), a, b];
        assert_eq!(
            basic(lookup(&paths, "reg.example:5000")),
            Some(("alice".into(), "s3cr:et".into()))
        );
        assert_eq!(
            basic(lookup(&paths, "index.docker.io")),
            Some(("bob".into(), "pw".into()))
        );
        assert!(matches!(lookup(&paths, "quay.io"), RegistryAuth::Anonymous));
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_none());
    }
}
