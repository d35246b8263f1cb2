//! A local Deepvue authorize simulator: HTTPS with a freshly generated CA, plus knobs for the
//! failures an integration must survive (401/403/429/5xx, malformed answers, latency, an IP
//! allowlist). Used by `demo`, by our tests, and offered to users as `simulate`.
//!
//! `GET /ip` answers the caller's IP as text, like checkip.amazonaws.com (an egress probe).
//! Control it at runtime over the same port: `GET /__simulator/stats`,
//! `PUT /__simulator/behavior` (a [`Behavior`] as JSON).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use chrono::Utc;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::core::clock::{Clock, SystemClock};
use crate::core::document::format_time;

/// One scripted answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    /// A normal token.
    Ok,
    /// An error status with Deepvue's `{"detail": …}` body.
    Status {
        /// HTTP status.
        status: u16,
        /// `detail` text (a sensible default per status when absent).
        #[serde(default)]
        detail: Option<String>,
        /// `Retry-After` header value.
        #[serde(default)]
        retry_after: Option<String>,
    },
    /// A 200 that must never be stored.
    Malformed {
        /// Which kind of broken.
        what: Malformed,
    },
}

/// Broken 200 answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// An HTML page.
    NotJson,
    /// JSON without `access_token`.
    NoToken,
    /// `access_token` is `""`.
    EmptyToken,
    /// A body larger than the client's cap.
    Huge,
    /// An expiry in the past.
    Expired,
}

/// How the simulator behaves; replaceable at runtime.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behavior {
    /// Answers consumed one per authorize call before `default` applies.
    pub script: Vec<Reply>,
    /// The answer once the script is used up.
    pub default: Reply,
    /// Delay before every authorize answer, in milliseconds.
    pub latency_ms: u64,
    /// Lifetime of issued tokens, in seconds.
    pub token_ttl_secs: u64,
    /// When set, calls from other client IPs get 403 (Deepvue's IP whitelisting).
    pub allowed_ips: Option<Vec<IpNet>>,
    /// What `GET /ip` reports instead of the caller's address (to fake another egress IP).
    pub reported_ip: Option<std::net::IpAddr>,
    /// A new mint revokes every token issued before it (`GET /v1/ping` then answers 401 for
    /// them); off: earlier tokens stay valid until their expiry. Deepvue does not document
    /// which it does; applications must handle both.
    pub revoke_on_mint: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            script: Vec::new(),
            default: Reply::Ok,
            latency_ms: 0,
            token_ttl_secs: 24 * 3600,
            allowed_ips: None,
            reported_ip: None,
            revoke_on_mint: false,
        }
    }
}

/// Counters, for tests and `GET /__simulator/stats`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Authorize calls received.
    pub authorize_calls: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Content types of authorize calls, in order.
    pub content_types: Vec<String>,
}

struct SimState {
    authorize_calls: AtomicU64,
    tokens_issued: AtomicU64,
    content_types: Mutex<Vec<String>>,
    issued: Mutex<Vec<String>>,
    /// Tokens an API call accepts, with their expiry.
    valid: Mutex<HashMap<String, chrono::DateTime<Utc>>>,
    script: Mutex<VecDeque<Reply>>,
    behavior: Mutex<Behavior>,
    credentials: Option<(String, SecretString)>,
    clock: Arc<dyn Clock>,
}

/// Test PKI: a CA and a leaf for `localhost`, `127.0.0.1` and `::1`.
pub struct Pki {
    /// The CA certificate, PEM; give it to clients as `ca_file`.
    pub ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Pki {
    /// Generate a fresh CA and leaf.
    pub fn generate() -> Result<Pki, rcgen::Error> {
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(
            DnType::CommonName,
            format!(
                "deepvue-rotator simulator test CA {:08x}",
                rand::random::<u32>()
            ),
        );
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        })
    }
}

impl Pki {
    /// A TLS server config presenting the leaf (for other local test servers).
    pub fn server_config(&self) -> Result<rustls::ServerConfig, rustls::Error> {
        crate::support::tls::server_config(self.chain.clone(), self.key.clone_key())
    }
}

/// Simulator settings at start.
#[derive(Default)]
pub struct SimOptions {
    /// Where to listen (`127.0.0.1:0` when `None`).
    pub listen: Option<SocketAddr>,
    /// When set, only this client id / secret pair is accepted (else 401).
    pub credentials: Option<(String, SecretString)>,
    /// Initial behaviour.
    pub behavior: Behavior,
    /// The clock expiries are issued from (the system's when `None`; a test's own clock to
    /// move the rotator and Deepvue through a token's life together).
    pub clock: Option<Arc<dyn Clock>>,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<SimState>,
    task: JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// Generate a PKI, bind, and serve in the background.
    pub async fn start(opts: SimOptions) -> anyhow::Result<Simulator> {
        let pki = Pki::generate()?;
        let tls = crate::support::tls::server_config(pki.chain, pki.key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let script = opts.behavior.script.iter().cloned().collect();
        let state = Arc::new(SimState {
            authorize_calls: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            content_types: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            valid: Mutex::new(HashMap::new()),
            script: Mutex::new(script),
            behavior: Mutex::new(opts.behavior),
            credentials: opts.credentials,
            clock: opts.clock.unwrap_or_else(|| Arc::new(SystemClock)),
        });
        let app = Router::new()
            .route("/v1/authorize", post(authorize))
            .route(
                "/",
                get(|| async { "Deepvue simulator (deepvue-rotator)\n" }),
            )
            .route("/ip", get(client_ip))
            .route("/v1/ping", get(api_call))
            .route("/__simulator/stats", get(stats))
            .route("/__simulator/behavior", put(set_behavior))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                // Answers go out at once (no Nagle wait for the client's delayed ACK, ~40 ms).
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    // A client that does not trust us fails the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(
                        move |mut req: hyper::Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(ConnectInfo(peer));
                            app.clone().oneshot(req)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(Simulator {
            addr,
            ca_pem: pki.ca_pem,
            state,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        snapshot(&self.state)
    }

    /// Every token value handed out, broken answers included (for redaction tests).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state.issued).clone()
    }

    /// Replace the behaviour (and its script).
    pub fn set_behavior(&self, b: Behavior) {
        apply(&self.state, b);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn snapshot(s: &SimState) -> Stats {
    Stats {
        authorize_calls: s.authorize_calls.load(Ordering::SeqCst),
        tokens_issued: s.tokens_issued.load(Ordering::SeqCst),
        content_types: lock(&s.content_types).clone(),
    }
}

fn apply(s: &SimState, b: Behavior) {
    *lock(&s.script) = b.script.iter().cloned().collect();
    *lock(&s.behavior) = b;
}

/// An egress-IP probe endpoint, like checkip.amazonaws.com: the caller's IP as text.
async fn client_ip(
    State(s): State<Arc<SimState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> String {
    let ip = lock(&s.behavior).reported_ip.unwrap_or(peer.ip());
    format!("{ip}\n")
}

async fn stats(State(s): State<Arc<SimState>>) -> Json<Stats> {
    Json(snapshot(&s))
}

async fn set_behavior(State(s): State<Arc<SimState>>, Json(b): Json<Behavior>) -> StatusCode {
    apply(&s, b);
    StatusCode::NO_CONTENT
}

fn detail(status: u16, detail: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(serde_json::json!({ "detail": detail }))).into_response()
}

fn default_detail(status: u16) -> &'static str {
    match status {
        400 => "Inactive client_id",
        401 => "Invalid client_id or client_secret, access Denied",
        403 => "Valid credentials but insufficient access",
        422 => "Unprocessable Entity",
        429 => "Rate limit exceeded. Please retry after some time.",
        503 => "Source Unavailable",
        _ => "Internal Server Error",
    }
}

/// `GET /v1/ping`: stands for any Deepvue API call. Needs `Authorization: Bearer <token>` of
/// a token issued, not expired and (with `revoke_on_mint`) not revoked, and `x-api-key: <the
/// client secret>` when the simulator checks credentials; 200 `{"ok": true}`, else 401.
async fn api_call(State(s): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let key_ok = match &s.credentials {
        Some((_, secret)) => {
            headers.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(secret.expose_secret())
        }
        None => headers.contains_key("x-api-key"),
    };
    let now = s.clock.now();
    let token_ok = lock(&s.valid).get(bearer).is_some_and(|until| *until > now);
    if !key_ok {
        return detail(401, "Invalid or missing x-api-key");
    }
    if !token_ok {
        return detail(401, "Invalid or expired token");
    }
    Json(serde_json::json!({"ok": true})).into_response()
}

async fn authorize(
    State(s): State<Arc<SimState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    s.authorize_calls.fetch_add(1, Ordering::SeqCst);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    lock(&s.content_types).push(
        content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string(),
    );
    let behavior = lock(&s.behavior).clone();
    if behavior.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behavior.latency_ms)).await;
    }
    if let Some(allowed) = &behavior.allowed_ips
        && !allowed.iter().any(|net| net.contains(&peer.ip()))
    {
        return detail(403, "Access denied: request IP is not whitelisted");
    }
    let reply = lock(&s.script)
        .pop_front()
        .unwrap_or(behavior.default.clone());
    if let Reply::Status {
        status,
        detail: d,
        retry_after,
    } = &reply
    {
        let mut resp = detail(*status, d.as_deref().unwrap_or(default_detail(*status)));
        if let Some(ra) = retry_after
            && let Ok(v) = HeaderValue::from_str(ra)
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }

    let fields = if content_type.starts_with("multipart/form-data") {
        match Multipart::from_request(req, &()).await {
            Ok(mut mp) => {
                let mut out = HashMap::new();
                while let Ok(Some(field)) = mp.next_field().await {
                    let name = field.name().unwrap_or_default().to_string();
                    if let Ok(text) = field.text().await {
                        out.insert(name, text);
                    }
                }
                out
            }
            Err(_) => return detail(400, "Bad Request"),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        match Form::<HashMap<String, String>>::from_request(req, &()).await {
            Ok(Form(f)) => f,
            Err(_) => return detail(400, "Bad Request"),
        }
    } else {
        HashMap::new()
    };
    let missing: Vec<serde_json::Value> = ["client_id", "client_secret"]
        .iter()
        .filter(|k| fields.get(**k).is_none_or(String::is_empty))
        .map(|k| serde_json::json!({"loc": ["body", k], "msg": "field required", "type": "value_error.missing"}))
        .collect();
    if !missing.is_empty() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({ "detail": missing })),
        )
            .into_response();
    }
    if let Some((id, secret)) = &s.credentials {
        let ok = fields.get("client_id") == Some(id)
            && fields.get("client_secret").map(String::as_str) == Some(secret.expose_secret());
        if !ok {
            return detail(401, default_detail(401));
        }
    }
    let now = s.clock.now();
    // Any TTL a caller scripts (`PUT /__simulator/behavior`, `--token-ttl`) is answered, never
    // a panic: out-of-range ones end at the latest time chrono can write.
    let ttl = i64::try_from(behavior.token_ttl_secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .unwrap_or(chrono::Duration::MAX);
    let until = now
        .checked_add_signed(ttl)
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    let token = new_token();
    lock(&s.issued).push(token.clone());
    {
        let mut valid = lock(&s.valid);
        if behavior.revoke_on_mint {
            valid.clear();
        }
        valid.insert(token.clone(), until);
    }
    match reply {
        Reply::Malformed { what } => match what {
            Malformed::NotJson => (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html>maintenance</html>").into_response(),
            Malformed::NoToken => Json(serde_json::json!({"token_type": "bearer", "expiry": format_time(until)})).into_response(),
            Malformed::EmptyToken => Json(serde_json::json!({"access_token": "", "token_type": "bearer", "expiry": format_time(until)})).into_response(),
            Malformed::Huge => Json(serde_json::json!({"access_token": token, "padding": "x".repeat(80 * 1024)})).into_response(),
            Malformed::Expired => Json(serde_json::json!({"access_token": token, "token_type": "bearer", "expiry": format_time(now - chrono::Duration::hours(1))})).into_response(),
        },
        _ => {
            s.tokens_issued.fetch_add(1, Ordering::SeqCst);
            Json(serde_json::json!({
                "access_token": token,
                "token_type": "bearer",
                "expiry": format_time(until),
            }))
            .into_response()
        }
    }
}

fn new_token() -> String {
    let bytes: [u8; 24] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("simtok_{hex}")
}
