//! The Deepvue authorize client.
//!
//! `POST {base_url}/v1/authorize` with `client_id` / `client_secret` as a form; HTTPS only,
//! TLS ≥ 1.2, verified certificates, no redirects, bounded response size. Answers are classified
//! (credentials rejected / forbidden / transient / permanent) and transient ones retried with
//! full-jitter exponential backoff, honouring `Retry-After`, within an overall deadline.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url, header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, warn};

use std::sync::Arc;

use crate::core::credentials::Credentials;
use crate::core::document::{TOKEN_LIFETIME, TokenDocument, format_time, parse_time};
use crate::core::error::ErrorKind;
use crate::core::observe::{AuthorizeClass, Observer, Unobserved};
use crate::support::http::{error_chain, parse_retry_after};
use crate::support::net::IpFamily;
use crate::support::text::truncate;
use crate::support::tls::{HttpsSettings, https_client};

/// Deepvue's only documented host.
pub const DEFAULT_BASE_URL: &str = "https://production.deepvue.tech";

/// How the authorize form is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestEncoding {
    /// `multipart/form-data`, as Deepvue's current docs show (the default).
    #[default]
    Multipart,
    /// `application/x-www-form-urlencoded`, as an older Deepvue page shows.
    Urlencoded,
}

/// Retry policy for the authorize call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (default 4).
    pub max_attempts: u32,
    /// Overall deadline across all attempts and waits (default 120 s).
    pub deadline: Duration,
    /// First backoff ceiling; doubles per attempt (default 1 s).
    pub backoff_base: Duration,
    /// Largest backoff ceiling (default 30 s).
    pub backoff_max: Duration,
}

/// `[deepvue]`: the authorize client's settings.
#[derive(Clone, Debug)]
pub struct DeepvueConfig {
    /// `https://` base URL; `/v1/authorize` is appended.
    pub base_url: Url,
    /// Extra trust anchor (PEM), on top of the OS roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Form encoding of the authorize call.
    pub request_encoding: RequestEncoding,
    /// TCP + TLS connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Per-attempt total timeout (default 30 s).
    pub request_timeout: Duration,
    /// Address family for Deepvue calls and egress probes.
    pub ip_family: IpFamily,
    /// Retries.
    pub retry: RetryPolicy,
}

/// Largest authorize answer read; anything longer is malformed and never stored.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
pub use crate::support::http::USER_AGENT;

/// Why minting failed. Never contains a credential or a token.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// 400/401/422: the credentials are wrong, revoked or inactive.
    #[error("Deepvue rejected the credentials (HTTP {status}): {detail}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Deepvue's `detail`.
        detail: String,
    },
    /// 403: typically the egress IP is not whitelisted.
    #[error("Deepvue answered 403 Forbidden: {detail}")]
    Forbidden {
        /// Deepvue's `detail`.
        detail: String,
    },
    /// Transient failures until attempts or the deadline ran out.
    #[error("Deepvue authorize failed after {attempts} attempt(s): {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// TLS failed (untrusted or invalid certificate, protocol too old). Not retried.
    #[error("TLS with {host} failed: {message}")]
    Tls {
        /// Deepvue's host.
        host: String,
        /// rustls' description.
        message: String,
    },
    /// An answer that retrying will not change (redirect, 404, …).
    #[error("unexpected answer from Deepvue: {0}")]
    Unexpected(String),
    /// The client could not be built from the configuration.
    #[error("Deepvue client configuration: {0}")]
    Config(String),
    /// The TLS client could not be set up (trust store, CA file).
    #[error("Deepvue client configuration: {0}")]
    Setup(#[from] crate::support::tls::TlsError),
}

impl MintError {
    /// Deepvue's own `detail`, when it answered 400/401/403/422.
    pub fn deepvue_detail(&self) -> Option<&str> {
        match self {
            MintError::Rejected { detail, .. } | MintError::Forbidden { detail } => Some(detail),
            _ => None,
        }
    }

    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MintError::Rejected { .. } => ErrorKind::CredentialsRejected,
            MintError::Forbidden { .. } => ErrorKind::Forbidden,
            MintError::Exhausted { .. } => ErrorKind::Transient,
            MintError::Tls { .. } | MintError::Unexpected(_) => ErrorKind::Permanent,
            MintError::Config(_) | MintError::Setup(_) => ErrorKind::Config,
        }
    }
}

/// One attempt's failure, before the retry loop decides.
enum Attempt {
    Fatal(MintError),
    Retry {
        why: String,
        retry_after: Option<Duration>,
        rate_limited: bool,
    },
}

impl Attempt {
    /// The class this attempt counts as: "transient" covers every other failed attempt (5xx,
    /// timeouts, malformed answers, TLS and unexpected answers).
    fn class(&self) -> AuthorizeClass {
        match self {
            Attempt::Fatal(MintError::Forbidden { .. }) => AuthorizeClass::Forbidden,
            Attempt::Fatal(MintError::Rejected { .. }) => AuthorizeClass::CredentialsRejected,
            Attempt::Retry {
                rate_limited: true, ..
            } => AuthorizeClass::RateLimited,
            _ => AuthorizeClass::Transient,
        }
    }
}

/// The authorize client. Cheap to share; build once per process.
pub struct DeepvueClient {
    http: reqwest::Client,
    authorize_url: Url,
    base_url: Url,
    host: String,
    encoding: RequestEncoding,
    request_timeout: Duration,
    retry: RetryPolicy,
    observer: Arc<dyn Observer>,
}

impl DeepvueClient {
    /// Build from config: loads the trust store (OS roots + `ca_file`).
    pub fn new(cfg: &DeepvueConfig) -> Result<Self, MintError> {
        if cfg.base_url.scheme() != "https" {
            return Err(MintError::Config(format!(
                "base_url `{}` is not https",
                cfg.base_url
            )));
        }
        let http = https_client(&HttpsSettings {
            extra_ca: cfg.ca_file.as_deref(),
            connect_timeout: cfg.connect_timeout,
            family: cfg.ip_family,
            user_agent: USER_AGENT,
        })?;
        let authorize_url = authorize_url(&cfg.base_url)?;
        Ok(DeepvueClient {
            http,
            host: cfg.base_url.host_str().unwrap_or_default().to_string(),
            base_url: cfg.base_url.clone(),
            authorize_url,
            encoding: cfg.request_encoding,
            request_timeout: cfg.request_timeout,
            retry: cfg.retry,
            observer: Arc::new(Unobserved),
        })
    }

    /// Report every authorize attempt to `observer`.
    pub fn observed_by(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// The HTTP client (shared with the egress probes: same trust, proxy and address family).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Deepvue's host, for messages.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Mint a token: retries transient failures, validates the answer.
    pub async fn authorize(&self, creds: &Credentials) -> Result<TokenDocument, MintError> {
        let deadline = Instant::now() + self.retry.deadline;
        let max = self.retry.max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let per_try = self.request_timeout.min(remaining);
            let result = match tokio::time::timeout(per_try, self.attempt(creds)).await {
                Ok(r) => r,
                Err(_) => Err(Attempt::Retry {
                    why: format!("no answer within {}", humantime::format_duration(per_try)),
                    retry_after: None,
                    rate_limited: false,
                }),
            };
            self.observer.authorize(match &result {
                Ok(_) => AuthorizeClass::Ok,
                Err(a) => a.class(),
            });
            let (why, retry_after) = match result {
                Ok(doc) => return Ok(doc),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry {
                    why, retry_after, ..
                }) => (why, retry_after),
            };
            if attempt >= max {
                return Err(MintError::Exhausted {
                    attempts: attempt,
                    last: why,
                });
            }
            // A hostile or broken Retry-After can be huge: never let it overflow the clock.
            let wait = retry_after
                .unwrap_or_else(|| full_jitter(&self.retry, attempt))
                .min(self.retry.deadline);
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|at| at >= deadline)
            {
                return Err(MintError::Exhausted {
                    attempts: attempt,
                    last: format!(
                        "{why} (next try in {} would pass the {} retry deadline)",
                        humantime::format_duration(round_ms(wait)),
                        humantime::format_duration(self.retry.deadline)
                    ),
                });
            }
            warn!(
                attempt,
                max_attempts = max,
                wait_ms = wait.as_millis() as u64,
                error = %why,
                "authorize failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, creds: &Credentials) -> Result<TokenDocument, Attempt> {
        let req = self.http.post(self.authorize_url.clone());
        // The only place credentials leave the process.
        let req = match self.encoding {
            RequestEncoding::Multipart => req.multipart(
                reqwest::multipart::Form::new()
                    .text("client_id", creds.client_id.expose_secret().to_string())
                    .text(
                        "client_secret",
                        creds.client_secret.expose_secret().to_string(),
                    ),
            ),
            RequestEncoding::Urlencoded => req.form(&[
                ("client_id", creds.client_id.expose_secret()),
                ("client_secret", creds.client_secret.expose_secret()),
            ]),
        };
        let sent_at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
        let resp = req
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.classify_send_error(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| truncate(l, 200));
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content-type")
            .to_string();
        debug!(status = status.as_u16(), "authorize answered");
        // An unreadable or oversized body never changes how an error status is classified;
        // for a 2xx it makes the answer malformed.
        let body = match read_capped(resp).await {
            Ok(b) => b,
            Err(why) if status.is_success() => {
                return Err(Attempt::Retry {
                    why,
                    retry_after: None,
                    rate_limited: false,
                });
            }
            Err(_) => secrecy::zeroize::Zeroizing::new(Vec::new()),
        };
        let detail = || truncate(&redact(detail_of(&body, &content_type), creds), 300);
        match status.as_u16() {
            200..=299 => parse_token(&body, sent_at).map_err(|why| Attempt::Retry {
                why: format!("malformed answer: {why}"),
                retry_after: None,
                rate_limited: false,
            }),
            400 | 401 | 422 => Err(Attempt::Fatal(MintError::Rejected {
                status: status.as_u16(),
                detail: detail(),
            })),
            403 => Err(Attempt::Fatal(MintError::Forbidden { detail: detail() })),
            429 => Err(Attempt::Retry {
                why: format!("HTTP 429 rate limited: {}", detail()),
                retry_after,
                rate_limited: true,
            }),
            500..=599 => Err(Attempt::Retry {
                why: format!("HTTP {}: {}", status.as_u16(), detail()),
                retry_after,
                rate_limited: false,
            }),
            300..=399 => Err(Attempt::Fatal(MintError::Unexpected(format!(
                "HTTP {} redirect to {}; credentials are never re-sent to another URL, so \
                 point deepvue.base_url at the final address",
                status.as_u16(),
                location.as_deref().unwrap_or("(no Location)")
            )))),
            _ => Err(Attempt::Fatal(MintError::Unexpected(format!(
                "HTTP {}: {}",
                status.as_u16(),
                detail()
            )))),
        }
    }

    fn classify_send_error(&self, e: &reqwest::Error) -> Attempt {
        if let Some(message) = crate::support::tls::tls_failure(e) {
            return Attempt::Fatal(MintError::Tls {
                host: self.host.clone(),
                message,
            });
        }
        if e.is_builder() {
            return Attempt::Fatal(MintError::Config(error_chain(e)));
        }
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        Attempt::Retry {
            why: format!("{what}: {}", error_chain(e)),
            retry_after: None,
            rate_limited: false,
        }
    }

    /// Complete a TLS handshake with Deepvue's host without minting (for `check`): any HTTP
    /// answer to `GET base_url` proves DNS, TCP, trust and TLS version.
    pub async fn handshake(&self) -> Result<StatusCode, MintError> {
        let fut = self.http.get(self.base_url.clone()).send();
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.status()),
            Ok(Err(e)) => Err(match self.classify_send_error(&e) {
                Attempt::Fatal(e) => e,
                Attempt::Retry { why, .. } => MintError::Exhausted {
                    attempts: 1,
                    last: why,
                },
            }),
            Err(_) => Err(MintError::Exhausted {
                attempts: 1,
                last: "timed out".into(),
            }),
        }
    }
}

fn authorize_url(base: &Url) -> Result<Url, MintError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join("v1/authorize")
        .map_err(|e| MintError::Config(format!("cannot build the authorize URL: {e}")))
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Full jitter: uniform in `[0, min(max, base·2^(attempt-1))]`.
pub fn full_jitter(p: &RetryPolicy, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(p, attempt);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(rand::random_range(0..=ms))
}

/// The backoff ceiling for an attempt (1-based): `min(max, base·2^(attempt-1))`.
pub fn backoff_ceiling(p: &RetryPolicy, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
    p.backoff_base.saturating_mul(factor).min(p.backoff_max)
}

async fn read_capped(
    mut resp: reqwest::Response,
) -> Result<secrecy::zeroize::Zeroizing<Vec<u8>>, String> {
    let mut body = secrecy::zeroize::Zeroizing::new(Vec::new());
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the answer failed: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "malformed answer: body exceeds {} KiB",
                MAX_RESPONSE_BYTES / 1024
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Extract Deepvue's `detail` (a string, or FastAPI's array of `{loc,msg}`), never the raw body.
fn detail_of(body: &[u8], content_type: &str) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        detail: serde_json::Value,
    }
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            detail: serde_json::Value::String(s),
        }) => s,
        Ok(ErrorBody {
            detail: serde_json::Value::Array(items),
        }) => items
            .iter()
            .map(|i| {
                let msg = i.get("msg").and_then(|m| m.as_str()).unwrap_or("invalid");
                match i.get("loc").and_then(|l| l.as_array()) {
                    Some(loc) => {
                        let loc: Vec<String> = loc
                            .iter()
                            .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                            .collect();
                        format!("{}: {msg}", loc.join("."))
                    }
                    None => msg.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        Ok(ErrorBody { detail }) => detail.to_string(),
        Err(_) if body.is_empty() => "(empty body)".into(),
        Err(_) => format!("(no JSON detail; {} bytes of {content_type})", body.len()),
    };
    // Bounded before redaction only loosely (64 KiB body cap); truncated by the caller after
    // redaction, so a secret straddling the cut cannot leak a prefix.
    text
}

fn redact(mut detail: String, creds: &Credentials) -> String {
    for s in [&creds.client_secret, &creds.client_id] {
        let raw = s.expose_secret();
        if raw.len() < 4 {
            continue;
        }
        // Also the JSON-escaped form, for details that were re-serialised.
        let escaped = serde_json::to_string(raw).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        detail = detail
            .replace(raw, "[REDACTED]")
            .replace(escaped, "[REDACTED]");
    }
    detail
}

#[derive(Deserialize)]
struct AuthorizeResponse {
    access_token: Option<SecretString>,
    token_type: Option<String>,
    expiry: Option<serde_json::Value>,
}

/// Parse and validate a 2xx answer. Errors describe the problem, never the content.
fn parse_token(body: &[u8], issued_at: DateTime<Utc>) -> Result<TokenDocument, String> {
    let raw: AuthorizeResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a JSON token object ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let access_token = raw.access_token.ok_or("no access_token")?;
    let t = access_token.expose_secret();
    if t.trim().is_empty() {
        return Err("empty access_token".into());
    }
    if t.len() > 16 * 1024 || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("access_token is not a usable header value".into());
    }
    let fallback = issued_at + chrono::Duration::from_std(TOKEN_LIFETIME).unwrap_or_default();
    let expiry = match raw.expiry {
        Some(serde_json::Value::String(s)) => match parse_time(&s) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, fallback = %format_time(fallback), "unparseable expiry; assuming issue time + 24h");
                fallback
            }
        },
        None | Some(serde_json::Value::Null) => {
            warn!(fallback = %format_time(fallback), "answer has no expiry; assuming issue time + 24h");
            fallback
        }
        Some(_) => {
            warn!(fallback = %format_time(fallback), "expiry is not a string; assuming issue time + 24h");
            fallback
        }
    };
    if expiry <= issued_at + chrono::Duration::minutes(1) {
        return Err(format!(
            "expiry {} is already past (or within a minute)",
            format_time(expiry)
        ));
    }
    Ok(TokenDocument {
        access_token,
        token_type: raw
            .token_type
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "bearer".into()),
        expiry,
        issued_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            deadline: Duration::from_secs(120),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_and_caps_and_jitters_within() {
        let p = policy();
        let ceilings: Vec<u64> = (1..=7).map(|a| backoff_ceiling(&p, a).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff_ceiling(&p, 1000), Duration::from_secs(30));
        for a in 1..=6 {
            for _ in 0..50 {
                assert!(full_jitter(&p, a) <= backoff_ceiling(&p, a));
            }
        }
    }

    #[test]
    fn token_answers_are_validated() {
        let now = Utc::now();
        let ok = parse_token(
            br#"{"access_token":"abc","token_type":"bearer","expiry":"2999-01-01T05:30:00+05:30"}"#,
            now,
        );
        assert_eq!(
            ok.map(|d| format_time(d.expiry)).ok().as_deref(),
            Some("2999-01-01T00:00:00Z")
        );
        let fallback = parse_token(br#"{"access_token":"abc","expiry":"garbage"}"#, now);
        assert_eq!(
            fallback.map(|d| (d.expiry - now).num_hours()).ok(),
            Some(24)
        );
        let missing = parse_token(br#"{"access_token":"abc"}"#, now);
        assert_eq!(
            missing.map(|d| d.token_type).ok().as_deref(),
            Some("bearer")
        );
        for bad in [
            &br#"<html>oops</html>"#[..],
            br#"{"token_type":"bearer"}"#,
            br#"{"access_token":""}"#,
            br#"{"access_token":"a b"}"#,
            br#"{"access_token":"abc","expiry":"2000-01-01T00:00:00Z"}"#,
        ] {
            assert!(parse_token(bad, now).is_err());
        }
    }

    #[test]
    fn detail_is_string_or_array_never_raw_body() {
        assert_eq!(
            detail_of(br#"{"detail":"Inactive client_id"}"#, "application/json"),
            "Inactive client_id"
        );
        assert_eq!(
            detail_of(br#"{"detail":[{"loc":["body","client_secret"],"msg":"field required","input":"SENTINEL"}]}"#, "application/json"),
            "body.client_secret: field required"
        );
        let raw = detail_of(b"<html>SENTINEL</html>", "text/html");
        assert!(
            !raw.contains("SENTINEL") && raw.contains("text/html"),
            "{raw}"
        );
    }

    #[test]
    fn redaction_happens_before_truncation() {
        let creds = Credentials {
            client_id: SecretString::from("client-id-1"),
            client_secret: SecretString::from("supersecret-VALUE-123"),
        };
        let body = format!(r#"{{"detail":"{}supersecret-VALUE-123"}}"#, "x".repeat(290));
        let d = truncate(
            &redact(detail_of(body.as_bytes(), "application/json"), &creds),
            300,
        );
        assert!(!d.contains("supersecre"), "{d}");
        let weird = SecretString::from("se\"cr\\et-ABC");
        let creds = Credentials {
            client_id: SecretString::from("id-1"),
            client_secret: weird,
        };
        let d = redact(
            detail_of(
                br#"{"detail":{"echo":"se\"cr\\et-ABC"}}"#,
                "application/json",
            ),
            &creds,
        );
        assert!(!d.contains("cr\\\\et"), "{d}");
    }

    #[test]
    fn authorize_url_keeps_base_path() {
        let u = |s: &str| {
            Url::parse(s).map_err(|e| e.to_string()).and_then(|u| {
                authorize_url(&u)
                    .map(|u| u.to_string())
                    .map_err(|e| e.to_string())
            })
        };
        assert_eq!(
            u("https://production.deepvue.tech").as_deref(),
            Ok("https://production.deepvue.tech/v1/authorize")
        );
        assert_eq!(
            u("https://gw.example/deepvue").as_deref(),
            Ok("https://gw.example/deepvue/v1/authorize")
        );
        assert_eq!(
            u("https://gw.example/deepvue/").as_deref(),
            Ok("https://gw.example/deepvue/v1/authorize")
        );
    }
}
