//! Vectors from containers/image `pkg/sysregistriesv2`: `TestRefMatchingPrefix`,
//! `TestRefMatchingSubdomainPrefix`, `TestFindRegistry` (on `testdata/find-registry.conf`,
//! without its drop-ins), `TestPullSourcesFromReference` / `pull-from-mirror` and
//! `TestInvalidV2Configs`, all in `system_registries_v2_test.go`.

use super::*;

fn conf(text: &str) -> RegistriesConf {
    RegistriesConf::parse(Path::new("/test/registries.conf"), text).unwrap()
}

fn error(text: &str) -> ConfError {
    RegistriesConf::parse(Path::new("/test/registries.conf"), text).unwrap_err()
}

const A64: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn prefix_matching_as_ref_matching_prefix() {
    let digest = format!("@sha256:{A64}");
    let n = |s: &str| Some(s.len());
    let cases: Vec<(String, &str, Option<usize>)> = vec![
        // A domain.
        ("docker.io".into(), "docker.io", n("docker.io")),
        ("docker.io".into(), "example.com", None),
        (
            "example.com:5000".into(),
            "example.com:5000",
            n("example.com:5000"),
        ),
        ("example.com:50000".into(), "example.com:5000", None),
        // "unintended", containers/image says, but what it does.
        ("example.com:5000".into(), "example.com", n("example.com")),
        ("example.com/foo".into(), "example.com", n("example.com")),
        (
            "example.com/foo/bar:baz".into(),
            "example.com",
            n("example.com"),
        ),
        (
            format!("example.com/foo/bar{digest}"),
            "example.com",
            n("example.com"),
        ),
        // A repository or namespace.
        ("docker.io".into(), "docker.io/library", None),
        (
            "docker.io/library".into(),
            "docker.io/library",
            n("docker.io/library"),
        ),
        ("example.com/library".into(), "docker.io/library", None),
        ("docker.io/libraryy".into(), "docker.io/library", None),
        (
            "docker.io/library/busybox".into(),
            "docker.io/library",
            n("docker.io/library"),
        ),
        (
            "docker.io/library/busybox2".into(),
            "docker.io/library/busybox",
            None,
        ),
        // A single image.
        ("example.com/foo".into(), "example.com/foo:bar", None),
        (
            "example.com/foo:bar".into(),
            "example.com/foo:bar",
            n("example.com/foo:bar"),
        ),
        ("example.com/foo:bar2".into(), "example.com/foo:bar", None),
        ("example.com/foo".into(), "*", None),
        // Wildcards: the length is where the host's match ends.
        ("example.com/foo".into(), "*.com", n("example.com")),
        ("example.com/foo/bar:baz".into(), "*.com", n("example.com")),
        ("yet.another.example.com/foo".into(), "**.example.com", None),
        (
            "yet.another.example.com/foo".into(),
            "***.another.example.com",
            None,
        ),
        (
            "yet.another.example.com/foo/bar".into(),
            "*.another.example.com",
            n("yet.another.example.com"),
        ),
        (
            "another.example.com/namespace.com/foo/bar/bbq:baz".into(),
            "*.example.com",
            n("another.example.com"),
        ),
        (
            "example.net/namespace-ends-in.com/foo/bar/bbq:baz".into(),
            "*.com",
            None,
        ),
        (
            "another.example.com/namespace.com/foo/bar/bbq:baz".into(),
            "*.namespace.com",
            None,
        ),
        (
            "sub.example.com/foo/bar".into(),
            "*.example.com",
            n("sub.example.com"),
        ),
        (
            "another.sub.example.com/foo/bar/bbq:baz".into(),
            "*.sub.example.com",
            n("another.sub.example.com"),
        ),
        (
            format!("yet.another.example.com/foo/bar{digest}"),
            "*.example.com",
            n("yet.another.example.com"),
        ),
        // A domain is not a subdomain of itself.
        ("example.com/foo".into(), "*.example.com", None),
    ];
    for (reference, prefix, want) in cases {
        assert_eq!(
            match_len(&reference, prefix),
            want,
            "{reference} vs {prefix}"
        );
    }
}

/// `testdata/find-registry.conf` (its entries without drop-in overrides).
const FIND_REGISTRY_CONF: &str = r#"
[[registry]]
location = "registry.com:5000"
prefix = "simple-prefix.com"

[[registry]]
location = "another-registry.com:5000"
prefix = "complex-prefix.com:4000/with/path"

[[registry]]
location = "registry.com:5000"
prefix = "another-registry.com"

[[registry]]
location = "no-prefix.com"

[[registry]]
location = "empty-prefix.com"
prefix = ""

[[registry]]
location = "subdomain-prefix.com"
prefix = "*.so.simple-prefix.com"

[[registry]]
location = "subdomain-prefix-2.com"
prefix = "*.simple-prefix.com"

[[registry]]
location = "subdomain-prefix-2.com"
prefix = "*.docker.io"

[[registry]]
location = "subdomain-prefix-3.com"
prefix = "*.bar.example.com"

[[registry]]
location = "subdomain-prefix-4.com"
prefix = "*.bar.docker.io"

[[registry]]
location = "subdomain-prefix-5.com"
prefix = "foo.bar.example.com:5000"

[[registry]]
prefix="*.internal.registry.com"

[[registry]]
prefix="*.com"

[[registry]]
prefix="*.foobar.io"
"#;

#[test]
fn find_registry_picks_the_most_specific_prefix() {
    let c = conf(FIND_REGISTRY_CONF);
    assert_eq!(c.entries.len(), 14);
    let location = |name: &str| c.find(name).map(|e| e.location.clone());
    let prefix = |name: &str| c.find(name).map(|e| e.prefix.clone());
    assert_eq!(
        location("simple-prefix.com/foo/bar:latest").as_deref(),
        Some("registry.com:5000")
    );
    assert_eq!(
        prefix("simple-prefix.com").as_deref(),
        Some("simple-prefix.com")
    );
    assert_eq!(
        location("not.so.simple-prefix.com/").as_deref(),
        Some("subdomain-prefix.com")
    );
    assert_eq!(
        location("not.quite.simple-prefix.com/").as_deref(),
        Some("subdomain-prefix-2.com")
    );
    assert_eq!(
        location("not.quite.simple-prefix.com:5000/with/path/and/beyond:tag").as_deref(),
        Some("subdomain-prefix-2.com")
    );
    assert_eq!(
        location("foo.docker.io:5000/omg/wtf/bbq:foo").as_deref(),
        Some("subdomain-prefix-2.com")
    );
    assert_eq!(
        location("foo.bar.docker.io:5000/omg/wtf/bbq:foo").as_deref(),
        Some("subdomain-prefix-4.com")
    );
    assert_eq!(
        location("foo.bar.example.com:5000/omg/wtf/bbq:foo").as_deref(),
        Some("subdomain-prefix-5.com")
    );
    assert_eq!(
        location("foo.bar.example.com:6000/omg/wtf/bbq").as_deref(),
        Some("subdomain-prefix-3.com")
    );
    assert_eq!(prefix("simple-prefix.comx"), None);
    assert_eq!(
        prefix("complex-prefix.com:4000/with/path/and/beyond:tag").as_deref(),
        Some("complex-prefix.com:4000/with/path")
    );
    assert_eq!(
        prefix("no-prefix.com/foo:tag").as_deref(),
        Some("no-prefix.com")
    );
    assert_eq!(
        prefix("empty-prefix.com/foo:tag").as_deref(),
        Some("empty-prefix.com")
    );
    // An empty location under a wildcard leaves the name as it is.
    let e = c.find("a.internal.registry.com/x").unwrap();
    assert_eq!(e.prefix, "*.internal.registry.com");
    let s = e.sources("a.internal.registry.com/x:1", false).unwrap();
    assert_eq!(s[0].reference, "a.internal.registry.com/x:1");
    assert_eq!(s[0].location, "a.internal.registry.com");
}

#[test]
fn sources_rewrite_the_prefix_and_honour_pull_from_mirror() {
    let c = conf(
        r#"
unqualified-search-registries = ["docker.io"]
short-name-mode = "enforcing"

[[registry]]
prefix = "example.com/foo"
location = "primary.example.com/bar"
insecure = true

[[registry.mirror]]
location = "mirror-1.local/mirror-for-foo"

[[registry.mirror]]
location = "mirror-2.local/mirror-for-foo"
pull-from-mirror = "digest-only"
insecure = true

[[registry.mirror]]
location = "mirror-3.local/mirror-for-foo"
pull-from-mirror = "tag-only"

[[registry]]
prefix = "example.com/digest"
location = "example.com/digest"
mirror-by-digest-only = true

[[registry.mirror]]
location = "mirror.local/digest"

[[registry]]
location = "blocked.example.com"
blocked = true
"#,
    );
    let e = c.find("example.com/foo/image").unwrap();
    let refs = |s: Vec<Source>| {
        s.into_iter()
            .map(|s| (s.reference, s.insecure, s.mirror))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        refs(e.sources("example.com/foo/image:latest", false).unwrap()),
        [
            (
                "mirror-1.local/mirror-for-foo/image:latest".to_string(),
                false,
                true
            ),
            (
                "mirror-3.local/mirror-for-foo/image:latest".to_string(),
                false,
                true
            ),
            (
                "primary.example.com/bar/image:latest".to_string(),
                true,
                false
            ),
        ]
    );
    let digested = format!("example.com/foo/image@sha256:{A64}");
    assert_eq!(
        refs(e.sources(&digested, true).unwrap()),
        [
            (
                format!("mirror-1.local/mirror-for-foo/image@sha256:{A64}"),
                false,
                true
            ),
            (
                format!("mirror-2.local/mirror-for-foo/image@sha256:{A64}"),
                true,
                true
            ),
            (
                format!("primary.example.com/bar/image@sha256:{A64}"),
                true,
                false
            ),
        ]
    );
    let d = c.find("example.com/digest/x").unwrap();
    assert_eq!(d.sources("example.com/digest/x:1", false).unwrap().len(), 1);
    assert_eq!(
        d.sources(&format!("example.com/digest/x@sha256:{A64}"), true)
            .unwrap()
            .len(),
        2
    );
    let b = c.find("blocked.example.com/x").unwrap();
    assert!(b.blocked);
    assert_eq!(
        b.describe(),
        "[[registry]] #3 (prefix \"blocked.example.com\")"
    );
    assert_eq!(
        c.find("example.com/foo/image")
            .unwrap()
            .sources("example.com/foo/image:1", false)
            .unwrap()[0]
            .describe(),
        "mirror mirror-1.local/mirror-for-foo"
    );
}

#[test]
fn invalid_files_name_the_field_and_the_expectation() {
    let cases = [
        // containers/image's insecure-conflicts.conf / blocked-conflicts.conf.
        (
            "[[registry]]\nlocation = \"registry.com\"\n[[registry]]\nprefix = \"registry.com/a\"\nlocation = \"registry.com\"\ninsecure = true\n",
            "registry[2].insecure",
            "different \"insecure\" setting",
        ),
        (
            "[[registry]]\nlocation = \"registry.com\"\nblocked = true\n[[registry]]\nprefix = \"registry.com/a\"\nlocation = \"registry.com\"\n",
            "registry[2].blocked",
            "different \"blocked\" setting",
        ),
        // missing-mirror-location.conf
        ("[[registry]]\nlocation = \"r.com\"\n[[registry.mirror]]\ninsecure = true\n", "registry[1].mirror[1].location", "unset"),
        // invalid-location.conf: a URL scheme.
        ("[[registry]]\nlocation = \"https://r.com\"\n", "registry[1].location", "without a URL scheme"),
        ("[[registry]]\ninsecure = true\n", "registry[1].location", "both are unset"),
        ("[[registry]]\nprefix = \"example.com/x\"\n", "registry[1].location", "not of the form *.example.com"),
        ("[[registry]]\nprefix = \"*.example.com/foo\"\n", "registry[1].prefix", "expected *.domain"),
        ("[[registry]]\nprefix = \"example.*.com\"\nlocation = \"x.com\"\n", "registry[1].prefix", "leading *."),
        // invalid-value-mirror.conf / invalid-config-level-mirror.conf / invalid-conflict-mirror.conf
        (
            "[[registry]]\nlocation = \"r.com\"\n[[registry.mirror]]\nlocation = \"m.com\"\npull-from-mirror = \"notvalid\"\n",
            "registry[1].mirror[1].pull-from-mirror",
            "expected \"all\", \"digest-only\" or \"tag-only\", got \"notvalid\"",
        ),
        (
            "[[registry]]\nlocation = \"r.com\"\npull-from-mirror = \"digest-only\"\n",
            "registry[1].pull-from-mirror",
            "only in [[registry.mirror]]",
        ),
        (
            "[[registry]]\nlocation = \"r.com\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.com\"\npull-from-mirror = \"all\"\n",
            "registry[1].mirror[1].pull-from-mirror",
            "not both",
        ),
        // mixing-v1-v2.conf
        (
            "[registries.block]\nregistries = [\"a.com\"]\n[[registry]]\nlocation = \"r.com\"\n",
            "registries",
            "mixing",
        ),
        // Types and syntax: where in the file, and what was expected.
        ("[[registry]]\nlocation = \"r.com\"\ninsecure = \"yes\"\n", "line 3", "expected a boolean"),
        ("[[registry]\n", "line 1", ""),
    ];
    for (text, field, message) in cases {
        let e = error(text);
        assert_eq!(e.field, field, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
        assert!(
            e.to_string()
                .starts_with("registries configuration /test/registries.conf: "),
            "{e}"
        );
    }
}

#[test]
fn version_1_tables_and_ignored_settings_parse() {
    // containers/image's v1-compatibility.conf, minus its invalid entries.
    let c = conf(
        r#"
[registries.search]
registries = ["registry-a.com////", "registry-c.com", "registry-d.com"]

[registries.block]
registries = ["registry-b.com"]

[registries.insecure]
registries = ["registry-b.com////", "registry-d.com", "registry-e.com", "registry-a.com"]
"#,
    );
    let b = c.find("registry-b.com/bar/foo/barfoo").unwrap();
    assert!(b.insecure && b.blocked);
    assert_eq!(c.entries.len(), 4);
    // The file Debian's containers-common ships: comments and search settings only.
    let empty = conf("# unqualified-search-registries = [\"example.com\"]\n[aliases]\n\"x\" = \"docker.io/library/x\"\n");
    assert!(empty.entries.is_empty());
}

#[test]
fn the_fuzz_seed_parses() {
    let c = conf(include_str!("../../../testdata/registries/registries.conf"));
    let e = c.find("registry.example.com/ns/app").unwrap();
    let s = e.sources("registry.example.com/ns/app:v1", false).unwrap();
    assert_eq!(s.len(), 2, "{s:?}");
    assert!(c.find("a.b.example.org/x").unwrap().blocked);
}

#[test]
fn a_named_file_must_exist_and_unknown_keys_are_not_errors() {
    let e = RegistriesConf::load(Some(Path::new("/nonexistent/registries.conf"))).unwrap_err();
    assert_eq!(e.field, "file");
    assert!(
        e.to_string().starts_with(
            "registries configuration /nonexistent/registries.conf: file: cannot read"
        ),
        "{e}"
    );
    // containers/image ignores keys it does not know (a newer file on an older tool).
    let c = conf("future-setting = 1\n[[registry]]\nlocation = \"r.com\"\nnew-key = true\n[[registry.mirror]]\nlocation = \"m.com\"\nother = \"x\"\n");
    assert_eq!(c.entries[0].mirrors.len(), 1);
}
