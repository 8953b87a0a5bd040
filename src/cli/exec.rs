//! `hostlet exec`: run a command in a running container, like `kubectl exec`. The work
//! is done by `hostlet-monitor exec-in` (single-threaded, it forks through libcontainer) with
//! this terminal's stdio; its exit status is passed through.

use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::operator::{find_container, find_pod, runtime_id, RootArgs};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Pass stdin to the command
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (use with -i for an interactive shell)
    #[arg(short, long)]
    pub tty: bool,
    /// Namespace of the pod
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The container (default: the pod's first container)
    #[arg(short, long)]
    pub container: Option<String>,
    /// The pod: NAME, NAMESPACE/NAME, or the manifest's name without -NODE
    pub pod: String,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub argv: Vec<String>,
}

/// Returns the command's exit status (or 128 + signal, as a shell reports it).
pub fn main(args: ExecArgs) -> anyhow::Result<i32> {
    let pod = find_pod(args.root.pods()?, &args.pod, args.namespace.as_deref())?;
    let c = find_container(&pod, args.container.as_deref())?;
    let running = c.state.as_ref().is_some_and(|s| s.running.is_some());
    let id = match (running, runtime_id(&c)) {
        (true, Some(id)) => id.to_string(),
        _ => bail!(
            "container {:?} in pod {:?} is not running",
            c.name,
            pod.metadata.name.as_deref().unwrap_or("")
        ),
    };
    let exe = crate::runtime::helper_path().context("locating the hostlet binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("exec-in")
        .arg("--root-dir")
        .arg(&args.root.root_dir);
    if args.tty {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() && args.stdin {
            eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        } else {
            cmd.arg("--tty");
        }
    }
    cmd.arg(&id).arg("--").args(&args.argv);
    if !args.stdin {
        cmd.stdin(Stdio::null());
    }
    let status = cmd.status().context("running hostlet exec-in")?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
