//! A Kubernetes API fake (core/v1 Secrets over HTTPS), written from the API reference for the
//! `kubernetes` tests and benchmark, and checked against `kubectl` and the official Python
//! client (`tests/kube_fake_check.py`).
//!
//! Faithful where the rotator depends on it:
//! - `GET`/`POST`/`PUT`/`PATCH` (merge patch; a strategic merge patch, which for a Secret is
//!   the same)/`DELETE` of
//!   `/api/v1/namespaces/{ns}/secrets[/{name}]`, list with `labelSelector` (`k=v,…`);
//!   `?dryRun=All` checks everything and stores nothing;
//! - `metadata.resourceVersion`: one counter for every write, as etcd's revision; a `PUT` or
//!   a merge patch carrying a stale one is `409 Conflict` ("the object has been modified"),
//!   none means unconditional (Secrets allow unconditional updates); an update that changes
//!   nothing keeps the resourceVersion; `uid` and `creationTimestamp` are kept;
//! - `data` values are base64 (an invalid one is `400 BadRequest`), keys `[-._a-zA-Z0-9]+`,
//!   names DNS-1123 subdomains (`422 Invalid` with `details.causes`), `stringData` is merged
//!   into `data` and never returned, `immutable: true` refuses changes to data (422), the name
//!   in a `PUT` body must match the URL (400), the whole object is at most 1 MiB (422);
//! - errors are `Status` objects (`kind`, `apiVersion`, `status: Failure`, `message`,
//!   `reason`, `details {name, kind}`, `code`) with the API server's messages;
//! - authentication by bearer token (`401 Unauthorized` otherwise); per-token RBAC as a Role
//!   would give it: rules of verbs and `resourceNames`, which never match `create` or `list`
//!   (the name is not known), and a `403 Forbidden` naming the user, verb and namespace;
//! - discovery for kubectl: `/api`, `/apis`, `/api/v1`, `/version`, and every namespace
//!   exists (`GET /api/v1/namespaces/{ns}`);
//! - bodies in JSON only: protobuf or CBOR is `415` (kubectl's typed `create secret generic`
//!   sends protobuf, so the kubectl check creates from a manifest).
//!
//! Test hooks: calls per verb (also `GET /__fake/calls`, for the benchmark), tokens added and
//! revoked at run time, faults (an answer lost after the change was applied; a status before
//! it).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const OBJECT_MAX: usize = 1024 * 1024;
/// The header that makes the server drop the connection instead of answering.
const DROP: &str = "x-kube-fake-drop";

/// What a bearer token may do: `None` everything (cluster-admin); else the rules of a Role.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The user name the API server reports (`system:serviceaccount:NS:NAME`).
    pub user: String,
    /// `(verbs, resourceNames)`; empty resourceNames: every Secret.
    pub rules: Option<Vec<(Vec<String>, Vec<String>)>>,
}

/// An injected fault for the next calls of one verb.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Apply the call, then drop the connection without an answer.
    LoseAnswer,
    /// Answer this status (a `Status` body) without applying the call.
    Status(u16),
}

#[derive(Default)]
struct Inner {
    secrets: BTreeMap<(String, String), Value>,
    revision: u64,
    uids: u64,
    tokens: HashMap<String, Identity>,
    faults: Vec<(String, Fault)>,
}

/// A change to a Secret, as watches see it: (namespace, name, event type, the object).
type Event = (String, String, &'static str, Value);

struct Shared {
    inner: Mutex<Inner>,
    calls: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
    /// Every change, for watches.
    events: tokio::sync::broadcast::Sender<Event>,
}

/// A running fake; stops when dropped.
pub struct KubeFake {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA certificate (PEM) to trust.
    pub ca_pem: String,
    /// A cluster-admin token.
    pub admin_token: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KubeFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn status(code: u16, reason: &str, message: &str, name: Option<&str>) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(n) = name {
        body["details"] = json!({"name": n, "kind": "secrets"});
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], v.to_string()).into_response()
}

fn dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn invalid(name: &str, field: &str, why: &str) -> Response {
    let message = format!("Secret \"{name}\" is invalid: {field}: {why}");
    let mut r = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Invalid", "code": 422,
        "details": {"name": name, "kind": "Secret", "causes": [
            {"reason": "FieldValueInvalid", "message": why, "field": field}]},
    });
    r["details"]["kind"] = json!("Secret");
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [("content-type", "application/json")],
        r.to_string(),
    )
        .into_response()
}

/// RFC 7386 merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(t) = target.as_object_mut() {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl KubeFake {
    /// Start on an ephemeral loopback port.
    pub async fn start() -> KubeFake {
        let pki = deepvue_rotator::simulator::Pki::generate()
            .unwrap_or_else(|e| panic!("kube fake PKI: {e}"));
        let tls = pki
            .server_config()
            .unwrap_or_else(|e| panic!("kube fake TLS: {e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap_or_else(|e| panic!("kube fake bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("kube fake addr: {e}"));
        let admin_token = format!("admin-{:016x}", rand::random::<u64>());
        let mut inner = Inner::default();
        inner.tokens.insert(
            admin_token.clone(),
            Identity {
                user: "kubernetes-admin".into(),
                rules: None,
            },
        );
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            calls: Mutex::new(BTreeMap::new()),
            total: AtomicU64::new(0),
            events: tokio::sync::broadcast::channel(1024).0,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // A response marked "drop" closes the connection without an answer.
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let app = app.clone();
                            async move {
                                let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
                                if resp.headers().contains_key(DROP) {
                                    return Err(std::io::Error::other("answer lost on purpose"));
                                }
                                Ok(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        KubeFake {
            url: format!("https://{addr}"),
            ca_pem: pki.ca_pem,
            admin_token,
            shared,
            task,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Let `token` act as `identity`.
    pub fn add_token(&self, token: &str, identity: Identity) {
        self.inner().tokens.insert(token.to_string(), identity);
    }

    /// Stop accepting `token` (a rotated service-account token expires).
    pub fn revoke_token(&self, token: &str) {
        self.inner().tokens.remove(token);
    }

    /// Fail (or lose the answer of) the next `count` calls of `verb`.
    pub fn inject(&self, verb: &str, fault: Fault, count: usize) {
        let mut inner = self.inner();
        for _ in 0..count {
            inner.faults.push((verb.to_string(), fault.clone()));
        }
    }

    /// Calls served so far, all verbs.
    pub fn total(&self) -> u64 {
        self.shared.total.load(Ordering::SeqCst)
    }

    /// Calls of one verb (`get`, `list`, `create`, `update`, `patch`, `delete`).
    pub fn calls(&self, verb: &str) -> u64 {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(verb)
            .copied()
            .unwrap_or(0)
    }

    /// A Secret as stored (test-side read, not counted).
    pub fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.inner()
            .secrets
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Store a Secret directly (test set-up, not counted): `data` given as plain bytes.
    pub fn put(&self, ns: &str, name: &str, data: &[(&str, &[u8])]) {
        let mut inner = self.inner();
        inner.revision += 1;
        // An update keeps the object's uid, as the API server does.
        let existing = inner
            .secrets
            .get(&(ns.to_string(), name.to_string()))
            .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string));
        if existing.is_none() {
            inner.uids += 1;
        }
        let uid = existing.unwrap_or_else(|| format!("uid-{}", inner.uids));
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        let obj = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": ns, "uid": uid,
                "resourceVersion": inner.revision.to_string(),
                "creationTimestamp": "2026-01-01T00:00:00Z"},
            "data": data,
        });
        let kind = if inner
            .secrets
            .insert((ns.to_string(), name.to_string()), obj.clone())
            .is_some()
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let _ = self
            .shared
            .events
            .send((ns.to_string(), name.to_string(), kind, obj));
    }
}

fn count(shared: &Shared, verb: &str) {
    shared.total.fetch_add(1, Ordering::SeqCst);
    *shared
        .calls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(verb.to_string())
        .or_insert(0) += 1;
}

fn discovery(path: &str, host: &str) -> Option<Value> {
    Some(match path {
        "/api" => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}),
        "/apis" => json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        "/api/v1" => json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "secrets", "singularName": "secret", "namespaced": true, "kind": "Secret",
             "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}]}),
        "/version" => json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
            "platform": "linux/amd64"}),
        _ => return None,
    })
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if method == Method::GET && path == "/__fake/calls" {
        let calls = shared
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        return ok(StatusCode::OK, &json!(calls));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let identity = shared
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .tokens
        .get(&token)
        .cloned();
    let Some(identity) = identity else {
        count(&shared, "unauthorized");
        return status(401, "Unauthorized", "Unauthorized", None);
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if method == Method::GET
        && let Some(v) = discovery(&path, &host)
    {
        count(&shared, "discovery");
        return ok(StatusCode::OK, &v);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Every namespace exists (kubectl reads it to explain a NotFound).
    if method == Method::GET
        && let ["api", "v1", "namespaces", ns] = parts.as_slice()
    {
        count(&shared, "discovery");
        return ok(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                "status": {"phase": "Active"}}),
        );
    }
    let (ns, name) = match parts.as_slice() {
        ["api", "v1", "namespaces", ns, "secrets"] => (ns.to_string(), None),
        ["api", "v1", "namespaces", ns, "secrets", name] => {
            (ns.to_string(), Some(name.to_string()))
        }
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        }
    };
    let watching = query.get("watch").is_some_and(|v| v == "1" || v == "true");
    let verb = match (&method, &name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if watching => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        _ => {
            return status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            );
        }
    };
    count(&shared, verb);
    // RBAC: resourceNames never match create or list.
    if let Some(rules) = &identity.rules {
        let allowed = rules.iter().any(|(verbs, names)| {
            verbs.iter().any(|v| v == verb || v == "*")
                && (names.is_empty()
                    || (verb != "create"
                        && verb != "list"
                        && name.as_ref().is_some_and(|n| names.contains(n))))
        });
        if !allowed {
            let what = match &name {
                Some(n) => format!("secrets \"{n}\" is forbidden"),
                None => "secrets is forbidden".to_string(),
            };
            return status(
                403,
                "Forbidden",
                &format!(
                    "{what}: User \"{}\" cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{ns}\"",
                    identity.user
                ),
                name.as_deref(),
            );
        }
    }
    let fault = {
        let mut inner = shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = inner.faults.iter().position(|(v, _)| v == verb);
        at.map(|i| inner.faults.remove(i).1)
    };
    if let Some(Fault::Status(code)) = fault {
        let reason = match code {
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        };
        return status(code, reason, "injected fault", None);
    }
    if verb == "watch" {
        return watch(&shared, &ns, &query);
    }
    let dry = query.get("dryRun").is_some_and(|v| v == "All");
    let resp = apply(
        &shared,
        &method,
        verb,
        &ns,
        name.as_deref(),
        &query,
        &headers,
        &body,
        dry,
    );
    if let Some(Fault::LoseAnswer) = fault {
        // Applied; the client never hears of it.
        return (StatusCode::OK, [(DROP, "1")], "").into_response();
    }
    resp
}

/// `GET …/secrets?watch=1`: one JSON event per line — the matching Secrets first (`ADDED`
/// without a `resourceVersion`; with one, `MODIFIED` for each changed since), then every
/// change as it happens — until `timeoutSeconds` (default 1800) ends the stream. Only the
/// `metadata.name=` field selector is understood, as the API server's for secrets.
fn watch(shared: &Arc<Shared>, ns: &str, query: &HashMap<String, String>) -> Response {
    use futures::StreamExt as _;
    let by_name = query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("metadata.name="))
        .map(str::to_string);
    let from: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse().ok());
    let seconds = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1800);
    let line = |kind: &str, obj: &Value| {
        Bytes::from(format!("{}\n", json!({"type": kind, "object": obj})))
    };
    // Subscribed before the snapshot: nothing falls between them.
    let rx = shared.events.subscribe();
    let first: Vec<Bytes> = {
        let inner = shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .secrets
            .iter()
            .filter(|((n, name), _)| n == ns && by_name.as_ref().is_none_or(|b| b == name))
            .filter_map(|(_, o)| {
                let rv: u64 = o["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                match from {
                    None => Some(line("ADDED", o)),
                    Some(f) if rv > f => Some(line("MODIFIED", o)),
                    Some(_) => None,
                }
            })
            .collect()
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let ns = ns.to_string();
    let live = futures::stream::unfold(rx, move |mut rx| {
        let (ns, by_name) = (ns.clone(), by_name.clone());
        async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => return None,
                    ev = rx.recv() => match ev {
                        Ok((n, name, kind, obj))
                            if n == ns && by_name.as_ref().is_none_or(|b| *b == name) =>
                        {
                            let l = Bytes::from(format!(
                                "{}\n",
                                json!({"type": kind, "object": obj})
                            ));
                            return Some((l, rx));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return None,
                    },
                }
            }
        }
    });
    let body = futures::stream::iter(first)
        .chain(live)
        .map(Ok::<_, std::convert::Infallible>);
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|_| status(500, "InternalError", "cannot build the answer", None))
}

#[allow(clippy::too_many_arguments)]
fn apply(
    shared: &Shared,
    method: &Method,
    verb: &str,
    ns: &str,
    name: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    dry: bool,
) -> Response {
    let mut inner = shared
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = |n: &str| (ns.to_string(), n.to_string());
    let not_found = |n: &str| {
        status(
            404,
            "NotFound",
            &format!("secrets \"{n}\" not found"),
            Some(n),
        )
    };
    match verb {
        "get" => {
            let n = name.unwrap_or_default();
            match inner.secrets.get(&key(n)) {
                Some(o) => ok(StatusCode::OK, o),
                None => not_found(n),
            }
        }
        "list" => {
            let selector: Vec<(String, String)> = query
                .get("labelSelector")
                .map(|s| {
                    s.split(',')
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let by_name = query
                .get("fieldSelector")
                .and_then(|f| f.strip_prefix("metadata.name="));
            let items: Vec<Value> = inner
                .secrets
                .iter()
                .filter(|((n, _), _)| n == ns)
                .filter(|((_, name), _)| by_name.is_none_or(|b| b == name))
                .map(|(_, o)| o)
                .filter(|o| {
                    selector
                        .iter()
                        .all(|(k, v)| o["metadata"]["labels"][k].as_str() == Some(v.as_str()))
                })
                .cloned()
                .collect();
            ok(
                StatusCode::OK,
                &json!({"kind": "SecretList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": inner.revision.to_string()}, "items": items}),
            )
        }
        "delete" => {
            let n = name.unwrap_or_default();
            match inner.secrets.remove(&key(n)) {
                Some(o) => {
                    inner.revision += 1;
                    let mut gone = o.clone();
                    gone["metadata"]["resourceVersion"] = json!(inner.revision.to_string());
                    let _ = shared
                        .events
                        .send((ns.to_string(), n.to_string(), "DELETED", gone));
                    ok(StatusCode::OK, &o)
                }
                None => not_found(n),
            }
        }
        _ => {
            let ct = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if ct.contains("protobuf") || ct.contains("cbor") {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json (got {ct})"
                    ),
                    None,
                );
            }
            let incoming: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return status(
                        400,
                        "BadRequest",
                        &format!("error decoding request body: {e}"),
                        None,
                    );
                }
            };
            let (n, mut obj) = match verb {
                "create" => {
                    let n = incoming["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if inner.secrets.contains_key(&key(&n)) {
                        return status(
                            409,
                            "AlreadyExists",
                            &format!("secrets \"{n}\" already exists"),
                            Some(&n),
                        );
                    }
                    (n, incoming)
                }
                "update" => {
                    let n = name.unwrap_or_default().to_string();
                    if incoming["metadata"]["name"].as_str() != Some(n.as_str()) {
                        return status(
                            400,
                            "BadRequest",
                            "the name of the object (in the body) does not match the name on the URL",
                            None,
                        );
                    }
                    let Some(cur) = inner.secrets.get(&key(&n)) else {
                        return not_found(&n);
                    };
                    if let Some(rv) = incoming["metadata"]["resourceVersion"].as_str()
                        && !rv.is_empty()
                        && Some(rv) != cur["metadata"]["resourceVersion"].as_str()
                    {
                        return status(
                            409,
                            "Conflict",
                            &format!(
                                "Operation cannot be fulfilled on secrets \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                            ),
                            Some(&n),
                        );
                    }
                    (n, incoming)
                }
                _ => {
                    // patch
                    let n = name.unwrap_or_default().to_string();
                    let ct = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    // A strategic merge patch of a Secret is a merge patch: its maps (data,
                    // labels, annotations) merge and null deletes; it has no keyed lists the
                    // rotator or these tests touch.
                    if !ct.starts_with("application/merge-patch+json")
                        && !ct.starts_with("application/strategic-merge-patch+json")
                    {
                        return status(
                            415,
                            "UnsupportedMediaType",
                            &format!(
                                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct})"
                            ),
                            None,
                        );
                    }
                    let Some(cur) = inner.secrets.get(&key(&n)).cloned() else {
                        return not_found(&n);
                    };
                    if let Some(rv) = incoming["metadata"]["resourceVersion"].as_str()
                        && Some(rv) != cur["metadata"]["resourceVersion"].as_str()
                    {
                        return status(
                            409,
                            "Conflict",
                            &format!(
                                "Operation cannot be fulfilled on secrets \"{n}\": the object has been modified; please apply your changes to the latest version and try again"
                            ),
                            Some(&n),
                        );
                    }
                    let mut merged = cur.clone();
                    merge(&mut merged, &incoming);
                    (n, merged)
                }
            };
            if !dns_subdomain(&n) {
                return invalid(
                    &n,
                    "metadata.name",
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                );
            }
            if obj["metadata"]["namespace"]
                .as_str()
                .is_some_and(|x| x != ns)
            {
                return status(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                    None,
                );
            }
            // stringData is write-only: merged into data.
            if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
            }
            if let Some(o) = obj.as_object_mut() {
                o.remove("stringData");
            }
            if let Some(data) = obj["data"].as_object() {
                for (k, v) in data {
                    if k.is_empty()
                        || !k.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
                        })
                    {
                        return invalid(
                            &n,
                            &format!("data[{k}]"),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                        );
                    }
                    if v.as_str().is_none_or(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_err()
                    }) {
                        return status(
                            400,
                            "BadRequest",
                            &format!(
                                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0 (data[{k}])"
                            ),
                            None,
                        );
                    }
                }
            }
            if obj.to_string().len() > OBJECT_MAX {
                return invalid(&n, "data", "Too long: must have at most 1048576 bytes");
            }
            let cur = inner.secrets.get(&key(&n)).cloned();
            if let Some(c) = &cur
                && c["immutable"] == json!(true)
                && c["data"] != obj["data"]
            {
                return invalid(&n, "data", "field is immutable when `immutable` is set");
            }
            // Server-set fields.
            obj["apiVersion"] = json!("v1");
            obj["kind"] = json!("Secret");
            if obj["type"].is_null() {
                obj["type"] = json!("Opaque");
            }
            obj["metadata"]["namespace"] = json!(ns);
            match &cur {
                Some(c) => {
                    obj["metadata"]["uid"] = c["metadata"]["uid"].clone();
                    obj["metadata"]["creationTimestamp"] =
                        c["metadata"]["creationTimestamp"].clone();
                    let mut a = obj.clone();
                    let mut b = c.clone();
                    a["metadata"]["resourceVersion"] = Value::Null;
                    b["metadata"]["resourceVersion"] = Value::Null;
                    if a == b {
                        // No change: no write, the same resourceVersion.
                        obj["metadata"]["resourceVersion"] =
                            c["metadata"]["resourceVersion"].clone();
                        return ok(StatusCode::OK, &obj);
                    }
                }
                None => {
                    let uid = inner.uids + 1;
                    obj["metadata"]["uid"] = json!(format!("uid-{uid}"));
                    obj["metadata"]["creationTimestamp"] =
                        json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
                }
            }
            let code = if method == Method::POST {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            if dry {
                obj["metadata"]["resourceVersion"] = cur
                    .map(|c| c["metadata"]["resourceVersion"].clone())
                    .unwrap_or(json!(""));
                return ok(code, &obj);
            }
            if cur.is_none() {
                inner.uids += 1;
            }
            inner.revision += 1;
            obj["metadata"]["resourceVersion"] = json!(inner.revision.to_string());
            inner.secrets.insert(key(&n), obj.clone());
            let kind = if cur.is_none() { "ADDED" } else { "MODIFIED" };
            let _ = shared
                .events
                .send((ns.to_string(), n.clone(), kind, obj.clone()));
            ok(code, &obj)
        }
    }
}
