//! The pod's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, written as the kubelet
//! writes them, into the pod directory; containers bind-mount them.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use super::files::{io, PodFiles, SandboxError};

const HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The pod's hostname (`GeneratePodHostNameAndDomain`): `spec.hostname` or the pod name,
/// cut to 63 characters without a trailing `-` or `.`.
pub fn hostname(pod: &Pod) -> Result<String, SandboxError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut h = match pod.spec.as_ref().and_then(|s| s.hostname.clone()) {
        Some(h) if !h.is_empty() => {
            let ok = h.len() <= 63
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !h.starts_with('-')
                && !h.ends_with('-');
            if !ok {
                return Err(SandboxError::Hostname(h));
            }
            h
        }
        _ => name,
    };
    if h.len() > 63 {
        h.truncate(63);
        while h.ends_with('-') || h.ends_with('.') {
            h.pop();
        }
    }
    Ok(h)
}

/// `/etc/hosts` as the kubelet writes it before the pod has an IP: no line for the pod's
/// hostname; hostNetwork pods get the host's file.
pub fn hosts_file(pod: &Pod, host_hosts: &str) -> String {
    hosts_file_with_ips(pod, host_hosts, &[])
}

/// `/etc/hosts` with a line `IP<TAB>hostname` per pod IP (`managedHostsFileContent`).
pub fn hosts_file_with_ips(pod: &Pod, host_hosts: &str, pod_ips: &[String]) -> String {
    let mut out = String::new();
    if host_network(pod) {
        out.push_str(HOSTS_HEADER_HOST_NETWORK);
        out.push_str(host_hosts);
    } else {
        out.push_str(HOSTS_HEADER);
        out.push_str("127.0.0.1\tlocalhost\n");
        out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        out.push_str("fe00::0\tip6-localnet\n");
        out.push_str("fe00::0\tip6-mcastprefix\n");
        out.push_str("fe00::1\tip6-allnodes\n");
        out.push_str("fe00::2\tip6-allrouters\n");
        if let Ok(name) = hostname(pod) {
            for ip in pod_ips {
                out.push_str(&format!("{ip}\t{name}\n"));
            }
        }
    }
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// `/etc/resolv.conf`: the host's (dnsPolicy Default, and ClusterFirst's fallback without
/// cluster DNS), or nothing for `None`, then `dnsConfig` appended as the kubelet does.
pub fn resolv_conf(pod: &Pod, host_resolv: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let (mut servers, mut searches, mut options) = if spec.dns_policy.as_deref() == Some("None") {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        parse_resolv(host_resolv)
    };
    if let Some(cfg) = spec.dns_config {
        servers.extend(cfg.nameservers.unwrap_or_default());
        searches.extend(cfg.searches.unwrap_or_default());
        for o in cfg.options.unwrap_or_default() {
            let name = o.name.unwrap_or_default();
            let opt = match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            };
            options.retain(|x: &String| x.split(':').next() != Some(name.as_str()));
            options.push(opt);
        }
    }
    dedup(&mut servers);
    dedup(&mut searches);
    servers.truncate(MAX_NAMESERVERS);
    searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

/// The kubelet's `parseResolvConf`: nameservers, the last `search` line, options.
fn parse_resolv(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.first() {
            Some(&"nameserver") if fields.len() > 1 => servers.push(fields[1].to_string()),
            Some(&"search") => {
                searches = fields[1..]
                    .iter()
                    .filter(|s| **s != ".")
                    .map(|s| s.trim_end_matches('.').to_string())
                    .collect()
            }
            Some(&"options") => {
                for o in &fields[1..] {
                    let name = o.split(':').next().unwrap_or("");
                    options.retain(|x: &String| x.split(':').next() != Some(name));
                    options.push(o.to_string());
                }
            }
            _ => {}
        }
    }
    (servers, searches, options)
}

/// systemd-resolved's list of the upstream servers behind its 127.0.0.53 stub.
pub const RESOLVED_UPSTREAM: &str = "/run/systemd/resolve/resolv.conf";

/// The host resolv.conf a pod's is made from: `--resolv-conf` (empty: none). A pod in
/// its own network namespace cannot reach a nameserver on the host's loopback
/// (systemd-resolved's 127.0.0.53): when the file names only such servers and `upstream`
/// exists, that file is used instead, as the kubelet documents for systemd-resolved.
pub fn host_resolv(path: &Path, own_netns: bool, upstream: &Path) -> String {
    if path.as_os_str().is_empty() {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let (servers, _, _) = parse_resolv(&text);
    let loopback_only = !servers.is_empty()
        && servers.iter().all(|s| {
            s.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
        });
    if own_netns && loopback_only {
        if let Ok(up) = std::fs::read_to_string(upstream) {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::info!(resolv_conf = %path.display(), upstream = %upstream.display(), "the host's nameservers are on loopback, unreachable from a pod's network namespace: pods get the upstream file's")
            });
            return up;
        }
    }
    text
}

/// Writes the pod's /etc files into its pod directory; `resolv` is `--resolv-conf`.
pub fn write_etc(pod: &Pod, files: &PodFiles, resolv: &Path) -> Result<(), SandboxError> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let hosts = hosts_file(pod, &read("/etc/hosts"));
    let host = host_resolv(resolv, !host_network(pod), Path::new(RESOLVED_UPSTREAM));
    let resolv = resolv_conf(pod, &host);
    let name = if host_network(pod) {
        crate::config::default_node_name()
    } else {
        hostname(pod)?
    };
    for (path, text) in [
        (files.hosts(), hosts),
        (files.resolv_conf(), resolv),
        (files.hostname(), format!("{name}\n")),
    ] {
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    Ok(())
}

/// Rewrites the pod's /etc/hosts with its pod IPs, in place: containers that already
/// bind-mount it (an adopted pod) see the new content.
pub fn write_hosts(pod: &Pod, files: &PodFiles, pod_ips: &[String]) -> Result<(), SandboxError> {
    let host = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let path = files.hosts();
    std::fs::write(&path, hosts_file_with_ips(pod, &host, pod_ips)).map_err(io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn hosts_file_like_the_kubelet() {
        let p = pod("metadata: {name: web}\nspec:\n  containers: []\n  hostAliases:\n  - {ip: 10.0.0.1, hostnames: [a, b]}\n");
        let h = hosts_file(&p, "ignored\n");
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(
            h.ends_with("\n# Entries added by HostAliases.\n10.0.0.1\ta\tb\n"),
            "{h}"
        );
        let with_ip = hosts_file_with_ips(&p, "", &["10.87.0.5".into()]);
        assert!(
            with_ip.contains("fe00::2\tip6-allrouters\n10.87.0.5\tweb\n\n# Entries added"),
            "{with_ip}"
        );
        let p = pod("metadata: {name: web}\nspec: {hostNetwork: true, containers: []}\n");
        assert_eq!(
            hosts_file(&p, "127.0.0.1 localhost\n"),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn resolv_conf_with_dns_config() {
        let host = "# c\nnameserver 1.1.1.1\nsearch a.example. b.example\noptions ndots:2 edns0\n";
        let p = pod("metadata: {name: x}\nspec: {containers: []}\n");
        assert_eq!(
            resolv_conf(&p, host),
            "search a.example b.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
        let p = pod("metadata: {name: x}\nspec:\n  containers: []\n  dnsConfig:\n    nameservers: [1.1.1.1, 9.9.9.9]\n    searches: [c.example]\n    options: [{name: ndots, value: '5'}, {name: rotate}]\n");
        assert_eq!(
            resolv_conf(&p, host),
            "search a.example b.example c.example\nnameserver 1.1.1.1\nnameserver 9.9.9.9\noptions edns0 ndots:5 rotate\n"
        );
        let p = pod("metadata: {name: x}\nspec:\n  containers: []\n  dnsPolicy: None\n  dnsConfig: {nameservers: [8.8.8.8]}\n");
        assert_eq!(resolv_conf(&p, host), "nameserver 8.8.8.8\n");
    }

    #[test]
    fn hostnames() {
        let p = pod("metadata: {name: web-node1}\nspec: {containers: []}\n");
        assert_eq!(hostname(&p).unwrap(), "web-node1");
        let p = pod("metadata: {name: web-node1}\nspec: {hostname: db, containers: []}\n");
        assert_eq!(hostname(&p).unwrap(), "db");
        let long = format!("{}-x", "a".repeat(62));
        let p = pod(&format!(
            "metadata: {{name: {long}}}\nspec: {{containers: []}}\n"
        ));
        assert_eq!(hostname(&p).unwrap(), "a".repeat(62));
        let p = pod("metadata: {name: x}\nspec: {hostname: Bad_Name, containers: []}\n");
        assert!(hostname(&p).is_err());
    }

    #[test]
    fn loopback_nameservers_give_way_to_the_upstream_file_in_a_pod_netns() {
        let dir = std::env::temp_dir().join(format!("hostlet-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stub = dir.join("stub.conf");
        let up = dir.join("upstream.conf");
        std::fs::write(&stub, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").unwrap();
        std::fs::write(&up, "nameserver 192.0.2.1\n").unwrap();
        assert_eq!(host_resolv(&stub, true, &up), "nameserver 192.0.2.1\n");
        assert!(
            host_resolv(&stub, false, &up).contains("127.0.0.53"),
            "hostNetwork reaches it"
        );
        assert!(host_resolv(&stub, true, &dir.join("none")).contains("127.0.0.53"));
        std::fs::write(&stub, "nameserver 127.0.0.53\nnameserver 198.51.100.1\n").unwrap();
        assert!(
            host_resolv(&stub, true, &up).contains("198.51.100.1"),
            "one is reachable"
        );
        assert_eq!(
            host_resolv(Path::new(""), true, &up),
            "",
            "--resolv-conf ''"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
