//! The generic JSON webhook sink, signed per Standard Webhooks when a `whsec_` secret is set.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::http::{SharedClient, https_url, post_json, probe_path};
use crate::core::alert::{Alert, Sink, SinkError, TokenEvent};
use crate::support::problem::Problem;
use crate::support::secret_ref::{SecretRef, UrlValue};

/// `[[alerts]] kind = "webhook"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Display name (default `webhook-N`).
    pub name: Option<String>,
    /// Target URL, inline or by reference.
    pub url: UrlValue,
    /// `whsec_…` signing secret (by reference).
    pub secret: Option<SecretRef>,
    /// Events to send besides alerts (`["token.rotated"]`; none by default).
    #[serde(default)]
    pub events: Vec<String>,
}

impl WebhookConfig {
    pub(super) fn validate(&self, at: &str) -> Result<(), Problem> {
        match &self.url {
            UrlValue::Inline(u) => {
                crate::support::url::https_url(&format!("{at}.url"), u)?;
            }
            UrlValue::Ref(r) => r.validate(&format!("{at}.url"))?,
        }
        if let Some(r) = &self.secret {
            r.validate(&format!("{at}.secret"))?;
        }
        if let Some(e) = crate::core::alert::unknown_event(&self.events) {
            return Err(Problem::invalid(format!(
                "{at}.events: `{e}` is not an event kind (known: {})",
                crate::core::alert::EVENT_KINDS.join(", ")
            )));
        }
        Ok(())
    }

    pub(super) fn inline_url(&self) -> Option<&str> {
        match &self.url {
            UrlValue::Inline(u) => Some(u),
            UrlValue::Ref(_) => None,
        }
    }

    pub(super) fn url_ref(&self) -> Option<&SecretRef> {
        match &self.url {
            UrlValue::Ref(r) => Some(r),
            UrlValue::Inline(_) => None,
        }
    }

    pub(super) fn build(&self, name: String, http: SharedClient) -> WebhookSink {
        WebhookSink {
            name,
            cfg: self.clone(),
            http,
        }
    }
}

/// Posts the alert as JSON.
pub struct WebhookSink {
    name: String,
    cfg: WebhookConfig,
    http: SharedClient,
}

impl WebhookSink {
    fn url(&self) -> Result<reqwest::Url, SinkError> {
        let raw = match &self.cfg.url {
            UrlValue::Inline(u) => SecretString::from(u.clone()),
            UrlValue::Ref(r) => r
                .resolve()
                .map_err(|e| SinkError::new(format!("url: {e}")))?,
        };
        https_url(&raw)
    }

    fn signing_secret(&self) -> Result<Option<SecretString>, SinkError> {
        self.cfg
            .secret
            .as_ref()
            .map(|r| {
                r.resolve()
                    .map_err(|e| SinkError::new(format!("secret: {e}")))
            })
            .transpose()
    }
}

#[async_trait::async_trait]
impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), SinkError> {
        let body = serde_json::to_vec(alert).map_err(|e| SinkError::new(e.to_string()))?;
        // One message id for all attempts: receivers use it to drop duplicates.
        self.post(&body, format!("msg_{}", hex(&rand::random::<[u8; 12]>())))
            .await
    }

    fn takes(&self, kind: &str) -> bool {
        self.cfg.events.iter().any(|e| e == kind)
    }

    async fn send_event(&self, event: &TokenEvent) -> Result<(), SinkError> {
        let body = serde_json::to_vec(event).map_err(|e| SinkError::new(e.to_string()))?;
        self.post(&body, event.id.clone()).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let url = self.url()?;
        if let Some(s) = self.signing_secret()? {
            sign_standard_webhook(&s, "msg_check", 0, b"")?;
        }
        probe_path(&self.http, &url).await
    }
}

impl WebhookSink {
    /// POST `body`, signed (when a secret is set) with `msg_id` as its `webhook-id`.
    async fn post(&self, body: &[u8], msg_id: String) -> Result<(), SinkError> {
        let url = self.url()?;
        let signing = self.signing_secret()?;
        let headers = || -> Result<super::http::Headers, SinkError> {
            let Some(secret) = &signing else {
                return Ok(Vec::new());
            };
            let ts = chrono::Utc::now().timestamp();
            let sig = sign_standard_webhook(secret, &msg_id, ts, body)?;
            Ok(vec![
                ("webhook-id", msg_id.clone()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", sig),
            ])
        };
        post_json(&self.http, &url, body, &headers).await
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
) -> Result<String, SinkError> {
    let raw = secret.expose_secret();
    let encoded = raw.strip_prefix("whsec_").unwrap_or(raw);
    let key = secrecy::zeroize::Zeroizing::new(
        B64.decode(encoded)
            .map_err(|_| SinkError::new("secret must be whsec_<base64> (Standard Webhooks)"))?,
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
