//! `hostlet image import`: load OCI or docker archives into the store, no registry needed.

use std::path::PathBuf;

use anyhow::Context;

use super::pull::StoreArgs;

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import OCI archives (skopeo … oci-archive:FILE:NAME) and docker archives (docker save),
    /// keeping their image names; gzip- or zstd-compressed archives too
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Archive files
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn main(cmd: ImageCommand) -> anyhow::Result<()> {
    let ImageCommand::Import(args) = cmd;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let store = args.store.open()?;
    rt.block_on(async {
        for file in &args.files {
            let images = store.import(file).await.map_err(|e| match e {
                // The refusal's reason, as a pull shows it.
                e @ crate::image::ImageError::Signature { .. } => {
                    anyhow::anyhow!("{}: {e}", e.reason())
                }
                e => e.into(),
            })?;
            for i in images {
                if i.references.is_empty() {
                    println!("{} (no name)", i.digest);
                }
                for r in &i.references {
                    println!("{r} {}", i.digest);
                }
            }
        }
        Ok(())
    })
}
