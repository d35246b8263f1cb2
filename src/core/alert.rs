//! Alerts: what to say, when to say it again, and when to resolve — and the contract of a
//! place alerts go ([`Sink`]).
//!
//! [`plan`] is pure: from a token's report, the egress probe and the previous alert state it
//! decides which alerts to trigger or resolve; [`next_state`] is the state after delivery. The
//! state lives beside the token in its store (`RunState::alerts`), so one-shot runs in any mode
//! dedupe across runs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::egress::EgressReport;
use super::error::ErrorKind;
use super::report::{Outcome, TokenReport};
use crate::support::text::truncate;
use crate::support::time::{format_time, parse_time};

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
}

impl Condition {
    /// Stable name, used in dedup keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Ip403 => "ip-403",
            Condition::EgressDrift => "egress-drift",
            Condition::CredentialsRejected => "credentials-rejected",
            Condition::RotationFailing => "rotation-failing",
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

fn dedup_key(env: &str, token: &str, c: Condition) -> String {
    truncate(
        &format!("deepvue-rotator:{env}:{token}:{}", c.as_str()),
        250,
    )
}

fn severity(expires_in_secs: Option<i64>, cfg: &AlertPolicy) -> Severity {
    match expires_in_secs {
        Some(s) if s > cfg.escalate_before.as_secs() as i64 => Severity::Warning,
        _ => Severity::Critical,
    }
}

/// Which conditions this run shows active, and which it shows cleared.
fn evaluate(
    report: &TokenReport,
    egress: Option<&EgressReport>,
    cfg: &AlertPolicy,
) -> (Vec<Condition>, Vec<Condition>) {
    let mut active = Vec::new();
    let mut cleared = Vec::new();
    match (&report.outcome, &report.error) {
        (Outcome::Failed, Some(e)) => match e.kind {
            ErrorKind::Forbidden => active.push(Condition::Ip403),
            ErrorKind::CredentialsRejected => active.push(Condition::CredentialsRejected),
            _ => {
                if severity(report.expires_in_secs, cfg) == Severity::Critical {
                    active.push(Condition::RotationFailing);
                }
            }
        },
        (Outcome::Rotated | Outcome::RotatedByAnotherRunner, _) => {
            cleared.extend([
                Condition::Ip403,
                Condition::CredentialsRejected,
                Condition::RotationFailing,
            ]);
        }
        (Outcome::Fresh | Outcome::Throttled, _) => cleared.push(Condition::RotationFailing),
        _ => {}
    }
    if let Some(e) = egress {
        if !e.outside_expected().is_empty() {
            active.push(Condition::EgressDrift);
        } else if !e.observed.is_empty() && !e.expected.is_empty() {
            cleared.push(Condition::EgressDrift);
        }
    }
    (active, cleared)
}

/// Decide what to send: new or repeating triggers to every sink, escalations at once, retries
/// only to the sinks that failed last time, and one resolve when a delivered condition clears.
pub fn plan(
    report: &TokenReport,
    egress: Option<&EgressReport>,
    previous: &BTreeMap<Condition, AlertState>,
    now: DateTime<Utc>,
    cfg: &AlertPolicy,
) -> Vec<Alert> {
    let (active, cleared) = evaluate(report, egress, cfg);
    let sev = severity(report.expires_in_secs, cfg);
    let repeat = chrono::Duration::from_std(cfg.repeat_every).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    for c in active {
        let prev = previous.get(&c).filter(|s| !s.resolving);
        let due = match prev {
            None => true,
            Some(s) => {
                let last = s.last_sent.as_deref().and_then(|t| parse_time(t).ok());
                last.is_none_or(|t| now - t >= repeat) || sev > s.severity
            }
        };
        let mut alert = build(Action::Trigger, c, sev, report, egress, now, cfg);
        if due {
            out.push(alert);
        } else if let Some(s) = prev.filter(|s| !s.pending.is_empty()) {
            alert.targets = Some(s.pending.clone());
            out.push(alert);
        }
    }
    for c in cleared {
        let Some(s) = previous.get(&c) else { continue };
        if s.last_sent.is_none() && !s.resolving {
            continue; // no sink ever heard of it: nothing to resolve
        }
        let mut alert = build(Action::Resolve, c, sev, report, egress, now, cfg);
        if s.resolving {
            alert.targets = Some(s.pending.clone());
        }
        out.push(alert);
    }
    out
}

/// The alert state after this run's deliveries.
pub fn next_state(
    report: &TokenReport,
    egress: Option<&EgressReport>,
    previous: &BTreeMap<Condition, AlertState>,
    delivered: &[(Alert, AlertOutcome)],
    now: DateTime<Utc>,
    cfg: &AlertPolicy,
) -> BTreeMap<Condition, AlertState> {
    let (active, cleared) = evaluate(report, egress, cfg);
    let mut state = previous.clone();
    for c in active {
        let fresh = AlertState {
            dedup_key: dedup_key(&cfg.environment, &report.name, c),
            since: format_time(now),
            last_sent: None,
            severity: Severity::Warning,
            pending: Vec::new(),
            resolving: false,
        };
        let entry = state.entry(c).or_insert_with(|| fresh.clone());
        if entry.resolving {
            *entry = fresh; // back again while its resolve was still being retried
        }
    }
    for c in cleared {
        if state
            .get(&c)
            .is_some_and(|s| s.last_sent.is_none() && !s.resolving)
        {
            state.remove(&c);
        }
    }
    for (alert, outcome) in delivered {
        let Some(s) = state.get_mut(&alert.condition) else {
            continue;
        };
        let reached = !outcome.delivered.is_empty() || outcome.failed_sinks.is_empty();
        match alert.action {
            Action::Trigger => {
                if reached && alert.targets.is_none() {
                    s.last_sent = Some(format_time(now));
                    s.severity = alert.severity;
                }
                s.pending = if reached || alert.targets.is_some() {
                    outcome.failed_sinks.clone()
                } else {
                    Vec::new()
                };
            }
            Action::Resolve => {
                if outcome.failed_sinks.is_empty() {
                    state.remove(&alert.condition);
                } else {
                    s.resolving = true;
                    s.pending = outcome.failed_sinks.clone();
                }
            }
        }
    }
    state
}

fn build(
    action: Action,
    c: Condition,
    severity: Severity,
    r: &TokenReport,
    egress: Option<&EgressReport>,
    now: DateTime<Utc>,
    cfg: &AlertPolicy,
) -> Alert {
    let env = &cfg.environment;
    let left = super::document::describe_left(r.expires_in_secs);
    let egress_line = egress
        .map(EgressReport::summary)
        .unwrap_or_else(|| "egress IP not probed".into());
    let detail = r.error.as_ref().map(|e| {
        e.deepvue_detail
            .clone()
            .unwrap_or_else(|| e.message.clone())
    });
    let expected: Vec<String> = egress.map(|e| e.expected.clone()).unwrap_or_default();
    let ips = egress
        .map(|e| {
            let out = e.outside_expected();
            let list = if out.is_empty() {
                e.observed.iter().map(|o| o.ip).collect()
            } else {
                out
            };
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this host's egress IP".into());
    let whitelist_fix = format!(
        "Ask Deepvue support (support@deepvue.tech) to whitelist {ips}, or route this job's egress through the whitelisted NAT gateway / static IP{}.",
        if expected.is_empty() {
            String::new()
        } else {
            format!(" ({})", expected.join(", "))
        }
    );
    let (summary, fix) = match (action, c) {
        (Action::Resolve, _) => (
            format!("[{env}] resolved: {} for Deepvue token `{}`", c.as_str(), r.name),
            "Nothing to do.".to_string(),
        ),
        (Action::Trigger, Condition::Ip403) => (
            format!("[{env}] Deepvue answered 403 for token `{}`: {egress_line}; {left}", r.name),
            whitelist_fix,
        ),
        (Action::Trigger, Condition::EgressDrift) => (
            format!(
                "[{env}] egress drift for Deepvue token `{}`: {egress_line}; Deepvue will answer 403 at the next rotation; {left}",
                r.name
            ),
            whitelist_fix,
        ),
        (Action::Trigger, Condition::CredentialsRejected) => (
            format!(
                "[{env}] Deepvue rejected the credentials of token `{}` ({}); {left}",
                r.name,
                detail.as_deref().unwrap_or("no detail")
            ),
            "Check the client_id / client_secret in the credentials backend; reactivate or re-issue them in Deepvue if they were revoked.".to_string(),
        ),
        (Action::Trigger, Condition::RotationFailing) => (
            format!(
                "[{env}] rotation of Deepvue token `{}` is failing: {}; {left}",
                r.name,
                r.error.as_ref().map_or("unknown error", |e| e.message.as_str())
            ),
            "Fix the error above before the stored token expires, or applications lose Deepvue access.".to_string(),
        ),
    };
    Alert {
        action,
        condition: c,
        severity,
        token: r.name.clone(),
        environment: env.clone(),
        store: format!("{} {}", r.backend, r.secret_id),
        summary: truncate(&summary, 1000),
        detail,
        egress: egress.cloned(),
        expected_ips: expected,
        token_expiry: r.expiry.clone(),
        token_expires_in_secs: r.expires_in_secs,
        fix,
        dedup_key: dedup_key(env, &r.name, c),
        occurred_at: format_time(now),
        targets: None,
    }
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

/// A place alerts go.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// The `[[alerts]]` name.
    fn name(&self) -> &str;
    /// Deliver one alert (retrying transient failures itself).
    async fn send(&self, alert: &Alert) -> Result<(), SinkError>;
    /// Prove the sink is reachable and configured, without sending an alert.
    async fn check(&self) -> Result<String, SinkError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::report::ReportError;

    fn cfg() -> AlertPolicy {
        AlertPolicy {
            environment: "prod".into(),
            escalate_before: Duration::from_secs(6 * 3600),
            repeat_every: Duration::from_secs(4 * 3600),
        }
    }

    fn report(outcome: Outcome, kind: Option<ErrorKind>, left_h: i64) -> TokenReport {
        TokenReport {
            name: "t1".into(),
            backend: "file",
            secret_id: "/x".into(),
            outcome,
            reason: None,
            version: None,
            previous_version: None,
            expiry: None,
            expires_in_secs: Some(left_h * 3600),
            error: kind.map(|kind| ReportError {
                kind,
                message: "boom".into(),
                deepvue_detail: Some("IP not whitelisted".into()),
            }),
            egress: None,
            alerts: vec![],
            warnings: vec![],
            state_mark: Default::default(),
        }
    }

    #[track_caller]
    fn check(
        r: &TokenReport,
        prev: &BTreeMap<Condition, AlertState>,
        now: DateTime<Utc>,
        expect: &[&str],
    ) -> BTreeMap<Condition, AlertState> {
        let alerts = plan(r, None, prev, now, &cfg());
        let got: Vec<String> = alerts
            .iter()
            .map(|a| format!("{:?} {} {:?}", a.action, a.condition.as_str(), a.severity))
            .collect();
        assert_eq!(got, expect);
        let delivered: Vec<(Alert, AlertOutcome)> = alerts
            .into_iter()
            .map(|a| {
                let o = outcome(&a, &["pd"], &[]);
                (a, o)
            })
            .collect();
        next_state(r, None, prev, &delivered, now, &cfg())
    }

    #[test]
    fn dedup_repeat_escalate_resolve() {
        let t0 = Utc::now();
        let s = check(
            &report(Outcome::Failed, Some(ErrorKind::Forbidden), 20),
            &BTreeMap::new(),
            t0,
            &["Trigger ip-403 Warning"],
        );
        // Same condition an hour later: deduplicated.
        let s = check(
            &report(Outcome::Failed, Some(ErrorKind::Forbidden), 19),
            &s,
            t0 + chrono::Duration::hours(1),
            &[],
        );
        // Past repeat_every: again.
        let s = check(
            &report(Outcome::Failed, Some(ErrorKind::Forbidden), 15),
            &s,
            t0 + chrono::Duration::hours(5),
            &["Trigger ip-403 Warning"],
        );
        // Into the escalation window: critical at once.
        let s = check(
            &report(Outcome::Failed, Some(ErrorKind::Forbidden), 5),
            &s,
            t0 + chrono::Duration::hours(6),
            &["Trigger ip-403 Critical"],
        );
        // A successful rotation resolves it, once.
        let s = check(
            &report(Outcome::Rotated, None, 24),
            &s,
            t0 + chrono::Duration::hours(7),
            &["Resolve ip-403 Warning"],
        );
        assert!(s.is_empty());
        check(
            &report(Outcome::Fresh, None, 23),
            &s,
            t0 + chrono::Duration::hours(8),
            &[],
        );
    }

    #[test]
    fn transient_failures_alert_only_near_expiry() {
        let t0 = Utc::now();
        check(
            &report(Outcome::Failed, Some(ErrorKind::Transient), 10),
            &BTreeMap::new(),
            t0,
            &[],
        );
        let s = check(
            &report(Outcome::Failed, Some(ErrorKind::Transient), 5),
            &BTreeMap::new(),
            t0,
            &["Trigger rotation-failing Critical"],
        );
        check(
            &report(Outcome::Failed, Some(ErrorKind::CredentialsRejected), 5),
            &s,
            t0,
            &["Trigger credentials-rejected Critical"],
        );
    }

    #[test]
    fn undelivered_alerts_are_retried_next_run() {
        let t0 = Utc::now();
        let r = report(Outcome::Failed, Some(ErrorKind::Forbidden), 20);
        let alerts = plan(&r, None, &BTreeMap::new(), t0, &cfg());
        let failed: Vec<(Alert, AlertOutcome)> = alerts
            .into_iter()
            .map(|a| {
                let o = outcome(&a, &[], &["pd"]);
                (a, o)
            })
            .collect();
        let s = next_state(&r, None, &BTreeMap::new(), &failed, t0, &cfg());
        check(
            &r,
            &s,
            t0 + chrono::Duration::minutes(5),
            &["Trigger ip-403 Warning"],
        );
        // Never delivered anywhere, then cleared: no resolve for an alert nobody saw.
        let s = next_state(&r, None, &BTreeMap::new(), &[], t0, &cfg());
        check(&report(Outcome::Rotated, None, 24), &s, t0, &[]);
    }

    #[test]
    fn summaries_say_time_left_once() {
        let mut r = report(Outcome::Failed, Some(ErrorKind::Transient), 0);
        r.expires_in_secs = None;
        let alerts = plan(&r, None, &BTreeMap::new(), Utc::now(), &cfg());
        let summary = &alerts[0].summary;
        assert_eq!(
            summary.matches("no usable token is stored").count(),
            1,
            "{summary}"
        );
    }

    fn outcome(a: &Alert, ok: &[&str], failed: &[&str]) -> AlertOutcome {
        AlertOutcome {
            condition: a.condition,
            action: a.action,
            severity: a.severity,
            delivered: ok.iter().map(|s| s.to_string()).collect(),
            failed: failed.iter().map(|s| format!("{s}: HTTP 500")).collect(),
            failed_sinks: failed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn failed_sinks_are_retried_alone_and_resolves_are_not_lost() {
        let t0 = Utc::now();
        let r403 = report(Outcome::Failed, Some(ErrorKind::Forbidden), 20);
        type Planned = Vec<(String, Option<Vec<String>>)>;
        let plan_targets = |r: &TokenReport, s: &BTreeMap<Condition, AlertState>, t| -> Planned {
            plan(r, None, s, t, &cfg())
                .into_iter()
                .map(|a| (format!("{:?}", a.action), a.targets))
                .collect()
        };
        let pd = || Some(vec!["pd".to_string()]);
        // Slack took the trigger, PagerDuty did not.
        let a = plan(&r403, None, &BTreeMap::new(), t0, &cfg());
        let s = next_state(
            &r403,
            None,
            &BTreeMap::new(),
            &[(a[0].clone(), outcome(&a[0], &["slack"], &["pd"]))],
            t0,
            &cfg(),
        );
        // Next run: only PagerDuty gets it again.
        let t1 = t0 + chrono::Duration::minutes(10);
        assert_eq!(plan_targets(&r403, &s, t1), [("Trigger".to_string(), pd())]);
        let a = plan(&r403, None, &s, t1, &cfg());
        let s = next_state(
            &r403,
            None,
            &s,
            &[(a[0].clone(), outcome(&a[0], &["pd"], &[]))],
            t1,
            &cfg(),
        );
        assert_eq!(
            plan_targets(&r403, &s, t0 + chrono::Duration::minutes(20)),
            []
        );
        // The resolve reaches Slack but not PagerDuty: PagerDuty is owed it next run.
        let ok = report(Outcome::Rotated, None, 24);
        let a = plan(&ok, None, &s, t1, &cfg());
        assert_eq!(a.len(), 1);
        let s = next_state(
            &ok,
            None,
            &s,
            &[(a[0].clone(), outcome(&a[0], &["slack"], &["pd"]))],
            t1,
            &cfg(),
        );
        assert_eq!(plan_targets(&ok, &s, t1), [("Resolve".to_string(), pd())]);
        let a = plan(&ok, None, &s, t1, &cfg());
        let s = next_state(
            &ok,
            None,
            &s,
            &[(a[0].clone(), outcome(&a[0], &["pd"], &[]))],
            t1,
            &cfg(),
        );
        assert!(s.is_empty());
    }
}
