//! What safe updates report on a pod: the condition naming a revision that was rolled
//! back, kept per `namespace/name` as the pod that runs afterwards may have another UID.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The condition type of a rolled-back revision (a hostlet extension).
pub const CONDITION: &str = "hostlet.io/RolledBack";

/// The condition of a revision rolled back: `reason` is why (`CrashLoopBackOff`,
/// `NotReadyInTime`, …), `message` names the failed revision.
pub(super) fn condition(reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: CONDITION.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(jiff::Timestamp::now())),
        ..Default::default()
    }
}

/// Adds the rollback condition of `pod`'s namespace/name, if any.
pub(super) fn add_condition(
    pod: &mut Pod,
    rolled_back: &std::collections::BTreeMap<String, PodCondition>,
) {
    if rolled_back.is_empty() {
        return;
    }
    let key = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    if let (Some(cond), Some(status)) = (rolled_back.get(&key), pod.status.as_mut()) {
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(cond.clone());
    }
}
