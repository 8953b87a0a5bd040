//! Image trust (issue 18): cosign signatures made by a small signer that follows cosign's
//! signature spec (simple-signing payload, ECDSA P-256 over it, the
//! `dev.cosignproject.cosign/signature` annotation, the `sha256-<hex>.sig` tag) and pushed
//! with skopeo; policy scope matching cross-checked against `skopeo copy --policy`; and
//! registries.conf mirrors, which serve pulls but cannot substitute signed content.

mod common;
#[path = "images_support/mod.rs"]
mod images_support;

use std::fs;
use std::path::Path;

use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};

use common::*;
use images_support::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Copies the test image's `tag` to `dst` (`addr/repo:tag`); returns the pushed digest.
fn push_test_image(tag: &str, dst: &str, scratch: &Path) -> String {
    let digest_file = scratch.join("digest");
    skopeo_copy(
        &format!("oci:{}:{tag}", test_image_layout().display()),
        &format!("docker://{dst}"),
        &["--digestfile", digest_file.to_str().unwrap()],
    );
    fs::read_to_string(digest_file).unwrap().trim().to_string()
}

/// Signs `digest` as `identity` with `key` and pushes the signature as cosign does: an OCI
/// manifest tagged `sha256-<hex>.sig` in `repo`, its one layer the payload.
fn sign(addr: &str, repo: &str, identity: &str, digest: &str, key: &SigningKey, scratch: &Path) {
    sign_beside(addr, repo, identity, digest, digest, key, scratch)
}

/// [`sign`], the signature pushed beside `beside` (a substitution when it is not `digest`).
fn sign_beside(
    addr: &str,
    repo: &str,
    identity: &str,
    digest: &str,
    beside: &str,
    key: &SigningKey,
    scratch: &Path,
) {
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{identity}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let sig: DerSignature = key.sign(payload.as_bytes());
    let layout = scratch.join(format!("sig-{}", &digest[7..19]));
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        fs::write(blobs.join(&d[7..]), bytes).unwrap();
        (d, bytes.len())
    };
    let (pd, ps) = put(payload.as_bytes());
    let config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{pd}"]}},"config":{{}}}}"#
    );
    let (cd, cs) = put(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{cs},"digest":"{cd}"}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":{ps},"digest":"{pd}","annotations":{{"dev.cosignproject.cosign/signature":"{}"}}}}]}}"#,
        b64(sig.as_bytes())
    );
    let (md, ms) = put(manifest.as_bytes());
    fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"annotations":{{"org.opencontainers.image.ref.name":"sig"}}}}]}}"#
        ),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let tag = format!("sha256-{}.sig", &beside[7..]);
    skopeo_copy(
        &format!("oci:{}:sig", layout.display()),
        &format!("docker://{addr}/{repo}:{tag}"),
        &["--preserve-digests"],
    );
}

fn waiting_reason(f: &Fixture, pod: &str) -> Option<String> {
    let status = f.pod_status(pod)?;
    let reason = &status["containerStatuses"][0]["state"]["waiting"]["reason"];
    reason.as_str().map(str::to_string)
}

#[test]
fn only_images_signed_for_their_repository_with_the_key_run() {
    let signer = key(7);
    let pem = signer
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let policy_dir = tempfile::tempdir().unwrap();
    let key_path = policy_dir.path().join("cosign.pub");
    fs::write(&key_path, &pem).unwrap();
    let policy = policy_dir.path().join("policy.json");
    fs::write(
        &policy,
        format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": "{}", "signedIdentity": {{"type": "matchRepository"}}}}]}}"#,
            key_path.display()
        ),
    )
    .unwrap();
    let f = Fixture::with_args(&["--signature-policy", policy.to_str().unwrap()]);
    let addr = f.reg.addr.clone();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();

    let good = push_test_image("test", &format!("{addr}/signed/good:v1"), s);
    sign(
        &addr,
        "signed/good",
        &format!("{addr}/signed/good"),
        &good,
        &signer,
        s,
    );
    push_test_image("test", &format!("{addr}/signed/unsigned:v1"), s);
    let other = push_test_image("test", &format!("{addr}/signed/otherkey:v1"), s);
    sign(
        &addr,
        "signed/otherkey",
        &format!("{addr}/signed/otherkey"),
        &other,
        &key(9),
        s,
    );
    let elsewhere = push_test_image("test", &format!("{addr}/signed/elsewhere:v1"), s);
    sign(
        &addr,
        "signed/elsewhere",
        &format!("{addr}/signed/good"),
        &elsewhere,
        &signer,
        s,
    );
    // Signed, then the tag moved to other content (the `entry` image) after signing.
    let moved = push_test_image("test", &format!("{addr}/signed/moved:v1"), s);
    sign(
        &addr,
        "signed/moved",
        &format!("{addr}/signed/moved"),
        &moved,
        &signer,
        s,
    );
    let now = push_test_image("entry", &format!("{addr}/signed/moved:v1"), s);
    assert_ne!(moved, now);

    let marker = format!("trust-good-{}", std::process::id());
    let cases = ["good", "unsigned", "otherkey", "elsewhere", "moved"];
    for name in cases {
        write_manifest(
            &f.dirs,
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {addr}/signed/{name}:v1\n    command: [\"sh\", \"-c\", \"echo {marker}-{name}; sleep 300; true\"]\n"
            ),
        );
    }
    f.container_pid(&format!("{marker}-good"));
    for name in &cases[1..] {
        f.wait(
            &format!("{name} refused with SignatureValidationFailed"),
            || {
                (waiting_reason(&f, name).as_deref() == Some("SignatureValidationFailed"))
                    .then_some(())
            },
        );
    }
    let images = hostlet(&f.dirs.root, &["images", "-o", "wide"]).stdout;
    assert!(
        images.contains(&format!("{addr}/signed/good:v1")) && images.contains("sigstoreSigned"),
        "{images}"
    );
    for name in &cases[1..] {
        assert!(
            !images.contains(&format!("signed/{name}:")),
            "{name} stored: {images}"
        );
    }
    f.log_has("image refused by the signature policy");
    for name in cases {
        remove_manifest(&f.dirs, &format!("{name}.yaml"));
    }
    f.gone(&format!("{marker}-good"));

    // An OCI archive carries the `.sig` manifest beside the image; import verifies it.
    let sig_tag = format!("signed/good:sha256-{}.sig", &good[7..]);
    let archive = |refs: &[String], file: &str| {
        let layout = s.join(file.replace(".tar", ""));
        for r in refs {
            skopeo_copy(
                &format!("docker://{addr}/{r}"),
                &format!("oci:{}:{addr}/{r}", layout.display()),
                &["--src-tls-verify=false", "--preserve-digests"],
            );
        }
        let tar = s.join(file);
        let out = std::process::Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .args([
                "-cf",
                tar.to_str().unwrap(),
                "index.json",
                "oci-layout",
                "blobs",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        tar
    };
    let signed = archive(&["signed/good:v1".into(), sig_tag], "signed.tar");
    let unsigned = archive(&["signed/unsigned:v1".into()], "unsigned.tar");
    let root = tempfile::tempdir().unwrap();
    let import = |tar: &Path| {
        let policy = policy.to_str().unwrap();
        let args = [
            "image",
            "import",
            "--signature-policy",
            policy,
            tar.to_str().unwrap(),
        ];
        hostlet(root.path(), &args)
    };
    let out = import(&unsigned);
    assert!(
        !out.status.success(),
        "unsigned archive imported: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("SignatureValidationFailed"),
        "{}",
        out.stderr
    );
    let out = import(&signed);
    assert!(out.status.success(), "{}", out.stderr);
    let images = hostlet(root.path(), &["images", "-o", "wide"]).stdout;
    assert!(
        images.contains(&format!("{addr}/signed/good:v1")) && images.contains("sigstoreSigned"),
        "{images}"
    );
    assert!(!images.contains("signed/unsigned"), "{images}");
    assert!(
        !images.contains(".sig"),
        "the signature imported as an image: {images}"
    );
}

/// For policies of `reject` and `insecureAcceptAnything` scopes, hostlet accepts and refuses
/// the same references as `skopeo copy --policy`.
#[test]
fn scope_matching_agrees_with_skopeo() {
    let reg = Registry::start();
    let addr = reg.addr.clone();
    let scratch = tempfile::tempdir().unwrap();
    push_test_image("test", &format!("{addr}/other/app:v1"), scratch.path());
    let accept = r#"[{"type": "insecureAcceptAnything"}]"#;
    let reject = r#"[{"type": "reject"}]"#;
    let policies = [
        // wildcard, namespace and tag scopes
        format!(
            r#"{{"default": {reject}, "transports": {{"docker": {{
                "*.0.0.1": {accept},
                "{addr}/library": {reject},
                "{addr}/library/busybox:entry": {accept}}}}}}}"#
        ),
        // host and repository scopes
        format!(
            r#"{{"default": {accept}, "transports": {{"docker": {{
                "{addr}": {reject},
                "{addr}/other/app": {accept}}}}}}}"#
        ),
    ];
    let refs = [
        format!("{addr}/library/busybox:test"),
        format!("{addr}/library/busybox:entry"),
        format!("{addr}/other/app:v1"),
    ];
    let mut results = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let path = scratch.path().join(format!("policy-{i}.json"));
        fs::write(&path, policy).unwrap();
        for r in &refs {
            let dest = scratch.path().join(format!("copy-{i}-{}", results.len()));
            let skopeo = std::process::Command::new("skopeo")
                .args(["copy", "--quiet", "--src-tls-verify=false", "--policy"])
                .arg(&path)
                .arg(format!("docker://{r}"))
                .arg(format!("dir:{}", dest.display()))
                .output()
                .unwrap();
            let root = tempfile::tempdir().unwrap();
            let ours = hostlet(
                root.path(),
                &[
                    "pull",
                    "--insecure-registry",
                    &addr,
                    "--signature-policy",
                    path.to_str().unwrap(),
                    r,
                ],
            );
            assert!(
                ours.status.success() || ours.stderr.contains("SignatureValidationFailed"),
                "{}",
                ours.stderr
            );
            results.push((i, r.clone(), skopeo.status.success(), ours.status.success()));
        }
    }
    let disagree: Vec<_> = results.iter().filter(|(_, _, s, h)| s != h).collect();
    assert!(
        disagree.is_empty(),
        "(policy, ref, skopeo, hostlet): {disagree:?}"
    );
    // Both outcomes occur, so the comparison means something.
    assert!(
        results.iter().any(|r| r.2) && results.iter().any(|r| !r.2),
        "{results:?}"
    );
}

/// The waiting (reason, message) of the pod's first container.
fn waiting(f: &Fixture, pod: &str) -> Option<(String, String)> {
    let status = f.pod_status(pod)?;
    let w = &status["containerStatuses"][0]["state"]["waiting"];
    Some((w["reason"].as_str()?.into(), w["message"].as_str()?.into()))
}

/// registries.conf (issue 18): with the primary stopped the mirrors are tried in order and
/// one serves the pull (a failing pull lists every source); a
/// `digest-only` mirror serves digests but not tags; a blocked registry is refused with the
/// entry named; a mirror that serves other content under a signed tag, with the real
/// signature beside it, is caught by the signature check made for the name asked for.
#[test]
fn mirrors_serve_pulls_but_cannot_substitute_signed_content() {
    let signer = key(7);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let mirror = Registry::start();
    let primary = Registry::start();
    let (m, p) = (mirror.addr.clone(), primary.addr.clone());
    let dead = format!("127.0.0.1:{}", free_port());

    // Signed on the primary: `app` is the test image; the mirror serves `entry` under its tag
    // with the primary's signature moved beside it, and `ok` with its signature.
    let signed = push_test_image("test", &format!("{p}/signed/app:v1"), s);
    sign(
        &p,
        "signed/app",
        &format!("{p}/signed/app"),
        &signed,
        &signer,
        s,
    );
    let swapped = push_test_image("entry", &format!("{m}/signed/app:v1"), s);
    sign_beside(
        &m,
        "signed/app",
        &format!("{p}/signed/app"),
        &signed,
        &swapped,
        &signer,
        s,
    );
    let ok = push_test_image("test", &format!("{m}/signed/ok:v1"), s);
    sign(&m, "signed/ok", &format!("{p}/signed/ok"), &ok, &signer, s);
    // Its own content, so that its image record is its own (records are per digest).
    let entry_digest = push_test_image("entry", &format!("{m}/library/busybox:entry"), s);
    drop(primary);

    let pem = signer
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let key_path = s.join("cosign.pub");
    fs::write(&key_path, &pem).unwrap();
    let policy = s.join("policy.json");
    fs::write(
        &policy,
        format!(
            r#"{{"default": [{{"type": "insecureAcceptAnything"}}], "transports": {{"docker": {{"{p}/signed": [{{"type": "sigstoreSigned", "keyPath": "{}", "signedIdentity": {{"type": "matchRepository"}}}}]}}}}}}"#,
            key_path.display()
        ),
    )
    .unwrap();
    let conf = s.join("registries.conf");
    fs::write(
        &conf,
        format!(
            r#"unqualified-search-registries = ["docker.io"]

[[registry]]
location = "{p}"
insecure = true
[[registry.mirror]]
location = "{dead}"
insecure = true
[[registry.mirror]]
location = "{m}"
insecure = true

[[registry]]
prefix = "{dead}/library"
location = "{dead}/library"
insecure = true
[[registry.mirror]]
location = "{m}/library"
insecure = true
pull-from-mirror = "digest-only"

[[registry]]
location = "registry.blocked.test"
blocked = true
"#
        ),
    )
    .unwrap();
    let (policy_arg, conf_arg) = (policy.to_str().unwrap(), conf.to_str().unwrap());
    let f = Fixture::with_args(&[
        "--signature-policy",
        policy_arg,
        "--registries-conf",
        conf_arg,
    ]);
    let marker = format!("mirrors-{}", std::process::id());
    let pods = [
        ("mirrored", format!("{p}/library/busybox:test")),
        ("nowhere", format!("{p}/library/busybox:absent")),
        ("bytag", format!("{dead}/library/busybox:test")),
        ("bydigest", format!("{dead}/library/busybox@{entry_digest}")),
        ("blocked", "registry.blocked.test/app:1".to_string()),
        ("swapped", format!("{p}/signed/app:v1")),
        ("signedok", format!("{p}/signed/ok:v1")),
    ];
    for (name, image) in &pods {
        write_manifest(
            &f.dirs,
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"echo {marker}-{name}; sleep 300; true\"]\n"
            ),
        );
    }
    for name in ["mirrored", "bydigest", "signedok"] {
        f.container_pid(&format!("{marker}-{name}"));
    }
    let refused = |pod: &str, reason: &str| {
        f.wait(&format!("{pod} refused with {reason}"), || {
            waiting(&f, pod).filter(|(r, _)| r == reason)
        })
        .1
    };
    // Every source tried, in order, each with its reason.
    let message = refused("nowhere", "ErrImagePull");
    let order: Vec<_> = [
        format!("mirror {dead}:"),
        format!("mirror {m}:"),
        format!("primary {p}:"),
    ]
    .iter()
    .map(|s| message.find(s.as_str()))
    .collect();
    assert!(
        message.contains("no source served the image")
            && order.windows(2).all(|w| w[0].is_some() && w[0] < w[1]),
        "{message}"
    );
    let message = refused("bytag", "ErrImagePull");
    assert!(
        message.contains(&dead) && !message.contains(&m),
        "{message}"
    );
    let message = refused("blocked", "ErrImagePull");
    assert!(
        message.contains(&format!("registry blocked by {conf_arg}"))
            && message
                .contains("[[registry]] #3 (prefix \"registry.blocked.test\") sets blocked = true"),
        "{message}"
    );
    let message = refused("swapped", "SignatureValidationFailed");
    assert!(
        message.contains(&format!(
            "signed manifest {signed} is not the one pulled ({swapped})"
        )),
        "{message}"
    );

    let images = hostlet(&f.dirs.root, &["images", "-o", "wide"]).stdout;
    let row = |r: &str| {
        images
            .lines()
            .find(|l| l.starts_with(r))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row(&format!("{p}/library/busybox:test")).ends_with(&format!("mirror {m}")),
        "{images}"
    );
    assert!(
        row(&format!("{dead}/library/busybox@")).ends_with(&format!("mirror {m}/library")),
        "{images}"
    );
    // Records are per digest (this one shares `mirrored`'s): the pull's own log line says
    // how it was verified.
    let log = f.dirs.agent_log();
    assert!(
        log.lines().any(|l| l.contains("pulled image")
            && l.contains(&format!("reference={p}/signed/ok:v1 "))
            && l.contains("verified=sigstoreSigned")),
        "no sigstoreSigned pull of {p}/signed/ok:v1 in the agent log"
    );
    assert!(!images.contains("signed/app"), "{images}");
    for (name, _) in &pods {
        remove_manifest(&f.dirs, &format!("{name}.yaml"));
    }
    for name in ["mirrored", "bydigest", "signedok"] {
        f.gone(&format!("{marker}-{name}"));
    }

    // `hostlet pull` says which source served; a bad file is refused naming the field.
    let root = tempfile::tempdir().unwrap();
    let pull = |conf: &str| {
        let args = [
            "pull",
            "--signature-policy",
            policy_arg,
            "--registries-conf",
            conf,
        ];
        hostlet(
            root.path(),
            &[&args[..], &[&format!("{p}/library/busybox:test")]].concat(),
        )
    };
    let out = pull(conf_arg);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("served by: mirror {m}\n")),
        "{}",
        out.stdout
    );
    let bad = s.join("bad.conf");
    fs::write(&bad, "[[registry]]\nlocation = \"r.test\"\n[[registry.mirror]]\nlocation = \"m.test\"\npull-from-mirror = \"sometimes\"\n").unwrap();
    let out = pull(bad.to_str().unwrap());
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(&format!(
            "registries configuration {}: registry[1].mirror[1].pull-from-mirror: expected \"all\", \"digest-only\" or \"tag-only\", got \"sometimes\"",
            bad.display()
        )),
        "{}",
        out.stderr
    );
}
