//! hostPort: the pod's `portMappings` for portmap's runtimeConfig, and hostlet's own
//! reservation of them. portmap installs DNAT rules for whatever it is given, so two
//! pods with the same hostPort would both "get" it; hostlet refuses the second one.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::NetworkError;

/// One entry of runtimeConfig.portMappings (CONVENTIONS.md), as containerd sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl PortMapping {
    fn any_ip(&self) -> bool {
        matches!(self.host_ip.as_str(), "" | "0.0.0.0" | "::")
    }

    /// Both would receive the same packets: same port and protocol, and the same host
    /// address or either on every address.
    fn clashes(&self, other: &Self) -> bool {
        self.host_port == other.host_port
            && self.protocol == other.protocol
            && (self.any_ip() || other.any_ip() || self.host_ip == other.host_ip)
    }

    fn describe(&self) -> String {
        let ip = if self.host_ip.is_empty() {
            String::new()
        } else {
            format!(" on {}", self.host_ip)
        };
        format!(
            "hostPort {}/{}{ip}",
            self.host_port,
            self.protocol.to_uppercase()
        )
    }
}

/// The hostPorts of the pod's app containers (the kubelet maps those, not init
/// containers').
pub fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| &s.containers[..])
        .unwrap_or_default();
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|hp| *hp > 0)?;
            Some(PortMapping {
                host_port,
                container_port: p.container_port,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

#[derive(Debug, Default)]
pub struct Reservations {
    /// (pod uid, pod name, mapping).
    held: Mutex<Vec<(String, String, PortMapping)>>,
}

impl Reservations {
    /// Takes all of `mappings` for pod `uid`, or none when another pod holds one.
    pub fn reserve(
        &self,
        uid: &str,
        name: &str,
        mappings: &[PortMapping],
    ) -> Result<(), NetworkError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for m in mappings {
            if let Some((_, other, _)) = held.iter().find(|(u, _, h)| u != uid && h.clashes(m)) {
                return Err(NetworkError::HostPortInUse {
                    port: m.describe(),
                    pod: other.clone(),
                });
            }
        }
        held.retain(|(u, _, _)| u != uid);
        held.extend(
            mappings
                .iter()
                .map(|m| (uid.to_string(), name.to_string(), m.clone())),
        );
        Ok(())
    }

    pub fn release(&self, uid: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(u, _, _)| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ports: &str) -> Pod {
        serde_yaml::from_str(&format!(
            "metadata: {{name: p}}\nspec:\n  initContainers: [{{name: i, ports: [{{containerPort: 1, hostPort: 9}}]}}]\n  containers:\n  - name: c\n    ports: {ports}\n"
        ))
        .unwrap()
    }

    #[test]
    fn mappings_of_app_containers_with_a_host_port() {
        let p = pod("[{containerPort: 80, hostPort: 8080}, {containerPort: 53, hostPort: 5353, protocol: UDP, hostIP: 127.0.0.1}, {containerPort: 9}]");
        let m = port_mappings(&p);
        assert_eq!(m.len(), 2);
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ])
        );
    }

    #[test]
    fn a_second_pod_is_refused_the_same_port() {
        let r = Reservations::default();
        let tcp = port_mappings(&pod("[{containerPort: 80, hostPort: 8080}]"));
        let udp = port_mappings(&pod("[{containerPort: 80, hostPort: 8080, protocol: UDP}]"));
        let lo = port_mappings(&pod(
            "[{containerPort: 80, hostPort: 8081, hostIP: 127.0.0.1}]",
        ));
        let lo2 = port_mappings(&pod(
            "[{containerPort: 80, hostPort: 8081, hostIP: 127.0.0.2}]",
        ));
        let any = port_mappings(&pod("[{containerPort: 80, hostPort: 8081}]"));
        r.reserve("a", "web-a", &tcp).unwrap();
        r.reserve("a", "web-a", &tcp).unwrap();
        let e = r.reserve("b", "web-b", &tcp).unwrap_err().to_string();
        assert_eq!(e, "hostPort 8080/TCP is already used by pod web-a");
        r.reserve("b", "web-b", &udp).unwrap();
        r.reserve("c", "c", &lo).unwrap();
        r.reserve("d", "d", &lo2).unwrap();
        assert!(r.reserve("e", "e", &any).is_err());
        r.release("a");
        r.reserve("e2", "e2", &tcp).unwrap();
    }
}
