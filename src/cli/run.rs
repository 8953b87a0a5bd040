//! `hostlet run`: the agent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::backoff::BackoffPolicy;
use crate::config::{self, AgentConfig};
use crate::manager::Manager;
use crate::runtime::Runtime;
use crate::source::file::FileSource;
use crate::source::url::UrlSource;
use crate::state::Layout;
use crate::status::StatusStore;
use crate::worker::Deps;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Directory of v1/Pod manifests (*.yaml, *.yml, *.json), or a single manifest file
    #[arg(long, value_name = "PATH", required_unless_present_any = ["manifest_url", "config"])]
    pub pod_manifest_path: Option<PathBuf>,
    /// URL whose body is a v1 Pod or PodList, polled every --http-check-frequency
    #[arg(long, value_name = "URL")]
    pub manifest_url: Option<String>,
    /// HTTP header sent with every --manifest-url request; repeatable
    #[arg(long, value_name = "NAME:VALUE", value_parser = header)]
    pub manifest_url_header: Vec<(String, String)>,
    /// How often --manifest-url is polled
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration)]
    pub http_check_frequency: Duration,
    /// Unknown manifest fields (typos) are errors that keep the pod from running, not warnings
    #[arg(long)]
    pub strict: bool,
    /// Where hostlet keeps images, bundles and container state
    #[arg(long, value_name = "DIR", default_value = "/var/lib/hostlet")]
    pub root_dir: PathBuf,
    /// Where container logs are written, as /var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log
    #[arg(long, value_name = "DIR", default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// A kubelet config file (kubelet.config.k8s.io/v1beta1 KubeletConfiguration): the
    /// fields hostlet implements apply, others are reported; flags override the file
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Rotate a container's log file when it reaches this size (10Mi, 500Ki, 1G)
    #[arg(long, value_name = "QUANTITY", default_value = "10Mi", value_parser = log_size)]
    pub container_log_max_size: u64,
    /// Most log files kept per container, the live one included (at least 2)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub container_log_max_files: u32,
    /// Also serve the status API's read-only endpoints over HTTP on 127.0.0.1:PORT
    #[arg(long, value_name = "PORT")]
    pub read_only_port: Option<u16>,
    /// The node name used in pod names (<name>-<node>); default: the host name, lowercased
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,
    /// A registry (HOST:PORT) reached over plain HTTP; repeatable
    #[arg(long, value_name = "HOST:PORT")]
    pub insecure_registry: Vec<String>,
    /// How often the manifest path is re-listed in full, besides inotify (500ms, 2s, 1m …)
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration)]
    pub file_check_frequency: Duration,
    /// First crash-loop back-off delay (the kubelet's is 10s)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub crash_loop_backoff_initial: Duration,
    /// Longest crash-loop back-off delay (the kubelet's is 300s)
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = duration)]
    pub crash_loop_backoff_max: Duration,
    /// How long the logs of a deleted pod are kept before they are removed
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = duration, hide = true)]
    pub pod_logs_gc_delay: Duration,
    #[command(flatten)]
    pub images: crate::cli::pull::RunImageArgs,
    /// Give containers that name no seccomp profile the RuntimeDefault one (the kubelet's
    /// seccompDefault)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub seccomp_default: bool,
    /// Run pods that do not set hostUsers as hostUsers: false (a user namespace each),
    /// except those with hostNetwork, hostPID, hostIPC or a privileged container
    /// (hostlet's extension)
    #[arg(long)]
    pub user_namespaces_default: bool,
    /// Most processes a pod may have (its pod cgroup's pids.max); -1 is no limit
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// How pod and container cgroups are made: cgroupfs (directories hostlet writes) or
    /// systemd (slices and scopes); default: systemd when systemd is PID 1
    #[arg(long, value_name = "DRIVER", value_parser = ["cgroupfs", "systemd"])]
    pub cgroup_driver: Option<String>,
    /// The cgroup the agent's pod cgroups live under (`<root>/kubepods/...`, or the
    /// slice `/a.slice` with systemd); the agent removes pod cgroups of pods it does not
    /// know only under it, so agents sharing a host each need their own
    #[arg(long, value_name = "CGROUP", default_value = "/")]
    pub cgroup_root: String,
    /// Resources set aside for Kubernetes daemons, taken off the node allocatable that
    /// limits the kubepods cgroup (cpu=100m,memory=256Mi,pid=1000,hugepages-2Mi=4Mi)
    #[arg(long, value_name = "NAME=QUANTITY,...", default_value = "")]
    pub kube_reserved: crate::cgroups::Reserved,
    /// Resources set aside for the operating system, taken off the node allocatable too
    #[arg(long, value_name = "NAME=QUANTITY,...", default_value = "")]
    pub system_reserved: crate::cgroups::Reserved,
    /// How often disk emptyDirs are measured against their sizeLimit (the kubelet's
    /// housekeeping interval)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration, hide = true)]
    pub housekeeping_interval: Duration,
    /// Remove the pod cgroups of unknown pods under --cgroup-root; off only where agents
    /// share a root and cannot have their own (the test suite under systemd)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, hide = true)]
    pub orphan_cgroup_sweep: bool,
    /// Where the CNI network config is read: the first *.conflist, *.conf or *.json in
    /// lexical order; none there means hostlet's built-in bridge network on --pod-cidr
    #[arg(long, value_name = "DIR", default_value = crate::network::DEFAULT_CONF_DIR)]
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugin binaries are looked up, a colon-separated search path; pods
    /// without hostNetwork wait (NetworkNotReady) until the config's plugins are here
    #[arg(long, value_name = "DIRS", default_value = crate::network::DEFAULT_BIN_DIR)]
    pub cni_bin_dir: String,
    /// Where the result of each pod's CNI ADD is kept, for its CHECK and DEL; default:
    /// <root-dir>/cni
    #[arg(long, value_name = "DIR")]
    pub cni_cache_dir: Option<PathBuf>,
    /// The pods' addresses in the built-in network (used only when --cni-conf-dir holds
    /// no config)
    #[arg(long, value_name = "CIDR", default_value = crate::network::DEFAULT_POD_CIDR, value_parser = cidr)]
    pub pod_cidr: String,
    /// The host resolver config pods' /etc/resolv.conf is made from (dnsPolicy Default
    /// and ClusterFirst); "" gives them none. When it names only loopback nameservers
    /// (systemd-resolved's stub) and /run/systemd/resolve/resolv.conf exists, pods in their
    /// own network namespace get that file's instead
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// How often the images of pods annotated hostlet.io/auto-update are checked and
    /// updated (24h, 6h …); default: only on `hostlet auto-update`
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub auto_update_interval: Option<Duration>,
    /// Hard eviction thresholds (SIGNAL<QUANTITY or SIGNAL<PERCENT%, comma-separated) on
    /// memory.available, nodefs.available, nodefs.inodesFree, imagefs.available,
    /// imagefs.inodesFree, pid.available; default: the kubelet's, which any value replaces
    #[arg(
        long,
        value_name = "SIGNAL<VALUE,...",
        overrides_with = "eviction_hard"
    )]
    pub eviction_hard: Option<String>,
    /// Soft eviction thresholds, acted on once met for their --eviction-soft-grace-period
    #[arg(long, value_name = "SIGNAL<VALUE,...", default_value = "")]
    pub eviction_soft: String,
    /// How long each soft threshold must be met before pods are evicted (SIGNAL=DURATION,...)
    #[arg(long, value_name = "SIGNAL=DURATION,...", default_value = "")]
    pub eviction_soft_grace_period: String,
    /// How much more than its threshold a signal must have again before its pressure ends
    /// (SIGNAL=QUANTITY,...)
    #[arg(long, value_name = "SIGNAL=VALUE,...", default_value = "")]
    pub eviction_minimum_reclaim: String,
    /// How long a pressure condition stays after its thresholds stop being met; evicted
    /// pods restart once it is gone
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub eviction_pressure_transition_period: Duration,
    /// Longest grace period (seconds) of a pod evicted for a soft threshold
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub eviction_max_pod_grace_period: u32,
    /// How long a node shutdown is delayed to stop pods (a logind inhibitor lock);
    /// 0 turns graceful node shutdown off
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub shutdown_grace_period: Duration,
    /// The part of --shutdown-grace-period kept for critical pods, stopped last
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration)]
    pub shutdown_grace_period_critical_pods: Duration,
}

pub(super) fn cidr(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{s:?}: expected an address range like {}",
            crate::network::DEFAULT_POD_CIDR
        )
    };
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 30 } else { 126 };
    if len > max {
        return Err(format!("{s:?}: a /{len} holds no pods"));
    }
    Ok(s.to_string())
}

fn header(s: &str) -> Result<(String, String), String> {
    config::parse_header(s).map_err(|e| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    config::parse_duration(s).map_err(|e| e.to_string())
}

fn log_size(s: &str) -> Result<u64, String> {
    let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.to_string());
    crate::manifest::quantity::parse_memory_bytes(&q)
        .map(|n| n as u64)
        .map_err(|e| e.to_string())
}

impl RunArgs {
    fn into_config(self) -> anyhow::Result<AgentConfig> {
        let abs = |p: PathBuf, flag: &str| -> anyhow::Result<PathBuf> {
            std::path::absolute(&p).with_context(|| format!("{flag} {}", p.display()))
        };
        let root_dir = abs(self.root_dir, "--root-dir")?;
        let network = crate::network::Options {
            conf_dir: abs(self.cni_conf_dir, "--cni-conf-dir")?,
            bin_dirs: crate::network::split_paths(&self.cni_bin_dir),
            cache_dir: match self.cni_cache_dir {
                Some(d) => abs(d, "--cni-cache-dir")?,
                None => root_dir.join("cni"),
            },
            pod_cidr: self.pod_cidr,
            resolv_conf: match self.resolv_conf.as_os_str().is_empty() {
                true => PathBuf::new(),
                false => abs(self.resolv_conf, "--resolv-conf")?,
            },
        };
        Ok(AgentConfig {
            network,
            pod_manifest_path: self
                .pod_manifest_path
                .map(|p| abs(p, "--pod-manifest-path"))
                .transpose()?,
            manifest_url: self.manifest_url,
            manifest_url_headers: self.manifest_url_header,
            http_check_frequency: self.http_check_frequency,
            strict: self.strict,
            root_dir,
            pod_logs_dir: abs(self.pod_logs_dir, "--pod-logs-dir")?,
            node_name: self
                .hostname_override
                .map(|h| h.to_lowercase())
                .unwrap_or_else(config::default_node_name),
            insecure_registries: self.insecure_registry,
            file_check_frequency: self.file_check_frequency,
            pod_logs_gc_delay: self.pod_logs_gc_delay,
            crash_backoff: BackoffPolicy {
                initial: self.crash_loop_backoff_initial,
                max: self.crash_loop_backoff_max,
                ..BackoffPolicy::default()
            },
            seccomp_default: self.seccomp_default,
            user_namespaces_default: self.user_namespaces_default,
            log_limits: crate::logs::LogLimits {
                max_size: self.container_log_max_size,
                max_files: self.container_log_max_files,
            },
            read_only_port: self.read_only_port,
            pod_max_pids: self.pod_max_pids,
            cgroup_driver: match self.cgroup_driver.as_deref() {
                Some(d) => d.parse().map_err(anyhow::Error::msg)?,
                None => crate::cgroups::Driver::detect(),
            },
            cgroup_root: crate::cgroups::CgroupRoot::parse(&self.cgroup_root)?,
        })
    }
}

pub fn main(args: RunArgs) -> anyhow::Result<()> {
    let args = match &args.config {
        Some(file) => with_config_file(file)?,
        None => args,
    };
    anyhow::ensure!(
        args.pod_manifest_path.is_some() || args.manifest_url.is_some(),
        "no pod source: give --pod-manifest-path or --manifest-url (or staticPodPath or staticPodURL in --config)"
    );
    let image_args = args.images.clone();
    let pressure = crate::manager::pressure::PressureConfig {
        thresholds: crate::pressure::thresholds::thresholds(&crate::pressure::ThresholdFlags {
            hard: args.eviction_hard.clone(),
            soft: args.eviction_soft.clone(),
            soft_grace: args.eviction_soft_grace_period.clone(),
            min_reclaim: args.eviction_minimum_reclaim.clone(),
        })?,
        transition: args.eviction_pressure_transition_period,
        max_pod_grace: Duration::from_secs(args.eviction_max_pod_grace_period.into()),
        interval: args.housekeeping_interval,
        image_min_age: args.images.image_gc_min_age,
    };
    anyhow::ensure!(
        args.shutdown_grace_period_critical_pods <= args.shutdown_grace_period,
        "--shutdown-grace-period-critical-pods ({:?}) must not exceed --shutdown-grace-period ({:?})",
        args.shutdown_grace_period_critical_pods,
        args.shutdown_grace_period
    );
    let shutdown = crate::manager::shutdown::ShutdownConfig {
        period: args.shutdown_grace_period,
        critical: args.shutdown_grace_period_critical_pods,
    };
    let node_args = NodeArgs {
        shutdown,
        kube_reserved: args.kube_reserved.clone(),
        system_reserved: args.system_reserved.clone(),
        housekeeping_interval: args.housekeeping_interval,
        orphan_cgroup_sweep: args.orphan_cgroup_sweep,
        pressure,
    };
    let auto_update_interval = args.auto_update_interval;
    let cfg = args.into_config()?;
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("hostlet run must run as root (it creates namespaces, cgroups and mounts)");
    }
    crate::heap::one_arena();
    // One thread is enough: the agent mostly waits. Blocking work (unpacking layers)
    // goes to tokio's blocking pool. 100 pods started at once leave ~80 of its threads
    // waiting for work; let them go after a second instead of tokio's default ten.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(1))
        .build()
        .context("starting the async runtime")?;
    rt.block_on(agent(cfg, image_args, node_args, auto_update_interval))
}

/// The flags of node allocatable and housekeeping, which the config file does not carry.
struct NodeArgs {
    kube_reserved: crate::cgroups::Reserved,
    system_reserved: crate::cgroups::Reserved,
    housekeeping_interval: Duration,
    orphan_cgroup_sweep: bool,
    pressure: crate::manager::pressure::PressureConfig,
    shutdown: crate::manager::shutdown::ShutdownConfig,
}

/// How often the QoS cgroups are rewritten besides pod changes (the kubelet's
/// periodicQOSCgroupUpdateInterval).
const QOS_UPDATE_INTERVAL: Duration = Duration::from_secs(60);

/// How long stopping waits for the agent's tasks (a pull or a bundle write in flight).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

async fn agent(
    cfg: AgentConfig,
    image_args: crate::cli::pull::RunImageArgs,
    node_args: NodeArgs,
    auto_update_interval: Option<Duration>,
) -> anyhow::Result<()> {
    let cgroups = pod_cgroups(&cfg)?;
    let layout = Layout::new(&cfg.root_dir);
    create_dirs(&layout, &cfg)?;
    tracing::info!(
        node = %cfg.node_name,
        pod_manifest_path = ?cfg.pod_manifest_path,
        manifest_url = ?cfg.manifest_url,
        root_dir = %cfg.root_dir.display(),
        "hostlet starting"
    );
    let images = image_args.open(&layout.images(), cfg.insecure_registries.clone())?;
    let runtime = runtime(&layout)?;
    let adopted = runtime.adopt_all().await;
    if !adopted.is_empty() {
        tracing::info!(
            containers = adopted.len(),
            "found containers of an earlier agent"
        );
    }
    let status = StatusStore::new();
    let (node, allocatable) = node(&cfg, &node_args);
    let node_cgroups = Arc::new(
        crate::cgroups::NodeCgroups::new(cgroups.clone(), allocatable)
            .under(cfg.cgroup_root.clone()),
    );
    let tasks = crate::tasks::Tasks::new();
    tasks.spawn(
        "qos cgroups",
        crate::cgroups::node::keep_updated(node_cgroups.clone(), QOS_UPDATE_INTERVAL),
    );
    // As the kubelet, an agent with a malformed subordinate ID entry does not start.
    let userns = crate::userns::Pool::from_host(&layout.pods())?;
    let deps = Arc::new(Deps {
        images,
        sandbox_helper: runtime.helper().to_path_buf(),
        runtime,
        layout,
        pod_logs_dir: cfg.pod_logs_dir.clone(),
        crash_backoff: cfg.crash_backoff,
        pull_backoff: BackoffPolicy {
            reset_after: Duration::MAX,
            ..BackoffPolicy::default()
        },
        status: status.clone(),
        log_limits: cfg.log_limits,
        pod_logs_gc_delay: cfg.pod_logs_gc_delay,
        node,
        cgroups,
        node_cgroups,
        housekeeping_interval: node_args.housekeeping_interval,
        bundle_builds: tokio::sync::Semaphore::new(crate::worker::BUNDLE_BUILDS),
        network: crate::network::Network::new(cfg.network.clone()),
        objects: Default::default(),
        userns,
        user_namespaces_default: cfg.user_namespaces_default,
        node_kills: Default::default(),
    });
    pod_network_check(&deps);
    tasks.spawn("cni dirs watch", deps.network.watch());
    let (file, url) = sources(&cfg);
    let rx = crate::source::spawn(file, url, &tasks);
    image_args.spawn_tasks(&deps, &tasks);
    tasks.spawn("heap trim", crate::heap::trim_loop());
    tasks.spawn(
        "log drops",
        crate::worker::log_drops::watch(deps.layout.clone(), status.clone()),
    );
    tasks.spawn(
        "log gc",
        crate::worker::log_gc::sweep_loop(
            deps.pod_logs_dir.clone(),
            status.clone(),
            deps.pod_logs_gc_delay,
        ),
    );
    if node_args.orphan_cgroup_sweep {
        tasks.spawn(
            "cgroup gc",
            crate::worker::cgroup_gc::sweep_loop(deps.node_cgroups.clone(), status.clone()),
        );
    }
    let leftovers = crate::runtime::Leftovers::new(adopted, &deps.layout.pods());
    let (updates_tx, updates_rx) = tokio::sync::mpsc::channel(4);
    let (restart_tx, restart_rx) = tokio::sync::mpsc::channel(16);
    tasks.spawn(
        "node pressure",
        crate::manager::pressure::monitor(node_args.pressure, deps.clone(), restart_tx.clone()),
    );
    if node_args.shutdown.enabled() {
        tasks.spawn(
            "node shutdown",
            crate::manager::shutdown::run(node_args.shutdown, deps.clone(), restart_tx),
        );
    }
    let manager = Manager::new(deps, leftovers)
        .with_auto_update(updates_rx, auto_update_interval)
        .with_node_restarts(restart_rx);
    tasks.spawn("manager", manager.run(rx));
    let api = crate::api::bind(&cfg.root_dir, cfg.read_only_port)
        .await
        .context("starting the status API")?
        .auto_update(updates_tx);
    tasks.spawn("status api", api.run(status.clone()));
    tasks.spawn("sd_notify", crate::api::sd_notify::run(status.clone()));

    shutdown_signal().await;
    crate::api::sd_notify::stopping();
    // Containers keep running: the next agent adopts them (the kubelet does the same).
    tracing::info!("hostlet stopping; containers keep running");
    if !tasks.stop(SHUTDOWN_WAIT).await {
        tracing::warn!(
            tasks = tasks.running(),
            "tasks still running after {SHUTDOWN_WAIT:?}; leaving them"
        );
    }
    let _ = std::fs::remove_file(crate::api::socket_path(&cfg.root_dir));
    Ok(())
}

/// The pod cgroup hierarchy of `--cgroup-driver`; without one, cgroupfs runs pods
/// without pod cgroups while systemd refuses to start.
fn pod_cgroups(cfg: &AgentConfig) -> anyhow::Result<Option<crate::cgroups::Hierarchy>> {
    let cgroup_root = std::path::Path::new("/sys/fs/cgroup");
    let cgroups = match crate::cgroups::Hierarchy::for_driver(cgroup_root, cfg.cgroup_driver) {
        Ok(h) => Some(h),
        Err(e) if cfg.cgroup_driver == crate::cgroups::Driver::Cgroupfs => {
            tracing::warn!(error = %e, "no pod cgroups");
            None
        }
        Err(e) => return Err(anyhow::Error::new(e).context("--cgroup-driver systemd")),
    };
    tracing::info!(cgroup_driver = %cfg.cgroup_driver, cgroup_root = %cfg.cgroup_root, "cgroups");
    Ok(cgroups)
}

fn create_dirs(layout: &Layout, cfg: &AgentConfig) -> anyhow::Result<()> {
    for dir in [
        layout.root.clone(),
        layout.containers(),
        layout.pods(),
        cfg.pod_logs_dir.clone(),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// The container runtime, once its helper binary is known to run.
fn runtime(layout: &Layout) -> anyhow::Result<Runtime> {
    let runtime = Runtime::new(layout.clone()).context("locating the hostlet binary")?;
    if let Err(e) = runtime.check_helper() {
        anyhow::bail!(
            "cannot run the container helper {e}; install {} next to hostlet",
            crate::runtime::HELPER
        );
    }
    Ok(runtime)
}

/// What the node offers pods: its detected resources and settings, and the allocatable
/// share after the reservations.
fn node(
    cfg: &AgentConfig,
    node_args: &NodeArgs,
) -> (crate::node::NodeInfo, crate::cgroups::Allocatable) {
    let node = crate::node::NodeInfo {
        seccomp_default: cfg.seccomp_default,
        pod_max_pids: cfg.pod_max_pids,
        ..crate::node::NodeInfo::detect(cfg.node_name.clone(), &cfg.root_dir)
    };
    if node.apparmor {
        // RuntimeDefault is hostlet's own profile: loaded once, as containerd loads its own.
        match crate::bundle::apparmor::ensure_default_loaded() {
            Ok(true) => tracing::info!(
                profile = crate::bundle::apparmor::DEFAULT_PROFILE,
                "AppArmor profile loaded"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "containers that get RuntimeDefault will fail to start")
            }
        }
    }
    let capacity = crate::cgroups::Capacity::detect(node.cpu_milli, node.memory_bytes);
    let allocatable = crate::cgroups::Allocatable::of(
        &capacity,
        &[&node_args.kube_reserved, &node_args.system_reserved],
    );
    tracing::info!(cpu_milli = allocatable.cpu_milli, memory = allocatable.memory, pids = ?allocatable.pids, "node allocatable");
    (node, allocatable)
}

/// The manifest sources the flags configure.
fn sources(cfg: &AgentConfig) -> (Option<FileSource>, Option<UrlSource>) {
    let file = cfg.pod_manifest_path.clone().map(|path| FileSource {
        path,
        node: cfg.node_name.clone(),
        period: cfg.file_check_frequency,
        strict: cfg.strict,
    });
    let url = cfg.manifest_url.clone().map(|url| UrlSource {
        url,
        headers: cfg.manifest_url_headers.clone(),
        node: cfg.node_name.clone(),
        period: cfg.http_check_frequency,
        strict: cfg.strict,
    });
    (file, url)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Re-parses the command line with the config file's settings inserted before it, for
/// the flags the command line (or the environment) does not set itself.
fn with_config_file(file: &std::path::Path) -> anyhow::Result<RunArgs> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let from_file = config::file::read(file)?;
    if !from_file.ignored.is_empty() {
        tracing::warn!(config = %file.display(), fields = %from_file.ignored.join(", "), "ignoring config fields hostlet does not implement");
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    anyhow::ensure!(
        argv.get(1).is_some_and(|a| a == "run"),
        "--config is a flag of `hostlet run`"
    );
    let cmd = crate::cli::Cli::command();
    let matches = cmd.clone().try_get_matches_from(&argv)?;
    let run = matches
        .subcommand_matches("run")
        .context("parsing `hostlet run`")?;
    let run_cmd = cmd.find_subcommand("run").context("the run command")?;
    let mut merged: Vec<std::ffi::OsString> = argv[..2].to_vec();
    let mut unsupported = Vec::new();
    for (id, value) in &from_file.flags {
        let Some(arg) = run_cmd.get_arguments().find(|a| a.get_id() == *id) else {
            unsupported.push(*id);
            continue;
        };
        if matches!(
            run.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().context("config flags are long flags")?;
        merged.push(format!("--{long}={value}").into());
    }
    if !unsupported.is_empty() {
        tracing::warn!(config = %file.display(), flags = ?unsupported, "config fields without a flag in this build; ignored");
    }
    merged.extend(argv[2..].iter().cloned());
    let matches = cmd
        .try_get_matches_from(&merged)
        .with_context(|| format!("applying {}", file.display()))?;
    let run = matches
        .subcommand_matches("run")
        .context("parsing `hostlet run`")?;
    Ok(RunArgs::from_arg_matches(run)?)
}

/// Logs the pod network in use and warns when its plugins are missing; removes the CNI
/// cache entries of pods that went away while no agent ran.
fn pod_network_check(deps: &Arc<Deps>) {
    deps.network.log_config();
    // A pod removed while no agent ran, or whose DEL failed, left its cache entry.
    let d = deps.clone();
    tokio::task::spawn_blocking(move || d.network.sweep(|id| d.layout.pod(id).exists()));
}
