//! Self-test of the integration-test harness (tests/common), independent of hostlet.

mod common;

use std::process::Command;

use common::Registry;

fn inspect_config(image: &str) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(["inspect", "--config", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {image} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo printed JSON")
}

#[test]
fn registry_serves_test_image() {
    common::require_root_and_tools();
    let reg = Registry::start();
    assert_eq!(
        common::http_get_status(&reg.addr, "/v2/"),
        Some(200),
        "registry answers /v2/"
    );

    let test = inspect_config(&reg.image("test"));
    let cfg = &test["config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["sh"]), "test config: {test}");
    assert!(cfg["Entrypoint"].is_null(), "test config: {test}");
    assert_eq!(cfg["WorkingDir"], "/", "test config: {test}");
    assert_eq!(
        cfg["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    );
    assert_eq!(test["os"], "linux");

    let entry = inspect_config(&reg.image("entry"));
    assert_eq!(
        entry["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"]),
        "entry config: {entry}"
    );
    assert_eq!(
        entry["config"]["Cmd"],
        serde_json::json!(["echo entry-default"]),
        "entry config: {entry}"
    );

    let pid = reg.pid();
    assert!(common::process_exists(pid));
    drop(reg);
    assert!(!common::process_exists(pid), "registry killed on drop");
}

#[test]
fn proc_helpers_see_this_process() {
    let me = std::process::id() as i32;
    assert!(common::process_exists(me));
    assert!(common::ns_link(me, "net").unwrap().starts_with("net:["));
    let parent = common::ppid_of(me).unwrap();
    assert!(common::children_of(parent).contains(&me));
    assert!(common::cmdline(me).unwrap().contains("harness"));
}

#[test]
fn cri_log_files_are_ordered_by_restart_count() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("default_hello-testnode_1234/hello");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(
        c.join("10.log"),
        "2024-01-01T00:00:01.000000000Z stdout F ten\n",
    )
    .unwrap();
    std::fs::write(
        c.join("2.log"),
        "2024-01-01T00:00:00.000000000Z stdout F two words\n",
    )
    .unwrap();
    std::fs::write(c.join("2.log.20240101-000000"), "rotated\n").unwrap();
    assert_eq!(
        common::cri_log_messages(dir.path(), "hello", "hello"),
        vec!["two words".to_string(), "ten".to_string()]
    );
    assert!(common::cri_log_lines(dir.path(), "other", "hello").is_empty());
}
