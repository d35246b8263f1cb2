//! The admin socket (`[daemon] admin_socket`): `rotate --via-daemon` asks the running daemon to
//! rotate now, through the daemon's own pass (its claims, metrics, schedule and audit), so a
//! manual rotation never races the scheduler. A Unix socket of mode 0600 in a directory only
//! the daemon's user may write: the daemon's user and root reach it; never an HTTP route on
//! the daemon's TCP listener.
//!
//! `POST /v1/rotate` with `{"tokens": ["NAME", …], "force": true}` (no tokens: all) answers
//! `{"reports": [TokenReport…], "text": "…", "exit_code": N}`: the same reports `rotate
//! --json` prints, the same text `rotate` prints. `GET /v1/schedule` answers `{"next":
//! {"NAME": "RFC 3339", …}}`, which `status` shows as each token's renewal time.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use super::Shared;
use crate::core::decide::Force;
use crate::core::report::{TokenReport, describe_report};
use crate::core::result::{Outcome, RunResult};
use crate::engine::audit::Trigger;
use crate::engine::rotator::RunOptions;

/// The request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Only these tokens (all when empty).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Rotate fresh tokens too.
    #[serde(default)]
    pub force: bool,
}

/// The admin router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/rotate", post(rotate))
        .route("/v1/schedule", get(schedule))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(DefaultBodyLimit::max(16 * 1024))
        .with_state(shared)
}

/// When the daemon next attempts each token (its timers, jitter and retries included).
async fn schedule(State(s): State<Arc<Shared>>) -> Response {
    let next: serde_json::Map<String, serde_json::Value> = s
        .views()
        .into_iter()
        .filter_map(|v| {
            v.next
                .map(|t| (v.name, crate::support::time::format_time(t).into()))
        })
        .collect();
    Json(json!({ "next": next })).into_response()
}

async fn rotate(State(s): State<Arc<Shared>>, Json(req): Json<RotateRequest>) -> Response {
    let app = s.app();
    let jobs = match app.select(&req.tokens) {
        Ok(j) => j,
        Err(e) => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    info!(
        tokens = jobs.len(),
        force = req.force,
        "admin socket: rotating now"
    );
    let opts = RunOptions {
        force: if req.force { Force::Always } else { Force::No },
        trigger: Trigger::Manual,
        ..RunOptions::default()
    };
    let pass = app.rotator.pass();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        // A token the scheduler (or a push) is rotating right now: that pass is the rotation.
        let Some(_claim) = s.claim(&job.name) else {
            let mut r = RunResult::new(job.token_ref(), Outcome::RotatedByAnotherRunner);
            r.warnings
                .push("the daemon is rotating this token right now; nothing more done".into());
            results.push(r);
            continue;
        };
        let r = pass.rotate_token(job, opts).await;
        s.finished(&job.name, r.clone());
        results.push(r);
    }
    let reports = TokenReport::all(&results, app.rotator.clock().now());
    let text: String = reports
        .iter()
        .map(|r| format!("{}\n", describe_report(r)))
        .collect();
    let exit_code =
        crate::core::error::combine_exit_codes(reports.iter().map(TokenReport::exit_code));
    Json(json!({ "reports": reports, "text": text, "exit_code": exit_code })).into_response()
}
