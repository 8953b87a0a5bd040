//! `--config FILE`: a `kubelet.config.k8s.io/v1beta1` `KubeletConfiguration`. The fields
//! hostlet implements become the flags they correspond to, so the file's values go
//! through the same parsing and validation as the command line, and a flag given on the
//! command line wins. Every other field is reported as ignored.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What a config file says, as flags.
#[derive(Debug, Default, PartialEq)]
pub struct FileFlags {
    /// `(flag id, value)`: the clap argument id (`pod_manifest_path`) and its value as
    /// it would be typed. Repeatable flags appear once per value.
    pub flags: Vec<(&'static str, String)>,
    /// Fields present in the file that hostlet does not implement (dotted paths).
    pub ignored: Vec<String>,
}

/// Scalar fields: YAML name → flag id.
const SCALARS: &[(&str, &str)] = &[
    ("staticPodPath", "pod_manifest_path"),
    ("staticPodURL", "manifest_url"),
    ("fileCheckFrequency", "file_check_frequency"),
    ("httpCheckFrequency", "http_check_frequency"),
    ("podLogsDir", "pod_logs_dir"),
    ("containerLogMaxSize", "container_log_max_size"),
    ("containerLogMaxFiles", "container_log_max_files"),
    ("imageGCHighThresholdPercent", "image_gc_high_threshold"),
    ("imageGCLowThresholdPercent", "image_gc_low_threshold"),
    ("seccompDefault", "seccomp_default"),
    ("podPidsLimit", "pod_max_pids"),
    ("readOnlyPort", "read_only_port"),
    ("cgroupDriver", "cgroup_driver"),
    ("cgroupRoot", "cgroup_root"),
    ("resolvConf", "resolv_conf"),
    ("podCIDR", "pod_cidr"),
    (
        "evictionPressureTransitionPeriod",
        "eviction_pressure_transition_period",
    ),
    ("evictionMaxPodGracePeriod", "eviction_max_pod_grace_period"),
    ("shutdownGracePeriod", "shutdown_grace_period"),
    (
        "shutdownGracePeriodCriticalPods",
        "shutdown_grace_period_critical_pods",
    ),
    // hostlet's own (no KubeletConfiguration field does this)
    ("autoUpdateInterval", "auto_update_interval"),
];

/// Fields accepted without effect: type metadata, and settings hostlet's behaviour
/// already matches.
const NEUTRAL: &[&str] = &["apiVersion", "kind"];

pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";

pub fn read(path: &Path) -> Result<FileFlags, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        ParseError::Yaml(source) => ConfigFileError::Yaml {
            path: path.to_path_buf(),
            source,
        },
        ParseError::Invalid(message) => ConfigFileError::Invalid {
            path: path.to_path_buf(),
            message,
        },
    })
}

#[derive(Debug)]
pub enum ParseError {
    Yaml(serde_yaml::Error),
    Invalid(String),
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn parse(text: &str) -> Result<FileFlags, ParseError> {
    let doc: Value = serde_yaml::from_str(text).map_err(ParseError::Yaml)?;
    let Value::Mapping(map) = doc else {
        return Err(ParseError::Invalid(
            "expected a KubeletConfiguration object".into(),
        ));
    };
    let get = |k: &str| map.get(Value::String(k.into()));
    let kind = get("kind").and_then(Value::as_str);
    let api = get("apiVersion").and_then(Value::as_str);
    if kind != Some("KubeletConfiguration") || api != Some(API_VERSION) {
        return Err(ParseError::Invalid(format!(
            "expected apiVersion {API_VERSION} and kind KubeletConfiguration, got {} {}",
            api.unwrap_or("<none>"),
            kind.unwrap_or("<none>")
        )));
    }
    let mut out = FileFlags::default();
    for (k, v) in &map {
        let Some(key) = k.as_str() else { continue };
        if v.is_null() || NEUTRAL.contains(&key) {
            continue;
        }
        let bad = |what: &str| ParseError::Invalid(format!("{key}: expected {what}"));
        if let Some((_, flag)) = SCALARS.iter().find(|(name, _)| *name == key) {
            let value = scalar(v).ok_or_else(|| bad("a string, number or boolean"))?;
            // The kubelet's readOnlyPort 0 means "off", as hostlet's default is.
            if key == "readOnlyPort" && value == "0" {
                continue;
            }
            // Empty strings are Go's zero values: the default applies.
            if !value.is_empty() {
                out.flags.push((flag, value));
            }
            continue;
        }
        match key {
            "staticPodURLHeader" => {
                let Value::Mapping(h) = v else {
                    return Err(bad("a map of header names to lists of values"));
                };
                for (name, values) in h {
                    let name = name
                        .as_str()
                        .ok_or_else(|| bad("header names as strings"))?;
                    let values = match values {
                        Value::Sequence(s) => s.iter().map(scalar).collect::<Option<Vec<_>>>(),
                        other => scalar(other).map(|s| vec![s]),
                    }
                    .ok_or_else(|| bad("header values as strings"))?;
                    for value in values {
                        out.flags
                            .push(("manifest_url_header", format!("{name}:{value}")));
                    }
                }
            }
            // Node allocatable: maps of resource name to quantity, as the flags'
            // `cpu=100m,memory=256Mi`.
            "kubeReserved" | "systemReserved" => {
                let Value::Mapping(m) = v else {
                    return Err(bad("a map of resource names to quantities"));
                };
                let pairs = m
                    .iter()
                    .map(|(name, q)| Some(format!("{}={}", name.as_str()?, scalar(q)?)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("a map of resource names to quantities"))?;
                if !pairs.is_empty() {
                    let flag = if key == "kubeReserved" {
                        "kube_reserved"
                    } else {
                        "system_reserved"
                    };
                    out.flags.push((flag, pairs.join(",")));
                }
            }
            // Eviction thresholds: maps of signal to value, as the flags'
            // `nodefs.available<10%` (thresholds) or `nodefs.available=1m` (the others).
            "evictionHard"
            | "evictionSoft"
            | "evictionSoftGracePeriod"
            | "evictionMinimumReclaim" => {
                let Value::Mapping(m) = v else {
                    return Err(bad("a map of eviction signals to values"));
                };
                let op = if key.ends_with("Hard") || key.ends_with("Soft") {
                    "<"
                } else {
                    "="
                };
                let pairs = m
                    .iter()
                    .map(|(name, q)| Some(format!("{}{op}{}", name.as_str()?, scalar(q)?)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("a map of eviction signals to values"))?;
                let flag = match key {
                    "evictionHard" => "eviction_hard",
                    "evictionSoft" => "eviction_soft",
                    "evictionSoftGracePeriod" => "eviction_soft_grace_period",
                    _ => "eviction_minimum_reclaim",
                };
                out.flags.push((flag, pairs.join(",")));
            }
            "crashLoopBackOff" => {
                let Value::Mapping(c) = v else {
                    return Err(bad("an object"));
                };
                for (ck, cv) in c {
                    match ck.as_str() {
                        Some("maxContainerRestartPeriod") => {
                            let value = scalar(cv)
                                .ok_or_else(|| bad("maxContainerRestartPeriod as a duration"))?;
                            out.flags.push(("crash_loop_backoff_max", value));
                        }
                        Some(other) => out.ignored.push(format!("crashLoopBackOff.{other}")),
                        None => {}
                    }
                }
            }
            _ => out.ignored.push(key.to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM_LIKE: &str = r#"
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
cgroupDriver: systemd
cgroupRoot: /hostlet.slice
clusterDNS: [10.96.0.10]
staticPodPath: /etc/kubernetes/manifests
staticPodURL: http://127.0.0.1:8080/pods
staticPodURLHeader:
  Authorization: ["Bearer abc", "Bearer def"]
fileCheckFrequency: 5s
httpCheckFrequency: 0s
podLogsDir: /var/log/pods
containerLogMaxSize: 50Mi
containerLogMaxFiles: 3
imageGCHighThresholdPercent: 90
imageGCLowThresholdPercent: 70
seccompDefault: true
podPidsLimit: 4096
readOnlyPort: 10255
crashLoopBackOff:
  maxContainerRestartPeriod: 1m
kubeReserved: {cpu: 100m, memory: 256Mi}
systemReserved:
  memory: 1Gi
rotateCertificates: true
resolvConf: /run/systemd/resolve/resolv.conf
podCIDR: 10.99.0.0/16
evictionHard: {nodefs.available: 5%, imagefs.available: 1Gi}
evictionSoft:
  nodefs.available: 15%
evictionSoftGracePeriod:
  nodefs.available: 1m30s
evictionMinimumReclaim: {nodefs.available: 500Mi}
evictionPressureTransitionPeriod: 30s
evictionMaxPodGracePeriod: 20
shutdownGracePeriod: 30s
shutdownGracePeriodCriticalPods: 10s
"#;

    #[test]
    fn maps_implemented_fields_and_lists_the_rest() {
        let f = parse(KUBEADM_LIKE).unwrap();
        let has = |id: &str, v: &str| f.flags.iter().any(|(i, x)| *i == id && x == v);
        assert!(has("pod_manifest_path", "/etc/kubernetes/manifests"));
        assert!(has("manifest_url", "http://127.0.0.1:8080/pods"));
        assert!(has("manifest_url_header", "Authorization:Bearer abc"));
        assert!(has("manifest_url_header", "Authorization:Bearer def"));
        assert!(has("file_check_frequency", "5s"));
        assert!(has("container_log_max_size", "50Mi"));
        assert!(has("container_log_max_files", "3"));
        assert!(has("image_gc_high_threshold", "90"));
        assert!(has("seccomp_default", "true"));
        assert!(has("pod_max_pids", "4096"));
        assert!(has("cgroup_root", "/hostlet.slice"));
        assert!(has("read_only_port", "10255"));
        assert!(has("crash_loop_backoff_max", "1m"));
        assert!(has("kube_reserved", "cpu=100m,memory=256Mi"));
        assert!(has("system_reserved", "memory=1Gi"));
        assert!(has("resolv_conf", "/run/systemd/resolve/resolv.conf"));
        assert!(has("pod_cidr", "10.99.0.0/16"));
        assert!(has(
            "eviction_hard",
            "nodefs.available<5%,imagefs.available<1Gi"
        ));
        assert!(has("eviction_soft", "nodefs.available<15%"));
        assert!(has("eviction_soft_grace_period", "nodefs.available=1m30s"));
        assert!(has("eviction_minimum_reclaim", "nodefs.available=500Mi"));
        assert!(has("eviction_pressure_transition_period", "30s"));
        assert!(has("eviction_max_pod_grace_period", "20"));
        assert!(has("shutdown_grace_period", "30s"));
        assert!(has("shutdown_grace_period_critical_pods", "10s"));
        let mut ignored = f.ignored.clone();
        ignored.sort();
        assert_eq!(
            ignored,
            ["authentication", "clusterDNS", "rotateCertificates"]
        );
    }

    #[test]
    fn refuses_other_kinds_and_bad_values() {
        let e = parse("apiVersion: v1\nkind: Pod\n").unwrap_err();
        assert!(
            matches!(e, ParseError::Invalid(ref m) if m.contains("KubeletConfiguration")),
            "{e:?}"
        );
        let e = parse(&format!(
            "apiVersion: {API_VERSION}\nkind: KubeletConfiguration\nstaticPodPath: [a]\n"
        ))
        .unwrap_err();
        assert!(
            matches!(e, ParseError::Invalid(ref m) if m.starts_with("staticPodPath")),
            "{e:?}"
        );
        assert!(matches!(parse("{"), Err(ParseError::Yaml(_))));
        let f = parse(&format!("apiVersion: {API_VERSION}\nkind: KubeletConfiguration\nreadOnlyPort: 0\ncgroupDriver: cgroupfs\n")).unwrap();
        assert_eq!(f.flags, [("cgroup_driver", "cgroupfs".to_string())]);
        assert!(f.ignored.is_empty());
    }
}
