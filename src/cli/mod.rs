//! Command line: one file per verb.

pub mod attach;
pub mod auto_update;
pub mod exec;
pub mod generate;
pub mod get;
pub mod image_import;
pub mod images;
pub mod logs;
pub mod monitor;
pub mod operator;
pub mod pods;
pub mod pull;
pub mod render;
pub mod rmi;
pub mod run;
mod run_args;
pub mod sandbox;
pub mod validate;
pub mod version;

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

// Parsed once per process: the size of `run`'s arguments costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: watch the manifests and run their pods until stopped
    #[command(
        after_help = "Example:\n  sudo hostlet run --pod-manifest-path /etc/kubernetes/manifests"
    )]
    Run(run::RunArgs),
    /// Pull an image into the store (works beside a running agent)
    Pull(pull::PullArgs),
    /// List stored images: reference, digest, size, last used
    Images(images::ImagesArgs),
    /// Remove images no container uses
    Rmi(rmi::RmiArgs),
    /// Image store operations (import archives)
    #[command(subcommand)]
    Image(image_import::ImageCommand),
    /// Check manifests as `run` would (no agent, no root): FILE:LINE:COL: FIELD: MESSAGE
    Validate(validate::ValidateArgs),
    /// Print the OCI runtime config of each container of a pod, as `run` would start it
    #[command(after_help = "Example:\n  hostlet render --hostname-override node1 etcd.yaml")]
    Render(render::RenderArgs),
    /// List the agent's pods: NAME READY STATUS RESTARTS AGE, like kubectl
    #[command(after_help = "Examples:\n  sudo hostlet pods\n  sudo hostlet pods -o yaml")]
    Pods(pods::PodsArgs),
    /// List the ConfigMaps or Secrets of the manifest path: names, keys, sizes (never values)
    Get(get::GetArgs),
    /// List containers (running ones; -a for all), like crictl ps
    #[command(after_help = "Examples:\n  sudo hostlet ps\n  sudo hostlet ps -a -o json")]
    Ps(pods::PsArgs),
    /// Show a pod or a container (by id or id prefix) in full, as JSON or YAML
    #[command(
        after_help = "Examples:\n  sudo hostlet inspect etcd\n  sudo hostlet inspect -o yaml 3f2a9c"
    )]
    Inspect(pods::InspectArgs),
    /// Print a container's logs, like kubectl logs
    #[command(
        after_help = "Examples:\n  sudo hostlet logs etcd\n  sudo hostlet logs -f --tail 20 web -c nginx\n  sudo hostlet logs --previous --timestamps --since 10m web nginx"
    )]
    Logs(logs::LogsArgs),
    /// Run a command in a running container; its exit code is hostlet's
    #[command(
        after_help = "Examples:\n  sudo hostlet exec etcd -- etcdctl endpoint health\n  sudo hostlet exec -it web -c nginx -- sh"
    )]
    Exec(exec::ExecArgs),
    /// Attach to a running container's stdio (stdin: true, tty: true); ctrl-p ctrl-q detaches
    #[command(
        after_help = "Examples:\n  sudo hostlet attach web\n  sudo hostlet attach -it shell -c sh"
    )]
    Attach(attach::AttachArgs),
    /// Check the images of pods with hostlet.io/auto-update now; restart updated pods
    #[command(
        after_help = "Examples:\n  sudo hostlet auto-update --dry-run\n  sudo hostlet auto-update"
    )]
    AutoUpdate(auto_update::AutoUpdateArgs),
    /// Print hostlet's version and whether an agent answers on the socket
    #[command(after_help = "Example:\n  hostlet version")]
    Version(version::VersionArgs),
    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  hostlet completion bash > /etc/bash_completion.d/hostlet\n  hostlet completion zsh > \"${fpath[1]}/_hostlet\"\n  hostlet completion fish > ~/.config/fish/completions/hostlet.fish"
    )]
    Completion(version::CompletionArgs),
    /// Write the man pages or shell completions into a directory (packaging)
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCommand),
}
