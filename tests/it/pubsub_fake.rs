//! A Pub/Sub REST fake for the `pubsub` sink: `projects.topics.get` and
//! `projects.topics.publish` as the API reference describes them
//! (<https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics/publish>): a
//! publish needs at least one message, each with `data` (base64) or `attributes`; attribute
//! keys ≤ 256 bytes and values ≤ 1,024 bytes; the answer is `{"messageIds": [...]}`, one per
//! message in order; an unknown topic is 404 `NOT_FOUND` and a malformed request 400
//! `INVALID_ARGUMENT`, in Google's error shape. Checked with Google's discovery-based REST
//! client (`tests/pubsub_fake_check.py`, google-api-python-client).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use serde_json::{Value, json};

/// A message as published.
#[derive(Clone, Debug)]
pub struct Published {
    pub topic: String,
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    /// The request's `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    topics: BTreeSet<String>,
    published: Vec<Published>,
    next_id: u64,
    /// Answer the next publishes with this status (a fault), this many times.
    fail: Option<(u16, usize)>,
}

type Shared = Arc<Mutex<Inner>>;

pub struct PubsubFake {
    pub endpoint: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PubsubFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        _ => "UNAVAILABLE",
    };
    (
        status,
        Json(json!({ "error": { "code": status.as_u16(), "message": message, "status": name } })),
    )
        .into_response()
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_start_matches("/v1/");
    let (name, verb) = match path.split_once(':') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (path.to_string(), None),
    };
    let parts: Vec<&str> = name.split('/').collect();
    if !matches!(parts.as_slice(), ["projects", p, "topics", t] if !p.is_empty() && !t.is_empty()) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let mut s = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match (method, verb.as_deref()) {
        (Method::GET, None) => {
            if s.topics.contains(&name) {
                Json(json!({ "name": name })).into_response()
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    &format!("Resource not found (resource={}).", parts[3]),
                )
            }
        }
        (Method::POST, Some("publish")) => {
            if let Some((status, left)) = s.fail.as_mut()
                && *left > 0
            {
                *left -= 1;
                let status = *status;
                return error(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "injected fault",
                );
            }
            if !s.topics.contains(&name) {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("Resource not found (resource={}).", parts[3]),
                );
            }
            let Ok(req) = serde_json::from_slice::<Value>(&body) else {
                return error(StatusCode::BAD_REQUEST, "Invalid JSON payload received.");
            };
            let Some(messages) = req["messages"].as_array().filter(|m| !m.is_empty()) else {
                return error(StatusCode::BAD_REQUEST, "The request contains no messages.");
            };
            let mut out = Vec::new();
            for m in messages {
                let data = match m.get("data") {
                    None => Vec::new(),
                    Some(Value::String(d)) => {
                        match base64::engine::general_purpose::STANDARD.decode(d) {
                            Ok(b) => b,
                            Err(_) => {
                                return error(
                                    StatusCode::BAD_REQUEST,
                                    "Invalid value at 'messages[0].data' (TYPE_BYTES)",
                                );
                            }
                        }
                    }
                    Some(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "Invalid value at 'messages[0].data'",
                        );
                    }
                };
                let mut attributes = BTreeMap::new();
                if let Some(a) = m.get("attributes") {
                    let Some(a) = a.as_object() else {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "Invalid value at 'messages[0].attributes'",
                        );
                    };
                    for (k, v) in a {
                        let Some(v) = v.as_str() else {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "An attribute value must be a string.",
                            );
                        };
                        if k.is_empty() || k.len() > 256 || v.len() > 1024 {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "An attribute key or value is too long.",
                            );
                        }
                        attributes.insert(k.clone(), v.to_string());
                    }
                }
                if data.is_empty() && attributes.is_empty() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "Some messages are empty: a message needs data or attributes.",
                    );
                }
                out.push(Published {
                    topic: name.clone(),
                    data,
                    attributes,
                    authorization: headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                });
            }
            let mut ids = Vec::new();
            for p in out {
                s.next_id += 1;
                ids.push(s.next_id.to_string());
                s.published.push(p);
            }
            Json(json!({ "messageIds": ids })).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

impl PubsubFake {
    pub async fn start() -> PubsubFake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the Pub/Sub fake must bind 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake address: {e}"));
        let state: Shared = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PubsubFake {
            endpoint: format!("http://{addr}"),
            state,
            task,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Create topic `projects/{project}/topics/{topic}`.
    pub fn create_topic(&self, project: &str, topic: &str) -> String {
        let name = format!("projects/{project}/topics/{topic}");
        self.with(|s| s.topics.insert(name.clone()));
        name
    }

    /// Every message published so far.
    pub fn published(&self) -> Vec<Published> {
        self.with(|s| s.published.clone())
    }

    /// Answer the next `times` publishes with `status`.
    pub fn fail_next(&self, status: u16, times: usize) {
        self.with(|s| s.fail = Some((status, times)));
    }
}

/// The fake, checked with Google's own REST client: publish (data and attributes), the
/// message ids, topics.get, and the 404 of an unknown topic.
#[tokio::test]
async fn the_fake_answers_googles_rest_client_as_pubsub_does() {
    let fake = PubsubFake::start().await;
    let topic = fake.create_topic("p1", "events");
    let python = crate::support::test_tool("SECRET_MANAGER_PYTHON", "python3");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pubsub_fake_check.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&fake.endpoint)
        .arg(&topic)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the Pub/Sub fake check failed (./scripts/test.sh installs google-api-python-client; or \
         set SECRET_MANAGER_PYTHON to a python that has it):\n{text}"
    );
    assert!(text.contains("ok"), "{text}");
    let got = fake.published();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].data, b"hello");
    assert_eq!(
        got[0].attributes.get("event_type").map(String::as_str),
        Some("token.rotated")
    );
    assert!(got[1].data.is_empty() && got[1].attributes.contains_key("only"));
}
