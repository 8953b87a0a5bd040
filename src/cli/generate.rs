//! `hostlet generate man|completions DIR` (hidden): the man pages and shell completions
//! the Debian package ships, generated from the same clap definitions `--help` prints, so
//! they cannot drift from it. `packaging/build-deb.sh` runs it before `cargo deb`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, clap::Subcommand)]
pub enum GenerateCommand {
    /// Write hostlet.8 and hostlet-VERB.8 (one per subcommand, nested ones as
    /// hostlet-image-import.8) into DIR
    Man {
        /// Output directory (created if missing)
        dir: PathBuf,
    },
    /// Write bash (hostlet), zsh (_hostlet) and fish (hostlet.fish) completions into DIR
    Completions {
        /// Output directory (created if missing)
        dir: PathBuf,
    },
}

pub fn main(cmd: GenerateCommand) -> anyhow::Result<()> {
    match cmd {
        GenerateCommand::Man { dir } => {
            for path in man_pages(&dir)? {
                println!("{}", path.display());
            }
        }
        GenerateCommand::Completions { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            use clap_complete::Shell;
            for (shell, name) in [
                (Shell::Bash, "hostlet"),
                (Shell::Zsh, "_hostlet"),
                (Shell::Fish, "hostlet.fish"),
            ] {
                let path = dir.join(name);
                let mut file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                clap_complete::generate(shell, &mut super::Cli::command(), "hostlet", &mut file);
                println!("{}", path.display());
            }
        }
    }
    Ok(())
}

/// Section 8: hostlet is an administrator's daemon and its CLI needs root.
pub const SECTION: &str = "8";

/// Renders every man page (the root and each visible subcommand, recursively) into DIR;
/// returns the files written.
pub fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (name, page) in render_all() {
        let path = dir.join(format!("{name}.{SECTION}"));
        std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `(page name, roff source)` for the root command and every visible subcommand.
pub fn render_all() -> Vec<(String, Vec<u8>)> {
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    // build() gives subcommands their display names ("hostlet-run"), the pages' names.
    cmd.build();
    let mut out = Vec::new();
    collect(&cmd, &mut out);
    out
}

fn collect(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let man = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .manual("hostlet manual")
        .source(format!("hostlet {}", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render(&mut page);
    out.push((name, page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand_and_none_for_hidden_ones() {
        let names: Vec<String> = render_all().into_iter().map(|(n, _)| n).collect();
        for want in [
            "hostlet",
            "hostlet-run",
            "hostlet-image-import",
            "hostlet-logs",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("hostlet-generate")));
    }
}
