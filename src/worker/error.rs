//! Why a pod's host resources or a container's bundle could not be made. The message goes
//! to the pod's status (`CreateContainerConfigError`, `StartError`) as it is.

use super::volumes::VolumeError;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error(transparent)]
    Userns(#[from] crate::userns::UsernsError),
    /// ConfigMaps, Secrets or keys the pod needs and the sources do not declare.
    #[error("{0}")]
    References(String),
    /// The tmpfs for configs with values from Secrets (`secret_env`).
    #[error("{0}")]
    SecretEnv(std::io::Error),
    #[error("no container {0} in the pod")]
    NoContainer(String),
    #[error("termination message file of container {container}: {source}")]
    TerminationLog {
        container: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
}
