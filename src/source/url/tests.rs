use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use tokio::time::timeout;

use super::*;
use crate::manifest::{CONFIG_SOURCE_ANNOTATION, UNKNOWN_FIELD};

const URL: &str = "http://127.0.0.1:1/pods";

fn pod(name: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n")
}

fn body(text: &str) -> Fetch {
    Fetch::Body {
        body: text.as_bytes().to_vec(),
        etag: None,
        last_modified: None,
    }
}

fn names(s: &Snapshot) -> Vec<String> {
    s.pods.iter().map(|p| p.name().to_string()).collect()
}

fn kinds(s: &Snapshot) -> Vec<ProblemKind> {
    s.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn pod_then_errors_keep_it_then_empty_body_removes_it() {
    let mut st = UrlState::new(URL.into(), "N".into(), false);
    st.apply(body(&pod("a")));
    let s = st.snapshot();
    assert_eq!(names(&s), ["a-n"]);
    let p = &s.pods[0];
    assert_eq!(p.source, crate::manifest::Origin::Url(URL.into()));
    let ann = p.pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann[CONFIG_SOURCE_ANNOTATION], "http");
    let uid = p.uid.clone();

    st.apply(Fetch::Failed(
        "server answered 500 Internal Server Error".into(),
    ));
    let s = st.snapshot();
    assert_eq!(names(&s), ["a-n"], "a failed poll keeps the pods");
    assert_eq!(kinds(&s), [ProblemKind::Unreadable]);
    assert!(s.problems[0].message.contains("500"));

    st.apply(body("apiVersion: v1\nkind: Pod\nmetadata: {name: [\n"));
    let s = st.snapshot();
    assert_eq!(names(&s), ["a-n"], "an invalid body keeps the pods");
    assert_eq!(kinds(&s), [ProblemKind::Invalid]);

    st.apply(body(&pod("a")));
    let s = st.snapshot();
    assert_eq!(s.pods[0].uid, uid);
    assert!(s.problems.is_empty());

    st.apply(body("\n  \n"));
    assert!(
        st.snapshot().pods.is_empty(),
        "an empty body removes every pod"
    );
}

#[test]
fn unchanged_body_and_not_modified_change_nothing() {
    let mut st = UrlState::new(URL.into(), "n".into(), false);
    st.apply(body(&pod("a")));
    let before = st.snapshot();
    st.apply(body(&pod("a")));
    st.apply(Fetch::NotModified);
    assert_eq!(st.snapshot(), before, "not even the seen time changes");
}

#[test]
fn validators_are_kept_for_the_next_request() {
    let mut st = UrlState::new(URL.into(), "n".into(), false);
    st.apply(Fetch::Body {
        body: pod("a").into_bytes(),
        etag: Some("\"v1\"".into()),
        last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
    });
    assert_eq!(st.etag.as_deref(), Some("\"v1\""));
    assert!(st.last_modified.is_some());
    st.apply(Fetch::NotModified);
    assert_eq!(st.etag.as_deref(), Some("\"v1\""));
}

#[test]
fn pod_list_with_duplicates_and_unknown_fields() {
    let list = r#"{"apiVersion": "v1", "kind": "PodList", "items": [
      {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolcy": "Always"}]}},
      {"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
      {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "d", "image": "busybox"}]}}
    ]}"#;
    let mut st = UrlState::new(URL.into(), "n".into(), false);
    st.apply(body(list));
    let s = st.snapshot();
    assert_eq!(names(&s), ["a-n", "b-n"]);
    assert_eq!(kinds(&s), [ProblemKind::Duplicate, ProblemKind::Warning]);
    assert!(
        s.problems[1]
            .message
            .contains("items[0].spec.containers[0].imagePullPolcy"),
        "{:?}",
        s.problems
    );
    assert!(s.problems[1].message.contains(UNKNOWN_FIELD));
    let uids: HashSet<_> = s.pods.iter().map(|p| p.uid.clone()).collect();
    assert_eq!(uids.len(), 2);

    // --strict: the typo rejects the whole body, and nothing runs from it.
    let mut st = UrlState::new(URL.into(), "n".into(), true);
    st.apply(body(list));
    let s = st.snapshot();
    assert!(s.pods.is_empty());
    assert_eq!(kinds(&s), [ProblemKind::Invalid]);
}

#[test]
fn one_bad_item_rejects_the_list() {
    let list = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: ok}\n  spec: {containers: [{name: c, image: busybox}]}\n- metadata: {name: bad}\n  spec: {serviceAccountName: x, containers: [{name: c, image: busybox}]}\n";
    let mut st = UrlState::new(URL.into(), "n".into(), false);
    st.apply(body(list));
    let s = st.snapshot();
    assert!(s.pods.is_empty());
    assert!(
        s.problems[0]
            .message
            .contains("items[1].spec.serviceAccountName"),
        "{:?}",
        s.problems
    );
}

/// A one-request-per-connection HTTP server on 127.0.0.1: checks a header, serves an ETag and
/// counts the 304s it answers.
struct Server {
    url: String,
    body: Arc<Mutex<String>>,
    not_modified: Arc<Mutex<usize>>,
    bad_auth: Arc<Mutex<usize>>,
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/pods", listener.local_addr().unwrap());
    let body = Arc::new(Mutex::new(pod("a")));
    let not_modified = Arc::new(Mutex::new(0));
    let bad_auth = Arc::new(Mutex::new(0));
    let (b, nm, ba) = (body.clone(), not_modified.clone(), bad_auth.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                headers.push(line.trim().to_lowercase());
            }
            let body = b.lock().unwrap().clone();
            let etag = format!("\"{}\"", body.len());
            let resp = if !headers.iter().any(|h| h == "x-token: secret") {
                *ba.lock().unwrap() += 1;
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
        bad_auth,
    }
}

#[tokio::test]
async fn polls_with_headers_and_revalidates_with_the_etag() {
    let srv = serve();
    let (tx, mut rx) = mpsc::channel(4);
    let source = UrlSource {
        url: srv.url.clone(),
        headers: vec![("X-Token".into(), "secret".into())],
        node: "n".into(),
        period: Duration::from_millis(100),
        strict: false,
    };
    tokio::spawn(source.run(tx));
    let wait = Duration::from_secs(10);
    let s = timeout(wait, rx.recv()).await.unwrap().unwrap();
    assert_eq!(names(&s), ["a-n"], "{:?}", s.problems);
    // Unchanged: 304s, no new snapshot.
    let deadline = tokio::time::Instant::now() + wait;
    while *srv.not_modified.lock().unwrap() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no 304 answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rx.try_recv().is_err(), "a 304 sent a snapshot");
    *srv.body.lock().unwrap() = pod("bb");
    let s = timeout(wait, rx.recv()).await.unwrap().unwrap();
    assert_eq!(names(&s), ["bb-n"]);
    assert_eq!(*srv.bad_auth.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_missing_header_is_a_failed_poll() {
    let srv = serve();
    let (tx, mut rx) = mpsc::channel(4);
    let source = UrlSource {
        url: srv.url.clone(),
        headers: Vec::new(),
        node: "n".into(),
        period: Duration::from_secs(60),
        strict: false,
    };
    tokio::spawn(source.run(tx));
    let s = timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(s.pods.is_empty());
    assert_eq!(kinds(&s), [ProblemKind::Unreadable]);
    assert!(s.problems[0].message.contains("403"), "{:?}", s.problems);
}

#[test]
fn list_body_carries_config_maps_and_secrets_beside_pods() {
    let mut st = UrlState::new(URL.into(), "n".into(), false);
    st.apply(body(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: cfg}\n  data: {a: b}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n  stringData: {k: v}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: web}\n  spec:\n    containers: [{name: c, image: busybox}]\n",
    ));
    let s = st.snapshot();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(names(&s), ["web-n"]);
    let objs: Vec<String> = s.objects.iter().map(|o| o.full_name()).collect();
    assert_eq!(objs, ["default/cfg", "default/s"]);
    assert_eq!(
        s.objects[0].source,
        crate::manifest::Origin::Url(URL.into())
    );
    // One broken object rejects the body; what ran keeps running.
    st.apply(body(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: Bad}\n",
    ));
    let s = st.snapshot();
    assert_eq!(kinds(&s), [ProblemKind::Invalid]);
    assert!(
        s.problems[0].message.contains("items[0]"),
        "{:?}",
        s.problems
    );
    assert_eq!(s.objects.len(), 2);
    st.apply(body(" "));
    assert!(st.snapshot().objects.is_empty());
}

#[test]
fn immutable_object_change_refused_last_good_kept() {
    let mut st = UrlState::new(URL.into(), "n".into(), false);
    let list = |v: &str, immutable: &str| {
        body(&format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: cfg}}\n{immutable}  data: {{k: {v}}}\n"
        ))
    };
    let value = |st: &UrlState| st.snapshot().objects[0].data["k"].clone();
    st.apply(list("one", "  immutable: true\n"));
    assert!(st.snapshot().problems.is_empty());
    st.apply(list("two", "  immutable: true\n"));
    let s = st.snapshot();
    assert_eq!(kinds(&s), [ProblemKind::Invalid]);
    assert!(
        s.problems[0]
            .message
            .contains("ConfigMap default/cfg is immutable"),
        "{:?}",
        s.problems
    );
    assert_eq!(value(&st), b"one");
    // Dropping immutable is a change too.
    st.apply(list("one", ""));
    assert_eq!(kinds(&st.snapshot()), [ProblemKind::Invalid]);
    assert_eq!(value(&st), b"one");
    // Removed from one body, it may come back changed.
    st.apply(body(" "));
    st.apply(list("three", ""));
    assert!(st.snapshot().problems.is_empty());
    assert_eq!(value(&st), b"three");
}
