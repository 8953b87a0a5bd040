//! Running one plugin binary as SPEC.md "Execution protocol" says: parameters in
//! `CNI_*` environment variables, the network configuration on stdin, the result or
//! error as JSON on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::result::PluginError;
use super::NetworkError;

/// Plugins run iptables and ip themselves (bridge's ipMasq, portmap, firewall): they
/// need a PATH, but nothing else of the agent's environment.
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Check,
    Del,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Check => "CHECK",
            Self::Del => "DEL",
        }
    }
}

/// The per-invocation parameters of SPEC.md "Parameters".
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub if_name: &'a str,
    pub args: &'a str,
    /// `--cni-bin-dir`'s directories, also given to the plugin as CNI_PATH (for its
    /// delegated IPAM plugin).
    pub bin_dirs: &'a [PathBuf],
    /// The pod's network lock (flock), passed on to the plugin.
    pub lock_fd: Option<std::os::fd::RawFd>,
}

/// The first `bin_dirs` entry holding an executable `name`.
pub fn find_plugin(bin_dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') || name.is_empty() {
        return None;
    }
    bin_dirs.iter().map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs plugin `kind` with `cmd` and the config `conf`; the parsed stdout on success
/// (`Value::Null` when a DEL or CHECK prints nothing).
pub fn run(kind: &str, cmd: Op, inv: &Invocation<'_>, conf: &Value) -> Result<Value, NetworkError> {
    let plugin = |message: String| NetworkError::Plugin {
        plugin: kind.to_string(),
        command: cmd.as_str(),
        message,
    };
    let bin = find_plugin(inv.bin_dirs, kind).ok_or_else(|| NetworkError::PluginMissing {
        plugin: kind.to_string(),
        search: join_paths(inv.bin_dirs),
    })?;
    let stdin = serde_json::to_vec(conf).map_err(|e| plugin(e.to_string()))?;
    let started = std::time::Instant::now();
    let mut command = Command::new(&bin);
    if let Some(fd) = inv.lock_fd {
        // A plugin that outlives an agent killed mid-ADD or mid-DEL holds the pod's
        // network lock until it is done, so the next agent's DEL waits for it instead of
        // racing it (a DEL killed half-way can leave what a second DEL no longer finds,
        // such as bridge's ipMasq rules).
        crate::lock_fd::inherit(&mut command, fd);
    }
    let mut child = command
        .env_clear()
        .env("PATH", PLUGIN_PATH)
        .env("CNI_COMMAND", cmd.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.if_name)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", join_paths(inv.bin_dirs))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetworkError::Io {
            path: bin.clone(),
            source,
        })?;
    if let Some(mut i) = child.stdin.take() {
        // A plugin that exits without reading its stdin is judged by its exit status.
        let _ = i.write_all(&stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|source| NetworkError::Io {
            path: bin.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    tracing::debug!(
        plugin = kind,
        command = cmd.as_str(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = out.status.success(),
        "cni plugin ran"
    );
    if !out.status.success() {
        let message = match serde_json::from_str::<PluginError>(&stdout) {
            Ok(e) if !e.msg.is_empty() => match e.details.as_str() {
                "" => format!("{} (code {})", e.msg, e.code),
                d => format!("{}: {d} (code {})", e.msg, e.code),
            },
            _ => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                format!("{}: {}{}", out.status, stdout.trim(), stderr.trim())
            }
        };
        return Err(plugin(message));
    }
    if stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&stdout).map_err(|e| plugin(format!("invalid result: {e}")))
}

pub(super) fn join_paths(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// Splits a `--cni-bin-dir` search path.
pub fn split_paths(search: &str) -> Vec<PathBuf> {
    search
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}
