//! How an in-place resize shows in the pod's status, as the kubelet reports it since 1.33:
//! the `PodResizeInProgress` condition while the new limits are being applied (reason
//! `Error` with a message while one cannot be, such as a memory limit below the usage),
//! gone once they are; each container's `allocatedResources` (its accepted requests) and
//! `resources` (what its cgroup has).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const IN_PROGRESS: &str = "PodResizeInProgress";

/// A resize being applied, as the worker reports it.
#[derive(Debug, Clone, Copy)]
pub enum ResizeProgress<'a> {
    InProgress,
    /// It cannot be applied yet: why.
    Error(&'a str),
}

/// The stored state of a resize in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resizing {
    pub error: Option<String>,
    pub since: Timestamp,
}

impl Resizing {
    pub fn of(p: ResizeProgress<'_>, earlier: Option<&Resizing>) -> Self {
        let error = match p {
            ResizeProgress::InProgress => None,
            ResizeProgress::Error(m) => Some(m.to_string()),
        };
        let since = match earlier {
            Some(e) if e.error == error => e.since,
            _ => Timestamp::now(),
        };
        Self { error, since }
    }

    pub fn condition(&self) -> PodCondition {
        PodCondition {
            type_: IN_PROGRESS.into(),
            status: "True".into(),
            reason: self.error.as_ref().map(|_| "Error".to_string()),
            message: self.error.clone(),
            last_transition_time: Some(Time(self.since)),
            ..Default::default()
        }
    }
}

/// Fills each container status's `allocatedResources` from the spec's requests, and its
/// `resources` from the spec where the worker reported none.
pub(super) fn fill(spec: &PodSpec, statuses: &mut [ContainerStatus]) {
    let init = spec.init_containers.iter().flatten();
    for c in init.chain(&spec.containers) {
        let Some(st) = statuses.iter_mut().find(|s| s.name == c.name) else {
            continue;
        };
        let requests = c.resources.as_ref().and_then(|r| r.requests.clone());
        st.allocated_resources = requests.filter(|r| !r.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_says_error_with_its_message() {
        let r = Resizing::of(ResizeProgress::Error("memory limit below usage"), None);
        let c = r.condition();
        assert_eq!(c.type_, "PodResizeInProgress");
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("Error"));
        assert_eq!(c.message.as_deref(), Some("memory limit below usage"));
        let again = Resizing::of(ResizeProgress::Error("memory limit below usage"), Some(&r));
        assert_eq!(
            again.since, r.since,
            "the same state keeps its transition time"
        );
        let plain = Resizing::of(ResizeProgress::InProgress, Some(&r)).condition();
        assert_eq!(plain.reason, None);
    }
}
