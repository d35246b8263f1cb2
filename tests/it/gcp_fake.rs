//! A Secret Manager REST fake (v1, HTTP+JSON), written from the API reference and the wire
//! format `google-cloud-secretmanager-v1` sends, for the `gcp` tests and benchmarks.
//!
//! Faithful where the rotator depends on it:
//! - `$alt=json;enum-encoding=int` (what the Rust and Python clients send) answers enums as
//!   ints; plain JSON (no `$alt`, or `$alt=json`) answers them by name; any other `$alt` is a
//!   400; int64 as strings, bytes as standard base64, durations as `"86400s"`;
//! - errors are `{"error":{"code","message","status"[,"details"]}}` (the client reads the code
//!   from `status`); a stale etag is `FAILED_PRECONDITION` with HTTP 400; injected denials,
//!   quota and aborts carry `details` (`google.rpc.ErrorInfo`, `RetryInfo`) as the API does;
//! - secrets and versions have independent etags (quoted); every update changes the secret's;
//! - names in answers carry the project **number**, as Secret Manager's do;
//! - annotations: key syntax and the 16 KiB cap on keys plus values; version aliases;
//!   `versionDestroyTtl` (a destroy then disables and schedules; enabling or disabling the
//!   version cancels the scheduled destruction);
//! - `latest` is the highest-numbered version whatever its state; accessing a disabled or
//!   destroyed version is `FAILED_PRECONDITION`; `dataCrc32c` is checked on add and returned
//!   on access;
//! - list: newest first, `pageSize` (0 = the server's choice, capped at 25,000, negative is
//!   `INVALID_ARGUMENT`), an opaque `pageToken` bound to its filter (a bad one is
//!   `INVALID_ARGUMENT`, never page 1), the `state:` filters, `totalSize` only without a filter;
//! - with a service-account public key set, the bearer must be a self-signed RS256 JWT by it.
//!
//! Test hooks (also over HTTP under `/__fake/`): calls per RPC, injected faults (an answer
//! lost after the change was applied, or a 503 before it), a corrupted stored checksum.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Project numbers the fake gives project ids.
const PROJECT_NUMBER_BASE: u64 = 100_000_000_000;
const ANNOTATIONS_MAX: usize = 16 * 1024;
const PAYLOAD_MAX: usize = 64 * 1024;

#[derive(Clone, Debug)]
struct FVersion {
    n: u64,
    /// 1 enabled, 2 disabled, 3 destroyed.
    state: i32,
    data: Vec<u8>,
    crc: i64,
    etag: u64,
    created: DateTime<Utc>,
    destroyed: Option<DateTime<Utc>>,
    scheduled: Option<DateTime<Utc>>,
    client_crc: bool,
}

#[derive(Clone, Debug)]
struct FSecret {
    project: String,
    id: String,
    etag: u64,
    created: DateTime<Utc>,
    annotations: BTreeMap<String, String>,
    aliases: BTreeMap<String, i64>,
    destroy_ttl: Option<i64>,
    versions: Vec<FVersion>,
}

/// What a fault does to the next matching call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Apply the call, then answer 503 UNAVAILABLE (the answer is "lost").
    LoseAnswer,
    /// Answer 503 UNAVAILABLE without applying it.
    Unavailable,
    /// Answer 307 to the same path on `127.0.0.1:<port>` (an endpoint that bounces clients
    /// elsewhere) without applying it.
    RedirectTo(u16),
    /// 403 PERMISSION_DENIED (an IAM binding missing), with an `ErrorInfo` detail.
    PermissionDenied,
    /// 429 RESOURCE_EXHAUSTED (a quota), with `ErrorInfo` and `RetryInfo` details.
    ResourceExhausted,
    /// 409 ABORTED (a concurrency conflict on the server), with an `ErrorInfo` detail.
    Aborted,
}

#[derive(Default)]
struct Inner {
    secrets: BTreeMap<String, FSecret>,
    projects: BTreeMap<String, u64>,
    calls: BTreeMap<String, u64>,
    faults: Vec<(String, Fault)>,
    etags: u64,
    /// RSA public key (n, e) of a service account whose self-signed JWTs are required.
    sa_key: Option<(Vec<u8>, Vec<u8>, String)>,
    bearer_ok: u64,
    rejected: u64,
    /// This request asked for enums as ints (`$alt=json;enum-encoding=int`).
    int_enums: bool,
}

type Shared = Arc<Mutex<Inner>>;

/// The fake, serving on 127.0.0.1 until dropped.
pub struct GcpFake {
    pub endpoint: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GcpFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn crc32c(data: &[u8]) -> u32 {
    deepvue_rotator::backends::gcp::crc32c(data)
}

fn error(http: u16, status: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"code": http, "message": message.into(), "status": status}});
    (
        StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// An error with `details`, as the API sends for denials, quota and aborts.
fn error_with(http: u16, status: &str, message: impl Into<String>, details: Value) -> Response {
    let body = json!({"error": {"code": http, "message": message.into(), "status": status, "details": details}});
    (
        StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What an injected denial, quota or abort answers for `rpc` on `resource`.
fn fault_answer(fault: Fault, rpc: &str, resource: &str) -> Option<Response> {
    let info = |reason: &str, domain: &str, metadata: Value| json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": domain, "metadata": metadata});
    let permission = match rpc {
        "AddSecretVersion" => "secretmanager.versions.add",
        "AccessSecretVersion" => "secretmanager.versions.access",
        "GetSecret" => "secretmanager.secrets.get",
        "UpdateSecret" => "secretmanager.secrets.update",
        "ListSecretVersions" => "secretmanager.versions.list",
        "DestroySecretVersion" => "secretmanager.versions.destroy",
        _ => "secretmanager.secrets.get",
    };
    Some(match fault {
        Fault::PermissionDenied => error_with(
            403,
            "PERMISSION_DENIED",
            format!(
                "Permission '{permission}' denied for resource '{resource}' (or it may not exist)."
            ),
            json!([info(
                "IAM_PERMISSION_DENIED",
                "iam.googleapis.com",
                json!({"permission": permission, "resource": resource})
            )]),
        ),
        Fault::ResourceExhausted => error_with(
            429,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Access requests' and limit 'Access requests per \
             minute per project per region' of service 'secretmanager.googleapis.com'.",
            json!([
                info(
                    "RATE_LIMIT_EXCEEDED",
                    "googleapis.com",
                    json!({"service": "secretmanager.googleapis.com", "quota_metric": "secretmanager.googleapis.com/access_requests", "quota_limit": "AccessRequestsPerMinutePerProjectPerRegion"})
                ),
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
            ]),
        ),
        Fault::Aborted => error_with(
            409,
            "ABORTED",
            "The operation was aborted due to a concurrent modification; retry.",
            json!([info(
                "ABORTED",
                "secretmanager.googleapis.com",
                json!({"resource": resource})
            )]),
        ),
        _ => return None,
    })
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn annotation_key_ok(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

impl Inner {
    fn number(&mut self, project: &str) -> u64 {
        if let Ok(n) = project.parse::<u64>() {
            return n;
        }
        let next = PROJECT_NUMBER_BASE + self.projects.len() as u64 + 1;
        *self.projects.entry(project.to_string()).or_insert(next)
    }

    /// The key of a secret named by project id or number.
    fn key(&mut self, project: &str, id: &str) -> String {
        let p = match project.parse::<u64>() {
            Ok(n) => self
                .projects
                .iter()
                .find(|(_, v)| **v == n)
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| project.to_string()),
            Err(_) => project.to_string(),
        };
        format!("projects/{p}/secrets/{id}")
    }

    fn etag(&mut self) -> u64 {
        self.etags += 1;
        self.etags
    }

    fn secret_json(&mut self, s: &FSecret) -> Value {
        let number = self.number(&s.project);
        let mut v = json!({
            "name": format!("projects/{number}/secrets/{}", s.id),
            "replication": {"automatic": {}},
            "createTime": ts(s.created),
            "etag": format!("\"{:x}\"", s.etag),
        });
        if !s.annotations.is_empty() {
            v["annotations"] = json!(s.annotations);
        }
        if !s.aliases.is_empty() {
            let a: BTreeMap<&String, String> =
                s.aliases.iter().map(|(k, n)| (k, n.to_string())).collect();
            v["versionAliases"] = json!(a);
        }
        if let Some(t) = s.destroy_ttl {
            v["versionDestroyTtl"] = json!(format!("{t}s"));
        }
        v
    }

    fn version_json(&mut self, s: &FSecret, v: &FVersion) -> Value {
        let number = self.number(&s.project);
        let mut j = json!({
            "name": format!("projects/{number}/secrets/{}/versions/{}", s.id, v.n),
            "createTime": ts(v.created),
            "state": if self.int_enums { json!(v.state) } else { json!(state_name(v.state)) },
            "etag": format!("\"{:x}\"", v.etag),
            "clientSpecifiedPayloadChecksum": v.client_crc,
        });
        if let Some(d) = v.destroyed {
            j["destroyTime"] = json!(ts(d));
        }
        if let Some(d) = v.scheduled {
            j["scheduledDestroyTime"] = json!(ts(d));
        }
        j
    }

    /// Turn a scheduled destruction whose time has come into a destroyed version.
    fn settle(&mut self) {
        let t = now();
        for s in self.secrets.values_mut() {
            for v in &mut s.versions {
                if v.scheduled.is_some_and(|at| at <= t) {
                    v.state = 3;
                    v.data.clear();
                    v.destroyed = v.scheduled.take();
                }
            }
        }
    }
}

fn resolve(s: &FSecret, v: &str) -> Option<usize> {
    let n: u64 = if v == "latest" {
        s.versions.iter().map(|x| x.n).max()?
    } else if let Ok(n) = v.parse() {
        n
    } else {
        u64::try_from(*s.aliases.get(v)?).ok()?
    };
    s.versions.iter().position(|x| x.n == n)
}

/// An opaque page token: the offset, bound to the filter it was issued for.
fn page_token(offset: usize, filter: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{offset}|{filter}"))
}

fn page_token_offset(token: &str, filter: &str) -> Option<usize> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = raw.splitn(3, '|');
    (parts.next()? == "v1").then_some(())?;
    let offset = parts.next()?.parse().ok()?;
    (parts.next()? == filter).then_some(offset)
}

fn state_name(s: i32) -> &'static str {
    match s {
        1 => "ENABLED",
        2 => "DISABLED",
        _ => "DESTROYED",
    }
}

fn filter_matches(filter: &str, state: i32) -> Option<bool> {
    let f = filter.trim();
    let name = state_name(state);
    Some(match f {
        "" => true,
        "NOT state:DESTROYED" | "-state:DESTROYED" => state != 3,
        "state:(ENABLED OR DISABLED)" | "state:ENABLED OR state:DISABLED" => state != 3,
        _ => {
            let want = f.strip_prefix("state:")?;
            if !matches!(want, "ENABLED" | "DISABLED" | "DESTROYED") {
                return None;
            }
            want == name
        }
    })
}

impl GcpFake {
    pub async fn start() -> GcpFake {
        deepvue_rotator::support::tls::install_default_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the Secret Manager fake must bind 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake address: {e}"));
        Self::serve(listener, addr)
    }

    /// Serve on an already bound listener (the benchmark's standalone fake).
    pub fn serve(listener: tokio::net::TcpListener, addr: std::net::SocketAddr) -> GcpFake {
        let state: Shared = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GcpFake {
            endpoint: format!("http://{addr}"),
            state,
            task,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut g = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }

    /// Calls per RPC so far.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.with(|s| s.calls.clone())
    }

    /// All RPCs so far.
    pub fn total_calls(&self) -> u64 {
        self.with(|s| s.calls.values().sum())
    }

    /// The next `method` call suffers `fault`.
    /// Drop every injected fault not used yet.
    pub fn clear_faults(&self) {
        self.with(|g| g.faults.clear());
    }

    pub fn inject(&self, method: &str, fault: Fault) {
        self.with(|s| s.faults.push((method.to_string(), fault)));
    }

    /// Flip the stored checksum of a version (what a corrupted payload looks like).
    pub fn corrupt_checksum(&self, project: &str, secret: &str, version: u64) {
        self.with(|s| {
            let key = s.key(project, secret);
            if let Some(v) = s
                .secrets
                .get_mut(&key)
                .and_then(|x| x.versions.iter_mut().find(|v| v.n == version))
            {
                v.crc ^= 1;
            }
        });
    }

    /// Require bearer JWTs self-signed by this service account key (n, e big-endian).
    pub fn require_service_account(&self, n: Vec<u8>, e: Vec<u8>, email: &str) {
        self.with(|s| s.sa_key = Some((n, e, email.to_string())));
    }

    /// Requests whose bearer verified, and requests refused for their credentials.
    pub fn auth_counts(&self) -> (u64, u64) {
        self.with(|s| (s.bearer_ok, s.rejected))
    }
}

/// Verify `Authorization: Bearer <JWT>` against the service-account key (RS256, iss = sub =
/// email, unexpired, cloud-platform scope).
fn bearer_ok(headers: &HeaderMap, n: &[u8], e: &[u8], email: &str) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let Some((signed, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let Some((_, claims)) = signed.split_once('.') else {
        return false;
    };
    let (Ok(sig), Ok(claims)) = (URL_SAFE_NO_PAD.decode(sig), URL_SAFE_NO_PAD.decode(claims))
    else {
        return false;
    };
    let key = ring::signature::RsaPublicKeyComponents { n, e };
    if key
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &sig,
        )
        .is_err()
    {
        return false;
    }
    let c: Value = serde_json::from_slice(&claims).unwrap_or_default();
    c["iss"] == email
        && c["sub"] == email
        && c["exp"].as_i64().is_some_and(|x| x > now().timestamp())
        && c["scope"]
            .as_str()
            .is_some_and(|s| s.contains("https://www.googleapis.com/auth/cloud-platform"))
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let mut g = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(admin) = path.strip_prefix("/__fake/") {
        return match (method.as_str(), admin) {
            ("GET", "calls") => ok(json!(g.calls)),
            _ => error(404, "NOT_FOUND", "no such fake endpoint"),
        };
    }
    if path == "/token" {
        // A service-account key's token_uri: google-cloud-auth must never call it.
        *g.calls.entry("OAuthToken".to_string()).or_default() += 1;
        return error(400, "INVALID_ARGUMENT", "the fake issues no OAuth tokens");
    }
    g.int_enums = match query.get("$alt").map(String::as_str) {
        Some("json;enum-encoding=int") => true,
        None | Some("json") => false,
        Some(other) => {
            return error(
                400,
                "INVALID_ARGUMENT",
                format!("unsupported $alt `{other}`: json, or json;enum-encoding=int"),
            );
        }
    };
    if let Some((n, e, email)) = g.sa_key.clone() {
        if bearer_ok(&headers, &n, &e, &email) {
            g.bearer_ok += 1;
        } else {
            g.rejected += 1;
            return error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
    }
    g.settle();
    let Some(rest) = path.strip_prefix("/v1/projects/") else {
        return error(404, "NOT_FOUND", format!("no route {path}"));
    };
    let Some((project, rest)) = rest.split_once('/') else {
        return error(404, "NOT_FOUND", format!("no route {path}"));
    };
    let project = project.to_string();
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(400, "INVALID_ARGUMENT", format!("bad JSON body: {e}")),
        }
    };
    // Route: secrets | secrets/S | secrets/S:addVersion | secrets/S/versions[/V[:verb]]
    let Some(rest) = rest.strip_prefix("secrets") else {
        return error(404, "NOT_FOUND", format!("no route {path}"));
    };
    let (rpc, secret, version, verb) = if rest.is_empty() {
        match method.as_str() {
            "POST" => ("CreateSecret", String::new(), None, ""),
            _ => return error(404, "NOT_FOUND", "listing secrets is not faked"),
        }
    } else {
        let rest = rest.trim_start_matches('/');
        let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let (secret, verb) = head.split_once(':').unwrap_or((head, ""));
        match (method.as_str(), verb, tail) {
            ("GET", "", "") => ("GetSecret", secret.to_string(), None, ""),
            ("PATCH", "", "") => ("UpdateSecret", secret.to_string(), None, ""),
            ("DELETE", "", "") => ("DeleteSecret", secret.to_string(), None, ""),
            ("POST", "addVersion", "") => ("AddSecretVersion", secret.to_string(), None, ""),
            ("GET", "", "versions") => ("ListSecretVersions", secret.to_string(), None, ""),
            (m, "", t) if t.starts_with("versions/") => {
                let v = &t["versions/".len()..];
                let (v, vverb) = v.split_once(':').unwrap_or((v, ""));
                let rpc = match (m, vverb) {
                    ("GET", "") => "GetSecretVersion",
                    ("GET", "access") => "AccessSecretVersion",
                    ("POST", "destroy") => "DestroySecretVersion",
                    ("POST", "enable") => "EnableSecretVersion",
                    ("POST", "disable") => "DisableSecretVersion",
                    _ => return error(404, "NOT_FOUND", format!("no route {m} {path}")),
                };
                (rpc, secret.to_string(), Some(v.to_string()), vverb)
            }
            _ => return error(404, "NOT_FOUND", format!("no route {method} {path}")),
        }
    };
    let _ = verb;
    *g.calls.entry(rpc.to_string()).or_default() += 1;
    let fault = g
        .faults
        .iter()
        .position(|(m, _)| m == rpc)
        .map(|i| g.faults.remove(i).1);
    if fault == Some(Fault::Unavailable) {
        return error(503, "UNAVAILABLE", "The service is currently unavailable.");
    }
    if let Some(answer) =
        fault.and_then(|f| fault_answer(f, rpc, &format!("projects/{project}/secrets/{secret}")))
    {
        return answer;
    }
    if let Some(Fault::RedirectTo(port)) = fault {
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("http://127.0.0.1:{port}{path}"))],
            "",
        )
            .into_response();
    }
    let answer = rpc_call(
        &mut g,
        rpc,
        &project,
        &secret,
        version.as_deref(),
        &query,
        &body,
    );
    if fault == Some(Fault::LoseAnswer) {
        return error(503, "UNAVAILABLE", "The service is currently unavailable.");
    }
    answer
}

fn rpc_call(
    g: &mut Inner,
    rpc: &str,
    project: &str,
    secret: &str,
    version: Option<&str>,
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Response {
    if rpc == "CreateSecret" {
        let Some(id) = query.get("secretId").filter(|s| !s.is_empty()) else {
            return error(400, "INVALID_ARGUMENT", "secretId is required");
        };
        let key = g.key(project, id);
        if g.secrets.contains_key(&key) {
            return error(
                409,
                "ALREADY_EXISTS",
                format!("Secret [{key}] already exists."),
            );
        }
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(body["annotations"].clone()).unwrap_or_default();
        let ttl = body["versionDestroyTtl"]
            .as_str()
            .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
            .map(|f| f as i64);
        let etag = g.etag();
        let s = FSecret {
            project: key
                .trim_start_matches("projects/")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            id: id.clone(),
            etag,
            created: now(),
            annotations,
            aliases: BTreeMap::new(),
            destroy_ttl: ttl,
            versions: Vec::new(),
        };
        let v = g.secret_json(&s);
        g.secrets.insert(key, s);
        return ok(v);
    }
    let key = g.key(project, secret);
    let Some(mut s) = g.secrets.get(&key).cloned() else {
        return error(
            404,
            "NOT_FOUND",
            format!("Secret [{key}] not found or has no versions."),
        );
    };
    let answer = match rpc {
        "GetSecret" => ok(g.secret_json(&s)),
        "DeleteSecret" => {
            g.secrets.remove(&key);
            return ok(json!({}));
        }
        "UpdateSecret" => {
            let sent = body["etag"].as_str().unwrap_or_default();
            if !sent.is_empty() && sent != format!("\"{:x}\"", s.etag) {
                return error(
                    400,
                    "FAILED_PRECONDITION",
                    format!(
                        "The etag provided in the request does not match the etag of Secret [{key}]."
                    ),
                );
            }
            let mask = query.get("updateMask").cloned().unwrap_or_default();
            if mask.is_empty() {
                return error(400, "INVALID_ARGUMENT", "update_mask is required");
            }
            for field in mask.split(',') {
                match field.trim() {
                    "annotations" => {
                        let a: BTreeMap<String, String> =
                            serde_json::from_value(body["annotations"].clone()).unwrap_or_default();
                        if let Some(bad) = a.keys().find(|k| !annotation_key_ok(k)) {
                            return error(
                                400,
                                "INVALID_ARGUMENT",
                                format!("annotation key `{bad}` is invalid"),
                            );
                        }
                        let size: usize = a.iter().map(|(k, v)| k.len() + v.len()).sum();
                        if size >= ANNOTATIONS_MAX {
                            return error(
                                400,
                                "INVALID_ARGUMENT",
                                "The total size of annotation keys and values must be less than 16KiB.",
                            );
                        }
                        s.annotations = a;
                    }
                    "versionAliases" | "version_aliases" => {
                        let a: BTreeMap<String, Value> =
                            serde_json::from_value(body["versionAliases"].clone())
                                .unwrap_or_default();
                        let mut out = BTreeMap::new();
                        for (k, v) in a {
                            let n = v
                                .as_str()
                                .and_then(|x| x.parse::<i64>().ok())
                                .or(v.as_i64())
                                .unwrap_or(-1);
                            if !s.versions.iter().any(|x| x.n as i64 == n) {
                                return error(
                                    400,
                                    "INVALID_ARGUMENT",
                                    format!("alias `{k}` names no version"),
                                );
                            }
                            out.insert(k, n);
                        }
                        s.aliases = out;
                    }
                    "versionDestroyTtl" | "version_destroy_ttl" => {
                        s.destroy_ttl = body["versionDestroyTtl"]
                            .as_str()
                            .and_then(|x| x.trim_end_matches('s').parse::<f64>().ok())
                            .map(|f| f as i64);
                    }
                    other => {
                        return error(
                            400,
                            "INVALID_ARGUMENT",
                            format!("update_mask path `{other}` is not faked"),
                        );
                    }
                }
            }
            s.etag = g.etag();
            ok(g.secret_json(&s))
        }
        "AddSecretVersion" => {
            let Some(data) = body["payload"]["data"]
                .as_str()
                .and_then(|d| STANDARD.decode(d).ok())
            else {
                return error(400, "INVALID_ARGUMENT", "payload.data is required");
            };
            if data.len() > PAYLOAD_MAX {
                return error(400, "INVALID_ARGUMENT", "payload is larger than 64 KiB");
            }
            let actual = i64::from(crc32c(&data));
            let sent = body["payload"]["dataCrc32c"]
                .as_str()
                .and_then(|c| c.parse::<i64>().ok())
                .or(body["payload"]["dataCrc32c"].as_i64());
            if sent.is_some_and(|c| c != actual) {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    "Checksum of the payload does not match dataCrc32c.",
                );
            }
            let n = s.versions.iter().map(|v| v.n).max().unwrap_or(0) + 1;
            let etag = g.etag();
            let v = FVersion {
                n,
                state: 1,
                data,
                crc: actual,
                etag,
                created: now(),
                destroyed: None,
                scheduled: None,
                client_crc: sent.is_some(),
            };
            s.versions.push(v.clone());
            ok(g.version_json(&s, &v))
        }
        "ListSecretVersions" => {
            let filter = query.get("filter").cloned().unwrap_or_default();
            if filter_matches(&filter, 1).is_none() {
                return error(
                    400,
                    "INVALID_ARGUMENT",
                    format!("filter `{filter}` is not faked"),
                );
            }
            let size = match query.get("pageSize").map(|p| p.parse::<i64>()) {
                None => 25_000,
                Some(Ok(0)) => 25_000,
                Some(Ok(n)) if n > 0 => n.min(25_000) as usize,
                Some(_) => {
                    return error(400, "INVALID_ARGUMENT", "page_size must be positive");
                }
            };
            let start = match query.get("pageToken").filter(|t| !t.is_empty()) {
                None => 0,
                Some(t) => match page_token_offset(t, &filter) {
                    Some(n) => n,
                    None => {
                        return error(400, "INVALID_ARGUMENT", "The page token is invalid.");
                    }
                },
            };
            let mut all: Vec<FVersion> = s
                .versions
                .iter()
                .filter(|v| filter_matches(&filter, v.state) == Some(true))
                .cloned()
                .collect();
            all.sort_by_key(|v| std::cmp::Reverse(v.n));
            let total = all.len();
            let page: Vec<Value> = all
                .iter()
                .skip(start)
                .take(size)
                .map(|v| g.version_json(&s, v))
                .collect();
            let mut out = json!({"versions": page});
            // "The total number of SecretVersions but 0 when the filter field is set" (0 is
            // left out of the JSON).
            if filter.trim().is_empty() && total > 0 {
                out["totalSize"] = json!(total);
            }
            if start + size < total {
                out["nextPageToken"] = json!(page_token(start + size, &filter));
            }
            return ok(out);
        }
        _ => {
            let v = version.unwrap_or_default();
            let Some(i) = resolve(&s, v) else {
                return error(
                    404,
                    "NOT_FOUND",
                    format!("Secret Version [{key}/versions/{v}] not found."),
                );
            };
            let number = g.number(&s.project);
            let vname = format!(
                "projects/{number}/secrets/{}/versions/{}",
                s.id, s.versions[i].n
            );
            match rpc {
                "GetSecretVersion" => {
                    let ver = s.versions[i].clone();
                    return ok(g.version_json(&s, &ver));
                }
                "AccessSecretVersion" => {
                    let ver = &s.versions[i];
                    if ver.state != 1 {
                        return error(
                            400,
                            "FAILED_PRECONDITION",
                            format!(
                                "Secret Version [{vname}] is in {} state.",
                                state_name(ver.state)
                            ),
                        );
                    }
                    return ok(json!({
                        "name": vname,
                        "payload": {"data": STANDARD.encode(&ver.data), "dataCrc32c": ver.crc.to_string()},
                    }));
                }
                verb_rpc => {
                    let sent = body["etag"].as_str().unwrap_or_default();
                    if !sent.is_empty() && sent != format!("\"{:x}\"", s.versions[i].etag) {
                        return error(
                            400,
                            "FAILED_PRECONDITION",
                            format!(
                                "The etag provided in the request does not match the etag of Secret Version [{vname}]."
                            ),
                        );
                    }
                    let ttl = s.destroy_ttl;
                    let etag = g.etag();
                    let ver = &mut s.versions[i];
                    if ver.state == 3 {
                        return error(
                            400,
                            "FAILED_PRECONDITION",
                            format!("Secret Version [{vname}] is in DESTROYED state."),
                        );
                    }
                    match verb_rpc {
                        // Either cancels a scheduled destruction.
                        "EnableSecretVersion" => {
                            ver.state = 1;
                            ver.scheduled = None;
                        }
                        "DisableSecretVersion" => {
                            ver.state = 2;
                            ver.scheduled = None;
                        }
                        _ => match ttl {
                            Some(t) if t > 0 => {
                                ver.state = 2;
                                ver.scheduled = Some(now() + chrono::Duration::seconds(t));
                            }
                            _ => {
                                ver.state = 3;
                                ver.data.clear();
                                ver.destroyed = Some(now());
                            }
                        },
                    }
                    ver.etag = etag;
                    let ver = ver.clone();
                    let answer = g.version_json(&s, &ver);
                    g.secrets.insert(key, s);
                    return ok(answer);
                }
            }
        }
    };
    g.secrets.insert(key, s);
    answer
}
