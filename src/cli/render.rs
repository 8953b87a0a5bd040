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
    /// The kubelet config file `hostlet run` reads: its cgroupDriver and seccompDefault
    /// apply unless given as flags
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The pod manifest (YAML or JSON)
    pub manifest: PathBuf,
}

/// `--cgroup-driver` and `--seccomp-default`, else the config file's, else the defaults of
/// `hostlet run`.
fn settings(args: &RenderArgs) -> anyhow::Result<(Driver, bool, CgroupRoot)> {
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
    let root = args
        .cgroup_root
        .clone()
        .or_else(|| file("cgroup_root"))
        .unwrap_or_else(|| "/".into());
    let root = CgroupRoot::parse(&root)?;
    Ok((driver, seccomp_default, root))
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
    let (driver, seccomp_default, cgroup_root) = settings(&args)?;
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
    let root = std::path::absolute(&args.store.root_dir)?;
    let layout = Layout::new(&root);
    let node = NodeInfo {
        seccomp_default,
        ..NodeInfo::detect(node_name, &root)
    };
    let store = args.store.open()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pod_dir = layout.pod(&pod.uid);
    let volumes = crate::worker::volumes::paths(&pod.pod, &pod_dir);
    let cgroup = PodCgroup::under(&cgroup_root, &pod.pod, &pod.uid);
    let containers = pod.pod.spec.clone().unwrap_or_default().containers;
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
            },
        )
        .with_context(|| format!("CreateContainerConfigError: {}", args.manifest.display()))?;
        out.push_str(&serde_json::to_string_pretty(&bundle::stable_json(&spec))?);
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cgroup(yaml: &str) -> PodCgroup {
        let pod: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(yaml).unwrap();
        PodCgroup::of(&pod, "12ab-34cd")
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
            (Driver::Systemd, false, CgroupRoot::parse("/a").unwrap())
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
            (Driver::Cgroupfs, true, CgroupRoot::parse("/b").unwrap())
        );
        assert_eq!(
            settings(&args(&["--cgroup-driver", "systemd"])).unwrap(),
            (Driver::Systemd, true, CgroupRoot::default())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
