//! Container log lines dropped because the log could not be written (a full disk, a
//! removed file, a rotation that keeps failing), as the monitors report them. The kubelet
//! has no field for this, so the pod gets a condition of hostlet's own, [`CONDITION`].

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The pod condition type: prefixed, as extensions to the Pod's conditions are.
pub const CONDITION: &str = "hostlet/ContainerLogsDropped";

/// One container's dropped log lines, over all its restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDrops {
    pub container: String,
    pub lines: u64,
    pub bytes: u64,
    /// Lines are being dropped now.
    pub dropping: bool,
    pub error: Option<String>,
    /// When `dropping` last changed.
    pub since: Timestamp,
}

/// What the pod's log writers dropped, as one condition: `True` while any container's
/// lines are being dropped, `False` once all write again (kept, so that the loss stays
/// visible for the pod's life).
pub fn condition(drops: &[LogDrops]) -> Option<PodCondition> {
    let since = drops.iter().map(|d| d.since).max()?;
    let dropping = drops.iter().any(|d| d.dropping);
    let message = drops
        .iter()
        .map(|d| {
            let mut m = format!(
                "{}: {} lines ({} bytes) dropped",
                d.container, d.lines, d.bytes
            );
            if let Some(e) = &d.error {
                m.push_str(if d.dropping { ", now: " } else { ", last: " });
                m.push_str(e);
            }
            m
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(PodCondition {
        type_: CONDITION.into(),
        status: if dropping { "True" } else { "False" }.into(),
        reason: Some(
            if dropping {
                "LogWriteFailed"
            } else {
                "LogWritesResumed"
            }
            .into(),
        ),
        message: Some(message),
        last_transition_time: Some(Time(since)),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drops(container: &str, lines: u64, dropping: bool) -> LogDrops {
        LogDrops {
            container: container.into(),
            lines,
            bytes: lines * 10,
            dropping,
            error: Some("writing x: No space left on device (os error 28)".into()),
            since: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn no_drops_no_condition() {
        assert_eq!(condition(&[]), None);
    }

    #[test]
    fn true_while_any_container_drops() {
        let c = condition(&[drops("a", 3, false), drops("b", 5, true)]).unwrap();
        assert_eq!((c.type_.as_str(), c.status.as_str()), (CONDITION, "True"));
        assert_eq!(c.reason.as_deref(), Some("LogWriteFailed"));
        let m = c.message.unwrap();
        assert!(
            m.starts_with("a: 3 lines (30 bytes) dropped, last: writing x"),
            "{m}"
        );
        assert!(
            m.contains("; b: 5 lines (50 bytes) dropped, now: writing x"),
            "{m}"
        );
        let c = condition(&[drops("a", 3, false)]).unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some("LogWritesResumed"));
    }
}
