use std::path::Path;

use serde_json::json;

use super::*;

fn list(version: &str) -> ConfList {
    ConfList::parse(
        json!({"cniVersion": version, "name": "net", "plugins": [
            {"type": "bridge", "bridge": "b0"},
            {"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}
        ]})
        .to_string()
        .as_bytes(),
        false,
        Path::new("t"),
    )
    .unwrap()
}

#[test]
fn versions_compare_by_number() {
    assert!(version_at_least("1.0.0", "0.4.0"));
    assert!(version_at_least("0.4.0", "0.4.0"));
    assert!(version_at_least("0.10", "0.4.0"));
    assert!(!version_at_least("0.3.1", "0.4.0"));
    assert!(!version_at_least("", "0.4.0"));
}

#[test]
fn plugin_gets_name_version_prev_result_and_its_capabilities_only() {
    let l = list("1.0.0");
    let rc = json!({"portMappings": [{"hostPort": 80}], "bandwidth": {"x": 1}});
    let prev = json!({"ips": []});
    let c = plugin_conf(&l, &l.plugins[0], None, &rc);
    assert_eq!(
        c,
        json!({"type": "bridge", "bridge": "b0", "name": "net", "cniVersion": "1.0.0"})
    );
    let c = plugin_conf(&l, &l.plugins[1], Some(&prev), &rc);
    assert_eq!(c["prevResult"], prev);
    assert_eq!(
        c["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 80}]}),
        "bandwidth is declared false"
    );
    let c = plugin_conf(
        &l,
        &l.plugins[1],
        Some(&serde_json::Value::Null),
        &json!({}),
    );
    assert!(c.get("prevResult").is_none() && c.get("runtimeConfig").is_none());
}
