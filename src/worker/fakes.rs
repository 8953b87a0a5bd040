//! Fakes of the worker's services for its unit tests: a runtime whose containers run,
//! exit and stop as a script says, on tokio's (paused) clock; an image store; a status
//! sink that records every report. No root, no processes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::deps::Deps;
use super::services::{
    ContainerHandle, ContainerReport, ContainerRuntime, Images, PodReport, Services, StatusSink,
};
use crate::backoff::BackoffPolicy;
use crate::image::{Image, ImageError, Keyring, PullPolicy};
use crate::probe::{Action, Checker, ProbeError, Target};
use crate::runtime::{ExitRecord, MonitorConfig, RuntimeError};
use crate::status::Kind;

/// How one instance of a container behaves.
#[derive(Debug, Clone, Copy)]
pub struct Script {
    /// Exits by itself this long after its start, with `exit_code`.
    pub exit_after: Option<Duration>,
    pub exit_code: i32,
    /// The runtime fails to start it.
    pub start_fails: bool,
    /// It ignores its stop signal: only SIGKILL ends it.
    pub ignores_stop: bool,
}

impl Script {
    /// Runs until stopped, and stops at once.
    pub const SERVE: Script = Script {
        exit_after: None,
        exit_code: 0,
        start_fails: false,
        ignores_stop: false,
    };

    pub fn exits(after_s: u64, exit_code: i32) -> Script {
        Script {
            exit_after: Some(Duration::from_secs(after_s)),
            exit_code,
            ..Script::SERVE
        }
    }
}

/// The result of one exec check (probe or hook), after `takes`.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub takes: Duration,
    pub ok: bool,
}

type CheckFn = Box<dyn Fn(Duration) -> CheckResult + Send + Sync>;

#[derive(Default)]
struct RuntimeInner {
    /// Per container name, the scripts of its next instances; [`Script::SERVE`] after.
    scripts: HashMap<String, VecDeque<Script>>,
    /// Per exec command (its first word): the result of a check at a time since t0.
    checks: HashMap<String, CheckFn>,
    /// Per container id: the instance's exit sender and whether it ignores stop.
    live: HashMap<String, (watch::Sender<Option<ExitRecord>>, bool)>,
    events: Vec<(Duration, String)>,
}

/// A container runtime driven by scripts, recording what it was asked.
#[derive(Clone)]
pub struct FakeRuntime {
    t0: Instant,
    inner: Arc<Mutex<RuntimeInner>>,
}

pub struct FakeHandle {
    id: String,
    started_at: String,
    exit: watch::Receiver<Option<ExitRecord>>,
}

impl ContainerHandle for FakeHandle {
    fn id(&self) -> &str {
        &self.id
    }
    fn init_pid(&self) -> i32 {
        1
    }
    fn started_at(&self) -> &str {
        &self.started_at
    }
}

fn exit_record(exit_code: i32, signal: Option<i32>) -> ExitRecord {
    ExitRecord {
        exit_code,
        signal,
        oom_killed: false,
        started_at: Some(jiff::Timestamp::now().to_string()),
        finished_at: jiff::Timestamp::now().to_string(),
        start_error: None,
        message: None,
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self {
            t0: Instant::now(),
            inner: Arc::default(),
        }
    }

    /// When the test began: the fake's clock.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RuntimeInner> {
        self.inner.lock().unwrap()
    }

    /// The scripts of container `name`'s next instances, in order.
    pub fn script(&self, name: &str, scripts: &[Script]) {
        self.lock()
            .scripts
            .entry(name.to_string())
            .or_default()
            .extend(scripts);
    }

    /// How exec checks running `command` turn out, by the time since the test began.
    pub fn check(
        &self,
        command: &str,
        f: impl Fn(Duration) -> CheckResult + Send + Sync + 'static,
    ) {
        self.lock().checks.insert(command.to_string(), Box::new(f));
    }

    fn record(&self, event: String) {
        let at = self.t0.elapsed();
        self.lock().events.push((at, event));
    }

    /// Every event so far: (time since the test began, "start app #0", "stop app", …).
    pub fn events(&self) -> Vec<(Duration, String)> {
        self.lock().events.clone()
    }

    /// The times (whole seconds since the test began) of the events equal to `event`.
    pub fn times(&self, event: &str) -> Vec<u64> {
        let events = self.events();
        events
            .iter()
            .filter(|(_, e)| e == event)
            .map(|(t, _)| t.as_secs())
            .collect()
    }

    /// The events that start with `prefix`, in order, without their times.
    pub fn named(&self, prefix: &str) -> Vec<String> {
        let events = self.events();
        events
            .into_iter()
            .filter(|(_, e)| e.starts_with(prefix))
            .map(|(_, e)| e)
            .collect()
    }

    /// A running instance an earlier agent left, adopted as it is.
    pub fn adopt_running(&self, cfg: &MonitorConfig) -> FakeHandle {
        let (tx, rx) = watch::channel(None);
        self.lock().live.insert(cfg.id.clone(), (tx, false));
        FakeHandle {
            id: cfg.id.clone(),
            started_at: jiff::Timestamp::now().to_string(),
            exit: rx,
        }
    }

    fn end(&self, id: &str, exit: ExitRecord) {
        if let Some((tx, _)) = self.lock().live.get(id) {
            tx.send_if_modified(|e| {
                if e.is_none() {
                    *e = Some(exit);
                    true
                } else {
                    false
                }
            });
        }
    }
}

fn container_of(id: &str) -> &str {
    // container_id(): "<uid>-<name>-<n>"; the tests' uids have no '-'.
    let rest = id.split_once('-').map_or(id, |(_, r)| r);
    rest.rsplit_once('-').map_or(rest, |(n, _)| n)
}

impl Checker for FakeRuntime {
    fn check(
        &self,
        t: &Target,
        action: &Action<'_>,
        _timeout: Duration,
    ) -> impl Future<Output = Result<(), ProbeError>> + Send {
        let command = match action {
            Action::Exec(e) => e.command.clone().unwrap_or_default(),
            _ => Vec::new(),
        };
        let word = command.first().cloned().unwrap_or_default();
        let result = self.lock().checks.get(&word).map(|f| f(self.t0.elapsed()));
        self.record(format!("check {word} {}", container_of(&t.container_id)));
        async move {
            let failed = |code: i32, output: &str| ProbeError::ExecFailed {
                argv: command.clone(),
                code,
                output: output.to_string(),
            };
            let Some(r) = result else {
                return Err(failed(127, "no check scripted"));
            };
            tokio::time::sleep(r.takes).await;
            if r.ok {
                Ok(())
            } else {
                Err(failed(1, "failed"))
            }
        }
    }
}

impl ContainerRuntime for FakeRuntime {
    type Handle = FakeHandle;

    fn start(
        &self,
        cfg: &MonitorConfig,
    ) -> impl Future<Output = Result<FakeHandle, RuntimeError>> + Send {
        let script = {
            let mut g = self.lock();
            let queue = g.scripts.entry(cfg.container.clone()).or_default();
            queue.pop_front().unwrap_or(Script::SERVE)
        };
        self.record(format!("start {} #{}", cfg.container, cfg.restart_count));
        let result = if script.start_fails {
            Err(RuntimeError::Start {
                id: cfg.id.clone(),
                message: "scripted start failure".into(),
            })
        } else {
            let (tx, rx) = watch::channel(None);
            self.lock()
                .live
                .insert(cfg.id.clone(), (tx, script.ignores_stop));
            if let Some(after) = script.exit_after {
                let (me, id, code) = (self.clone(), cfg.id.clone(), script.exit_code);
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    me.end(&id, exit_record(code, None));
                });
            }
            Ok(FakeHandle {
                id: cfg.id.clone(),
                started_at: jiff::Timestamp::now().to_string(),
                exit: rx,
            })
        };
        std::future::ready(result)
    }

    fn stop(&self, h: &FakeHandle) {
        self.record(format!("stop {}", container_of(&h.id)));
        let ignores = self.lock().live.get(&h.id).is_some_and(|(_, i)| *i);
        if !ignores {
            self.end(&h.id, exit_record(143, Some(15)));
        }
    }

    fn kill(&self, h: &FakeHandle) {
        self.record(format!("kill {}", container_of(&h.id)));
        self.end(&h.id, exit_record(137, Some(9)));
    }

    fn wait(&self, h: &FakeHandle) -> impl Future<Output = ExitRecord> + Send {
        let mut rx = h.exit.clone();
        async move {
            let exit = match rx.wait_for(Option::is_some).await {
                Ok(exit) => exit.clone(),
                Err(_) => None,
            };
            match exit {
                Some(exit) => exit,
                // The runtime is gone with the test: never resolves, as a live container.
                None => std::future::pending().await,
            }
        }
    }

    fn remove(&self, id: &str) {
        self.lock().live.remove(id);
        self.record(format!("remove {id}"));
    }
}

/// An image store whose first `failures` ensures fail.
#[derive(Default)]
pub struct FakeImages {
    pub failures: Mutex<u32>,
}

impl Images for FakeImages {
    fn ensure(
        &self,
        reference: &str,
        _policy: PullPolicy,
        _secrets: Keyring,
    ) -> impl Future<Output = Result<Image, ImageError>> + Send {
        let fail = {
            let mut f = self.failures.lock().unwrap();
            let fail = *f > 0;
            *f = f.saturating_sub(1);
            fail
        };
        let result = if fail {
            Err(ImageError::Pull {
                reference: reference.to_string(),
                message: "registry unavailable".into(),
            })
        } else {
            Ok(Image {
                reference: reference.to_string(),
                digest: "sha256:fake".into(),
                layers: Vec::new(),
                config: Default::default(),
            })
        };
        std::future::ready(result)
    }
}

/// Every report, as text, with the pods it knows.
#[derive(Clone, Default)]
pub struct FakeStatus {
    inner: Arc<Mutex<(Vec<String>, HashSet<String>)>>,
}

impl FakeStatus {
    pub fn reports(&self) -> Vec<String> {
        self.inner.lock().unwrap().0.clone()
    }

    /// The reports that start with `prefix`.
    pub fn named(&self, prefix: &str) -> Vec<String> {
        let all = self.reports();
        all.into_iter().filter(|r| r.starts_with(prefix)).collect()
    }
}

impl StatusSink for FakeStatus {
    fn pod(&self, _uid: &str, report: PodReport<'_>) {
        let mut g = self.inner.lock().unwrap();
        let text = match report {
            PodReport::Added(p) => {
                g.1.insert(p.uid.clone());
                "pod Added".to_string()
            }
            PodReport::Removed => {
                g.1.clear();
                "pod Removed".to_string()
            }
            PodReport::AllWaiting { reason, .. } => format!("pod AllWaiting {reason}"),
            PodReport::Evicted { reason, .. } => format!("pod Evicted {reason}"),
            PodReport::Terminating => "pod Terminating".to_string(),
            PodReport::Ips(ips) => format!("pod Ips {ips:?}"),
            PodReport::Resize { progress, .. } => format!("pod Resize {progress:?}"),
            PodReport::Cgroup(l) => format!("pod Cgroup {:?}", l.memory),
        };
        g.0.push(text);
    }

    fn container(&self, _uid: &str, kind: Kind, name: &str, report: ContainerReport<'_>) {
        let text = match report {
            ContainerReport::Waiting { reason, .. } => format!("Waiting {reason}"),
            ContainerReport::Running { .. } => "Running".to_string(),
            ContainerReport::Terminated { exit, .. } => format!("Terminated {}", exit.exit_code),
            ContainerReport::Restarting { restart_count } => format!("Restarting {restart_count}"),
            ContainerReport::RestartCount(n) => format!("RestartCount {n}"),
            ContainerReport::ImageId(d) => format!("ImageId {d}"),
            ContainerReport::User { uid, gid, groups } => format!("User {uid} {gid} {groups:?}"),
            ContainerReport::Started(s) => format!("Started {s}"),
            ContainerReport::Ready(r) => format!("Ready {r}"),
            // Every start reports them: the tests' report lists leave them out.
            ContainerReport::Resources(_) => return,
        };
        let kind = if kind == Kind::Init { "init " } else { "" };
        let line = format!("{kind}{name} {text}");
        self.inner.lock().unwrap().0.push(line);
    }

    fn has_pod(&self, uid: &str) -> bool {
        self.inner.lock().unwrap().1.contains(uid)
    }
}

pub struct Fake;

impl Services for Fake {
    type Runtime = FakeRuntime;
    type Images = FakeImages;
    type Status = FakeStatus;
}

/// Worker dependencies on fakes, with a temporary state directory and no cgroups.
pub fn deps(dir: &std::path::Path, runtime: FakeRuntime, status: FakeStatus) -> Deps<Fake> {
    let node = crate::node::NodeInfo {
        name: "testnode".into(),
        host_ip: "127.0.0.1".into(),
        cpu_milli: 2000,
        memory_bytes: 1 << 30,
        seccomp_default: false,
        seccomp_dir: dir.join("seccomp"),
        pod_max_pids: 0,
        min_oom_score_adj: -1000,
        apparmor: false,
    };
    Deps {
        images: FakeImages::default(),
        runtime,
        status,
        sandbox_helper: PathBuf::from("/nonexistent/hostlet-monitor"),
        layout: crate::state::Layout::new(dir.join("root")),
        pod_logs_dir: dir.join("logs"),
        crash_backoff: BackoffPolicy::default(),
        pull_backoff: BackoffPolicy {
            reset_after: Duration::MAX,
            ..BackoffPolicy::default()
        },
        node,
        cgroups: None,
        log_limits: Default::default(),
        pod_logs_gc_delay: Duration::from_secs(60),
        node_cgroups: Arc::new(crate::cgroups::NodeCgroups::new(None, Default::default())),
        housekeeping_interval: Duration::from_secs(1),
        bundle_builds: tokio::sync::Semaphore::new(super::container::BUNDLE_BUILDS),
        userns: crate::userns::Pool::from_entries(&dir.join("root/pods"), None, None)
            .expect("the default pool"),
        user_namespaces_default: false,
        objects: Default::default(),
        node_kills: Default::default(),
        network: crate::network::Network::new(crate::network::Options {
            conf_dir: dir.join("cni/conf"),
            bin_dirs: vec![dir.join("cni/bin")],
            cache_dir: dir.join("cni/cache"),
            pod_cidr: "10.87.0.0/16".into(),
            resolv_conf: PathBuf::new(),
        }),
    }
}

/// Counts of each report, to check a transition was reported once.
pub fn counts(reports: &[String]) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for r in reports {
        *out.entry(r.as_str()).or_insert(0) += 1;
    }
    out
}
