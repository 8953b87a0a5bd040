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
    _lock: fs::File,
}

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
        let net = TestNet {
            conf_dir: base.join("net.d"),
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
        fs::write(net.conf_dir.join("10-test.conflist"), conf.to_string()).expect("write conflist");
        net
    }

    /// `hostlet run` flags that put the agent's pods on this network.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--cni-conf-dir".into(),
            self.conf_dir.display().to_string(),
            "--cni-bin-dir".into(),
            "/usr/lib/cni".into(),
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
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if std::env::var_os("HOSTLET_TEST_KEEP").is_none() {
            self.remove_leftovers();
        }
    }
}
