//! The runtime side against fake plugins: shell scripts that log their command, env and
//! stdin, print a result naming themselves, and fail when a marker file says so.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;

const FAKE: &str = r#"#!/bin/sh
d=$(dirname "$0"); me=$(basename "$0")
in=$(cat)
echo "$CNI_COMMAND $me $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_PATH $CNI_ARGS" >> "$d/calls"
printf '%s\n' "$in" >> "$d/stdin"
ls -l /proc/$$/fd | grep -c "cache/locks/$CNI_CONTAINERID" >> "$d/locked"
if [ -e "$d/fail-$CNI_COMMAND-$me" ]; then
  printf '{"code":11,"msg":"%s refused","details":"marker"}' "$me"; exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"10.9.0.7/24","interface":0}]}' "$me" "$CNI_NETNS"
fi
"#;

struct Fixture {
    dir: PathBuf,
    net: Network,
}

impl Fixture {
    fn new(name: &str, plugins: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("hostlet-cni-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "conf", "cache"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        for p in plugins {
            // Written by a child process: a file this test process held open for writing
            // could be inherited by another test's fork and make the exec fail (ETXTBSY).
            let path = dir.join("bin").join(p);
            let st = std::process::Command::new("sh")
                .arg("-c")
                .arg("cat > \"$1\" && chmod 755 \"$1\"")
                .arg("sh")
                .arg(&path)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(FAKE.as_bytes())?;
                    c.wait()
                })
                .unwrap();
            assert!(st.success());
        }
        let net = Network::new(Options {
            conf_dir: dir.join("conf"),
            bin_dirs: vec![dir.join("nobin"), dir.join("bin")],
            cache_dir: dir.join("cache"),
            pod_cidr: "10.9.0.0/24".into(),
            resolv_conf: PathBuf::new(),
        });
        Self { dir, net }
    }

    fn conflist(&self, version: &str, types: &[&str]) {
        let plugins: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        let text = json!({"cniVersion": version, "name": "fake", "plugins": plugins});
        std::fs::write(self.dir.join("conf/10-fake.conflist"), text.to_string()).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("bin/calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn stdins(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("bin/stdin"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.dir.join("bin/calls"));
        let _ = std::fs::remove_file(self.dir.join("bin/stdin"));
    }

    fn fail(&self, cmd: &str, plugin: &str) {
        std::fs::write(self.dir.join(format!("bin/fail-{cmd}-{plugin}")), "").unwrap();
    }

    fn cache_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "locks")
            .collect();
        v.sort();
        v
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pod(extra: &str) -> Pod {
    serde_yaml::from_str(&format!(
        "metadata: {{name: web-n, namespace: default, uid: u1}}\nspec:\n  containers:\n  - name: c\n{extra}"
    ))
    .unwrap()
}

const NETNS: &str = "/r/pods/u1/ns/net";

#[test]
fn add_runs_the_chain_in_order_with_prev_result_and_caches_it() {
    let f = Fixture::new("add", &["fa", "fb"]);
    f.conflist("1.0.0", &["fa", "fb"]);
    let p = pod("    ports: [{containerPort: 80, hostPort: 8080}]\n");
    let net = f.net.setup(&p, "u1", Path::new(NETNS), true).unwrap();
    assert_eq!(net.ips, ["10.9.0.7"]);
    assert_eq!(f.calls(), ["ADD fa", "ADD fb"]);
    let locked = std::fs::read_to_string(f.dir.join("bin/locked")).unwrap();
    assert_eq!(locked, "1\n1\n", "each plugin holds the pod's network lock");
    let line = std::fs::read_to_string(f.dir.join("bin/calls")).unwrap();
    let bin = f.dir.join("bin");
    let want = format!(
        "ADD fa u1 {NETNS} eth0 {}:{} IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-n;K8S_POD_INFRA_CONTAINER_ID=u1;K8S_POD_UID=u1",
        f.dir.join("nobin").display(),
        bin.display()
    );
    assert_eq!(line.lines().next().unwrap(), want);
    let stdin = f.stdins();
    assert_eq!(stdin[0]["name"], "fake");
    assert_eq!(stdin[0]["cniVersion"], "1.0.0");
    assert!(stdin[0].get("prevResult").is_none());
    assert_eq!(stdin[1]["prevResult"]["interfaces"][0]["name"], "fa");
    assert!(
        stdin[1].get("runtimeConfig").is_none(),
        "fb has no portMappings capability"
    );
    assert_eq!(f.cache_files(), ["u1-eth0.json"]);
    let cached: CacheEntry =
        serde_json::from_slice(&std::fs::read(f.dir.join("cache/u1-eth0.json")).unwrap()).unwrap();
    assert_eq!(cached.result["interfaces"][0]["name"], "fb");
    assert_eq!(cached.runtime_config["portMappings"][0]["hostPort"], 8080);

    // DEL after a "restart": a new Network with the same cache dir, and the conf dir
    // changed meanwhile; the cached list is what is deleted, in reverse order.
    f.conflist("1.0.0", &["fc"]);
    f.clear_log();
    let again = Network::new(f.net.opts.clone());
    again.teardown("u1").unwrap();
    assert_eq!(f.calls(), ["DEL fb", "DEL fa"]);
    for s in f.stdins() {
        assert_eq!(s["prevResult"]["interfaces"][0]["name"], "fb");
    }
    assert!(f.cache_files().is_empty());
    f.clear_log();
    again.teardown("u1").unwrap();
    assert!(f.calls().is_empty(), "nothing cached, nothing to delete");
}

#[test]
fn failed_add_is_rolled_back_in_reverse_and_leaves_no_cache() {
    let f = Fixture::new("rollback", &["fa", "fb", "fc"]);
    f.conflist("1.0.0", &["fa", "fb", "fc"]);
    f.fail("ADD", "fb");
    let e = f
        .net
        .setup(&pod(""), "u1", Path::new(NETNS), true)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "cni plugin fb ADD: fb refused: marker (code 11)");
    assert_eq!(
        f.calls(),
        ["ADD fa", "ADD fb", "DEL fb", "DEL fa"],
        "fc never ran"
    );
    let stdin = f.stdins();
    assert_eq!(stdin[2]["prevResult"]["interfaces"][0]["name"], "fa");
    assert!(f.cache_files().is_empty());
}

#[test]
fn failed_rollback_keeps_the_cache_for_a_later_delete() {
    let f = Fixture::new("rollback-fails", &["fa", "fb"]);
    f.conflist("1.0.0", &["fa", "fb"]);
    f.fail("ADD", "fb");
    f.fail("DEL", "fa");
    let e = f
        .net
        .setup(&pod(""), "u1", Path::new(NETNS), true)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("undoing it failed too: cni plugin fa DEL"),
        "{e}"
    );
    assert_eq!(f.cache_files(), ["u1-eth0.json"]);
    // Not attached: an agent adopting the pod deletes and attaches again.
    std::fs::remove_file(f.dir.join("bin/fail-ADD-fb")).unwrap();
    std::fs::remove_file(f.dir.join("bin/fail-DEL-fa")).unwrap();
    f.clear_log();
    f.net
        .setup(&pod(""), "u1", Path::new(NETNS), false)
        .unwrap();
    assert_eq!(f.calls(), ["DEL fb", "DEL fa", "ADD fa", "ADD fb"]);
    for s in &f.stdins()[..2] {
        assert_eq!(
            s["prevResult"]["interfaces"][0]["name"], "fa",
            "the last result the interrupted chain printed"
        );
    }
    f.clear_log();
    f.net.teardown("u1").unwrap();
    assert_eq!(f.calls(), ["DEL fb", "DEL fa"]);
    assert!(f.cache_files().is_empty());
}

#[test]
fn adoption_checks_and_a_fresh_netns_replaces_a_stale_entry() {
    let f = Fixture::new("adopt", &["fa"]);
    f.conflist("0.4.0", &["fa"]);
    f.net.setup(&pod(""), "u1", Path::new(NETNS), true).unwrap();
    f.clear_log();
    let net = f
        .net
        .setup(&pod(""), "u1", Path::new(NETNS), false)
        .unwrap();
    assert_eq!(net.ips, ["10.9.0.7"]);
    assert_eq!(f.calls(), ["CHECK fa"]);
    assert_eq!(f.stdins()[0]["prevResult"]["interfaces"][0]["name"], "fa");

    // A failed CHECK is reported; the running pod keeps its address.
    f.fail("CHECK", "fa");
    f.clear_log();
    let net = f
        .net
        .setup(&pod(""), "u1", Path::new(NETNS), false)
        .unwrap();
    assert_eq!(f.calls(), ["CHECK fa"]);
    assert_eq!(net.ips, ["10.9.0.7"]);

    // A new netns (reboot, or the agent died before the pod ran): DEL the old, ADD.
    f.clear_log();
    f.net.setup(&pod(""), "u1", Path::new(NETNS), true).unwrap();
    assert_eq!(f.calls(), ["DEL fa", "ADD fa"]);
}

#[test]
fn no_check_below_0_4_0_and_no_prev_result_on_its_del() {
    let f = Fixture::new("v031", &["fa"]);
    f.conflist("0.3.1", &["fa"]);
    f.net.setup(&pod(""), "u1", Path::new(NETNS), true).unwrap();
    f.clear_log();
    f.net
        .setup(&pod(""), "u1", Path::new(NETNS), false)
        .unwrap();
    assert!(f.calls().is_empty(), "{:?}", f.calls());
    f.net.teardown("u1").unwrap();
    assert_eq!(f.calls(), ["DEL fa"]);
    assert!(f.stdins()[0].get("prevResult").is_none());
}

#[test]
fn a_single_conf_and_the_built_in_default() {
    let f = Fixture::new("single", &["bridge", "portmap"]);
    let list = f.net.conflist().unwrap();
    assert_eq!(list.source, None);
    assert_eq!(
        list.plugin_types().collect::<Vec<_>>(),
        ["bridge", "portmap"],
        "no firewall plugin in the bin dirs"
    );
    assert_eq!(
        list.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
        "10.9.0.0/24"
    );
    std::fs::write(
        f.dir.join("conf/99.conf"),
        r#"{"cniVersion":"1.0.0","name":"one","type":"portmap"}"#,
    )
    .unwrap();
    let list = f.net.conflist().unwrap();
    assert_eq!(list.name, "one");
    f.net.setup(&pod(""), "u1", Path::new(NETNS), true).unwrap();
    assert_eq!(f.calls(), ["ADD portmap"]);
    assert_eq!(f.stdins()[0]["type"], "portmap");
}

#[test]
fn missing_plugin_and_taken_host_port_are_clear_errors() {
    let f = Fixture::new("missing", &["fa"]);
    f.conflist("1.0.0", &["fa", "nope"]);
    let e = f
        .net
        .setup(&pod(""), "u1", Path::new(NETNS), true)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cni plugin \"nope\" not found in "), "{e}");
    assert_eq!(f.calls(), ["ADD fa", "DEL fa"], "nope never ran");
    assert!(f.cache_files().is_empty());

    f.conflist("1.0.0", &["fa"]);
    let ports = "    ports: [{containerPort: 80, hostPort: 8080}]\n";
    f.net
        .setup(&pod(ports), "u1", Path::new(NETNS), true)
        .unwrap();
    let e = f
        .net
        .setup(&pod(ports), "u2", Path::new("/r/pods/u2/ns/net"), true)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "hostPort 8080/TCP is already used by pod web-n");
    f.net.teardown("u1").unwrap();
    f.net
        .setup(&pod(ports), "u2", Path::new("/r/pods/u2/ns/net"), true)
        .unwrap();
}

#[test]
fn container_ids_keep_to_the_spec_alphabet() {
    assert_eq!(container_id("0a1b-c_d.e"), "0a1b-c_d.e");
    assert_eq!(container_id("a/b c"), "a_b_c");
}

#[test]
fn sweep_deletes_only_the_networks_of_gone_pods() {
    let f = Fixture::new("sweep", &["fa"]);
    f.conflist("1.0.0", &["fa"]);
    f.net
        .setup(&pod(""), "live", Path::new(NETNS), true)
        .unwrap();
    f.net
        .setup(&pod(""), "gone", Path::new(NETNS), true)
        .unwrap();
    f.clear_log();
    let again = Network::new(f.net.opts.clone());
    again.sweep(|id| id == "live");
    let calls = std::fs::read_to_string(f.dir.join("bin/calls")).unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(calls.starts_with("DEL fa gone "), "{calls}");
    assert_eq!(f.cache_files(), ["live-eth0.json"]);
    let locks: Vec<_> = std::fs::read_dir(f.dir.join("cache/locks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(locks, ["live"], "a deleted pod's lock goes too");
}

#[test]
fn readiness_names_the_missing_plugins_and_describe_shows_what_add_pipes() {
    let f = Fixture::new("ready", &["fa"]);
    // The built-in default: bridge and host-local are missing.
    let e = f.net.readiness().unwrap_err().to_string();
    assert!(
        e.starts_with("network is not ready: cni plugins of network \"hostlet\" not found in "),
        "{e}"
    );
    assert!(e.ends_with(": bridge, host-local"), "{e}");
    let conf = json!({"cniVersion": "1.0.0", "name": "fake", "plugins": [
        {"type": "fa", "ipam": {"type": "ipam-x"}},
        {"type": "fa", "capabilities": {"portMappings": true}},
    ]});
    std::fs::write(f.dir.join("conf/10-fake.conflist"), conf.to_string()).unwrap();
    let e = f.net.readiness().unwrap_err().to_string();
    assert!(e.ends_with(": ipam-x"), "{e}");
    let d = f
        .net
        .describe(&pod("    ports: [{containerPort: 80, hostPort: 8080}]\n"))
        .unwrap();
    assert_eq!(d["network"], "fake");
    assert_eq!(d["ready"], false);
    assert_eq!(
        d["source"],
        f.dir.join("conf/10-fake.conflist").display().to_string()
    );
    assert_eq!(d["plugins"][0]["name"], "fake");
    assert_eq!(d["plugins"][0].get("runtimeConfig"), None);
    assert_eq!(
        d["plugins"][1]["runtimeConfig"]["portMappings"],
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    );
    std::fs::copy(f.dir.join("bin/fa"), f.dir.join("bin/ipam-x")).unwrap();
    assert_eq!(f.net.readiness().unwrap().name, "fake");
    assert_eq!(f.net.describe(&pod("")).unwrap()["notReady"], Value::Null);
    // A config that does not parse: not ready, naming the file.
    std::fs::write(f.dir.join("conf/05-bad.conf"), "{").unwrap();
    let e = f.net.readiness().unwrap_err().to_string();
    assert!(e.contains("05-bad.conf"), "{e}");
}
