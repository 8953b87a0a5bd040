//! The signature check of a pull: the policy's requirements for the reference, the
//! signatures beside the image when a requirement needs them, the verdict.

use super::reference::Named;
use super::trust::{self, fetch, Requirement};
use super::*;

impl ImageStore {
    /// Judges the image `asked` resolved to (`digest`: the manifest or index the reference
    /// names) under the signature policy. A refusal is counted and is the pull's error.
    ///
    /// The scope and the signed identity are those of `asked`, the name the pod gave, even
    /// when a mirror served: the signatures are read beside the manifest where it was found,
    /// and one only counts if it signs `digest`, the digest of the bytes that source served.
    pub(super) async fn verify(
        &self,
        session: &registry::Session,
        asked: &Reference,
        key: &str,
        digest: &str,
    ) -> Result<trust::Verdict, ImageError> {
        let started = std::time::Instant::now();
        let intended = intended(asked);
        let (scope, reqs) = self.policy.requirements_for(&intended);
        let wants = reqs
            .iter()
            .any(|r| matches!(r, Requirement::SigstoreSigned { .. }));
        let (signatures, note) = if wants {
            fetch::from_registry(session, &session.reference, digest).await
        } else {
            (Vec::new(), String::new())
        };
        let verdict = self.judge(reqs, &scope, &intended, key, digest, &signatures, &note);
        // What verification adds to a pull (benches/trust.sh reads it).
        tracing::debug!(reference = %key, elapsed_us = started.elapsed().as_micros() as u64, signatures = signatures.len(), "signature check");
        verdict
    }

    /// Judges an imported image named `name` (normalised) whose top manifest is `digest`,
    /// with the signatures its archive carried.
    pub(super) fn judge_imported(
        &self,
        name: &str,
        digest: &str,
        signatures: &[trust::Signature],
    ) -> Result<trust::Verdict, ImageError> {
        let intended = intended(&reference::parse(name)?);
        let (scope, reqs) = self.policy.requirements_for(&intended);
        let note = "the archive carries no signature for it";
        self.judge(reqs, &scope, &intended, name, digest, signatures, note)
    }

    /// The verdict of `reqs` on the image, logged; a refusal counted and made an error.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn judge(
        &self,
        reqs: &[Requirement],
        scope: &str,
        intended: &Named,
        key: &str,
        digest: &str,
        signatures: &[trust::Signature],
        note: &str,
    ) -> Result<trust::Verdict, ImageError> {
        match trust::evaluate(reqs, scope, intended, digest, signatures, note) {
            Ok(v) => {
                tracing::debug!(reference = %key, %digest, verified = %v, "image accepted by the signature policy");
                Ok(v)
            }
            Err(reason) => {
                crate::metrics::signature_failure(reason.label());
                tracing::warn!(reference = %key, %digest, error = %reason, "image refused by the signature policy");
                Err(ImageError::Signature {
                    reference: key.to_string(),
                    reason,
                })
            }
        }
    }
}

/// The reference as the policy sees it (normalised, `latest` when no tag was given, as
/// containers/image's docker transport does).
pub(super) fn intended(parsed: &Reference) -> Named {
    Named {
        name: format!("{}/{}", parsed.registry(), parsed.repository()),
        tag: parsed.tag().map(str::to_string),
        digest: parsed.digest().map(str::to_string),
    }
}
