//! `hostlet render MANIFEST`: the OCI runtime config of every container of a pod, as
//! `hostlet run` would start them (one JSON document per container, in start order). The
//! image config comes from the store, pulled when missing. Runs nothing, creates nothing
//! but the image.

use std::path::PathBuf;

use anyhow::Context;

use crate::bundle::{self, BundleInputs};
use crate::cgroups::{CgroupRoot, Driver, Hierarchy, PodCgroup};
use crate::image::PullPolicy;
use crate::manifest::{self, Origin};
use crate::node::NodeInfo;
use crate::state::Layout;

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub store: super::pull::StoreArgs,
    /// The node name used in pod names (<name>-<node>); default: the host name, lowercased
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,
    /// Give containers that name no seccomp profile the RuntimeDefault one [default: true]
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub seccomp_default: Option<bool>,
    /// The cgroup driver `hostlet run` uses, which decides the form of cgroupsPath:
    /// cgroupfs (a path) or systemd (slice:hostlet:id); default: systemd when systemd is PID 1
    #[arg(long, value_name = "DRIVER", value_parser = ["cgroupfs", "systemd"])]
    pub cgroup_driver: Option<String>,
    /// The `--cgroup-root` of `hostlet run` the cgroupsPath is under [default: /]
    #[arg(long, value_name = "CGROUP")]
    pub cgroup_root: Option<String>,
    /// The kubelet config file `hostlet run` reads: its cgroupDriver, cgroupRoot,
    /// seccompDefault and podCIDR
    /// apply unless given as flags
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// As for `hostlet run`: where the pod network's CNI config is read
    #[arg(long, value_name = "DIR", default_value = crate::network::DEFAULT_CONF_DIR)]
    pub cni_conf_dir: PathBuf,
    /// As for `hostlet run`: where CNI plugins are looked up (a search path)
    #[arg(long, value_name = "DIRS", default_value = crate::network::DEFAULT_BIN_DIR)]
    pub cni_bin_dir: String,
    /// As for `hostlet run`: the built-in network's pod addresses; default: the config
    /// file's podCIDR, else 10.87.0.0/16
    #[arg(long, value_name = "CIDR", value_parser = super::run_args::cidr)]
    pub pod_cidr: Option<String>,
    /// Print the pod network's CNI config instead (the list in use, where it comes from,
    /// whether its plugins are there, and each plugin's ADD config as hostlet pipes it)
    #[arg(long)]
    pub network: bool,
    /// Print the pod cgroup instead: its path, QoS class and the limits the agent writes
    /// (pod-level resources or the containers' sums); needs no image
    #[arg(long)]
    pub pod_cgroup: bool,
    /// The pod manifest (YAML or JSON)
    pub manifest: PathBuf,
}

/// The pod cgroup of `pod` as one JSON document: where it is and what the agent writes in
/// it (`pids.max` comes from `hostlet run --pod-max-pids` and is not shown).
pub fn pod_cgroup_json(pod: &k8s_openapi::api::core::v1::Pod, uid: &str) -> serde_json::Value {
    let cg = PodCgroup::of(pod, uid);
    let l = crate::cgroups::pod_limits(pod, -1);
    let qos = match cg.qos {
        crate::cgroups::QosClass::Guaranteed => "Guaranteed",
        crate::cgroups::QosClass::Burstable => "Burstable",
        crate::cgroups::QosClass::BestEffort => "BestEffort",
    };
    let hugepages: serde_json::Map<String, serde_json::Value> = l
        .hugepages
        .iter()
        .map(|h| (h.label(), h.limit.into()))
        .collect();
    serde_json::json!({
        "path": cg.path,
        "qosClass": qos,
        "cpuShares": l.cpu_shares,
        "cpuQuota": l.cpu_quota,
        "cpuPeriod": crate::cgroups::CFS_PERIOD,
        "memoryLimit": l.memory,
        "hugepageLimits": hugepages,
    })
}

/// What `render` takes from flags, else the config file, else `hostlet run`'s defaults.
#[derive(Debug, PartialEq)]
struct Settings {
    driver: Driver,
    seccomp_default: bool,
    pod_cidr: String,
    cgroup_root: CgroupRoot,
}

/// `--cgroup-driver` and `--seccomp-default`, else the config file's, else the defaults of
/// `hostlet run`.
fn settings(args: &RenderArgs) -> anyhow::Result<Settings> {
    let from_file = match &args.config {
        Some(file) => crate::config::file::read(file)?.flags,
        None => Vec::new(),
    };
    let file = |id: &str| {
        from_file
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, v)| v.clone())
    };
    let driver = match args.cgroup_driver.clone().or_else(|| file("cgroup_driver")) {
        Some(d) => d.parse().map_err(anyhow::Error::msg)?,
        None => Driver::detect(),
    };
    let seccomp_default = match (args.seccomp_default, file("seccomp_default")) {
        (Some(b), _) => b,
        (None, Some(v)) => v
            .parse()
            .with_context(|| format!("seccompDefault {v:?}: expected true or false"))?,
        (None, None) => true,
    };
    let pod_cidr = (args.pod_cidr.clone().or_else(|| file("pod_cidr")))
        .unwrap_or_else(|| crate::network::DEFAULT_POD_CIDR.into());
    let root = args
        .cgroup_root
        .clone()
        .or_else(|| file("cgroup_root"))
        .unwrap_or_else(|| "/".into());
    let cgroup_root = CgroupRoot::parse(&root)?;
    Ok(Settings {
        driver,
        seccomp_default,
        pod_cidr,
        cgroup_root,
    })
}

/// The pod network as `hostlet run` with the same flags would attach the pod.
fn network(args: &RenderArgs, pod_cidr: String, root: &std::path::Path) -> crate::network::Network {
    crate::network::Network::new(crate::network::Options {
        conf_dir: args.cni_conf_dir.clone(),
        bin_dirs: crate::network::split_paths(&args.cni_bin_dir),
        cache_dir: root.join("cni"),
        pod_cidr,
        resolv_conf: PathBuf::new(),
    })
}

/// `--network`: the network document; a hostNetwork pod has none.
fn print_network(net: &crate::network::Network, pod: &manifest::StaticPod) -> anyhow::Result<()> {
    let doc = if crate::sandbox::Shared::of(&pod.pod).net {
        net.describe(&pod.pod)?
    } else {
        serde_json::json!({ "hostNetwork": true })
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// The container's `cgroupsPath` as the agent writes it with `driver`
/// ([`PodCgroup::container_with`] of the hierarchy `hostlet run` would use).
pub fn cgroups_path(driver: Driver, cgroup: &PodCgroup, id: &str) -> String {
    let h = match driver {
        Driver::Systemd => Some(Hierarchy::Systemd {
            root: "/sys/fs/cgroup".into(),
        }),
        // cgroupfs paths do not depend on the hierarchy's version.
        Driver::Cgroupfs => None,
    };
    cgroup.container_with(h.as_ref(), id)
}

pub fn main(args: RenderArgs) -> anyhow::Result<()> {
    let Settings {
        driver,
        seccomp_default,
        pod_cidr,
        cgroup_root,
    } = settings(&args)?;
    let node_name = args
        .hostname_override
        .clone()
        .map(|h| h.to_lowercase())
        .unwrap_or_else(crate::config::default_node_name);
    let bytes = std::fs::read(&args.manifest)
        .with_context(|| format!("reading {}", args.manifest.display()))?;
    let decoded = manifest::decode_with_origin(
        &Origin::File(args.manifest.clone()),
        &bytes,
        &node_name,
        false,
    )?;
    for w in &decoded.warnings {
        eprintln!("hostlet: warning: {w}");
    }
    let pod = decoded.pod;
    if args.pod_cgroup {
        let doc = pod_cgroup_json(&pod.pod, &pod.uid);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let root = std::path::absolute(&args.store.root_dir)?;
    let net = network(&args, pod_cidr, &root);
    if args.network {
        return print_network(&net, &pod);
    }
    if crate::sandbox::Shared::of(&pod.pod).net {
        match net.readiness() {
            Ok(list) => eprintln!(
                "hostlet: pod network {:?} ({}); --network prints its config",
                list.name,
                list.plugin_types().collect::<Vec<_>>().join(", ")
            ),
            Err(e) => eprintln!("hostlet: warning: pod network: {e}"),
        }
    }
    let layout = Layout::new(&root);
    let node = NodeInfo {
        seccomp_default,
        ..NodeInfo::detect(node_name.clone(), &root)
    };
    let store = args.store.open()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pod_dir = layout.pod(&pod.uid);
    let volumes = crate::worker::volumes::paths(&pod.pod, &pod_dir);
    // The ConfigMaps and Secrets beside the manifest; secret values are never printed.
    let objects = sibling_objects(&args.manifest, &node_name).redacted();
    let cgroup = PodCgroup::under(&cgroup_root, &pod.pod, &pod.uid);
    let containers = pod.pod.spec.clone().unwrap_or_default().containers;
    // A running pod's range, else the one it would get now.
    let user_ids = match crate::userns::recorded(&pod_dir)? {
        Some(r) => Some(r),
        None => {
            let pool = crate::userns::Pool::from_host(&layout.pods())?;
            pool.next_free()
        }
    };
    let mut out = String::new();
    for c in &containers {
        let reference = c.image.clone().unwrap_or_default();
        let image = rt
            .block_on(store.ensure(&reference, PullPolicy::IfNotPresent))
            .with_context(|| format!("container {:?}: image {reference}", c.name))?;
        let id = crate::worker::container_id(&pod.uid, &c.name, 0);
        let rootfs = layout.container(&id).join("bundle/rootfs");
        let spec = bundle::build_spec(
            &pod.pod,
            c,
            &BundleInputs {
                image: &image.config,
                image_file: &|rel| image.read_file(rel),
                rootfs: &rootfs,
                cgroups_path: &cgroups_path(driver, &cgroup, &id),
                volumes: &volumes,
                pod_dir: &pod_dir,
                node: &node,
                seccomp_file: &|rel| std::fs::read(node.seccomp_dir.join(rel)).ok(),
                objects: &objects,
                user_ids,
            },
        )
        .with_context(|| format!("CreateContainerConfigError: {}", args.manifest.display()))?;
        out.push_str(&serde_json::to_string_pretty(&bundle::stable_json(&spec))?);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

/// The ConfigMaps and Secrets declared in the manifest's directory, as the agent would
/// read them with that directory as its manifest path.
fn sibling_objects(manifest: &std::path::Path, node: &str) -> manifest::ObjectSet {
    let dir = manifest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let snap = crate::source::file::list_once(dir, node);
    manifest::ObjectSet::new(snap.objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of(driver: Driver, seccomp: bool, cidr: &str, root: CgroupRoot) -> Settings {
        Settings {
            driver,
            seccomp_default: seccomp,
            pod_cidr: cidr.into(),
            cgroup_root: root,
        }
    }

    fn cgroup(yaml: &str) -> PodCgroup {
        let pod: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(yaml).unwrap();
        PodCgroup::of(&pod, "12ab-34cd")
    }

    #[test]
    fn pod_cgroup_shows_pod_level_limits() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  resources: {requests: {cpu: 500m}, limits: {cpu: '1', memory: 256Mi}}\n  containers: [{name: a, image: i, resources: {requests: {cpu: 100m}}}, {name: b, image: i}]\n";
        let d = manifest::decode(std::path::Path::new("x.yaml"), yaml.as_bytes(), "n").unwrap();
        let doc = pod_cgroup_json(&d.pod, "12ab");
        assert_eq!(
            doc,
            serde_json::json!({
                "path": "/kubepods/burstable/pod12ab",
                "qosClass": "Burstable",
                "cpuShares": 512,
                "cpuQuota": 100000,
                "cpuPeriod": 100000,
                "memoryLimit": 268435456,
                "hugepageLimits": {},
            })
        );
        let yaml = yaml.replace("requests: {cpu: 500m}, ", "");
        let d = manifest::decode(std::path::Path::new("x.yaml"), yaml.as_bytes(), "n").unwrap();
        let doc = pod_cgroup_json(&d.pod, "12ab");
        // Requests default to the containers' (100m) for cpu and to the limit for memory.
        assert_eq!(doc["qosClass"], "Burstable");
        assert_eq!(doc["cpuShares"], 102);
        assert!(args(&["--pod-cgroup"]).pod_cgroup);
    }

    #[test]
    fn cgroups_path_follows_the_driver() {
        let burstable = cgroup("metadata: {name: x}\nspec: {containers: [{name: a, resources: {requests: {cpu: 100m}}}]}\n");
        assert_eq!(
            cgroups_path(Driver::Cgroupfs, &burstable, "12ab-34cd-a-0"),
            "/kubepods/burstable/pod12ab-34cd/12ab-34cd-a-0"
        );
        // libcontainer's slice:prefix:name form; the scope is hostlet-<id>.scope.
        assert_eq!(
            cgroups_path(Driver::Systemd, &burstable, "12ab-34cd-a-0"),
            "kubepods-burstable-pod12ab_34cd.slice:hostlet:12ab-34cd-a-0"
        );
        let guaranteed = cgroup("metadata: {name: x}\nspec: {containers: [{name: a, resources: {limits: {cpu: 1, memory: 1Gi}}}]}\n");
        assert_eq!(
            cgroups_path(Driver::Systemd, &guaranteed, "i"),
            "kubepods-pod12ab_34cd.slice:hostlet:i"
        );
        assert_eq!(
            crate::cgroups::systemd::fs_path(&cgroups_path(Driver::Systemd, &guaranteed, "i")),
            "/kubepods.slice/kubepods-pod12ab_34cd.slice/hostlet-i.scope"
        );
    }

    fn args(extra: &[&str]) -> RenderArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            render: RenderArgs,
        }
        let mut argv = vec!["render"];
        argv.extend_from_slice(extra);
        argv.push("pod.yaml");
        Cli::parse_from(argv).render
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = std::env::temp_dir().join(format!("hostlet-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kubelet.yaml");
        std::fs::write(
            &file,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\nseccompDefault: false\ncgroupRoot: /a\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        assert_eq!(
            settings(&args(&["--config", f])).unwrap(),
            settings_of(
                Driver::Systemd,
                false,
                "10.87.0.0/16",
                CgroupRoot::parse("/a").unwrap()
            )
        );
        assert_eq!(
            settings(&args(&[
                "--config",
                f,
                "--cgroup-driver",
                "cgroupfs",
                "--seccomp-default",
                "true",
                "--cgroup-root",
                "/b"
            ]))
            .unwrap(),
            settings_of(
                Driver::Cgroupfs,
                true,
                "10.87.0.0/16",
                CgroupRoot::parse("/b").unwrap()
            )
        );
        assert_eq!(
            settings(&args(&[
                "--cgroup-driver",
                "systemd",
                "--pod-cidr",
                "10.99.0.0/16"
            ]))
            .unwrap(),
            settings_of(Driver::Systemd, true, "10.99.0.0/16", CgroupRoot::default())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
