//! The JSON a plugin prints (SPEC.md "Success" and "Error" results, versions 0.3.x/0.4.0
//! and 1.0.0) and the cache record of a pod's ADD.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What hostlet reads of an ADD result. The plugin's JSON itself is kept as it came
/// ([`CacheEntry::result`]) and passed on as `prevResult`, so fields hostlet does not
/// know survive the chain.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, `10.87.0.5/16`.
    pub address: String,
    #[serde(default)]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
}

impl AddResult {
    pub fn parse(v: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(v)
    }

    /// The pod's addresses without prefix length, those on an interface inside the
    /// pod's netns first (a 0.4.0/1.0.0 result names it), in result order.
    pub fn pod_ips(&self) -> Vec<String> {
        let in_sandbox = |ip: &IpConfig| {
            ip.interface
                .and_then(|i| self.interfaces.get(i))
                .is_some_and(|i| i.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
        };
        let mut ips: Vec<&IpConfig> = self.ips.iter().collect();
        ips.sort_by_key(|ip| !in_sandbox(ip));
        ips.iter()
            .map(|ip| ip.address.split('/').next().unwrap_or_default().to_string())
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }
}

/// A plugin's error result (SPEC.md "Error").
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PluginError {
    #[serde(default)]
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

/// What hostlet keeps of a pod's network in `--cni-cache-dir`: enough to run CHECK and
/// DEL after a restart, even when the config directory changed meanwhile (libcni
/// caches the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub container_id: String,
    pub if_name: String,
    /// The netns path the ADD was given.
    pub netns: String,
    pub cni_args: String,
    /// The conflist the ADD ran ([`super::config::ConfList::to_json`]).
    pub config: Value,
    /// The runtimeConfig capabilities given (portMappings).
    pub runtime_config: Value,
    /// The last result a plugin of the chain printed (null before the first): what a DEL
    /// after an interrupted ADD passes on.
    pub result: Value,
    /// The whole chain's ADD succeeded: only then is the pod attached.
    #[serde(default)]
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn result_of_1_0_0() {
        let v = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "hostlet0", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "veth1", "mac": "aa:bb:cc:dd:ee:00"},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:01", "sandbox": "/run/netns/x"}
            ],
            "ips": [{"interface": 2, "address": "10.87.0.5/16", "gateway": "10.87.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let r = AddResult::parse(&v).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.pod_ips(), ["10.87.0.5"]);
        assert_eq!(r.ips[0].gateway.as_deref(), Some("10.87.0.1"));
    }

    #[test]
    fn result_of_0_4_0_with_ipv6_and_a_host_address() {
        let v = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "br"}, {"name": "eth0", "sandbox": "/proc/1/ns/net"}],
            "ips": [
                {"version": "4", "address": "192.0.2.1/24", "interface": 0},
                {"version": "6", "address": "fd00::5/64", "interface": 1},
                {"version": "4", "address": "10.1.0.7/24", "interface": 1, "gateway": "10.1.0.1"}
            ]
        });
        let r = AddResult::parse(&v).unwrap();
        assert_eq!(r.pod_ips(), ["fd00::5", "10.1.0.7", "192.0.2.1"]);
    }

    #[test]
    fn result_without_interfaces_and_garbage_addresses() {
        let r = AddResult::parse(&json!({"ips": [{"address": "10.2.0.3/8"}, {"address": "nope"}]}))
            .unwrap();
        assert_eq!(r.pod_ips(), ["10.2.0.3"]);
        assert!(AddResult::parse(&json!({"ips": [{"gateway": "x"}]})).is_err());
        assert_eq!(
            AddResult::parse(&json!({})).unwrap().pod_ips(),
            Vec::<String>::new()
        );
    }
}
