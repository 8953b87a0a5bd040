//! `hostlet auto-update`: asks the running agent to check the images of the pods that
//! opted in (`hostlet.io/auto-update`) now, and prints what changed (or, with
//! `--dry-run`, what would) in `podman auto-update`'s columns.

use std::time::Duration;

use anyhow::{bail, Context};

use super::operator::{print_structured, Format, RootArgs};
use crate::update::{plan, Report, Updated};

#[derive(Debug, clap::Args)]
pub struct AutoUpdateArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Only check: print what would be updated and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// The longest an answer may take: the agent pulls the new images before it answers.
const WAIT: Duration = Duration::from_secs(15 * 60);

pub fn main(args: AutoUpdateArgs) -> anyhow::Result<()> {
    let target = if args.dry_run {
        "/auto-update?dry-run=true"
    } else {
        "/auto-update"
    };
    let (code, body) = crate::api::client::get_within(&args.root.socket(), target, WAIT)?;
    if code != 200 {
        bail!("{}", String::from_utf8_lossy(&body).trim());
    }
    let report: Report =
        serde_json::from_slice(&body).context("decoding the agent's auto-update report")?;
    match args.output {
        Format::Table => print!("{}", plan::table(&report)),
        f => print_structured(f, &report)?,
    }
    if report.rows.iter().any(|r| r.updated == Updated::Failed) {
        bail!("some images could not be checked or pulled");
    }
    Ok(())
}
