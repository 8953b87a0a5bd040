//! `hostlet-monitor`: the helper the agent runs for each container (`monitor DIR`, which
//! lives as long as the container), for commands in containers (`exec-in`) and for pod
//! sandboxes (`sandbox create`). It is apart from the `hostlet` binary so that every
//! long-lived monitor maps a small executable: the big one's dynamic relocations
//! (k8s-openapi, rustls, tokio, serde_yaml …) made ~0.7 MiB of private pages in each
//! monitor (BENCHMARKS.md row 4b). The agent finds it next to its own executable.
//!
//! Same commands and flags as `hostlet`'s internal ones; each runs before any thread
//! exists (they fork or unshare).

#![deny(clippy::undocumented_unsafe_blocks)]

use clap::Parser;
use hostlet::cli::monitor::{ExecInArgs, MonitorArgs};
use hostlet::cli::sandbox::SandboxCommand;

#[derive(Debug, Parser)]
#[command(
    name = "hostlet-monitor",
    version,
    about = "hostlet's per-container helper (internal)"
)]
enum Helper {
    /// Run and supervise one container until it exits (the agent starts it)
    Monitor(MonitorArgs),
    /// Run a command inside a running container
    ExecIn(ExecInArgs),
    /// Pod sandbox operations
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

fn main() -> std::process::ExitCode {
    let code = match Helper::parse() {
        Helper::Monitor(args) => hostlet::cli::monitor::main(args),
        Helper::ExecIn(args) => hostlet::cli::monitor::exec_in(args),
        Helper::Sandbox(cmd) => hostlet::cli::sandbox::main(cmd),
    };
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}
