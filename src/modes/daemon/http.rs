//! The daemon's HTTP endpoints: `/healthz`, `/readyz`, `/status`, `/metrics`, and `POST
//! /pubsub` (with `[daemon.pubsub]`; `pubsub.rs`), the only one that acts, and only on a
//! verified push. None prints a secret; bodies are size-capped; anything else is a 4xx.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;

use super::Shared;

/// Largest request body accepted (no endpoint here takes one; a push endpoint may).
pub const MAX_BODY: usize = 64 * 1024;

/// `/status` (and `/readyz`'s error text) unless `[daemon] status_endpoints` is on.
fn hidden(s: &Shared) -> Option<Response> {
    (!s.app().config.daemon.status_endpoints)
        .then(|| (StatusCode::NOT_FOUND, "not found\n").into_response())
}

/// The router over the daemon's shared state.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/pubsub", post(super::pubsub::push))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

/// 200 while the scheduler loop is alive (it beats on every turn).
async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let last = s.heartbeat_ms.load(Ordering::Relaxed);
    let age_ms = Utc::now().timestamp_millis().saturating_sub(last);
    if age_ms >= 0 && (age_ms as u128) < s.stale_after.as_millis() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scheduler loop has not run for {age_ms} ms\n"),
        )
            .into_response()
    }
}

/// 200 when every token has a usable, unexpired token and is not failing; else 503 naming
/// each token that is not.
async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let now = s.app().rotator.clock().now();
    // The error itself (secret ids, egress IPs) only where `/status` is served too.
    let detail = hidden(&s).is_none();
    let problems: Vec<serde_json::Value> = s
        .views()
        .iter()
        .filter_map(|v| {
            let problem = match (&v.expiry, &v.failing) {
                (None, _) => "no usable token is stored".to_string(),
                (Some(e), _) if *e <= now => "the stored token has expired".to_string(),
                (_, Some(why)) if detail => format!("rotation is failing: {why}"),
                (_, Some(_)) => "rotation is failing".to_string(),
                _ => return None,
            };
            Some(json!({ "token": v.name, "problem": problem }))
        })
        .collect();
    if problems.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "tokens": problems })),
        )
            .into_response()
    }
}

/// The same JSON array as `status --json`, never a token: read from the stores, at most once
/// per [`STATUS_TTL`](super::STATUS_TTL) however often it is asked (an unauthenticated caller
/// cannot multiply billable store reads).
async fn status(State(s): State<Arc<Shared>>) -> Response {
    if let Some(r) = hidden(&s) {
        return r;
    }
    let mut cached = s.status.lock().await;
    if let Some((at, rows)) = cached.as_ref()
        && at.elapsed() < super::STATUS_TTL
    {
        return Json(rows.as_ref().clone()).into_response();
    }
    let app = s.app();
    let mut rows = app.rotator.status(&app.jobs).await;
    // The daemon's own schedule (jitter and retries included) says when it renews.
    let views = s.views();
    for row in &mut rows {
        if let Some(next) = views
            .iter()
            .find(|v| v.name == row.name)
            .and_then(|v| v.next)
        {
            row.renews_at = Some(crate::support::time::format_time(next));
        }
    }
    let rows = Arc::new(serde_json::to_value(rows).unwrap_or_default());
    *cached = Some((tokio::time::Instant::now(), rows.clone()));
    Json(rows.as_ref().clone()).into_response()
}

async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !s.app().config.daemon.metrics_endpoint {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = s.metrics.negotiate(accept);
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
