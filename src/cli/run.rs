//! `hostlet run`: the agent.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::backoff::BackoffPolicy;
use crate::config::AgentConfig;
use crate::manager::Manager;
use crate::runtime::Runtime;
use crate::source::file::FileSource;
use crate::source::url::UrlSource;
use crate::state::Layout;
use crate::status::StatusStore;
use crate::worker::Deps;

use super::run_args::with_config_file;
pub use super::run_args::RunArgs;

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
    let mut node = crate::node::NodeInfo {
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
            // A host whose kernel has AppArmor but no apparmor_parser (an appliance built
            // without the `apparmor` package) cannot load profiles: containers run without
            // one, as on a host without AppArmor, instead of all failing to start.
            Err(e) => {
                tracing::warn!(error = %e, "AppArmor profiles cannot be loaded (install the apparmor package); containers run unconfined and pods asking for a profile are refused");
                node.apparmor = false;
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

/// Logs the pod network in use and warns when its plugins are missing; removes the CNI
/// cache entries of pods that went away while no agent ran.
fn pod_network_check(deps: &Arc<Deps>) {
    deps.network.log_config();
    // A pod removed while no agent ran, or whose DEL failed, left its cache entry.
    let d = deps.clone();
    tokio::task::spawn_blocking(move || d.network.sweep(|id| d.layout.pod(id).exists()));
}
