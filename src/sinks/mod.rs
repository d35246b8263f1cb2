//! Alert sinks, and the one place that lists them: webhook (Standard Webhooks signatures),
//! Slack, PagerDuty Events v2 (all over [`http`]), SNS (the `aws` backend's) and Pub/Sub (the
//! `gcp` backend's).
//!
//! **Dependency rule:** sinks depend on `core` and `support`, and on a backend only for a sink
//! that backend provides (SNS on the shared AWS SDK config).

pub mod http;
mod pagerduty;
mod slack;
mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use pagerduty::{PAGERDUTY_URL, PagerDutyConfig, pagerduty_payload};
pub use slack::{SlackConfig, slack_payload};
pub use webhook::{WebhookConfig, sign_standard_webhook};

use crate::backends::Clients;
use crate::core::alert::Sink;
use crate::support::net::IpFamily;
use crate::support::problem::Problem;
use crate::support::secret_ref::SecretRef;

/// One `[[alerts]]` entry: `kind = "webhook" | "slack" | "pagerduty" | "sns" | "pubsub"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SinkConfig {
    /// Generic JSON webhook, optionally signed per Standard Webhooks.
    Webhook(WebhookConfig),
    /// Slack incoming webhook.
    Slack(SlackConfig),
    /// PagerDuty Events API v2.
    Pagerduty(PagerDutyConfig),
    /// AWS SNS Publish.
    #[cfg(feature = "aws")]
    Sns(crate::backends::aws::sns::SnsSinkConfig),
    /// GCP Pub/Sub publish.
    #[cfg(feature = "gcp")]
    Pubsub(crate::backends::gcp::pubsub::PubsubSinkConfig),
}

/// What building sinks needs besides their own config.
pub struct SinkContext<'a> {
    /// `[alerting] ca_file`: extra trust anchor for the HTTP sinks.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout (the Deepvue client's).
    pub connect_timeout: Duration,
    /// Address family (the Deepvue client's).
    pub family: IpFamily,
    /// Shared backend clients (SNS).
    pub clients: &'a Clients,
}

impl SinkConfig {
    /// The configured name, or `<kind>-<index>`.
    pub fn name(&self, index: usize) -> String {
        let (kind, name) = match self {
            SinkConfig::Webhook(c) => ("webhook", &c.name),
            SinkConfig::Slack(c) => ("slack", &c.name),
            SinkConfig::Pagerduty(c) => ("pagerduty", &c.name),
            #[cfg(feature = "aws")]
            SinkConfig::Sns(c) => ("sns", &c.name),
            #[cfg(feature = "gcp")]
            SinkConfig::Pubsub(c) => ("pubsub", &c.name),
        };
        name.clone().unwrap_or_else(|| format!("{kind}-{index}"))
    }

    /// Check the entry at `at` (e.g. `alerts[0]`).
    pub fn validate(&self, at: &str) -> Result<(), Problem> {
        match self {
            SinkConfig::Webhook(c) => c.validate(at),
            SinkConfig::Slack(c) => c.validate(at),
            SinkConfig::Pagerduty(c) => c.validate(at),
            #[cfg(feature = "aws")]
            SinkConfig::Sns(c) => c.validate(at),
            #[cfg(feature = "gcp")]
            SinkConfig::Pubsub(c) => c.validate(at),
        }
    }

    /// Referenced URLs to check for `https://` at `check` time (inline ones were checked at
    /// load): (sink name, reference).
    pub fn url_ref(&self) -> Option<&SecretRef> {
        match self {
            SinkConfig::Webhook(c) => c.url_ref(),
            SinkConfig::Slack(c) => Some(&c.url),
            _ => None,
        }
    }

    /// A URL written in the file (shown through `shown_url` only).
    pub fn inline_url(&self) -> Option<&str> {
        match self {
            SinkConfig::Webhook(c) => c.inline_url(),
            SinkConfig::Pagerduty(c) => Some(c.url_str()),
            _ => None,
        }
    }

    /// The sink.
    pub fn build(
        &self,
        name: String,
        http: &http::SharedClient,
        ctx: &SinkContext<'_>,
    ) -> Box<dyn Sink> {
        let _ = ctx;
        match self {
            SinkConfig::Webhook(c) => Box::new(c.build(name, http.clone())),
            SinkConfig::Slack(c) => Box::new(c.build(name, http.clone())),
            SinkConfig::Pagerduty(c) => Box::new(c.build(name, http.clone())),
            #[cfg(feature = "aws")]
            SinkConfig::Sns(c) => Box::new(c.build(name, ctx.clients.aws.clone())),
            #[cfg(feature = "gcp")]
            SinkConfig::Pubsub(c) => Box::new(c.build(name, ctx.clients.gcp.clone())),
        }
    }
}

/// Build every sink, sharing one HTTP client (created on first use).
pub fn build_all(sinks: &[(String, SinkConfig)], ctx: &SinkContext<'_>) -> Vec<Box<dyn Sink>> {
    let http = http::SharedClient::new(ctx.ca_file.clone(), ctx.connect_timeout, ctx.family);
    sinks
        .iter()
        .map(|(name, cfg)| cfg.build(name.clone(), &http, ctx))
        .collect()
}
