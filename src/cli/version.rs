//! `hostlet version` and `hostlet completion`.

use clap::CommandFactory;

use super::operator::{Format, RootArgs};

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to write completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The CLI's version and, when an agent answers on the socket, whether it is synced.
pub fn version(args: VersionArgs) -> anyhow::Result<()> {
    let agent = match crate::api::client::get(&args.root.socket(), "/healthz") {
        Ok((200, _)) => "running, synced".to_string(),
        Ok((_, body)) => format!("running, {}", String::from_utf8_lossy(&body).trim()),
        Err(e) => e.to_string(),
    };
    let v = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "agent": agent,
        "socket": args.root.socket(),
    });
    match args.output {
        Format::Table => {
            println!("hostlet {}", env!("CARGO_PKG_VERSION"));
            println!("agent: {agent}");
            Ok(())
        }
        f => super::operator::print_structured(f, &v),
    }
}

pub fn completion(args: CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "hostlet", &mut std::io::stdout());
    Ok(())
}
