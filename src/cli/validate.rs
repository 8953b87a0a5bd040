//! `hostlet validate`: checks manifests as `hostlet run` would, without an agent or root.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config;
use crate::manifest::{self, Diagnostic, Origin};
use crate::source::{security, MAX_MANIFEST_SIZE};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Each problem is printed as FILE:LINE:COLUMN: FIELD: MESSAGE (the location when it is known); \
unknown fields are warnings unless --strict. A good file prints FILE: ok. \
The exit status is 1 when any file has an error, 0 with warnings only.

Examples:
  hostlet validate /etc/kubernetes/manifests
  hostlet validate --strict etcd.yaml kube-apiserver.yaml")]
pub struct ValidateArgs {
    /// Manifest files, or directories read as `hostlet run` reads --pod-manifest-path
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Unknown fields (typos) are errors, as with `hostlet run --strict`
    #[arg(long)]
    pub strict: bool,
    /// The node name used in pod names (<name>-<node>); default: the host name, lowercased
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,
}

/// Validates every path, printing to stdout; true when no file has an error.
pub fn main(args: ValidateArgs) -> anyhow::Result<bool> {
    let node = args
        .hostname_override
        .map(|h| h.to_lowercase())
        .unwrap_or_else(config::default_node_name);
    let mut out = std::io::stdout().lock();
    let mut ok = true;
    // namespace/name → the file that declared it first, across every path given.
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for path in &args.paths {
        for file in files(path, &mut out)? {
            ok &= check_file(&file, &node, args.strict, &mut names, &mut out)?;
        }
    }
    Ok(ok)
}

/// The manifest files under `path` in the order `run` reads them; other files are reported.
fn files(path: &Path, out: &mut impl Write) -> anyhow::Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    if let Err(e) = security::check(path, &meta, "manifest directory") {
        writeln!(out, "{e}")?;
    }
    let mut names: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("listing {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    let mut files = Vec::new();
    for name in names {
        let file = path.join(&name);
        let is_manifest = crate::source::is_manifest_name(&name.to_string_lossy())
            && !std::fs::metadata(&file).is_ok_and(|m| m.is_dir());
        if is_manifest {
            files.push(file);
        } else {
            writeln!(
                out,
                "{}: ignored: not a manifest by its name (hostlet reads *.yaml, *.yml and *.json that are not dotfiles)",
                file.display()
            )?;
        }
    }
    Ok(files)
}

fn check_file(
    path: &Path,
    node: &str,
    strict: bool,
    names: &mut HashMap<String, PathBuf>,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let shown = path.display();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            writeln!(out, "{shown}: {e}")?;
            return Ok(false);
        }
    };
    let mut ok = true;
    match file.metadata() {
        Err(e) => {
            writeln!(out, "{shown}: {e}")?;
            return Ok(false);
        }
        Ok(meta) => {
            if let Err(e) = security::check(path, &meta, "manifest") {
                writeln!(out, "{e}")?;
                ok = false;
            }
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_SIZE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {shown}"))?;
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        writeln!(out, "{shown}: manifest is larger than 10 MiB")?;
        return Ok(false);
    }
    let text = String::from_utf8_lossy(&bytes);
    match manifest::decode_with_origin(&Origin::File(path.to_path_buf()), &bytes, node, strict) {
        Ok(d) => {
            for w in &d.warnings {
                let mut diag = Diagnostic::for_field(&text, w);
                diag.message = format!("warning: {}", diag.message);
                writeln!(out, "{}", located(path, &diag))?;
            }
            let full_name = d.pod.full_name();
            if let Some(first) = names.get(&full_name) {
                writeln!(
                    out,
                    "{shown}: duplicate: pod {full_name} is already declared by {}; hostlet runs only the first",
                    first.display()
                )?;
                ok = false;
            } else {
                names.insert(full_name, path.to_path_buf());
            }
        }
        Err(e) => {
            for diag in e.diagnostics(&bytes) {
                writeln!(out, "{}", located(path, &diag))?;
            }
            ok = false;
        }
    }
    if ok {
        writeln!(out, "{shown}: ok")?;
    }
    Ok(ok)
}

/// `file:line:col: field: message` (a manifest's diagnostics are always located; a
/// diagnostic without a line is shown as `file: field: message`).
fn located(path: &Path, diag: &Diagnostic) -> String {
    if diag.line.is_some() {
        format!("{}:{diag}", path.display())
    } else {
        format!("{}: {diag}", path.display())
    }
}
