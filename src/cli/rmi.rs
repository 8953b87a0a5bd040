//! `hostlet rmi`: remove images (refused while a container uses them).

use super::pull::StoreArgs;

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Image references, or digests (sha256:… or a prefix of 12+ hex digits)
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn main(args: RmiArgs) -> anyhow::Result<()> {
    let store = args.store.open()?;
    let mut failed = 0;
    for what in &args.images {
        match store.remove(what) {
            Ok(refs) => {
                for r in refs {
                    println!("untagged: {r}");
                }
            }
            Err(e) => {
                eprintln!("hostlet: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} image(s) not removed", args.images.len());
    }
    Ok(())
}
