//! Delivers alerts to every configured sink, and always to the log. A failing sink is logged
//! and recorded, and never changes a rotation's outcome or exit code.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::core::alert::{Action, Alert, AlertOutcome, Severity, Sink, TokenEvent};
use crate::core::observe::Observer;

/// The configured sinks.
pub struct Alerter {
    sinks: Vec<Box<dyn Sink>>,
    observer: Arc<dyn Observer>,
}

impl Alerter {
    /// Deliver to these sinks (built by the composition root), counting on `observer`.
    pub fn new(sinks: Vec<Box<dyn Sink>>, observer: Arc<dyn Observer>) -> Self {
        Alerter { sinks, observer }
    }

    /// Whether no sink is configured (alerts then only go to the log).
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Log the alert and deliver it to every (targeted) sink concurrently.
    pub async fn deliver(&self, alert: &Alert) -> AlertOutcome {
        match (alert.action, alert.severity) {
            (Action::Resolve, _) => {
                info!(condition = alert.condition.as_str(), dedup_key = %alert.dedup_key, "alert resolved: {}", alert.summary)
            }
            (_, Severity::Warning) => {
                warn!(condition = alert.condition.as_str(), dedup_key = %alert.dedup_key, fix = %alert.fix, "alert: {}", alert.summary)
            }
            (_, Severity::Critical) => {
                error!(condition = alert.condition.as_str(), dedup_key = %alert.dedup_key, fix = %alert.fix, "alert: {}", alert.summary)
            }
        }
        let targeted = self.sinks.iter().filter(|s| {
            alert
                .targets
                .as_ref()
                .is_none_or(|t| t.iter().any(|n| n == s.name()))
        });
        let results = futures::future::join_all(
            targeted.map(|s| async move { (s.name().to_string(), s.send(alert).await) }),
        )
        .await;
        let mut outcome = AlertOutcome {
            condition: alert.condition,
            action: alert.action,
            severity: alert.severity,
            delivered: Vec::new(),
            failed: Vec::new(),
            failed_sinks: Vec::new(),
        };
        for (name, r) in results {
            self.observer
                .alert(&name, alert.condition, alert.action, r.is_ok());
            match r {
                Ok(()) => outcome.delivered.push(name),
                Err(e) => {
                    warn!(sink = %name, error = %e, "alert delivery failed");
                    outcome.failed.push(format!("{name}: {e}"));
                    outcome.failed_sinks.push(name);
                }
            }
        }
        outcome
    }

    /// Whether any sink takes events of `kind`.
    pub fn takes(&self, kind: &str) -> bool {
        self.sinks.iter().any(|s| s.takes(kind))
    }

    /// Deliver `event` to every sink that takes it, concurrently; one line per sink that
    /// failed (a failed event never changes the run's outcome).
    pub async fn event(&self, event: &TokenEvent) -> Vec<String> {
        let results = futures::future::join_all(
            self.sinks
                .iter()
                .filter(|s| s.takes(event.kind))
                .map(|s| async move { (s.name().to_string(), s.send_event(event).await) }),
        )
        .await;
        let mut failed = Vec::new();
        for (name, r) in results {
            match r {
                Ok(()) => info!(sink = %name, event = event.kind, "event delivered"),
                Err(e) => {
                    warn!(sink = %name, event = event.kind, error = %e, "event delivery failed");
                    failed.push(format!("event {} to sink {name} failed: {e}", event.kind));
                }
            }
        }
        failed
    }

    /// Reachability of every sink, without sending an alert: (name, result).
    pub async fn check(&self) -> Vec<(String, Result<String, String>)> {
        futures::future::join_all(self.sinks.iter().map(|s| async move {
            (
                s.name().to_string(),
                s.check().await.map_err(|e| e.to_string()),
            )
        }))
        .await
    }
}
