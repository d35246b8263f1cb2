//! The serialized views of a run: [`TokenReport`] (made once from a
//! [`super::result::RunResult`], for `rotate --json`, the CLI lines and the Lambda error
//! message), the `status` row, and how both read for humans.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::alert::{Action, AlertOutcome};
use super::document::{describe_left, format_time};
use super::egress::EgressReport;
use super::error::ErrorKind;
use super::result::{Outcome, OutcomeKind, ReplicaState, RunResult};
use super::store::Version;
use crate::support::text::{escape_control, format_duration, truncate};

/// A classified failure in a report.
#[derive(Clone, Debug, Serialize)]
pub struct ReportError {
    /// The class (decides the exit code).
    pub kind: ErrorKind,
    /// What went wrong, naming token, backend and secret id; never a secret.
    pub message: String,
    /// Deepvue's own `detail`, when Deepvue answered.
    pub deepvue_detail: Option<String>,
}

/// One replica store in a report (`stores = [primary, replica, …]`).
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaReport {
    /// Its backend.
    pub backend: &'static str,
    /// Its secret id.
    pub secret_id: String,
    /// `in_sync`, `copied`, `newer` (holds a later token: left alone), `no_source` (the
    /// primary holds no usable token), `busy` (another runner is copying to it), `failed`.
    pub state: &'static str,
    /// Its current version after the run.
    pub version: Option<Version>,
    /// Its token's expiry.
    pub expiry: Option<String>,
    /// Whether it holds the primary's token.
    pub in_sync: bool,
    /// The failure, when `state` is `failed`.
    pub error: Option<ReportError>,
}

/// The serialized view of one token's [`RunResult`].
#[derive(Clone, Debug, Serialize)]
pub struct TokenReport {
    /// Token name.
    pub name: String,
    /// Store backend.
    pub backend: &'static str,
    /// Store secret id.
    pub secret_id: String,
    /// What happened.
    pub outcome: OutcomeKind,
    /// Why it was due (or throttled), when it was.
    pub reason: Option<String>,
    /// The current version after the run.
    pub version: Option<Version>,
    /// The version this run replaced (rotations only).
    pub previous_version: Option<Version>,
    /// Expiry of the current token after the run.
    pub expiry: Option<String>,
    /// Seconds until that expiry (negative when expired).
    pub expires_in_secs: Option<i64>,
    /// The failure, when `outcome` is `failed`.
    pub error: Option<ReportError>,
    /// The egress probe, when one ran (403 diagnosis or drift check).
    pub egress: Option<EgressReport>,
    /// Alerts this run triggered or resolved.
    pub alerts: Vec<AlertOutcome>,
    /// What was not right but did not fail the run, one line each: an expiry beyond the token
    /// lifetime that was clamped, a rotation lock that could not be taken (the report then
    /// comes from an unlocked read).
    pub warnings: Vec<String>,
    /// The replica stores (only for a token with `stores = [primary, replica, …]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaReport>,
    /// The `on_rotate` hooks that ran after this run's write (only then).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookReport>,
}

/// One `on_rotate` hook in a [`TokenReport`].
#[derive(Clone, Debug, Serialize)]
pub struct HookReport {
    /// `command` or `signal`.
    pub kind: &'static str,
    /// The program, or the pid file.
    pub target: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<ReportError>,
}

impl TokenReport {
    /// The view of `r`, with time left counted from `now`.
    pub fn of(r: &RunResult, now: DateTime<Utc>) -> Self {
        let reason = match &r.outcome {
            Outcome::Throttled { min_interval } => Some(format!(
                "due, but minted less than min_interval ({}) ago",
                humantime::format_duration(*min_interval)
            )),
            Outcome::Suspended { reason } => Some(format!(
                "{}; suspended{}",
                r.due
                    .as_ref()
                    .map_or_else(|| "due".into(), ToString::to_string),
                reason
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            )),
            _ => r.due.as_ref().map(ToString::to_string),
        };
        TokenReport {
            name: r.token.name.clone(),
            backend: r.token.backend,
            secret_id: r.token.secret_id.clone(),
            outcome: r.outcome.kind(),
            reason,
            version: r.version().cloned(),
            previous_version: match &r.outcome {
                Outcome::Rotated { previous } => previous.clone(),
                _ => None,
            },
            expiry: r.expiry().map(format_time),
            expires_in_secs: r.expires_in(now).map(|d| d.num_seconds()),
            error: r.failure().map(|f| ReportError {
                kind: f.kind,
                message: f.message.clone(),
                deepvue_detail: f.deepvue_detail.clone(),
            }),
            egress: r.egress.clone(),
            alerts: r.alerts.clone(),
            warnings: r.warnings.clone(),
            replicas: r
                .replicas
                .iter()
                .map(|x| ReplicaReport {
                    backend: x.backend,
                    secret_id: x.secret_id.clone(),
                    state: x.state.as_str(),
                    version: x.held.as_ref().map(|h| h.version.clone()),
                    expiry: x.held.as_ref().and_then(|h| h.expiry).map(format_time),
                    in_sync: matches!(x.state, ReplicaState::InSync | ReplicaState::Copied),
                    error: match &x.state {
                        ReplicaState::Failed(f) => Some(ReportError {
                            kind: f.kind,
                            message: f.message.clone(),
                            deepvue_detail: None,
                        }),
                        _ => None,
                    },
                })
                .collect(),
            hooks: r
                .hooks
                .iter()
                .map(|h| HookReport {
                    kind: h.kind,
                    target: h.target.clone(),
                    ok: h.failure.is_none(),
                    error: h.failure.as_ref().map(|f| ReportError {
                        kind: f.kind,
                        message: f.message.clone(),
                        deepvue_detail: None,
                    }),
                })
                .collect(),
        }
    }

    /// This token's exit code: its own failure's, else a failed replica's.
    pub fn exit_code(&self) -> u8 {
        super::error::combine_exit_codes(
            self.error
                .iter()
                .chain(self.replicas.iter().filter_map(|r| r.error.as_ref()))
                .chain(self.hooks.iter().filter_map(|h| h.error.as_ref()))
                .map(|e| e.kind.exit_code()),
        )
    }

    /// The views of a pass's results, time left counted from `now`.
    pub fn all(results: &[RunResult], now: DateTime<Utc>) -> Vec<TokenReport> {
        results.iter().map(|r| TokenReport::of(r, now)).collect()
    }
}

/// One row of `status`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusRow {
    /// Token name.
    pub name: String,
    /// Store backend.
    pub backend: &'static str,
    /// Store secret id.
    pub secret_id: String,
    /// Current version.
    pub version: Option<Version>,
    /// When the current token was issued.
    pub issued_at: Option<String>,
    /// When it expires.
    pub expiry: Option<String>,
    /// Seconds until then.
    pub expires_in_secs: Option<i64>,
    /// When it will be renewed: `expiry − renew_before`, or the running daemon's schedule
    /// (daemon `/status`).
    pub renews_at: Option<String>,
    /// Suspended by an operator: since when, by whom, why.
    pub suspended: Option<String>,
    /// Whether a run now would rotate.
    pub due: bool,
    /// Why it is due.
    pub due_reason: Option<String>,
    /// The last recorded outcome.
    pub last_outcome: Option<OutcomeKind>,
    /// When that was.
    pub last_run_at: Option<String>,
    /// The last recorded failure.
    pub last_error: Option<String>,
    /// A problem reading the store now.
    pub problem: Option<String>,
    /// Open alert conditions.
    pub active_alerts: Vec<String>,
    /// The last alert delivery failure.
    pub last_alert_error: Option<String>,
    /// The replica stores (only for a token with `stores = [primary, replica, …]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
}

/// A replica store in `status`.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaStatus {
    /// Its backend.
    pub backend: &'static str,
    /// Its secret id.
    pub secret_id: String,
    /// Its current version.
    pub version: Option<Version>,
    /// Its token's expiry.
    pub expiry: Option<String>,
    /// Whether it holds the primary's current token.
    pub in_sync: bool,
    /// A problem reading it now.
    pub problem: Option<String>,
}

fn left(secs: Option<i64>) -> String {
    secs.map_or_else(
        || "?".into(),
        |s| format_duration(chrono::Duration::seconds(s)),
    )
}

/// One human line per token report.
pub fn describe_report(r: &TokenReport) -> String {
    let v = |v: &Option<Version>| v.as_ref().map_or_else(|| "none".into(), |v| v.0.clone());
    let exp = format!(
        "expires {} (in {})",
        r.expiry.as_deref().unwrap_or("?"),
        left(r.expires_in_secs)
    );
    let at = format!("[{} {}]", r.backend, r.secret_id);
    let mut line = describe_outcome(r, &v, &exp, &at);
    let failed = r.replicas.iter().filter(|x| x.error.is_some()).count();
    if !r.replicas.is_empty() {
        line.push_str(&format!(
            "\n  replicas: {} of {} in sync{}",
            r.replicas.iter().filter(|x| x.in_sync).count(),
            r.replicas.len(),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        ));
    }
    for h in &r.hooks {
        let what = match &h.error {
            Some(e) => format!("FAILED [{}] {}", e.kind, escape_control(&e.message)),
            None => "ok".into(),
        };
        line.push_str(&format!(
            "\n  on_rotate {} [{}]: {what}",
            h.kind,
            escape_control(&h.target)
        ));
    }
    for x in &r.replicas {
        let what = match (&x.error, x.state) {
            (Some(e), _) => format!("FAILED [{}] {}", e.kind, escape_control(&e.message)),
            (None, "copied") => format!("copied -> version {}", v(&x.version)),
            (None, "newer") => "holds a newer token than the primary; left alone".into(),
            (None, "no_source") => "not written: the primary holds no usable token".into(),
            (None, "busy") => "another runner is copying to it right now".into(),
            (None, _) => format!("in sync, version {}", v(&x.version)),
        };
        line.push_str(&format!(
            "\n  replica [{} {}]: {what}",
            x.backend, x.secret_id
        ));
    }
    for w in &r.warnings {
        line.push_str(&format!("\n  WARNING {}", escape_control(w)));
    }
    if let Some(e) = &r.egress
        && r.error.is_none()
        && !e.outside_expected().is_empty()
    {
        line.push_str(&format!(
            "\n  WARNING egress drift: {}; Deepvue will answer 403 at the next rotation",
            e.summary()
        ));
    }
    for a in &r.alerts {
        let action = match a.action {
            Action::Trigger => {
                format!("alert {} ({:?})", a.condition.as_str(), a.severity).to_lowercase()
            }
            Action::Resolve => format!("resolved {}", a.condition.as_str()),
        };
        let delivered = if a.delivered.is_empty() {
            "log only".to_string()
        } else {
            a.delivered.join(", ")
        };
        line.push_str(&format!("\n  {action} -> {delivered}"));
        if !a.failed.is_empty() {
            line.push_str(&format!("; FAILED: {}", a.failed.join("; ")));
        }
    }
    line
}

fn describe_outcome(
    r: &TokenReport,
    v: &dyn Fn(&Option<Version>) -> String,
    exp: &str,
    at: &str,
) -> String {
    match r.outcome {
        OutcomeKind::Rotated => format!(
            "{}: rotated -> version {}{}; {exp} {at}",
            r.name,
            v(&r.version),
            r.previous_version
                .as_ref()
                .map(|p| format!(" (previous {p} kept)"))
                .unwrap_or_default()
        ),
        OutcomeKind::RotatedByAnotherRunner => format!(
            "{}: rotated by another runner -> version {}; nothing written by this run; {exp} {at}",
            r.name,
            v(&r.version)
        ),
        OutcomeKind::Fresh => format!("{}: fresh, version {}; {exp} {at}", r.name, v(&r.version)),
        OutcomeKind::Throttled => format!(
            "{}: not rotated: {}; version {}; {exp} {at}",
            r.name,
            r.reason.as_deref().unwrap_or("throttled"),
            v(&r.version)
        ),
        OutcomeKind::Suspended => format!(
            "{}: SUSPENDED, not rotated although due ({}); version {}; {exp} {at}\n  resume: deepvue-rotator resume --token {}",
            r.name,
            escape_control(r.reason.as_deref().unwrap_or("suspended")),
            v(&r.version),
            r.name
        ),
        OutcomeKind::WouldRotate => format!(
            "{}: would rotate ({}); dry run, nothing minted or written {at}",
            r.name,
            r.reason.as_deref().unwrap_or("due")
        ),
        OutcomeKind::Failed => {
            let (kind, msg) = r
                .error
                .as_ref()
                .map_or((ErrorKind::Permanent, String::new()), |e| {
                    (e.kind, e.message.clone())
                });
            let hint = match kind {
                ErrorKind::Forbidden => {
                    "\n  hint: Deepvue answers 403 to calls from IPs that are not on the account's whitelist; check this host's egress IP (NAT gateway / static IP) and ask Deepvue support to whitelist it"
                }
                ErrorKind::CredentialsRejected => {
                    "\n  hint: the client_id / client_secret are wrong, revoked or inactive; fix them in the credentials backend"
                }
                _ => "",
            };
            // The failure, then how long the stored token still lives: what decides urgency.
            let left = describe_left(r.expires_in_secs);
            let msg = escape_control(&msg);
            format!("{}: FAILED [{kind}] {msg}; {left} {at}{hint}", r.name)
        }
    }
}

/// The `status` table.
pub fn render_status(rows: &[StatusRow]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<8} {:<22} {:<22} {:>9}  {:<4} LAST OUTCOME",
        "NAME", "VERSION", "ISSUED_AT", "EXPIRY", "LEFT", "DUE"
    );
    for r in rows {
        let last = match (&r.last_outcome, &r.last_run_at) {
            (Some(o), Some(at)) => escape_control(&format!("{} at {at}", o.as_str())),
            (Some(o), None) => o.as_str().to_string(),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:<22} {:<22} {:>9}  {:<4} {}",
            r.name,
            r.version.as_ref().map_or("-", |v| v.0.as_str()),
            r.issued_at.as_deref().unwrap_or("-"),
            r.expiry.as_deref().unwrap_or("-"),
            r.expires_in_secs.map_or_else(
                || "-".into(),
                |s| format_duration(chrono::Duration::seconds(s))
            ),
            if r.due { "yes" } else { "no" },
            last
        );
        // Recorded state is only as trustworthy as the file it came from: one line each.
        if let Some(e) = &r.last_error {
            let _ = writeln!(out, "  last error: {}", escape_control(&truncate(e, 400)));
        }
        if let Some(p) = &r.problem {
            let _ = writeln!(out, "  problem: {}", escape_control(p));
        }
        if !r.active_alerts.is_empty() {
            let _ = writeln!(out, "  open alerts: {}", r.active_alerts.join(", "));
        }
        if let Some(e) = &r.last_alert_error {
            let _ = writeln!(
                out,
                "  alert delivery failed: {}",
                escape_control(&truncate(e, 400))
            );
        }
        if let Some(s) = &r.suspended {
            let _ = writeln!(
                out,
                "  SUSPENDED {s}: no runner mints it until `deepvue-rotator resume --token {}`",
                r.name
            );
        }
        if let Some(d) = r.due_reason.as_deref().filter(|_| r.due) {
            let _ = writeln!(out, "  due: {}", escape_control(d));
        } else if let Some(at) = &r.renews_at {
            let _ = writeln!(out, "  renews at {at}");
        }
        for x in &r.replicas {
            let state = match (&x.problem, x.in_sync) {
                (Some(p), _) => format!("problem: {}", escape_control(p)),
                (None, true) => "in sync".into(),
                (None, false) => "NOT in sync with the primary".into(),
            };
            let _ = writeln!(
                out,
                "  replica {} `{}`: version {}, expiry {}; {state}",
                x.backend,
                escape_control(&x.secret_id),
                x.version.as_ref().map_or("-", |v| v.0.as_str()),
                x.expiry.as_deref().unwrap_or("-"),
            );
        }
    }
    out
}
