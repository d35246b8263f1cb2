//! HTTP sinks: generic webhook (Standard Webhooks signatures), Slack, PagerDuty Events v2.
//! HTTPS only; retries on 408/429/5xx and connection errors; URLs never appear in errors
//! (a Slack webhook URL is itself a secret).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::OnceCell;

use super::{Action, Alert, Severity, Sink};
use crate::config::{IpFamily, SinkConfig, UrlValue};

const ATTEMPTS: u32 = 3;

/// One HTTP client for all HTTP sinks, built on first use.
#[derive(Clone)]
pub(super) struct Shared {
    inner: Arc<(
        Option<PathBuf>,
        Duration,
        IpFamily,
        OnceCell<reqwest::Client>,
    )>,
}

impl Shared {
    pub(super) fn new(ca: Option<PathBuf>, connect_timeout: Duration, family: IpFamily) -> Self {
        Shared {
            inner: Arc::new((ca, connect_timeout, family, OnceCell::new())),
        }
    }

    async fn client(&self) -> Result<&reqwest::Client, String> {
        let (ca, timeout, family, cell) = &*self.inner;
        cell.get_or_try_init(|| async {
            crate::tls::https_client(ca.as_deref(), *timeout, *family)
        })
        .await
    }
}

pub(super) struct HttpSink {
    cfg: SinkConfig,
    http: Shared,
}

impl HttpSink {
    pub(super) fn new(cfg: SinkConfig, http: Shared) -> Self {
        HttpSink { cfg, http }
    }

    fn url(&self) -> Result<SecretString, String> {
        match &self.cfg {
            SinkConfig::Webhook {
                url: UrlValue::Inline(u),
                ..
            } => Ok(SecretString::from(u.clone())),
            SinkConfig::Webhook {
                url: UrlValue::Ref(r),
                ..
            }
            | SinkConfig::Slack { url: r, .. } => r.resolve().map_err(|e| format!("url: {e}")),
            SinkConfig::PagerDuty { url, .. } => Ok(SecretString::from(url.to_string())),
            SinkConfig::Sns { .. } => Err("not an HTTP sink".into()),
        }
    }

    fn body(&self, alert: &Alert) -> Result<Vec<u8>, String> {
        let value = match &self.cfg {
            SinkConfig::Webhook { .. } => serde_json::to_value(alert).map_err(|e| e.to_string())?,
            SinkConfig::Slack { .. } => slack_payload(alert),
            SinkConfig::PagerDuty { routing_key, .. } => {
                let key = routing_key
                    .resolve()
                    .map_err(|e| format!("routing_key: {e}"))?;
                pagerduty_payload(alert, &key)
            }
            SinkConfig::Sns { .. } => return Err("not an HTTP sink".into()),
        };
        serde_json::to_vec(&value).map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    fn name(&self) -> &str {
        self.cfg.name()
    }

    async fn send(&self, alert: &Alert) -> Result<(), String> {
        let url = self.url()?;
        let url =
            Url::parse(url.expose_secret()).map_err(|_| "url is not a valid URL".to_string())?;
        if url.scheme() != "https" {
            return Err("url must use https://".into());
        }
        let body = self.body(alert)?;
        let signing = match &self.cfg {
            SinkConfig::Webhook {
                secret: Some(r), ..
            } => Some(r.resolve().map_err(|e| format!("secret: {e}"))?),
            _ => None,
        };
        let http = self.http.client().await?;
        // One message id for all attempts: receivers use it to drop duplicates.
        let msg_id = format!("msg_{}", hex(&rand::random::<[u8; 12]>()));
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut req = http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(Duration::from_secs(10));
            if let Some(secret) = &signing {
                let ts = chrono::Utc::now().timestamp();
                let sig = sign_standard_webhook(secret, &msg_id, ts, &body)?;
                req = req
                    .header("webhook-id", msg_id.clone())
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", sig);
            }
            let (retry, why, retry_after) = match req.body(body.clone()).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(crate::deepvue::parse_retry_after);
                    let text = resp.text().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        return Ok(());
                    }
                    let snippet: String =
                        text.chars().take(120).filter(|c| !c.is_control()).collect();
                    (
                        status == 408 || status == 429 || status >= 500,
                        format!("HTTP {status} {snippet}"),
                        retry_after,
                    )
                }
                Err(e) => (true, e.without_url().to_string(), None),
            };
            last = why;
            if !retry || attempt == ATTEMPTS {
                break;
            }
            let backoff =
                Duration::from_millis(250 * 2u64.pow(attempt - 1) + rand::random_range(0..100));
            tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(10))).await;
        }
        Err(last.trim().to_string())
    }

    async fn check(&self) -> Result<String, String> {
        let url = self.url()?;
        let url =
            Url::parse(url.expose_secret()).map_err(|_| "url is not a valid URL".to_string())?;
        if url.scheme() != "https" {
            return Err("url must use https://".into());
        }
        if let SinkConfig::PagerDuty { routing_key, .. } = &self.cfg {
            routing_key
                .resolve()
                .map_err(|e| format!("routing_key: {e}"))?;
        }
        if let SinkConfig::Webhook {
            secret: Some(r), ..
        } = &self.cfg
        {
            let s = r.resolve().map_err(|e| format!("secret: {e}"))?;
            sign_standard_webhook(&s, "msg_check", 0, b"")?;
        }
        // Reach the host over TLS without posting anything: any HTTP answer will do.
        let mut origin = url.clone();
        origin.set_path("/");
        origin.set_query(None);
        let http = self.http.client().await?;
        let host = url.host_str().unwrap_or("?").to_string();
        match http
            .get(origin)
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(resp) => Ok(format!(
                "TLS to {host} verified (HTTP {} to GET /; no alert sent)",
                resp.status().as_u16()
            )),
            Err(e) => Err(format!("cannot reach {host}: {}", e.without_url())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` with the key decoded from
/// `whsec_<base64>` (Standard Webhooks).
pub fn sign_standard_webhook(
    secret: &SecretString,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let raw = secret.expose_secret();
    let encoded = raw.strip_prefix("whsec_").unwrap_or(raw);
    let key = secrecy::zeroize::Zeroizing::new(
        B64.decode(encoded)
            .map_err(|_| "secret must be whsec_<base64> (Standard Webhooks)".to_string())?,
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    Ok(format!("v1,{}", B64.encode(ctx.sign().as_ref())))
}

/// Slack incoming-webhook payload: `text` fallback plus blocks.
pub fn slack_payload(a: &Alert) -> serde_json::Value {
    let icon = match (a.action, a.severity) {
        (Action::Resolve, _) => ":white_check_mark:",
        (_, Severity::Critical) => ":rotating_light:",
        (_, Severity::Warning) => ":warning:",
    };
    let title = match a.action {
        Action::Resolve => format!("Resolved: {} ({})", a.condition.as_str(), a.token),
        Action::Trigger => format!(
            "Deepvue token {}: {} ({:?})",
            a.token,
            a.condition.as_str(),
            a.severity
        )
        .to_lowercase(),
    };
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Environment*\n{}", a.environment)}),
        json!({"type": "mrkdwn", "text": format!("*Token*\n`{}`", a.token)}),
        json!({"type": "mrkdwn", "text": format!("*Token expiry*\n{}", a.token_expiry.as_deref().unwrap_or("none stored"))}),
        json!({"type": "mrkdwn", "text": format!("*Store*\n{}", a.store)}),
    ];
    if let Some(e) = &a.egress {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Egress*\n{}", crate::token::truncate(&e.summary(), 1900))}));
    }
    if !a.expected_ips.is_empty() {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Whitelisted*\n{}", a.expected_ips.join(", "))}));
    }
    json!({
        "text": format!("{icon} {}", a.summary),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": crate::token::truncate(&title, 140)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": crate::token::truncate(&format!("{icon} {}", a.summary), 2900)}},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": crate::token::truncate(&format!("*Fix:* {}", a.fix), 2900)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("deepvue-rotator · {} · {}", a.dedup_key, a.occurred_at)}]}
        ]
    })
}

/// PagerDuty Events API v2 payload.
pub fn pagerduty_payload(a: &Alert, routing_key: &SecretString) -> serde_json::Value {
    match a.action {
        Action::Resolve => json!({
            "routing_key": routing_key.expose_secret(),
            "event_action": "resolve",
            "dedup_key": a.dedup_key,
        }),
        Action::Trigger => json!({
            "routing_key": routing_key.expose_secret(),
            "event_action": "trigger",
            "dedup_key": a.dedup_key,
            "client": "deepvue-rotator",
            "payload": {
                "summary": crate::token::truncate(&a.summary, 1000),
                "source": format!("deepvue-rotator/{}", a.environment),
                "severity": match a.severity { Severity::Critical => "critical", Severity::Warning => "warning" },
                "timestamp": a.occurred_at,
                "component": a.token,
                "group": a.environment,
                "class": a.condition.as_str(),
                "custom_details": {
                    "detail": a.detail,
                    "egress": a.egress.as_ref().map(|e| e.summary()),
                    "expected_ips": a.expected_ips,
                    "token_expiry": a.token_expiry,
                    "token_expires_in_secs": a.token_expires_in_secs,
                    "store": a.store,
                    "fix": a.fix,
                }
            }
        }),
    }
}
