//! `hostlet render MANIFEST`: the OCI runtime config of every container of a pod, as
//! `hostlet run` would start them (one JSON document per container, in start order). The
//! image config comes from the store, pulled when missing. Runs nothing, creates nothing
//! but the image.

use std::path::PathBuf;

use anyhow::Context;

use crate::bundle::{self, BundleInputs};
use crate::cgroups::PodCgroup;
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
    /// Give containers that name no seccomp profile the RuntimeDefault one
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub seccomp_default: bool,
    /// The pod manifest (YAML or JSON)
    pub manifest: PathBuf,
}

pub fn main(args: RenderArgs) -> anyhow::Result<()> {
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
        seccomp_default: args.seccomp_default,
        ..NodeInfo::detect(node_name, &root)
    };
    let store = args.store.open()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pod_dir = layout.pod(&pod.uid);
    let volumes = crate::worker::volumes::paths(&pod.pod, &pod_dir);
    let cgroup = PodCgroup::of(&pod.pod, &pod.uid);
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
                cgroups_path: &cgroup.container(&id),
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
