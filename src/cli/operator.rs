//! What the operator verbs share: the agent's socket, output formats, finding a pod or a
//! container by the names an operator types.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::List;

use crate::runtime::MonitorConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct RootArgs {
    /// hostlet's root dir, where the agent's socket hostlet.sock lives
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/hostlet",
        env = "HOSTLET_ROOT_DIR"
    )]
    pub root_dir: PathBuf,
}

impl RootArgs {
    pub fn socket(&self) -> PathBuf {
        crate::api::socket_path(&self.root_dir)
    }

    /// GETs an API path; a non-200 answer is an error carrying the agent's message.
    pub fn get(&self, target: &str) -> anyhow::Result<Vec<u8>> {
        let (code, body) = crate::api::client::get(&self.socket(), target)?;
        if code != 200 {
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            bail!("{msg}");
        }
        Ok(body)
    }

    pub fn pods(&self) -> anyhow::Result<Vec<Pod>> {
        let body = self.get("/pods")?;
        let list: List<Pod> =
            serde_json::from_slice(&body).context("decoding the agent's pod list")?;
        Ok(list.items)
    }

    /// The container's record in the root dir (`monitor.json`), if it still exists.
    pub fn monitor_config(&self, id: &str) -> Option<MonitorConfig> {
        let path = crate::state::Layout::new(&self.root_dir)
            .container(id)
            .join("monitor.json");
        crate::state::read_json(&path).ok().flatten()
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        crate::state::Layout::new(&self.root_dir).container(id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML (the table format is the caller's).
pub fn print_structured<T: serde::Serialize>(format: Format, value: &T) -> anyhow::Result<()> {
    match format {
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

pub fn name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}

pub fn namespace(p: &Pod) -> &str {
    p.metadata.namespace.as_deref().unwrap_or("default")
}

/// The pod an operator means: `NAME`, `NAMESPACE/NAME`, or the manifest's name without
/// the `-<node>` suffix static pods get; ambiguity is an error listing the candidates.
pub fn find_pod(pods: Vec<Pod>, wanted: &str, ns: Option<&str>) -> anyhow::Result<Pod> {
    let (ns, wanted) = match wanted.split_once('/') {
        Some((n, w)) => (Some(n), w),
        None => (ns, wanted),
    };
    let in_ns: Vec<Pod> = pods
        .into_iter()
        .filter(|p| ns.is_none_or(|n| namespace(p) == n))
        .collect();
    let exact: Vec<&Pod> = in_ns.iter().filter(|p| name(p) == wanted).collect();
    let candidates = if exact.is_empty() {
        let prefix = format!("{wanted}-");
        in_ns
            .iter()
            .filter(|p| name(p).starts_with(&prefix))
            .collect()
    } else {
        exact
    };
    match candidates.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!(
            "pod {wanted:?} not found{}",
            ns.map(|n| format!(" in namespace {n:?}"))
                .unwrap_or_default()
        ),
        many => bail!(
            "pod {wanted:?} is ambiguous: {} (use NAMESPACE/NAME)",
            many.iter()
                .map(|p| format!("{}/{}", namespace(p), name(p)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Every container status of a pod, init containers first.
pub fn statuses(p: &Pod) -> Vec<ContainerStatus> {
    let Some(st) = &p.status else {
        return Vec::new();
    };
    st.init_container_statuses
        .iter()
        .flatten()
        .chain(st.container_statuses.iter().flatten())
        .cloned()
        .collect()
}

/// The container of `pod` named `wanted`, or its first app container (saying so on
/// stderr when there are several, as kubectl does).
pub fn find_container(pod: &Pod, wanted: Option<&str>) -> anyhow::Result<ContainerStatus> {
    let all = statuses(pod);
    if let Some(w) = wanted {
        return all.into_iter().find(|c| c.name == w).with_context(|| {
            format!(
                "container {w:?} not found in pod {:?}; it has: {}",
                name(pod),
                statuses(pod)
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    let app: Vec<ContainerStatus> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let first = app
        .first()
        .cloned()
        .with_context(|| format!("pod {:?} has no containers", name(pod)))?;
    if all.len() > 1 {
        eprintln!(
            "Defaulted container {:?} out of: {}",
            first.name,
            all.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(first)
}

/// The runtime id in a `hostlet://ID` container id.
pub fn runtime_id(c: &ContainerStatus) -> Option<&str> {
    c.container_id
        .as_deref()
        .map(|id| id.strip_prefix("hostlet://").unwrap_or(id))
}

/// kubectl's human durations: 45s, 3m20s, 5h10m, 3d4h, 2y30d.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (m, h) = (s / 60, s / 3600);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        }
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        format!("{}y{}d", h / (24 * 365), (h / 24) % 365)
    } else {
        format!("{}y", h / (24 * 365))
    }
}

/// Time since `t`, in [`human_duration`] form; `<unknown>` without a time.
pub fn age(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    match t {
        Some(t) => {
            let d = jiff::Timestamp::now().duration_since(t.0);
            human_duration(std::time::Duration::try_from(d).unwrap_or_default())
        }
        None => "<unknown>".into(),
    }
}

/// Left-aligned columns separated by three spaces, like kubectl's tables.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            out.push_str(c);
            if i + 1 < n {
                out.push_str(&" ".repeat(w - c.chars().count() + 3));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// A file in the container's directory, if the container still has one.
pub fn read_record(dir: &Path, file: &str) -> Option<serde_json::Value> {
    crate::state::read_json(&dir.join(file)).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_like_kubectl() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (300, "5m"),
            (3600, "60m"),
            (4 * 3600 + 60, "4h1m"),
            (20 * 3600, "20h"),
            (3 * 86400 + 3600, "3d1h"),
            (30 * 86400, "30d"),
            (3 * 365 * 86400, "3y0d"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(s)), want, "{s}");
        }
    }

    fn pod(ns: &str, name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p
    }

    #[test]
    fn finds_pods_by_the_names_operators_type() {
        let pods = vec![
            pod("default", "web-n1"),
            pod("kube-system", "web-n1"),
            pod("default", "db-n1"),
        ];
        assert_eq!(name(&find_pod(pods.clone(), "db", None).unwrap()), "db-n1");
        assert_eq!(
            name(&find_pod(pods.clone(), "db-n1", None).unwrap()),
            "db-n1"
        );
        let e = find_pod(pods.clone(), "web", None).unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("kube-system/web-n1"),
            "{e}"
        );
        let p = find_pod(pods.clone(), "kube-system/web", None).unwrap();
        assert_eq!(namespace(&p), "kube-system");
        let p = find_pod(pods.clone(), "web-n1", Some("default")).unwrap();
        assert_eq!(namespace(&p), "default");
        assert!(find_pod(pods, "nope", None)
            .unwrap_err()
            .to_string()
            .contains("not found"));
    }

    #[test]
    fn tables_align() {
        let t = table(&["NAME", "AGE"], &[vec!["a-long-name".into(), "5s".into()]]);
        assert_eq!(t, "NAME          AGE\na-long-name   5s\n");
    }
}
