//! The core decision, per token: is it due, mint, validate, conditional write, report.
//!
//! This module knows the [`TokenStore`] and [`CredentialSource`] traits, never a backend.
//! [`decide`] is pure; [`rotate_token`] is the only place that sequences I/O for a rotation.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::OnceCell;
use tracing::{Instrument, error, info, info_span, warn};

use crate::alert::{self, AlertOutcome, Alerter};
use crate::config::{Config, DuePolicy, TokenConfig};
use crate::credentials::{self, CredentialSource};
use crate::deepvue::{DeepvueClient, MintError};
use crate::egress::{self, EgressReport};
use crate::error::ErrorKind;
use crate::store::{self, RunState, Stored, TokenStore, Version};
use crate::token::{TokenDocument, describe_left, format_duration, format_time};

/// What a run may do.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Rotate even if the stored token is fresh (ignores `renew_before` and `min_interval`).
    pub force: bool,
    /// Decide and report, but never mint or write.
    pub dry_run: bool,
}

/// Why a token is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// Nothing stored yet.
    Missing,
    /// The stored document cannot be used.
    Unusable(String),
    /// Within `renew_before` of expiry (or past it).
    Expiring(chrono::Duration),
    /// `--force`.
    Forced,
}

impl std::fmt::Display for DueReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DueReason::Missing => f.write_str("no token stored yet"),
            DueReason::Unusable(why) => write!(f, "stored document unusable: {why}"),
            DueReason::Expiring(left) if left.num_seconds() <= 0 => {
                write!(f, "stored token expired {} ago", format_duration(-*left))
            }
            DueReason::Expiring(left) => {
                write!(f, "stored token expires in {}", format_duration(*left))
            }
            DueReason::Forced => f.write_str("forced"),
        }
    }
}

/// The pure decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Stored token is good for longer than `renew_before`.
    Fresh,
    /// Mint now.
    Due(DueReason),
    /// Would be due, but it was minted less than `min_interval` ago and is still valid.
    Throttled,
}

/// Decide whether a token is due. `now` is passed in so this stays pure.
pub fn decide(
    stored: Option<&Stored>,
    now: DateTime<Utc>,
    policy: &DuePolicy,
    force: bool,
) -> Decision {
    let doc = match stored {
        None => return Decision::Due(DueReason::Missing),
        Some(Stored {
            document: Err(e), ..
        }) => return Decision::Due(DueReason::Unusable(e.0.clone())),
        Some(Stored {
            document: Ok(doc), ..
        }) => doc,
    };
    if force {
        return Decision::Due(DueReason::Forced);
    }
    let left = doc.expiry - now;
    let renew_before =
        chrono::Duration::from_std(policy.renew_before).unwrap_or(chrono::Duration::MAX);
    if left > renew_before {
        return Decision::Fresh;
    }
    let min_interval =
        chrono::Duration::from_std(policy.min_interval).unwrap_or(chrono::Duration::MAX);
    if now - doc.issued_at < min_interval && left > min_interval {
        return Decision::Throttled;
    }
    Decision::Due(DueReason::Expiring(left))
}

/// What happened to one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Not due; nothing done.
    Fresh,
    /// Due but minted less than `min_interval` ago; nothing done.
    Throttled,
    /// `--dry-run`: would have rotated.
    WouldRotate,
    /// A new version was written.
    Rotated,
    /// Another runner wrote first; this run wrote nothing.
    RotatedByAnotherRunner,
    /// Nothing written; see `error`.
    Failed,
}

impl Outcome {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fresh => "fresh",
            Outcome::Throttled => "throttled",
            Outcome::WouldRotate => "would_rotate",
            Outcome::Rotated => "rotated",
            Outcome::RotatedByAnotherRunner => "rotated_by_another_runner",
            Outcome::Failed => "failed",
        }
    }
}

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

/// The result of one token's run.
#[derive(Clone, Debug, Serialize)]
pub struct TokenReport {
    /// Token name.
    pub name: String,
    /// Store backend.
    pub backend: &'static str,
    /// Store secret id.
    pub secret_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// Why it was due, when it was.
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
}

impl TokenReport {
    /// A blank report for `job` (outcome `failed` until something sets it).
    pub fn new(job: &Job) -> Self {
        TokenReport {
            name: job.config.name.clone(),
            backend: job.store.backend(),
            secret_id: job.store.secret_id(),
            outcome: Outcome::Failed,
            reason: None,
            version: None,
            previous_version: None,
            expiry: None,
            expires_in_secs: None,
            error: None,
            egress: None,
            alerts: Vec::new(),
        }
    }

    /// Show a document's expiry (and time left at `now`) in the report.
    pub fn show(&mut self, doc: &TokenDocument, now: DateTime<Utc>) {
        self.expiry = Some(format_time(doc.expiry));
        self.expires_in_secs = Some(doc.expires_in(now).num_seconds());
    }

    /// This token's exit code.
    pub fn exit_code(&self) -> u8 {
        self.error.as_ref().map_or(0, |e| e.kind.exit_code())
    }
}

/// A configured token with its store and credential source built.
pub struct Job {
    /// Its config.
    pub config: TokenConfig,
    /// Where its document lives.
    pub store: Box<dyn TokenStore>,
    /// Where its credentials come from.
    pub credentials: Box<dyn CredentialSource>,
}

impl Job {
    /// Build from config.
    pub fn new(config: &TokenConfig, global: &Config, aws: &Arc<crate::aws::AwsClients>) -> Self {
        Job {
            store: store::from_config(&config.store, global, aws),
            credentials: credentials::from_config(&config.credentials, aws),
            config: config.clone(),
        }
    }
}

/// The tracing span every line about one token carries.
pub fn token_span(job: &Job) -> tracing::Span {
    info_span!(
        "token",
        token = %job.config.name,
        backend = job.store.backend(),
        secret_id = %job.store.secret_id()
    )
}

/// Shared per-process state for a pass: the Deepvue client is built on first need only, so a
/// no-op run never loads a trust store.
pub struct Rotator {
    config: Arc<Config>,
    client: OnceCell<Arc<DeepvueClient>>,
    egress: OnceCell<Option<EgressReport>>,
    alerter: Alerter,
}

impl Rotator {
    /// A rotator for this config.
    pub fn new(config: Arc<Config>) -> Self {
        let alerter = Alerter::new(
            &config.alerting,
            &config.aws,
            config.deepvue.connect_timeout,
            config.deepvue.ip_family,
        );
        Rotator {
            config,
            client: OnceCell::new(),
            egress: OnceCell::new(),
            alerter,
        }
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Deepvue client, built on first use.
    pub async fn client(&self) -> Result<Arc<DeepvueClient>, MintError> {
        self.client
            .get_or_try_init(|| async { DeepvueClient::new(&self.config.deepvue).map(Arc::new) })
            .await
            .cloned()
    }

    /// The alert sinks.
    pub fn alerter(&self) -> &Alerter {
        &self.alerter
    }

    /// Probe the egress IP once per process (shared by all tokens); `None` when probing is
    /// disabled or the Deepvue client cannot be built.
    pub async fn egress(&self) -> Option<EgressReport> {
        let e = &self.config.egress;
        if !e.probe {
            return None;
        }
        self.egress
            .get_or_init(|| async {
                let client = self.client().await.ok()?;
                let report =
                    egress::probe(client.http(), &e.probe_urls, &e.expected, e.probe_timeout).await;
                Some(report)
            })
            .await
            .clone()
    }

    /// One pass over `jobs`, at most `concurrency` at once; reports in input order.
    pub async fn rotate_all(&self, jobs: &[Job], opts: RunOptions) -> Vec<TokenReport> {
        futures::stream::iter(jobs)
            .map(|job| self.rotate_token(job, opts))
            .buffered(self.config.concurrency)
            .collect()
            .await
    }

    /// Rotate one token if due. Never panics; every failure ends in the report.
    pub async fn rotate_token(&self, job: &Job, opts: RunOptions) -> TokenReport {
        let span = token_span(job);
        async {
            let report = self.rotate_inner(job, opts).await;
            self.conclude(job, report, opts.dry_run).await
        }
        .instrument(span)
        .await
    }

    /// Finish a report: egress diagnosis (403 or drift), the outcome log line, alerts and the
    /// recorded state. Used by [`Rotator::rotate_token`] and by adapters that run their own
    /// protocol (the Secrets Manager rotation steps).
    pub async fn conclude(&self, job: &Job, mut report: TokenReport, dry_run: bool) -> TokenReport {
        if !dry_run {
            self.diagnose(&mut report).await;
        }
        match (&report.outcome, &report.error) {
            (Outcome::Failed, Some(e)) => {
                error!(kind = %e.kind, error = %e.message, "rotation failed")
            }
            (Outcome::Rotated, _) => info!(
                version = %report.version.as_ref().map(|v| v.0.as_str()).unwrap_or("?"),
                expiry = report.expiry.as_deref().unwrap_or("?"),
                "rotated"
            ),
            (o, _) => info!(outcome = o.as_str(), "no rotation needed"),
        }
        if !dry_run {
            self.alert_and_record(job, &mut report).await;
        }
        report
    }

    async fn rotate_inner(&self, job: &Job, opts: RunOptions) -> TokenReport {
        let store = job.store.as_ref();
        let mut report = TokenReport::new(job);
        let fail = |mut r: TokenReport, kind: ErrorKind, message: String| {
            r.outcome = Outcome::Failed;
            r.error = Some(ReportError {
                kind,
                message: format!("token `{}`: {message}", r.name),
                deepvue_detail: None,
            });
            r
        };

        // Serialise with other runners on this host (file store), then decide from what is
        // stored *now*: a runner that waited sees the token the winner wrote.
        let _lock = if opts.dry_run {
            None
        } else {
            match store.lock().await {
                Ok(l) => l,
                Err(e) => return fail(report, e.kind, e.to_string()),
            }
        };
        let stored = match store.read_current().await {
            Ok(s) => s,
            Err(e) => return fail(report, e.kind, e.to_string()),
        };
        let now = Utc::now();
        if let Some(Stored { version, document }) = &stored {
            report.version = Some(version.clone());
            if let Ok(doc) = document {
                report.show(doc, now);
            }
        }
        let reason = match decide(stored.as_ref(), now, &job.config.policy, opts.force) {
            Decision::Fresh => {
                report.outcome = Outcome::Fresh;
                return report;
            }
            Decision::Throttled => {
                report.outcome = Outcome::Throttled;
                report.reason = Some(format!(
                    "due, but minted less than min_interval ({}) ago",
                    humantime::format_duration(job.config.policy.min_interval)
                ));
                return report;
            }
            Decision::Due(reason) => reason,
        };
        report.reason = Some(reason.to_string());
        if opts.dry_run {
            report.outcome = Outcome::WouldRotate;
            return report;
        }
        info!(reason = %reason, "token is due");

        let creds = match job.credentials.load().await {
            Ok(c) => c,
            Err(e) => return fail(report, e.kind, e.to_string()),
        };
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => return fail(report, e.kind(), e.to_string()),
        };
        let doc = match client.authorize(&creds).await {
            Ok(d) => d,
            Err(e) => {
                let left = format!("; {}", describe_left(report.expires_in_secs));
                let mut report = fail(report, e.kind(), format!("{e}{left}"));
                if let Some(err) = report.error.as_mut() {
                    err.deepvue_detail = e.deepvue_detail().map(str::to_string);
                }
                return report;
            }
        };
        drop(creds);
        let renew_before =
            chrono::Duration::from_std(job.config.policy.renew_before).unwrap_or_default();
        if doc.expires_in(Utc::now()) <= renew_before {
            warn!(
                expiry = %format_time(doc.expiry),
                "the new token expires within renew_before; rotation will repeat every min_interval"
            );
        }

        let expected = stored.as_ref().map(|s| s.version.clone());
        match store.write(&doc, expected.as_ref()).await {
            Ok(v) => {
                report.outcome = Outcome::Rotated;
                report.previous_version = expected;
                report.version = Some(v);
                report.show(&doc, Utc::now());
                report
            }
            Err(e) if e.kind == ErrorKind::Conflict => {
                info!(error = %e, "another runner rotated first; nothing written");
                report.outcome = Outcome::RotatedByAnotherRunner;
                if let Ok(Some(Stored { version, document })) = store.read_current().await {
                    report.version = Some(version);
                    if let Ok(d) = document {
                        report.show(&d, Utc::now());
                    }
                }
                report
            }
            Err(e) => fail(report, e.kind, e.to_string()),
        }
    }

    /// Egress diagnosis: on a 403 always (when probing is on), and on every run when
    /// `expected_ips` is set, so drift is seen before Deepvue starts answering 403.
    async fn diagnose(&self, report: &mut TokenReport) {
        let forbidden = report
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Forbidden);
        if !forbidden && self.config.egress.expected.is_empty() {
            return;
        }
        let Some(egress) = self.egress().await else {
            return;
        };
        if forbidden && let Some(e) = report.error.as_mut() {
            e.message = format!("{}; {}", e.message, egress.summary());
        }
        if !forbidden && !egress.outside_expected().is_empty() {
            warn!(egress = %egress.summary(), "egress drift: Deepvue will answer 403 once this IP is used to rotate");
        }
        report.egress = Some(egress);
    }

    /// Send due alerts and keep the last outcome plus alert state beside the token, for
    /// `status` and for dedup across runs. Best effort: a failure here is logged and recorded,
    /// and never changes the run's outcome.
    async fn alert_and_record(&self, job: &Job, report: &mut TokenReport) {
        let store = job.store.as_ref();
        // Where state costs API calls (AWS tags), keep it only for alerting, and only touch it
        // when something may need an alert or a resolve: this run failed or rotated (a
        // rotation is where open alerts resolve, even if another writer moved the version
        // that carried the flag), egress drifted, or the store flagged kept state on the
        // version it read. A healthy no-op stays one read.
        if store.state_costs_call() {
            let drift = report
                .egress
                .as_ref()
                .is_some_and(|e| !e.outside_expected().is_empty());
            let needed = matches!(
                report.outcome,
                Outcome::Failed | Outcome::Rotated | Outcome::RotatedByAnotherRunner
            ) || drift
                || store.state_flagged();
            if self.alerter.is_empty() || !needed {
                return;
            }
        }
        let previous = match store.read_state().await {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                warn!(error = %e, "cannot read the last run state");
                RunState::default()
            }
        };
        let now = Utc::now();
        let cfg = &self.config.alerting;
        let planned = alert::plan(report, report.egress.as_ref(), &previous.alerts, now, cfg);
        let mut delivered = Vec::new();
        let mut delivery_errors = Vec::new();
        for a in planned {
            let outcome = self.alerter.deliver(&a).await;
            delivery_errors.extend(outcome.failed.iter().cloned());
            report.alerts.push(outcome.clone());
            delivered.push((a, outcome));
        }
        let alerts = alert::next_state(
            report,
            report.egress.as_ref(),
            &previous.alerts,
            &delivered,
            now,
            cfg,
        );
        let recovered = previous.last_outcome.as_deref() == Some("failed");
        let mut state = match report.outcome {
            // A no-op keeps the last real outcome, unless it shows recovery from a failure.
            Outcome::Fresh | Outcome::Throttled | Outcome::WouldRotate if !recovered => {
                previous.clone()
            }
            Outcome::Fresh
            | Outcome::Throttled
            | Outcome::WouldRotate
            | Outcome::Rotated
            | Outcome::RotatedByAnotherRunner => RunState {
                last_run_at: Some(format_time(now)),
                last_outcome: Some(report.outcome.as_str().into()),
                ..RunState::default()
            },
            Outcome::Failed => RunState {
                last_run_at: Some(format_time(now)),
                last_outcome: Some("failed".into()),
                last_error: report
                    .error
                    .as_ref()
                    .map(|e| format!("{}: {}", e.kind, e.message)),
                consecutive_failures: previous.consecutive_failures.saturating_add(1),
                ..RunState::default()
            },
        };
        state.alerts = alerts;
        state.last_alert_error = if !delivery_errors.is_empty() {
            Some(format!(
                "{}: {}",
                format_time(now),
                delivery_errors.join("; ")
            ))
        } else if report.alerts.is_empty() {
            previous.last_alert_error.clone()
        } else {
            None
        };
        if state == previous && !store.state_needs_write() {
            return; // nothing new: a no-op run writes nothing
        }
        if let Err(e) = store.write_state(&state).await {
            warn!(error = %e, "cannot record the run state");
        }
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
    /// Whether a run now would rotate.
    pub due: bool,
    /// Why it is due.
    pub due_reason: Option<String>,
    /// The last recorded outcome.
    pub last_outcome: Option<String>,
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
}

/// Read every token's state without changing anything.
pub async fn status(jobs: &[Job], concurrency: usize) -> Vec<StatusRow> {
    futures::stream::iter(jobs)
        .map(status_one)
        .buffered(concurrency)
        .collect()
        .await
}

async fn status_one(job: &Job) -> StatusRow {
    let store = job.store.as_ref();
    let mut row = StatusRow {
        name: job.config.name.clone(),
        backend: store.backend(),
        secret_id: store.secret_id(),
        version: None,
        issued_at: None,
        expiry: None,
        expires_in_secs: None,
        due: false,
        due_reason: None,
        last_outcome: None,
        last_run_at: None,
        last_error: None,
        problem: None,
        active_alerts: Vec::new(),
        last_alert_error: None,
    };
    let now = Utc::now();
    match store.read_current().await {
        Ok(stored) => {
            if let Some(Stored { version, document }) = &stored {
                row.version = Some(version.clone());
                if let Ok(d) = document {
                    row.issued_at = Some(format_time(d.issued_at));
                    row.expiry = Some(format_time(d.expiry));
                    row.expires_in_secs = Some(d.expires_in(now).num_seconds());
                }
            }
            if let Decision::Due(reason) = decide(stored.as_ref(), now, &job.config.policy, false) {
                row.due = true;
                row.due_reason = Some(reason.to_string());
            }
        }
        Err(e) => row.problem = Some(e.to_string()),
    }
    match store.read_state().await {
        Ok(Some(s)) => {
            row.last_outcome = s.last_outcome;
            row.last_run_at = s.last_run_at;
            row.last_error = s.last_error;
            row.active_alerts = s
                .alerts
                .iter()
                .map(|(c, a)| {
                    let sev = match a.severity {
                        crate::alert::Severity::Warning => "warning",
                        crate::alert::Severity::Critical => "critical",
                    };
                    format!("{} ({sev} since {})", c.as_str(), a.since)
                })
                .collect();
            row.last_alert_error = s.last_alert_error;
        }
        Ok(None) => {}
        Err(e) => row.problem = row.problem.or(Some(e.to_string())),
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{DocumentError, TokenDocument};
    use chrono::TimeZone;
    use secrecy::SecretString;
    use std::time::Duration;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn stored(issued_ago_h: i64, expires_in_h: i64) -> Stored {
        Stored {
            version: Version("1".into()),
            document: Ok(TokenDocument {
                access_token: SecretString::from("t"),
                token_type: "bearer".into(),
                issued_at: now() - chrono::Duration::hours(issued_ago_h),
                expiry: now() + chrono::Duration::hours(expires_in_h),
            }),
        }
    }

    const POLICY: DuePolicy = DuePolicy {
        renew_before: Duration::from_secs(12 * 3600),
        min_interval: Duration::from_secs(600),
    };

    #[track_caller]
    fn check(stored: Option<&Stored>, force: bool, expect: &str) {
        let got = match decide(stored, now(), &POLICY, force) {
            Decision::Fresh => "fresh".to_string(),
            Decision::Throttled => "throttled".to_string(),
            Decision::Due(r) => format!("due: {r}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn due_policy() {
        check(None, false, "due: no token stored yet");
        let broken = Stored {
            version: Version("3".into()),
            document: Err(DocumentError("token document has no expiry".into())),
        };
        check(
            Some(&broken),
            false,
            "due: stored document unusable: token document has no expiry",
        );
        check(Some(&stored(1, 23)), false, "fresh");
        check(Some(&stored(11, 13)), false, "fresh");
        check(
            Some(&stored(12, 12)),
            false,
            "due: stored token expires in 12h00m",
        );
        check(
            Some(&stored(20, 4)),
            false,
            "due: stored token expires in 4h00m",
        );
        check(
            Some(&stored(30, -6)),
            false,
            "due: stored token expired 6h00m ago",
        );
        check(Some(&stored(1, 23)), true, "due: forced");
    }

    #[test]
    fn min_interval_guards_tight_loops_but_not_expiry() {
        // Deepvue handed out a 2h token: due at once, but not re-minted within 10 minutes.
        let mut s = stored(0, 2);
        if let Ok(d) = &mut s.document {
            d.issued_at = now() - chrono::Duration::minutes(5);
        }
        check(Some(&s), false, "throttled");
        if let Ok(d) = &mut s.document {
            d.issued_at = now() - chrono::Duration::minutes(11);
        }
        check(Some(&s), false, "due: stored token expires in 2h00m");
        // About to expire: never throttled.
        let mut s = stored(0, 0);
        if let Ok(d) = &mut s.document {
            d.issued_at = now() - chrono::Duration::minutes(1);
            d.expiry = now() + chrono::Duration::minutes(5);
        }
        check(Some(&s), false, "due: stored token expires in 5m00s");
    }
}
