use std::path::Path;

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey;

use super::identity::SignedIdentity;
use super::*;

fn named(s: &str) -> Named {
    Named::parse(s).unwrap()
}

fn policy(json: &str) -> Policy {
    Policy::parse(json.as_bytes(), Path::new("/")).unwrap()
}

fn policy_err(json: &str) -> (String, String) {
    Policy::parse(json.as_bytes(), Path::new("/")).unwrap_err()
}

/// The scope a reference falls in, by the requirement's position in a policy whose every
/// scope holds a distinct list (reject/accept alternate, so we read the scope name back).
fn scope_of(p: &Policy, r: &str) -> String {
    p.requirements_for(&named(r)).0
}

#[test]
fn scope_lookup_most_specific_wins() {
    // The scope forms of containers-policy.json(5).
    let p = policy(
        r#"{"default": [{"type": "reject"}], "transports": {"docker": {
            "": [{"type": "insecureAcceptAnything"}],
            "registry.example.com/ns/app:v1": [{"type": "reject"}],
            "registry.example.com/ns/app": [{"type": "reject"}],
            "registry.example.com/ns": [{"type": "reject"}],
            "registry.example.com": [{"type": "reject"}],
            "registry.example.com:5000": [{"type": "reject"}],
            "*.example.com": [{"type": "reject"}],
            "*.com": [{"type": "reject"}],
            "docker.io/library/busybox": [{"type": "reject"}]
        }}}"#,
    );
    let cases = [
        ("registry.example.com/ns/app:v1", "registry.example.com/ns/app:v1"),
        ("registry.example.com/ns/app:v2", "registry.example.com/ns/app"),
        ("registry.example.com/ns/app", "registry.example.com/ns/app"),
        (
            "registry.example.com/ns/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "registry.example.com/ns/app",
        ),
        ("registry.example.com/ns/other/deep:1", "registry.example.com/ns"),
        ("registry.example.com/other", "registry.example.com"),
        // The port is part of the host scope; wildcards drop it.
        ("registry.example.com:5000/ns/app", "registry.example.com:5000"),
        ("registry.example.com:6000/ns/app", "*.example.com"),
        ("a.b.example.com/x", "*.example.com"),
        // *.example.com does not match example.com itself.
        ("example.com/x", "*.com"),
        ("busybox", "docker.io/library/busybox"),
        ("docker.io/library/busybox:1.36", "docker.io/library/busybox"),
        ("alpine", ""),
        ("localhost:5000/x", ""),
        ("[::1]:5000/x", ""),
    ];
    for (r, want) in cases {
        assert_eq!(scope_of(&p, r), want, "{r}");
    }
    let bare = policy(r#"{"default": [{"type": "reject"}]}"#);
    assert_eq!(scope_of(&bare, "busybox"), "default");
}

#[test]
fn scopes_in_order() {
    assert_eq!(
        policy::scopes(&named("reg.example.com:5000/a/b/c:t")),
        [
            "reg.example.com:5000/a/b/c:t",
            "reg.example.com:5000/a/b/c",
            "reg.example.com:5000/a/b",
            "reg.example.com:5000/a",
            "reg.example.com:5000",
            "*.example.com",
            "*.com",
        ]
    );
}

#[test]
fn unsupported_requirements_are_errors_never_accepts() {
    let (scope, msg) = policy_err(
        r#"{"default": [{"type": "reject"}], "transports": {"docker": {
            "quay.io": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}]}}}"#,
    );
    assert_eq!(scope, "docker:quay.io");
    assert!(msg.contains("signedBy"), "{msg}");
    let (scope, _) = policy_err(r#"{"default": [{"type": "signedBy"}]}"#);
    assert_eq!(scope, "default");
    for bad in [
        r#"{}"#,
        r#"{"default": []}"#,
        r#"{"default": [{"type": "reject", "extra": 1}]}"#,
        r#"{"default": [{"type": "maybe"}]}"#,
        r#"{"default": [{"type": "reject"}], "other": {}}"#,
        r#"{"default": [{"type": "sigstoreSigned"}]}"#,
        r#"{"default": [{"type": "sigstoreSigned", "keyData": "!!"}]}"#,
        r#"{"default": [{"type": "sigstoreSigned", "fulcio": {}}]}"#,
        r#"{"default": [{"type": "reject"}], "transports": {"docker": {"https://x.io": [{"type": "reject"}]}}}"#,
        r#"{"default": [{"type": "reject"}], "transports": {"docker": {"*.x.io:5000": [{"type": "reject"}]}}}"#,
    ] {
        assert!(
            Policy::parse(bad.as_bytes(), Path::new("/")).is_err(),
            "{bad}"
        );
    }
    // Other transports are not read (Debian's default policy has docker-daemon).
    policy(
        r#"{"default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker-daemon": {"": [{"type": "signedBy"}]}}}"#,
    );
}

#[test]
fn load_names_the_file_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(
        &path,
        r#"{"default": [{"type": "reject"}], "transports": {"docker": {"a.io": [{"type": "signedBy"}]}}}"#,
    )
    .unwrap();
    let e = Policy::load(&path).unwrap_err().to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("\"docker:a.io\""),
        "{e}"
    );
    assert!(load(Some(&dir.path().join("missing.json"))).is_err());
}

// Vectors from containers-policy.json(5) (the signedIdentity section) and containers/image's
// policy_reference_match_test.go.
#[test]
fn identity_rules() {
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    let by_digest = named(&format!("example.com/ns/repo@{digest}"));
    let by_tag = named("example.com/ns/repo:tag");
    let m = |id: &SignedIdentity, intended: &Named, signed: &str| id.matches(intended, signed);

    let exact = SignedIdentity::MatchExact;
    assert!(m(&exact, &by_tag, "example.com/ns/repo:tag"));
    assert!(!m(&exact, &by_tag, "example.com/ns/repo:other"));
    assert!(!m(&exact, &by_tag, "example.com/ns/repo"));
    assert!(!m(&exact, &by_digest, "example.com/ns/repo:tag"));

    let rdoe = SignedIdentity::MatchRepoDigestOrExact;
    assert!(m(&rdoe, &by_tag, "example.com/ns/repo:tag"));
    assert!(!m(&rdoe, &by_tag, "example.com/ns/repo:tag2"));
    // a repository-only identity (what cosign writes) never matches by tag…
    assert!(!m(&rdoe, &by_tag, "example.com/ns/repo"));
    assert!(!m(&rdoe, &by_digest, "example.com/ns/repo"));
    // …by digest, any tag of the same repository does
    assert!(m(&rdoe, &by_digest, "example.com/ns/repo:anytag"));
    assert!(!m(&rdoe, &by_digest, "example.com/ns/other:anytag"));
    // normalisation applies to the signed reference
    assert!(m(&rdoe, &named("busybox:1"), "docker.io/library/busybox:1"));
    assert!(m(&rdoe, &named("docker.io/library/busybox:1"), "busybox:1"));

    let repo = SignedIdentity::MatchRepository;
    assert!(m(&repo, &by_tag, "example.com/ns/repo"));
    assert!(m(&repo, &by_tag, "example.com/ns/repo:other"));
    assert!(m(&repo, &by_digest, "example.com/ns/repo"));
    assert!(!m(&repo, &by_tag, "example.com/ns/repo2"));
    assert!(!m(&repo, &by_tag, "example.com:5000/ns/repo"));
    assert!(!m(&repo, &by_tag, "not a reference"));

    let er = SignedIdentity::ExactReference("docker.io/library/busybox:latest".into());
    assert!(m(&er, &by_tag, "busybox:latest"));
    assert!(!m(&er, &by_tag, "busybox"));
    assert!(!m(&er, &by_tag, "busybox:1"));

    let erepo = SignedIdentity::ExactRepository("docker.io/library/busybox".into());
    assert!(m(&erepo, &by_tag, "busybox"));
    assert!(m(&erepo, &by_tag, "docker.io/library/busybox:any"));
    assert!(!m(&erepo, &by_tag, "example.com/ns/repo:tag"));

    // The man page's example: a mirror's images checked against the vendor's signatures.
    let remap = SignedIdentity::RemapIdentity {
        prefix: "private-mirror:5000/vendor-mirror".into(),
        signed_prefix: "vendor.example.com".into(),
    };
    let mirrored = named("private-mirror:5000/vendor-mirror/product/repository:tag");
    assert!(m(
        &remap,
        &mirrored,
        "vendor.example.com/product/repository:tag"
    ));
    assert!(!m(
        &remap,
        &mirrored,
        "private-mirror:5000/vendor-mirror/product/repository:tag"
    ));
    assert!(!m(
        &remap,
        &mirrored,
        "vendor.example.com/product/repository:other"
    ));
    // The prefix matches whole components only; otherwise the reference is unchanged.
    let near = named("private-mirror:5000/vendor-mirrorx/product:tag");
    assert!(m(
        &remap,
        &near,
        "private-mirror:5000/vendor-mirrorx/product:tag"
    ));
    assert!(!m(&remap, &near, "vendor.example.comx/product:tag"));

    let parse = |j: &str| SignedIdentity::parse(&serde_json::from_str(j).unwrap());
    assert_eq!(
        parse(r#"{"type": "matchRepository"}"#),
        Ok(SignedIdentity::MatchRepository)
    );
    assert!(parse(r#"{"type": "exactReference", "dockerReference": "busybox"}"#).is_err());
    assert!(
        parse(r#"{"type": "remapIdentity", "prefix": "busybox", "signedPrefix": "x.io"}"#).is_err()
    );
    assert!(parse(
        r#"{"type": "remapIdentity", "prefix": "m.io/ns", "signedPrefix": "x.io:5000"}"#
    )
    .is_ok());
    assert!(parse(r#"{"type": "matchRepository", "x": 1}"#).is_err());
}

/// A real signature made by `cosign sign --key` of
/// registry-testing.svc.lan/busybox@sha256:f3cfc9d0…, with the payload as cosign wrote it
/// and the public key: sigstore-rs's test data (src/cosign/signature_layers.rs,
/// build_correct_signature_layer_without_bundle; the payload there is built as JSON whose
/// serialisation is byte for byte cosign's).
#[test]
fn verifies_a_real_cosign_signature() {
    let key = policy::public_key(
        b"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAENptdY/l3nB0yqkXLBWkZWQwo6+cu
OSWS1X9vPavpiQOoTTGC0xX57OojUadxF1cdQmrsiReWg2Wn4FneJfa8xw==
-----END PUBLIC KEY-----",
    )
    .unwrap();
    let digest = "sha256:f3cfc9d0dbf931d3db4685ec659b7ac68e2a578219da4aae65427886e649b06b";
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"registry-testing.svc.lan/busybox"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let sig = Signature {
        payload: payload.clone().into_bytes(),
        signature: "MEUCIQD6q/COgzOyW0YH1Dk+CCYSt4uAhm3FDHUwvPI55zwnlwIgE0ZK58ZOWpZw8YVmBapJhBqCfdPekIknimuO0xH8Jh8=".into(),
    };
    assert!(cosign::signed_by(&sig, std::slice::from_ref(&key)));
    // The same test data's other key does not verify it.
    let other = policy::public_key(
        b"-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETJP9cqpUQsn2ggmJniWGjHdlsHzD
JsB89BPhZYch0U0hKANx5TY+ncrm0s8bfJxxHoenAEFhwhuXeb4PqIrtoQ==
-----END PUBLIC KEY-----",
    )
    .unwrap();
    assert!(!cosign::signed_by(&sig, &[other]));
    let mut tampered = sig.clone();
    tampered.payload = payload.replace("busybox", "busyboy").into_bytes();
    assert!(!cosign::signed_by(&tampered, std::slice::from_ref(&key)));

    let req = Requirement::SigstoreSigned {
        keys: vec![key],
        identity: SignedIdentity::MatchRepository,
    };
    let intended = named("registry-testing.svc.lan/busybox:latest");
    let v = evaluate(
        std::slice::from_ref(&req),
        "s",
        &intended,
        digest,
        std::slice::from_ref(&sig),
        "",
    );
    assert_eq!(v.unwrap().requirements, "sigstoreSigned");
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let e = evaluate(&[req], "s", &intended, wrong, &[sig], "").unwrap_err();
    assert!(e.to_string().contains("is not the one pulled"), "{e}");
}

/// Signs the way cosign does (for the evaluation tests; tests/trust.rs pushes the same).
fn sign(key: &SigningKey, reference: &str, digest: &str) -> Signature {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let sig: DerSignature = key.sign(payload.as_bytes());
    Signature {
        payload: payload.into_bytes(),
        signature: base64::engine::general_purpose::STANDARD.encode(sig.as_bytes()),
    }
}

#[test]
fn evaluation() {
    let good = SigningKey::from_slice(&[7; 32]).unwrap();
    let other = SigningKey::from_slice(&[9; 32]).unwrap();
    let pem = good
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let data = base64::engine::general_purpose::STANDARD.encode(&pem);
    let p = policy(&format!(
        r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{
            "localhost:5000/signed": [{{"type": "sigstoreSigned", "keyData": "{data}",
                "signedIdentity": {{"type": "matchRepository"}}}}],
            "localhost:5000/open": [{{"type": "insecureAcceptAnything"}}]
        }}}}}}"#
    ));
    assert!(p.wants_signatures());
    let d = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    let run = |r: &str, sigs: &[Signature]| {
        let intended = named(r);
        let (scope, reqs) = p.requirements_for(&intended);
        evaluate(reqs, &scope, &intended, d, sigs, "")
    };
    let ok = sign(&good, "localhost:5000/signed", d);
    assert_eq!(
        run("localhost:5000/signed:1", std::slice::from_ref(&ok)).unwrap(),
        Verdict {
            requirements: "sigstoreSigned".into(),
            scope: "localhost:5000/signed".into()
        }
    );
    // one good signature among bad ones is enough
    let by_other = sign(&other, "localhost:5000/signed", d);
    assert!(run("localhost:5000/signed:1", &[by_other.clone(), ok.clone()]).is_ok());
    let label = |r: Result<Verdict, TrustError>| r.unwrap_err().label();
    assert_eq!(label(run("localhost:5000/signed:1", &[])), "unsigned");
    assert_eq!(
        label(run("localhost:5000/signed:1", &[by_other])),
        "invalid"
    );
    let elsewhere = sign(&good, "localhost:5000/elsewhere", d);
    let e = run("localhost:5000/signed:1", &[elsewhere]).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    assert!(run("localhost:5000/open:1", &[]).is_ok());
    assert_eq!(label(run("localhost:5000/third:1", &[ok])), "rejected");
}

#[test]
fn fuzz_seed_policy_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/policy/policy.json");
    let p = Policy::load(&path).unwrap();
    assert_eq!(
        scope_of(&p, "registry.example.com/ns/app:v1"),
        "registry.example.com/ns/app:v1"
    );
    assert_eq!(
        scope_of(&p, "registry.example.com/vendor/x"),
        "registry.example.com/vendor"
    );
    assert_eq!(scope_of(&p, "a.example.com/x"), "*.example.com");
    assert_eq!(scope_of(&p, "quay.io/x"), "");
}

#[test]
fn without_a_policy_file_everything_is_accepted_and_said_so() {
    let p = Policy::accept_anything();
    assert!(!p.wants_signatures());
    let intended = named("busybox");
    let (scope, reqs) = p.requirements_for(&intended);
    let v = evaluate(reqs, &scope, &intended, "sha256:00", &[], "").unwrap();
    assert_eq!(v.to_string(), "insecureAcceptAnything (no policy)");
}
