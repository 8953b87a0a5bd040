//! `hostlet get configmaps|secrets`: the ConfigMaps and Secrets a manifest path declares,
//! as `run` reads them: names, types, keys and sizes, never values.

use std::io::Write;
use std::path::PathBuf;

use crate::manifest::ObjectKind;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    #[value(alias = "configmap", alias = "cm")]
    Configmaps,
    #[value(alias = "secret")]
    Secrets,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Reads the manifest directory (or file) as `hostlet run` does; values are never printed.

Examples:
  hostlet get configmaps
  hostlet get secrets --pod-manifest-path /etc/kubernetes/manifests")]
pub struct GetArgs {
    /// configmaps (cm) or secrets
    pub kind: Kind,
    /// The manifest directory or file `hostlet run` reads
    #[arg(long, value_name = "PATH", default_value = "/etc/kubernetes/manifests")]
    pub pod_manifest_path: PathBuf,
}

pub fn main(args: GetArgs) -> anyhow::Result<()> {
    let want = match args.kind {
        Kind::Configmaps => ObjectKind::ConfigMap,
        Kind::Secrets => ObjectKind::Secret,
    };
    let node = crate::config::default_node_name();
    let snap = crate::source::file::list_once(&args.pod_manifest_path, &node);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", table(&snap, want))?;
    for p in &snap.problems {
        if matches!(
            p.kind,
            crate::source::ProblemKind::Invalid
                | crate::source::ProblemKind::Insecure
                | crate::source::ProblemKind::Duplicate
        ) {
            eprintln!("hostlet: {p}");
        }
    }
    Ok(())
}

/// NAMESPACE NAME TYPE KEYS (`key=size`, in bytes) FILE.
fn table(snap: &crate::source::Snapshot, want: ObjectKind) -> String {
    let mut rows = vec![[
        "NAMESPACE".to_string(),
        "NAME".into(),
        "TYPE".into(),
        "KEYS".into(),
        "FILE".into(),
    ]];
    for o in snap.objects.iter().filter(|o| o.kind == want) {
        let keys: Vec<String> = o
            .data
            .iter()
            .map(|(k, v)| format!("{k}={}", v.len()))
            .collect();
        let type_ = match (o.type_.as_str(), o.immutable) {
            ("", false) => "-".to_string(),
            ("", true) => "immutable".to_string(),
            (t, false) => t.to_string(),
            (t, true) => format!("{t},immutable"),
        };
        rows.push([
            o.namespace.clone(),
            o.name.clone(),
            type_,
            if keys.is_empty() {
                "-".into()
            } else {
                keys.join(",")
            },
            o.source.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("   ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_keys_and_sizes_never_values() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("s.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nimmutable: true\nstringData: {password: hunter2, user: admin}\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("s.yaml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            d.join("c.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: prod}\ndata: {a: xyz}\n",
        )
        .unwrap();
        let snap = crate::source::file::list_once(d, "n");
        let secrets = table(&snap, ObjectKind::Secret);
        assert!(!secrets.contains("hunter2"), "{secrets}");
        let line = secrets.lines().nth(1).unwrap();
        assert!(line.starts_with("default     db"), "{secrets}");
        assert!(
            line.contains("Opaque,immutable   password=7,user=5"),
            "{secrets}"
        );
        let cms = table(&snap, ObjectKind::ConfigMap);
        assert_eq!(cms.lines().count(), 2, "{cms}");
        assert!(
            cms.lines().nth(1).unwrap().contains("prod        cfg"),
            "{cms}"
        );
        assert!(cms.contains("a=3"), "{cms}");
    }
}
