//! The CLI's side of the status API: one blocking GET over the Unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no hostlet agent is running at {path} (is `hostlet run` started with this --root-dir?)"
    )]
    NoAgent { path: PathBuf },
    #[error("permission denied on {path}: the status socket is root's (try sudo)")]
    Denied { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: malformed answer from the agent")]
    Malformed { path: PathBuf },
}

/// GETs `target` (path and query) and returns the status code and body.
pub fn get(socket: &Path, target: &str) -> Result<(u16, Vec<u8>), ClientError> {
    get_within(socket, target, Duration::from_secs(30))
}

/// [`get`] for an answer that may take up to `timeout` (an auto-update pulls first).
pub fn get_within(
    socket: &Path,
    target: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), ClientError> {
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NoAgent {
                path: socket.to_path_buf(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Denied {
            path: socket.to_path_buf(),
        },
        _ => io(e),
    })?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: hostlet\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let malformed = || ClientError::Malformed {
        path: socket.to_path_buf(),
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| malformed())?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(malformed)?;
    Ok((code, raw[split + 4..].to_vec()))
}
