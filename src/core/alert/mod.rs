//! Alerts: the vocabulary (conditions, severities, the alert every sink receives, what its
//! delivery came to), the contract of a place alerts go ([`Sink`]), and, in `plan`, the pure
//! plan of what to send.

pub mod plan;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::egress::EgressReport;

/// `[alerting]`: how alerts are worded, escalated and repeated.
#[derive(Clone, Debug)]
pub struct AlertPolicy {
    /// Environment label in every alert (default `default`).
    pub environment: String,
    /// Severity turns critical when the stored token has less than this left (default 6 h).
    pub escalate_before: Duration,
    /// The same condition alerts again after this long (default 4 h).
    pub repeat_every: Duration,
}

/// What is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Deepvue answered 403 (egress IP not whitelisted).
    #[serde(rename = "ip-403")]
    Ip403,
    /// The egress IP is outside `expected_ips` (a 403 is coming).
    EgressDrift,
    /// Deepvue rejected the credentials (400/401/422).
    CredentialsRejected,
    /// Rotation keeps failing and the stored token is within `escalate_before` of expiry.
    RotationFailing,
    /// A replica store (`stores = [primary, …]`) could not be given the primary's token.
    ReplicaBehind,
    /// An `on_rotate` hook failed after a write (the new token stays written).
    HookFailed,
    /// The token is due but suspended: nothing renews it until `resume` (always critical).
    Suspended,
}

impl Condition {
    /// Stable name, used in dedup keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Ip403 => "ip-403",
            Condition::EgressDrift => "egress-drift",
            Condition::CredentialsRejected => "credentials-rejected",
            Condition::RotationFailing => "rotation-failing",
            Condition::ReplicaBehind => "replica-behind",
            Condition::HookFailed => "hook-failed",
            Condition::Suspended => "suspended",
        }
    }
}

/// How urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The stored token has more than `escalate_before` left.
    Warning,
    /// Less than `escalate_before` left (or none stored).
    Critical,
}

/// Trigger or resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The condition is active.
    Trigger,
    /// The condition cleared.
    Resolve,
}

/// An open condition, as remembered between runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// Stable key (PagerDuty `dedup_key`).
    pub dedup_key: String,
    /// When the condition was first seen.
    pub since: String,
    /// When an alert for it was last delivered.
    pub last_sent: Option<String>,
    /// The severity last delivered.
    pub severity: Severity,
    /// Sinks that failed to take the last trigger or resolve: retried on the next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// The condition cleared, but not every sink has taken the resolve yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolving: bool,
}

/// One alert, as every sink receives it. Never contains a secret or a token.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    /// Trigger or resolve.
    pub action: Action,
    /// What is wrong.
    pub condition: Condition,
    /// How urgent.
    pub severity: Severity,
    /// Token name.
    pub token: String,
    /// `[alerting] environment`.
    pub environment: String,
    /// Store backend and secret id.
    pub store: String,
    /// One line for humans.
    pub summary: String,
    /// Deepvue's `detail`, or the failure.
    pub detail: Option<String>,
    /// Observed egress IPs and whether each is whitelisted.
    pub egress: Option<EgressReport>,
    /// `[egress] expected_ips`.
    pub expected_ips: Vec<String>,
    /// The stored token's expiry.
    pub token_expiry: Option<String>,
    /// Seconds it has left.
    pub token_expires_in_secs: Option<i64>,
    /// How to fix it.
    pub fix: String,
    /// Stable per token and condition.
    pub dedup_key: String,
    /// When this run saw it.
    pub occurred_at: String,
    /// Deliver only to these sinks (a retry for the ones that failed); `None` = all.
    #[serde(skip)]
    pub targets: Option<Vec<String>>,
}

/// Delivery result of one alert, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct AlertOutcome {
    /// What is wrong.
    pub condition: Condition,
    /// Trigger or resolve.
    pub action: Action,
    /// How urgent.
    pub severity: Severity,
    /// Sinks that accepted it.
    pub delivered: Vec<String>,
    /// Sinks that failed, with why.
    pub failed: Vec<String>,
    /// Names of the sinks that failed.
    #[serde(skip)]
    pub failed_sinks: Vec<String>,
}

/// Why a sink could not take an alert. Never contains a secret (webhook URLs included).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// What went wrong.
    pub message: String,
    /// The underlying failure, when there is one.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SinkError {
    /// An error without an underlying cause.
    pub fn new(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            source: None,
        }
    }
}

impl From<String> for SinkError {
    fn from(message: String) -> Self {
        SinkError::new(message)
    }
}

/// An event for the sinks that take them (`events = ["token.rotated"]`): what happened to a
/// token, never the token.
#[derive(Clone, Debug, Serialize)]
pub struct TokenEvent {
    /// `token.rotated` or `rotation.attempted`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A unique id (receivers drop duplicates by it; the Standard Webhooks `webhook-id`).
    pub id: String,
    /// The token's name.
    pub token: String,
    /// The version written.
    pub version: Option<String>,
    /// The new token's expiry (RFC 3339).
    pub expiry: Option<String>,
    /// The primary store (`backend secret-id`).
    pub store: String,
    /// The replica stores the token was copied to in the same pass.
    pub replicas: Vec<String>,
    /// Who wrote it: host name and process id.
    pub runner: EventRunner,
    /// When (RFC 3339).
    pub occurred_at: String,
    /// `rotation.attempted` only: what the attempt was and how it ended (the audit record).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<AttemptFacts>,
}

/// What a `rotation.attempted` event adds: the audit record's facts.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptFacts {
    /// Why the pass ran (`schedule`, `manual`, `push`, `rotation`, `agent_refresh`).
    pub trigger: String,
    /// The run mode of the runner.
    pub mode: String,
    /// `rotated`, `rotated_by_another_runner`, `throttled`, `suspended` or `failed`.
    pub outcome: String,
    /// The error class, when it failed.
    pub error_class: Option<String>,
    /// The error (names token, backend and secret id; never a secret).
    pub error: Option<String>,
    /// The egress IPs the probe saw, when one ran.
    pub egress_ips: Vec<String>,
    /// The version a rotation replaced.
    pub previous_version: Option<String>,
}

/// The process that wrote a token.
#[derive(Clone, Debug, Serialize)]
pub struct EventRunner {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
}

/// The event kinds a sink may take.
pub const EVENT_KINDS: &[&str] = &["token.rotated", "rotation.attempted"];

/// The first entry of a sink's `events` that is not a known kind.
pub fn unknown_event(events: &[String]) -> Option<&str> {
    events
        .iter()
        .map(String::as_str)
        .find(|e| !EVENT_KINDS.contains(e))
}

/// A place alerts go.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// The `[[alerts]]` name.
    fn name(&self) -> &str;
    /// Deliver one alert (retrying transient failures itself).
    async fn send(&self, alert: &Alert) -> Result<(), SinkError>;
    /// Whether this sink takes events of `kind` (its `events` list; none by default).
    fn takes(&self, kind: &str) -> bool {
        let _ = kind;
        false
    }
    /// Deliver one event (only called when [`Sink::takes`] it).
    async fn send_event(&self, event: &TokenEvent) -> Result<(), SinkError> {
        Err(SinkError::new(format!(
            "this sink does not take {} events",
            event.kind
        )))
    }
    /// Prove the sink is reachable and configured, without sending an alert.
    async fn check(&self) -> Result<String, SinkError>;
}
