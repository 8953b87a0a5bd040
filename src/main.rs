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
        Command::Ps(args) => verb(|| hostlet::cli::pods::ps(args)),
        Command::Inspect(args) => verb(|| hostlet::cli::pods::inspect(args)),
        Command::Logs(args) => verb(|| hostlet::cli::logs::main(args)),
        Command::Version(args) => verb(|| hostlet::cli::version::version(args)),
        Command::Completion(args) => verb(|| hostlet::cli::version::completion(args)),
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

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
