//! The SNS alert sink: `Publish` to a topic on the shared AWS SDK config (`[aws]`). FIFO
//! topics (`.fifo`) get a message group (default: the token name) and a deduplication id per
//! alert.

use std::sync::Arc;

use aws_sdk_sns::error::DisplayErrorContext;
use serde::Deserialize;

use super::AwsClients;
use crate::core::alert::{Alert, Sink, SinkError, TokenEvent};
use crate::support::problem::Problem;

/// `[[alerts]] kind = "sns"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsSinkConfig {
    /// Display name (default `sns-N`).
    pub name: Option<String>,
    /// Topic ARN (`.fifo` topics get a message group and dedup id).
    pub topic_arn: String,
    /// FIFO message group (default: the token name).
    pub message_group_id: Option<String>,
    /// Events to publish besides alerts (`["token.rotated"]`; none by default).
    #[serde(default)]
    pub events: Vec<String>,
}

impl SnsSinkConfig {
    /// Check the entry at `at`.
    pub fn validate(&self, at: &str) -> Result<(), Problem> {
        let arn = &self.topic_arn;
        if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
            return Err(Problem::invalid(format!(
                "{at}.topic_arn `{arn}` is not an SNS topic ARN"
            )));
        }
        if self
            .message_group_id
            .as_deref()
            .is_some_and(|g| g.is_empty() || g.len() > 128)
        {
            return Err(Problem::invalid(format!(
                "{at}.message_group_id must be 1-128 characters"
            )));
        }
        if let Some(e) = crate::core::alert::unknown_event(&self.events) {
            return Err(Problem::invalid(format!(
                "{at}.events: `{e}` is not an event kind (known: {})",
                crate::core::alert::EVENT_KINDS.join(", ")
            )));
        }
        Ok(())
    }

    /// The sink, named `name`.
    pub fn build(&self, name: String, clients: Arc<AwsClients>) -> SnsSink {
        SnsSink {
            name,
            topic_arn: self.topic_arn.clone(),
            group: self.message_group_id.clone(),
            events: self.events.clone(),
            clients,
        }
    }
}

/// Publishes alerts to one topic.
pub struct SnsSink {
    name: String,
    topic_arn: String,
    group: Option<String>,
    events: Vec<String>,
    clients: Arc<AwsClients>,
}

impl SnsSink {
    async fn client(&self) -> Result<&aws_sdk_sns::Client, SinkError> {
        self.clients.sns().await.map_err(|e| SinkError {
            message: e.to_string(),
            source: Some(Box::new(e)),
        })
    }
}

#[async_trait::async_trait]
impl Sink for SnsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), SinkError> {
        let client = self.client().await?;
        let message = serde_json::to_string(alert).map_err(|e| SinkError::new(e.to_string()))?;
        let subject: String = alert
            .summary
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control())
            .take(100)
            .collect();
        let mut req = client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(message)
            .subject(subject);
        if self.topic_arn.ends_with(".fifo") {
            let dedup = format!(
                "{}:{:?}:{}",
                alert.dedup_key, alert.action, alert.occurred_at
            );
            let digest = ring::digest::digest(&ring::digest::SHA256, dedup.as_bytes());
            let id: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            req = req
                .message_group_id(self.group.clone().unwrap_or_else(|| alert.token.clone()))
                .message_deduplication_id(id);
        }
        req.send().await.map(|_| ()).map_err(|e| {
            SinkError::new(format!(
                "sns:Publish to {}: {}",
                self.topic_arn,
                DisplayErrorContext(&e)
            ))
        })
    }

    fn takes(&self, kind: &str) -> bool {
        self.events.iter().any(|e| e == kind)
    }

    async fn send_event(&self, event: &TokenEvent) -> Result<(), SinkError> {
        let client = self.client().await?;
        let message = serde_json::to_string(event).map_err(|e| SinkError::new(e.to_string()))?;
        let attr = aws_sdk_sns::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(event.kind)
            .build()
            .map_err(|e| SinkError::new(e.to_string()))?;
        let mut req = client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(message)
            .subject(format!("{} {}", event.kind, event.token))
            // Subscribers filter on it (a subscription filter policy on `event_type`).
            .message_attributes("event_type", attr);
        if self.topic_arn.ends_with(".fifo") {
            req = req
                .message_group_id(self.group.clone().unwrap_or_else(|| event.token.clone()))
                .message_deduplication_id(event.id.clone());
        }
        req.send().await.map(|_| ()).map_err(|e| {
            SinkError::new(format!(
                "sns:Publish to {}: {}",
                self.topic_arn,
                DisplayErrorContext(&e)
            ))
        })
    }

    async fn check(&self) -> Result<String, SinkError> {
        let client = self.client().await?;
        client
            .get_topic_attributes()
            .topic_arn(&self.topic_arn)
            .send()
            .await
            .map(|_| {
                format!(
                    "topic {} reachable (sns:GetTopicAttributes)",
                    self.topic_arn
                )
            })
            .map_err(|e| {
                SinkError::new(format!(
                    "sns:GetTopicAttributes on {}: {}",
                    self.topic_arn,
                    DisplayErrorContext(&e)
                ))
            })
    }
}
