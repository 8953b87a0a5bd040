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
    // namespace/name (and kind for objects) → the file that declared it first, across every
    // path given.
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut checked = Vec::new();
    let mut objects = Vec::new();
    for path in &args.paths {
        for file in files(path, &mut out)? {
            let mut c = check_file(&file, &node, args.strict, &mut names)?;
            if let Some(o) = c.object.take() {
                objects.push(o);
            }
            checked.push(c);
        }
    }
    // References across the files given: a pod naming a missing ConfigMap, Secret or key
    // (not optional) would wait with CreateContainerConfigError.
    let objects = manifest::ObjectSet::new(objects);
    let mut ok = true;
    for mut c in checked {
        if let Some((text, pod)) = &c.pod {
            let images = image_problems(pod);
            for e in manifest::refs::check(pod, &objects).iter().chain(&images) {
                let diag = Diagnostic::for_field(text, e);
                writeln!(c.out, "{}", located(&c.path, &diag))?;
                c.ok = false;
            }
        }
        if c.ok {
            writeln!(c.out, "{}: ok", c.path.display())?;
        }
        out.write_all(&c.out)?;
        ok &= c.ok;
    }
    Ok(ok)
}

/// Image references the pull would refuse (`InvalidImageName`), as located field errors.
fn image_problems(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<manifest::FieldError> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    let mut problems = Vec::new();
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let Some(reference) = c.image.as_deref() else {
                continue;
            };
            if let Err(e) = crate::image::parse_reference(reference) {
                problems.push(manifest::FieldError::new(
                    format!("spec.{list}[{i}].image"),
                    format!("{}: {e}", e.reason()),
                ));
            }
        }
    }
    problems
}

/// One file's outcome: what to print, and what the reference check needs.
struct Checked {
    path: PathBuf,
    ok: bool,
    out: Vec<u8>,
    /// The pod and its text (to locate fields), when the file declares a valid pod.
    pod: Option<(String, k8s_openapi::api::core::v1::Pod)>,
    object: Option<std::sync::Arc<manifest::ConfigObject>>,
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
) -> anyhow::Result<Checked> {
    let mut c = Checked {
        path: path.to_path_buf(),
        ok: true,
        out: Vec::new(),
        pod: None,
        object: None,
    };
    let (ok, mode) = check_bytes(path, node, strict, names, &mut c)?;
    c.ok &= ok;
    if let Some(o) = c.object.as_ref().filter(|o| o.is_secret()) {
        if mode & 0o077 != 0 {
            writeln!(
                c.out,
                "{}: Secret {} is readable or writable by group or others (mode {mode:04o}); hostlet refuses it: fix with `chmod 600 {}`",
                path.display(),
                o.full_name(),
                path.display()
            )?;
            c.ok = false;
            // Refused by the agent too: pods cannot use it.
            c.object = None;
        }
    }
    Ok(c)
}

fn check_bytes(
    path: &Path,
    node: &str,
    strict: bool,
    names: &mut HashMap<String, PathBuf>,
    c: &mut Checked,
) -> anyhow::Result<(bool, u32)> {
    let out = &mut c.out;
    let shown = path.display();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            writeln!(out, "{shown}: {e}")?;
            return Ok((false, 0));
        }
    };
    let mut ok = true;
    let mode = match file.metadata() {
        Err(e) => {
            writeln!(out, "{shown}: {e}")?;
            return Ok((false, 0));
        }
        Ok(meta) => {
            if let Err(e) = security::check(path, &meta, "manifest") {
                writeln!(out, "{e}")?;
                ok = false;
            }
            std::os::unix::fs::MetadataExt::mode(&meta) & 0o7777
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_SIZE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {shown}"))?;
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        writeln!(out, "{shown}: manifest is larger than 10 MiB")?;
        return Ok((false, mode));
    }
    let text = String::from_utf8_lossy(&bytes);
    match manifest::decode_manifest(&Origin::File(path.to_path_buf()), &bytes, node, strict) {
        Ok(m) => {
            let (warnings, key, what) = match &m {
                manifest::Manifest::Pod(d) => (
                    &d.warnings,
                    d.pod.full_name(),
                    format!("pod {}", d.pod.full_name()),
                ),
                manifest::Manifest::Object(d) => {
                    let id = format!("{} {}", d.object.kind.as_str(), d.object.full_name());
                    (&d.warnings, id.clone(), id)
                }
            };
            for w in warnings {
                let mut diag = Diagnostic::for_field(&text, w);
                diag.message = format!("warning: {}", diag.message);
                writeln!(out, "{}", located(path, &diag))?;
            }
            if let Some(first) = names.get(&key) {
                writeln!(
                    out,
                    "{shown}: duplicate: {what} is already declared by {}; hostlet uses only the first",
                    first.display()
                )?;
                ok = false;
            } else {
                names.insert(key, path.to_path_buf());
                match m {
                    manifest::Manifest::Pod(d) => c.pod = Some((text.into_owned(), d.pod.pod)),
                    manifest::Manifest::Object(d) => c.object = Some(std::sync::Arc::new(d.object)),
                }
            }
        }
        Err(e) => {
            for diag in e.diagnostics(&bytes) {
                writeln!(out, "{}", located(path, &diag))?;
            }
            ok = false;
        }
    }
    Ok((ok, mode))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_image_names_are_reported_where_they_are() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i", "image": "busybox"}],
                "containers": [
                    {"name": "a", "image": "[::1]:5000/busybox"},
                    {"name": "b", "image": "docker.io/library/Busybox"},
                ]
            }
        }))
        .unwrap();
        let problems = image_problems(&pod);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "spec.containers[1].image");
        assert!(problems[0].message.starts_with("InvalidImageName: "));
    }
}
