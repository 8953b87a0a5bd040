//! Manifest sources end to end with the real agent and real containers: broken and duplicate
//! files, replacement order, a directory that appears late, refused writable manifests, and
//! the URL source against a real HTTP server on 127.0.0.1, alone and beside the directory.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A pod whose container runs `script` with `$0` = `marker`, so the test finds its process.
fn pod(name: &str, image: &str, marker: &str, script: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 5\n{extra_spec}  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", {script:?}, \"{marker}\"]\n"
    )
}

const LOOP: &str = "while true; do sleep 1; done";

#[test]
fn broken_file_keeps_the_last_good_version_until_fixed() {
    let f = Fixture::with_args(&[]);
    write_manifest(
        &f.dirs,
        "app.yaml",
        &pod("app", &f.image(), "marker-good-v1", LOOP, ""),
    );
    let pid = f.container_pid("marker-good-v1");
    write_manifest(
        &f.dirs,
        "app.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: [app\n",
    );
    f.log_has("invalid manifest");
    let broken = pod("app", &f.image(), "marker-good-v2", LOOP, "").replace(
        "    image:",
        "    volumeDevices: [{name: d, devicePath: /dev/d}]\n    image:",
    );
    write_manifest(&f.dirs, "app.yaml", &broken);
    f.log_has("spec.containers[0].volumeDevices: not supported by hostlet yet");
    // The error names the file and the line of the field.
    let log = f.dirs.agent_log();
    assert!(
        log.contains("app.yaml:9:5: spec.containers[0].volumeDevices"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        find_pids_by_cmdline("marker-good-v1"),
        vec![pid],
        "last good version disturbed"
    );
    assert!(find_pids_by_cmdline("marker-good-v2").is_empty());

    write_manifest(
        &f.dirs,
        "app.yaml",
        &pod("app", &f.image(), "marker-good-v3", LOOP, ""),
    );
    f.container_pid("marker-good-v3");
    f.gone("marker-good-v1");
    f.log_has("manifest is valid again");
}

#[test]
fn duplicate_names_the_first_file_wins() {
    let f = Fixture::with_args(&[]);
    write_manifest(
        &f.dirs,
        "b.yaml",
        &pod("dup", &f.image(), "marker-dup-b", LOOP, ""),
    );
    write_manifest(
        &f.dirs,
        "a.yaml",
        &pod("dup", &f.image(), "marker-dup-a", LOOP, ""),
    );
    f.container_pid("marker-dup-a");
    f.log_has("duplicate pod");
    // b.yaml may have started before a.yaml appeared: then it is replaced.
    f.gone("marker-dup-b");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        find_pids_by_cmdline("marker-dup-b").is_empty(),
        "the second file runs too"
    );
    // Removing the winner lets the other one run.
    remove_manifest(&f.dirs, "a.yaml");
    f.container_pid("marker-dup-b");
    f.gone("marker-dup-a");
}

#[test]
fn a_changed_file_starts_the_new_pod_after_the_old_one_terminated() {
    let f = Fixture::with_args(&[]);
    let shared = f.dirs.base.join("shared");
    fs::create_dir_all(&shared).unwrap();
    let volume = format!(
        "  volumes:\n  - name: shared\n    hostPath: {{path: {}, type: Directory}}\n",
        shared.display()
    );
    let with_mount = |yaml: String| {
        yaml.replace(
            "    command:",
            "    volumeMounts:\n    - {name: shared, mountPath: /shared}\n    command:",
        )
    };
    // The old pod takes its time to stop: the new one must not start meanwhile.
    let old = "trap 'sleep 2; echo old-exit >> /shared/events; exit 0' TERM; echo old-start >> /shared/events; while true; do sleep 1; done";
    let new = "echo new-start >> /shared/events; while true; do sleep 1; done";
    write_manifest(
        &f.dirs,
        "app.yaml",
        &with_mount(pod("app", &f.image(), "marker-chg-1", old, &volume)),
    );
    f.container_pid("marker-chg-1");
    f.wait("old pod started", || {
        fs::read_to_string(shared.join("events"))
            .ok()
            .filter(|e| e.contains("old-start"))
    });
    write_manifest(
        &f.dirs,
        "app.yaml",
        &with_mount(pod("app", &f.image(), "marker-chg-2", new, &volume)),
    );
    f.container_pid("marker-chg-2");
    let events = fs::read_to_string(shared.join("events")).unwrap();
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["old-start", "old-exit", "new-start"],
        "{}",
        f.dirs.agent_log()
    );
}

/// A manifest that pins `metadata.uid` keeps its UID when edited; the edit still
/// applies: the old pod stops and the new one starts.
#[test]
fn an_edited_manifest_with_a_fixed_uid_is_applied() {
    let f = Fixture::new();
    let with_uid = |marker: &str| {
        pod("pinned", &f.image(), marker, LOOP, "").replace(
            "  name: pinned\n",
            "  name: pinned\n  uid: 0c0ffee0-0000-4000-8000-000000000001\n",
        )
    };
    write_manifest(&f.dirs, "pinned.yaml", &with_uid("marker-uid-1"));
    let old = f.container_pid("marker-uid-1");
    write_manifest(&f.dirs, "pinned.yaml", &with_uid("marker-uid-2"));
    f.container_pid("marker-uid-2");
    assert!(!process_exists(old), "the old container {old} still runs");
    f.log_has("under the same metadata.uid");
}

#[test]
fn a_missing_manifest_directory_is_picked_up_when_it_appears() {
    let f = Fixture::prepared(&[], |dirs| fs::remove_dir(&dirs.manifests).unwrap());
    std::thread::sleep(Duration::from_secs(2));
    assert!(f.agent.as_ref().is_some());
    let tmp = f.dirs.base.join("manifests.tmp");
    fs::create_dir(&tmp).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        tmp.join("late.yaml"),
        pod("late", &f.image(), "marker-late", LOOP, ""),
    )
    .unwrap();
    fs::rename(&tmp, &f.dirs.manifests).unwrap();
    f.container_pid("marker-late");
}

#[test]
fn writable_manifests_are_refused() {
    let f = Fixture::with_args(&[]);
    write_manifest(
        &f.dirs,
        "app.yaml",
        &pod("app", &f.image(), "marker-perm", LOOP, ""),
    );
    f.container_pid("marker-perm");
    let file = f.dirs.manifests.join("app.yaml");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
    f.gone("marker-perm");
    f.log_has("refusing manifest");
    let log = f.dirs.agent_log();
    assert!(
        log.contains(&format!(
            "{}: refusing manifest writable by group or others (mode 0666, owner uid 0)",
            file.display()
        )),
        "{log}"
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    f.container_pid("marker-perm");

    // A world-writable directory: nothing from it runs.
    fs::set_permissions(&f.dirs.manifests, fs::Permissions::from_mode(0o777)).unwrap();
    f.gone("marker-perm");
    f.log_has("refusing manifest directory");
}

/// A one-request-per-connection HTTP server on 127.0.0.1 serving `body` with an ETag; it
/// answers 403 without `X-Token: secret` and counts the 304s it sends. On drop it serves an
/// empty body, so the agent stops the URL pods before the fixture's cleanup waits for them.
struct Server {
    url: String,
    body: Arc<Mutex<String>>,
    not_modified: Arc<Mutex<usize>>,
    forbidden: Arc<Mutex<usize>>,
}

impl Server {
    fn start(body: String) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/pods.yaml", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let not_modified = Arc::new(Mutex::new(0));
        let forbidden = Arc::new(Mutex::new(0));
        let (b, nm, fb) = (body.clone(), not_modified.clone(), forbidden.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let Ok(clone) = conn.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    headers.push(line.trim().to_lowercase());
                }
                let body = b.lock().unwrap().clone();
                let etag = format!(
                    "\"{:x}\"",
                    body.len() * 31 + body.bytes().map(usize::from).sum::<usize>()
                );
                let resp = if !headers.iter().any(|h| h == "x-token: secret") {
                    *fb.lock().unwrap() += 1;
                    "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                } else if headers.contains(&format!("if-none-match: {etag}")) {
                    *nm.lock().unwrap() += 1;
                    "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                let _ = conn.write_all(resp.as_bytes());
            }
        });
        Server {
            url,
            body,
            not_modified,
            forbidden,
        }
    }

    fn set(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    fn not_modified(&self) -> usize {
        *self.not_modified.lock().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.set(String::new());
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn url_source_with_header_etag_and_empty_body() {
    let mut f = Fixture::with_args(&[]);
    // Declared after the fixture, so dropped first: its empty body stops the URL pods.
    let srv = Server::start(pod("web", &f.image(), "marker-url-1", LOOP, ""));
    let args = [
        "--manifest-url",
        &srv.url,
        "--manifest-url-header",
        "X-Token: secret",
        "--http-check-frequency",
        "500ms",
    ];
    drop(f.agent.take());
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &args));
    let pid = f.container_pid("marker-url-1");
    // Unchanged content: 304s, and the pod is left alone.
    let before = srv.not_modified();
    f.wait("several 304s", || {
        (srv.not_modified() >= before + 3).then_some(())
    });
    assert_eq!(find_pids_by_cmdline("marker-url-1"), vec![pid]);
    assert_eq!(*srv.forbidden.lock().unwrap(), 0, "the header was not sent");

    srv.set(pod("web", &f.image(), "marker-url-2", LOOP, ""));
    f.container_pid("marker-url-2");
    f.gone("marker-url-1");

    // An invalid body keeps the pods.
    srv.set("this is not yaml: [".into());
    f.log_has("invalid manifest url body");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(find_pids_by_cmdline("marker-url-2").len(), 1);

    // An empty body removes them.
    srv.set(String::new());
    f.gone("marker-url-2");
}

#[test]
fn both_sources_at_once_the_file_wins_a_name_clash() {
    let mut f = Fixture::with_args(&[]);
    let list = |image: &str| {
        let a = pod("shared", image, "marker-both-url", LOOP, "");
        let b = pod("urlonly", image, "marker-both-only", LOOP, "");
        let item = |p: String| {
            p.replace("apiVersion: v1\nkind: Pod\n", "")
                .lines()
                .enumerate()
                .map(|(i, l)| {
                    if i == 0 {
                        format!("- {l}\n")
                    } else {
                        format!("  {l}\n")
                    }
                })
                .collect::<String>()
        };
        format!(
            "apiVersion: v1\nkind: PodList\nitems:\n{}{}",
            item(a),
            item(b)
        )
    };
    let srv = Server::start(list(&f.image()));
    drop(f.agent.take());
    write_manifest(
        &f.dirs,
        "shared.yaml",
        &pod("shared", &f.image(), "marker-both-file", LOOP, ""),
    );
    let args = [
        "--manifest-url",
        &srv.url,
        "--manifest-url-header",
        "X-Token:secret",
        "--http-check-frequency",
        "500ms",
    ];
    f.agent = Some(Agent::start_with(&f.dirs, Some(&f.reg), &args));
    f.container_pid("marker-both-file");
    f.container_pid("marker-both-only");
    f.log_has("another source declares the same namespace/name");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        find_pids_by_cmdline("marker-both-url").is_empty(),
        "the URL duplicate runs"
    );
    // The file goes: the URL's pod of that name takes its place.
    remove_manifest(&f.dirs, "shared.yaml");
    f.container_pid("marker-both-url");
    f.gone("marker-both-file");
}
