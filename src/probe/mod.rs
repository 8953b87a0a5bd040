//! Probes and hook actions run by the agent: exec inside the container (through the
//! runtime's exec helper), httpGet and tcpSocket from the agent into the pod's network
//! namespace. A probe only reports; the container supervisor decides what to do.

mod error;
pub mod grpc;
pub mod net;
mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerPort, ExecAction, GRPCAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;

use crate::runtime::{exec::TIMED_OUT, Runtime};
pub use error::ProbeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// Where a probe or hook runs: the container and its pod's network.
#[derive(Debug, Clone)]
pub struct Target {
    pub container_id: String,
    pub init_pid: i32,
    pub host_network: bool,
    pub ports: Vec<ContainerPort>,
    /// The container's series in the prober metrics.
    pub labels: crate::metrics::ProbeLabels,
}

impl Target {
    fn netns(&self) -> Option<PathBuf> {
        // The container's init is a child of its monitor, so its PID cannot be reused
        // while the container runs.
        (!self.host_network).then(|| PathBuf::from(format!("/proc/{}/ns/net", self.init_pid)))
    }

    fn port(&self, p: &IntOrString) -> Result<u16, ProbeError> {
        let n = match p {
            IntOrString::Int(n) => *n,
            IntOrString::String(name) => match name.parse::<i32>() {
                Ok(n) => n,
                Err(_) => self
                    .ports
                    .iter()
                    .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                    .map(|cp| cp.container_port)
                    .ok_or_else(|| ProbeError::NoPortNamed(name.clone()))?,
            },
        };
        u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(ProbeError::InvalidPort(n))
    }

    fn addr(&self, host: Option<&str>, port: &IntOrString) -> Result<SocketAddr, ProbeError> {
        let ip = match host.filter(|h| !h.is_empty()) {
            // Without pod networking the pod's own address is its loopback.
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(h) => h.parse().map_err(|_| ProbeError::Host(h.to_string()))?,
        };
        Ok(SocketAddr::new(ip, self.port(port)?))
    }
}

/// One action of a probe or a hook.
pub enum Action<'a> {
    Exec(&'a ExecAction),
    HttpGet(&'a HTTPGetAction),
    TcpSocket(&'a TCPSocketAction),
    Grpc(&'a GRPCAction),
}

impl<'a> Action<'a> {
    pub fn of_probe(p: &'a Probe) -> Option<Self> {
        p.exec
            .as_ref()
            .map(Action::Exec)
            .or_else(|| p.http_get.as_ref().map(Action::HttpGet))
            .or_else(|| p.tcp_socket.as_ref().map(Action::TcpSocket))
            .or_else(|| p.grpc.as_ref().map(Action::Grpc))
    }
}

/// What runs one check of a probe or lifecycle handler in a container: the runtime, or
/// a fake in the worker's unit tests.
pub trait Checker: Send + Sync + 'static {
    fn check(
        &self,
        t: &Target,
        action: &Action<'_>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(), ProbeError>> + Send;
}

impl Checker for Runtime {
    fn check(
        &self,
        t: &Target,
        action: &Action<'_>,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(), ProbeError>> + Send {
        check(self, t, action, timeout)
    }
}

/// Runs `action` once; `Err` carries the failure message the kubelet would log.
pub async fn check(
    rt: &Runtime,
    t: &Target,
    action: &Action<'_>,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match action {
        Action::Exec(e) => {
            let argv = e.command.clone().unwrap_or_default();
            let out = rt
                .exec(&t.container_id, &argv, timeout)
                .await
                .map_err(ProbeError::Exec)?;
            match out.code {
                0 => Ok(()),
                TIMED_OUT => Err(ProbeError::ExecTimeout { argv, timeout }),
                code => Err(ProbeError::ExecFailed {
                    argv,
                    code,
                    output: out.output,
                }),
            }
        }
        Action::Grpc(g) => {
            let addr = t.addr(None, &IntOrString::Int(g.port))?;
            grpc::check(t.netns(), addr, g.service.as_deref().unwrap_or(""), timeout).await
        }
        Action::TcpSocket(tcp) => {
            let addr = t.addr(tcp.host.as_deref(), &tcp.port)?;
            let ns = t.netns();
            blocking(move || net::connect(ns, addr, timeout).map(drop)).await
        }
        Action::HttpGet(h) => {
            let https = match h.scheme.as_deref().unwrap_or("HTTP") {
                s if s.eq_ignore_ascii_case("http") => false,
                s if s.eq_ignore_ascii_case("https") => true,
                s => return Err(ProbeError::Scheme(s.to_string())),
            };
            let addr = t.addr(h.host.as_deref(), &h.port)?;
            let path = h
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = h
                .http_headers
                .iter()
                .flatten()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect();
            let ns = t.netns();
            let deadline = Instant::now() + timeout;
            blocking(move || {
                let stream = net::connect(ns, addr, timeout)?;
                let host = addr.to_string();
                let r = net::http_get(stream, https, &host, &path, &headers, deadline)?;
                if (200..400).contains(&r.status) {
                    Ok(())
                } else {
                    Err(ProbeError::HttpStatus(r.status))
                }
            })
            .await
        }
    }
}

async fn blocking(
    f: impl FnOnce() -> Result<(), ProbeError> + Send + 'static,
) -> Result<(), ProbeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ProbeError::Task)?
}

/// A verdict change of one probe.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub success: bool,
    pub message: String,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// Runs `probe` with the kubelet's timing and thresholds until the task is dropped,
/// sending an [`Event`] whenever its verdict changes. A startup probe ends after its
/// first success.
pub async fn run(
    kind: Kind,
    probe: Probe,
    rt: Arc<impl Checker>,
    t: Target,
    tx: mpsc::Sender<Event>,
) {
    let Some(action) = Action::of_probe(&probe) else {
        return;
    };
    let period = secs(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(secs(probe.initial_delay_seconds, 0)).await;
    // Liveness is assumed good until proven bad; readiness and startup the opposite.
    let mut verdict = kind == Kind::Liveness;
    let (mut ok_run, mut bad_run) = (0, 0);
    let series = crate::metrics::ProbeSeries::new(kind.as_str(), t.labels.clone());
    loop {
        let began = Instant::now();
        let result = rt.check(&t, &action, timeout).await;
        series.observe(result.is_ok(), began.elapsed());
        match result {
            Ok(()) => {
                bad_run = 0;
                ok_run += 1;
                if !verdict && ok_run >= success_threshold {
                    verdict = true;
                    if tx
                        .send(Event {
                            kind,
                            success: true,
                            message: String::new(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if kind == Kind::Startup {
                        return;
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                ok_run = 0;
                bad_run += 1;
                tracing::debug!(probe = kind.as_str(), failures = bad_run, %message, "probe failed");
                if bad_run >= failure_threshold && (verdict || kind != Kind::Readiness) {
                    verdict = false;
                    bad_run = 0;
                    if tx
                        .send(Event {
                            kind,
                            success: false,
                            message,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Layout;

    fn tcp_probe(port: u16, period: i32, failures: i32) -> Probe {
        Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port as i32),
                host: None,
            }),
            period_seconds: Some(period),
            failure_threshold: Some(failures),
            ..Default::default()
        }
    }

    fn target() -> Target {
        Target {
            container_id: "c".into(),
            init_pid: 1,
            host_network: true,
            ports: Vec::new(),
            labels: Default::default(),
        }
    }

    /// Thresholds and periods follow the kubelet's, checked in virtual time.
    #[tokio::test(start_paused = true)]
    async fn liveness_fails_after_the_threshold_and_readiness_passes_at_once() {
        let rt = Arc::new(Runtime::new(Layout::new("/nonexistent")).unwrap());
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (tx, mut rx) = mpsc::channel(4);
        let t0 = tokio::time::Instant::now();
        let task = tokio::spawn(run(
            Kind::Liveness,
            tcp_probe(closed, 10, 3),
            rt.clone(),
            target(),
            tx,
        ));
        let ev = rx.recv().await.unwrap();
        assert!(!ev.success && ev.message.contains("dial tcp"), "{ev:?}");
        // Checks at 0 s, 10 s and 20 s: the third failure is the verdict.
        assert_eq!(t0.elapsed().as_secs(), 20);
        task.abort();

        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let (tx, mut rx) = mpsc::channel(4);
        let t0 = tokio::time::Instant::now();
        let task = tokio::spawn(run(
            Kind::Readiness,
            tcp_probe(port, 10, 3),
            rt,
            target(),
            tx,
        ));
        let ev = rx.recv().await.unwrap();
        assert!(ev.success);
        assert_eq!(t0.elapsed().as_secs(), 0);
        task.abort();
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let mut t = target();
        t.ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(t.port(&IntOrString::String("http".into())).unwrap(), 8080);
        assert_eq!(t.port(&IntOrString::String("81".into())).unwrap(), 81);
        assert!(t.port(&IntOrString::String("nope".into())).is_err());
        assert!(t.port(&IntOrString::Int(0)).is_err());
        assert!(t.addr(Some("example.com"), &IntOrString::Int(1)).is_err());
    }
}
