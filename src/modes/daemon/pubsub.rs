//! `POST /pubsub`: Secret Manager's `SECRET_ROTATE` notifications, pushed by a Pub/Sub push
//! subscription with an OIDC token (a Cloud Run service with `[daemon] schedule = false`).
//!
//! **Authentication, in the app.** Every push must carry `Authorization: Bearer <JWT>` signed
//! by Google: RS256 only, the `kid` from the header looked up in Google's JWKS (fetched over
//! our HTTPS client, cached per `Cache-Control: max-age`, refetched for an unknown `kid` at
//! most once a minute, one fetch at a time), issuer `https://accounts.google.com` or
//! `accounts.google.com`, `aud` = `[daemon.pubsub] audience`, `email` = `service_account` with
//! `email_verified`, and `exp` / `iat` / `nbf` within [`SKEW`]. Anything else is 401 (not a
//! valid Google token) or 403 (valid, but not our push identity), and nothing is done. So the
//! Cloud Run service must run with the invoker IAM check **off**: with it on, Cloud Run
//! verifies the token itself and forwards it with the signature replaced by
//! `SIGNATURE_REMOVED_BY_GOOGLE`, which this endpoint refuses.
//!
//! **What a push does.** Only `eventType = SECRET_ROTATE` for a configured token's store
//! secret rotates: matched by the full resource name (`projects/NUMBER/secrets/ID`, compared
//! with the name Secret Manager itself reports for the configured secret, so another
//! project's secret of the same id never matches). The OIDC signature covers the sender, not
//! the body, so **a push can ask for a rotation, never for more than one per window**: it
//! rotates a fresh token too, but never one minted less than `min_interval` ago (`throttled`);
//! a `messageId` already acted on is acknowledged as a duplicate (the last
//! [`RECENT_MESSAGES`] are remembered); pushes for one token closer together than
//! [`PUSH_GAP`] are acknowledged and counted, not acted on; a redelivery whose rotation
//! already happened (the stored document was issued after the message's `publishTime`) is
//! acknowledged without minting. The rotation runs through the daemon's own `Rotator`, and
//! the result goes to the scheduler like any other run. Everything else (other events,
//! unknown secrets, malformed messages) is acknowledged with 204 and a log line.
//!
//! **Refusals** answer a generic body (`unauthorized`, `forbidden`, `unavailable`); the reason
//! goes to the log, control characters escaped (a `kid` is attacker-supplied), at most one
//! line per [`REFUSAL_LOG_EVERY`] with a count of those left out. **Keys** are fetched one at a
//! time and never with the cache locked; a failed fetch backs off (up to [`LONGEST_BACKOFF`])
//! while the last good keys keep verifying.
//!
//! **Answers.** 2xx acknowledges (success, and permanent failures: they alert, and a
//! redelivery would fail the same way); 429 while the token is already being rotated and 503
//! on a transient failure ask Pub/Sub to redeliver with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::Shared;
use crate::config::daemon::PubsubConfig;
use crate::core::decide::Force;
use crate::core::error::ErrorKind;
use crate::core::result::Outcome;
use crate::engine::rotator::RunOptions;
use crate::support::http::USER_AGENT;
use crate::support::net::IpFamily;
use crate::support::tls::{HttpsSettings, https_client};

/// Clock skew allowed on `exp`, `iat` and `nbf`.
pub const SKEW: Duration = Duration::from_secs(30);
/// Issuers of Google-signed ID tokens.
const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// An unknown `kid` refetches the keys at most this often.
const REFETCH_EVERY: Duration = Duration::from_secs(60);
/// Keys are kept this long without a `max-age`, and at most this long with one.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A failed key fetch waits this long before the next, doubling up to [`LONGEST_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between failed key fetches.
pub const LONGEST_BACKOFF: Duration = Duration::from_secs(60);
/// At most one refusal line per this long (the rest are counted in the next line).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Message ids remembered as acted on.
pub const RECENT_MESSAGES: usize = 4096;
/// Pushes for one token closer together than this are acknowledged, not acted on.
pub const PUSH_GAP: Duration = Duration::from_secs(10);
/// Why a pushed rotation is asked for, in its result.
const PUSHED: &str = "a Pub/Sub SECRET_ROTATE push";

/// Why a push was refused.
#[derive(Debug)]
pub struct Refused {
    /// 401, 403 or 503 (the keys could not be fetched).
    pub status: StatusCode,
    /// For the log; never token content.
    pub why: String,
}

fn unauthorized(why: impl Into<String>) -> Refused {
    Refused {
        status: StatusCode::UNAUTHORIZED,
        why: why.into(),
    }
}

#[derive(Default)]
struct Keys {
    /// The last good keys (kept while a refetch fails).
    keys: HashMap<String, (Vec<u8>, Vec<u8>)>,
    fresh_until: Option<Instant>,
    /// When the last fetch started.
    fetched_at: Option<Instant>,
    /// A fetch is running: others use what is cached meanwhile.
    fetching: bool,
    /// Failed fetches in a row, and when the next may start.
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Keys {
    /// Whether a fetch may start now: none running, none in the last `every`, no backoff.
    fn may_fetch(&self, now: Instant, every: Duration) -> bool {
        !self.fetching
            && self.next_attempt.is_none_or(|t| now >= t)
            && self
                .fetched_at
                .is_none_or(|t| now.duration_since(t) >= every)
    }
}

/// One refusal line per [`REFUSAL_LOG_EVERY`]; the others are counted.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    left_out: u64,
}

/// The OIDC verifier of `[daemon.pubsub]`: one per configuration, its key cache shared by
/// every request.
pub struct Verifier {
    cfg: PubsubConfig,
    http: tokio::sync::OnceCell<reqwest::Client>,
    keys: std::sync::Mutex<Keys>,
    refusals: std::sync::Mutex<RefusalLog>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// A big-endian integer without leading zero bytes (ring refuses them in `n`).
fn unsigned(mut v: Vec<u8>) -> Vec<u8> {
    let i = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    v.drain(..i);
    v
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .filter_map(|d| d.trim().strip_prefix("max-age="))
                .find_map(|n| n.trim().parse::<u64>().ok())
        })
        .map_or(DEFAULT_MAX_AGE, |s| {
            Duration::from_secs(s).min(LONGEST_MAX_AGE)
        })
}

impl Verifier {
    /// A verifier for this configuration (nothing is fetched yet).
    pub fn new(cfg: PubsubConfig) -> Self {
        Verifier {
            cfg,
            http: tokio::sync::OnceCell::new(),
            keys: std::sync::Mutex::new(Keys::default()),
            refusals: std::sync::Mutex::new(RefusalLog::default()),
        }
    }

    /// The configuration it verifies against.
    pub fn config(&self) -> &PubsubConfig {
        &self.cfg
    }

    async fn client(&self) -> Result<&reqwest::Client, Refused> {
        self.http
            .get_or_try_init(|| async {
                https_client(&HttpsSettings {
                    extra_ca: self.cfg.ca_file.as_deref(),
                    connect_timeout: Duration::from_secs(5),
                    family: IpFamily::Any,
                    user_agent: USER_AGENT,
                })
            })
            .await
            .map_err(|e| Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                why: format!("cannot build the JWKS client: {e}"),
            })
    }

    /// Fetch the JWKS (no lock held): the RSA keys and how long they are fresh.
    async fn fetch(&self) -> Result<(HashMap<String, (Vec<u8>, Vec<u8>)>, Duration), Refused> {
        let unavailable = |why: String| Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            why,
        };
        let shown = crate::support::text::shown_url(&self.cfg.jwks_url);
        // The error without its URL: the query may hold a key (`shown` is the URL to show).
        let plain =
            |e: reqwest::Error| crate::support::text::escape_control(&e.without_url().to_string());
        let resp = self
            .client()
            .await?
            .get(&self.cfg.jwks_url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                unavailable(format!(
                    "cannot fetch the signing keys from {shown}: {}",
                    plain(e)
                ))
            })?;
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "{shown} answered HTTP {} for the signing keys",
                resp.status().as_u16()
            )));
        }
        let age = max_age(resp.headers());
        let body = resp.bytes().await.map_err(|e| {
            unavailable(format!(
                "reading the signing keys from {shown}: {}",
                plain(e)
            ))
        })?;
        let jwks: Jwks = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("{shown} is not a JWKS: {e}")))?;
        let keys = jwks
            .keys
            .into_iter()
            .filter(|k| {
                k.kty.as_deref() == Some("RSA") && k.alg.as_deref().is_none_or(|a| a == "RS256")
            })
            .filter_map(|k| {
                let n = URL_SAFE_NO_PAD.decode(k.n?.trim_end_matches('=')).ok()?;
                let e = URL_SAFE_NO_PAD.decode(k.e?.trim_end_matches('=')).ok()?;
                Some((k.kid?, (unsigned(n), unsigned(e))))
            })
            .collect();
        Ok((keys, age))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The public key for `kid`: from the cache while fresh; else one fetch at a time, never
    /// with the cache locked, at most every [`REFETCH_EVERY`] for an unknown `kid`, and after
    /// a failure only when its backoff is over. A failed fetch keeps the last good keys.
    async fn key(&self, kid: &str) -> Result<(Vec<u8>, Vec<u8>), Refused> {
        let now = Instant::now();
        let fetch = {
            let mut keys = self.cache();
            let stale = keys.fresh_until.is_none_or(|t| now >= t);
            let known = keys.keys.get(kid).cloned();
            let fetch = match (&known, stale) {
                (Some(k), false) => return Ok(k.clone()),
                // Stale: refresh when allowed, answering from the last good keys meanwhile.
                (_, true) => keys.may_fetch(now, Duration::ZERO),
                // Fresh but this kid is unknown (Google rotated keys): refetch, not too often.
                (None, false) => keys.may_fetch(now, REFETCH_EVERY),
            };
            if fetch {
                keys.fetching = true;
                keys.fetched_at = Some(now);
            }
            fetch
        };
        if fetch {
            let fetched = self.fetch().await;
            let mut keys = self.cache();
            keys.fetching = false;
            match fetched {
                Ok((fresh, age)) => {
                    keys.keys = fresh;
                    keys.fresh_until = Some(Instant::now() + age);
                    keys.failures = 0;
                    keys.next_attempt = None;
                }
                Err(e) => {
                    keys.failures = keys.failures.saturating_add(1);
                    let wait = FIRST_BACKOFF
                        .saturating_mul(
                            2u32.saturating_pow(keys.failures.saturating_sub(1).min(16)),
                        )
                        .min(LONGEST_BACKOFF);
                    keys.next_attempt = Some(Instant::now() + wait);
                    if keys.keys.is_empty() {
                        return Err(e);
                    }
                    warn!(error = %e.why, "the signing keys could not be refreshed; verifying with the last good ones");
                }
            }
        }
        let keys = self.cache();
        match keys.keys.get(kid) {
            Some(k) => Ok(k.clone()),
            None if keys.keys.is_empty() => Err(Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                why: "the signing keys are not available yet (a fetch is running or backing off)"
                    .into(),
            }),
            None => Err(unauthorized(format!(
                "the token's signing key `{}` is not among Google's keys",
                crate::support::text::escape_control(&crate::support::text::truncate(kid, 64))
            ))),
        }
    }

    /// Log a refusal: at most one line per [`REFUSAL_LOG_EVERY`], control characters escaped.
    fn log_refusal(&self, r: &Refused) {
        let now = Instant::now();
        let mut log = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if log
            .last
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
        {
            log.left_out = log.left_out.saturating_add(1);
            return;
        }
        let left_out = std::mem::take(&mut log.left_out);
        log.last = Some(now);
        drop(log);
        warn!(
            status = r.status.as_u16(),
            why = %crate::support::text::escape_control(&r.why),
            refused_since_last_line = left_out,
            "pubsub push refused"
        );
    }

    /// Verify a bearer token; the claims on success.
    pub async fn verify(&self, token: &str) -> Result<Value, Refused> {
        self.verify_at(token, Utc::now()).await
    }

    async fn verify_at(&self, token: &str, now: DateTime<Utc>) -> Result<Value, Refused> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unauthorized("the bearer is not a JWT"));
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| unauthorized("the token header is not JSON"))?;
        if header.alg.as_deref() != Some("RS256") {
            return Err(unauthorized(format!(
                "the token is not RS256-signed (alg {})",
                crate::support::text::escape_control(&crate::support::text::truncate(
                    header.alg.as_deref().unwrap_or("none"),
                    16
                ))
            )));
        }
        let Some(kid) = header.kid.filter(|k| !k.is_empty()) else {
            return Err(unauthorized("the token header has no kid"));
        };
        if sig == "SIGNATURE_REMOVED_BY_GOOGLE" {
            return Err(unauthorized(
                "the token's signature was removed by Cloud Run (the invoker IAM check is on); \
                 turn it off for this service so the app can verify pushes itself",
            ));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| unauthorized("the token signature is not base64url"))?;
        let (n, e) = self.key(&kid).await?;
        let signed = &token[..h.len() + 1 + c.len()];
        ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &sig,
            )
            .map_err(|_| unauthorized("the token signature does not verify"))?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| unauthorized("the token claims are not JSON"))?;
        check_claims(&claims, &self.cfg, now)?;
        Ok(claims)
    }
}

/// Issuer, audience, times, and the push identity.
fn check_claims(c: &Value, cfg: &PubsubConfig, now: DateTime<Utc>) -> Result<(), Refused> {
    let skew = SKEW.as_secs() as i64;
    let t = now.timestamp();
    if !c["iss"].as_str().is_some_and(|i| ISSUERS.contains(&i)) {
        return Err(unauthorized(
            "the token is not issued by accounts.google.com",
        ));
    }
    let aud_ok = match &c["aud"] {
        Value::String(a) => *a == cfg.audience,
        Value::Array(a) => a.iter().any(|x| x.as_str() == Some(cfg.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(unauthorized(
            "the token's audience is not daemon.pubsub.audience",
        ));
    }
    match c["exp"].as_i64() {
        Some(exp) if exp + skew > t => {}
        Some(_) => return Err(unauthorized("the token has expired")),
        None => return Err(unauthorized("the token has no exp")),
    }
    if c["iat"].as_i64().is_some_and(|iat| iat > t + skew) {
        return Err(unauthorized("the token is issued in the future"));
    }
    if c["nbf"].as_i64().is_some_and(|nbf| nbf > t + skew) {
        return Err(unauthorized("the token is not valid yet"));
    }
    let verified = match &c["email_verified"] {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    };
    if c["email"].as_str() != Some(cfg.service_account.as_str()) || !verified {
        return Err(Refused {
            status: StatusCode::FORBIDDEN,
            why: "the token is not the push service account's (daemon.pubsub.service_account, \
                  with email_verified)"
                .into(),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct Push {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    attributes: HashMap<String, String>,
    #[serde(rename = "messageId", alias = "message_id", default)]
    message_id: String,
    #[serde(rename = "publishTime", alias = "publish_time")]
    publish_time: Option<String>,
    #[serde(default)]
    data: Option<String>,
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// The generic answer to a refused push: the reason is for the log only.
fn refused(status: StatusCode) -> Response {
    let what = match status {
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::UNAUTHORIZED => "unauthorized",
        _ => "unavailable",
    };
    answer(status, json!({ "error": what }))
}

/// The push handler.
pub async fn push(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(verifier) = s.verifier() else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        verifier.log_refusal(&unauthorized("no bearer token"));
        return refused(StatusCode::UNAUTHORIZED);
    };
    if let Err(r) = verifier.verify(token.trim()).await {
        verifier.log_refusal(&r);
        return refused(r.status);
    }
    let push: Push = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "pubsub push is not a push message; acknowledged, nothing done");
            return StatusCode::NO_CONTENT.into_response();
        }
    };
    let m = push.message;
    let escape = crate::support::text::escape_control;
    let message_id = escape(&crate::support::text::truncate(&m.message_id, 128));
    let event = m.attributes.get("eventType").map(String::as_str);
    let secret = m
        .attributes
        .get("secretId")
        .cloned()
        .or_else(|| {
            // Some publishers only put the secret in the data (the Secret as JSON).
            let data = STANDARD.decode(m.data.as_deref()?).ok()?;
            let v: Value = serde_json::from_slice(&data).ok()?;
            v["name"].as_str().map(str::to_string)
        })
        .unwrap_or_default();
    let shown_secret = escape(&crate::support::text::truncate(&secret, 300));
    if event != Some("SECRET_ROTATE") {
        info!(
            message_id = %message_id,
            event = %escape(event.unwrap_or("(none)")),
            secret = %shown_secret,
            "pubsub push acknowledged: only SECRET_ROTATE rotates"
        );
        return StatusCode::NO_CONTENT.into_response();
    }
    if s.pushes.seen(&m.message_id) {
        s.metrics.push("duplicate");
        info!(message_id = %message_id, "pubsub push acknowledged: this message was acted on already");
        return answer(StatusCode::OK, json!({"outcome": "duplicate"}));
    }
    let app = s.app();
    let mut job = None;
    for j in &app.jobs {
        match j.store.tokens.platform_name().await {
            Ok(Some(name)) if name == secret => {
                job = Some(j);
                break;
            }
            Ok(_) => {}
            // The secret's own name cannot be read now: ask for a redelivery.
            Err(e) => {
                warn!(token = %j.name, error = %e, "pubsub push: cannot read the store secret's name");
                return refused(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
    }
    let Some(job) = job else {
        info!(message_id = %message_id, secret = %shown_secret, "pubsub push acknowledged: no configured token stores that secret");
        s.pushes.remember(&m.message_id);
        return StatusCode::NO_CONTENT.into_response();
    };
    // Busy first: a push told to come back (429) has not acted, so its redelivery may.
    let Some(_claim) = s.claim(&job.name) else {
        info!(token = %job.name, "pubsub push: the token is being rotated right now; asking for redelivery");
        s.metrics.push("busy");
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"token": job.name, "outcome": "busy"}),
        );
    };
    if !s.pushes.may_act(&job.name) {
        s.metrics.push("rate_limited");
        info!(token = %job.name, message_id = %message_id, "pubsub push acknowledged, not acted on: another push for this token came in the last {}s", PUSH_GAP.as_secs());
        s.pushes.remember(&m.message_id);
        return answer(
            StatusCode::OK,
            json!({"token": job.name, "outcome": "rate_limited"}),
        );
    }
    let published = m
        .publish_time
        .as_deref()
        .and_then(|p| DateTime::parse_from_rfc3339(p).ok())
        .map(|t| t.with_timezone(&Utc));
    // A redelivery whose rotation already happened: the stored token was issued after the
    // notification was published (documents keep whole seconds).
    if let (Some(p), Ok(Some(stored))) = (published, job.store.tokens.read_current().await)
        && let Ok(doc) = &stored.document
        && doc.issued_at >= p.trunc_subsecs(0)
    {
        info!(
            token = %job.name,
            message_id = %message_id,
            version = %stored.version,
            "pubsub push acknowledged: already rotated after this notification was published"
        );
        s.metrics.push("already_rotated");
        s.pushes.remember(&m.message_id);
        return answer(
            StatusCode::OK,
            json!({"token": job.name, "outcome": "already_rotated", "version": stored.version}),
        );
    }
    info!(token = %job.name, message_id = %message_id, "SECRET_ROTATE: rotating unless minted within min_interval");
    let result = app
        .rotator
        .pass()
        .rotate_token(
            job,
            RunOptions {
                force: Force::Requested(PUSHED),
                trigger: crate::engine::audit::Trigger::Push,
                ..RunOptions::default()
            },
        )
        .await;
    let status = match &result.outcome {
        Outcome::Failed(f) if f.kind == ErrorKind::Transient => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    if status.is_success() {
        s.pushes.remember(&m.message_id);
    }
    s.metrics.push(result.outcome.as_str());
    let body = json!({
        "token": result.token.name,
        "outcome": result.outcome.as_str(),
        "version": result.version(),
    });
    s.finished(&job.name, result);
    answer(status, body)
}

/// What the push endpoint remembers: the message ids it acted on (bounded), and when it last
/// acted for each token.
#[derive(Default)]
pub(crate) struct PushLog {
    inner: std::sync::Mutex<PushLogInner>,
}

#[derive(Default)]
struct PushLogInner {
    order: std::collections::VecDeque<String>,
    ids: std::collections::HashSet<String>,
    acted: HashMap<String, Instant>,
}

impl PushLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, PushLogInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `id` was acted on (or acknowledged) already.
    fn seen(&self, id: &str) -> bool {
        !id.is_empty() && self.lock().ids.contains(id)
    }

    /// Remember `id` (the oldest is forgotten past [`RECENT_MESSAGES`]).
    fn remember(&self, id: &str) {
        if id.is_empty() {
            return;
        }
        let mut log = self.lock();
        if log.ids.insert(id.to_string()) {
            log.order.push_back(id.to_string());
            while log.order.len() > RECENT_MESSAGES {
                if let Some(old) = log.order.pop_front() {
                    log.ids.remove(&old);
                }
            }
        }
    }

    /// Whether a push may act for `token` now (none in the last [`PUSH_GAP`]); if so, it is
    /// counted as acting.
    fn may_act(&self, token: &str) -> bool {
        let now = Instant::now();
        let mut log = self.lock();
        if log
            .acted
            .get(token)
            .is_some_and(|t| now.duration_since(*t) < PUSH_GAP)
        {
            return false;
        }
        log.acted.insert(token.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PubsubConfig {
        PubsubConfig {
            audience: "https://svc.run.app/pubsub".into(),
            service_account: "push@p.iam.gserviceaccount.com".into(),
            jwks_url: "https://example.com/certs".into(),
            ca_file: None,
        }
    }

    #[test]
    fn claims() {
        let now = Utc::now();
        let t = now.timestamp();
        let good = json!({"iss": "https://accounts.google.com", "aud": "https://svc.run.app/pubsub",
            "email": "push@p.iam.gserviceaccount.com", "email_verified": true, "exp": t + 600, "iat": t - 5});
        assert!(check_claims(&good, &cfg(), now).is_ok());
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            check_claims(&c, &cfg(), now).map_err(|r| r.status.as_u16())
        };
        assert_eq!(with("iss", json!("accounts.google.com")), Ok(()));
        assert_eq!(with("iss", json!("https://evil.example")), Err(401));
        assert_eq!(with("aud", json!("https://other")), Err(401));
        assert_eq!(
            with("aud", json!(["x", "https://svc.run.app/pubsub"])),
            Ok(())
        );
        assert_eq!(with("exp", json!(t - 60)), Err(401));
        assert_eq!(with("exp", json!(t - 10)), Ok(()), "within the skew");
        assert_eq!(with("iat", json!(t + 600)), Err(401));
        assert_eq!(with("nbf", json!(t + 600)), Err(401));
        assert_eq!(
            with("email", json!("other@p.iam.gserviceaccount.com")),
            Err(403)
        );
        assert_eq!(with("email_verified", json!(false)), Err(403));
        assert_eq!(with("email_verified", json!("true")), Ok(()));
    }

    #[test]
    fn cache_control_and_integers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(max_age(&h), DEFAULT_MAX_AGE);
        h.insert(
            reqwest::header::CACHE_CONTROL,
            reqwest::header::HeaderValue::from_static(
                "public, max-age=19745, must-revalidate, no-transform",
            ),
        );
        assert_eq!(max_age(&h), Duration::from_secs(19745));
        assert_eq!(unsigned(vec![0, 0, 1, 2]), vec![1, 2]);
    }
}
