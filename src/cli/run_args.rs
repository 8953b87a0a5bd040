//! `hostlet run`'s flags, their parsers, the config file merged under them, and the
//! agent's configuration made from them.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::backoff::BackoffPolicy;
use crate::config::{self, AgentConfig};

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
    pub(super) fn into_config(self) -> anyhow::Result<AgentConfig> {
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

/// Re-parses the command line with the config file's settings inserted before it, for
/// the flags the command line (or the environment) does not set itself.
pub(super) fn with_config_file(file: &std::path::Path) -> anyhow::Result<RunArgs> {
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
