//! The container's stdio as its monitor sets it up: output pipes to the CRI log, stdin
//! from /dev/null or (`stdin: true`) a pipe the monitor keeps for attach sessions, or
//! (`tty: true`) a terminal whose master the monitor holds: its output is the log's
//! stdout stream, as the kubelet's runtimes write it.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;

use super::exec_tty::receive_master;
use super::monitor_attach::AttachServer;
use super::monitor_error::{pipe, MonitorError};
use super::MonitorConfig;

/// The console socket libcontainer hands the terminal's master over.
const CONSOLE_SOCKET: &str = "console.sock";

/// The monitor's ends, between the builder and the started container.
pub(super) enum Stdio {
    Pipes {
        out: OwnedFd,
        err: OwnedFd,
        stdin: Option<OwnedFd>,
    },
    Tty {
        listener: UnixListener,
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MonitorError + '_ {
    move |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Stdio {
    pub(super) fn new(
        dir: &Path,
        cfg: &MonitorConfig,
        builder: ContainerBuilder,
    ) -> Result<(Self, ContainerBuilder), MonitorError> {
        if cfg.tty {
            let path = dir.join(CONSOLE_SOCKET);
            let _ = std::fs::remove_file(&path);
            let listener = UnixListener::bind(&path).map_err(io(&path))?;
            // The container's init gets the terminal as its stdio: nothing of ours.
            let builder = builder.with_console_socket(Some(&path));
            return Ok((Self::Tty { listener, path }, builder));
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin, mine) = if cfg.stdin {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            let null = Path::new("/dev/null");
            (std::fs::File::open(null).map_err(io(null))?.into(), None)
        };
        let builder = builder
            .with_stdin(stdin)
            .with_stdout(out_w)
            .with_stderr(err_w);
        Ok((
            Self::Pipes {
                out: out_r,
                err: err_r,
                stdin: mine,
            },
            builder,
        ))
    }

    /// Once the container is created: the output to log (stdout, stderr) and the attach
    /// server holding the input.
    pub(super) fn finish(
        self,
        dir: &Path,
        cfg: &MonitorConfig,
    ) -> Result<(OwnedFd, Option<OwnedFd>, AttachServer), MonitorError> {
        match self {
            Self::Pipes { out, err, stdin } => Ok((
                out,
                Some(err),
                AttachServer::new(dir, stdin, cfg.stdin_once, None),
            )),
            Self::Tty { listener, path } => {
                let master = receive_master(&listener);
                let _ = std::fs::remove_file(&path);
                let master = master.map_err(|e| MonitorError::Other(e.to_string()))?;
                let dup = |what| {
                    master.try_clone().map_err(|source| MonitorError::Io {
                        path: PathBuf::from(what),
                        source,
                    })
                };
                let input = if cfg.stdin {
                    Some(dup("terminal master (input)")?)
                } else {
                    None
                };
                let resize = dup("terminal master (window size)")?;
                Ok((
                    master,
                    None,
                    AttachServer::new(dir, input, cfg.stdin_once, Some(resize)),
                ))
            }
        }
    }
}
