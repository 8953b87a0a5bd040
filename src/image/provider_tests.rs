use super::*;

/// A plugin script in `dir` answering with `cache_key_type` and counting its runs in `dir/runs`.
fn plugin(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho run >> {}/runs\n{body}\n", dir.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn config(dir: &Path, providers: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n{providers}"),
    )
    .unwrap();
    path
}

fn provider(name: &str, images: &str) -> String {
    format!("- name: {name}\n  matchImages: [{images}]\n  defaultCacheDuration: 1h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n")
}

fn answer(key_type: &str) -> String {
    format!(
        r#"cat > /dev/null; echo '{{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"{key_type}","auth":{{"*.example.com":{{"username":"u","password":"p"}}}}}}'"#
    )
}

#[test]
fn match_images_as_the_kubelet() {
    let tmp = tempfile::tempdir().unwrap();
    plugin(tmp.path(), "p", "true");
    let cfg = config(
        tmp.path(),
        &provider("p", "'*.dkr.ecr.*.amazonaws.com', 'reg.example:5000/team'"),
    );
    let ps = Providers::load(&cfg, tmp.path(), DEFAULT_TIMEOUT).unwrap();
    let m = |image: &str| ps.providers[0].matches(image);
    assert!(m("123.dkr.ecr.us-east-1.amazonaws.com/app"));
    assert!(!m("dkr.ecr.us-east-1.amazonaws.com/app"));
    assert!(!m("123.dkr.ecr.us-east-1.amazonaws.com:443/app"));
    assert!(m("reg.example:5000/team/app"));
    assert!(!m("reg.example:5000/other"));
    assert!(!m("reg.example/team/app"));
}

#[test]
fn invalid_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    plugin(tmp.path(), "p", "true");
    for (providers, want) in [
        (provider("missing", "'a.io'"), "no plugin binary"),
        (provider("../p", "'a.io'"), "not a plain file name"),
        (provider("p", ""), "matchImages is required"),
        (
            provider("p", "'a.io'").replace("1h", "soon"),
            "invalid defaultCacheDuration",
        ),
        (
            provider("p", "'a.io'").replace("kubelet.k8s.io/v1\n", "kubelet.k8s.io/v2\n"),
            "apiVersion",
        ),
    ] {
        let cfg = config(tmp.path(), &providers);
        let e = Providers::load(&cfg, tmp.path(), DEFAULT_TIMEOUT)
            .expect_err(want)
            .to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[tokio::test]
async fn cache_keys_image_registry_global() {
    for (key_type, runs_for_three) in [("Image", 2), ("Registry", 2), ("Global", 1)] {
        let tmp = tempfile::tempdir().unwrap();
        plugin(tmp.path(), "p", &answer(key_type));
        let cfg = config(tmp.path(), &provider("p", "'*.example.com'"));
        let ps = Providers::load(&cfg, tmp.path(), DEFAULT_TIMEOUT).unwrap();
        // Two images of a.example.com (twice the first), one of b.example.com.
        for image in [
            "a.example.com/x",
            "a.example.com/x",
            "a.example.com/y",
            "b.example.com/x",
        ] {
            let ring = ps.lookup(image).await;
            assert_eq!(ring.lookup(image)[0].user, "u", "{key_type} {image}");
        }
        let want = match key_type {
            "Image" => 3,
            _ => runs_for_three,
        };
        assert_eq!(runs(tmp.path()), want, "{key_type}");
    }
}

#[tokio::test]
async fn failures_and_timeouts_give_no_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    plugin(tmp.path(), "fails", "echo boom >&2; exit 3");
    plugin(tmp.path(), "hangs", "exec sleep 30");
    plugin(tmp.path(), "garbage", "echo '{}'");
    let cfg = config(
        tmp.path(),
        &[
            provider("fails", "'*.example.com'"),
            provider("hangs", "'*.example.com'"),
            provider("garbage", "'*.example.com'"),
        ]
        .concat(),
    );
    let ps = Providers::load(&cfg, tmp.path(), Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    assert!(ps.lookup("a.example.com/x").await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let e = ps.providers[0]
        .exec("a.example.com/x", DEFAULT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(e.contains("boom"), "{e}");
    let e = ps.providers[1]
        .exec("a.example.com/x", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(e.contains("timed out"), "{e}");
    let e = ps.providers[2]
        .exec("a.example.com/x", DEFAULT_TIMEOUT)
        .await
        .unwrap_err();
    assert!(e.contains("CredentialProviderResponse"), "{e}");
}
