//! Which containers an auto-update check changes, and the table `hostlet auto-update`
//! prints (podman's columns: UNIT, CONTAINER, IMAGE, POLICY, UPDATED).

use serde::{Deserialize, Serialize};

use super::policy::AutoUpdate;

/// One container of an opted-in pod, as it runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub uid: String,
    /// `namespace/name`.
    pub pod: String,
    pub container: String,
    /// The image as the manifest names it (a tag).
    pub image: String,
    pub policy: AutoUpdate,
    /// The digest the container runs (its status' imageID); empty while not known.
    pub running: String,
    /// A digest rolled back from earlier: never picked again for this container.
    pub failed: Option<String>,
}

/// podman's UPDATED column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Updated {
    /// Nothing newer (or the newer digest was rolled back before).
    False,
    /// A newer digest exists; `--dry-run` changed nothing.
    Pending,
    /// Pulled; the pod restarts on it.
    True,
    /// The check or the pull failed (see the row's error).
    Failed,
}

impl Updated {
    pub fn as_str(self) -> &'static str {
        match self {
            Updated::False => "false",
            Updated::Pending => "pending",
            Updated::True => "true",
            Updated::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// `namespace/name` (podman's UNIT).
    pub pod: String,
    pub container: String,
    pub image: String,
    pub policy: String,
    pub updated: Updated,
    /// The digest running before the check.
    pub running: String,
    /// The digest the tag names now, when the check could tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one check found, in pod then container order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub dry_run: bool,
    pub rows: Vec<Row>,
}

/// Whether `c` moves to `latest`: a digest it does not run and that was not rolled back.
pub fn wants(c: &Candidate, latest: &str) -> bool {
    !same_digest(&c.running, latest) && c.failed.as_deref() != Some(latest)
}

/// imageID may carry a repository (`name@sha256:…`) where the store has the bare digest.
fn same_digest(running: &str, digest: &str) -> bool {
    !running.is_empty() && (running == digest || running.ends_with(&format!("@{digest}")))
}

/// The row of `c` once its latest digest is known: pending under `--dry-run`, else
/// `after` (what applying it gave: true, or failed with an error).
pub fn row(c: &Candidate, latest: Result<&str, String>, dry_run: bool) -> Row {
    let mut row = Row {
        pod: c.pod.clone(),
        container: c.container.clone(),
        image: c.image.clone(),
        policy: c.policy.as_str().to_string(),
        updated: Updated::False,
        running: c.running.clone(),
        latest: None,
        error: None,
    };
    match latest {
        Err(e) => {
            row.updated = Updated::Failed;
            row.error = Some(e);
        }
        Ok(latest) => {
            row.latest = Some(latest.to_string());
            if wants(c, latest) {
                row.updated = if dry_run {
                    Updated::Pending
                } else {
                    Updated::True
                };
            }
        }
    }
    row
}

/// The table podman prints, one line per container.
pub fn table(report: &Report) -> String {
    let mut lines = vec![[
        "UNIT".to_string(),
        "CONTAINER".into(),
        "IMAGE".into(),
        "POLICY".into(),
        "UPDATED".into(),
    ]];
    for r in &report.rows {
        lines.push([
            r.pod.clone(),
            r.container.clone(),
            r.image.clone(),
            r.policy.clone(),
            r.updated.as_str().to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for r in report.rows.iter().filter(|r| r.error.is_some()) {
        let e = r.error.as_deref().unwrap_or_default();
        out.push_str(&format!("{} {}: {e}\n", r.pod, r.container));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(running: &str, failed: Option<&str>) -> Candidate {
        Candidate {
            uid: "u1".into(),
            pod: "default/web-node".into(),
            container: "app".into(),
            image: "registry.local/app:1".into(),
            policy: AutoUpdate::Registry,
            running: running.into(),
            failed: failed.map(str::to_string),
        }
    }

    #[test]
    fn same_digest_is_no_update() {
        let r = row(&cand("sha256:aa", None), Ok("sha256:aa"), false);
        assert_eq!(r.updated, Updated::False);
        let r = row(
            &cand("registry.local/app@sha256:aa", None),
            Ok("sha256:aa"),
            true,
        );
        assert_eq!(r.updated, Updated::False);
    }

    #[test]
    fn new_digest_is_pending_under_dry_run_and_true_otherwise() {
        let c = cand("sha256:aa", None);
        assert_eq!(row(&c, Ok("sha256:bb"), true).updated, Updated::Pending);
        assert_eq!(row(&c, Ok("sha256:bb"), false).updated, Updated::True);
        // Not started yet: any digest is news (the pod then starts on it).
        assert!(wants(&cand("", None), "sha256:bb"));
    }

    #[test]
    fn a_rolled_back_digest_is_not_tried_again() {
        let c = cand("sha256:aa", Some("sha256:bb"));
        assert_eq!(row(&c, Ok("sha256:bb"), false).updated, Updated::False);
        // A digest pushed after the failed one is tried.
        assert_eq!(row(&c, Ok("sha256:cc"), false).updated, Updated::True);
    }

    #[test]
    fn failures_are_rows_with_errors() {
        let r = row(&cand("sha256:aa", None), Err("pull: timeout".into()), false);
        assert_eq!(r.updated, Updated::Failed);
        let t = table(&Report {
            dry_run: false,
            rows: vec![r],
        });
        let mut lines = t.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(head, ["UNIT", "CONTAINER", "IMAGE", "POLICY", "UPDATED"]);
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            [
                "default/web-node",
                "app",
                "registry.local/app:1",
                "registry",
                "failed"
            ]
        );
        assert_eq!(lines.next(), Some("default/web-node app: pull: timeout"));
    }
}
