//! Native Secrets Manager rotation of the token secret: AWS's template preamble, then
//! `createSecret` (mint only if AWSPENDING has no value), `setSecret` (nothing: Deepvue issues
//! the token), `testSecret` (the document parses and is unexpired), `finishSecret` (move
//! AWSCURRENT, drop AWSPENDING). Every step is replay-safe. The Secrets Manager calls are the
//! AWS store's; minting, egress diagnosis and alerts are the rotator's, so a rotation alerts
//! and resolves like a scheduled run.

use chrono::Utc;
use serde_json::{Value, json};
use tracing::{Instrument, info, warn};

use super::{Failure, RotationEvent, Step};
use crate::app::App;
use crate::backends::StoreConfig;
use crate::backends::aws::{AwsStore, CURRENT, PENDING, PendingWrite, secret_name};
use crate::core::document::format_time;
use crate::core::error::ErrorKind;
use crate::core::report::{Outcome, ReportError, TokenReport};
use crate::core::store::{StoreError, Stored, Version};
use crate::engine::rotator::{Job, Pass, token_span};

/// Run one rotation step.
pub(super) async fn run(app: &App, ev: RotationEvent) -> Result<Value, Failure> {
    let (job, store) = job_for(app, &ev.secret_id)?;
    info!(step = ?ev.step, secret_id = %ev.secret_id, version = %ev.token, token = %job.name, "rotation step");
    // One pass per invocation: the Deepvue client and the egress probe serve minting,
    // diagnosis and alerting alike.
    let r = Rotation {
        job,
        store,
        pass: app.rotator.pass(),
        ev: &ev,
    };
    r.run().await
}

/// The `[[tokens]]` entry whose store is this secret, and its AWS store addressed as the
/// event addresses it.
fn job_for<'a>(app: &'a App, secret_id: &str) -> Result<(&'a Job, AwsStore), Failure> {
    app.entries()
        .find_map(|(t, job)| match &t.store {
            StoreConfig::Aws(c) if c.is_secret(secret_id) => Some((
                job,
                c.build(app.clients.aws.clone()).addressed_as(secret_id),
            )),
            _ => None,
        })
        .ok_or_else(|| {
            Failure::new(
                ErrorKind::Config,
                format!(
                    "no [[tokens]] entry stores into secret `{secret_id}`: add one with \
                     store = {{ backend = \"aws\", secret_id = \"{}\" }} and its credentials",
                    secret_name(secret_id)
                ),
            )
        })
}

struct Rotation<'a> {
    job: &'a Job,
    store: AwsStore,
    pass: Pass<'a>,
    ev: &'a RotationEvent,
}

impl Rotation<'_> {
    /// A failure of `step`, naming the token and the secret.
    fn fail(&self, step: &str, kind: ErrorKind, message: impl std::fmt::Display) -> Failure {
        Failure::new(
            kind,
            format!(
                "token `{}`: aws secret `{}`: {step}: {message}",
                self.job.name, self.ev.secret_id
            ),
        )
    }

    /// A store error during `step` (the error already names the backend and secret).
    fn store_fail(&self, step: &str, e: StoreError) -> Failure {
        self.fail(step, e.kind, e.message)
    }

    async fn run(&self) -> Result<Value, Failure> {
        let ev = self.ev;
        // The template's preamble.
        let state = self
            .store
            .rotation_state()
            .await
            .map_err(|e| self.store_fail("DescribeSecret", e))?;
        if !state.enabled {
            return Err(self.fail(
                "preamble",
                ErrorKind::Config,
                "rotation is not enabled on this secret",
            ));
        }
        let Some(mine) = state.labels(&ev.token) else {
            return Err(self.fail(
                "preamble",
                ErrorKind::Permanent,
                format!("version {} is not a version of this secret", ev.token),
            ));
        };
        if mine.iter().any(|s| s == CURRENT) {
            if ev.step == Step::Finish && mine.iter().any(|s| s == PENDING) {
                // A finishSecret that moved AWSCURRENT but failed to drop AWSPENDING.
                self.store
                    .release_pending(&ev.token)
                    .await
                    .map_err(|e| self.store_fail("finishSecret", e))?;
            }
            info!(version = %ev.token, "already AWSCURRENT: nothing to do");
            if ev.step == Step::Finish {
                // Resolve alerts an interrupted finishSecret may have left open.
                self.conclude_success(None).await;
            }
            return Ok(json!({ "step": format!("{:?}", ev.step), "result": "already_current" }));
        }
        if !mine.iter().any(|s| s == PENDING) {
            return Err(self.fail(
                "preamble",
                ErrorKind::Permanent,
                format!(
                    "version {} is not AWSPENDING; another rotation moved on",
                    ev.token
                ),
            ));
        }
        let current = state.current().map(str::to_string);

        let result = match ev.step {
            Step::Create => match self.create().await {
                Ok(r) => r,
                // Alert like a scheduled run would (egress diagnosis on 403, dedup via the
                // token secret's state); the invocation still fails.
                Err(f) => return Err(self.conclude_failure(f).await),
            },
            Step::Set => "nothing to set: Deepvue issues the token itself",
            Step::Test => self.test().await?,
            Step::Finish => {
                self.store
                    .promote(&ev.token, current.as_deref())
                    .await
                    .map_err(|e| self.store_fail("finishSecret", e))?;
                self.store
                    .release_pending(&ev.token)
                    .await
                    .map_err(|e| self.store_fail("finishSecret", e))?;
                info!(version = %ev.token, previous = current.as_deref().unwrap_or("none"), "AWSCURRENT moved");
                self.conclude_success(current).await;
                "AWSCURRENT moved to the new version"
            }
        };
        Ok(json!({ "step": format!("{:?}", ev.step), "result": result }))
    }

    async fn test(&self) -> Result<&'static str, Failure> {
        let ev = self.ev;
        let doc = self
            .store
            .pending(&ev.token)
            .await
            .map_err(|e| self.store_fail("GetSecretValue", e))?
            .ok_or_else(|| {
                self.fail(
                    "testSecret",
                    ErrorKind::Permanent,
                    format!(
                        "version {} has no value; createSecret did not run",
                        ev.token
                    ),
                )
            })?
            .map_err(|e| {
                self.fail(
                    "testSecret",
                    ErrorKind::Permanent,
                    format!("AWSPENDING is not a usable token document: {e}"),
                )
            })?;
        if doc.expires_in(Utc::now()) <= chrono::Duration::zero() {
            return Err(self.fail(
                "testSecret",
                ErrorKind::Permanent,
                format!("AWSPENDING token expired at {}", format_time(doc.expiry)),
            ));
        }
        Ok("AWSPENDING holds a valid token document")
    }

    async fn create(&self) -> Result<&'static str, Failure> {
        let ev = self.ev;
        match self
            .store
            .pending(&ev.token)
            .await
            .map_err(|e| self.store_fail("GetSecretValue", e))?
        {
            Some(Ok(doc)) if doc.expires_in(Utc::now()) > chrono::Duration::zero() => {
                return Ok("AWSPENDING already holds a token (replay): nothing minted");
            }
            Some(Ok(doc)) => {
                // A stalled rotation retried after its token expired: versions are immutable,
                // so testSecret would fail forever. Release the label; Secrets Manager's next
                // rotation starts a fresh version.
                self.store
                    .release_pending(&ev.token)
                    .await
                    .map_err(|e| self.store_fail("createSecret", e))?;
                return Err(self.fail(
                    "createSecret",
                    ErrorKind::Permanent,
                    format!(
                        "version {} holds a token that expired at {} (a stalled rotation); \
                         AWSPENDING was removed from it, the next rotation mints afresh",
                        ev.token,
                        format_time(doc.expiry)
                    ),
                ));
            }
            Some(Err(e)) => {
                return Err(self.fail(
                    "createSecret",
                    ErrorKind::Permanent,
                    format!(
                        "version {} already holds an unusable value ({e}); versions are \
                         immutable: cancel this rotation and start a new one",
                        ev.token
                    ),
                ));
            }
            None => {}
        }
        let creds = self
            .job
            .credentials
            .load()
            .await
            .map_err(|e| self.fail("createSecret", e.kind, &e))?;
        let client = self
            .pass
            .rotator()
            .client()
            .await
            .map_err(|e| self.fail("createSecret", e.kind(), &e))?;
        // Repairs to the answer (a clamped expiry) were logged by the client.
        let doc = client
            .authorize(&creds, None)
            .await
            .map_err(|e| self.fail("createSecret", e.kind(), &e))?
            .doc;
        drop(creds);
        match self
            .store
            .put_pending(&ev.token, &doc, ev.rotation_token.as_deref())
            .await
            .map_err(|e| self.store_fail("PutSecretValue", e))?
        {
            PendingWrite::Written => {
                info!(version = %ev.token, expiry = %format_time(doc.expiry), "minted; AWSPENDING written");
                Ok("minted; AWSPENDING written")
            }
            // A concurrent createSecret for the same version won: its value stands.
            PendingWrite::Concurrent => {
                warn!(version = %ev.token, "AWSPENDING was written concurrently; keeping that value");
                Ok("AWSPENDING written by a concurrent invocation")
            }
        }
    }

    /// Report a failed createSecret through the rotator's diagnosis and alerting.
    async fn conclude_failure(&self, f: Failure) -> Failure {
        let job = self.job;
        let mut report = job.report();
        if let Ok(Some(Stored {
            version,
            document: Ok(doc),
            ..
        })) = job.store.read_current().await
        {
            report.version = Some(version);
            report.show(&doc, Utc::now());
        }
        report.error = Some(ReportError {
            kind: f.kind,
            message: f.message,
            deepvue_detail: None,
        });
        let report = self
            .pass
            .conclude(job, report, false)
            .instrument(token_span(job))
            .await;
        let message = report
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "createSecret failed".into());
        Failure::new(f.kind, message)
    }

    /// A finished rotation: resolve open alerts and record the outcome.
    async fn conclude_success(&self, previous: Option<String>) {
        let job = self.job;
        let mut report: TokenReport = job.report();
        report.outcome = Outcome::Rotated;
        report.reason = Some("Secrets Manager rotation".into());
        report.version = Some(Version(self.ev.token.clone()));
        report.previous_version = previous.map(Version);
        if let Ok(Some(Stored {
            document: Ok(doc), ..
        })) = job
            .store
            .read_version(&Version(self.ev.token.clone()))
            .await
        {
            report.show(&doc, Utc::now());
        }
        self.pass
            .conclude(job, report, false)
            .instrument(token_span(job))
            .await;
    }
}
