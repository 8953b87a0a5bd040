//! What can stop a monitor from starting its container; below the monitor's files,
//! which all use it.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::state;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("libcontainer: {0}")]
    Container(#[from] libcontainer::error::LibcontainerError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Userns(#[from] crate::userns::UsernsError),
    #[error("{0}")]
    Other(String),
}

pub(super) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> MonitorError {
    let what = what.into();
    move |source| MonitorError::Sys { what, source }
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), MonitorError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))
}
