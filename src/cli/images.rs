//! `hostlet images`: the stored images (reference, digest, size, last used; with `-o wide`
//! how each was verified and which registry source served it).

use crate::image::ImageInfo;

use super::pull::StoreArgs;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Table,
    /// The table with how the signature policy accepted each image and which registry
    /// source (mirror or primary) served it
    Wide,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}

pub fn main(args: ImagesArgs) -> anyhow::Result<()> {
    let store = args.store.open()?;
    let images = store.list()?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&images)?),
        Output::Table => print!("{}", table(&images, crate::image::now_unix(), false)),
        Output::Wide => print!("{}", table(&images, crate::image::now_unix(), true)),
    }
    Ok(())
}

fn table(images: &[ImageInfo], now: i64, wide: bool) -> String {
    let mut rows = vec![[
        "REFERENCE".to_string(),
        "DIGEST".to_string(),
        "SIZE".to_string(),
        "LAST USED".to_string(),
        "IN USE".to_string(),
        "VERIFIED".to_string(),
        "SERVED BY".to_string(),
    ]];
    for i in images {
        let refs = if i.references.is_empty() {
            vec!["<none>".to_string()]
        } else {
            i.references.clone()
        };
        for r in refs {
            rows.push([
                r,
                i.digest.chars().take(7 + 12).collect(),
                human_size(i.size),
                if i.last_used == 0 {
                    "never".into()
                } else {
                    format!("{} ago", human_age(now - i.last_used))
                },
                i.containers.len().to_string(),
                i.verified.clone().unwrap_or_else(|| "-".into()),
                i.served_by.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let columns = if wide { 7 } else { 5 };
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r[..columns]
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn human_size(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_age(s: i64) -> String {
    let s = s.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table() {
        let img = ImageInfo {
            references: vec!["docker.io/library/busybox:latest".into()],
            digest: format!("sha256:{}", "ab".repeat(32)),
            size: 3 * 1024 * 1024 / 2,
            added: 0,
            last_used: 1000,
            containers: vec!["c1".into()],
            verified: Some("sigstoreSigned (localhost:5000/app)".into()),
            served_by: Some("mirror 10.0.0.5:5000/hub".into()),
        };
        let t = table(std::slice::from_ref(&img), 1090, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("REFERENCE"), "{t}");
        assert!(
            lines[1].contains("docker.io/library/busybox:latest  sha256:abababababab"),
            "{t}"
        );
        assert!(
            lines[1].contains("1.5 MiB") && lines[1].contains("90s ago"),
            "{t}"
        );
        assert!(lines[1].ends_with('1'), "{t}");
        let wide = table(&[img], 1090, true);
        assert!(
            wide.lines()
                .next()
                .unwrap()
                .ends_with("VERIFIED                             SERVED BY"),
            "{wide}"
        );
        assert!(
            wide.contains("1       sigstoreSigned (localhost:5000/app)  mirror 10.0.0.5:5000/hub"),
            "{wide}"
        );
    }
}
