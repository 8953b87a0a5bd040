//! Registry credentials from docker `config.json` files, looked up as the kubelet does:
//! `<root-dir>/config.json`, then `$HOME/.docker/config.json`. The first file with an entry for
//! the image wins. Files are read at every pull, so edited credentials apply without a restart.

use std::path::{Path, PathBuf};

use super::keyring::{Credential, Keyring};

/// The files searched, in order.
pub fn search_paths(root_dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![root_dir.join("config.json")];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        paths.push(PathBuf::from(home).join(".docker").join("config.json"));
    }
    paths
}

/// The credentials of the first file with entries for `image` (`host[:port]/repository`),
/// most specific first; empty: anonymous. Unreadable or malformed files are logged and skipped.
pub fn lookup(paths: &[PathBuf], image: &str) -> Vec<Credential> {
    for path in paths {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read registry credentials");
                continue;
            }
        };
        let ring = match Keyring::from_config_json(&path.display().to_string(), &bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "invalid registry credentials file");
                continue;
            }
        };
        let found: Vec<Credential> = ring.lookup(image).into_iter().cloned().collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(found: Vec<Credential>) -> Option<(String, String)> {
        found.into_iter().next().map(|c| (c.user, c.password))
    }

    #[test]
    fn first_file_with_an_entry_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a.json");
        let b = tmp.path().join("b.json");
        // "alice:s3cr:et" in base64: the password may contain ':'.
        std::fs::write(
            &a,
            r#"{"auths":{"reg.example:5000":{"auth":"YWxpY2U6czNjcjpldA=="}}}"#,
        )
        .unwrap();
        std::fs::write(
            &b,
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"bob","password":"pw"},
                "reg.example:5000":{"username":"ignored","password":"x"}}}"#,
        )
        .unwrap();
        let paths = [tmp.path().join("missing.json"), a, b];
        assert_eq!(
            first(lookup(&paths, "reg.example:5000/app")),
            Some(("alice".into(), "s3cr:et".into()))
        );
        assert_eq!(
            first(lookup(&paths, "index.docker.io/library/busybox")),
            Some(("bob".into(), "pw".into()))
        );
        assert!(lookup(&paths, "quay.io/x").is_empty());
    }
}
