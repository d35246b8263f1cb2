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

use tokio_util::sync::CancellationToken;

use crate::core::clock::{Clock, SystemClock};
use crate::core::credentials::Credentials;
use crate::core::document::{
    EXPIRY_SLACK, TOKEN_LIFETIME, TokenDocument, check_access_token, check_token_type, format_time,
    parse_time,
};
use crate::core::error::ErrorKind;
use crate::core::observe::{AuthorizeClass, Observer, Unobserved};
use crate::support::http::{error_chain, parse_retry_after};
use crate::support::net::IpFamily;
use crate::support::redact;
use crate::support::text::{escape_control, shown, truncate};
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
    /// The process is shutting down: no further attempt was made (none was in flight).
    #[error("shutting down: stopped after {attempts} failed attempt(s); nothing minted")]
    Stopped {
        /// Attempts made (all failed).
        attempts: u32,
    },
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
            MintError::Exhausted { .. } | MintError::Stopped { .. } => ErrorKind::Transient,
            MintError::Tls { .. } | MintError::Unexpected(_) => ErrorKind::Permanent,
            MintError::Config(_) | MintError::Setup(_) => ErrorKind::Config,
        }
    }
}

/// A minted token, and what was wrong with the answer but could be repaired (an expiry beyond
/// the token lifetime, clamped), for the report.
pub struct Minted {
    /// The token document to store.
    pub doc: TokenDocument,
    /// Repairs made to the answer, one line each; never content of the token.
    pub warnings: Vec<String>,
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
    clock: Arc<dyn Clock>,
}

impl DeepvueClient {
    /// Build from config: loads the trust store (OS roots + `ca_file`).
    pub fn new(cfg: &DeepvueConfig) -> Result<Self, MintError> {
        if cfg.base_url.scheme() != "https" {
            return Err(MintError::Config(format!(
                "base_url `{}` is not https",
                shown(&cfg.base_url)
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
            clock: Arc::new(SystemClock),
        })
    }

    /// Read the time a token was issued (its `issued_at`, and the base of a relative expiry)
    /// from `clock`.
    pub fn on_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
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

    /// Mint a token: retries transient failures, validates the answer. When `stop` is
    /// cancelled no further attempt starts (the one in flight finishes: a token Deepvue issued
    /// is never dropped).
    pub async fn authorize(
        &self,
        creds: &Credentials,
        stop: Option<&CancellationToken>,
    ) -> Result<Minted, MintError> {
        let deadline = instant_after(self.retry.deadline);
        let max = self.retry.max_attempts;
        let mut attempt = 0;
        loop {
            if stop.is_some_and(CancellationToken::is_cancelled) {
                return Err(MintError::Stopped { attempts: attempt });
            }
            attempt += 1;
            let started = Instant::now();
            let remaining = deadline.saturating_duration_since(started);
            let per_try = self.request_timeout.min(remaining);
            let result = match tokio::time::timeout(per_try, self.attempt(creds)).await {
                Ok(r) => r,
                Err(_) => Err(Attempt::Retry {
                    why: format!("no answer within {}", humantime::format_duration(per_try)),
                    retry_after: None,
                    rate_limited: false,
                }),
            };
            self.observer.authorize(
                match &result {
                    Ok(_) => AuthorizeClass::Ok,
                    Err(a) => a.class(),
                },
                started.elapsed(),
            );
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
            match stop {
                Some(stop) => tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return Err(MintError::Stopped { attempts: attempt }),
                },
                None => tokio::time::sleep(wait).await,
            }
        }
    }

    async fn attempt(&self, creds: &Credentials) -> Result<Minted, Attempt> {
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
        let sent_at = chrono::SubsecRound::trunc_subsecs(self.clock.now(), 0);
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
        // A redirect target is shown like every URL (no user info, query or fragment), and
        // redacted like every text the peer chose.
        let location = resp.headers().get(header::LOCATION).map(|v| {
            match self
                .authorize_url
                .join(&String::from_utf8_lossy(v.as_bytes()))
            {
                Ok(u) => truncate(&escape_control(&redact_creds(&shown(&u), creds)), 200),
                Err(_) => "(an unparseable Location)".to_string(),
            }
        });
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
        // Redacted before it is cut (a secret straddling the cut cannot leak a prefix), and
        // escaped to one line (no forged lines, no terminal controls).
        let detail = || {
            truncate(
                &escape_control(&redact_creds(&detail_of(&body, &content_type), creds)),
                300,
            )
        };
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

/// Both credentials, in every form they take on the wire ([`redact::redact`]).
fn redact_creds(text: &str, creds: &Credentials) -> String {
    redact::redact(
        text,
        &[
            creds.client_secret.expose_secret(),
            creds.client_id.expose_secret(),
        ],
    )
}

/// `now + d`, or as far ahead as the clock can say (never a panic on overflow).
fn instant_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

#[derive(Deserialize)]
struct AuthorizeResponse {
    access_token: Option<SecretString>,
    token_type: Option<String>,
    expiry: Option<serde_json::Value>,
}

/// Parse and validate a 2xx answer. Errors describe the problem, never the content.
///
/// The token must be visible ASCII ([`check_access_token`]), `token_type` short and alphabetic
/// ([`check_token_type`]); an expiry beyond `issued_at` + the token lifetime (plus
/// [`EXPIRY_SLACK`]) is clamped to it, with a warning.
fn parse_token(body: &[u8], issued_at: DateTime<Utc>) -> Result<Minted, String> {
    let raw: AuthorizeResponse = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not a JSON token object ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let access_token = raw.access_token.ok_or("no access_token")?;
    check_access_token(access_token.expose_secret())?;
    let token_type = match raw.token_type.filter(|t| !t.is_empty()) {
        Some(t) => {
            check_token_type(&t)?;
            t
        }
        None => "bearer".into(),
    };
    let lifetime = chrono::Duration::from_std(TOKEN_LIFETIME).unwrap_or_default();
    let fallback = issued_at + lifetime;
    let mut warnings = Vec::new();
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
    let latest = fallback + chrono::Duration::from_std(EXPIRY_SLACK).unwrap_or_default();
    let expiry = if expiry > latest {
        let w = format!(
            "Deepvue said the token expires at {}, beyond its 24h lifetime; clamped to {}",
            format_time(expiry),
            format_time(fallback)
        );
        warn!(expiry = %format_time(expiry), clamped = %format_time(fallback), "expiry beyond the token lifetime; clamped");
        warnings.push(w);
        fallback
    } else {
        expiry
    };
    if expiry <= issued_at + chrono::Duration::minutes(1) {
        return Err(format!(
            "expiry {} is already past (or within a minute)",
            format_time(expiry)
        ));
    }
    Ok(Minted {
        doc: TokenDocument {
            access_token,
            token_type,
            expiry,
            issued_at,
            x_api_key: None,
        },
        warnings,
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
        let now = chrono::SubsecRound::trunc_subsecs(now, 0);
        let in_12h = format_time(now + chrono::Duration::hours(12));
        let ok = parse_token(
            format!(r#"{{"access_token":"abc","token_type":"Bearer","expiry":"{in_12h}"}}"#)
                .as_bytes(),
            now,
        );
        assert_eq!(
            ok.map(|m| (
                format_time(m.doc.expiry),
                m.doc.token_type,
                m.warnings.len()
            ))
            .ok(),
            Some((in_12h, "Bearer".to_string(), 0))
        );
        // Beyond the lifetime: clamped, and said so.
        let far = parse_token(
            br#"{"access_token":"abc","expiry":"2999-01-01T05:30:00+05:30"}"#,
            now,
        );
        let far = far
            .map(|m| ((m.doc.expiry - now).num_hours(), m.warnings))
            .ok();
        assert_eq!(far.as_ref().map(|f| f.0), Some(24));
        assert!(
            far.as_ref()
                .is_some_and(|f| f.1.len() == 1 && f.1[0].contains("2999-01-01T00:00:00Z")),
            "{far:?}"
        );
        let fallback = parse_token(br#"{"access_token":"abc","expiry":"garbage"}"#, now);
        assert_eq!(
            fallback.map(|m| (m.doc.expiry - now).num_hours()).ok(),
            Some(24)
        );
        let missing = parse_token(br#"{"access_token":"abc"}"#, now);
        assert_eq!(
            missing.map(|m| m.doc.token_type).ok().as_deref(),
            Some("bearer")
        );
        let long_type = format!(
            r#"{{"access_token":"abc","token_type":"{}"}}"#,
            "b".repeat(33)
        );
        for bad in [
            &br#"<html>oops</html>"#[..],
            br#"{"token_type":"bearer"}"#,
            br#"{"access_token":""}"#,
            br#"{"access_token":"a b"}"#,
            br#"{"access_token":"t\u00f6k"}"#,
            br#"{"access_token":"tok\u0007"}"#,
            br#"{"access_token":"abc","token_type":"bearer\r\nX: y"}"#,
            br#"{"access_token":"abc","token_type":"bearer2"}"#,
            long_type.as_bytes(),
            br#"{"access_token":"abc","expiry":"2000-01-01T00:00:00Z"}"#,
        ] {
            assert!(
                parse_token(bad, now).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
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
            &redact_creds(&detail_of(body.as_bytes(), "application/json"), &creds),
            300,
        );
        assert!(!d.contains("supersecre"), "{d}");
        let weird = SecretString::from("se\"cr\\et-ABC");
        let creds = Credentials {
            client_id: SecretString::from("id-1"),
            client_secret: weird,
        };
        let d = redact_creds(
            &detail_of(
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

    mod no_panic {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                "\\PC{0,40}".prop_map(serde_json::Value::from),
                "[0-9+:TZ. -]{0,32}".prop_map(serde_json::Value::from),
                (0i32..=99999, 1u32..=12, 1u32..=31).prop_map(|(y, m, d)| {
                    serde_json::Value::from(format!("{y:04}-{m:02}-{d:02}T23:59:59Z"))
                }),
            ]
        }

        proptest! {
            #[test]
            fn no_authorize_answer_body_panics(body in prop::collection::vec(any::<u8>(), 0..600)) {
                let _ = parse_token(&body, Utc::now());
                let _ = detail_of(&body, "application/json");
            }

            #[test]
            fn no_authorize_answer_fields_panic(
                token in json_value(),
                token_type in json_value(),
                expiry in json_value(),
                detail in json_value(),
            ) {
                let body = serde_json::json!({
                    "access_token": token, "token_type": token_type, "expiry": expiry,
                    "detail": detail,
                })
                .to_string();
                if let Ok(m) = parse_token(body.as_bytes(), Utc::now()) {
                    // Whatever was accepted is storable and bounded.
                    prop_assert!(check_access_token(m.doc.access_token.expose_secret()).is_ok());
                    prop_assert!(m.doc.expiry <= m.doc.issued_at + chrono::Duration::hours(24) + chrono::Duration::minutes(5));
                }
                let _ = detail_of(body.as_bytes(), "application/json");
            }

            #[test]
            fn redaction_never_panics_and_removes_the_secret(
                text in "\\PC{0,80}",
                secret in "[A-Za-z0-9+/= %]{4,24}",
            ) {
                let creds = Credentials {
                    client_id: SecretString::from("client-id-1"),
                    client_secret: SecretString::from(secret.clone()),
                };
                let out = redact_creds(&format!("{text}{secret}{text}"), &creds);
                prop_assert!(!out.contains(&secret) || redact::MARK.contains(&secret));
            }
        }
    }
}
