//! `hostlet-monitor monitor DIR`: the per-container monitor process (internal).

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Kill and delete what is left of a container whose monitor died, then exit
    #[arg(long)]
    pub cleanup: bool,
    /// The container's state directory
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ExecInArgs {
    /// hostlet's root dir (the container's state is under <root-dir>/runtime)
    #[arg(long, default_value = "/var/lib/hostlet")]
    pub root_dir: PathBuf,
    /// Kill the command after this many milliseconds
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Give the command a terminal, relayed to this process's stdio (`hostlet exec -t`)
    #[arg(long)]
    pub tty: bool,
    /// The container id
    pub id: String,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// Single-threaded like the monitor: libcontainer forks from this process.
pub fn exec_in(args: ExecInArgs) -> i32 {
    init_tracing();
    let root = crate::state::Layout::new(&args.root_dir).runtime();
    let timeout = args.timeout_ms.map(std::time::Duration::from_millis);
    if args.tty {
        return crate::runtime::exec_tty::main(&root, &args.id, args.argv);
    }
    crate::runtime::exec::main(&root, &args.id, args.argv, timeout)
}

/// Runs before any thread exists: libcontainer forks from this process.
pub fn main(args: MonitorArgs) -> i32 {
    init_tracing();
    if args.cleanup {
        crate::runtime::teardown::cleanup(&args.dir)
    } else {
        crate::runtime::monitor::main(&args.dir)
    }
}

/// Logs go to a private duplicate of stderr (the monitor's log file): libcontainer's
/// init process replaces fd 2 with the container's stderr before its last log lines.
fn init_tracing() {
    use std::os::fd::FromRawFd;
    let dup = nix::fcntl::fcntl(
        libc::STDERR_FILENO,
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3),
    );
    let Ok(fd) = dup else { return };
    // SAFETY: fcntl just returned this new fd; nothing else owns it.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("libcgroups", LevelFilter::ERROR);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}
