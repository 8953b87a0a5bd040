//! Image trust: the signature policy (containers-policy.json(5)) and cosign signatures,
//! checked with the policy's public keys, offline, before any layer of an image is fetched
//! or unpacked.

pub mod cosign;
pub mod fetch;
pub mod identity;
pub mod policy;

use std::path::{Path, PathBuf};

use crate::image::reference::Named;
pub use cosign::Signature;
pub use policy::{Policy, Requirement};

/// The policy file used when `--signature-policy` is not given and the file exists.
pub const DEFAULT_POLICY: &str = "/etc/containers/policy.json";

/// A policy file hostlet cannot apply: never read as "accept".
#[derive(Debug, Clone, thiserror::Error)]
#[error("signature policy {}{}: {message}", path.display(), if scope.is_empty() { String::new() } else { format!(" (scope {scope:?})") })]
pub struct PolicyError {
    pub path: PathBuf,
    /// `default`, `docker:<scope>`, or empty for the file as a whole.
    pub scope: String,
    pub message: String,
}

/// Why an image was refused (the pod's reason is `SignatureValidationFailed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("signature policy rejects it (scope {scope:?})")]
    Rejected { scope: String },
    #[error("no signature found (scope {scope:?} requires sigstoreSigned){}", detail(.note))]
    Unsigned { scope: String, note: String },
    #[error("no valid signature (scope {scope:?}): {}", .problems.join("; "))]
    Invalid {
        scope: String,
        problems: Vec<String>,
    },
}

fn detail(note: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!(": {note}")
    }
}

impl TrustError {
    /// The label verification failures are counted under.
    pub fn label(&self) -> &'static str {
        match self {
            TrustError::Rejected { .. } => "rejected",
            TrustError::Unsigned { .. } => "unsigned",
            TrustError::Invalid { .. } => "invalid",
        }
    }
}

/// How an image was accepted: the requirement type(s) and the scope that chose them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub requirements: String,
    pub scope: String,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.requirements, self.scope)
    }
}

/// Loads the policy: `path` if given (an error if unreadable), else DEFAULT_POLICY if it
/// exists, else accept-anything, said once in the log.
pub fn load(path: Option<&Path>) -> Result<Policy, PolicyError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_POLICY).exists() => PathBuf::from(DEFAULT_POLICY),
        None => {
            tracing::info!(
                "no signature policy ({DEFAULT_POLICY} does not exist, --signature-policy not given): images are accepted without signature checks"
            );
            return Ok(Policy::accept_anything());
        }
    };
    let policy = Policy::load(&path)?;
    tracing::info!(path = %path.display(), "signature policy loaded");
    Ok(policy)
}

/// Judges `intended` (what was asked for) whose top-level manifest is `digest`, under
/// `reqs` from `scope`, with the signatures found beside it. `note` says why none could be
/// read, for the message.
pub fn evaluate(
    reqs: &[Requirement],
    scope: &str,
    intended: &Named,
    digest: &str,
    signatures: &[Signature],
    note: &str,
) -> Result<Verdict, TrustError> {
    let shown_scope = if scope.is_empty() { "docker" } else { scope };
    for req in reqs {
        match req {
            Requirement::InsecureAcceptAnything => {}
            Requirement::Reject => {
                return Err(TrustError::Rejected {
                    scope: shown_scope.to_string(),
                })
            }
            Requirement::SigstoreSigned { keys, identity } => {
                if signatures.is_empty() {
                    return Err(TrustError::Unsigned {
                        scope: shown_scope.to_string(),
                        note: note.to_string(),
                    });
                }
                let mut problems = Vec::new();
                let accepted = signatures.iter().any(|sig| {
                    match check_one(sig, keys, identity, intended, digest) {
                        Ok(()) => true,
                        Err(p) => {
                            if !problems.contains(&p) {
                                problems.push(p);
                            }
                            false
                        }
                    }
                });
                if !accepted {
                    return Err(TrustError::Invalid {
                        scope: shown_scope.to_string(),
                        problems,
                    });
                }
            }
        }
    }
    let mut kinds: Vec<&str> = reqs.iter().map(Requirement::kind).collect();
    kinds.dedup();
    Ok(Verdict {
        requirements: kinds.join("+"),
        scope: shown_scope.to_string(),
    })
}

fn check_one(
    sig: &Signature,
    keys: &[p256::ecdsa::VerifyingKey],
    identity: &identity::SignedIdentity,
    intended: &Named,
    digest: &str,
) -> Result<(), String> {
    // The signature first: nothing in an unverified payload is believed.
    if !cosign::signed_by(sig, keys) {
        return Err("signature does not verify with the policy's keys".into());
    }
    let payload = cosign::parse_payload(&sig.payload)?;
    if payload.manifest_digest != digest {
        return Err(format!(
            "signed manifest {} is not the one pulled ({digest})",
            payload.manifest_digest
        ));
    }
    if !identity.matches(intended, &payload.docker_reference) {
        return Err(format!(
            "signed identity {:?} does not match {intended} ({identity:?})",
            payload.docker_reference
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
