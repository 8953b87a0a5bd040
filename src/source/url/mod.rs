//! The `--manifest-url` source: polls a URL whose body is one Pod or a v1 PodList.
//!
//! As the kubelet's (pkg/kubelet/config/http.go): a non-200 answer or a network error keeps
//! the current pods, an empty body removes them all, an unchanged body changes nothing. Unlike
//! the kubelet it revalidates with `If-None-Match`/`If-Modified-Since`, so a server that
//! supports them answers 304 and sends no body.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{
    HeaderName, HeaderValue, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{ProblemKind, Snapshot, SourceProblem, MAX_MANIFEST_SIZE};
use crate::manifest::{self, ConfigObject, StaticPod};

/// The kubelet's HTTP client timeout.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct UrlSource {
    pub url: String,
    /// Sent with every request (`--manifest-url-header 'Name:value'`).
    pub headers: Vec<(String, String)>,
    pub node: String,
    pub period: Duration,
    pub strict: bool,
}

/// What one poll brought back.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetch {
    Body {
        body: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    NotModified,
    Failed(String),
}

impl UrlSource {
    /// Runs until `tx` is closed; sends a snapshot after the first poll (whatever its outcome)
    /// and whenever the pods or the problems change.
    pub async fn run(self, tx: mpsc::Sender<Snapshot>) {
        crate::tls::provider();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("hostlet/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut state = UrlState::new(self.url.clone(), self.node.to_lowercase(), self.strict);
        let mut last_sent: Option<Snapshot> = None;
        loop {
            let fetch = match &client {
                Ok(client) => self.fetch(client, &state).await,
                Err(e) => Fetch::Failed(format!("cannot create an HTTP client: {e}")),
            };
            state.apply(fetch);
            let snap = state.snapshot();
            if last_sent.as_ref() != Some(&snap) {
                tracing::debug!(url = %self.url, pods = snap.pods.len(), "manifest url snapshot");
                if tx.send(snap.clone()).await.is_err() {
                    return;
                }
                last_sent = Some(snap);
            }
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }

    async fn fetch(&self, client: &reqwest::Client, state: &UrlState) -> Fetch {
        let mut req = client.get(&self.url);
        for (name, value) in &self.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => req = req.header(n, v),
                _ => return Fetch::Failed(format!("invalid header {name:?}")),
            }
        }
        if let Some(etag) = &state.etag {
            req = req.header(IF_NONE_MATCH, etag.as_str());
        }
        if let Some(lm) = &state.last_modified {
            req = req.header(IF_MODIFIED_SINCE, lm.as_str());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Fetch::Failed(error_chain(&e)),
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Fetch::NotModified;
        }
        if status != reqwest::StatusCode::OK {
            return Fetch::Failed(format!("server answered {status}"));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    body.extend_from_slice(&chunk);
                    if body.len() as u64 > MAX_MANIFEST_SIZE {
                        return Fetch::Failed("body is larger than 10 MiB".into());
                    }
                }
                Ok(None) => break,
                Err(e) => return Fetch::Failed(error_chain(&e)),
            }
        }
        Fetch::Body {
            body,
            etag,
            last_modified,
        }
    }
}

/// reqwest's top-level messages ("error sending request") hide the cause.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// Everything the URL source knows between polls; pure, so its rules are tested without HTTP.
pub struct UrlState {
    url: String,
    node: String,
    strict: bool,
    pods: Vec<Arc<StaticPod>>,
    /// The ConfigMaps and Secrets of a `List` body.
    objects: Vec<Arc<ConfigObject>>,
    /// Problems of the current body (invalid, duplicates, warnings).
    body_problems: Vec<SourceProblem>,
    /// The last poll failed: logged once, reported until a poll succeeds.
    fetch_error: Option<String>,
    digest: Option<Vec<u8>>,
    etag: Option<String>,
    last_modified: Option<String>,
    seen: HashMap<String, String>,
}

impl UrlState {
    pub fn new(url: String, node: String, strict: bool) -> Self {
        Self {
            url,
            node,
            strict,
            pods: Vec::new(),
            objects: Vec::new(),
            body_problems: Vec::new(),
            fetch_error: None,
            digest: None,
            etag: None,
            last_modified: None,
            seen: HashMap::new(),
        }
    }

    pub fn apply(&mut self, fetch: Fetch) {
        let (body, etag, last_modified) = match fetch {
            Fetch::Failed(e) => {
                if self.fetch_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(url = %self.url, error = %e, pods_kept = self.pods.len(), "cannot fetch manifest url; keeping its pods");
                    self.fetch_error = Some(e);
                }
                return;
            }
            Fetch::NotModified => {
                self.recovered();
                return;
            }
            Fetch::Body {
                body,
                etag,
                last_modified,
            } => (body, etag, last_modified),
        };
        self.recovered();
        self.etag = etag;
        self.last_modified = last_modified;
        let digest = Sha256::digest(&body).to_vec();
        if self.digest.as_ref() == Some(&digest) {
            return;
        }
        self.digest = Some(digest);
        if body.iter().all(u8::is_ascii_whitespace) {
            if !self.pods.is_empty() {
                tracing::info!(url = %self.url, "manifest url body is empty; removing its pods");
            }
            self.set_pods(Vec::new());
            self.objects.clear();
            self.body_problems.clear();
            return;
        }
        match manifest::decode_url_objects(&self.url, &body, &self.node, self.strict) {
            Ok((decoded, objects)) => {
                let mut problems = Vec::new();
                let mut ids = HashSet::new();
                let previous: HashMap<String, Arc<ConfigObject>> = self
                    .objects
                    .drain(..)
                    .map(|o| (format!("{} {}", o.kind.as_str(), o.full_name()), o))
                    .collect();
                for o in objects {
                    for w in &o.warnings {
                        problems.push(self.problem(ProblemKind::Warning, w.to_string()));
                    }
                    let id = format!("{} {}", o.object.kind.as_str(), o.object.full_name());
                    if !ids.insert(id.clone()) {
                        let msg = format!("{id} appears twice in the body; not using the second");
                        problems.push(self.problem(ProblemKind::Duplicate, msg));
                        continue;
                    }
                    // As the file source: an immutable object keeps its content while it
                    // stays in the body (drop it from one body to change it in the next).
                    if let Some(old) = previous.get(&id) {
                        if old.immutable && !old.same_content(&o.object) {
                            let msg = format!("{id} is immutable: change refused, the last good version stays (remove it from the body, then add the new version)");
                            tracing::warn!(url = %self.url, "{msg}");
                            problems.push(self.problem(ProblemKind::Invalid, msg));
                            self.objects.push(old.clone());
                            continue;
                        }
                    }
                    self.objects.push(Arc::new(o.object));
                }
                let mut names = HashSet::new();
                let mut pods = Vec::new();
                for d in decoded {
                    for w in &d.warnings {
                        tracing::warn!(url = %self.url, warning = %w, "unknown field in manifest url body (an error with --strict)");
                        problems.push(self.problem(ProblemKind::Warning, w.to_string()));
                    }
                    if !names.insert(d.pod.full_name()) {
                        let msg = format!(
                            "pod {} appears twice in the body; not running the second",
                            d.pod.full_name()
                        );
                        tracing::warn!(url = %self.url, "{msg}");
                        problems.push(self.problem(ProblemKind::Duplicate, msg));
                        continue;
                    }
                    pods.push(Arc::new(d.pod));
                }
                self.body_problems = problems;
                self.set_pods(pods);
            }
            Err(e) => {
                let msg = e
                    .diagnostics(&body)
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(url = %self.url, error = %msg, pods_kept = self.pods.len(), "invalid manifest url body; keeping its pods");
                self.body_problems = vec![self.problem(ProblemKind::Invalid, msg)];
            }
        }
    }

    fn recovered(&mut self) {
        if self.fetch_error.take().is_some() {
            tracing::info!(url = %self.url, "manifest url can be fetched again");
        }
    }

    fn problem(&self, kind: ProblemKind, message: String) -> SourceProblem {
        SourceProblem {
            origin: self.url.clone(),
            kind,
            message,
        }
    }

    fn set_pods(&mut self, mut pods: Vec<Arc<StaticPod>>) {
        let uids: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
        self.seen.retain(|uid, _| uids.contains(uid.as_str()));
        super::stamp_seen(&mut self.seen, &mut pods);
        self.pods = pods;
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut problems = self.body_problems.clone();
        if let Some(e) = &self.fetch_error {
            problems.push(self.problem(ProblemKind::Unreadable, e.clone()));
        }
        problems.sort();
        Snapshot {
            pods: self.pods.clone(),
            objects: self.objects.clone(),
            problems,
        }
    }
}

#[cfg(test)]
mod tests;
