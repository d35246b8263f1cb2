//! SNS sink: `Publish` to a topic, using the `[aws]` settings. FIFO topics (`.fifo`) get a
//! message group (default: the token name) and a deduplication id per alert.

use std::path::PathBuf;

use aws_sdk_sns::error::DisplayErrorContext;
use tokio::sync::OnceCell;

use super::{Alert, Sink};
use crate::config::AwsConfig;

pub(super) struct SnsSink {
    name: String,
    topic_arn: String,
    group: Option<String>,
    aws: AwsConfig,
    ca: Option<PathBuf>,
    client: OnceCell<aws_sdk_sns::Client>,
}

impl SnsSink {
    pub(super) fn new(
        name: String,
        topic_arn: String,
        group: Option<String>,
        aws: AwsConfig,
        ca: Option<PathBuf>,
    ) -> Self {
        SnsSink {
            name,
            topic_arn,
            group,
            aws,
            ca,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<&aws_sdk_sns::Client, String> {
        self.client
            .get_or_try_init(|| async {
                let sdk = crate::aws::sdk_config(&self.aws, self.ca.as_deref()).await?;
                Ok::<_, String>(aws_sdk_sns::Client::new(&sdk))
            })
            .await
    }
}

#[async_trait::async_trait]
impl Sink for SnsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, alert: &Alert) -> Result<(), String> {
        let client = self.client().await?;
        let message = serde_json::to_string(alert).map_err(|e| e.to_string())?;
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
            format!(
                "sns:Publish to {}: {}",
                self.topic_arn,
                DisplayErrorContext(&e)
            )
        })
    }

    async fn check(&self) -> Result<String, String> {
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
                format!(
                    "sns:GetTopicAttributes on {}: {}",
                    self.topic_arn,
                    DisplayErrorContext(&e)
                )
            })
    }
}
