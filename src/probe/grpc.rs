//! gRPC health checks (`grpc.health.v1.Health/Check`) over HTTP/2, as the kubelet's
//! grpc probe sends them: plaintext, optional service name, SERVING means healthy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use super::{net, ProbeError};

/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// Protobuf of `HealthCheckRequest { service }` inside a gRPC length-prefixed frame.
pub fn request_frame(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The `status` of a `HealthCheckResponse` frame (0 = UNKNOWN when absent).
pub fn response_status(frame: &[u8]) -> Result<u64, ProbeError> {
    if frame.len() < 5 {
        return Err(ProbeError::GrpcShort);
    }
    if frame[0] != 0 {
        return Err(ProbeError::GrpcCompressed);
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let mut msg = frame.get(5..5 + len).ok_or(ProbeError::GrpcTruncated)?;
    let mut status = 0;
    while !msg.is_empty() {
        let (key, n) = varint(msg).ok_or(ProbeError::Protobuf)?;
        msg = &msg[n..];
        match key & 7 {
            0 => {
                let (v, n) = varint(msg).ok_or(ProbeError::Protobuf)?;
                if key >> 3 == 1 {
                    status = v;
                }
                msg = &msg[n..];
            }
            2 => {
                let (l, n) = varint(msg).ok_or(ProbeError::Protobuf)?;
                msg = msg
                    .get(n.saturating_add(l as usize)..)
                    .ok_or(ProbeError::Protobuf)?;
            }
            _ => return Err(ProbeError::WireType),
        }
    }
    Ok(status)
}

/// One health check; `Err` says why the service is not healthy.
pub async fn check(
    netns: Option<PathBuf>,
    addr: SocketAddr,
    service: &str,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let work = async {
        let std_stream = tokio::task::spawn_blocking(move || net::connect(netns, addr, timeout))
            .await
            .map_err(ProbeError::Task)??;
        std_stream
            .set_nonblocking(true)
            .map_err(ProbeError::Socket)?;
        let stream = tokio::net::TcpStream::from_std(std_stream).map_err(ProbeError::Socket)?;
        let (client, conn) = h2::client::handshake(stream)
            .await
            .map_err(ProbeError::Handshake)?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let result = call(client, addr, service).await;
        conn.abort();
        result
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeError::GrpcTimeout(timeout))?
}

async fn call(
    client: h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    service: &str,
) -> Result<(), ProbeError> {
    let mut client = client.ready().await.map_err(ProbeError::Http2)?;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.37")
        .body(())
        .map_err(ProbeError::Request)?;
    let (resp, mut send) = client.send_request(req, false).map_err(ProbeError::Http2)?;
    send.send_data(Bytes::from(request_frame(service)), true)
        .map_err(ProbeError::Http2)?;
    let resp = resp.await.map_err(ProbeError::Rpc)?;
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(ProbeError::Http2)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
        if data.len() > 64 * 1024 {
            return Err(ProbeError::GrpcTooLarge);
        }
    }
    let trailers = body.trailers().await.map_err(ProbeError::Http2)?;
    // A trailers-only response carries grpc-status in the headers.
    let grpc_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| parts.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    if grpc_status != "0" {
        return Err(ProbeError::RpcStatus(grpc_status));
    }
    match response_status(&data)? {
        SERVING => Ok(()),
        s => Err(ProbeError::Unhealthy(status_name(s))),
    }
}

fn status_name(s: u64) -> &'static str {
    match s {
        0 => "UNKNOWN",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "an unknown status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        assert_eq!(request_frame(""), [0, 0, 0, 0, 0]);
        assert_eq!(request_frame("db"), [0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]).unwrap(), SERVING);
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 2]).unwrap(), 2);
        assert_eq!(response_status(&[0, 0, 0, 0, 0]).unwrap(), 0);
        assert!(response_status(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(response_status(&[0, 0, 0, 0, 2, 0x08, 0x80]).is_err());
        assert!(response_status(&[1, 0, 0, 0, 0]).is_err());
    }
}
