//! The status API: read-only HTTP over `<root-dir>/hostlet.sock` (mode 0600) and, with
//! `--read-only-port`, on 127.0.0.1. `GET /pods` is a `v1/PodList` like the kubelet's
//! read-only `/pods`; `/pods/<namespace>/<name>` one pod; `/healthz` says `ok` once the
//! sources are synced; `/metrics` is Prometheus text. The CLI verbs are its clients.

pub mod client;
pub mod http;
pub mod sd_notify;
mod update;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
use k8s_openapi::List;
use tokio::net::{TcpListener, UnixListener};

use crate::status::StatusStore;
use http::{Request, Response};

/// The socket's file name under `--root-dir`.
pub const SOCKET: &str = "hostlet.sock";

pub fn socket_path(root_dir: &Path) -> PathBuf {
    root_dir.join(SOCKET)
}

/// A listening socket at `path` that is private (0600) from its first instant. Linux
/// gives the socket file the mode of the unbound socket's inode less the umask, so the
/// mode is set on the socket before `bind`; changing the umask instead would be
/// process-wide, and workers already running would create pod dirs and volumes under it.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    nix::sys::stat::fchmod(
        fd.as_raw_fd(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )?;
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    socket::listen(&fd, Backlog::MAXCONN)?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: another agent is listening there (one agent per --root-dir)")]
    InUse { path: PathBuf },
    #[error("read-only port 127.0.0.1:{port}: {source}")]
    Port { port: u16, source: std::io::Error },
}

/// Binds the socket (replacing a stale one) and, when asked, the read-only port; the
/// returned server runs until dropped or aborted.
pub async fn bind(root_dir: &Path, read_only_port: Option<u16>) -> Result<Server, ApiError> {
    let path = socket_path(root_dir);
    let err = |source| ApiError::Socket {
        path: path.clone(),
        source,
    };
    // A live agent answers on its socket: never steal it. One that does not answer was
    // left by an agent that is gone. An agent `kill -9`ed while it spawned a process
    // leaves the listening socket open in that child until it execs: the socket then
    // accepts connections for a moment after its agent died (seen in tests/drills_host.rs),
    // so only one that keeps accepting for a second is taken as another agent's.
    let mut live = std::os::unix::net::UnixStream::connect(&path).is_ok();
    for _ in 0..10 {
        if !live {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        live = std::os::unix::net::UnixStream::connect(&path).is_ok();
    }
    if live {
        return Err(ApiError::InUse { path });
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let unix = bind_private(&path).map_err(err)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let tcp = match read_only_port {
        Some(port) => Some(
            TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|source| ApiError::Port { port, source })?,
        ),
        None => None,
    };
    Ok(Server {
        unix,
        tcp,
        path,
        updates: None,
    })
}

pub struct Server {
    unix: UnixListener,
    tcp: Option<TcpListener>,
    path: PathBuf,
    /// Where `GET /auto-update` on the socket hands its check (the manager).
    updates: Option<crate::update::Requests>,
}

impl Server {
    /// Serves `GET /auto-update` on the socket by handing checks to `tx`.
    pub fn auto_update(mut self, tx: crate::update::Requests) -> Self {
        self.updates = Some(tx);
        self
    }

    /// Accepts connections until the task is dropped; each one is served on its own task.
    pub async fn run(self, status: StatusStore) {
        tracing::info!(socket = %self.path.display(), read_only_port = ?self.tcp.as_ref().and_then(|t| t.local_addr().ok()).map(|a| a.port()), "status API listening");
        loop {
            let tcp_accept = async {
                match &self.tcp {
                    Some(t) => t.accept().await.map(|(s, _)| s),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.unix.accept() => match r {
                    Ok((s, _)) => {
                        let st = status.clone();
                        let updates = self.updates.clone();
                        tokio::spawn(http::serve_one_async(s, move |req| async move {
                            if req.path.trim_end_matches('/') == update::PATH {
                                update::answer(updates, req).await
                            } else {
                                handle(&st, &req)
                            }
                        }, update::LIMIT));
                    }
                    Err(e) => accept_failed(e).await,
                },
                r = tcp_accept => match r {
                    Ok(s) => {
                        let st = status.clone();
                        tokio::spawn(http::serve_one(s, move |req| handle(&st, req)));
                    }
                    Err(e) => accept_failed(e).await,
                },
            }
        }
    }
}

/// Out of file descriptors, most likely: wait instead of spinning.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "status API accept");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

fn json<T: serde::Serialize>(status: u16, v: &T) -> Response {
    // Through a Value: the pretty printer then runs over Value only, not over every
    // k8s type the agent serves (less code resident in the agent; BENCHMARKS.md row 4a).
    match serde_json::to_value(v).and_then(|v| serde_json::to_vec_pretty(&v)) {
        Ok(mut body) => {
            body.push(b'\n');
            Response::json(status, body)
        }
        Err(e) => Response::text(500, "text/plain", format!("encoding: {e}\n")),
    }
}

fn not_found(message: String) -> Response {
    let st = Status {
        code: Some(404),
        message: Some(message),
        reason: Some("NotFound".into()),
        status: Some("Failure".into()),
        ..Default::default()
    };
    let mut v = serde_json::to_value(&st).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("kind".into(), "Status".into());
        m.insert("apiVersion".into(), "v1".into());
    }
    json(404, &v)
}

/// Routes one request; everything here only reads.
pub fn handle(status: &StatusStore, req: &Request) -> Response {
    let parts: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(1).collect();
    match parts.as_slice() {
        ["healthz"] => {
            let (code, body) = if status.synced() {
                (200, "ok")
            } else {
                (503, "sources not synced yet")
            };
            let body = if req.query.split('&').any(|q| q == "verbose") {
                verbose_health(status, body)
            } else {
                body.to_string()
            };
            Response::text(code, "text/plain; charset=utf-8", body)
        }
        ["metrics"] => Response::text(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crate::metrics::render(status),
        ),
        ["pods"] => json(200, &pod_list(status.pods())),
        ["pods", ns, name] => match status.pod(ns, name) {
            Some(pod) => json(200, &pod),
            None => not_found(format!("pods \"{name}\" not found in namespace \"{ns}\"")),
        },
        _ => not_found(format!(
            "no such endpoint {}: try /pods, /pods/NAMESPACE/NAME, /healthz or /metrics",
            req.path
        )),
    }
}

/// `/healthz?verbose`: the sources' state, then the node's conditions, one a line
/// (`DiskPressure False KubeletHasNoDiskPressure: message`), then the verdict.
fn verbose_health(status: &StatusStore, verdict: &str) -> String {
    let mut out = String::new();
    let sign = if status.synced() { '+' } else { '-' };
    out += &format!("[{sign}]sources {verdict}\n");
    for c in status.node_conditions() {
        out += &format!(
            "{} {} {}: {}\n",
            c.type_,
            c.status,
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default()
        );
    }
    out += verdict;
    out
}

fn pod_list(items: Vec<Pod>) -> List<Pod> {
    List {
        items,
        metadata: ListMeta::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(status: &StatusStore, path: &str) -> Response {
        handle(status, &Request::get(path))
    }

    /// The socket file is born 0600 under the usual 022 umask (a plain bind gives 0755).
    #[tokio::test]
    async fn socket_is_private_from_its_first_instant() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let _l = bind_private(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }

    #[test]
    fn routes() {
        let st = StatusStore::new();
        assert_eq!(get(&st, "/healthz").status, 503);
        st.set_synced();
        let h = get(&st, "/healthz");
        assert_eq!((h.status, h.body.as_slice()), (200, &b"ok"[..]));
        let list: serde_json::Value = serde_json::from_slice(&get(&st, "/pods").body).unwrap();
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["items"], serde_json::json!([]));
        let nf = get(&st, "/pods/default/nope");
        assert_eq!(nf.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&nf.body).unwrap();
        assert_eq!(v["reason"], "NotFound");
        assert_eq!(get(&st, "/nope").status, 404);
        assert_eq!(get(&st, "/metrics").status, 200);
    }

    #[test]
    fn verbose_health_lists_the_node_conditions() {
        let st = StatusStore::new();
        st.set_synced();
        st.set_node_condition("DiskPressure", true, "KubeletHasDiskPressure", "low");
        st.set_node_condition("PIDPressure", false, "KubeletHasSufficientPID", "fine");
        let h = get(&st, "/healthz?verbose");
        assert_eq!(h.status, 200);
        assert_eq!(
            String::from_utf8(h.body).unwrap(),
            "[+]sources ok\nDiskPressure True KubeletHasDiskPressure: low\nPIDPressure False KubeletHasSufficientPID: fine\nok"
        );
        assert_eq!(get(&st, "/healthz").body, b"ok");
        let m = String::from_utf8(get(&st, "/metrics").body).unwrap();
        assert!(
            m.contains("hostlet_node_condition{condition=\"DiskPressure\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("hostlet_node_condition{condition=\"PIDPressure\"} 0\n"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn socket_is_private() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(socket_path(dir.path()), b"stale").unwrap();
        let server = bind(dir.path(), None).await.unwrap();
        let mode = std::fs::metadata(socket_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let st = StatusStore::new();
        st.set_synced();
        let task = tokio::spawn(server.run(st));
        let path = socket_path(dir.path());
        let (code, body) = tokio::task::spawn_blocking(move || client::get(&path, "/healthz"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((code, body.as_slice()), (200, &b"ok"[..]));
        let again = bind(dir.path(), None).await.err().map(|e| e.to_string());
        assert!(again.is_some_and(|e| e.contains("another agent")));
        task.abort();
    }
}
