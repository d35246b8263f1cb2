//! The alert plan, pure: from a token's [`RunResult`] and the previous alert state, which
//! alerts to trigger or resolve ([`plan`]), and the state after delivery ([`next_state`]). The
//! state lives beside the token in its store (`RunState::alerts`), so one-shot runs in any mode
//! dedupe across runs.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Action, Alert, AlertOutcome, AlertPolicy, AlertState, Condition, Severity};
use crate::core::egress::EgressReport;
use crate::core::error::ErrorKind;
use crate::core::result::{Outcome, ReplicaState, RunResult};
use crate::support::text::truncate;
use crate::support::time::{format_time, parse_time};
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
    r: &RunResult,
    now: DateTime<Utc>,
    cfg: &AlertPolicy,
) -> (Vec<Condition>, Vec<Condition>) {
    let mut active = Vec::new();
    let mut cleared = Vec::new();
    match &r.outcome {
        Outcome::Failed(f) => match f.kind {
            ErrorKind::Forbidden => active.push(Condition::Ip403),
            ErrorKind::CredentialsRejected => active.push(Condition::CredentialsRejected),
            _ => {
                if severity(left_secs(r, now), cfg) == Severity::Critical {
                    active.push(Condition::RotationFailing);
                }
            }
        },
        Outcome::Rotated { .. } | Outcome::RotatedByAnotherRunner => {
            cleared.extend([
                Condition::Ip403,
                Condition::CredentialsRejected,
                Condition::RotationFailing,
            ]);
        }
        Outcome::Fresh | Outcome::Throttled { .. } => cleared.push(Condition::RotationFailing),
        Outcome::Suspended { .. } => active.push(Condition::Suspended),
        Outcome::WouldRotate => {}
    }
    // Any pass that renewed or found the token fresh shows it is no longer held back.
    if matches!(
        r.outcome,
        Outcome::Rotated { .. } | Outcome::RotatedByAnotherRunner | Outcome::Fresh
    ) {
        cleared.push(Condition::Suspended);
    }
    // Replicas: behind while any copy fails; caught up once none does (a busy one is being
    // copied by another runner; a run with no primary token says nothing).
    if !r.replicas.is_empty() {
        if r.failed_replicas().next().is_some() {
            active.push(Condition::ReplicaBehind);
        } else if r.replicas.iter().all(|x| {
            matches!(
                x.state,
                ReplicaState::InSync | ReplicaState::Copied | ReplicaState::Newer
            )
        }) {
            cleared.push(Condition::ReplicaBehind);
        }
    }
    // Hooks run only after a write: they say something only then.
    if !r.hooks.is_empty() {
        if r.failed_hooks().next().is_some() {
            active.push(Condition::HookFailed);
        } else {
            cleared.push(Condition::HookFailed);
        }
    }
    if let Some(e) = &r.egress {
        if !e.outside_expected().is_empty() {
            active.push(Condition::EgressDrift);
        } else if !e.observed.is_empty() && !e.expected.is_empty() {
            cleared.push(Condition::EgressDrift);
        }
    }
    (active, cleared)
}

/// Seconds the stored token has left at `now`.
fn left_secs(r: &RunResult, now: DateTime<Utc>) -> Option<i64> {
    r.expires_in(now).map(|d| d.num_seconds())
}

/// Seconds the failing replicas' tokens have left (the soonest; `None`: one holds none).
fn replica_left_secs(r: &RunResult, now: DateTime<Utc>) -> Option<i64> {
    let mut soonest: Option<i64> = None;
    for x in &r.replicas {
        if matches!(x.state, ReplicaState::Failed(_)) {
            let left = (x.held.as_ref()?.expiry? - now).num_seconds();
            soonest = Some(soonest.map_or(left, |s| s.min(left)));
        }
    }
    soonest
}

/// How long the token a condition is about has left: a replica's own, or the primary's.
fn left_for(c: Condition, r: &RunResult, now: DateTime<Utc>) -> Option<i64> {
    match c {
        Condition::ReplicaBehind => replica_left_secs(r, now),
        _ => left_secs(r, now),
    }
}

/// Decide what to send: new or repeating triggers to every sink, escalations at once, retries
/// only to the sinks that failed last time, and one resolve when a delivered condition clears.
pub fn plan(
    r: &RunResult,
    previous: &BTreeMap<Condition, AlertState>,
    now: DateTime<Utc>,
    cfg: &AlertPolicy,
) -> Vec<Alert> {
    let (active, cleared) = evaluate(r, now, cfg);
    let repeat = chrono::Duration::from_std(cfg.repeat_every).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    for c in active {
        // A suspended token in its renewal window is never a mere warning: nothing renews it.
        let sev = if c == Condition::Suspended {
            Severity::Critical
        } else {
            severity(left_for(c, r, now), cfg)
        };
        let prev = previous.get(&c).filter(|s| !s.resolving);
        let due = match prev {
            None => true,
            Some(s) => {
                let last = s.last_sent.as_deref().and_then(|t| parse_time(t).ok());
                last.is_none_or(|t| now - t >= repeat) || sev > s.severity
            }
        };
        let mut alert = build(Action::Trigger, c, sev, r, now, cfg);
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
        let sev = severity(left_for(c, r, now), cfg);
        let mut alert = build(Action::Resolve, c, sev, r, now, cfg);
        if s.resolving {
            alert.targets = Some(s.pending.clone());
        }
        out.push(alert);
    }
    out
}

/// The alert state after this run's deliveries.
pub fn next_state(
    r: &RunResult,
    previous: &BTreeMap<Condition, AlertState>,
    delivered: &[(Alert, AlertOutcome)],
    now: DateTime<Utc>,
    cfg: &AlertPolicy,
) -> BTreeMap<Condition, AlertState> {
    let (active, cleared) = evaluate(r, now, cfg);
    let mut state = previous.clone();
    for c in active {
        let fresh = AlertState {
            dedup_key: dedup_key(&cfg.environment, &r.token.name, c),
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
    r: &RunResult,
    now: DateTime<Utc>,
    cfg: &AlertPolicy,
) -> Alert {
    let env = &cfg.environment;
    let egress = r.egress.as_ref();
    let left_s = left_for(c, r, now);
    let left = crate::core::document::describe_left(left_s);
    let name = &r.token.name;
    let egress_line = egress
        .map(EgressReport::summary)
        .unwrap_or_else(|| "egress IP not probed".into());
    let failure = r.failure();
    let detail = failure.map(|e| {
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
            format!("[{env}] resolved: {} for Deepvue token `{}`", c.as_str(), name),
            "Nothing to do.".to_string(),
        ),
        (Action::Trigger, Condition::Ip403) => (
            format!("[{env}] Deepvue answered 403 for token `{}`: {egress_line}; {left}", name),
            whitelist_fix,
        ),
        (Action::Trigger, Condition::EgressDrift) => (
            format!(
                "[{env}] egress drift for Deepvue token `{}`: {egress_line}; Deepvue will answer 403 at the next rotation; {left}",
                name
            ),
            whitelist_fix,
        ),
        (Action::Trigger, Condition::CredentialsRejected) => (
            format!(
                "[{env}] Deepvue rejected the credentials of token `{}` ({}); {left}",
                name,
                detail.as_deref().unwrap_or("no detail")
            ),
            "Check the client_id / client_secret in the credentials backend; reactivate or re-issue them in Deepvue if they were revoked.".to_string(),
        ),
        (Action::Trigger, Condition::ReplicaBehind) => (
            format!(
                "[{env}] replica store(s) of Deepvue token `{}` are behind the primary: {}; the replica's token: {left}",
                name,
                r.failed_replicas()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "Fix the replica store's access (the error above); the next pass copies the primary's token to it without minting. Applications reading that store get the old token until then.".to_string(),
        ),
        (Action::Trigger, Condition::HookFailed) => (
            format!(
                "[{env}] the on_rotate hook of Deepvue token `{}` failed: {}; the new token was written ({left})",
                name,
                r.failed_hooks()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            "Fix the hook (the error above). The token stays written; an application that waits for the hook (a reload, a signal) still uses the previous token until it reloads, and that token expires on its own.".to_string(),
        ),
        (Action::Trigger, Condition::Suspended) => (
            format!(
                "[{env}] Deepvue token `{}` is due but suspended{}; nothing renews it; {left}",
                name,
                match &r.outcome {
                    Outcome::Suspended { reason: Some(why) } => {
                        format!(" ({})", crate::support::text::escape_control(why))
                    }
                    _ => String::new(),
                }
            ),
            format!(
                "Resume it (`deepvue-rotator resume --token {name}`) before it expires, or applications lose Deepvue access."
            ),
        ),
        (Action::Trigger, Condition::RotationFailing) => (
            format!(
                "[{env}] rotation of Deepvue token `{}` is failing: {}; {left}",
                name,
                failure.map_or("unknown error", |e| e.message.as_str())
            ),
            "Fix the error above before the stored token expires, or applications lose Deepvue access.".to_string(),
        ),
    };
    Alert {
        action,
        condition: c,
        severity,
        token: name.clone(),
        environment: env.clone(),
        store: match c {
            // The replicas behind (when resolving: all of them).
            Condition::ReplicaBehind => {
                let failed = r.failed_replicas().count() > 0;
                r.replicas
                    .iter()
                    .filter(|x| !failed || matches!(x.state, ReplicaState::Failed(_)))
                    .map(|x| format!("{} {}", x.backend, x.secret_id))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
            _ => format!("{} {}", r.token.backend, r.token.secret_id),
        },
        summary: truncate(&summary, 1000),
        detail,
        egress: egress.cloned(),
        expected_ips: expected,
        token_expiry: r.expiry().map(format_time),
        token_expires_in_secs: left_s,
        fix,
        dedup_key: dedup_key(env, name, c),
        occurred_at: format_time(now),
        targets: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::result::{Failure, Held, TokenRef};
    use crate::core::store::Version;
    use std::time::Duration;

    fn cfg() -> AlertPolicy {
        AlertPolicy {
            environment: "prod".into(),
            escalate_before: Duration::from_secs(6 * 3600),
            repeat_every: Duration::from_secs(4 * 3600),
        }
    }

    /// A result at `now` with `left_h` hours left on the stored token.
    fn report(
        outcome: Kind,
        kind: Option<ErrorKind>,
        left_h: i64,
        now: DateTime<Utc>,
    ) -> RunResult {
        let outcome = match (outcome, kind) {
            (_, Some(kind)) => Outcome::Failed(Failure {
                kind,
                message: "boom".into(),
                deepvue_detail: Some("IP not whitelisted".into()),
            }),
            (Kind::Rotated, None) => Outcome::Rotated { previous: None },
            (_, None) => Outcome::Fresh,
        };
        let mut r = RunResult::new(
            TokenRef {
                name: "t1".into(),
                backend: "file",
                secret_id: "/x".into(),
            },
            outcome,
        );
        r.current = Some(Held {
            version: Version("1".into()),
            expiry: Some(now + chrono::Duration::hours(left_h)),
            issued_at: None,
        });
        r
    }

    #[derive(Clone, Copy)]
    enum Kind {
        Failed,
        Rotated,
        Fresh,
    }

    #[track_caller]
    fn check(
        r: &RunResult,
        prev: &BTreeMap<Condition, AlertState>,
        now: DateTime<Utc>,
        expect: &[&str],
    ) -> BTreeMap<Condition, AlertState> {
        let alerts = plan(r, prev, now, &cfg());
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
        next_state(r, prev, &delivered, now, &cfg())
    }

    #[test]
    fn dedup_repeat_escalate_resolve() {
        let t0 = Utc::now();
        let s = check(
            &report(Kind::Failed, Some(ErrorKind::Forbidden), 20, t0),
            &BTreeMap::new(),
            t0,
            &["Trigger ip-403 Warning"],
        );
        // Same condition an hour later: deduplicated.
        let s = check(
            &report(
                Kind::Failed,
                Some(ErrorKind::Forbidden),
                19,
                t0 + chrono::Duration::hours(1),
            ),
            &s,
            t0 + chrono::Duration::hours(1),
            &[],
        );
        // Past repeat_every: again.
        let s = check(
            &report(
                Kind::Failed,
                Some(ErrorKind::Forbidden),
                15,
                t0 + chrono::Duration::hours(5),
            ),
            &s,
            t0 + chrono::Duration::hours(5),
            &["Trigger ip-403 Warning"],
        );
        // Into the escalation window: critical at once.
        let s = check(
            &report(
                Kind::Failed,
                Some(ErrorKind::Forbidden),
                5,
                t0 + chrono::Duration::hours(6),
            ),
            &s,
            t0 + chrono::Duration::hours(6),
            &["Trigger ip-403 Critical"],
        );
        // A successful rotation resolves it, once.
        let s = check(
            &report(Kind::Rotated, None, 24, t0 + chrono::Duration::hours(7)),
            &s,
            t0 + chrono::Duration::hours(7),
            &["Resolve ip-403 Warning"],
        );
        assert!(s.is_empty());
        check(
            &report(Kind::Fresh, None, 23, t0 + chrono::Duration::hours(8)),
            &s,
            t0 + chrono::Duration::hours(8),
            &[],
        );
    }

    #[test]
    fn transient_failures_alert_only_near_expiry() {
        let t0 = Utc::now();
        check(
            &report(Kind::Failed, Some(ErrorKind::Transient), 10, t0),
            &BTreeMap::new(),
            t0,
            &[],
        );
        let s = check(
            &report(Kind::Failed, Some(ErrorKind::Transient), 5, t0),
            &BTreeMap::new(),
            t0,
            &["Trigger rotation-failing Critical"],
        );
        check(
            &report(Kind::Failed, Some(ErrorKind::CredentialsRejected), 5, t0),
            &s,
            t0,
            &["Trigger credentials-rejected Critical"],
        );
    }

    #[test]
    fn undelivered_alerts_are_retried_next_run() {
        let t0 = Utc::now();
        let r = report(Kind::Failed, Some(ErrorKind::Forbidden), 20, t0);
        let alerts = plan(&r, &BTreeMap::new(), t0, &cfg());
        let failed: Vec<(Alert, AlertOutcome)> = alerts
            .into_iter()
            .map(|a| {
                let o = outcome(&a, &[], &["pd"]);
                (a, o)
            })
            .collect();
        let s = next_state(&r, &BTreeMap::new(), &failed, t0, &cfg());
        check(
            &r,
            &s,
            t0 + chrono::Duration::minutes(5),
            &["Trigger ip-403 Warning"],
        );
        // Never delivered anywhere, then cleared: no resolve for an alert nobody saw.
        let s = next_state(&r, &BTreeMap::new(), &[], t0, &cfg());
        check(&report(Kind::Rotated, None, 24, t0), &s, t0, &[]);
    }

    #[test]
    fn summaries_say_time_left_once() {
        let now = Utc::now();
        let mut r = report(Kind::Failed, Some(ErrorKind::Transient), 0, now);
        r.current = None;
        let alerts = plan(&r, &BTreeMap::new(), now, &cfg());
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
        let r403 = report(Kind::Failed, Some(ErrorKind::Forbidden), 20, t0);
        type Planned = Vec<(String, Option<Vec<String>>)>;
        let plan_targets = |r: &RunResult, s: &BTreeMap<Condition, AlertState>, t| -> Planned {
            plan(r, s, t, &cfg())
                .into_iter()
                .map(|a| (format!("{:?}", a.action), a.targets))
                .collect()
        };
        let pd = || Some(vec!["pd".to_string()]);
        // Slack took the trigger, PagerDuty did not.
        let a = plan(&r403, &BTreeMap::new(), t0, &cfg());
        let s = next_state(
            &r403,
            &BTreeMap::new(),
            &[(a[0].clone(), outcome(&a[0], &["slack"], &["pd"]))],
            t0,
            &cfg(),
        );
        // Next run: only PagerDuty gets it again.
        let t1 = t0 + chrono::Duration::minutes(10);
        assert_eq!(plan_targets(&r403, &s, t1), [("Trigger".to_string(), pd())]);
        let a = plan(&r403, &s, t1, &cfg());
        let s = next_state(
            &r403,
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
        let ok = report(Kind::Rotated, None, 24, t1);
        let a = plan(&ok, &s, t1, &cfg());
        assert_eq!(a.len(), 1);
        let s = next_state(
            &ok,
            &s,
            &[(a[0].clone(), outcome(&a[0], &["slack"], &["pd"]))],
            t1,
            &cfg(),
        );
        assert_eq!(plan_targets(&ok, &s, t1), [("Resolve".to_string(), pd())]);
        let a = plan(&ok, &s, t1, &cfg());
        let s = next_state(
            &ok,
            &s,
            &[(a[0].clone(), outcome(&a[0], &["pd"], &[]))],
            t1,
            &cfg(),
        );
        assert!(s.is_empty());
    }
}
