//! The Slack incoming-webhook sink. The webhook URL is itself a secret: by reference only.

use serde::Deserialize;
use serde_json::json;

use super::http::{SharedClient, https_url, post_json, reach};
use crate::core::alert::{Action, Alert, Severity, Sink, SinkError};
use crate::support::problem::Problem;
use crate::support::secret_ref::{SecretRef, UrlValue};
use crate::support::text::truncate;

/// `[[alerts]] kind = "slack"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Display name (default `slack-N`).
    pub name: Option<String>,
    /// The webhook URL, by reference.
    #[serde(deserialize_with = "by_reference")]
    pub url: SecretRef,
}

/// Accept the reference form only; an inline URL is refused at validation with the fix.
fn by_reference<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SecretRef, D::Error> {
    match UrlValue::deserialize(d)? {
        UrlValue::Ref(r) => Ok(r),
        // Kept as an impossible reference, reported by `validate` as an inline secret.
        UrlValue::Inline(_) => Ok(SecretRef::default()),
    }
}

impl SlackConfig {
    pub(super) fn validate(&self, at: &str) -> Result<(), Problem> {
        if self.url == SecretRef::default() {
            return Err(Problem::inline_secret(format!(
                "{at}.url: a Slack webhook URL is a secret; give it by reference: url = {{ env = \
                 \"SLACK_WEBHOOK_URL\" }} or {{ file = \"/path\" }}"
            )));
        }
        self.url.validate(&format!("{at}.url"))
    }

    pub(super) fn build(&self, name: String, http: SharedClient) -> SlackSink {
        SlackSink {
            name,
            url: self.url.clone(),
            http,
        }
    }
}

/// Posts to a Slack incoming webhook.
pub struct SlackSink {
    name: String,
    url: SecretRef,
    http: SharedClient,
}

impl SlackSink {
    fn url(&self) -> Result<reqwest::Url, SinkError> {
        let raw = self
            .url
            .resolve()
            .map_err(|e| SinkError::new(format!("url: {e}")))?;
        https_url(&raw)
    }
}

#[async_trait::async_trait]
impl Sink for SlackSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), SinkError> {
        let url = self.url()?;
        let body =
            serde_json::to_vec(&slack_payload(alert)).map_err(|e| SinkError::new(e.to_string()))?;
        post_json(&self.http, &url, &body, &|| Ok(Vec::new())).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let url = self.url()?;
        reach(&self.http, &url).await
    }
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
        fields.push(json!({"type": "mrkdwn", "text": format!("*Egress*\n{}", truncate(&e.summary(), 1900))}));
    }
    if !a.expected_ips.is_empty() {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Whitelisted*\n{}", a.expected_ips.join(", "))}));
    }
    json!({
        "text": format!("{icon} {}", a.summary),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 140)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("{icon} {}", a.summary), 2900)}},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&format!("*Fix:* {}", a.fix), 2900)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("deepvue-rotator · {} · {}", a.dedup_key, a.occurred_at)}]}
        ]
    })
}
