//! Mirrors and blocked registries: `containers-registries.conf(5)` version 2, the file podman,
//! skopeo and CRI-O read. Given an image name, the `[[registry]]` table with the longest
//! matching `prefix` (`host[:port][/namespace…][/repo]`, or `*.example.com` for any
//! subdomain) decides: a blocked one refuses the pull; otherwise its mirrors are tried in
//! order, then its `location` (the prefix rewritten to it), as containers/image's
//! `sysregistriesv2` does. Signatures are judged by the caller against the name asked for,
//! never against the mirror's.
//!
//! Global settings (`unqualified-search-registries`, `short-name-mode`, `credential-helpers`,
//! `[aliases]` …) are read and ignored: hostlet resolves short names as docker does, and its
//! credentials come from the kubelet's sources. Drop-in `registries.conf.d` files are not read.

mod raw;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file read when `--registries-conf` is not given and the file exists.
pub const DEFAULT_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";

/// A registries.conf hostlet cannot apply, with where in the file and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registries configuration {}: {field}: {message}", path.display())]
pub struct ConfError {
    pub path: PathBuf,
    /// `registry[2].mirror[1].pull-from-mirror`, `line 7` …
    pub field: String,
    pub message: String,
}

/// When a mirror is used (`pull-from-mirror`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullFromMirror {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

/// A mirror of a registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from_mirror: PullFromMirror,
}

/// One `[[registry]]` table, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based position in the file, for messages.
    pub number: usize,
    pub prefix: String,
    /// Empty only under a `*.` prefix: the name is left as it is.
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirror_by_digest_only: bool,
    pub mirrors: Vec<Mirror>,
}

/// Where one attempt of a pull goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The reference asked of this endpoint (the prefix rewritten to its location).
    pub reference: String,
    /// The endpoint's `location` as configured (the primary's: its host when unset).
    pub location: String,
    /// Reached over plain HTTP.
    pub insecure: bool,
    pub mirror: bool,
}

impl Source {
    /// `mirror 10.0.0.5:5000/hub` or `primary docker.io`, for logs and `hostlet images`.
    pub fn describe(&self) -> String {
        let kind = if self.mirror { "mirror" } else { "primary" };
        format!("{kind} {}", self.location)
    }
}

/// The parsed file; empty when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    pub path: Option<PathBuf>,
    /// In file order; the first of equal prefixes wins.
    pub entries: Vec<Entry>,
}

impl Entry {
    /// `[[registry]] #2 (prefix "quay.io/x")`
    pub fn describe(&self) -> String {
        format!("[[registry]] #{} (prefix {:?})", self.number, self.prefix)
    }

    /// The endpoints for `reference` (normalised `name[:tag][@digest]`, matching this entry):
    /// the mirrors allowed for it in order, then the primary. None if the prefix does not
    /// match (a caller error).
    pub fn sources(&self, reference: &str, digested: bool) -> Option<Vec<Source>> {
        let len = match_len(reference, &self.prefix)?;
        let rest = &reference[len..];
        let rewrite = |location: &str| {
            if location.is_empty() {
                reference.to_string()
            } else {
                format!("{location}{rest}")
            }
        };
        let mut out = Vec::new();
        for m in &self.mirrors {
            let allowed = if self.mirror_by_digest_only {
                digested
            } else {
                match m.pull_from_mirror {
                    PullFromMirror::All => true,
                    PullFromMirror::DigestOnly => digested,
                    PullFromMirror::TagOnly => !digested,
                }
            };
            if allowed {
                out.push(Source {
                    reference: rewrite(&m.location),
                    location: m.location.clone(),
                    insecure: m.insecure,
                    mirror: true,
                });
            }
        }
        let primary = rewrite(&self.location);
        out.push(Source {
            location: if self.location.is_empty() {
                host_of(&primary).to_string()
            } else {
                self.location.clone()
            },
            reference: primary,
            insecure: self.insecure,
            mirror: false,
        });
        Some(out)
    }
}

impl RegistriesConf {
    /// Loads `path` if given (an error if unreadable), else DEFAULT_REGISTRIES_CONF if it
    /// exists, else no configuration (silently: most hosts have none).
    pub fn load(path: Option<&Path>) -> Result<Self, ConfError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_REGISTRIES_CONF).exists() => {
                PathBuf::from(DEFAULT_REGISTRIES_CONF)
            }
            None => return Ok(Self::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfError {
            path: path.clone(),
            field: "file".into(),
            message: format!("cannot read: {e}"),
        })?;
        let conf = Self::parse(&path, &text)?;
        tracing::info!(path = %path.display(), registries = conf.entries.len(), "registries configuration loaded");
        Ok(conf)
    }

    /// Parses and validates the text of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfError> {
        let err = |field: String, message: String| ConfError {
            path: path.to_path_buf(),
            field,
            message,
        };
        let raw: raw::File = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
            let field = line.map_or_else(|| "toml".to_string(), |l| format!("line {l}"));
            err(field, e.message().trim().to_string())
        })?;
        for key in raw.other.keys() {
            tracing::warn!(path = %path.display(), key = %key, "registries configuration: unknown setting ignored");
        }
        for key in raw::IGNORED.iter().filter(|k| raw.ignored(k)) {
            tracing::info!(path = %path.display(), key = %key, "registries configuration: setting not used by hostlet");
        }
        let v1 = raw.registries.unwrap_or_default();
        let mut tables = raw.registry;
        if !v1.is_empty() {
            if !tables.is_empty() {
                return Err(err(
                    "registries".into(),
                    "mixing the version 1 [registries.*] tables with version 2 [[registry]] tables is not supported".into(),
                ));
            }
            tables = v1.to_v2();
        }
        let mut entries = Vec::new();
        for (i, t) in tables.into_iter().enumerate() {
            entries.push(t.validate(i + 1).map_err(|(f, m)| err(f, m))?);
        }
        check_conflicts(&entries).map_err(|(f, m)| err(f, m))?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            entries,
        })
    }

    /// The entry for `name` (`host[:port]/repository`): among the matching prefixes the
    /// longest as written (`*.bar.example.com` is more specific than `*.example.com`), as
    /// containers/image's `FindRegistry`; of equal lengths the first in its sorted order, and
    /// of identical prefixes the first in the file.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        let mut best: Option<&Entry> = None;
        for e in &self.entries {
            if match_len(name, &e.prefix).is_none() {
                continue;
            }
            let better = best.is_none_or(|b| {
                let (l, bl) = (e.prefix.len(), b.prefix.len());
                l > bl || (l == bl && e.prefix < b.prefix)
            });
            if better {
                best = Some(e);
            }
        }
        best
    }
}

/// How much of `reference` `prefix` matches, as containers/image's `refMatchingPrefix`: a
/// literal prefix must end where the reference does or at `:`, `/` or `@`; `*.example.com`
/// matches any subdomain of example.com in the host part, and its length is where the host's
/// match ends.
pub fn match_len(reference: &str, prefix: &str) -> Option<usize> {
    if let Some(suffix) = prefix.strip_prefix('*') {
        let at = reference.find(suffix)?;
        if reference[..at].contains('/') {
            return None;
        }
        let end = at + suffix.len();
        return boundary(reference, end).then_some(end);
    }
    (reference.starts_with(prefix) && boundary(reference, prefix.len())).then_some(prefix.len())
}

fn boundary(reference: &str, at: usize) -> bool {
    matches!(
        reference.as_bytes().get(at),
        None | Some(b':' | b'/' | b'@')
    )
}

/// The `host[:port]` of a reference.
fn host_of(reference: &str) -> &str {
    reference.split('/').next().unwrap_or(reference)
}

/// A location as containers/image's `parseLocation` takes it: trailing `/` dropped, no URL
/// scheme.
fn location(value: &str) -> Result<String, String> {
    let trimmed = value.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        return Err(format!(
            "expected host[:port][/namespace…] without a URL scheme, got {value:?}"
        ));
    }
    if trimmed.chars().any(char::is_whitespace) {
        return Err(format!("expected no whitespace, got {value:?}"));
    }
    Ok(trimmed.to_string())
}

/// One registry named by several tables must agree on `insecure` and `blocked`.
fn check_conflicts(entries: &[Entry]) -> Result<(), (String, String)> {
    let mut seen: BTreeMap<&str, &Entry> = BTreeMap::new();
    for e in entries {
        let key = if e.location.is_empty() {
            &e.prefix
        } else {
            &e.location
        };
        match seen.get(key.as_str()) {
            Some(first) if first.insecure != e.insecure || first.blocked != e.blocked => {
                let what = if first.insecure != e.insecure {
                    "insecure"
                } else {
                    "blocked"
                };
                return Err((
                    format!("registry[{}].{what}", e.number),
                    format!(
                        "registry {key:?} is also in registry[{}] with a different {what:?} setting; expected the same",
                        first.number
                    ),
                ));
            }
            Some(_) => {}
            None => {
                seen.insert(key, e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
