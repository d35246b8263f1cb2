//! The PagerDuty Events API v2 sink: trigger and resolve by a stable `dedup_key`.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::http::{SharedClient, post_json, reach};
use crate::core::alert::{Action, Alert, Severity, Sink, SinkError};
use crate::support::problem::Problem;
use crate::support::secret_ref::SecretRef;
use crate::support::text::truncate;

/// PagerDuty's public Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `[[alerts]] kind = "pagerduty"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// Display name (default `pagerduty-N`).
    pub name: Option<String>,
    /// Integration key (by reference only).
    pub routing_key: SecretRef,
    /// Events endpoint (default [`PAGERDUTY_URL`]).
    pub url: Option<String>,
}

impl PagerDutyConfig {
    pub(super) fn validate(&self, at: &str) -> Result<(), Problem> {
        self.routing_key.validate(&format!("{at}.routing_key"))?;
        crate::support::url::https_url(&format!("{at}.url"), self.url_str())?;
        Ok(())
    }

    pub(super) fn url_str(&self) -> &str {
        self.url.as_deref().unwrap_or(PAGERDUTY_URL)
    }

    pub(super) fn build(&self, name: String, http: SharedClient) -> PagerDutySink {
        PagerDutySink {
            name,
            routing_key: self.routing_key.clone(),
            // Validated at load.
            url: reqwest::Url::parse(self.url_str()).ok(),
            http,
        }
    }
}

/// Sends Events API v2 triggers and resolves.
pub struct PagerDutySink {
    name: String,
    routing_key: SecretRef,
    url: Option<reqwest::Url>,
    http: SharedClient,
}

impl PagerDutySink {
    fn url(&self) -> Result<&reqwest::Url, SinkError> {
        self.url
            .as_ref()
            .ok_or_else(|| SinkError::new("url is not a valid URL"))
    }

    fn key(&self) -> Result<SecretString, SinkError> {
        self.routing_key
            .resolve()
            .map_err(|e| SinkError::new(format!("routing_key: {e}")))
    }
}

#[async_trait::async_trait]
impl Sink for PagerDutySink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), SinkError> {
        let url = self.url()?;
        let body = serde_json::to_vec(&pagerduty_payload(alert, &self.key()?))
            .map_err(|e| SinkError::new(e.to_string()))?;
        post_json(&self.http, url, &body, &|| Ok(Vec::new())).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let url = self.url()?;
        self.key()?;
        reach(&self.http, url).await
    }
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
                "summary": truncate(&a.summary, 1000),
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
