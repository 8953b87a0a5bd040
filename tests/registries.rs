//! Registry configuration with real pulls (issues 17 and 18): a pod's imagePullSecrets
//! against a registry behind htpasswd.

mod common;
#[path = "images_support/mod.rs"]
mod images_support;

use std::time::Duration;

use common::*;
use images_support::ExtraRegistry;

const USER: &str = "puller";

/// A `kubernetes.io/dockerconfigjson` Secret for `registry`.
fn pull_secret(name: &str, registry: &str, password: &str) -> String {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/dockerconfigjson\n\
         stringData:\n  .dockerconfigjson: '{{\"auths\":{{\"{registry}\":{{\"auth\":\"{auth}\"}}}}}}'\n"
    )
}

fn pod(name: &str, image: &str, marker: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra_spec}  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'echo started; while sleep 1; do :; done # {marker}']\n"
    )
}

/// The waiting (reason, message) of the pod's first container.
fn waiting(f: &Fixture, pod: &str) -> Option<(String, String)> {
    let st = f.pod_status(pod)?;
    let w = &st["containerStatuses"][0]["state"]["waiting"];
    Some((w["reason"].as_str()?.into(), w["message"].as_str()?.into()))
}

#[test]
fn image_pull_secret_is_used_and_a_missing_one_is_pulled_without() {
    let password = format!("pw-{}-Xy7", std::process::id());
    let locked = ExtraRegistry::start(Some((USER, &password)), None);
    let f =
        Fixture::with_args(&["--insecure-registry", &locked.addr]).patient(Duration::from_secs(60));
    let marker = format!("pullsecret-{}", std::process::id());
    // The secret does not exist yet: the pull goes on without it and the registry refuses.
    let spec = "  imagePullSecrets: [{name: regcred}]\n";
    write_manifest(
        &f.dirs,
        "pod.yaml",
        &pod(
            "locked",
            &format!("{}/library/busybox:test", locked.addr),
            &marker,
            spec,
        ),
    );
    let (reason, message) = f.wait("the pull refused with the registry's 401", || {
        waiting(&f, "locked").filter(|(r, m)| r == "ErrImagePull" && m.contains("401"))
    });
    assert!(message.contains(&locked.addr), "{reason}: {message}");
    assert!(f
        .dirs
        .agent_log()
        .contains("unable to retrieve pull secret"));
    // With the secret, the next attempt pulls with its password.
    write_private_manifest(
        &f.dirs,
        "regcred.yaml",
        &pull_secret("regcred", &locked.addr, &password),
    );
    f.output("locked", "main", "started");
    f.container_pid(&marker);
    assert!(
        !f.dirs.agent_log().contains(&password),
        "password in the agent log"
    );
}

/// An executable script `name` in `dir`.
fn script(dir: &std::path::Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn runs(dir: &std::path::Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn credential_provider_plugin_cached_and_a_hanging_one_killed() {
    let password = format!("pw-{}-Pv4", std::process::id());
    let locked = ExtraRegistry::start(Some((USER, &password)), None);
    let plugins = tempfile::tempdir().unwrap();
    let d = plugins.path();
    let response = format!(
        r#"{{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"1h","auth":{{"{}":{{"username":"{USER}","password":"{password}"}}}}}}"#,
        locked.addr
    );
    script(
        d,
        "good",
        &format!(
            "cat > /dev/null\necho run >> {}/good.runs\necho '{response}'",
            d.display()
        ),
    );
    script(
        d,
        "hang",
        &format!(
            "echo run >> {}/hang.runs\nsleep 300\necho never",
            d.display()
        ),
    );
    let provider = |name: &str| {
        format!("- name: {name}\n  matchImages: ['{}']\n  defaultCacheDuration: 1h\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n", locked.addr)
    };
    let config = d.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n{}{}",
            provider("good"),
            provider("hang")
        ),
    )
    .unwrap();
    let f = Fixture::with_args(&[
        "--insecure-registry",
        &locked.addr,
        "--image-credential-provider-config",
        config.to_str().unwrap(),
        "--image-credential-provider-bin-dir",
        d.to_str().unwrap(),
        "--image-credential-provider-timeout",
        "2s",
    ])
    .patient(Duration::from_secs(60));
    let image = format!("{}/library/busybox:test", locked.addr);
    // Two pulls (Always) within the cache period: the good plugin runs once; the hanging
    // one is killed after 2 s each time and the pulls go on with the good credentials.
    for name in ["one", "two"] {
        let marker = format!("provider-{name}-{}", std::process::id());
        let spec = pod(name, &image, &marker, "")
            .replace("    command:", "    imagePullPolicy: Always\n    command:");
        write_manifest(&f.dirs, &format!("{name}.yaml"), &spec);
        f.output(name, "main", "started");
        f.container_pid(&marker);
    }
    assert_eq!(runs(d, "good.runs"), 1, "{}", f.dirs.agent_log());
    assert!(runs(d, "hang.runs") >= 2);
    let log = f.dirs.agent_log();
    assert!(
        log.lines().any(|l| l.contains("credential provider failed")
            && l.contains("provider=hang")
            && l.contains("timed out after 2s")),
        "{log}"
    );
    let hang = d.join("hang");
    assert!(
        find_pids_by_cmdline(hang.to_str().unwrap()).is_empty(),
        "the hanging plugin was not killed"
    );
    assert!(!log.contains(&password), "password in the agent log");
}
