//! One GET (or HEAD) per connection, answered with `Connection: close`, served by hyper's
//! HTTP/1 server. Requests are bounded in size and time so a slow or hostile client cannot
//! hold the agent.
//!
//! hyper replaced a hand-written parser and writer (issue 16): it was in the lock already
//! for the registry client, and the measured cost is small. `cargo build --release --bin
//! hostlet`: 8,366,664 → 8,427,016 bytes (+60 KB; .text +45 KB). `VmRSS` of an idle agent
//! after 60 API requests, four runs each: 7,988–8,196 kB before, 7,992–8,252 kB after
//! (means 8,069 and 8,121 kB), within run-to-run noise.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest request head accepted; GETs to this API are a few hundred bytes (hyper's
/// buffer cannot be smaller than 8 KiB).
const MAX_HEAD: usize = 16 * 1024;
/// A client must send its request within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to write the answer to a slow reader.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without its query string, percent-decoding not applied (names of pods
    /// and namespaces are DNS labels: nothing to decode).
    pub path: String,
    pub query: String,
}

impl Request {
    /// A GET of `target` (`/path?query`).
    pub fn get(target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }
}

/// Serves one connection with `handler`.
pub async fn serve_one<S, F>(s: S, handler: F)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&Request) -> Response + Send + 'static,
{
    let handler = move |r: Request| std::future::ready(handler(&r));
    serve_one_async(s, handler, READ_TIMEOUT + WRITE_TIMEOUT).await
}

/// Serves one connection with a handler that may take time (an auto-update pulls
/// images before it answers); the connection is dropped after `limit`.
pub async fn serve_one_async<S, F, Fut>(s: S, handler: F, limit: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(Request) -> Fut + Send + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    // One request per connection (no keep-alive): the handler runs at most once.
    let handler = std::sync::Mutex::new(Some(handler));
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let fut: Pin<Box<dyn Future<Output = Response> + Send>> = match request_of(&req) {
            Err(resp) => Box::pin(std::future::ready(resp)),
            Ok(r) => match handler.lock().unwrap_or_else(|e| e.into_inner()).take() {
                Some(h) => Box::pin(h(r)),
                None => Box::pin(std::future::ready(Response::text(
                    500,
                    "text/plain",
                    "one request per connection",
                ))),
            },
        };
        async move {
            let resp = fut.await;
            let out = hyper::Response::builder()
                .status(resp.status)
                .header(http::header::CONTENT_TYPE, resp.content_type)
                .header(http::header::CONNECTION, "close")
                .body(Full::new(Bytes::from(resp.body)));
            Ok::<_, Infallible>(out.unwrap_or_default())
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        .serve_connection(TokioIo::new(s), svc);
    let _ = tokio::time::timeout(limit, conn).await;
}

/// The request to hand the handler, or the answer without it: 405 to anything but GET
/// or HEAD (hyper leaves out the body of a HEAD answer), 400 to a target that is not a
/// path.
fn request_of(req: &hyper::Request<hyper::body::Incoming>) -> Result<Request, Response> {
    let method = req.method();
    if method != http::Method::GET && method != http::Method::HEAD {
        return Err(Response::text(405, "text/plain", "only GET is served\n"));
    }
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        return Err(Response::text(400, "text/plain", "Bad Request"));
    }
    Ok(Request {
        method: method.to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or("").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `request` to a server answering with `handler`; returns the whole answer.
    async fn exchange(
        request: &[u8],
        handler: impl FnOnce(&Request) -> Response + Send + 'static,
    ) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(serve_one(server, handler));
        client.write_all(request).await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        task.await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn parses_request_line() {
        let got = exchange(
            b"GET /pods/default/web?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            |r| {
                let seen = format!("{} {} {}", r.method, r.path, r.query);
                Response::text(200, "text/plain", seen)
            },
        )
        .await;
        assert!(got.ends_with("\r\n\r\nGET /pods/default/web x=1"), "{got}");
        assert_eq!(Request::get("/pods/default/web?x=1").query, "x=1");
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET pods HTTP/1.1\r\n\r\n",
            b"GET / SPDY\r\n\r\n",
            b"\xff\r\n\r\n",
        ] {
            let got = exchange(bad, |_| Response::text(200, "text/plain", "")).await;
            assert!(got.starts_with("HTTP/1.1 400"), "{bad:?}: {got}");
        }
    }

    #[tokio::test]
    async fn answers_and_closes() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(serve_one(server, |req| {
            Response::text(200, "text/plain", format!("path={}", req.path))
        }));
        client
            .write_all(b"GET /healthz HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        task.await.unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(
            got.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\npath=/healthz"), "{got}");
    }

    #[tokio::test]
    async fn head_answers_without_the_body() {
        let got = exchange(b"HEAD /healthz HTTP/1.1\r\n\r\n", |_| {
            Response::text(200, "text/plain", "ok")
        })
        .await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(
            got.to_ascii_lowercase().contains("content-length: 2\r\n"),
            "{got}"
        );
        assert!(got.ends_with("\r\n\r\n"), "{got}");
    }

    #[tokio::test]
    async fn refuses_other_methods_and_huge_heads() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(serve_one(server, |_| Response::text(200, "text/plain", "")));
        client.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        task.await.unwrap();
        assert!(got.starts_with("HTTP/1.1 405"), "{got}");

        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let task = tokio::spawn(serve_one(server, |_| Response::text(200, "text/plain", "")));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        client.write_all(&big).await.unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        task.await.unwrap();
        assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    }
}
