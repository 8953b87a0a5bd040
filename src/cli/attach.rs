//! `hostlet attach`: attach this terminal to a running container's stdio, like
//! `kubectl attach`. The container's monitor holds its stdin and terminal; this command
//! finds the container through the agent and talks to the monitor's socket, so a
//! session outlives nothing: the agent may be restarted meanwhile.

use std::io::IsTerminal;

use anyhow::{bail, Context};

use super::operator::{find_container, find_pod, runtime_id, RootArgs};
use crate::runtime::attach_client::{End, Session};

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub root: RootArgs,
    /// Pass stdin to the container (it must have stdin: true)
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a terminal (the container must have tty: true)
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
}

pub fn main(args: AttachArgs) -> anyhow::Result<()> {
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
    let socket = crate::state::Layout::new(&args.root.root_dir)
        .container(&id)
        .join(crate::runtime::attach::SOCKET);
    let session = Session::connect(&socket, args.stdin)
        .with_context(|| format!("attaching to container {:?}", c.name))?;
    // kubectl's messages and rules: a terminal only when the container has one.
    if args.tty && !session.tty {
        eprintln!(
            "error: Unable to use a TTY - container {} did not allocate one",
            c.name
        );
    }
    if args.stdin && !session.stdin_open {
        eprintln!(
            "warning: the stdin of container {} is not open (stdin: false, or stdinOnce and attached before); attaching to its output only",
            c.name
        );
    }
    let raw = args.tty && session.tty && session.stdin && std::io::stdin().is_terminal();
    if session.tty && session.stdin {
        eprintln!("If you don't see a command prompt, try pressing enter.");
    }
    match session.relay(raw)? {
        End::Detached | End::Exited => Ok(()),
    }
}
