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
