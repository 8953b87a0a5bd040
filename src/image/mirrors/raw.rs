//! The file as TOML: what serde reads before validation.

use std::collections::BTreeMap;

use super::{location, Entry, Mirror, PullFromMirror};

/// Global settings other tools use and hostlet does not.
pub const IGNORED: &[&str] = &[
    "unqualified-search-registries",
    "short-name-mode",
    "credential-helpers",
    "additional-layer-store-auth-helper",
    "aliases",
];

#[derive(serde::Deserialize)]
pub struct File {
    #[serde(default)]
    pub registry: Vec<Table>,
    /// Version 1: `[registries.search]`, `[registries.insecure]`, `[registries.block]`.
    pub registries: Option<V1>,
    #[serde(rename = "unqualified-search-registries")]
    pub unqualified: Option<Vec<String>>,
    #[serde(rename = "short-name-mode")]
    pub short_name_mode: Option<String>,
    #[serde(rename = "credential-helpers")]
    pub credential_helpers: Option<Vec<String>>,
    #[serde(rename = "additional-layer-store-auth-helper")]
    pub layer_store_helper: Option<String>,
    pub aliases: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

impl File {
    pub fn ignored(&self, key: &str) -> bool {
        match key {
            "unqualified-search-registries" => self.unqualified.is_some(),
            "short-name-mode" => self.short_name_mode.is_some(),
            "credential-helpers" => self.credential_helpers.is_some(),
            "additional-layer-store-auth-helper" => self.layer_store_helper.is_some(),
            "aliases" => self.aliases.is_some(),
            _ => false,
        }
    }
}

#[derive(serde::Deserialize, Default)]
pub struct V1 {
    #[serde(default)]
    pub search: V1List,
    #[serde(default)]
    pub insecure: V1List,
    #[serde(default)]
    pub block: V1List,
}

#[derive(serde::Deserialize, Default)]
pub struct V1List {
    #[serde(default)]
    pub registries: Vec<String>,
}

impl V1 {
    pub fn is_empty(&self) -> bool {
        // `search` only names short-name search registries, which hostlet does not use.
        self.search.registries.is_empty()
            && self.insecure.registries.is_empty()
            && self.block.registries.is_empty()
    }

    /// As containers/image's `ConvertToV2`: one table per registry named, blocked ones
    /// first, in order.
    pub fn to_v2(&self) -> Vec<Table> {
        let mut out: Vec<Table> = Vec::new();
        let mut set = |host: &str, f: &dyn Fn(&mut Table)| {
            let host = host.trim_end_matches('/');
            let i = match out.iter().position(|t| t.location.as_deref() == Some(host)) {
                Some(i) => i,
                None => {
                    out.push(Table {
                        location: Some(host.to_string()),
                        ..Table::default()
                    });
                    out.len() - 1
                }
            };
            f(&mut out[i]);
        };
        for h in &self.block.registries {
            set(h, &|t| t.blocked = true);
        }
        for h in &self.insecure.registries {
            set(h, &|t| t.insecure = true);
        }
        out
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Table {
    pub prefix: Option<String>,
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror_by_digest_only: bool,
    pub pull_from_mirror: Option<String>,
    #[serde(default)]
    pub mirror: Vec<MirrorTable>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MirrorTable {
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    pub pull_from_mirror: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

impl Table {
    /// The checks of containers/image's `postProcessRegistries`, plus a wildcard only
    /// as `*.domain` (other forms never match there).
    pub fn validate(self, number: usize) -> Result<Entry, (String, String)> {
        let field = |f: &str| format!("registry[{number}].{f}");
        for key in self.other.keys() {
            tracing::warn!(table = number, key = %key, "registries configuration: unknown [[registry]] setting ignored");
        }
        let loc =
            location(self.location.as_deref().unwrap_or("")).map_err(|m| (field("location"), m))?;
        let prefix =
            match self.prefix.as_deref() {
                None | Some("") if loc.is_empty() => return Err((
                    field("location"),
                    "expected a location (or a prefix of the form *.example.com); both are unset"
                        .into(),
                )),
                None | Some("") => loc.clone(),
                Some(p) => location(p).map_err(|m| (field("prefix"), m))?,
            };
        if let Some(rest) = prefix.strip_prefix("*.") {
            if rest.is_empty() || rest.contains(['*', '/', ':', '@']) {
                return Err((
                    field("prefix"),
                    format!("expected *.domain with no port, path, tag or further wildcard, got {prefix:?}"),
                ));
            }
        } else if prefix.contains('*') {
            return Err((
                field("prefix"),
                format!("expected a wildcard only as a leading *. (as in *.example.com), got {prefix:?}"),
            ));
        } else if loc.is_empty() {
            return Err((
                field("location"),
                format!("expected a location: prefix {prefix:?} is not of the form *.example.com"),
            ));
        }
        if self.pull_from_mirror.is_some() {
            return Err((
                field("pull-from-mirror"),
                "expected only in [[registry.mirror]] tables, not on the registry itself".into(),
            ));
        }
        let mut mirrors = Vec::new();
        for (j, m) in self.mirror.into_iter().enumerate() {
            let mfield = |f: &str| format!("registry[{number}].mirror[{}].{f}", j + 1);
            for key in m.other.keys() {
                tracing::warn!(table = number, mirror = j + 1, key = %key, "registries configuration: unknown [[registry.mirror]] setting ignored");
            }
            let mloc = location(m.location.as_deref().unwrap_or(""))
                .map_err(|e| (mfield("location"), e))?;
            if mloc.is_empty() {
                return Err((
                    mfield("location"),
                    "expected a location; it is unset".into(),
                ));
            }
            let pull_from_mirror = match m.pull_from_mirror.as_deref() {
                None | Some("") | Some("all") => PullFromMirror::All,
                Some("digest-only") => PullFromMirror::DigestOnly,
                Some("tag-only") => PullFromMirror::TagOnly,
                Some(other) => {
                    return Err((
                        mfield("pull-from-mirror"),
                        format!("expected \"all\", \"digest-only\" or \"tag-only\", got {other:?}"),
                    ))
                }
            };
            if self.mirror_by_digest_only && m.pull_from_mirror.is_some() {
                return Err((
                    mfield("pull-from-mirror"),
                    "expected either mirror-by-digest-only on the registry or pull-from-mirror on its mirrors, not both".into(),
                ));
            }
            mirrors.push(Mirror {
                location: mloc,
                insecure: m.insecure,
                pull_from_mirror,
            });
        }
        Ok(Entry {
            number,
            prefix,
            location: loc,
            insecure: self.insecure,
            blocked: self.blocked,
            mirror_by_digest_only: self.mirror_by_digest_only,
            mirrors,
        })
    }
}
