//! AppArmor (`securityContext.appArmorProfile`) with real containers. As tests/systemd.rs,
//! the test runs on both kinds of host and asserts what each must do: with AppArmor (the
//! VM suite: Debian's kernel and its `apparmor` package, vm/image.sh) a Localhost profile
//! that denies a write makes the write fail inside the container, and a container that
//! names no profile runs under `hostlet-default`; without AppArmor (a host whose kernel
//! does not enforce it) a pod asking for Localhost is refused with the kubelet's message
//! and one asking nothing runs unconfined.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim() == "Y")
}

fn pod(name: &str, image: &str, security: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    securityContext: {{{security}}}\n    command: [sh, -c, {script:?}]\n"
    )
}

/// `apparmor_parser ARG` with the profile on stdin.
fn parser(arg: &str, profile: &str) {
    let Some(exe) = which("apparmor_parser") else {
        panic!(
            "AppArmor is enabled but apparmor_parser is missing: install Debian's apparmor package"
        );
    };
    let mut child = Command::new(exe)
        .arg(arg)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(profile.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "apparmor_parser {arg}: {out:?}");
}

/// Unloads the test's profile on every way out.
struct Loaded(String);

impl Drop for Loaded {
    fn drop(&mut self) {
        parser("-R", &self.0);
    }
}

#[test]
fn localhost_profile_denies_a_write_or_is_refused_without_apparmor() {
    let f = Fixture::new();
    let id = std::process::id();
    let name = format!("hostlet-test-deny-{id}");
    let local = format!("appArmorProfile: {{type: Localhost, localhostProfile: {name}}}");
    let probe = format!(
        "echo ok > /tmp/allowed && echo allowed-{id}; if echo x > /tmp/denied 2>/dev/null; then echo write-succeeded-{id}; else echo write-denied-{id}; fi; echo label=$(cat /proc/self/attr/current 2>/dev/null)"
    );
    let plain = format!("echo plain-{id} label=$(cat /proc/self/attr/current 2>/dev/null)");
    if !apparmor_enabled() {
        eprintln!("AppArmor is not enabled on this host: checking the refusal (the VM suite checks the denial)");
        write_manifest(
            &f.dirs,
            "deny.yaml",
            &pod("deny", &f.image(), &local, &probe),
        );
        write_manifest(&f.dirs, "plain.yaml", &pod("plain", &f.image(), "", &plain));
        // The pod fails (restartPolicy Never) without its container ever running.
        let st = f.wait("the Localhost pod refused", || {
            let st = f.pod_status("deny")?;
            (st["phase"] == "Failed").then_some(st)
        });
        let term = &st["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            term["message"], "Cannot enforce AppArmor: AppArmor is not enabled on the host",
            "{st}"
        );
        assert_eq!(term["reason"], "StartError", "{st}");
        f.output("plain", "main", &format!("plain-{id}"));
        return;
    }

    let profile = format!(
        "#include <tunables/global>\nprofile {name} flags=(attach_disconnected,mediate_deleted) {{\n  #include <abstractions/base>\n  file,\n  network,\n  capability,\n  signal,\n  deny /tmp/denied w,\n}}\n"
    );
    parser("-Kr", &profile);
    let _loaded = Loaded(profile);
    write_manifest(
        &f.dirs,
        "deny.yaml",
        &pod("deny", &f.image(), &local, &probe),
    );
    write_manifest(&f.dirs, "plain.yaml", &pod("plain", &f.image(), "", &plain));
    let out = f.output("deny", "main", "label=");
    assert!(out.iter().any(|l| l == &format!("allowed-{id}")), "{out:?}");
    assert!(
        out.iter().any(|l| l == &format!("write-denied-{id}")),
        "the profile denies the write: {out:?}"
    );
    assert!(
        out.iter().any(|l| l.starts_with(&format!("label={name}"))),
        "{out:?}"
    );
    // No profile named: hostlet's RuntimeDefault, loaded by the agent.
    let out = f.output("plain", "main", &format!("plain-{id}"));
    assert!(
        out.iter()
            .any(|l| l.contains("label=hostlet-default (enforce)")),
        "{out:?}"
    );
}
