//! `GET /auto-update[?dry-run=true]`: an operator's auto-update check, handed to the
//! manager; the answer is the check's report (JSON). Served on the Unix socket only
//! (root's): a check pulls images and restarts pods, which `--read-only-port` must not
//! allow.

use std::time::Duration;

use tokio::sync::oneshot;

use super::http::{Request, Response};
use crate::update::{Request as UpdateRequest, Requests};

/// How long a connection to the socket may last: a check pulls the new images first.
pub const LIMIT: Duration = Duration::from_secs(15 * 60);

pub const PATH: &str = "/auto-update";

fn dry_run(query: &str) -> bool {
    query.split('&').any(|kv| {
        matches!(
            kv.split_once('=').unwrap_or((kv, "true")),
            ("dry-run" | "dry_run", "true" | "1")
        )
    })
}

pub async fn answer(tx: Option<Requests>, req: Request) -> Response {
    let Some(tx) = tx else {
        return Response::text(503, "text/plain", "auto-update is not available\n");
    };
    let (reply, rx) = oneshot::channel();
    let request = UpdateRequest {
        dry_run: dry_run(&req.query),
        reply,
    };
    if tx.send(request).await.is_err() {
        return Response::text(503, "text/plain", "the agent is stopping\n");
    }
    match rx.await {
        Ok(report) => match serde_json::to_vec_pretty(&report) {
            Ok(body) => Response::json(200, body),
            Err(e) => Response::text(500, "text/plain", format!("encoding: {e}\n")),
        },
        Err(_) => Response::text(503, "text/plain", "the agent is stopping\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_query() {
        assert!(dry_run("dry-run=true"));
        assert!(dry_run("x=1&dry-run"));
        assert!(!dry_run(""));
        assert!(!dry_run("dry-run=false"));
    }

    #[tokio::test]
    async fn hands_the_request_to_the_manager() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<UpdateRequest>(1);
        let manager = tokio::spawn(async move {
            let req = rx.recv().await.unwrap();
            assert!(req.dry_run);
            let _ = req.reply.send(crate::update::Report {
                dry_run: true,
                rows: vec![],
            });
        });
        let resp = answer(Some(tx), Request::get("/auto-update?dry-run=true")).await;
        manager.await.unwrap();
        assert_eq!(resp.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(v["dry_run"], true);
        assert_eq!(answer(None, Request::get("/auto-update")).await.status, 503);
    }
}
