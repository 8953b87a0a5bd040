//! The network configuration in use: the first file of `--cni-conf-dir` in lexical
//! order, as libcni picks it, or hostlet's built-in default when the directory holds
//! none.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::NetworkError;

/// The default `--pod-cidr`. None of the defaults of podman (10.88.0.0/16, and the pool
/// of its created networks from 10.89.0.0 up), Docker (172.17.0.0/16 and its pools in
/// 172.16/12 and 192.168/16), CRI-O (10.85.0.0/16), k3s (10.42.0.0/16, services
/// 10.43.0.0/16), flannel (10.244.0.0/16), calico (192.168.0.0/16) or the usual
/// service range (10.96.0.0/12), so hostlet runs beside any of them.
pub const DEFAULT_POD_CIDR: &str = "10.87.0.0/16";
/// The bridge of the built-in network: hostlet's own, not podman's `cni-podman0` or
/// Docker's `docker0`.
pub const DEFAULT_BRIDGE: &str = "hostlet0";
pub const DEFAULT_NETWORK_NAME: &str = "hostlet";

/// A network configuration list (SPEC.md "Configuration format"), a single `.conf`
/// turned into a list of one.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    /// Each plugin's configuration object as written (`type` and its own keys).
    pub plugins: Vec<Value>,
    /// Where it was read from; None for the built-in default.
    pub source: Option<PathBuf>,
}

impl ConfList {
    /// Parses a `.conflist`, or with `single` a `.conf`/`.json` plugin configuration.
    pub fn parse(bytes: &[u8], single: bool, path: &Path) -> Result<Self, NetworkError> {
        let invalid = |message: String| NetworkError::Config {
            path: path.to_path_buf(),
            message,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("not a JSON object".into()))?;
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let name = text("name").ok_or_else(|| invalid("no \"name\"".into()))?;
        let cni_version = text("cniVersion").unwrap_or_else(|| "0.2.0".into());
        let plugins = if single {
            // libcni's ConfListFromConf: the whole object is the one plugin.
            vec![v.clone()]
        } else {
            obj.get("plugins")
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| invalid("no \"plugins\" list".into()))?
        };
        if plugins.is_empty() {
            return Err(invalid("no plugins".into()));
        }
        for (i, p) in plugins.iter().enumerate() {
            if p.get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(invalid(format!("plugins[{i}] has no \"type\"")));
            }
        }
        Ok(Self {
            name,
            cni_version,
            disable_check: obj
                .get("disableCheck")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            plugins,
            source: Some(path.to_path_buf()),
        })
    }

    pub fn plugin_types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
    }

    /// As the cache stores it, so a DEL after a restart uses the list the ADD used.
    pub fn to_json(&self) -> Value {
        json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins,
        })
    }
}

/// The first `*.conflist`, `*.conf` or `*.json` of `dir` in lexical order; None when
/// there is none (or no directory).
pub fn find(dir: &Path) -> Result<Option<ConfList>, NetworkError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(NetworkError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            ) && p.is_file()
        })
        .collect();
    files.sort();
    let Some(path) = files.into_iter().next() else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).map_err(|source| NetworkError::Io {
        path: path.clone(),
        source,
    })?;
    let single = path.extension().and_then(|e| e.to_str()) != Some("conflist");
    ConfList::parse(&bytes, single, &path).map(Some)
}

/// hostlet's network when `--cni-conf-dir` holds no config: a bridge of its own that
/// is the pods' gateway and masquerades their traffic, host-local addresses from
/// `pod_cidr`, then `portmap` (hostPort) and `firewall` when those plugins are there.
pub fn default_conflist(pod_cidr: &str, has_plugin: impl Fn(&str) -> bool) -> ConfList {
    let mut plugins = vec![json!({
        "type": "bridge",
        "bridge": DEFAULT_BRIDGE,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": pod_cidr}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    })];
    if has_plugin("portmap") {
        plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    }
    if has_plugin("firewall") {
        plugins.push(json!({"type": "firewall"}));
    }
    ConfList {
        name: DEFAULT_NETWORK_NAME.into(),
        cni_version: "1.0.0".into(),
        disable_check: false,
        plugins,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hostlet-cni-cfg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn first_config_in_lexical_order_wins() {
        let d = tmp("order");
        std::fs::write(d.join("README"), "not a config").unwrap();
        std::fs::write(
            d.join("20-b.conflist"),
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(
            d.join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"a","type":"ptp","ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        let c = find(&d).unwrap().unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.cni_version, "0.4.0");
        assert_eq!(c.plugin_types().collect::<Vec<_>>(), ["ptp"]);
        assert_eq!(c.plugins[0]["ipam"]["type"], "host-local");

        std::fs::remove_file(d.join("10-a.conf")).unwrap();
        let c = find(&d).unwrap().unwrap();
        assert_eq!((c.name.as_str(), c.cni_version.as_str()), ("b", "1.0.0"));
        assert_eq!(c.source, Some(d.join("20-b.conflist")));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn no_directory_or_no_config_is_none() {
        assert_eq!(find(Path::new("/nonexistent/hostlet/cni")).unwrap(), None);
        let d = tmp("empty");
        std::fs::write(d.join("x.txt"), "{}").unwrap();
        assert_eq!(find(&d).unwrap(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn invalid_configs_name_the_file_and_the_fault() {
        let p = Path::new("/etc/cni/net.d/x.conflist");
        for (text, want) in [
            ("{", "x.conflist"),
            (r#"{"plugins":[{"type":"bridge"}]}"#, "no \"name\""),
            (r#"{"name":"n"}"#, "no \"plugins\" list"),
            (r#"{"name":"n","plugins":[]}"#, "no plugins"),
            (
                r#"{"name":"n","plugins":[{"x":1}]}"#,
                "plugins[0] has no \"type\"",
            ),
        ] {
            let e = ConfList::parse(text.as_bytes(), false, p).unwrap_err();
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn default_network_uses_the_plugins_that_are_there() {
        let all = default_conflist("10.87.0.0/16", |_| true);
        assert_eq!(
            all.plugin_types().collect::<Vec<_>>(),
            ["bridge", "portmap", "firewall"]
        );
        assert_eq!(all.plugins[0]["bridge"], DEFAULT_BRIDGE);
        assert_eq!(
            all.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            "10.87.0.0/16"
        );
        assert_eq!(all.plugins[1]["capabilities"]["portMappings"], true);
        let bare = default_conflist("10.87.0.0/16", |p| p == "bridge");
        assert_eq!(bare.plugin_types().collect::<Vec<_>>(), ["bridge"]);
        let back = ConfList::parse(
            all.to_json().to_string().as_bytes(),
            false,
            Path::new("cache"),
        )
        .unwrap();
        assert_eq!(back.plugins, all.plugins);
    }
}
