//! `hostlet monitor DIR`: the per-container monitor process (internal).

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Kill and delete what is left of a container whose monitor died, then exit
    #[arg(long)]
    pub cleanup: bool,
    /// The container's state directory
    pub dir: PathBuf,
}

/// Runs before any thread exists: libcontainer forks from this process.
pub fn main(args: MonitorArgs) -> i32 {
    init_tracing();
    if args.cleanup {
        crate::runtime::monitor::cleanup(&args.dir)
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
    let filter = tracing_subscriber::EnvFilter::new("warn,libcgroups=error,libcontainer=warn");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}
