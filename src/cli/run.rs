//! `hostlet run`: the agent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::{self, AgentConfig};
use crate::image::ImageStore;
use crate::manager::Manager;
use crate::runtime::Runtime;
use crate::source::file::FileSource;
use crate::state::Layout;
use crate::worker::backoff::BackoffPolicy;
use crate::worker::Deps;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Directory of v1/Pod manifests (*.yaml, *.yml, *.json), or a single manifest file
    #[arg(long, value_name = "PATH")]
    pub pod_manifest_path: PathBuf,
    /// Where hostlet keeps images, bundles and container state
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hostlet")]
    pub root_dir: PathBuf,
    /// Where container logs are written, as /var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// The node name used in pod names (<name>-<node>); default: the host name, lowercased
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,
    /// A registry (HOST:PORT) reached over plain HTTP; repeatable
    #[arg(long, value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// How often the manifest path is re-listed in full, besides inotify (500ms, 2s, 1m …)
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration)]
    pub file_check_frequency: Duration,
    /// First crash-loop back-off delay (the kubelet's is 10s)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub crash_loop_backoff_initial: Duration,
    /// Longest crash-loop back-off delay (the kubelet's is 300s)
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = duration)]
    pub crash_loop_backoff_max: Duration,
}

fn duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s).map_err(|e| e.to_string())
}

impl RunArgs {
    fn into_config(self) -> anyhow::Result<AgentConfig> {
        let abs = |p: PathBuf, flag: &str| -> anyhow::Result<PathBuf> {
            std::path::absolute(&p).with_context(|| format!("{flag} {}", p.display()))
        };
        Ok(AgentConfig {
            pod_manifest_path: abs(self.pod_manifest_path, "--pod-manifest-path")?,
            root_dir: abs(self.root_dir, "--root-dir")?,
            pod_logs_dir: abs(self.pod_logs_dir, "--pod-logs-dir")?,
            node_name: self
                .hostname_override
                .map(|h| h.to_lowercase())
                .unwrap_or_else(config::default_node_name),
            insecure_registries: self.insecure_registry,
            file_check_frequency: self.file_check_frequency,
            crash_backoff: BackoffPolicy {
                initial: self.crash_loop_backoff_initial,
                max: self.crash_loop_backoff_max,
                ..BackoffPolicy::default()
            },
        })
    }
}

pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let cfg = args.into_config()?;
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("hostlet run must run as root (it creates namespaces, cgroups and mounts)");
    }
    // One thread is enough: the agent mostly waits. Blocking work (unpacking layers)
    // goes to tokio's blocking pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(agent(cfg))
}

async fn agent(cfg: AgentConfig) -> anyhow::Result<()> {
    let layout = Layout::new(&cfg.root_dir);
    for dir in [
        layout.root.clone(),
        layout.containers(),
        layout.pods(),
        cfg.pod_logs_dir.clone(),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    tracing::info!(
        node = %cfg.node_name,
        pod_manifest_path = %cfg.pod_manifest_path.display(),
        root_dir = %cfg.root_dir.display(),
        "hostlet starting"
    );
    let images = ImageStore::new(&layout.images(), cfg.insecure_registries.clone())
        .context("opening the image store")?;
    let runtime = Runtime::new(layout.clone()).context("locating the hostlet binary")?;
    let adopted = runtime.adopt_all().await;
    if !adopted.is_empty() {
        tracing::info!(
            containers = adopted.len(),
            "found containers of an earlier agent"
        );
    }
    let deps = Arc::new(Deps {
        images,
        runtime,
        layout,
        pod_logs_dir: cfg.pod_logs_dir.clone(),
        crash_backoff: cfg.crash_backoff,
        pull_backoff: BackoffPolicy {
            reset_after: Duration::MAX,
            ..BackoffPolicy::default()
        },
    });
    let (tx, rx) = mpsc::channel(16);
    let source = FileSource {
        path: cfg.pod_manifest_path.clone(),
        node: cfg.node_name.clone(),
        period: cfg.file_check_frequency,
    };
    tokio::spawn(source.run(tx));
    let manager = tokio::spawn(Manager::new(deps, adopted).run(rx));

    shutdown_signal().await;
    // Containers keep running: the next agent adopts them (the kubelet does the same).
    tracing::info!("hostlet stopping; containers keep running");
    manager.abort();
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
