use std::path::Path;
use std::time::Duration;

use tokio::time::timeout;

use super::*;
use crate::manifest::{decode, decode_url_body, StaticPod};

fn file_pod(file: &str, name: &str) -> StaticPod {
    let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n");
    decode(Path::new(file), yaml.as_bytes(), "n").unwrap()
}

fn url_pod(url: &str, name: &str) -> StaticPod {
    let yaml = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n");
    decode_url_body(url, yaml.as_bytes(), "n", false)
        .unwrap()
        .remove(0)
        .pod
}

fn snap(pods: Vec<StaticPod>) -> Snapshot {
    Snapshot {
        objects: Vec::new(),
        pods: pods.into_iter().map(std::sync::Arc::new).collect(),
        problems: Vec::new(),
    }
}

fn names(s: &Snapshot) -> Vec<String> {
    s.pods.iter().map(|p| p.name().to_string()).collect()
}

#[test]
fn the_file_source_wins_a_name_clash_and_the_other_is_reported() {
    let mut m = Merger::default();
    let files = snap(vec![file_pod("/m/a.yaml", "a"), file_pod("/m/b.yaml", "b")]);
    let url = snap(vec![url_pod("http://x/p", "b"), url_pod("http://x/p", "c")]);
    let merged = m.merge(&[files.clone(), url.clone()]);
    assert_eq!(names(&merged), ["a-n", "b-n", "c-n"]);
    let b = &merged.pods[1];
    assert_eq!(b.source.to_string(), "/m/b.yaml");
    assert_eq!(merged.problems.len(), 1, "{:?}", merged.problems);
    let p = &merged.problems[0];
    assert_eq!(p.kind, ProblemKind::Duplicate);
    assert_eq!(p.origin, "http://x/p");
    assert!(p.message.contains("default/b-n"), "{}", p.message);
    assert!(p.message.contains("/m/b.yaml"), "{}", p.message);
    // Priority is by source, not by order of appearance.
    let merged = m.merge(&[snap(vec![file_pod("/m/b.yaml", "b")]), url]);
    assert_eq!(merged.pods[0].source.to_string(), "/m/b.yaml");
}

#[test]
fn problems_of_every_source_are_kept() {
    let mut m = Merger::default();
    let problem = |origin: &str| SourceProblem {
        origin: origin.into(),
        kind: ProblemKind::Invalid,
        message: "x".into(),
    };
    let mut a = snap(vec![]);
    a.problems.push(problem("/m/z.yaml"));
    let mut b = snap(vec![]);
    b.problems.push(problem("http://a"));
    let merged = m.merge(&[a, b]);
    let origins: Vec<_> = merged.problems.iter().map(|p| p.origin.as_str()).collect();
    assert_eq!(origins, ["/m/z.yaml", "http://a"]);
}

#[tokio::test]
async fn waits_for_every_source_then_sends_full_snapshots() {
    let (ftx, frx) = mpsc::channel(4);
    let (utx, urx) = mpsc::channel(4);
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(run(vec![frx, urx], tx));
    ftx.send(snap(vec![file_pod("/m/a.yaml", "a")]))
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "sent before the url source reported"
    );
    utx.send(snap(vec![url_pod("http://x", "u")]))
        .await
        .unwrap();
    let s = timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&s), ["a-n", "u-n"]);
    // An update of one source yields a full snapshot of both.
    utx.send(snap(vec![])).await.unwrap();
    let s = timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(names(&s), ["a-n"]);
    // The same content again is not resent.
    ftx.send(snap(vec![file_pod("/m/a.yaml", "a")]))
        .await
        .unwrap();
    assert!(timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_err());
    // Every source ended: the merged stream ends.
    drop(ftx);
    drop(utx);
    assert!(timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .is_none());
}
