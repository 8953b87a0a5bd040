//! Why attaching or detaching a pod network failed.

use std::path::PathBuf;

/// A CNI config, plugin, cache or hostPort failure, naming the file or plugin.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cni config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("cni plugin {plugin:?} not found in {search}")]
    PluginMissing { plugin: String, search: String },
    #[error(
        "network is not ready: cni plugins of network {network:?} not found in {search}: {missing}"
    )]
    NotReady {
        network: String,
        missing: String,
        search: String,
    },
    #[error("cni plugin {plugin} {command}: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error("{add}; undoing it failed too: {del}")]
    Rollback {
        add: Box<NetworkError>,
        del: Box<NetworkError>,
    },
    #[error("{port} is already used by pod {pod}")]
    HostPortInUse { port: String, pod: String },
    #[error("cni cache: {0}")]
    Cache(#[from] crate::state::StateError),
}
