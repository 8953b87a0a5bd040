//! containers-policy.json(5), the file podman, skopeo and CRI-O read: parsing (as strictly
//! as containers/image: unknown fields and empty requirement lists are errors) and the
//! `docker` transport's scope lookup.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use serde_json::{Map, Value};

use super::identity::SignedIdentity;
use super::PolicyError;
use crate::image::reference::Named;

/// One requirement of a scope; every requirement of the scope must accept the image.
#[derive(Debug, Clone)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    SigstoreSigned {
        keys: Vec<VerifyingKey>,
        identity: SignedIdentity,
    },
}

impl Requirement {
    pub fn kind(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
        }
    }
}

/// A parsed policy: the default requirements and the `docker` transport's scopes.
/// Other transports (docker-daemon, oci, dir…) are not how hostlet reads images and are
/// not consulted.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file it came from; None for the built-in accept-anything policy.
    pub path: Option<PathBuf>,
    default: Vec<Requirement>,
    docker: HashMap<String, Vec<Requirement>>,
    /// No file: what is accepted is shown as accepted without a policy.
    builtin: bool,
}

impl Policy {
    /// Accepts every image: what hostlet does with no policy file.
    pub fn accept_anything() -> Self {
        Self {
            path: None,
            default: vec![Requirement::InsecureAcceptAnything],
            docker: HashMap::new(),
            builtin: true,
        }
    }

    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let err = |scope: &str, message: String| PolicyError {
            path: path.to_path_buf(),
            scope: scope.to_string(),
            message,
        };
        let text = std::fs::read(path).map_err(|e| err("", e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("/"));
        Self::parse(&text, base)
            .map(|mut p| {
                p.path = Some(path.to_path_buf());
                p
            })
            .map_err(|(scope, message)| err(&scope, message))
    }

    /// Parses policy JSON; relative key paths are read from `base`. The error names the
    /// scope (`default`, `docker:<scope>`) and what is wrong.
    pub fn parse(text: &[u8], base: &Path) -> Result<Self, (String, String)> {
        let top: Value =
            serde_json::from_slice(text).map_err(|e| (String::new(), e.to_string()))?;
        let top = object(&top, &["default", "transports"]).map_err(|m| (String::new(), m))?;
        let default = match top.get("default") {
            Some(v) => requirements(v, base).map_err(|m| ("default".to_string(), m))?,
            None => return Err((String::new(), "missing \"default\"".into())),
        };
        let mut docker = HashMap::new();
        if let Some(transports) = top.get("transports") {
            let transports = transports
                .as_object()
                .ok_or((String::from("transports"), String::from("not an object")))?;
            if let Some(scopes) = transports.get("docker") {
                let scopes = scopes
                    .as_object()
                    .ok_or((String::from("docker"), String::from("not an object")))?;
                for (scope, reqs) in scopes {
                    let at = |m: String| (format!("docker:{scope}"), m);
                    check_scope(scope).map_err(at)?;
                    docker.insert(scope.clone(), requirements(reqs, base).map_err(at)?);
                }
            }
        }
        Ok(Self {
            path: None,
            default,
            docker,
            builtin: false,
        })
    }

    /// The requirements for `reference` and the scope that supplied them (`""` is the docker
    /// transport's own default, `default` the policy's): the exact `name:tag` or
    /// `name@digest`, then the repository, each parent namespace, the registry, then
    /// `*.domain` wildcards from the most specific, as containers/image looks them up.
    pub fn requirements_for(&self, reference: &Named) -> (String, &[Requirement]) {
        for scope in scopes(reference) {
            if let Some(reqs) = self.docker.get(&scope) {
                return (scope, reqs);
            }
        }
        if let Some(reqs) = self.docker.get("") {
            return (String::new(), reqs);
        }
        let scope = if self.builtin { "no policy" } else { "default" };
        (scope.to_string(), &self.default)
    }

    /// Whether any requirement anywhere needs signatures (so there is something to fetch).
    pub fn wants_signatures(&self) -> bool {
        self.default
            .iter()
            .chain(self.docker.values().flatten())
            .any(|r| matches!(r, Requirement::SigstoreSigned { .. }))
    }
}

/// The scopes tried for `reference`, most specific first (containers/image's
/// PolicyConfigurationIdentity then PolicyConfigurationNamespaces). A reference with a
/// tag and a digest is identified by its digest, what is pulled.
pub fn scopes(reference: &Named) -> Vec<String> {
    let mut out = Vec::new();
    match (&reference.digest, &reference.tag) {
        (Some(d), _) => out.push(format!("{}@{d}", reference.name)),
        (None, Some(t)) => out.push(format!("{}:{t}", reference.name)),
        (None, None) => out.push(format!("{}:latest", reference.name)),
    }
    let mut name = reference.name.as_str();
    loop {
        out.push(name.to_string());
        match name.rfind('/') {
            Some(i) => name = &name[..i],
            None => break,
        }
    }
    // Wildcards are built from the host without its port.
    let mut host = name.split_once(':').map_or(name, |(h, _)| h);
    while let Some(i) = host.find('.') {
        host = &host[i + 1..];
        out.push(format!("*.{host}"));
    }
    out
}

fn check_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    if scope.contains("://") || scope.chars().any(char::is_whitespace) {
        return Err("a scope is a registry, namespace, repository or reference, not a URL".into());
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        let ok = !domain.is_empty()
            && domain.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err("a wildcard scope is *.DOMAIN (no port, no path)".into());
        }
    }
    Ok(())
}

/// Checks that `v` is an object with no keys besides `allowed`.
fn object<'a>(v: &'a Value, allowed: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown field {k:?}"));
    }
    Ok(o)
}

fn requirements(v: &Value, base: &Path) -> Result<Vec<Requirement>, String> {
    let list = v.as_array().ok_or("requirements must be a list")?;
    if list.is_empty() {
        return Err("the list of requirements must not be empty".into());
    }
    list.iter().map(|r| requirement(r, base)).collect()
}

fn requirement(v: &Value, base: &Path) -> Result<Requirement, String> {
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a requirement needs a \"type\"")?;
    match kind {
        "insecureAcceptAnything" => {
            object(v, &["type"])?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            object(v, &["type"])?;
            Ok(Requirement::Reject)
        }
        "sigstoreSigned" => sigstore_signed(v, base),
        "signedBy" => Err(
            "requirement type signedBy (GPG simple signing) is not supported by hostlet; use sigstoreSigned".into(),
        ),
        other => Err(format!("unsupported requirement type {other:?}")),
    }
}

fn sigstore_signed(v: &Value, base: &Path) -> Result<Requirement, String> {
    const KEYS: &[&str] = &["keyPath", "keyPaths", "keyData", "keyDatas"];
    const KEYLESS: &[&str] = &[
        "fulcio",
        "pki",
        "rekorPublicKeyPath",
        "rekorPublicKeyPaths",
        "rekorPublicKeyData",
        "rekorPublicKeyDatas",
    ];
    let o = v.as_object().ok_or("not a JSON object")?;
    if let Some(k) = o.keys().find(|k| KEYLESS.contains(&k.as_str())) {
        return Err(format!(
            "sigstoreSigned with {k:?} (keyless or Rekor verification) is not supported by hostlet; use a public key"
        ));
    }
    object(
        v,
        &[
            "type",
            "signedIdentity",
            "keyPath",
            "keyPaths",
            "keyData",
            "keyDatas",
        ],
    )?;
    let given: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| o.contains_key(*k))
        .collect();
    if given.len() != 1 {
        return Err(
            "sigstoreSigned needs exactly one of keyPath, keyPaths, keyData, keyDatas".into(),
        );
    }
    let strings = |key: &str| -> Result<Vec<String>, String> {
        match &o[key] {
            Value::String(s) => Ok(vec![s.clone()]),
            Value::Array(a) if !a.is_empty() => a
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or(format!("{key} must hold strings"))
                })
                .collect(),
            _ => Err(format!(
                "{key} must be a non-empty string or list of strings"
            )),
        }
    };
    let pems: Vec<Vec<u8>> = match given[0] {
        k @ ("keyPath" | "keyPaths") => strings(k)?
            .iter()
            .map(|p| {
                let path = base.join(p);
                std::fs::read(&path).map_err(|e| format!("{k} {}: {e}", path.display()))
            })
            .collect::<Result<_, _>>()?,
        k => strings(k)?
            .iter()
            .map(|d| {
                base64::engine::general_purpose::STANDARD
                    .decode(d)
                    .map_err(|e| format!("{k}: not base64: {e}"))
            })
            .collect::<Result<_, _>>()?,
    };
    let keys = pems
        .iter()
        .map(|pem| public_key(pem))
        .collect::<Result<_, _>>()?;
    let identity = match o.get("signedIdentity") {
        Some(i) => SignedIdentity::parse(i)?,
        None => SignedIdentity::MatchRepoDigestOrExact,
    };
    Ok(Requirement::SigstoreSigned { keys, identity })
}

/// A PEM `PUBLIC KEY` (what `cosign generate-key-pair` writes as cosign.pub), ECDSA P-256.
pub fn public_key(pem: &[u8]) -> Result<VerifyingKey, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "public key is not PEM text")?;
    VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
        format!("public key: {e} (hostlet verifies ECDSA P-256 keys, as cosign generates)")
    })
}
