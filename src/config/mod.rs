//! Agent configuration, with the kubelet's flag names and defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::BackoffPolicy;

pub mod file;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `--pod-manifest-path`; `None` when only `--manifest-url` is given.
    pub pod_manifest_path: Option<PathBuf>,
    /// `--manifest-url` and the headers sent with it (`--manifest-url-header`).
    pub manifest_url: Option<String>,
    pub manifest_url_headers: Vec<(String, String)>,
    pub http_check_frequency: Duration,
    /// `--strict`: unknown manifest fields are errors, not warnings.
    pub strict: bool,
    pub root_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
    /// The node name: `--hostname-override` or the host name, lowercased.
    pub node_name: String,
    pub insecure_registries: Vec<String>,
    pub file_check_frequency: Duration,
    pub crash_backoff: BackoffPolicy,
    /// How long the logs of a deleted pod stay before they are removed.
    pub pod_logs_gc_delay: Duration,
    /// `--container-log-max-size` / `--container-log-max-files`.
    pub log_limits: crate::logs::LogLimits,
    /// `--read-only-port`: the status API on 127.0.0.1 too.
    pub read_only_port: Option<u16>,
    /// `--seccomp-default`: RuntimeDefault seccomp when a container names no profile.
    pub seccomp_default: bool,
    /// `--user-namespaces-default`: pods without `hostUsers` get `hostUsers: false`
    /// where they can.
    pub user_namespaces_default: bool,
    /// `--pod-max-pids`: pids.max of every pod cgroup; not positive is no limit.
    pub pod_max_pids: i64,
    /// `--cgroup-driver`, resolved: detected when not given.
    pub cgroup_driver: crate::cgroups::Driver,
    /// `--cgroup-root`: pod cgroups live, and orphaned ones are removed, only under it.
    pub cgroup_root: crate::cgroups::CgroupRoot,
    /// `--cni-conf-dir`, `--cni-bin-dir`, `--cni-cache-dir`, `--pod-cidr`.
    pub network: crate::network::Options,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "invalid duration {input:?}: expected a number with a unit, like 500ms, 2s, 1m or 1h30m"
    )]
    Duration { input: String },
    #[error("invalid header {input:?}: expected 'Name:value'")]
    Header { input: String },
}

/// Parses Go-style durations as the kubelet's flags accept them: `500ms`, `2s`, `1m30s`.
///
/// jiff's "friendly" format reads every Go duration hostlet documents (units `ns` to `h`,
/// fractions, several units in a row). It also takes a few spellings Go does not
/// (`1 hour`, `1h 30m`); it rejects a bare `0`, which Go (and so the kubelet) accepts, hence
/// this wrapper.
pub fn parse_duration(input: &str) -> Result<Duration, ConfigError> {
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    jiff::fmt::friendly::SpanParser::new()
        .parse_unsigned_duration(s)
        .map_err(|_| ConfigError::Duration {
            input: input.to_string(),
        })
}

/// Parses `--manifest-url-header 'Name:value'` (the kubelet's format; the value may hold
/// colons, surrounding spaces are dropped).
pub fn parse_header(input: &str) -> Result<(String, String), ConfigError> {
    match input.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() && !name.contains(char::is_whitespace) => {
            Ok((name.to_string(), value.trim().to_string()))
        }
        _ => Err(ConfigError::Header {
            input: input.to_string(),
        }),
    }
}

/// The host name, lowercased, as the kubelet names its node.
pub fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("300us").unwrap(), Duration::from_micros(300));
        assert_eq!(parse_duration(" 10s ").unwrap(), Duration::from_secs(10));
        for bad in ["", "5", "s", "2x", "-1s", "1s2"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("Authorization: Bearer a:b").unwrap(),
            ("Authorization".into(), "Bearer a:b".into())
        );
        assert_eq!(parse_header("X-A:").unwrap(), ("X-A".into(), "".into()));
        for bad in ["", "novalue", ":v", "a b:c"] {
            let e = parse_header(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
