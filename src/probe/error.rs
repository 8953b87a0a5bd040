//! Why a probe or hook action failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::RuntimeError;

/// Why a probe or hook action failed. The messages are the kubelet prober's where it has
/// one: they end up in events and in the container's status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no container port named {0:?}")]
    NoPortNamed(String),
    #[error("invalid port {0}")]
    InvalidPort(i32),
    #[error("host {0:?} is not an IP address")]
    Host(String),
    #[error("unknown scheme {0:?}")]
    Scheme(String),
    #[error("{0}")]
    Exec(RuntimeError),
    #[error("command {argv:?} timed out after {}s", timeout.as_secs_f32())]
    ExecTimeout {
        argv: Vec<String>,
        timeout: Duration,
    },
    #[error("command {argv:?} exited with {code}: {}", output.trim())]
    ExecFailed {
        argv: Vec<String>,
        code: i32,
        output: String,
    },
    #[error("HTTP probe failed with statuscode: {0}")]
    HttpStatus(u16),
    #[error("hook has no exec, httpGet or sleep action")]
    NoHookAction,
    #[error("{0}")]
    Task(tokio::task::JoinError),
    #[error("dial tcp {addr}: {error}")]
    Dial {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("{}: {error}", path.display())]
    Netns {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("entering {}: {error}", path.display())]
    Setns { path: PathBuf, error: nix::Error },
    #[error("probe thread panicked")]
    Panicked,
    #[error("{0}")]
    Socket(std::io::Error),
    #[error("server name {host:?}: {error}")]
    ServerName {
        host: String,
        error: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("{0}")]
    Tls(rustls::Error),
    #[error("writing request: {0}")]
    Write(std::io::Error),
    #[error("reading response: {0}")]
    Read(std::io::Error),
    #[error("malformed HTTP response: {0:?}")]
    MalformedHttp(String),
    #[error("http2 handshake: {0}")]
    Handshake(h2::Error),
    #[error("{0}")]
    Http2(h2::Error),
    #[error("{0}")]
    Request(http::Error),
    #[error("rpc error: {0}")]
    Rpc(h2::Error),
    #[error("rpc error: code = {0}")]
    RpcStatus(String),
    #[error("timeout: health rpc did not complete within {}s", .0.as_secs_f32())]
    GrpcTimeout(Duration),
    #[error("gRPC response too large")]
    GrpcTooLarge,
    #[error("short gRPC response")]
    GrpcShort,
    #[error("compressed gRPC responses are not supported")]
    GrpcCompressed,
    #[error("truncated gRPC response")]
    GrpcTruncated,
    #[error("malformed protobuf")]
    Protobuf,
    #[error("unexpected protobuf wire type")]
    WireType,
    #[error("service unhealthy (responded with {0})")]
    Unhealthy(&'static str),
}
