use clap::Parser;
use hostlet::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // Before anything starts a thread: the monitor forks through libcontainer.
        Command::Monitor(args) => {
            std::process::ExitCode::from(hostlet::cli::monitor::main(args) as u8)
        }
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
