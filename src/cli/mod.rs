//! Command line: one file per verb.

pub mod monitor;
pub mod run;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hostlet",
    version,
    about = "Run Kubernetes static pods on this host, without a container daemon",
    long_about = "hostlet watches a directory of Kubernetes v1/Pod manifests (the kubelet's \
--pod-manifest-path), pulls their images from OCI registries and runs every container \
through youki's libcontainer, supervised: restart policy with crash-loop back-off, \
graceful termination, CRI-format logs. Containers keep running across agent restarts."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: watch the manifests and run their pods until stopped
    #[command(
        after_help = "Example:\n  sudo hostlet run --pod-manifest-path /etc/kubernetes/manifests"
    )]
    Run(run::RunArgs),
    /// Internal: supervise one container (started by the agent)
    #[command(hide = true)]
    Monitor(monitor::MonitorArgs),
}
