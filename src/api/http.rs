//! Just enough HTTP/1.1 for a read-only API: one GET (or HEAD) per connection, answered
//! with `Connection: close`. Requests are bounded in size and time so a slow or hostile
//! client cannot hold the agent.
//!
//! Kept hand-written rather than hyper's server (hyper is in the lock, for the registry
//! client): the agent binary links no `hyper::server` code today (`nm -C
//! target/debug/hostlet | grep -c hyper::server` = 0, against 455 `hyper::` client
//! symbols), and the agent's RSS is mostly its own .text (BENCHMARKS.md row 4a, 13.7 MiB
//! against a 15 MB target), so a server stack for one GET per connection would be paid in
//! memory. Its release size was not measured (issue 16 note); measure before switching.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head accepted; GETs to this API are a few hundred bytes.
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

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Reads the request head (up to the blank line); `Err` carries the status to answer.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, u16> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(431);
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return Err(400),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

pub fn parse(head: &[u8]) -> Result<Request, u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let line = text.lines().next().ok_or(400u16)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() || !target.starts_with('/') {
        return Err(400);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    })
}

/// Serves one connection with `handler`.
pub async fn serve_one<S, F>(mut s: S, handler: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Response,
{
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut s)).await;
    let (resp, head_only) = match head {
        Err(_) => return,
        Ok(Err(status)) => (Response::text(status, "text/plain", reason(status)), false),
        Ok(Ok(head)) => match parse(&head) {
            Err(status) => (Response::text(status, "text/plain", reason(status)), false),
            Ok(req) if req.method == "GET" || req.method == "HEAD" => {
                (handler(&req), req.method == "HEAD")
            }
            Ok(_) => (
                Response::text(405, "text/plain", "only GET is served\n"),
                false,
            ),
        },
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        s.write_all(&out).await?;
        s.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_line() {
        let r = parse(b"GET /pods/default/web?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/pods/default/web");
        assert_eq!(r.query, "x=1");
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET pods HTTP/1.1\r\n\r\n",
            b"GET / SPDY\r\n\r\n",
            b"\xff\r\n\r\n",
        ] {
            assert_eq!(parse(bad), Err(400), "{bad:?}");
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
        assert!(got.ends_with("\r\n\r\npath=/healthz"), "{got}");
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
