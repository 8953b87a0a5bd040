//! Kubelet credential provider plugins (`--image-credential-provider-config`,
//! `--image-credential-provider-bin-dir`): the kubelet's exec API. A provider whose
//! `matchImages` matches the image is run with a `CredentialProviderRequest` on stdin; its
//! `CredentialProviderResponse` is a keyring, cached by `cacheKeyType` for `cacheDuration`.
//! A plugin that fails, answers nonsense or runs past the timeout (then it is killed) is
//! logged with its name and the pull goes on with the other credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::keyring::{key_matches, normalise_key, Keyring};

/// The kubelet's exec timeout for a plugin.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

const CONFIG_VERSIONS: &[&str] = &["kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1"];
const API_VERSIONS: &[&str] = &[
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
];

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProviderConfig {
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct EnvVar {
    name: String,
    value: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    cache_key_type: String,
    cache_duration: Option<String>,
    #[serde(default)]
    auth: HashMap<String, AuthConfig>,
}

#[derive(Debug, serde::Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// One configured plugin, its binary found, and what it handed out.
struct Provider {
    config: ProviderConfig,
    binary: PathBuf,
    default_cache: Duration,
    /// cache key → (keyring, expiry); a lock, so one plugin runs once for concurrent pulls.
    cache: tokio::sync::Mutex<HashMap<String, (Keyring, Instant)>>,
}

/// The configured plugins, in the file's order.
pub struct Providers {
    providers: Vec<Provider>,
    timeout: Duration,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .providers
            .iter()
            .map(|p| p.config.name.as_str())
            .collect();
        f.debug_struct("Providers")
            .field("names", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Providers {
    /// Reads and checks the config as the kubelet does at start: every plugin's binary must
    /// be in `bin_dir`, its `matchImages` non-empty, its durations valid.
    pub fn load(config: &Path, bin_dir: &Path, timeout: Duration) -> Result<Self, ProviderError> {
        let invalid = |message: String| ProviderError::Invalid {
            path: config.to_path_buf(),
            message,
        };
        let text = std::fs::read(config).map_err(|source| ProviderError::Read {
            path: config.to_path_buf(),
            source,
        })?;
        let file: ConfigFile =
            serde_yaml::from_slice(&text).map_err(|source| ProviderError::Parse {
                path: config.to_path_buf(),
                source,
            })?;
        if file.kind != "CredentialProviderConfig"
            || !CONFIG_VERSIONS.contains(&file.api_version.as_str())
        {
            return Err(invalid(format!(
                "want kind CredentialProviderConfig, apiVersion {}; got {} {}",
                CONFIG_VERSIONS[0], file.kind, file.api_version
            )));
        }
        if file.providers.is_empty() {
            return Err(invalid("at least 1 item in plugins is required".into()));
        }
        let mut providers = Vec::new();
        for p in file.providers {
            let name = &p.name;
            if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
                return Err(invalid(format!(
                    "provider name {name:?} is not a plain file name"
                )));
            }
            if p.match_images.is_empty() {
                return Err(invalid(format!("provider {name}: matchImages is required")));
            }
            if !API_VERSIONS.contains(&p.api_version.as_str()) {
                return Err(invalid(format!(
                    "provider {name}: apiVersion {:?} is not one of {}",
                    p.api_version,
                    API_VERSIONS.join(", ")
                )));
            }
            let default_cache = match &p.default_cache_duration {
                Some(d) => parse_duration(d).ok_or_else(|| {
                    invalid(format!(
                        "provider {name}: invalid defaultCacheDuration {d:?}"
                    ))
                })?,
                None => {
                    return Err(invalid(format!(
                        "provider {name}: defaultCacheDuration is required"
                    )))
                }
            };
            let binary = bin_dir.join(name);
            if !binary.is_file() {
                return Err(invalid(format!(
                    "provider {name}: no plugin binary {}",
                    binary.display()
                )));
            }
            providers.push(Provider {
                config: p,
                binary,
                default_cache,
                cache: Default::default(),
            });
        }
        Ok(Self { providers, timeout })
    }

    /// The credentials every matching provider hands out for `image` (`host/repository`),
    /// in the config's order.
    pub async fn lookup(&self, image: &str) -> Keyring {
        let mut ring = Keyring::default();
        for p in &self.providers {
            if p.matches(image) {
                ring.extend(p.credentials(image, self.timeout).await);
            }
        }
        ring
    }
}

impl Provider {
    fn matches(&self, image: &str) -> bool {
        let image = normalise_key(image);
        self.config
            .match_images
            .iter()
            .any(|m| key_matches(&normalise_key(m), &image))
    }

    async fn credentials(&self, image: &str, timeout: Duration) -> Keyring {
        let name = &self.config.name;
        let registry = image.split('/').next().unwrap_or(image);
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        cache.retain(|_, (_, expiry)| *expiry > now);
        // The kubelet looks the image up, then its registry, then the global entry.
        for key in [
            format!("image:{image}"),
            format!("registry:{registry}"),
            "global".into(),
        ] {
            if let Some((ring, _)) = cache.get(&key) {
                tracing::debug!(provider = %name, image, "credential provider cache hit");
                return ring.clone();
            }
        }
        let response = match self.exec(image, timeout).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(provider = %name, image, error = %e, "credential provider failed; pulling without its credentials");
                return Keyring::default();
            }
        };
        let mut ring = Keyring::default();
        let origin = format!("credential provider {name}");
        for (pattern, auth) in &response.auth {
            ring.add(
                pattern,
                auth.username.clone(),
                auth.password.clone(),
                &origin,
            );
        }
        let duration = response
            .cache_duration
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(self.default_cache);
        let key = match response.cache_key_type.as_str() {
            "Registry" => Some(format!("registry:{registry}")),
            "Global" => Some("global".into()),
            "Image" => Some(format!("image:{image}")),
            other => {
                tracing::warn!(provider = %name, cache_key_type = other, "credential provider response without a valid cacheKeyType; not cached");
                None
            }
        };
        if let Some(key) = key.filter(|_| !duration.is_zero()) {
            cache.insert(key, (ring.clone(), now + duration));
        }
        ring
    }

    async fn exec(&self, image: &str, timeout: Duration) -> Result<Response, String> {
        let request = serde_json::json!({
            "apiVersion": self.config.api_version,
            "kind": "CredentialProviderRequest",
            "image": image,
        });
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.args(&self.config.args)
            .envs(self.config.env.iter().map(|e| (&e.name, &e.value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a timeout kills whatever the plugin started too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("exec {}: {e}", self.binary.display()))?;
        let (mut stdin, mut stdout, mut stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let run = async {
            if let Some(mut w) = stdin.take() {
                let _ = w.write_all(request.to_string().as_bytes()).await;
            }
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let read_out = async {
                if let Some(r) = stdout.as_mut() {
                    let _ = r.take(1 << 20).read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(r) = stderr.as_mut() {
                    let _ = r.take(4096).read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        let (status, out, err) = match tokio::time::timeout(timeout, run).await {
            Ok(done) => done,
            Err(_) => {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(format!("timed out after {timeout:?}; killed"));
            }
        };
        let status = status.map_err(|e| format!("wait: {e}"))?;
        if !status.success() {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&err).trim()
            ));
        }
        let response: Response =
            serde_json::from_slice(&out).map_err(|e| format!("invalid response: {e}"))?;
        if response.kind != "CredentialProviderResponse"
            || response.api_version != self.config.api_version
        {
            return Err(format!(
                "response kind/apiVersion {} {} (want CredentialProviderResponse {})",
                response.kind, response.api_version, self.config.api_version
            ));
        }
        Ok(response)
    }
}

/// A Go duration (`12h`, `1m30s`, `0`) as the config and responses carry.
fn parse_duration(s: &str) -> Option<Duration> {
    crate::config::parse_duration(s).ok()
}

#[cfg(test)]
#[path = "provider_tests.rs"]
mod tests;
