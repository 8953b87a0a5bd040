//! `hostlet pods`, `hostlet ps`, `hostlet inspect`: what the agent runs, from its socket.

use anyhow::bail;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde_json::json;

use super::operator::{
    self, age, find_pod, name, namespace, runtime_id, statuses, Format, RootArgs,
};

#[derive(Debug, clap::Args)]
pub struct PodsArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Output format (wide: the table with the pod's IP and node, as kubectl's)
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: PodsFormat,
    /// Only pods of this namespace
    #[arg(short, long)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PodsFormat {
    Table,
    Wide,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Show all containers, not only running ones
    #[arg(short, long)]
    pub all: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Output format (json or yaml)
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: Format,
    /// Namespace of the pod
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// A pod (NAME, NAMESPACE/NAME, or the manifest's name without -NODE) or a container
    /// id (or a unique prefix of one)
    pub target: String,
}

pub fn pods(args: PodsArgs) -> anyhow::Result<()> {
    let pods: Vec<Pod> = args
        .root
        .pods()?
        .into_iter()
        .filter(|p| args.namespace.as_deref().is_none_or(|n| namespace(p) == n))
        .collect();
    let structured = match args.output {
        PodsFormat::Json => Some(Format::Json),
        PodsFormat::Yaml => Some(Format::Yaml),
        PodsFormat::Table | PodsFormat::Wide => None,
    };
    if let Some(format) = structured {
        let list = k8s_openapi::List {
            items: pods,
            metadata: Default::default(),
        };
        return operator::print_structured(format, &list);
    }
    let wide = args.output == PodsFormat::Wide;
    if pods.is_empty() {
        eprintln!("No pods found.");
        return Ok(());
    }
    let all_ns = pods.iter().any(|p| namespace(p) != "default");
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let app = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default();
            let ready = app.iter().filter(|c| c.ready).count();
            let restarts: i32 = app.iter().map(|c| c.restart_count).sum();
            let mut row = vec![
                name(p).to_string(),
                format!("{ready}/{}", app.len()),
                with_rollback(p, pod_status(p)),
                restarts.to_string(),
                age(p.status.as_ref().and_then(|s| s.start_time.as_ref())),
            ];
            if all_ns {
                row.insert(0, namespace(p).to_string());
            }
            if wide {
                let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
                row.push(ip.unwrap_or_else(|| "<none>".into()));
                row.push(node.unwrap_or_else(|| "<none>".into()));
            }
            row
        })
        .collect();
    let mut header = vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"];
    if wide {
        header.extend(["IP", "NODE"]);
    }
    if all_ns {
        header.insert(0, "NAMESPACE");
    }
    print!("{}", operator::table(&header, &rows));
    Ok(())
}

/// STATUS of a pod whose last revision was rolled back (hostlet's safe updates): the
/// condition in `inspect` says which revision failed and why.
fn with_rollback(p: &Pod, status: String) -> String {
    let rolled_back = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == crate::status::ROLLED_BACK_CONDITION)
        });
    match rolled_back {
        true => format!("{status}/RolledBack"),
        false => status,
    }
}

/// kubectl's STATUS column: the most telling container reason, `Init:i/n` while init
/// containers run, `Terminating` once deletion started.
pub fn pod_status(p: &Pod) -> String {
    let Some(st) = &p.status else {
        return "Unknown".into();
    };
    let mut reason = st
        .reason
        .clone()
        .or_else(|| st.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    let init = st.init_container_statuses.clone().unwrap_or_default();
    let mut initializing = false;
    for (i, c) in init.iter().enumerate() {
        let state = c.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = match (&t.reason, t.signal) {
                (Some(r), _) if !r.is_empty() => format!("Init:{r}"),
                (_, Some(s)) if s != 0 => format!("Init:Signal:{s}"),
                _ => format!("Init:ExitCode:{}", t.exit_code),
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.clone())
            .filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init.len());
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in st.container_statuses.iter().flatten().rev() {
            let state = c.state.clone().unwrap_or_default();
            if let Some(r) = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = r;
            } else if let Some(t) = &state.terminated {
                reason = match (&t.reason, t.signal) {
                    (Some(r), _) if !r.is_empty() => r.clone(),
                    (_, Some(s)) if s != 0 => format!("Signal:{s}"),
                    _ => format!("ExitCode:{}", t.exit_code),
                };
            } else if state.running.is_some() && c.ready {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = st
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if p.metadata.deletion_timestamp.is_some() {
        reason = "Terminating".into();
    }
    reason
}

fn state_name(c: &ContainerStatus) -> String {
    match &c.state {
        Some(s) if s.running.is_some() => "Running".into(),
        Some(s) if s.terminated.is_some() => "Exited".into(),
        Some(s) => match s.waiting.as_ref().and_then(|w| w.reason.as_deref()) {
            Some(r) => format!("Waiting ({r})"),
            None => "Waiting".into(),
        },
        None => "Unknown".into(),
    }
}

fn created(c: &ContainerStatus) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    let s = c.state.as_ref()?;
    s.running
        .as_ref()
        .and_then(|r| r.started_at.as_ref())
        .or_else(|| s.terminated.as_ref().and_then(|t| t.started_at.as_ref()))
}

pub fn ps(args: PsArgs) -> anyhow::Result<()> {
    let pods = args.root.pods()?;
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for p in &pods {
        for c in statuses(p) {
            let running = c.state.as_ref().is_some_and(|s| s.running.is_some());
            if !args.all && !running {
                continue;
            }
            let uid = p.metadata.uid.clone().unwrap_or_default();
            rows.push(vec![
                runtime_id(&c).unwrap_or("-").to_string(),
                c.image.clone(),
                created(&c)
                    .map(|t| format!("{} ago", age(Some(t))))
                    .unwrap_or_else(|| "-".into()),
                state_name(&c),
                c.name.clone(),
                c.restart_count.to_string(),
                uid.chars().take(13).collect(),
                name(p).to_string(),
            ]);
            items.push(json!({
                "id": runtime_id(&c),
                "name": c.name,
                "image": c.image,
                "imageID": c.image_id,
                "state": state_name(&c),
                "attempt": c.restart_count,
                "ready": c.ready,
                "podUID": uid,
                "podName": name(p),
                "podNamespace": namespace(p),
                "status": c,
            }));
        }
    }
    match args.output {
        Format::Table => print!(
            "{}",
            operator::table(
                &[
                    "CONTAINER",
                    "IMAGE",
                    "CREATED",
                    "STATE",
                    "NAME",
                    "ATTEMPT",
                    "POD ID",
                    "POD"
                ],
                &rows
            )
        ),
        f => operator::print_structured(f, &json!({ "containers": items }))?,
    }
    Ok(())
}

pub fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let pods = args.root.pods()?;
    let format = if args.output == Format::Table {
        Format::Json
    } else {
        args.output
    };
    let containers: Vec<(Pod, ContainerStatus)> = pods
        .iter()
        .flat_map(|p| statuses(p).into_iter().map(move |c| (p.clone(), c)))
        .collect();
    let id_is = |c: &ContainerStatus| runtime_id(c) == Some(args.target.as_str());
    if let Some((p, c)) = containers.iter().find(|(_, c)| id_is(c)) {
        return print_container(&args.root, format, p, c);
    }
    let pod_err = match find_pod(pods.clone(), &args.target, args.namespace.as_deref()) {
        Ok(pod) => return operator::print_structured(format, &pod),
        Err(e) => e,
    };
    let hits: Vec<&(Pod, ContainerStatus)> = containers
        .iter()
        .filter(|(_, c)| runtime_id(c).is_some_and(|id| id.starts_with(&args.target)))
        .collect();
    match hits.as_slice() {
        [(p, c)] => print_container(&args.root, format, p, c),
        [] => bail!(
            "{pod_err}; no container id starts with {:?} either",
            args.target
        ),
        many => bail!(
            "container id prefix {:?} is ambiguous: {}",
            args.target,
            many.iter()
                .filter_map(|(_, c)| runtime_id(c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn print_container(
    root: &RootArgs,
    format: Format,
    p: &Pod,
    c: &ContainerStatus,
) -> anyhow::Result<()> {
    let id = runtime_id(c).unwrap_or_default().to_string();
    let dir = root.container_dir(&id);
    let spec = p
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .find(|s| s.name == c.name)
        .cloned();
    let v = json!({
        "id": id,
        "pod": { "namespace": namespace(p), "name": name(p), "uid": p.metadata.uid },
        "status": c,
        "spec": spec,
        "info": {
            "config": operator::read_record(&dir, "monitor.json"),
            "state": operator::read_record(&dir, "state.json"),
            "exit": operator::read_record(&dir, "exit.json"),
        },
    });
    operator::print_structured(format, &v)
}
