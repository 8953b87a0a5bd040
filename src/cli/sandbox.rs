//! `hostlet-monitor sandbox create DIR`: make a pod's namespaces and its pause process
//! (internal, see crate::sandbox).

use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Create the pod's namespaces and bind-mount them under DIR/ns, then exit
    Create(CreateArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The pod directory
    pub dir: PathBuf,
    /// Host name of the pod's UTS namespace
    #[arg(long)]
    pub hostname: String,
    /// A network namespace with lo up
    #[arg(long)]
    pub net: bool,
    /// An IPC namespace and the pod's /dev/shm
    #[arg(long)]
    pub ipc: bool,
    /// A UTS namespace
    #[arg(long)]
    pub uts: bool,
    /// A PID namespace whose PID 1 is a pause process (recorded in DIR/pause.json)
    #[arg(long)]
    pub pid: bool,
    /// A user namespace mapping the pod's IDs 0.. to --userns, owning the new namespaces
    #[arg(long)]
    pub user: bool,
    /// The pod's host ID range HOSTID:SIZE: the namespaces made are owned by its user
    /// namespace (made with --user, else the one held under DIR/ns)
    #[arg(long, value_name = "HOSTID:SIZE", value_parser = parse_range)]
    pub userns: Option<crate::userns::IdRange>,
    /// A cgroup.procs file the pause process goes in; repeatable
    #[arg(long, value_name = "FILE")]
    pub cgroup_procs: Vec<PathBuf>,
}

/// Runs before any thread exists: unshare(2) applies to the calling thread only, and the
/// pause process is forked from this process.
pub fn main(cmd: SandboxCommand) -> i32 {
    match cmd {
        SandboxCommand::Create(a) => crate::sandbox::helper_main(
            &a.dir,
            &a.hostname,
            crate::sandbox::Shared {
                net: a.net,
                ipc: a.ipc,
                uts: a.uts,
                pid: a.pid,
                user: a.user,
            },
            a.userns,
            &a.cgroup_procs,
        ),
    }
}

fn parse_range(s: &str) -> Result<crate::userns::IdRange, String> {
    let (id, size) = s.split_once(':').ok_or("want HOSTID:SIZE")?;
    Ok(crate::userns::IdRange {
        host_id: id.parse().map_err(|_| "HOSTID is not a number")?,
        size: size.parse().map_err(|_| "SIZE is not a number")?,
    })
}
