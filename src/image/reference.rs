//! Image references, normalised the way docker does (`busybox` → `docker.io/library/busybox:latest`).

use oci_client::Reference;

use super::ImageError;

/// Parses and normalises `reference`. A malformed reference is `ImageError::InvalidName`.
///
/// A reference carrying both a tag and a digest keeps both in its normalised form; the digest is
/// what is pulled.
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    let invalid = |message: String| ImageError::InvalidName {
        reference: reference.to_string(),
        message,
    };
    if reference.trim() != reference {
        return Err(invalid("leading or trailing whitespace".into()));
    }
    let parsed: Reference = reference.parse().map_err(|e| invalid(format!("{e}")))?;
    // docker refuses upper-case repository names; the registry would refuse them later anyway.
    if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("repository name must be lowercase".into()));
    }
    if let Some(digest) = parsed.digest() {
        if !digest.starts_with("sha256:") {
            return Err(invalid(format!("unsupported digest algorithm in {digest}")));
        }
    }
    Ok(parsed)
}

/// The normalised form of a reference, used as the key of the tag → digest store.
pub fn normalised(reference: &Reference) -> String {
    reference.whole()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalised(&parse(s).unwrap())
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(norm("quay.io/coreos/etcd:v3.5"), "quay.io/coreos/etcd:v3.5");
        assert_eq!(
            norm("127.0.0.1:5000/library/busybox:test"),
            "127.0.0.1:5000/library/busybox:test"
        );
        assert_eq!(norm("localhost/pause"), "localhost/pause:latest");
        let d = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            norm(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            norm(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        assert_eq!(
            parse(&format!("busybox@{d}")).unwrap().digest(),
            Some(d.as_str())
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            " busybox",
            "Busybox",
            "busybox:",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "http://busybox",
            "busy box",
            "busybox:tag:tag",
        ] {
            match parse(bad) {
                Err(ImageError::InvalidName { reference, .. }) => assert_eq!(reference, bad),
                other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
            }
        }
    }
}
