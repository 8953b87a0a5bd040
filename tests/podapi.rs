//! The Pod API of current Kubernetes releases with real containers (issue 22): container
//! restart rules, supplemental groups policy, pod-level resources.

mod common;

use common::*;

fn pod_status(f: &Fixture, name: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostlet"))
        .args(["pods", "-o", "json", "--root-dir"])
        .arg(&f.dirs.root)
        .output()
        .unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no hostlet agent is running"),
            "hostlet pods: {err}"
        );
        return None;
    }
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"]
        .as_array()?
        .iter()
        .find(|p| p["metadata"]["name"] == format!("{name}-testnode"))
        .map(|p| p["status"].clone())
}

#[test]
fn restart_rules_restart_on_a_listed_exit_code_and_not_on_another() {
    let f = Fixture::new();
    let img = f.image();
    // The pod never restarts; the container's rule restarts it on 42 only. Its first run
    // exits 42, its second 3.
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: rules}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes: [{{name: work, emptyDir: {{}}}}]
  containers:
  - name: app
    image: {img}
    command: ["sh", "-c", "echo run; test -e /work/ran && exit 3; touch /work/ran; exit 42"]
    volumeMounts: [{{name: work, mountPath: /work}}]
    restartPolicy: Never
    restartPolicyRules:
    - action: Restart
      exitCodes: {{operator: In, values: [42]}}
"#
    );
    write_manifest(&f.dirs, "rules.yaml", &yaml);
    let st = f.wait("the pod failed after one restart", || {
        pod_status(&f, "rules").filter(|s| s["phase"] == "Failed")
    });
    let c = &st["containerStatuses"][0];
    assert_eq!(c["restartCount"], 1, "{st:#}");
    assert_eq!(c["state"]["terminated"]["exitCode"], 3, "{st:#}");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 42, "{st:#}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        cri_log_files(&f.dirs.logs, "rules", "app").len(),
        2,
        "exit 3 is not listed: no third run"
    );
}
