//! A pod network of the test's own: a CNI config (Debian's real plugins: bridge +
//! host-local, portmap, firewall) with a bridge name, network name and /24 that no other
//! test running at the same time uses, so pods only ever talk to this test's bridge and
//! netns, and never to a host network such as podman's (whose config may sit in
//! /etc/cni/net.d). The slot is held by a flock, which dies with the test process.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const SLOTS: &str = "/run/hostlet-test-net";

pub struct TestNet {
    pub slot: u32,
    /// Network name, also host-local's store directory name.
    pub name: String,
    pub bridge: String,
    /// `10.86.<slot>.0/24`; the bridge (gateway) is `.1`.
    pub subnet: String,
    pub gateway: String,
    pub conf_dir: PathBuf,
    /// The agent's `--cni-bin-dir`: links to Debian's plugins in /usr/lib/cni, so a test
    /// can take them away and bring them back.
    pub bin_dir: PathBuf,
    conf: String,
    _lock: fs::File,
}

const PLUGINS: &str = "/usr/lib/cni";

impl TestNet {
    pub fn new(base: &Path) -> TestNet {
        fs::create_dir_all(SLOTS).expect("create test network slot dir");
        let start = std::process::id() % 250;
        let (slot, lock) = (0..250)
            .map(|i| (start + i) % 250 + 1)
            .find_map(|slot| {
                let f = fs::File::create(format!("{SLOTS}/{slot}.lock")).ok()?;
                // SAFETY: flock on a descriptor this File owns.
                let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                (r == 0).then_some((slot, f))
            })
            .expect("a free test network slot");
        let name = format!("hostlet-test-{slot}");
        let bridge = format!("hlt{slot}");
        let subnet = format!("10.86.{slot}.0/24");
        let gateway = format!("10.86.{slot}.1");
        let mut net = TestNet {
            conf_dir: base.join("net.d"),
            bin_dir: base.join("cni-bin"),
            conf: String::new(),
            slot,
            name,
            bridge,
            subnet,
            gateway,
            _lock: lock,
        };
        // Whatever a killed earlier holder of the slot left.
        net.remove_leftovers();
        fs::create_dir_all(&net.conf_dir).expect("create net.d");
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": net.name,
            "plugins": [
                {"type": "bridge", "bridge": net.bridge, "isGateway": true, "ipMasq": true,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": net.subnet}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall"}
            ]
        });
        net.conf = conf.to_string();
        net.write_conf();
        net.link_plugins();
        net
    }

    /// Writes the test's conflist into the conf dir (atomically: a rename).
    pub fn write_conf(&self) {
        let tmp = self.conf_dir.join(".10-test.tmp");
        fs::write(&tmp, &self.conf).expect("write conflist");
        fs::rename(&tmp, self.conf_dir.join("10-test.conflist")).expect("rename conflist");
    }

    pub fn remove_conf(&self) {
        fs::remove_file(self.conf_dir.join("10-test.conflist")).expect("remove conflist");
    }

    /// Links every plugin of /usr/lib/cni into the bin dir.
    pub fn link_plugins(&self) {
        fs::create_dir_all(&self.bin_dir).expect("create cni bin dir");
        for e in fs::read_dir(PLUGINS).expect("read /usr/lib/cni").flatten() {
            let to = self.bin_dir.join(e.file_name());
            if !to.exists() {
                std::os::unix::fs::symlink(e.path(), to).expect("link a cni plugin");
            }
        }
    }

    /// Empties the bin dir.
    pub fn unlink_plugins(&self) {
        for e in fs::read_dir(&self.bin_dir)
            .expect("read cni bin dir")
            .flatten()
        {
            fs::remove_file(e.path()).expect("unlink a cni plugin");
        }
    }

    /// `hostlet run` flags that put the agent's pods on this network.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cni-conf-dir".into(),
            self.conf_dir.display().to_string(),
            "--cni-bin-dir".into(),
            self.bin_dir.display().to_string(),
        ]
    }

    /// host-local's store of this network.
    pub fn ipam_dir(&self) -> PathBuf {
        Path::new("/var/lib/cni/networks").join(&self.name)
    }

    /// Addresses host-local holds for this network (its files named by IP).
    pub fn allocated_ips(&self) -> Vec<String> {
        fs::read_dir(self.ipam_dir())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Links enslaved to this network's bridge (the pods' host-side veths).
    pub fn bridge_ports(&self) -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|s| s.split('@').next().unwrap_or(s).to_string())
            .collect()
    }

    fn remove_leftovers(&self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = fs::remove_dir_all(self.ipam_dir());
        self.remove_rules();
    }

    /// iptables rules of this network (its name in their comment, or its subnet) that a
    /// pod left behind, e.g. one a test left running: deleted through iptables-restore,
    /// the per-pod chains flushed and removed. Tests assert their own cleanup before.
    fn remove_rules(&self) {
        let Ok(out) = std::process::Command::new("iptables-save").output() else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let own = format!("10.86.{}.", self.slot);
        let name = format!("\\\"{}\\\"", self.name);
        let mut script = String::new();
        let mut table = "";
        let (mut dels, mut chains) = (Vec::new(), Vec::new());
        let flush =
            |script: &mut String, table: &str, dels: &mut Vec<String>, chains: &mut Vec<String>| {
                if !dels.is_empty() {
                    script.push_str(&format!("*{table}\n"));
                    for d in dels.drain(..) {
                        script.push_str(&d);
                        script.push('\n');
                    }
                    for c in chains.iter() {
                        script.push_str(&format!("-F {c}\n-X {c}\n"));
                    }
                    script.push_str("COMMIT\n");
                }
                chains.clear();
            };
        for line in text.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t;
            } else if line == "COMMIT" {
                flush(&mut script, table, &mut dels, &mut chains);
            } else if let Some(rule) = line.strip_prefix("-A ") {
                if line.contains(&own) || line.contains(&name) {
                    let chain = rule.split(' ').next().unwrap_or_default().to_string();
                    let per_pod = chain.starts_with("CNI-")
                        && !matches!(chain.as_str(), "CNI-FORWARD" | "CNI-ADMIN")
                        && !chain.starts_with("CNI-HOSTPORT-");
                    if per_pod && !chains.contains(&chain) {
                        chains.push(chain);
                    }
                    dels.push(format!("-D {rule}"));
                }
            }
        }
        if script.is_empty() {
            return;
        }
        // Rules inside a per-pod chain go with its flush; deleting them first is harmless.
        let mut child = match std::process::Command::new("iptables-restore")
            .args(["--noflush", "--wait"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(_) => return,
        };
        if let Some(mut i) = child.stdin.take() {
            use std::io::Write;
            let _ = i.write_all(script.as_bytes());
        }
        let _ = child.wait();
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if std::env::var_os("HOSTLET_TEST_KEEP").is_none() {
            self.remove_leftovers();
        }
    }
}
