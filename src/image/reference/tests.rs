use super::*;

fn norm(s: &str) -> String {
    normalised(&parse(s).unwrap())
}

fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
    let r = parse(s).unwrap();
    (
        r.registry().to_string(),
        r.repository().to_string(),
        r.tag().map(str::to_string),
        r.digest().map(str::to_string),
    )
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
    assert_eq!(
        norm("index.docker.io/busybox"),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        norm("docker.io/busybox"),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
    assert_eq!(norm("quay.io/coreos/etcd:v3.5"), "quay.io/coreos/etcd:v3.5");
    assert_eq!(
        norm("127.0.0.1:5000/library/busybox:test"),
        "127.0.0.1:5000/library/busybox:test"
    );
    assert_eq!(norm("localhost/pause"), "localhost/pause:latest");
    assert_eq!(norm("localhost:5000/pause"), "localhost:5000/pause:latest");
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

/// The cases of oci-spec's own reference tests that hostlet accepts, split the same way.
#[test]
fn splits_like_oci_spec() {
    let s = |x: &str| x.to_string();
    let d = "sha256:".to_string() + &"0123456789abcdef".repeat(4);
    assert_eq!(
        parts("test.com:tag"),
        (s("docker.io"), s("library/test.com"), Some(s("tag")), None)
    );
    assert_eq!(
        parts("test.com:5000"),
        (s("docker.io"), s("library/test.com"), Some(s("5000")), None)
    );
    assert_eq!(
        parts("test.com/repo:tag"),
        (s("test.com"), s("repo"), Some(s("tag")), None)
    );
    assert_eq!(
        parts("test:5000/repo"),
        (s("test:5000"), s("repo"), Some(s("latest")), None)
    );
    assert_eq!(
        parts(&format!("test:5000/repo@{d}")),
        (s("test:5000"), s("repo"), None, Some(d.clone()))
    );
    assert_eq!(
        parts(&format!("test:5000/repo:tag@{d}")),
        (s("test:5000"), s("repo"), Some(s("tag")), Some(d.clone()))
    );
    assert_eq!(
        parts("sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
        (
            s("sub-dom1.foo.com"),
            s("bar/baz/quux"),
            Some(s("some-long-tag")),
            None
        )
    );
    assert_eq!(
        parts("b.gcr.io/test.example.com/my-app:test.example.com"),
        (
            s("b.gcr.io"),
            s("test.example.com/my-app"),
            Some(s("test.example.com")),
            None
        )
    );
    assert_eq!(
        parts("xn--n3h.com/myimage:xn--n3h.com"),
        (s("xn--n3h.com"), s("myimage"), Some(s("xn--n3h.com")), None)
    );
    // Upper-case hosts are valid, upper-case repositories are not.
    assert_eq!(
        parts("Docker.Example.com/foo:TAG_1"),
        (s("Docker.Example.com"), s("foo"), Some(s("TAG_1")), None)
    );
}

#[test]
fn path_component_separators() {
    for ok in ["a.b", "a_b", "a__b", "a-b", "a---b", "a0.b1_c2__d3-e4", "0"] {
        assert!(parse(ok).is_ok(), "{ok:?} should parse");
    }
    for bad in [
        "a..b", "a___b", "a._b", "-a", "a-", ".a", "a.", "_a", "a_", "a/", "/a", "a//b",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn lengths() {
    let tag = "t".repeat(TAG_MAX);
    assert!(parse(&format!("busybox:{tag}")).is_ok());
    assert!(parse(&format!("busybox:{tag}t")).is_err());
    // docker.io/library/ is 18 characters of the 255.
    let name = "a".repeat(NAME_MAX - 18);
    assert!(parse(&name).is_ok());
    assert!(parse(&format!("{name}a")).is_err());
}

#[test]
fn rejects_malformed() {
    let d = "a".repeat(64);
    for bad in [
        "",
        " busybox",
        "busybox ",
        "Busybox",
        "library/Busybox",
        "busybox:",
        "busybox@",
        "busybox@sha256:abc",
        "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
        &format!("busybox@sha256:{}", d.to_uppercase()),
        &format!("busybox@sha256:{d}a"),
        &format!("busybox@sha256:{d}@sha256:{d}"),
        "http://busybox",
        "busy box",
        "busybox:tag:tag",
        "busybox:-tag",
        "busybox:ta g",
        "busybox:tä",
        "localhost:/busybox",
        "localhost:50a0/busybox",
        "-bad.com/busybox",
        "bad-.com/busybox",
        "bad..com/busybox",
        "a__b.c/busybox",
        "[::1]:5000/Busybox",
        "[::1%lo]:5000/busybox",
    ] {
        match parse(bad) {
            Err(ImageError::InvalidName { reference, .. }) => assert_eq!(reference, bad),
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
    }
}

#[test]
fn messages_name_the_problem() {
    let msg = |s: &str| parse(s).unwrap_err().to_string();
    assert!(
        msg("Busybox").contains("must be lowercase"),
        "{}",
        msg("Busybox")
    );
    assert!(msg("busybox@md5:00").contains("unsupported digest algorithm"));
    assert!(msg("busybox:").contains("invalid tag"));
    assert!(msg("bad..com/x").contains("invalid registry host"));
}
