//! Image references, normalised the way docker does (`busybox` → `docker.io/library/busybox:latest`).
//!
//! Parsed by hand rather than with `Reference::from_str`: oci-spec matches references with one
//! large Unicode regex whose compiled form stays in the agent's heap for its lifetime (~7 MB
//! measured, see BENCHMARKS.md row 4a). The grammar and the normalisation are those of
//! `ParseNormalizedNamed` in `github.com/distribution/reference`, the parser docker,
//! containerd, podman and the kubelet use; its own test vectors are in `reference/vectors.rs`.
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [ domain "/" ] path-component [ "/" path-component ]*
//! domain           := host [ ":" port ]
//! host             := domain-component [ "." domain-component ]* | "[" [a-fA-F0-9:]+ "]"
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := [a-z0-9]+ [ separator [a-z0-9]+ ]*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest           := "sha256:" [a-f0-9]{64} | "sha384:" [a-f0-9]{96} | "sha512:" [a-f0-9]{128}
//! ```
//!
//! The first of several components is the domain when it contains `.` or `:`, is `localhost`,
//! or has an upper-case letter (repository names never do); otherwise the registry is
//! `docker.io`, and a one-component name there gets `library/`. A bare 64-hex string is
//! refused: it is an image ID, not a name. One deliberate difference: distribution accepts a
//! "domain" that fails the host grammar but happens to be a valid path (`a__b.c/x`), giving a
//! name with no registry at all, which nothing can pull; hostlet refuses it.

use oci_client::Reference;

use super::ImageError;

/// Why a string is not an image reference (distribution's grammar, docker's rules).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("repository name must have at least one component")]
    Empty,
    #[error("leading or trailing whitespace")]
    Whitespace,
    #[error("repository name must not be more than {NAME_MAX} characters")]
    TooLong,
    #[error("invalid registry host {0:?}")]
    Registry(String),
    #[error("invalid port in registry {0:?}")]
    Port(String),
    #[error("repository name must be lowercase")]
    Uppercase,
    #[error("invalid repository name component {0:?}")]
    Component(String),
    #[error("invalid tag {0:?}")]
    Tag(String),
    #[error("invalid digest {0:?}")]
    Digest(String),
    #[error("unsupported digest algorithm in {0}")]
    Algorithm(String),
    #[error("invalid digest {0:?}: wrong length or not lower-case hex")]
    DigestHex(String),
    #[error("repository name cannot be a 64-character hexadecimal string (an image id)")]
    Identifier,
    /// A short digest given to `rmi` names more than one image.
    #[error("digest prefix matches several images")]
    AmbiguousDigest,
}

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
const DEFAULT_TAG: &str = "latest";
/// distribution's NameTotalLengthMax, checked on the normalised `registry/repository`.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// Parses and normalises `reference`. A malformed reference is `ImageError::InvalidName`.
///
/// A reference carrying both a tag and a digest keeps both in its normalised form; the digest is
/// what is pulled.
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    split(reference).map_err(|reason| ImageError::InvalidName {
        reference: reference.to_string(),
        reason,
    })
}

/// The normalised form of a reference, used as the key of the tag → digest store.
pub fn normalised(reference: &Reference) -> String {
    reference.whole()
}

/// A reference's parts as written: no default tag (a name alone is distribution's
/// "name only", which signature identities distinguish from `:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// `registry/repository`, normalised (`docker.io/library/busybox`).
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Named {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let (registry, repository, tag, digest) = split_parts(s)?;
        Ok(Self {
            name: format!("{registry}/{repository}"),
            tag,
            digest,
        })
    }

    /// The registry part of the name (`host[:port]`).
    pub fn registry(&self) -> &str {
        self.name.split_once('/').map_or(&*self.name, |(r, _)| r)
    }
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn split(s: &str) -> Result<Reference, ReferenceError> {
    let (registry, repository, tag, digest) = split_parts(s)?;
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (Some(t), None) => Reference::with_tag(registry, repository, t),
        (None, None) => Reference::with_tag(registry, repository, DEFAULT_TAG.into()),
    })
}

type Parts = (String, String, Option<String>, Option<String>);

fn split_parts(s: &str) -> Result<Parts, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if s.trim() != s {
        return Err(ReferenceError::Whitespace);
    }
    if s.len() == 64 && is_lower_hex(s) {
        return Err(ReferenceError::Identifier);
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
        None => (s, None),
    };
    // A ':' after the last '/' starts the tag; one before it belongs to the registry's port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let (name, tag) = rest.split_at(last_slash + i);
            (name, Some(check_tag(&tag[1..])?))
        }
        None => (rest, None),
    };
    let (registry, repository) = split_domain(name)?;
    if registry.len() + 1 + repository.len() > NAME_MAX {
        return Err(ReferenceError::TooLong);
    }
    Ok((registry, repository, tag, digest))
}

/// Splits `name` into (registry, repository), checking both and applying docker.io's defaults.
fn split_domain(name: &str) -> Result<(String, String), ReferenceError> {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first == "localhost"
                || first.contains(['.', ':'])
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            check_domain(first)?;
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    };
    for component in path.split('/') {
        check_path_component(component)?;
    }
    let domain = if domain == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        domain
    };
    let repository = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    Ok((domain.to_string(), repository))
}

/// `host[:port]`, the host a DNS-like name, an IPv4 address or an IPv6 address in brackets
/// (no zone, no embedded IPv4: distribution's subset).
fn check_domain(domain: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Registry(domain.to_string());
    let (host, port) = if let Some(inner) = domain.strip_prefix('[') {
        let (address, after) = inner.split_once(']').ok_or_else(bad)?;
        let ok = !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
        if !ok {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err(bad()),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ReferenceError::Port(domain.to_string()));
        }
    }
    for label in host.into_iter().flat_map(|h| h.split('.')) {
        let b = label.as_bytes();
        let ok = !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-';
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), ReferenceError> {
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        // docker refuses upper-case repository names; the registry would refuse them later anyway.
        return Err(ReferenceError::Uppercase);
    }
    let bad = || ReferenceError::Component(component.to_string());
    let b = component.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or a run of '-', always between alphanumerics.
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return Err(bad()),
        }
        if !b.get(i).copied().is_some_and(alnum) {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<String, ReferenceError> {
    let b = tag.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let ok = !b.is_empty()
        && b.len() <= TAG_MAX
        && word(&b[0])
        && b[1..].iter().all(|c| word(c) || *c == b'.' || *c == b'-');
    if ok {
        Ok(tag.to_string())
    } else {
        Err(ReferenceError::Tag(tag.to_string()))
    }
}

/// go-digest's rules for the algorithms distribution registers (sha256, sha384, sha512).
/// hostlet computes only sha256: a pull by another digest fails on the digest check.
fn check_digest(digest: &str) -> Result<String, ReferenceError> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(ReferenceError::Digest(digest.to_string()));
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(ReferenceError::Algorithm(digest.to_string())),
    };
    if hex.len() != len || !is_lower_hex(hex) {
        return Err(ReferenceError::DigestHex(digest.to_string()));
    }
    Ok(digest.to_string())
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod vectors;
