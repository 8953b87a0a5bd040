//! signedIdentity: which `critical.identity.docker-reference` a signature may carry for the
//! image being pulled (containers-policy.json(5), containers/image's
//! policy_reference_match.go).

use serde_json::Value;

use crate::image::reference::Named;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    ExactReference(String),
    ExactRepository(String),
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

impl SignedIdentity {
    pub fn parse(v: &Value) -> Result<Self, String> {
        let o = v.as_object().ok_or("signedIdentity must be an object")?;
        let kind = o
            .get("type")
            .and_then(Value::as_str)
            .ok_or("signedIdentity needs a \"type\"")?;
        let only = |allowed: &[&str]| match o.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("signedIdentity {kind}: unknown field {k:?}")),
            None => Ok(()),
        };
        let field = |name: &str| -> Result<String, String> {
            o.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(format!("signedIdentity {kind} needs {name:?}"))
        };
        Ok(match kind {
            "matchExact" => {
                only(&["type"])?;
                Self::MatchExact
            }
            "matchRepoDigestOrExact" => {
                only(&["type"])?;
                Self::MatchRepoDigestOrExact
            }
            "matchRepository" => {
                only(&["type"])?;
                Self::MatchRepository
            }
            "exactReference" => {
                only(&["type", "dockerReference"])?;
                let r = field("dockerReference")?;
                let named = Named::parse(&r).map_err(|e| format!("dockerReference {r:?}: {e}"))?;
                if named.tag.is_none() && named.digest.is_none() {
                    return Err(format!("dockerReference {r:?} needs a tag or digest"));
                }
                Self::ExactReference(r)
            }
            "exactRepository" => {
                only(&["type", "dockerRepository"])?;
                let r = field("dockerRepository")?;
                Named::parse(&r).map_err(|e| format!("dockerRepository {r:?}: {e}"))?;
                Self::ExactRepository(r)
            }
            "remapIdentity" => {
                only(&["type", "prefix", "signedPrefix"])?;
                let (prefix, signed_prefix) = (field("prefix")?, field("signedPrefix")?);
                for p in [&prefix, &signed_prefix] {
                    check_prefix(p)?;
                }
                Self::RemapIdentity {
                    prefix,
                    signed_prefix,
                }
            }
            other => return Err(format!("unknown signedIdentity type {other:?}")),
        })
    }

    /// Whether a signature claiming `signed` (its docker-reference) is for `intended`.
    pub fn matches(&self, intended: &Named, signed: &str) -> bool {
        let Ok(signed) = Named::parse(signed) else {
            return false;
        };
        match self {
            Self::MatchExact => {
                !name_only(intended) && !name_only(&signed) && same(intended, &signed)
            }
            Self::MatchRepoDigestOrExact => repo_digest_or_exact(intended, &signed),
            Self::MatchRepository => intended.name == signed.name,
            Self::ExactReference(r) => Named::parse(r)
                .is_ok_and(|r| !name_only(&r) && !name_only(&signed) && same(&r, &signed)),
            Self::ExactRepository(r) => Named::parse(r).is_ok_and(|r| r.name == signed.name),
            Self::RemapIdentity {
                prefix,
                signed_prefix,
            } => match remap(intended, prefix, signed_prefix) {
                Some(remapped) => repo_digest_or_exact(&remapped, &signed),
                None => false,
            },
        }
    }
}

fn name_only(r: &Named) -> bool {
    r.tag.is_none() && r.digest.is_none()
}

/// The same reference, a tag-and-digest one by its digest (what hostlet pulls).
fn same(a: &Named, b: &Named) -> bool {
    let key = |r: &Named| match &r.digest {
        Some(d) => (r.name.clone(), None, Some(d.clone())),
        None => (r.name.clone(), r.tag.clone(), None),
    };
    key(a) == key(b)
}

fn repo_digest_or_exact(intended: &Named, signed: &Named) -> bool {
    if name_only(signed) {
        return false;
    }
    if intended.digest.is_some() {
        // The manifest digest itself is checked against the signature's separately.
        return intended.name == signed.name;
    }
    intended.tag.is_some() && same(intended, signed)
}

/// `intended` with `prefix` replaced by `signed_prefix` when it starts with it at a
/// component boundary; unchanged otherwise; None if the result is not a reference.
fn remap(intended: &Named, prefix: &str, signed_prefix: &str) -> Option<Named> {
    let whole = intended.to_string();
    match whole.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with([':', '/', '@']) => {
            Named::parse(&format!("{signed_prefix}{rest}")).ok()
        }
        _ => Some(intended.clone()),
    }
}

/// A remapIdentity prefix: `host[:port]`, or `host[:port]/namespace[/repo]`, fully
/// qualified (it is compared with normalised names, so `busybox` would never match).
fn check_prefix(p: &str) -> Result<(), String> {
    let bad = || format!("remapIdentity prefix {p:?} must be host[:port][/namespace...]");
    if p.contains(['@']) || p.ends_with('/') || p.is_empty() {
        return Err(bad());
    }
    if !p.contains('/') {
        return Named::parse(&format!("{p}/x"))
            .ok()
            .filter(|n| n.name == format!("{p}/x"))
            .map(drop)
            .ok_or_else(bad);
    }
    match Named::parse(p) {
        Ok(n) if n.tag.is_none() && n.name == p => Ok(()),
        _ => Err(bad()),
    }
}
