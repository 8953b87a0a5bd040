//! The node's conditions (MemoryPressure, DiskPressure, PIDPressure), as the kubelet sets
//! them on its Node object; hostlet has no Node object and reports them in `/healthz`
//! (verbose) and `/metrics`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::NodeCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Replaces the condition of the same type in `list`, keeping its transition time when
/// the status did not change.
pub(super) fn set(
    list: &mut Vec<NodeCondition>,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
) {
    let status = if on { "True" } else { "False" };
    let now = Some(Time(Timestamp::now()));
    let transition = list
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .or_else(|| now.clone());
    let c = NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: now,
        last_transition_time: transition,
    };
    match list.iter_mut().find(|x| x.type_ == type_) {
        Some(x) => *x = c,
        None => list.push(c),
    }
}
