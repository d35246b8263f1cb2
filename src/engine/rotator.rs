//! The rotator: per token, read → decide → (a due token) lock from the version read → read →
//! decide → load credentials → mint → validate → conditional write → report, egress
//! diagnosis, alerts and the recorded run state → release the lock.
//!
//! [`Rotator`] holds what lives as long as the process (the Deepvue client with its trust store
//! and connection pool, the alert sinks); a [`Pass`] holds what one pass over the tokens learns
//! (the egress probe), so a long-running process probes afresh each pass.

use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::alerter::Alerter;
use super::deepvue::{DeepvueClient, DeepvueConfig, MintError};
use super::egress::{self, EgressConfig};
use crate::core::alert::{self, AlertPolicy, Severity};
use crate::core::credentials::CredentialSource;
use crate::core::decide::{Decision, DuePolicy, DueReason, decide};
use crate::core::document::format_time;
use crate::core::egress::EgressReport;
use crate::core::error::ErrorKind;
use crate::core::observe::Observer;
use crate::core::report::{Outcome, ReportError, StatusRow, TokenReport};
use crate::core::state::RunState;
use crate::core::store::{
    RotationLock, StateMark, StatePolicy, StateRead, Stored, TokenStore, WriteMode,
};

/// What a run may do.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Rotate even if the stored token is fresh (ignores `renew_before` and `min_interval`).
    pub force: bool,
    /// Decide and report, but never mint or write.
    pub dry_run: bool,
    /// Treat the token as due this much earlier than `renew_before` says (the daemon's
    /// per-replica jitter, so replicas and tokens spread out).
    pub early_by: std::time::Duration,
}

/// A configured token with its store and credential source built.
pub struct Job {
    /// The token's name.
    pub name: String,
    /// When it is due.
    pub policy: DuePolicy,
    /// Where its document lives.
    pub store: Box<dyn TokenStore>,
    /// Where its credentials come from.
    pub credentials: Box<dyn CredentialSource>,
}

impl Job {
    /// A blank report for this job.
    pub fn report(&self) -> TokenReport {
        TokenReport::new(&self.name, self.store.backend(), self.store.secret_id())
    }
}

/// The tracing span every line about one token carries.
pub fn token_span(job: &Job) -> tracing::Span {
    info_span!(
        "token",
        token = %job.name,
        backend = job.store.backend(),
        secret_id = %job.store.secret_id()
    )
}

/// What the rotator needs from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `[deepvue]`.
    pub deepvue: DeepvueConfig,
    /// `[egress]`.
    pub egress: EgressConfig,
    /// `[alerting]`.
    pub alerting: AlertPolicy,
    /// Tokens processed at once.
    pub concurrency: usize,
}

/// Long-lived state: the Deepvue client is built on first need only (so a no-op run never
/// loads a trust store) and then reused; the alert sinks.
pub struct Rotator {
    settings: Settings,
    client: OnceCell<Arc<DeepvueClient>>,
    alerter: Alerter,
    observer: Arc<dyn Observer>,
}

impl Rotator {
    /// A rotator with these settings and sinks, counting on `observer`.
    pub fn new(settings: Settings, alerter: Alerter, observer: Arc<dyn Observer>) -> Self {
        Rotator {
            settings,
            client: OnceCell::new(),
            alerter,
            observer,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Deepvue client, built on first use.
    pub async fn client(&self) -> Result<Arc<DeepvueClient>, MintError> {
        self.client
            .get_or_try_init(|| async {
                DeepvueClient::new(&self.settings.deepvue)
                    .map(|c| Arc::new(c.observed_by(self.observer.clone())))
            })
            .await
            .cloned()
    }

    /// The alert sinks.
    pub fn alerter(&self) -> &Alerter {
        &self.alerter
    }

    /// A new pass: what it learns (the egress probe) is its own.
    pub fn pass(&self) -> Pass<'_> {
        Pass {
            rotator: self,
            egress: OnceCell::new(),
            shutdown: None,
        }
    }

    /// One pass over `jobs`, at most `concurrency` at once; reports in input order.
    pub async fn rotate_all<'j>(
        &self,
        jobs: impl IntoIterator<Item = &'j Job>,
        opts: RunOptions,
    ) -> Vec<TokenReport> {
        self.pass().rotate_all(jobs, opts).await
    }
}

/// Why a pass told to stop did not mint.
const STOPPED: &str = "shutting down: stopped before minting; nothing minted";

/// One token's run, before its diagnosis and alerts.
struct Run {
    report: TokenReport,
    /// Held until the run state is recorded.
    lock: Option<RotationLock>,
    /// Whether to alert and record (false for a run that could not lock a token that turned
    /// out not to be due: the lock holder records).
    record: bool,
}

/// One pass over some tokens.
pub struct Pass<'r> {
    rotator: &'r Rotator,
    egress: OnceCell<Option<EgressReport>>,
    shutdown: Option<CancellationToken>,
}

impl Pass<'_> {
    /// Stop minting when `shutdown` is cancelled: a token not yet minted fails ("shutting
    /// down"); one already minted is still written, so nothing minted is ever lost.
    pub fn until(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// The rotator this pass belongs to.
    pub fn rotator(&self) -> &Rotator {
        self.rotator
    }

    /// Probe the egress IP once per pass (shared by all its tokens); `None` when probing is
    /// disabled or the Deepvue client cannot be built.
    pub async fn egress(&self) -> Option<EgressReport> {
        let e = &self.rotator.settings.egress;
        if !e.probe {
            return None;
        }
        self.egress
            .get_or_init(|| async {
                let client = self.rotator.client().await.ok()?;
                let report =
                    egress::probe(client.http(), &e.probe_urls, &e.expected, e.probe_timeout).await;
                Some(report)
            })
            .await
            .clone()
    }

    /// Every token of `jobs`, at most `concurrency` at once; reports in input order.
    pub async fn rotate_all<'j>(
        &self,
        jobs: impl IntoIterator<Item = &'j Job>,
        opts: RunOptions,
    ) -> Vec<TokenReport> {
        futures::stream::iter(jobs)
            .map(|job| self.rotate_token(job, opts))
            .buffered(self.rotator.settings.concurrency)
            .collect()
            .await
    }

    /// Rotate one token if due. Never panics; every failure ends in the report.
    ///
    /// A due token takes the store's rotation lock (the file store's flock, a lease elsewhere)
    /// and holds it for the whole run, the alerts and the recorded run state included, so
    /// concurrent runs neither lose alert state nor send one alert twice. A token that is not
    /// due never takes it. When the lock cannot be taken (held past `lock_timeout`, a read-only
    /// filesystem), the store is read again without it: a token the holder has meanwhile made
    /// fresh is no failure (a warning, nothing recorded — the holder records); one still due
    /// fails with its real time left.
    pub async fn rotate_token(&self, job: &Job, opts: RunOptions) -> TokenReport {
        let span = token_span(job);
        async {
            let run = self.rotate_inner(job, opts).await;
            let report = self.finish(job, run.report, opts.dry_run, run.record).await;
            // Hand the lock back, waiting for the store when that takes a call (a lease).
            if let Some(lock) = run.lock {
                lock.release().await;
            }
            report
        }
        .instrument(span)
        .await
    }

    /// Finish a report: egress diagnosis (403 or drift), the outcome log line, alerts and the
    /// recorded state. Used by [`Pass::rotate_token`] and by adapters that run their own
    /// protocol (the Secrets Manager rotation steps).
    pub async fn conclude(&self, job: &Job, report: TokenReport, dry_run: bool) -> TokenReport {
        self.finish(job, report, dry_run, true).await
    }

    /// [`Pass::conclude`]; `record` false skips alerts and the recorded state.
    async fn finish(
        &self,
        job: &Job,
        mut report: TokenReport,
        dry_run: bool,
        record: bool,
    ) -> TokenReport {
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
        if !dry_run && record {
            self.alert_and_record(job, &mut report).await;
        }
        report
    }

    /// Decide from an unlocked read; a due token then takes the store's lock and decides again
    /// under it. Returns the lock, to be held until the run state is recorded.
    async fn rotate_inner(&self, job: &Job, opts: RunOptions) -> Run {
        let mut report = job.report();
        let done = |report, lock| Run {
            report,
            lock,
            record: true,
        };
        let (mut stored, mut reason) = match self.read_and_decide(job, opts, &mut report).await {
            Ok(Some(due)) => due,
            Ok(None) => return done(report, None),
            Err((kind, message)) => return done(fail(report, kind, message), None),
        };
        if opts.dry_run {
            report.outcome = Outcome::WouldRotate;
            return done(report, None);
        }
        if self.stopping() {
            return done(fail(report, ErrorKind::Transient, STOPPED.into()), None);
        }
        let lock = match job
            .store
            .lock_from(stored.as_ref().map(|s| &s.version))
            .await
        {
            Ok(l) => l,
            // Someone else holds the rotation right now (a live lease): their write is the
            // rotation; this run writes nothing.
            // Nothing is recorded either: the holder records its own outcome (and alerts).
            Err(e) if e.kind == ErrorKind::Conflict => {
                info!(error = %e, "another runner is rotating this token; nothing to do");
                report.outcome = Outcome::RotatedByAnotherRunner;
                return Run {
                    report,
                    lock: None,
                    record: false,
                };
            }
            // The holder may have rotated while this run waited: read again, unlocked.
            Err(e) => {
                let note = format!(
                    "could not take the rotation lock ({e}); reported from an unlocked read"
                );
                return match self.read_and_decide(job, opts, &mut report).await {
                    Ok(None) => {
                        warn!(error = %e, "rotation lock busy; the stored token is not due");
                        report.warnings.push(note);
                        Run {
                            report,
                            lock: None,
                            record: false,
                        }
                    }
                    Ok(Some(_)) | Err(_) => done(fail(report, e.kind, e.to_string()), None),
                };
            }
        };
        if lock.is_some() {
            // Decide again from what is stored *now*: a runner that waited sees the token the
            // winner wrote.
            (stored, reason) = match self.read_and_decide(job, opts, &mut report).await {
                Ok(Some(due)) => due,
                Ok(None) => return done(report, lock),
                Err((kind, message)) => return done(fail(report, kind, message), lock),
            };
        }
        let report = self.mint_and_write(job, report, stored, reason).await;
        done(report, lock)
    }

    /// Whether this pass was told to stop minting.
    fn stopping(&self) -> bool {
        self.shutdown
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// Mint, validate and write a due token (under its lock, when the store has one).
    async fn mint_and_write(
        &self,
        job: &Job,
        mut report: TokenReport,
        stored: Option<Stored>,
        reason: DueReason,
    ) -> TokenReport {
        let store = job.store.as_ref();

        info!(reason = %reason, "token is due");

        let creds = match job.credentials.load().await {
            Ok(c) => c,
            Err(e) => return fail(report, e.kind, e.to_string()),
        };
        let client = match self.rotator.client().await {
            Ok(c) => c,
            Err(e) => return fail(report, e.kind(), e.to_string()),
        };
        if self.stopping() {
            return fail(report, ErrorKind::Transient, STOPPED.into());
        }
        // A stop lets the attempt in flight finish (Deepvue may already have issued a token:
        // it is written), and only prevents further attempts.
        let minted = client.authorize(&creds, self.shutdown.as_ref()).await;
        let doc = match minted {
            Ok(m) => {
                report.warnings.extend(m.warnings);
                m.doc
            }
            Err(e) => {
                let mut report = fail(report, e.kind(), e.to_string());
                if let Some(err) = report.error.as_mut() {
                    err.deepvue_detail = e.deepvue_detail().map(str::to_string);
                }
                return report;
            }
        };
        drop(creds);
        let renew_before = chrono::Duration::from_std(job.policy.renew_before).unwrap_or_default();
        if doc.expires_in(Utc::now()) <= renew_before {
            warn!(
                expiry = %format_time(doc.expiry),
                "the new token expires within renew_before; rotation will repeat every min_interval"
            );
        }

        let expected = stored.as_ref().map(|s| s.version.clone());
        match store
            .write(&doc, WriteMode::from_current(expected.as_ref()))
            .await
        {
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
                if let Ok(Some(Stored {
                    version, document, ..
                })) = store.read_current().await
                {
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

    /// Read the current version and decide. `Ok(None)`: not due (the report says why);
    /// `Ok(Some(..))`: due, with what was read and why.
    async fn read_and_decide(
        &self,
        job: &Job,
        opts: RunOptions,
        report: &mut TokenReport,
    ) -> Result<Option<(Option<Stored>, DueReason)>, (ErrorKind, String)> {
        let stored = job
            .store
            .read_current()
            .await
            .map_err(|e| (e.kind, e.to_string()))?;
        let now = Utc::now();
        if let Some(s) = &stored {
            report.version = Some(s.version.clone());
            report.state_mark = s.state;
            if let Ok(doc) = &s.document {
                report.show(doc, now);
            }
        }
        let policy = DuePolicy {
            renew_before: job.policy.renew_before.saturating_add(opts.early_by),
            ..job.policy
        };
        match decide(stored.as_ref(), now, &policy, opts.force) {
            Decision::Fresh => {
                report.outcome = Outcome::Fresh;
                report.reason = None;
                Ok(None)
            }
            Decision::Throttled => {
                report.outcome = Outcome::Throttled;
                report.reason = Some(format!(
                    "due, but minted less than min_interval ({}) ago",
                    humantime::format_duration(job.policy.min_interval)
                ));
                Ok(None)
            }
            Decision::Due(reason) => {
                report.reason = Some(reason.to_string());
                Ok(Some((stored, reason)))
            }
        }
    }

    /// Egress diagnosis: on a 403 always (when probing is on), and on every run when
    /// `expected_ips` is set, so drift is seen before Deepvue starts answering 403.
    async fn diagnose(&self, report: &mut TokenReport) {
        let forbidden = report
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::Forbidden);
        if !forbidden && self.rotator.settings.egress.expected.is_empty() {
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
        let alerter = &self.rotator.alerter;
        // Where state costs API calls (AWS tags), keep it only for alerting, and only touch it
        // when something may need an alert or a resolve: this run failed or rotated (a
        // rotation is where open alerts resolve, even if another writer moved the version
        // that carried the flag), egress drifted, or the read showed kept state. A healthy
        // no-op stays one read.
        if store.state_policy() == StatePolicy::AlertsOnly {
            let drift = report
                .egress
                .as_ref()
                .is_some_and(|e| !e.outside_expected().is_empty());
            let needed = matches!(
                report.outcome,
                Outcome::Failed | Outcome::Rotated | Outcome::RotatedByAnotherRunner
            ) || drift
                || report.state_mark != StateMark::None;
            if alerter.is_empty() || !needed {
                return;
            }
        }
        let read = match store.read_state().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "cannot read the last run state");
                StateRead::default()
            }
        };
        let previous = read.state.clone().unwrap_or_default();
        let now = Utc::now();
        let cfg = &self.rotator.settings.alerting;
        let planned = alert::plan(report, report.egress.as_ref(), &previous.alerts, now, cfg);
        let mut delivered = Vec::new();
        let mut delivery_errors = Vec::new();
        for a in planned {
            let outcome = alerter.deliver(&a).await;
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
        if state == previous && !read.needs_write {
            return; // nothing new: a no-op run writes nothing
        }
        if let Err(e) = store.write_state(&state, &read).await {
            warn!(error = %e, "cannot record the run state");
        }
    }
}

/// Mark a report failed with this class and message (prefixed with the token name).
fn fail(mut r: TokenReport, kind: ErrorKind, message: String) -> TokenReport {
    r.outcome = Outcome::Failed;
    r.error = Some(ReportError {
        kind,
        message: format!("token `{}`: {message}", r.name),
        deepvue_detail: None,
    });
    r
}

/// Read every token's state without changing anything.
pub async fn status<'j>(
    jobs: impl IntoIterator<Item = &'j Job>,
    concurrency: usize,
) -> Vec<StatusRow> {
    futures::stream::iter(jobs)
        .map(status_one)
        .buffered(concurrency)
        .collect()
        .await
}

async fn status_one(job: &Job) -> StatusRow {
    let store = job.store.as_ref();
    let mut row = StatusRow {
        name: job.name.clone(),
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
            if let Some(s) = &stored {
                row.version = Some(s.version.clone());
                if let Ok(d) = &s.document {
                    row.issued_at = Some(format_time(d.issued_at));
                    row.expiry = Some(format_time(d.expiry));
                    row.expires_in_secs = Some(d.expires_in(now).num_seconds());
                }
            }
            if let Decision::Due(reason) = decide(stored.as_ref(), now, &job.policy, false) {
                row.due = true;
                row.due_reason = Some(reason.to_string());
            }
        }
        Err(e) => row.problem = Some(e.to_string()),
    }
    match store.read_state().await {
        Ok(StateRead { state: Some(s), .. }) => {
            row.last_outcome = s.last_outcome;
            row.last_run_at = s.last_run_at;
            row.last_error = s.last_error;
            row.active_alerts = s
                .alerts
                .iter()
                .map(|(c, a)| {
                    let sev = match a.severity {
                        Severity::Warning => "warning",
                        Severity::Critical => "critical",
                    };
                    format!("{} ({sev} since {})", c.as_str(), a.since)
                })
                .collect();
            row.last_alert_error = s.last_alert_error;
        }
        Ok(_) => {}
        Err(e) => row.problem = row.problem.or(Some(e.to_string())),
    }
    row
}
