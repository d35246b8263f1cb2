//! The rotator: per token, read → decide → (a due token) take the lease from the version read
//! → read → decide → mint → conditional write → egress diagnosis, alerts and the recorded run
//! state → hand the lease back. Every step's result is a typed [`RunResult`].
//!
//! [`Rotator`] holds what lives as long as the process (the Deepvue client with its trust store
//! and connection pool, the alert sinks, the clock); a [`Pass`] holds what one pass over the
//! tokens learns (the egress probe), so a long-running process probes afresh each pass. The
//! lease a run takes is a value it owns; no store object remembers it.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::alerter::Alerter;
use super::deepvue::{DeepvueClient, DeepvueConfig, MintError, Minted};
use super::egress::{self, EgressConfig};
use super::record;
use crate::core::alert::{AlertPolicy, Severity};
use crate::core::clock::{Clock, SystemClock};
use crate::core::credentials::CredentialSource;
use crate::core::decide::{Decision, DuePolicy, DueReason, Force, decide};
use crate::core::document::{TokenDocument, format_time};
use crate::core::egress::EgressReport;
use crate::core::error::ErrorKind;
use crate::core::observe::Observer;
use crate::core::parts::StoreParts;
use crate::core::report::StatusRow;
use crate::core::result::{Failure, Held, Outcome, RunResult, TokenRef};
use crate::core::state::{RunState, StateRead};
use crate::core::store::{Lease, StateHint, Stored, Version, WriteMode};

/// What a run may do.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Rotate a fresh token too: `Always` (`--force`) ignores `renew_before` and
    /// `min_interval`; `Requested` (a push) never mints within `min_interval` of the last.
    pub force: Force,
    /// Decide and report, but never mint or write.
    pub dry_run: bool,
    /// Treat the token as due this much earlier than `renew_before` says (the daemon's
    /// per-replica jitter, so replicas and tokens spread out).
    pub early_by: std::time::Duration,
    /// Why the pass runs (the audit trail's `trigger`).
    pub trigger: super::audit::Trigger,
}

/// A configured token with its store and credential source built.
pub struct Job {
    /// The token's name.
    pub name: String,
    /// When it is due.
    pub policy: DuePolicy,
    /// Where its document (and run state) live: the primary store.
    pub store: StoreParts,
    /// Replica stores the primary's current token is copied to (their versions only; run
    /// state and alerts live with the primary).
    pub replicas: Vec<StoreParts>,
    /// Where its credentials come from.
    pub credentials: Box<dyn CredentialSource>,
    /// Whether each minted document also carries the client secret as `x_api_key`.
    pub publish_api_key: bool,
    /// What to run after a write this runner made.
    pub on_rotate: Option<super::hooks::RotateHook>,
}

impl Job {
    /// Which token, in which store.
    pub fn token_ref(&self) -> TokenRef {
        TokenRef {
            name: self.name.clone(),
            backend: self.store.tokens.backend(),
            secret_id: self.store.tokens.secret_id(),
        }
    }

    /// A failure of this token: the message names it.
    pub fn failure(&self, kind: ErrorKind, message: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            message: format!("token `{}`: {message}", self.name),
            deepvue_detail: None,
        }
    }
}

/// The tracing span every line about one token carries.
pub fn token_span(job: &Job) -> tracing::Span {
    info_span!(
        "token",
        token = %job.name,
        backend = job.store.tokens.backend(),
        secret_id = %job.store.tokens.secret_id()
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
/// loads a trust store) and then reused; the alert sinks; the clock.
pub struct Rotator {
    settings: Settings,
    client: OnceCell<Arc<DeepvueClient>>,
    alerter: Alerter,
    observer: Arc<dyn Observer>,
    clock: Arc<dyn Clock>,
    audit: Option<Arc<super::audit::AuditLog>>,
}

impl Rotator {
    /// A rotator with these settings and sinks, counting on `observer`, on the system clock.
    pub fn new(settings: Settings, alerter: Alerter, observer: Arc<dyn Observer>) -> Self {
        Rotator {
            settings,
            client: OnceCell::new(),
            alerter,
            observer,
            clock: Arc::new(SystemClock),
            audit: None,
        }
    }

    /// The same, recording every attempt to `audit`.
    pub fn with_audit(mut self, audit: Option<super::audit::AuditLog>) -> Self {
        self.audit = audit.map(Arc::new);
        self
    }

    /// The audit log, when one is configured.
    pub fn audit(&self) -> Option<&super::audit::AuditLog> {
        self.audit.as_deref()
    }

    /// The same on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock every decision reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Deepvue client, built on first use.
    pub async fn client(&self) -> Result<Arc<DeepvueClient>, MintError> {
        self.client
            .get_or_try_init(|| async {
                DeepvueClient::new(&self.settings.deepvue).map(|c| {
                    Arc::new(
                        c.observed_by(self.observer.clone())
                            .on_clock(self.clock.clone()),
                    )
                })
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

    /// One pass over `jobs`, at most `concurrency` at once; results in input order.
    pub async fn rotate_all<'j>(
        &self,
        jobs: impl IntoIterator<Item = &'j Job>,
        opts: RunOptions,
    ) -> Vec<RunResult> {
        self.pass().rotate_all(jobs, opts).await
    }

    /// Read every token's state without changing anything.
    pub async fn status<'j>(&self, jobs: impl IntoIterator<Item = &'j Job>) -> Vec<StatusRow> {
        let now = self.clock.now();
        futures::stream::iter(std::iter::zip(jobs, std::iter::repeat(now)))
            .map(status_one)
            .buffered(self.settings.concurrency)
            .collect()
            .await
    }
}

/// One `status` row, read at `now`.
async fn status_one((job, now): (&Job, chrono::DateTime<chrono::Utc>)) -> StatusRow {
    {
        let t = job.token_ref();
        let mut row = StatusRow {
            name: t.name,
            backend: t.backend,
            secret_id: t.secret_id,
            version: None,
            issued_at: None,
            expiry: None,
            expires_in_secs: None,
            renews_at: None,
            suspended: None,
            due: false,
            due_reason: None,
            last_outcome: None,
            last_run_at: None,
            last_error: None,
            problem: None,
            active_alerts: Vec::new(),
            last_alert_error: None,
            replicas: Vec::new(),
        };
        let mut primary = None;
        match job.store.tokens.read_current().await {
            Ok(stored) => {
                if let Some(s) = &stored {
                    row.version = Some(s.version.clone());
                    if let Ok(d) = &s.document {
                        row.issued_at = Some(format_time(d.issued_at));
                        row.expiry = Some(format_time(d.expiry));
                        row.expires_in_secs = Some(d.expires_in(now).num_seconds());
                        row.renews_at = chrono::Duration::from_std(job.policy.renew_before)
                            .ok()
                            .and_then(|b| d.expiry.checked_sub_signed(b))
                            .map(format_time);
                    }
                }
                if let Decision::Due(reason) = decide(stored.as_ref(), now, &job.policy, Force::No)
                {
                    row.due = true;
                    row.due_reason = Some(reason.to_string());
                }
                primary = stored.and_then(|s| s.document.ok());
            }
            Err(e) => row.problem = Some(e.to_string()),
        }
        match job.store.state.read_state().await {
            Ok(StateRead {
                bytes: Some(bytes), ..
            }) => {
                if let Some(s) = RunState::from_bytes(&bytes) {
                    row.suspended = s.suspended.as_ref().map(|s| s.describe());
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
            }
            Ok(_) => {}
            Err(e) => row.problem = row.problem.or(Some(e.to_string())),
        }
        row.replicas = futures::future::join_all(job.replicas.iter().map(|parts| async {
            let store = parts.tokens.as_ref();
            let mut r = crate::core::report::ReplicaStatus {
                backend: store.backend(),
                secret_id: store.secret_id(),
                version: None,
                expiry: None,
                in_sync: false,
                problem: None,
            };
            match store.read_current().await {
                Ok(Some(s)) => {
                    r.version = Some(s.version);
                    if let Ok(d) = &s.document {
                        r.expiry = Some(format_time(d.expiry));
                        r.in_sync = primary.as_ref().is_some_and(|p| p.same_token(d));
                    }
                }
                Ok(None) => {}
                Err(e) => r.problem = Some(e.to_string()),
            }
            r
        }))
        .await;
        row
    }
}

/// Why a pass told to stop did not mint.
const STOPPED: &str = "shutting down: stopped before minting; nothing minted";

/// One token's run, before its diagnosis and alerts.
struct Run {
    result: RunResult,
    /// Held until the run state is recorded.
    lease: Option<Lease>,
    /// What the token read showed about kept state.
    hint: StateHint,
    /// Whether to alert and record (false when another runner holds the rotation: the
    /// holder records).
    record: bool,
    /// The primary's current token as this run last saw it (the read that found it fresh, or
    /// its own write): the fan-out copies it without reading the primary again.
    primary: Option<TokenDocument>,
}

impl Run {
    fn done(result: RunResult, lease: Option<Lease>, hint: StateHint) -> Run {
        Run {
            result,
            lease,
            hint,
            record: true,
            primary: None,
        }
    }

    fn with_primary(mut self, doc: Option<TokenDocument>) -> Run {
        self.primary = doc;
        self
    }
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

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.rotator.clock.now()
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

    /// Every token of `jobs`, at most `concurrency` at once; results in input order.
    pub async fn rotate_all<'j>(
        &self,
        jobs: impl IntoIterator<Item = &'j Job>,
        opts: RunOptions,
    ) -> Vec<RunResult> {
        futures::stream::iter(jobs)
            .map(|job| self.rotate_token(job, opts))
            .buffered(self.rotator.settings.concurrency)
            .collect()
            .await
    }

    /// Rotate one token if due. Never panics; every failure ends in the result.
    ///
    /// A due token takes the store's lease, where it has one (the file store's flock, the GCP
    /// annotation), and holds it for the whole run, the alerts and the recorded run state
    /// included, so concurrent runs neither lose alert state nor send one alert twice. A token
    /// that is not due never takes it. When the lease cannot be had in time (a flock held past
    /// `lock_timeout`, a read-only filesystem), the store is read again without it: a token
    /// the holder has meanwhile made fresh is no failure (a warning, nothing recorded — the
    /// holder records); one still due fails with its real time left.
    pub async fn rotate_token(&self, job: &Job, opts: RunOptions) -> RunResult {
        let span = token_span(job);
        async {
            // Fan-out: the replicas are read while the primary is decided and minted, then
            // given what the primary holds now, whatever this run did there (a failed mint
            // still heals a replica that missed the last rotation).
            let fan = super::fanout::Fan {
                name: &job.name,
                primary: &job.store,
                replicas: &job.replicas,
            };
            let fans = !opts.dry_run && !job.replicas.is_empty();
            let (mut run, reads) = tokio::join!(self.rotate_inner(job, opts), async {
                if fans {
                    super::fanout::read(&fan).await
                } else {
                    Vec::new()
                }
            });
            if fans {
                run.result.replicas = super::fanout::copy(&fan, reads, run.primary.take()).await;
                if let Some(summary) = super::fanout::describe(&run.result.replicas) {
                    warn!(replicas = %summary, "fan-out incomplete; the next pass copies again");
                }
            }
            // Hooks after this runner's own write (and its fan-out), before alerts and state.
            if let (Outcome::Rotated { .. }, Some(hook)) = (&run.result.outcome, &job.on_rotate) {
                run.result.hooks = super::hooks::run(hook, &run.result).await;
            }
            // `token.rotated` to the sinks that take it (never the token).
            if matches!(run.result.outcome, Outcome::Rotated { .. })
                && self.rotator.alerter.takes(super::hooks::ROTATED)
            {
                let event = super::hooks::rotated_event(&run.result, self.now());
                let failed = self.rotator.alerter.event(&event).await;
                run.result.warnings.extend(failed);
            }
            let result = self
                .finish(job, run.result, run.hint, opts, run.record)
                .await;
            if let (Some(lease), Some(leases)) = (run.lease, &job.store.leases) {
                leases.release(lease).await;
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Finish a result: egress diagnosis (403 or drift), the outcome log line, and, when
    /// `record`, alerts and the recorded state.
    async fn finish(
        &self,
        job: &Job,
        mut r: RunResult,
        hint: StateHint,
        opts: RunOptions,
        record: bool,
    ) -> RunResult {
        let dry_run = opts.dry_run;
        if !dry_run {
            self.diagnose(&mut r).await;
        }
        match &r.outcome {
            Outcome::Failed(f) => error!(kind = %f.kind, error = %f.message, "rotation failed"),
            Outcome::Rotated { .. } => info!(
                version = %r.version().map_or("?", |v| v.0.as_str()),
                expiry = %r.expiry().map_or_else(|| "?".into(), format_time),
                "rotated"
            ),
            // A quiet daemon logs only what changed: a fresh token is a debug line.
            Outcome::Fresh => debug!(outcome = "fresh", "no rotation needed"),
            o => info!(outcome = o.as_str(), "no rotation needed"),
        }
        if !dry_run && record {
            let now = self.now();
            record::alert_and_record(
                job.store.state.as_ref(),
                &self.rotator.alerter,
                &self.rotator.settings.alerting,
                &mut r,
                hint,
                now,
            )
            .await;
        }
        let sinks_take = self.rotator.alerter.takes(super::audit::ATTEMPTED);
        if (self.rotator.audit.is_some() || sinks_take)
            && !dry_run
            && let Some(entry) = super::audit::Record::of(&r, opts.trigger, self.now())
        {
            if let Some(audit) = &self.rotator.audit
                && let Err(e) = audit.append(&entry).await
            {
                warn!(error = %e, "audit record not written");
                r.warnings.push(e);
            }
            if sinks_take {
                let failed = self.rotator.alerter.event(&entry.event()).await;
                r.warnings.extend(failed);
            }
        }
        r
    }

    /// Decide from an unlocked read; a due token then takes the lease and decides again under
    /// it. Returns the lease, to be held until the run state is recorded.
    async fn rotate_inner(&self, job: &Job, opts: RunOptions) -> Run {
        let mut r = RunResult::new(job.token_ref(), Outcome::Fresh);
        let Read { due, hint, fresh } = self.read_and_decide(job, opts, &mut r).await;
        let (mut stored, mut reason) = match due {
            Ok(Some(due)) => due,
            Ok(None) => return Run::done(r, None, hint).with_primary(fresh),
            Err(f) => return Run::done(failed(r, f), None, hint),
        };
        if opts.dry_run {
            r.outcome = Outcome::WouldRotate;
            return Run::done(r, None, hint);
        }
        if self.stopping() {
            return Run::done(
                failed(r, job.failure(ErrorKind::Transient, STOPPED)),
                None,
                hint,
            );
        }
        // Suspended by an operator: only a due token asks (a fresh pass costs no state read),
        // and only where state may be kept.
        if let Some(s) = self.suspension(job, hint).await {
            warn!(suspended = %s.describe(), "due, but suspended: not rotating");
            r.outcome = Outcome::Suspended { reason: s.reason };
            return Run::done(r, None, hint);
        }
        let lease = match &job.store.leases {
            None => None,
            Some(leases) => match leases.acquire(stored.as_ref().map(|s| &s.version)).await {
                Ok(l) => Some(l),
                // Someone else holds the rotation right now (a live lease): their write is the
                // rotation; this run writes nothing. Nothing is recorded either: the holder
                // records its own outcome (and alerts).
                Err(e) if e.kind == ErrorKind::Conflict => {
                    info!(error = %e, "another runner is rotating this token; nothing to do");
                    r.outcome = Outcome::RotatedByAnotherRunner;
                    return Run {
                        result: r,
                        lease: None,
                        hint,
                        record: false,
                        primary: None,
                    };
                }
                // The holder may have rotated while this run waited: read again, without it.
                Err(e) => return self.behind_busy_lease(job, opts, r, hint, e).await,
            },
        };
        if lease.is_some() {
            // Decide again from what is stored *now*: a runner that waited sees the token the
            // winner wrote.
            let again = self.read_and_decide(job, opts, &mut r).await;
            (stored, reason) = match again.due {
                Ok(Some(due)) => due,
                Ok(None) => return Run::done(r, lease, hint).with_primary(again.fresh),
                Err(f) => return Run::done(failed(r, f), lease, hint),
            };
        }
        let mut lease = lease;
        let (r, written) = self
            .mint_and_write(job, r, stored, reason, lease.as_mut())
            .await;
        Run::done(r, lease, hint).with_primary(written)
    }

    /// The lease could not be had (not because another runner holds it live): report from a
    /// read without it.
    async fn behind_busy_lease(
        &self,
        job: &Job,
        opts: RunOptions,
        mut r: RunResult,
        hint: StateHint,
        e: crate::core::store::StoreError,
    ) -> Run {
        let note =
            format!("could not take the rotation lock ({e}); reported from an unlocked read");
        match self.read_and_decide(job, opts, &mut r).await.due {
            Ok(None) => {
                warn!(error = %e, "rotation lock busy; the stored token is not due");
                r.warnings.push(note);
                Run {
                    result: r,
                    lease: None,
                    hint,
                    record: false,
                    primary: None,
                }
            }
            Ok(Some(_)) | Err(_) => Run::done(failed(r, job.failure(e.kind, &e)), None, hint),
        }
    }

    /// The token's suspension, if an operator set one (`None` too when the state cannot be
    /// read: that is reported by the state write at the end of the run).
    pub async fn suspension(
        &self,
        job: &Job,
        hint: StateHint,
    ) -> Option<crate::core::state::Suspension> {
        if hint == StateHint::None {
            return None;
        }
        let read = job.store.state.read_state().await.ok()?;
        RunState::from_bytes(read.bytes.as_deref()?)?.suspended
    }

    /// Whether this pass was told to stop minting.
    fn stopping(&self) -> bool {
        self.shutdown
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    /// The one mint path (scheduled passes, pushes, the daemon and native rotation protocols
    /// all come here): load the credentials, build the Deepvue client, authorize with its
    /// bounded retries, validate the answer. A stop lets the attempt in flight finish
    /// (Deepvue may already have issued a token: it is written) and only prevents further
    /// attempts.
    pub async fn mint(&self, job: &Job) -> Result<Minted, Failure> {
        let creds = job
            .credentials
            .load()
            .await
            .map_err(|e| job.failure(e.kind, &e))?;
        let client = self
            .rotator
            .client()
            .await
            .map_err(|e| job.failure(e.kind(), &e))?;
        if self.stopping() {
            return Err(job.failure(ErrorKind::Transient, STOPPED));
        }
        let mut minted = client
            .authorize(&creds, self.shutdown.as_ref())
            .await
            .map_err(|e| {
                let mut f = job.failure(e.kind(), &e);
                f.deepvue_detail = e.deepvue_detail().map(str::to_string);
                f
            })?;
        // The secret that minted this token, so readers get a matching pair.
        if job.publish_api_key {
            minted.doc.x_api_key = Some(creds.client_secret.clone());
        }
        drop(creds);
        let renew_before = chrono::Duration::from_std(job.policy.renew_before).unwrap_or_default();
        if minted.doc.expires_in(self.now()) <= renew_before {
            warn!(
                expiry = %format_time(minted.doc.expiry),
                "the new token expires within renew_before; rotation will repeat every min_interval"
            );
        }
        Ok(minted)
    }

    /// Mint, validate and write a due token (under its lease, when the store has one). With
    /// the result, the document written, when it was.
    async fn mint_and_write(
        &self,
        job: &Job,
        mut r: RunResult,
        stored: Option<Stored>,
        reason: DueReason,
        lease: Option<&mut Lease>,
    ) -> (RunResult, Option<TokenDocument>) {
        info!(reason = %reason, "token is due");
        let minted = match self.mint(job).await {
            Ok(m) => m,
            Err(f) => return (failed(r, f), None),
        };
        r.warnings.extend(minted.warnings);
        let doc = minted.doc;
        let expected = stored.map(|s| s.version);
        let store = job.store.tokens.as_ref();
        let mode = WriteMode::from_current(expected.as_ref(), lease.as_deref());
        match store.write(&doc, mode).await {
            Ok(v) => {
                if let Some(l) = lease {
                    l.spend();
                }
                r.outcome = Outcome::Rotated { previous: expected };
                r.current = Some(Held::new(v, Some(&doc)));
                (r, Some(doc))
            }
            Err(e) if e.kind == ErrorKind::Conflict => {
                info!(error = %e, "another runner rotated first; nothing written");
                r.outcome = Outcome::RotatedByAnotherRunner;
                let mut theirs = None;
                if let Ok(Some(s)) = store.read_current().await {
                    r.current = Some(Held::new(s.version, s.document.as_ref().ok()));
                    theirs = s.document.ok();
                }
                (r, theirs)
            }
            Err(e) => (failed(r, job.failure(e.kind, &e)), None),
        }
    }

    /// Read the current version and decide.
    async fn read_and_decide(&self, job: &Job, opts: RunOptions, r: &mut RunResult) -> Read {
        let stored = match job.store.tokens.read_current().await {
            Ok(s) => s,
            Err(e) => {
                return Read {
                    due: Err(job.failure(e.kind, &e)),
                    hint: StateHint::Unknown,
                    fresh: None,
                };
            }
        };
        let now = self.now();
        let hint = stored.as_ref().map_or(StateHint::Unknown, |s| s.state);
        r.current = stored
            .as_ref()
            .map(|s| Held::new(s.version.clone(), s.document.as_ref().ok()));
        let policy = DuePolicy {
            renew_before: job.policy.renew_before.saturating_add(opts.early_by),
            ..job.policy
        };
        let (due, fresh) = match decide(stored.as_ref(), now, &policy, opts.force) {
            Decision::Fresh => {
                r.outcome = Outcome::Fresh;
                r.due = None;
                (Ok(None), stored.and_then(|s| s.document.ok()))
            }
            Decision::Throttled => {
                r.outcome = Outcome::Throttled {
                    min_interval: job.policy.min_interval,
                };
                r.due = None;
                (Ok(None), stored.and_then(|s| s.document.ok()))
            }
            Decision::Due(reason) => {
                r.due = Some(reason.clone());
                (Ok(Some((stored, reason))), None)
            }
        };
        Read { due, hint, fresh }
    }

    /// Egress diagnosis: on a 403 always (when probing is on), and on every run when
    /// `expected_ips` is set, so drift is seen before Deepvue starts answering 403.
    async fn diagnose(&self, r: &mut RunResult) {
        let forbidden = r.failure().is_some_and(|f| f.kind == ErrorKind::Forbidden);
        if !forbidden && self.rotator.settings.egress.expected.is_empty() {
            return;
        }
        let Some(egress) = self.egress().await else {
            return;
        };
        if forbidden && let Outcome::Failed(f) = &mut r.outcome {
            f.message = format!("{}; {}", f.message, egress.summary());
        }
        if !forbidden && !egress.outside_expected().is_empty() {
            warn!(egress = %egress.summary(), "egress drift: Deepvue will answer 403 once this IP is used to rotate");
        }
        r.egress = Some(egress);
    }

    /// Conclude a run a platform protocol made (a native rotation step): diagnosis, the log
    /// line, alerts and the recorded state, as [`Pass::rotate_token`] concludes its own.
    pub async fn conclude(&self, job: &Job, r: RunResult) -> RunResult {
        let opts = RunOptions {
            trigger: super::audit::Trigger::Rotation,
            ..RunOptions::default()
        };
        self.finish(job, r, StateHint::Unknown, opts, true)
            .instrument(token_span(job))
            .await
    }

    /// What the store holds now, for a result a platform protocol made.
    pub async fn held(&self, job: &Job, version: Option<&Version>) -> Option<Held> {
        let read = match version {
            Some(v) => job.store.tokens.read_version(v).await,
            None => job.store.tokens.read_current().await,
        };
        read.ok()
            .flatten()
            .map(|s| Held::new(s.version, s.document.as_ref().ok()))
    }
}

/// A read and its decision: `Ok(None)` not due (the result says why), `Ok(Some(..))` due,
/// with what was read and why.
struct Read {
    due: Result<Option<(Option<Stored>, DueReason)>, Failure>,
    hint: StateHint,
    /// A token found not due: the primary's current token.
    fresh: Option<TokenDocument>,
}

/// `r` failed with `f`.
fn failed(mut r: RunResult, f: Failure) -> RunResult {
    r.outcome = Outcome::Failed(f);
    r
}
