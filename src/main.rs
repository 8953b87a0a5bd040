#![deny(clippy::undocumented_unsafe_blocks)]

use clap::Parser;
use hostlet::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_tracing();
            match hostlet::cli::run::main(args) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("hostlet: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Pull(args) => verb(|| hostlet::cli::pull::main(args)),
        Command::Render(args) => verb(|| hostlet::cli::render::main(args)),
        Command::Images(args) => verb(|| hostlet::cli::images::main(args)),
        Command::Rmi(args) => verb(|| hostlet::cli::rmi::main(args)),
        Command::Image(cmd) => verb(|| hostlet::cli::image_import::main(cmd)),
        Command::Pods(args) => verb(|| hostlet::cli::pods::pods(args)),
        Command::Get(args) => verb(|| hostlet::cli::get::main(args)),
        Command::Ps(args) => verb(|| hostlet::cli::pods::ps(args)),
        Command::Inspect(args) => verb(|| hostlet::cli::pods::inspect(args)),
        Command::Logs(args) => verb(|| hostlet::cli::logs::main(args)),
        Command::Attach(args) => verb(|| hostlet::cli::attach::main(args)),
        Command::AutoUpdate(args) => verb(|| hostlet::cli::auto_update::main(args)),
        Command::Version(args) => verb(|| hostlet::cli::version::version(args)),
        Command::Completion(args) => verb(|| hostlet::cli::version::completion(args)),
        Command::Generate(cmd) => verb(|| hostlet::cli::generate::main(cmd)),
        // The command's own exit status is hostlet's.
        Command::Exec(args) => match hostlet::cli::exec::main(args) {
            Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("hostlet: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Validate(args) => match hostlet::cli::validate::main(args) {
            Ok(true) => std::process::ExitCode::SUCCESS,
            Ok(false) => std::process::ExitCode::FAILURE,
            Err(e) => {
                eprintln!("hostlet: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// A short-lived command: warnings to stderr, errors as `hostlet: …`.
fn verb(f: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "warn");
    }
    init_tracing();
    match f() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostlet: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// RUST_LOG as `LEVEL` and `TARGET=LEVEL` directives (`info,hostlet=debug`); `info` when
/// unset or unparsable. Target filters rather than tracing-subscriber's EnvFilter, whose
/// span and field matching compiles regular expressions at every start (regex code was
/// ~0.5 MB of the agent's resident memory, BENCHMARKS.md row 4a).
fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    tracing_subscriber::registry().with(filter).with(fmt).init();
}
