//! A docker keyring as the kubelet keeps one (pkg/credentialprovider/keyring.go): entries
//! keyed by `host[:port][/path]`, where a host component may be a glob (`*.example.com`);
//! a lookup returns every entry matching an image, the most specific (longest key) first.
//! A pod's imagePullSecrets, credential provider responses and config.json files each
//! make one.

use std::collections::BTreeMap;
use std::fmt;

use oci_client::secrets::RegistryAuth;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{source_name}: invalid docker config: {reason}")]
    Json {
        source_name: String,
        reason: serde_json::Error,
    },
}

/// One user and password for the registries (and paths) `key` matches.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The entry's key as normalised: `host[:port][/path]`, lower-case host.
    pub key: String,
    pub user: String,
    pub password: String,
    /// Where it came from (`secret default/regcred`, a plugin's name, a file), for logs.
    pub origin: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("key", &self.key)
            .field("user", &self.user)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn auth(&self) -> RegistryAuth {
        RegistryAuth::Basic(self.user.clone(), self.password.clone())
    }
}

/// Credentials in the order they are tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    entries: Vec<Credential>,
}

#[derive(Debug, serde::Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct AuthEntry {
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

impl Keyring {
    /// A `config.json` / `.dockerconfigjson` document: `{"auths": {KEY: ENTRY}}`.
    pub fn from_config_json(origin: &str, bytes: &[u8]) -> Result<Self, KeyringError> {
        let file: ConfigJson =
            serde_json::from_slice(bytes).map_err(|reason| KeyringError::Json {
                source_name: origin.to_string(),
                reason,
            })?;
        Ok(Self::from_entries(origin, file.auths))
    }

    /// A legacy `.dockercfg` document: `{KEY: ENTRY}`.
    pub fn from_dockercfg(origin: &str, bytes: &[u8]) -> Result<Self, KeyringError> {
        let auths: BTreeMap<String, AuthEntry> =
            serde_json::from_slice(bytes).map_err(|reason| KeyringError::Json {
                source_name: origin.to_string(),
                reason,
            })?;
        Ok(Self::from_entries(origin, auths))
    }

    fn from_entries(origin: &str, auths: BTreeMap<String, AuthEntry>) -> Self {
        let mut ring = Self::default();
        for (key, entry) in auths {
            match credentials(&entry) {
                Some((user, password)) => ring.add(&key, user, password, origin),
                None => {
                    tracing::warn!(origin, registry = %key, "credentials entry without usable auth")
                }
            }
        }
        ring
    }

    /// Adds an entry; keeps the most specific keys first, as the kubelet sorts its index.
    pub fn add(&mut self, key: &str, user: String, password: String, origin: &str) {
        self.entries.push(Credential {
            key: normalise_key(key),
            user,
            password,
            origin: origin.to_string(),
        });
        // Stable: entries of one key keep the order they were added in.
        self.entries.sort_by(|a, b| b.key.cmp(&a.key));
    }

    /// Appends `other`'s entries after this ring's (a union: ours are tried first).
    pub fn extend(&mut self, other: Keyring) {
        self.entries.extend(other.entries);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries matching `image` (`host[:port]/repository`, host as the reference names
    /// it), in order.
    pub fn lookup(&self, image: &str) -> Vec<&Credential> {
        let image = normalise_key(image);
        self.entries
            .iter()
            .filter(|c| key_matches(&c.key, &image))
            .collect()
    }
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

/// `https://index.docker.io/v1/` → `docker.io`, `http://host:5000/path/` → `host:5000/path`.
pub(super) fn normalise_key(key: &str) -> String {
    let s = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = s.split_once('/').unwrap_or((s, ""));
    let host = match host.to_ascii_lowercase().as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        h => h.to_string(),
    };
    // docker's hub key carries the API version as a path: it names the whole registry.
    let path = path.trim_end_matches('/');
    let path = if host == "docker.io" && path == "v1" {
        ""
    } else {
        path
    };
    if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    }
}

/// The kubelet's URLsMatch: the same number of host components, each matching as a glob,
/// the same port, and the key's path a prefix of the image's.
pub(super) fn key_matches(key: &str, image: &str) -> bool {
    let (khost, kpath) = key.split_once('/').unwrap_or((key, ""));
    let (ihost, ipath) = image.split_once('/').unwrap_or((image, ""));
    let split = |h: &str| -> (Vec<String>, String) {
        let (name, port) = match h.rsplit_once(':') {
            Some((n, p)) if !n.ends_with(']') || h.starts_with('[') => (n, p),
            _ => (h, ""),
        };
        (name.split('.').map(str::to_string).collect(), port.into())
    };
    let ((kparts, kport), (iparts, iport)) = (split(khost), split(ihost));
    kparts.len() == iparts.len()
        && kport == iport
        && kparts.iter().zip(&iparts).all(|(k, i)| glob_match(k, i))
        && ipath.starts_with(kpath)
}

/// Shell-style `*` and `?` (Go's filepath.Match on one host component).
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Standard base64 (with or without padding); None if malformed.
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
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

    fn users(ring: &Keyring, image: &str) -> Vec<String> {
        ring.lookup(image).iter().map(|c| c.user.clone()).collect()
    }

    #[test]
    fn kubelet_matching_rules() {
        // Vectors from the kubelet's keyring_test.go (TestURLsMatch).
        for (key, image, want) in [
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.io", "prefix.kubernetes.io", true),
            ("*.*.io", "kubernetes.io", false),
            ("*.*.*.io", "a.b.c.io", true),
            ("*.io", "a.b.io", false),
            (
                "prefix.kubernetes.io:8080",
                "prefix.kubernetes.io:8080",
                true,
            ),
            ("prefix.kubernetes.io", "prefix.kubernetes.io:8080", false),
            ("prefix.kubernetes.io:8080", "prefix.kubernetes.io", false),
            ("*.kubernetes.io:8080", "prefix.kubernetes.io:8080", true),
            (
                "prefix.kubernetes.io/foo",
                "prefix.kubernetes.io/foo/bar",
                true,
            ),
            (
                "prefix.kubernetes.io/foo/bar",
                "prefix.kubernetes.io/foo",
                false,
            ),
            ("127.0.0.1:5000", "127.0.0.1:5000/library/busybox", true),
            ("127.0.0.1:5000", "127.0.0.1:5001/library/busybox", false),
        ] {
            assert_eq!(key_matches(key, image), want, "{key} vs {image}");
        }
    }

    #[test]
    fn most_specific_first_and_union_order() {
        let mut secrets = Keyring::from_config_json(
            "secret default/a",
            br#"{"auths":{"reg.example:5000":{"auth":"YWxpY2U6czNjcjpldA=="},
                 "reg.example:5000/team":{"username":"team","password":"t"},
                 "https://index.docker.io/v1/":{"username":"hub","password":"h"}}}"#,
        )
        .unwrap();
        assert_eq!(
            users(&secrets, "reg.example:5000/team/app"),
            ["team", "alice"]
        );
        assert_eq!(secrets.lookup("reg.example:5000/x")[0].password, "s3cr:et");
        assert_eq!(users(&secrets, "docker.io/library/busybox"), ["hub"]);
        assert!(users(&secrets, "quay.io/x").is_empty());
        let legacy = Keyring::from_dockercfg(
            "secret default/b",
            br#"{"reg.example:5000":{"auth":"Ym9iOnB3"}}"#,
        )
        .unwrap();
        secrets.extend(legacy);
        assert_eq!(users(&secrets, "reg.example:5000/x"), ["alice", "bob"]);
        assert!(Keyring::from_config_json("x", br#"{"auths":1}"#).is_err());
        // Debug never shows a password.
        assert!(!format!("{secrets:?}").contains("s3cr"));
    }

    #[test]
    fn globs_and_base64() {
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert!(base64_decode("a*b").is_none());
    }
}
