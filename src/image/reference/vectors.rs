//! distribution/reference's own test vectors (normalize_test.go: TestValidateReferenceName,
//! TestValidateRemoteName, TestParseRepositoryInfo, TestNormalizedSplitHostname,
//! TestParseReferenceWithTagAndDigest; reference_test.go: TestReferenceParse), with the
//! outcome `ParseNormalizedNamed` gives for each. reference_test.go tests the unnormalised
//! `Parse`; its inputs are kept and the expected results are those after normalisation
//! (`test.com:tag` is `docker.io/library/test.com` tagged `tag`), the rule it applies being
//! splitDockerDomain's, so the domain and path columns differ from that file's where it
//! has no domain.

use super::*;

const FF64: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const HEX64: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

/// (input, Some((domain, path, tag, digest))) for a valid reference, None for an invalid one.
type Vector = (
    String,
    Option<(String, String, Option<String>, Option<String>)>,
);

fn ok(input: &str, domain: &str, path: &str, tag: Option<&str>, digest: Option<&str>) -> Vector {
    (
        input.to_string(),
        Some((
            domain.to_string(),
            path.to_string(),
            tag.map(str::to_string),
            digest.map(str::to_string),
        )),
    )
}

fn bad(input: &str) -> Vector {
    (input.to_string(), None)
}

/// Names valid for ParseNormalizedNamed, checked for success only (TestValidateReferenceName,
/// TestValidateRemoteName).
const VALID_NAMES: &[&str] = &[
    "docker/docker",
    "library/debian",
    "debian",
    "localhost/library/debian",
    "localhost/debian",
    "LOCALDOMAIN/library/debian",
    "LOCALDOMAIN/debian",
    "docker.io/docker/docker",
    "docker.io/library/debian",
    "docker.io/debian",
    "index.docker.io/docker/docker",
    "index.docker.io/library/debian",
    "index.docker.io/debian",
    "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian",
    "127.0.0.1:5000/debian",
    "192.168.0.1",
    "192.168.0.1:80",
    "192.168.0.1:8/debian",
    "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker",
    "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    "Docker/docker",
    "DOCKER/docker",
    "docker-rules/docker",
    "docker---rules/docker",
    "doc/docker",
    "d/docker",
    "jess/t",
    "dock__er/docker",
];

const INVALID_NAMES: &[&str] = &[
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    HEX64,
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
];

/// TestParseRepositoryInfo: (familiar, full, ambiguous, domain, path); every form of a row
/// normalises to the same domain and path.
const REPOSITORY_INFO: &[(&str, &str, &str, &str, &str)] = &[
    (
        "fooo/bar",
        "docker.io/fooo/bar",
        "index.docker.io/fooo/bar",
        "docker.io",
        "fooo/bar",
    ),
    (
        "ubuntu",
        "docker.io/library/ubuntu",
        "library/ubuntu",
        "docker.io",
        "library/ubuntu",
    ),
    (
        "nonlibrary/ubuntu",
        "docker.io/nonlibrary/ubuntu",
        "",
        "docker.io",
        "nonlibrary/ubuntu",
    ),
    (
        "other/library",
        "docker.io/other/library",
        "",
        "docker.io",
        "other/library",
    ),
    (
        "127.0.0.1:8000/private/moonbase",
        "127.0.0.1:8000/private/moonbase",
        "",
        "127.0.0.1:8000",
        "private/moonbase",
    ),
    (
        "127.0.0.1:8000/privatebase",
        "127.0.0.1:8000/privatebase",
        "",
        "127.0.0.1:8000",
        "privatebase",
    ),
    (
        "example.com/private/moonbase",
        "example.com/private/moonbase",
        "",
        "example.com",
        "private/moonbase",
    ),
    (
        "example.com/privatebase",
        "example.com/privatebase",
        "",
        "example.com",
        "privatebase",
    ),
    (
        "example.com:8000/private/moonbase",
        "example.com:8000/private/moonbase",
        "",
        "example.com:8000",
        "private/moonbase",
    ),
    (
        "example.com:8000/privatebasee",
        "example.com:8000/privatebasee",
        "",
        "example.com:8000",
        "privatebasee",
    ),
    (
        "ubuntu-12.04-base",
        "docker.io/library/ubuntu-12.04-base",
        "index.docker.io/library/ubuntu-12.04-base",
        "docker.io",
        "library/ubuntu-12.04-base",
    ),
    (
        "foo",
        "docker.io/library/foo",
        "docker.io/foo",
        "docker.io",
        "library/foo",
    ),
    (
        "library/foo/bar",
        "docker.io/library/foo/bar",
        "",
        "docker.io",
        "library/foo/bar",
    ),
    (
        "store/foo/bar",
        "docker.io/store/foo/bar",
        "",
        "docker.io",
        "store/foo/bar",
    ),
    ("Foo/bar", "Foo/bar", "", "Foo", "bar"),
    ("FOO/bar", "FOO/bar", "", "FOO", "bar"),
];

/// TestNormalizedSplitHostname: (input, domain, path).
const SPLIT_HOSTNAME: &[(&str, &str, &str)] = &[
    ("test.com/foo", "test.com", "foo"),
    ("test_com/foo", "docker.io", "test_com/foo"),
    ("docker/migrator", "docker.io", "docker/migrator"),
    ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"),
    ("foo", "docker.io", "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
];

/// reference_test.go's TestReferenceParse inputs, with ParseNormalizedNamed's outcome.
fn reference_parse() -> Vec<Vector> {
    let sha = format!("sha256:{FF64}");
    let sha512 = format!("sha512:{FF64}{FF64}");
    let lib = "docker.io";
    vec![
        ok("test_com", lib, "library/test_com", None, None),
        ok("test.com:tag", lib, "library/test.com", Some("tag"), None),
        ok("test.com:5000", lib, "library/test.com", Some("5000"), None),
        ok("test.com/repo:tag", "test.com", "repo", Some("tag"), None),
        ok("test:5000/repo", "test:5000", "repo", None, None),
        ok("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None),
        ok(
            &format!("test:5000/repo@{sha}"),
            "test:5000",
            "repo",
            None,
            Some(&sha),
        ),
        ok(
            &format!("test:5000/repo:tag@{sha}"),
            "test:5000",
            "repo",
            Some("tag"),
            Some(&sha),
        ),
        bad(""),
        bad(":justtag"),
        bad(&format!("@{sha}")),
        bad("repo@sha256:ffffffffffffffffffffffffffffffffff"),
        bad(&format!("validname@invaliddigest:{FF64}")),
        bad("Uppercase:tag"),
        // Upper case makes the first component a domain (the FIXME in reference_test.go).
        ok(
            "Uppercase/lowercase:tag",
            "Uppercase",
            "lowercase",
            Some("tag"),
            None,
        ),
        bad("test:5000/Uppercase/lowercase:tag"),
        ok("lowercase:Uppercase", lib, "library/lowercase", Some("Uppercase"), None),
        bad(&format!("{}a:tag", "a/".repeat(128))),
        // 255 characters unnormalised, over the limit once docker.io/ is added.
        bad(&format!("{}a:tag-puts-this-over-max", "a/".repeat(127))),
        bad("aa/asdf$$^/aa"),
        ok(
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            None,
            None,
        ),
        ok(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        ),
        ok(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        ),
        ok(
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
            Some("xn--n3h.com"),
            None,
        ),
        ok(
            &format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
            "xn--7o8h.com",
            "myimage",
            Some("xn--7o8h.com"),
            Some(&sha512),
        ),
        ok("foo_bar.com:8080", lib, "library/foo_bar.com", Some("8080"), None),
        ok("foo/foo_bar.com:8080", lib, "foo/foo_bar.com", Some("8080"), None),
        ok("192.168.1.1", lib, "library/192.168.1.1", None, None),
        ok("192.168.1.1:tag", lib, "library/192.168.1.1", Some("tag"), None),
        ok("192.168.1.1:5000", lib, "library/192.168.1.1", Some("5000"), None),
        ok("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
        ok("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", None, None),
        ok(
            "192.168.1.1:5000/repo:5050",
            "192.168.1.1:5000",
            "repo",
            Some("5050"),
            None,
        ),
        bad("[2001:db8::1]"),
        bad("[2001:db8::1]:5000"),
        bad("[2001:db8::1]:tag"),
        ok("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
        ok(
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "repo",
            Some("tag"),
            None,
        ),
        ok("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", None, None),
        ok(
            "[2001:db8::1]:5000/repo:tag",
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            None,
        ),
        ok(
            &format!("[2001:db8::1]:5000/repo@{sha}"),
            "[2001:db8::1]:5000",
            "repo",
            None,
            Some(&sha),
        ),
        ok(
            &format!("[2001:db8::1]:5000/repo:tag@{sha}"),
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            Some(&sha),
        ),
        ok("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", None, None),
        ok("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
        bad("[fe80::1%eth0]:5000/repo"),
        bad("[fe80::1%@invalidzone]:5000/repo"),
        // TestParseReferenceWithTagAndDigest
        ok(
            "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
            lib,
            "library/busybox",
            Some("latest"),
            Some("sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"),
        ),
        // TestInvalidReferenceComponents, TestParseAnyReference's named cases
        bad("-foo"),
        ok(
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
            lib,
            "library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
            None,
            None,
        ),
        ok("dbcc1", lib, "library/dbcc1", None, None),
        ok("dmcgowan/myapp:latest", lib, "dmcgowan/myapp", Some("latest"), None),
    ]
}

/// What hostlet's parser makes of `input`, in the vectors' terms (no tag is None: the
/// `latest` hostlet adds is distribution's TagNameOnly, a later step).
fn hostlet(input: &str) -> Option<(String, String, Option<String>, Option<String>)> {
    let r = split(input).ok()?;
    let explicit_tag = input
        .split('@')
        .next()
        .and_then(|name| name.rsplit('/').next())
        .is_some_and(|last| last.contains(':'));
    Some((
        r.registry().to_string(),
        r.repository().to_string(),
        r.tag().filter(|_| explicit_tag).map(str::to_string),
        r.digest().map(str::to_string),
    ))
}

#[test]
fn agrees_with_distribution_reference() {
    let mut vectors = reference_parse();
    vectors.extend(
        VALID_NAMES
            .iter()
            .map(|n| (n.to_string(), Some(Default::default()))),
    );
    vectors.extend(INVALID_NAMES.iter().map(|n| bad(n)));
    for (familiar, full, ambiguous, domain, path) in REPOSITORY_INFO {
        for input in [familiar, full, ambiguous]
            .into_iter()
            .filter(|s| !s.is_empty())
        {
            vectors.push(ok(input, domain, path, None, None));
        }
    }
    for (input, domain, path) in SPLIT_HOSTNAME {
        vectors.push(ok(input, domain, path, None, None));
    }
    let mut disagreements = Vec::new();
    for (input, want) in &vectors {
        let got = hostlet(input);
        let agrees = match (want, &got) {
            // VALID_NAMES: validity only
            (Some(w), Some(_)) if w.0.is_empty() => true,
            (w, g) => w == g,
        };
        if !agrees {
            disagreements.push(format!("{input:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} vectors disagree:\n{}",
        disagreements.len(),
        vectors.len(),
        disagreements.join("\n")
    );
}

#[test]
fn identifier_only_when_whole() {
    assert_eq!(split(HEX64).unwrap_err(), ReferenceError::Identifier);
    assert!(split(&format!("{HEX64}:tag")).is_ok());
    assert!(split(&format!("docker.io/{HEX64}")).is_ok());
}
