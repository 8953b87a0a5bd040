//! TCP connections made from the agent into a pod's network namespace. A socket keeps
//! the namespace it was created in, so a short-lived thread enters the namespace, opens
//! the socket and exits: no thread of the agent ever stays in another namespace, and
//! images need no curl or nc.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

use super::ProbeError;

/// Connects to `addr` from inside the network namespace at `netns` (the host's when
/// `None`), within `timeout`.
pub fn connect(
    netns: Option<PathBuf>,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, ProbeError> {
    let dial = move || {
        TcpStream::connect_timeout(&addr, timeout).map_err(|error| ProbeError::Dial { addr, error })
    };
    let Some(ns) = netns else {
        return dial();
    };
    // The thread ends right after, so the namespace it entered goes with it.
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).map_err(|error| ProbeError::Netns {
            path: ns.clone(),
            error,
        })?;
        setns(&f, CloneFlags::CLONE_NEWNET).map_err(|error| ProbeError::Setns {
            path: ns.clone(),
            error,
        })?;
        dial()
    })
    .join()
    .map_err(|_| ProbeError::Panicked)?
}

/// The outcome of an HTTP GET: the status code and the start of the body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// A plain HTTP/1.1 GET over a connected stream, as the kubelet's prober sends it.
///
/// Not hyper's client: probes run on blocking threads with socket timeouts bounding every
/// read, and the verdict needs only the status code (200–399 passes) and the body's first
/// 10 KiB, a dozen lines below. hyper is async and would need a connection task per probe.
pub fn http_get(
    stream: TcpStream,
    https: bool,
    host: &str,
    path: &str,
    headers: &[(String, String)],
    deadline: Instant,
) -> Result<HttpResponse, ProbeError> {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    // Socket timeouts bound every read and write, TLS handshake included.
    stream
        .set_write_timeout(Some(left()))
        .map_err(ProbeError::Socket)?;
    stream
        .set_read_timeout(Some(left()))
        .map_err(ProbeError::Socket)?;
    if https {
        let ip = stream
            .peer_addr()
            .map(|a| a.ip().to_string())
            .map_err(ProbeError::Socket)?;
        let mut tls = super::tls::wrap(stream, &ip)?;
        return exchange(&mut tls, host, path, headers, deadline);
    }
    let mut stream = stream;
    exchange(&mut stream, host, path, headers, deadline)
}

fn exchange(
    stream: &mut (impl Read + Write),
    host: &str,
    path: &str,
    headers: &[(String, String)],
    deadline: Instant,
) -> Result<HttpResponse, ProbeError> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("user-agent") {
        req.push_str("User-Agent: kube-probe/1.37\r\n");
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(ProbeError::Write)?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    // The kubelet reads at most 10 KiB of a probe's body.
    while buf.len() < 10 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if buf.is_empty()
                    || !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                return Err(ProbeError::Read(e));
            }
            Err(_) => break,
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProbeError::MalformedHttp(status_line.to_string()))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(HttpResponse { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn get_reads_status_and_sends_headers() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
                .unwrap();
            String::from_utf8_lossy(&req[..n]).into_owned()
        });
        let stream = connect(None, addr, Duration::from_secs(1)).unwrap();
        let headers = vec![("X-Check".to_string(), "yes".to_string())];
        let r = http_get(
            stream,
            false,
            "127.0.0.1",
            "/healthz",
            &headers,
            Instant::now() + Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "busy");
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains("X-Check: yes\r\n") && req.contains("User-Agent: kube-probe/"),
            "{req}"
        );
    }

    #[test]
    fn refused_connection_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(connect(None, addr, Duration::from_millis(500))
            .unwrap_err()
            .to_string()
            .contains("dial tcp"));
    }
}

#[cfg(test)]
mod https_tests {
    use super::*;
    use std::net::TcpListener;
    use std::process::{Command, Stdio};

    /// HTTPS against `openssl s_server` with a throwaway self-signed certificate: the
    /// probe must succeed without verifying it, as the kubelet's does.
    #[test]
    fn https_get_skips_certificate_verification() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=probe",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl is needed for this test: apt-get install openssl");
        assert!(st.success());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .arg("-key")
            .arg(&key)
            .arg("-cert")
            .arg(&cert)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = loop {
            let attempt = connect(None, addr, Duration::from_secs(1)).and_then(|s| {
                http_get(
                    s,
                    true,
                    "127.0.0.1",
                    "/",
                    &[],
                    Instant::now() + Duration::from_secs(3),
                )
            });
            match attempt {
                Ok(r) => break r,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(r.status, 200);
    }
}
