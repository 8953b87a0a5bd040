//! The executor every libcontainer process of hostlet's helpers starts through.

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::SigSet;

/// The monitor blocks signals it reads from a signalfd, and Rust ignores SIGPIPE; both
/// would be inherited across exec by the container's process. Reset them right before
/// the exec so the workload starts with the dispositions any init expects.
#[derive(Clone)]
pub(crate) struct ResetSignalsExecutor;

impl Executor for ResetSignalsExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        let _ = SigSet::empty().thread_set_mask();
        // SAFETY: restoring the default disposition of SIGPIPE; no handler involved.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
