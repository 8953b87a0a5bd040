//! Pod networking through CNI: hostlet is the CNI runtime (SPEC.md), as containerd's CRI
//! plugin is for the kubelet. A pod without hostNetwork gets ADD once its sandbox's
//! network namespace exists and before any container starts, CHECK when an agent adopts
//! it, DEL when its sandbox goes. Each ADD's result is cached in `--cni-cache-dir`
//! before and after it runs, so an agent killed at any point still knows what to delete.
//!
//! Sits beside `sandbox`: the worker calls both; this module knows nothing of workers.

mod chain;
pub mod config;
mod error;
mod exec;
mod ports;
mod ready;
mod result;

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

pub use config::{ConfList, DEFAULT_BRIDGE, DEFAULT_POD_CIDR};
pub use error::NetworkError;
pub use exec::{find_plugin, split_paths};
pub use ports::{port_mappings, PortMapping};
pub use ready::binaries;
pub use result::{AddResult, CacheEntry};

/// The interface the pod sees, as with every CRI runtime.
pub const IF_NAME: &str = "eth0";
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin:/usr/lib/cni";
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";

/// The `--cni-*` flags, `--pod-cidr` and `--resolv-conf`.
#[derive(Debug, Clone)]
pub struct Options {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub pod_cidr: String,
    /// `--resolv-conf`: the host file pods' resolv.conf is made from (empty: none).
    pub resolv_conf: PathBuf,
}

/// The CNI runtime of one agent; shared by every pod worker.
#[derive(Debug)]
pub struct Network {
    pub opts: Options,
    ports: ports::Reservations,
    /// Bumped whenever the conf dir or a bin dir may have changed (see [`ready`]).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

/// What a pod's network looks like after [`Network::setup`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodNetwork {
    pub ips: Vec<String>,
}

impl Network {
    pub fn new(opts: Options) -> Self {
        Self {
            opts,
            ports: Default::default(),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Logs the network pods get and warns when it is not ready (pods without
    /// hostNetwork wait then).
    pub fn log_config(&self) {
        if let Ok(list) = self.conflist() {
            tracing::info!(network = %list.name, plugins = ?list.plugin_types().collect::<Vec<_>>(), config = ?list.source, "pod network");
        }
        if let Err(e) = self.readiness() {
            tracing::warn!(error = %e, "pod network not ready: pods without hostNetwork wait for it (Debian: apt-get install containernetworking-plugins)");
        }
    }

    /// The list pods get now when it is usable: it parses and every plugin it runs is
    /// in `--cni-bin-dir`. Blocking (reads the conf dir), but cheap.
    pub fn readiness(&self) -> Result<ConfList, NetworkError> {
        let list = self.conflist()?;
        let missing: Vec<&str> = ready::binaries(&list)
            .into_iter()
            .filter(|p| find_plugin(&self.opts.bin_dirs, p).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(NetworkError::NotReady {
                network: list.name.clone(),
                missing: missing.join(", "),
                search: exec::join_paths(&self.opts.bin_dirs),
            });
        }
        Ok(list)
    }

    /// What pod `pod` would get, for `hostlet render --network`: the list, where it comes
    /// from, whether it is ready, and each plugin's ADD config as its stdin (without the
    /// previous plugin's result, known only once it ran).
    pub fn describe(&self, pod: &Pod) -> Result<Value, NetworkError> {
        let list = self.conflist()?;
        let runtime_config = json!({ "portMappings": port_mappings(pod) });
        let plugins: Vec<Value> = (list.plugins.iter())
            .map(|p| chain::plugin_conf(&list, p, None, &runtime_config))
            .collect();
        let source = list.source.as_ref().map_or_else(
            || format!("built-in (no config in {})", self.opts.conf_dir.display()),
            |p| p.display().to_string(),
        );
        let not_ready = self.readiness().err().map(|e| e.to_string());
        Ok(json!({
            "network": list.name,
            "cniVersion": list.cni_version,
            "source": source,
            "binDirs": self.opts.bin_dirs,
            "ready": not_ready.is_none(),
            "notReady": not_ready,
            "plugins": plugins,
        }))
    }

    /// Changes whenever the conf dir or a bin dir may have changed, while [`Self::watch`]
    /// runs: the moment to ask [`Self::readiness`] again.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Watches the conf dir and the bin dirs for [`Self::changes`]; runs until dropped.
    pub fn watch(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut dirs = vec![self.opts.conf_dir.clone()];
        dirs.extend(self.opts.bin_dirs.iter().cloned());
        ready::watch_dirs(dirs, self.changes.clone())
    }

    /// The list pods get now: the conf dir's first config, or the built-in default.
    pub fn conflist(&self) -> Result<ConfList, NetworkError> {
        match config::find(&self.opts.conf_dir)? {
            Some(c) => Ok(c),
            None => Ok(config::default_conflist(&self.opts.pod_cidr, |p| {
                find_plugin(&self.opts.bin_dirs, p).is_some()
            })),
        }
    }

    /// The pod's network lock: held across its ADD, CHECK or DEL and inherited by the
    /// plugins, so a plugin left running by a killed agent is waited for.
    fn lock(&self, container_id: &str) -> Result<nix::fcntl::Flock<std::fs::File>, NetworkError> {
        let dir = self.opts.cache_dir.join("locks");
        crate::state::create_dir_all(&dir)?;
        let path = dir.join(container_id);
        let file = std::fs::File::create(&path).map_err(|source| NetworkError::Io {
            path: path.clone(),
            source,
        })?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            NetworkError::Io {
                path,
                source: e.into(),
            }
        })
    }

    fn unlock_and_remove(&self, container_id: &str, lock: nix::fcntl::Flock<std::fs::File>) {
        // Unlinked while held: whoever opens the path next makes a new lock.
        let _ = std::fs::remove_file(self.opts.cache_dir.join("locks").join(container_id));
        drop(lock);
    }

    fn cache_path(&self, container_id: &str) -> PathBuf {
        self.opts
            .cache_dir
            .join(format!("{container_id}-{IF_NAME}.json"))
    }

    fn read_cache(&self, container_id: &str) -> Result<Option<CacheEntry>, NetworkError> {
        let path = self.cache_path(container_id);
        match crate::state::read_json::<CacheEntry>(&path) {
            Ok(c) => Ok(c),
            Err(crate::state::StateError::Decode { .. }) => {
                // Torn by a power cut: nothing in it can be deleted by name.
                tracing::warn!(path = %path.display(), "unreadable cni cache entry");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn write_cache(&self, entry: &CacheEntry) -> Result<(), NetworkError> {
        crate::state::create_dir_all(&self.opts.cache_dir)?;
        crate::state::write_json(&self.cache_path(&entry.container_id), entry)?;
        Ok(())
    }

    fn remove_cache(&self, container_id: &str) -> Result<(), NetworkError> {
        let path = self.cache_path(container_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(NetworkError::Io { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Attaches pod `uid` (whose network namespace is `netns`) to the network. `fresh`
    /// says the namespace was just made: a cached entry is then from an earlier one
    /// (the agent was killed, or the host rebooted) and is deleted first. Otherwise an
    /// entry means the pod is adopted: CHECK it and keep its address.
    /// Blocking: runs the plugins.
    pub fn setup(
        &self,
        pod: &Pod,
        uid: &str,
        netns: &Path,
        fresh: bool,
    ) -> Result<PodNetwork, NetworkError> {
        let id = container_id(uid);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mappings = port_mappings(pod);
        self.ports.reserve(uid, &name, &mappings)?;
        let result = self
            .lock(&id)
            .and_then(|lock| self.attach(pod, &id, netns, fresh, &mappings, lock.as_raw_fd()));
        if result.is_err() {
            self.ports.release(uid);
        }
        result
    }

    fn attach(
        &self,
        pod: &Pod,
        id: &str,
        netns: &Path,
        fresh: bool,
        mappings: &[PortMapping],
        fd: RawFd,
    ) -> Result<PodNetwork, NetworkError> {
        if let Some(old) = self.read_cache(id)? {
            if !fresh && old.complete {
                // A failed CHECK is reported, not repaired: attaching again would change
                // the address of a pod that is running, and CHECK itself can be wrong
                // (Debian's portmap 1.1.1 fails it for every IPv4-only pod,
                // containernetworking/plugins#819).
                if let Err(e) = self.check(&old, fd) {
                    tracing::warn!(error = %e, "cni CHECK of an adopted pod failed");
                }
                return pod_network(&old.result);
            }
            self.delete(&old, fd)?;
        }
        let list = self.conflist()?;
        let started = std::time::Instant::now();
        let entry = CacheEntry {
            container_id: id.to_string(),
            if_name: IF_NAME.into(),
            netns: netns.display().to_string(),
            cni_args: cni_args(pod, id),
            config: list.to_json(),
            runtime_config: json!({ "portMappings": mappings }),
            result: Value::Null,
            complete: false,
        };
        // Before the ADD and after each plugin: an agent killed during it leaves a record
        // to DEL by, with the latest result.
        self.write_cache(&entry)?;
        let bin_dirs = self.opts.bin_dirs.clone();
        let inv = invocation(&entry, &bin_dirs, fd);
        let mut progress = |r: &Value| {
            self.write_cache(&CacheEntry {
                result: r.clone(),
                ..entry.clone()
            })
        };
        let result = match chain::add(&list, &inv, &entry.runtime_config, &mut progress) {
            Ok(r) => r,
            Err(e) => {
                if !matches!(e, NetworkError::Rollback { .. }) {
                    self.remove_cache(id)?;
                }
                return Err(e);
            }
        };
        let net = pod_network(&result);
        let entry = CacheEntry {
            result,
            complete: true,
            ..entry
        };
        match net {
            Ok(net) => {
                self.write_cache(&entry)?;
                tracing::info!(network = %list.name, ips = ?net.ips, elapsed_ms = started.elapsed().as_millis() as u64, "pod network attached");
                Ok(net)
            }
            Err(e) => {
                let _ = self.delete(&entry, fd);
                Err(e)
            }
        }
    }

    fn check(&self, entry: &CacheEntry, fd: RawFd) -> Result<(), NetworkError> {
        let list = cached_list(entry)?;
        let inv = invocation(entry, &self.opts.bin_dirs, fd);
        chain::check(&list, &inv, &entry.runtime_config, &entry.result)
    }

    /// DEL with the cached list and result; the entry goes when every plugin agreed.
    fn delete(&self, entry: &CacheEntry, fd: RawFd) -> Result<(), NetworkError> {
        let list = cached_list(entry)?;
        let inv = invocation(entry, &self.opts.bin_dirs, fd);
        let cached = Some(&entry.result).filter(|r| !r.is_null());
        chain::del(&list, &inv, &entry.runtime_config, cached)?;
        self.remove_cache(&entry.container_id)
    }

    /// Whether pod `uid` is attached already (an adopted pod): it then needs no plugin
    /// but for CHECK and DEL.
    pub fn attached(&self, uid: &str) -> bool {
        matches!(self.read_cache(&container_id(uid)), Ok(Some(e)) if e.complete)
    }

    /// Detaches pod `uid`, whatever agent attached it: the cache says what to delete.
    /// Nothing to do when nothing is cached. Blocking.
    pub fn teardown(&self, uid: &str) -> Result<(), NetworkError> {
        let id = container_id(uid);
        // The hostPorts go with the pod even when its DEL failed: the replacement of a
        // pod must not wait for an agent restart (whose sweep retries the DEL).
        self.ports.release(uid);
        self.detach(&id)
    }

    /// DEL of the cached entry of `id`, under its lock.
    fn detach(&self, id: &str) -> Result<(), NetworkError> {
        if !self.cache_path(id).exists() {
            // Never attached (hostNetwork): the entry is written before any plugin runs.
            return Ok(());
        }
        let lock = self.lock(id)?;
        let result = match self.read_cache(id) {
            Ok(Some(entry)) => self.delete(&entry, lock.as_raw_fd()),
            Ok(None) => self.remove_cache(id),
            Err(e) => Err(e),
        };
        if result.is_ok() {
            self.unlock_and_remove(id, lock);
        }
        result
    }
}

impl Network {
    /// DEL of every cached pod that `live` does not know (by container ID): pods removed
    /// while no agent ran, or whose DEL failed before. Blocking.
    pub fn sweep(&self, live: impl Fn(&str) -> bool) {
        let Ok(dir) = std::fs::read_dir(&self.opts.cache_dir) else {
            return;
        };
        let suffix = format!("-{IF_NAME}.json");
        for e in dir.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(&suffix) else {
                continue;
            };
            if live(id) {
                continue;
            }
            match self.detach(id) {
                Ok(()) => tracing::info!(container_id = id, "deleted the network of a gone pod"),
                Err(e) => {
                    tracing::warn!(container_id = id, error = %e, "deleting the network of a gone pod")
                }
            }
        }
    }
}

fn cached_list(entry: &CacheEntry) -> Result<ConfList, NetworkError> {
    let bytes = serde_json::to_vec(&entry.config).unwrap_or_default();
    ConfList::parse(&bytes, false, Path::new("cached config"))
}

fn invocation<'a>(
    entry: &'a CacheEntry,
    bin_dirs: &'a [PathBuf],
    lock_fd: RawFd,
) -> exec::Invocation<'a> {
    exec::Invocation {
        lock_fd: Some(lock_fd),
        container_id: &entry.container_id,
        netns: &entry.netns,
        if_name: &entry.if_name,
        args: &entry.cni_args,
        bin_dirs,
    }
}

fn pod_network(result: &Value) -> Result<PodNetwork, NetworkError> {
    let r = AddResult::parse(result).map_err(|e| NetworkError::Plugin {
        plugin: "chain".into(),
        command: "ADD",
        message: format!("invalid result: {e}"),
    })?;
    Ok(PodNetwork { ips: r.pod_ips() })
}

/// CNI_CONTAINERID: the pod UID, with anything but `[A-Za-z0-9_.-]` (SPEC.md) replaced.
pub fn container_id(uid: &str) -> String {
    uid.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// CNI_ARGS as containerd's CRI plugin passes them.
fn cni_args(pod: &Pod, id: &str) -> String {
    let clean = |s: Option<&str>| s.unwrap_or_default().replace([';', '='], "_");
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={id};K8S_POD_UID={}",
        clean(pod.metadata.namespace.as_deref()),
        clean(pod.metadata.name.as_deref()),
        clean(pod.metadata.uid.as_deref()),
    )
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
