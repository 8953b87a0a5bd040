//! The pod sandbox without a pause container: the pod's network, IPC and UTS namespaces
//! are created once and kept alive by bind mounts of their `/proc/<pid>/ns/*` files under
//! the pod directory; every container of the pod joins them by path. Also the pod's
//! `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and its shared `/dev/shm`.
//!
//! unshare(2) must not run in the multi-threaded agent, so [`create`] runs the hidden
//! `hostlet sandbox create DIR` ([`helper_main`]): a short-lived single-threaded process
//! that unshares, sets things up, bind-mounts the namespace files and exits. Removing is
//! plain umount2 + unlink, done by the agent.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox helper for {dir}: {message}")]
    Helper { dir: PathBuf, message: String },
    #[error("spec.hostname {0:?}: must be a DNS-1123 label")]
    Hostname(String),
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Sys { what, source }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where a pod's shared things live, under its pod directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    pub dir: PathBuf,
}

impl PodFiles {
    pub fn new(pod_dir: &Path) -> Self {
        Self {
            dir: pod_dir.to_path_buf(),
        }
    }
    /// Directory of the namespace bind mounts (`net`, `ipc`, `uts`).
    pub fn ns_dir(&self) -> PathBuf {
        self.dir.join("ns")
    }
    pub fn ns(&self, kind: &str) -> PathBuf {
        self.ns_dir().join(kind)
    }
    /// The pod's /dev/shm: one tmpfs every container of the pod mounts.
    pub fn shm(&self) -> PathBuf {
        self.dir.join("shm")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("etc-hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
}

/// Which namespaces the pod gets of its own (the others are the host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shared {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

impl Shared {
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        Self {
            net: !host_network,
            // The kubelet gives hostNetwork pods the host's UTS namespace too.
            uts: !host_network,
            ipc: !spec.host_ipc.unwrap_or(false),
        }
    }
}

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

/// `/etc/hosts` as the kubelet writes it. The pod has no IP of its own (no pod network),
/// so there is no line for the pod's hostname; hostNetwork pods get the host's file.
pub fn hosts_file(pod: &Pod, host_hosts: &str) -> String {
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

/// Writes the pod's /etc files into its pod directory.
pub fn write_etc(pod: &Pod, files: &PodFiles) -> Result<(), SandboxError> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let hosts = hosts_file(pod, &read("/etc/hosts"));
    let resolv = resolv_conf(pod, &read("/etc/resolv.conf"));
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

/// True when every namespace the pod needs is already held (an agent restarted while
/// the pod ran): the sandbox is reused, not made again.
pub fn exists(files: &PodFiles, shared: Shared) -> bool {
    let held = |kind: &str| {
        nix::sys::statfs::statfs(&files.ns(kind))
            .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
            .unwrap_or(false)
    };
    (!shared.net || held("net")) && (!shared.ipc || held("ipc")) && (!shared.uts || held("uts"))
}

/// Creates the pod's namespaces through the helper process `exe sandbox create`.
pub fn create(
    exe: &Path,
    files: &PodFiles,
    shared: Shared,
    hostname: &str,
) -> Result<(), SandboxError> {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("sandbox").arg("create").arg(&files.dir);
    cmd.arg("--hostname").arg(hostname);
    for (on, flag) in [
        (shared.net, "--net"),
        (shared.ipc, "--ipc"),
        (shared.uts, "--uts"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    let out = cmd.output().map_err(io(exe))?;
    if !out.status.success() {
        return Err(SandboxError::Helper {
            dir: files.dir.clone(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The helper: runs single-threaded in its own process; returns the exit code.
pub fn helper_main(dir: &Path, hostname: &str, shared: Shared) -> i32 {
    match helper(dir, hostname, shared) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hostlet sandbox: {e}");
            1
        }
    }
}

fn helper(dir: &Path, hostname: &str, shared: Shared) -> Result<(), SandboxError> {
    use nix::sched::CloneFlags;
    let files = PodFiles::new(dir);
    let ns_dir = files.ns_dir();
    std::fs::create_dir_all(&ns_dir).map_err(io(&ns_dir))?;
    // A private mount of its own, as `ip netns` does: the namespace mounts below must not
    // propagate into other mount namespaces, which would keep them alive after removal.
    mount(
        Some(&ns_dir),
        &ns_dir,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys(format!("bind-mounting {}", ns_dir.display())))?;
    mount(
        None::<&str>,
        &ns_dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys(format!("making {} private", ns_dir.display())))?;

    if shared.ipc {
        // containerd's sandbox /dev/shm: shared by the pod's containers, 64 MiB.
        let shm = files.shm();
        std::fs::create_dir_all(&shm).map_err(io(&shm))?;
        mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )
        .map_err(sys(format!("mounting tmpfs on {}", shm.display())))?;
    }

    let mut flags = CloneFlags::empty();
    for (on, f) in [
        (shared.net, CloneFlags::CLONE_NEWNET),
        (shared.ipc, CloneFlags::CLONE_NEWIPC),
        (shared.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if on {
            flags |= f;
        }
    }
    nix::sched::unshare(flags).map_err(sys("unshare"))?;
    if shared.net {
        loopback_up().map_err(sys("bringing lo up"))?;
    }
    if shared.uts {
        nix::unistd::sethostname(hostname).map_err(sys("sethostname"))?;
    }
    for (on, kind) in [
        (shared.net, "net"),
        (shared.ipc, "ipc"),
        (shared.uts, "uts"),
    ] {
        if !on {
            continue;
        }
        let target = files.ns(kind);
        std::fs::File::create(&target).map_err(io(&target))?;
        let source = format!("/proc/self/ns/{kind}");
        mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!(
            "bind-mounting {source} on {}",
            target.display()
        )))?;
    }
    Ok(())
}

/// A new network namespace has `lo` down; pods expect 127.0.0.1 to work.
fn loopback_up() -> Result<(), nix::Error> {
    // SAFETY: plain socket(2) call; the fd is owned by `sock` right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass and own.
    unsafe {
        if libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCGIFFLAGS,
            &mut ifr,
        ) < 0
        {
            return Err(nix::Error::last());
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCSIFFLAGS,
            &ifr,
        ) < 0
        {
            return Err(nix::Error::last());
        }
    }
    Ok(())
}

/// Releases the pod's namespaces and /dev/shm. Safe to call when nothing was created.
pub fn remove(files: &PodFiles) {
    for kind in ["net", "ipc", "uts"] {
        let p = files.ns(kind);
        if p.exists() {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
            if let Err(e) = std::fs::remove_file(&p) {
                tracing::warn!(path = %p.display(), error = %e, "removing namespace file");
            }
        }
    }
    for p in [files.ns_dir(), files.shm()] {
        if p.exists() {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
        }
    }
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
}
