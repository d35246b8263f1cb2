//! The agent's HTTP endpoints.
//!
//! - `GET /v1/tokens/{name}`: the token as JSON (`access_token`, `token_type`, `expiry`,
//!   `issued_at`, `version`, `stale`, and `x_api_key` only where the stored document carries
//!   it); `GET /v1/tokens/{name}/access_token`: the bare token as text, for shells;
//!   `POST /v1/tokens/{name}/refresh`: re-read the store (at most once per `refresh_interval`
//!   per token, coalesced) after the application got a 401, then answer as the `GET`.
//!   Each needs the caller token in `X-Deepvue-Rotator-Token` (401 without it, 403 when wrong)
//!   and is refused (403) when it came through a proxy (`X-Forwarded-For`, `Forwarded`, `Via`,
//!   `X-Real-IP`, `X-Forwarded-Host`, `X-Forwarded-Proto`): a request-forgery guard, as the AWS
//!   Secrets Manager Agent has. Refusals say nothing about
//!   any token, not even whether it exists.
//! - `/healthz` (the process answers), `/readyz` (every served token has a valid version;
//!   503 naming those that do not), `/metrics` (OpenMetrics): no caller token, no secret.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde_json::json;
use tracing::debug;

use super::CallerToken;
use super::cache::{Answer, Cache, Served};
use crate::config::agent::AUTH_HEADER;
use crate::support::exposition;

/// The state every handler shares.
pub(super) struct AgentState {
    pub cache: Arc<Cache>,
    pub caller: CallerToken,
    /// Whether `/readyz` and 503 bodies may say why (store names, versions): not when the
    /// agent listens beyond this host.
    pub detail: bool,
}

type St = State<Arc<AgentState>>;

/// Headers that mean a request came through a proxy (what proxies add by default or by
/// common configuration). An extra guard behind the caller token, not a replacement for it.
const FORWARDED: [&str; 6] = [
    "x-forwarded-for",
    "forwarded",
    "via",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
];

pub(super) fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/v1/tokens/{name}", get(token))
        .route("/v1/tokens/{name}/access_token", get(access_token))
        .route("/v1/tokens/{name}/refresh", post(refresh))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(DefaultBodyLimit::max(1024))
        .with_state(state)
}

fn refusal(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": why })),
    )
        .into_response()
}

/// The caller check every `/v1` request passes first: the refusal, if any.
fn refused(s: &AgentState, headers: &HeaderMap) -> Option<Response> {
    if FORWARDED.iter().any(|h| headers.contains_key(*h)) {
        s.cache.metrics.refused("forwarded");
        debug!("refused a request that came through a proxy");
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "requests that came through a proxy (X-Forwarded-For, Forwarded, Via, X-Real-IP, \
             X-Forwarded-Host, X-Forwarded-Proto) are refused",
        ));
    }
    let Some(given) = headers.get(AUTH_HEADER) else {
        s.cache.metrics.refused("missing");
        debug!("refused a request without a caller token");
        return Some(refusal(
            StatusCode::UNAUTHORIZED,
            "the X-Deepvue-Rotator-Token header is required",
        ));
    };
    if !s.caller.matches(given.as_bytes()) {
        s.cache.metrics.refused("wrong");
        debug!("refused a request with a wrong caller token");
        return Some(refusal(
            StatusCode::FORBIDDEN,
            "the X-Deepvue-Rotator-Token header is wrong",
        ));
    }
    None
}

fn not_served() -> Response {
    refusal(StatusCode::NOT_FOUND, "no such token is served here")
}

fn unavailable(s: &AgentState, why: String) -> Response {
    let why = if s.detail {
        why
    } else {
        "no valid token is available".to_string()
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "error": why })),
    )
        .into_response()
}

/// The headers every token answer carries.
fn token_headers(served: &Served, content_type: &'static str) -> HeaderMap {
    let mut h = served.headers.clone();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h
}

/// The JSON answer: the one rendered when the version was read, or with `refreshed` added.
fn token_json(served: &Served, refreshed: Option<bool>) -> Response {
    let headers = token_headers(served, "application/json");
    let Some(r) = refreshed else {
        return (headers, served.json.expose_secret().to_string()).into_response();
    };
    // The answer to an authenticated local caller, as rendered, plus one field.
    let mut body: serde_json::Value =
        serde_json::from_str(served.json.expose_secret()).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("refreshed".into(), json!(r));
    }
    (headers, body.to_string()).into_response()
}

async fn token(State(s): St, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    match s.cache.get(&name).await {
        None => not_served(),
        Some(Answer::Token(served)) => token_json(&served, None),
        Some(Answer::Unavailable(why)) => unavailable(&s, why),
    }
}

async fn access_token(State(s): St, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    match s.cache.get(&name).await {
        None => not_served(),
        Some(Answer::Token(served)) => (
            token_headers(&served, "text/plain; charset=utf-8"),
            served.text.expose_secret().to_string(),
        )
            .into_response(),
        Some(Answer::Unavailable(why)) => unavailable(&s, why),
    }
}

async fn refresh(State(s): St, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&s, &headers) {
        return r;
    }
    match s.cache.refresh(&name).await {
        None => not_served(),
        Some((Answer::Token(served), read)) => token_json(&served, Some(read)),
        Some((Answer::Unavailable(why), _)) => unavailable(&s, why),
    }
}

async fn readyz(State(s): St) -> Response {
    let unready = s.cache.unready();
    if unready.is_empty() {
        return (StatusCode::OK, Json(json!({ "ready": true }))).into_response();
    }
    let tokens: Vec<_> = unready
        .into_iter()
        .map(|(name, why)| {
            let problem = if s.detail {
                why
            } else {
                "no valid token".to_string()
            };
            json!({ "token": name, "problem": problem })
        })
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "ready": false, "tokens": tokens })),
    )
        .into_response()
}

async fn metrics(State(s): St, headers: HeaderMap) -> Response {
    s.cache.update_gauges();
    let om = s.cache.metrics.render();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if exposition::wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, exposition::OPENMETRICS)], om).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, exposition::TEXT)],
            exposition::to_text(&om),
        )
            .into_response()
    }
}
