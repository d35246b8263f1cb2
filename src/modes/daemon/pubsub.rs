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
//! secret (matched by secret id; `secretId` carries the project *number*) rotates, **forced**
//! (the rotation schedule is the operator's request) through the daemon's own `Rotator`, and
//! the report goes to the scheduler like any other run. A redelivery whose rotation already
//! happened (the stored document was issued after the message's `publishTime`) is
//! acknowledged without minting. Everything else (other events, unknown secrets, malformed
//! messages) is acknowledged with 204 and a log line.
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
    keys: HashMap<String, (Vec<u8>, Vec<u8>)>,
    fresh_until: Option<Instant>,
    fetched_at: Option<Instant>,
}

/// The OIDC verifier of `[daemon.pubsub]`: one per configuration, its key cache shared by
/// every request.
pub struct Verifier {
    cfg: PubsubConfig,
    http: tokio::sync::OnceCell<reqwest::Client>,
    keys: tokio::sync::Mutex<Keys>,
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
            keys: tokio::sync::Mutex::new(Keys::default()),
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

    async fn fetch(&self, keys: &mut Keys) -> Result<(), Refused> {
        let unavailable = |why: String| Refused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            why,
        };
        let shown = crate::support::text::shown_url(&self.cfg.jwks_url);
        keys.fetched_at = Some(Instant::now());
        let resp = self
            .client()
            .await?
            .get(&self.cfg.jwks_url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(format!("cannot fetch the signing keys from {shown}: {e}")))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "{shown} answered HTTP {} for the signing keys",
                resp.status().as_u16()
            )));
        }
        let age = max_age(resp.headers());
        let body = resp
            .bytes()
            .await
            .map_err(|e| unavailable(format!("reading the signing keys from {shown}: {e}")))?;
        let jwks: Jwks = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("{shown} is not a JWKS: {e}")))?;
        keys.keys = jwks
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
        keys.fresh_until = Some(Instant::now() + age);
        Ok(())
    }

    /// The public key for `kid`: from the cache while fresh, else fetched (one fetch at a
    /// time; an unknown `kid` refetches at most every [`REFETCH_EVERY`]).
    async fn key(&self, kid: &str) -> Result<(Vec<u8>, Vec<u8>), Refused> {
        let mut keys = self.keys.lock().await;
        let stale = keys.fresh_until.is_none_or(|t| Instant::now() >= t);
        if stale {
            self.fetch(&mut keys).await?;
        }
        if let Some(k) = keys.keys.get(kid) {
            return Ok(k.clone());
        }
        let may_refetch = keys.fetched_at.is_none_or(|t| t.elapsed() >= REFETCH_EVERY);
        if !stale && may_refetch {
            self.fetch(&mut keys).await?;
            if let Some(k) = keys.keys.get(kid) {
                return Ok(k.clone());
            }
        }
        Err(unauthorized(format!(
            "the token's signing key `{}` is not among Google's keys",
            crate::support::text::truncate(kid, 64)
        )))
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
                crate::support::text::truncate(header.alg.as_deref().unwrap_or("none"), 16)
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
        warn!("pubsub push refused: no bearer token");
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "a Google-signed OIDC bearer token is required"}),
        );
    };
    if let Err(r) = verifier.verify(token.trim()).await {
        warn!(status = r.status.as_u16(), why = %r.why, "pubsub push refused");
        return answer(r.status, json!({"error": r.why}));
    }
    let push: Push = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "pubsub push is not a push message; acknowledged, nothing done");
            return StatusCode::NO_CONTENT.into_response();
        }
    };
    let m = push.message;
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
    if event != Some("SECRET_ROTATE") {
        info!(
            message_id = %m.message_id,
            event = event.unwrap_or("(none)"),
            secret = %secret,
            "pubsub push acknowledged: only SECRET_ROTATE rotates"
        );
        return StatusCode::NO_CONTENT.into_response();
    }
    let app = s.app();
    let Some(job) = app.jobs.iter().find(|j| j.store.tokens.is_named(&secret)) else {
        info!(message_id = %m.message_id, secret = %secret, "pubsub push acknowledged: no configured token stores that secret");
        return StatusCode::NO_CONTENT.into_response();
    };
    let published = m
        .publish_time
        .as_deref()
        .and_then(|p| DateTime::parse_from_rfc3339(p).ok())
        .map(|t| t.with_timezone(&Utc));
    let Some(_claim) = s.claim(&job.name) else {
        info!(token = %job.name, "pubsub push: the token is being rotated right now; asking for redelivery");
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"token": job.name, "outcome": "busy"}),
        );
    };
    // A redelivery whose rotation already happened: the stored token was issued after the
    // notification was published (documents keep whole seconds).
    if let (Some(p), Ok(Some(stored))) = (published, job.store.tokens.read_current().await)
        && let Ok(doc) = &stored.document
        && doc.issued_at >= p.trunc_subsecs(0)
    {
        info!(
            token = %job.name,
            message_id = %m.message_id,
            version = %stored.version,
            "pubsub push acknowledged: already rotated after this notification was published"
        );
        return answer(
            StatusCode::OK,
            json!({"token": job.name, "outcome": "already_rotated", "version": stored.version}),
        );
    }
    info!(token = %job.name, message_id = %m.message_id, "SECRET_ROTATE: rotating");
    let result = app
        .rotator
        .pass()
        .rotate_token(
            job,
            RunOptions {
                force: true,
                ..RunOptions::default()
            },
        )
        .await;
    let status = match &result.outcome {
        Outcome::Failed(f) if f.kind == ErrorKind::Transient => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let body = json!({
        "token": result.token.name,
        "outcome": result.outcome.as_str(),
        "version": result.version(),
    });
    s.finished(&job.name, result);
    answer(status, body)
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
