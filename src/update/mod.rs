//! Safe updates (hostlet extensions, opt-in per pod): image auto-update in podman's model
//! and health-gated rollback of a new revision (image digests or manifest content).
//!
//! - `policy`: what a pod's annotations ask for;
//! - `plan`: which containers an auto-update check would change, and the table it prints;
//! - `check`: running a check against the image store (the registry or local content);
//! - `guard`: the rules that judge a new revision Ready or failed, and the watch that
//!   applies them over time.
//!
//! The manager owns the revisions (pins, last good pods) and acts on the verdicts; this
//! module decides and never starts or stops a pod itself.

pub mod check;
pub mod guard;
pub mod plan;
pub mod policy;

pub use check::{check, Store};
pub use guard::{watch, Health, Observation, Verdict};
pub use plan::{Candidate, Report, Row, Updated};
pub use policy::{AutoUpdate, PolicyError, ROLLBACK_AFTER_DEFAULT};

/// An operator's `hostlet auto-update` as the API hands it to the manager.
pub struct Request {
    pub dry_run: bool,
    pub reply: tokio::sync::oneshot::Sender<Report>,
}

/// How the API reaches the manager's auto-update.
pub type Requests = tokio::sync::mpsc::Sender<Request>;
