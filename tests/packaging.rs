//! What the Debian package ships agrees with the binary: every man page that
//! `hostlet generate man` writes (the ones in /usr/share/man/man8) shows every flag the
//! command's `--help` shows, and the packaged /etc/hostlet/config.yaml is a config file
//! `hostlet run --config` accepts as it is. No root needed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn hostlet(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(args)
        .output()
        .expect("running hostlet");
    assert!(
        out.status.success(),
        "hostlet {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The subcommand a man page `hostlet-a-b-c` documents: the words its dashes split, with
/// adjacent words joined back where the split names no subcommand (`auto-update`).
fn subcommand_of(page: &str) -> Vec<String> {
    let words: Vec<&str> = page.split('-').skip(1).collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        // The longest run of words from i that `hostlet <out> <run> --help` accepts.
        let found = (i + 1..=words.len()).rev().find(|&j| {
            let mut args: Vec<String> = out.clone();
            args.push(words[i..j].join("-"));
            args.push("--help".into());
            Command::new(env!("CARGO_BIN_EXE_hostlet"))
                .args(&args)
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let j = found.unwrap_or(i + 1);
        out.push(words[i..j].join("-"));
        i = j;
    }
    out
}

/// `-x` and `--long-name` tokens in TEXT.
fn flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        let long = word.len() > 2
            && word.starts_with("--")
            && word.as_bytes()[2].is_ascii_lowercase()
            && !word.ends_with('-');
        let short = word.len() == 2 && word.starts_with('-') && word.as_bytes()[1] != b'-';
        if long || short {
            out.insert(word.to_string());
        }
    }
    out
}

/// The flags `--help` lists: option lines start with `-` after indentation.
fn help_flags(help: &str) -> BTreeSet<String> {
    let options: String = help
        .lines()
        .filter(|l| l.trim_start().starts_with('-') && l.starts_with(' '))
        // The flag column only: descriptions may mention other flags.
        .map(|l| l.trim_start().split("  ").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    flags(&options)
}

/// The text of a man page's OPTIONS section (the SYNOPSIS lists the flags too, without
/// their descriptions: a flag only there would not count), from its roff source: `\-` is
/// a hyphen, `\fB`… change fonts.
fn roff_options(roff: &str) -> String {
    let start = roff.find(".SH OPTIONS").unwrap_or(roff.len());
    let section = &roff[start..];
    let end = section
        .get(1..)
        .and_then(|rest| rest.find("\n.SH "))
        .map_or(section.len(), |i| i + 1);
    section[..end]
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
}

#[test]
fn every_man_page_shows_every_flag_its_help_shows() {
    let dir = tempfile::tempdir().unwrap();
    let listed = hostlet(&["generate", "man", dir.path().to_str().unwrap()]);
    let pages: Vec<&str> = listed.lines().collect();
    assert!(
        pages.iter().any(|p| p.ends_with("/hostlet-run.8")),
        "no hostlet-run.8 in {pages:?}"
    );
    let mut checked = 0;
    for page in pages {
        let name = Path::new(page)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap()
            .to_string();
        // hostlet-image-import.8 documents `hostlet image import`, hostlet-auto-update.8
        // `hostlet auto-update`: the dashes of a page name are either.
        let args = subcommand_of(&name);
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push("--help");
        let help = help_flags(&hostlet(&args));
        let man = flags(&roff_options(&std::fs::read_to_string(page).unwrap()));
        let missing: Vec<_> = help.difference(&man).collect();
        assert!(
            missing.is_empty(),
            "{name}.8 lacks {missing:?} that `hostlet {}` shows",
            args.join(" ")
        );
        checked += 1;
    }
    assert!(checked > 10, "only {checked} pages checked");
}

#[test]
fn run_page_has_the_agent_flags_users_set() {
    // A guard for the comparison above: were help_flags() to find nothing, it would pass.
    let help = help_flags(&hostlet(&["run", "--help"]));
    for flag in [
        "--pod-manifest-path",
        "--config",
        "--root-dir",
        "--insecure-registry",
        "--cgroup-driver",
        "-h",
    ] {
        assert!(help.contains(flag), "{flag} not in run --help: {help:?}");
    }
}

#[test]
fn packaged_config_file_is_accepted_and_sets_only_the_manifest_path() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.yaml"),
    )
    .unwrap();
    let parsed = hostlet::config::file::parse(&text).expect("packaging/config.yaml parses");
    assert_eq!(
        parsed.flags,
        [("pod_manifest_path", "/etc/kubernetes/manifests".to_string())]
    );
    assert!(parsed.ignored.is_empty(), "ignored: {:?}", parsed.ignored);
    // Every commented default is a field hostlet implements: uncommenting one never
    // produces an "ignored" warning.
    let uncommented: String = text
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .filter(|l| !l.starts_with(' ') || l.starts_with("  "))
        .collect::<Vec<_>>()
        .join("\n");
    let all = hostlet::config::file::parse(&uncommented).expect("uncommented defaults parse");
    assert!(all.ignored.is_empty(), "ignored: {:?}", all.ignored);
    assert!(all.flags.len() > 10, "{:?}", all.flags);
}

#[test]
fn debian_changelog_names_the_crate_version() {
    // cargo-deb versions the package VERSION-1 from Cargo.toml; a changelog entry for
    // another version would ship a package whose changelog does not describe it.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/changelog"))
            .unwrap();
    let first = text.lines().next().unwrap_or_default();
    let want = format!("hostlet ({}-1) ", env!("CARGO_PKG_VERSION"));
    assert!(
        first.starts_with(&want),
        "packaging/changelog starts with {first:?}, not {want:?}"
    );
}
