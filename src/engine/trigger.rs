//! The engine's side of platform triggers: a [`TriggerHost`] over one pass and one job, so a
//! backend's native rotation protocol mints through the one mint path and concludes through
//! the same diagnosis, alerts and recorded state as a scheduled run.

use async_trait::async_trait;
use tracing::Instrument;

use super::rotator::{Job, Pass, token_span};
use crate::core::decide::DueReason;
use crate::core::document::TokenDocument;
use crate::core::error::ErrorKind;
use crate::core::result::{Failure, Outcome, RunResult};
use crate::core::store::Version;
use crate::core::trigger::{RotationStep, TriggerHost};

/// One job's host for a platform protocol, within one pass.
struct Host<'a> {
    pass: &'a Pass<'a>,
    job: &'a Job,
    /// Why the platform rotates, for the result (`Secrets Manager rotation`).
    why: &'static str,
}

#[async_trait]
impl TriggerHost for Host<'_> {
    fn token(&self) -> &str {
        &self.job.name
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.pass.rotator().clock().now()
    }

    async fn mint(&self) -> Result<TokenDocument, Failure> {
        if let Some(s) = self
            .pass
            .suspension(self.job, crate::core::store::StateHint::Unknown)
            .await
        {
            return Err(self.job.failure(
                ErrorKind::Permanent,
                format!(
                    "suspended {}; nothing minted (deepvue-rotator resume --token {})",
                    s.describe(),
                    self.job.name
                ),
            ));
        }
        // Repairs to the answer (a clamped expiry) were logged by the client.
        self.pass.mint(self.job).await.map(|m| m.doc)
    }

    async fn rotated(&self, version: Version, previous: Option<Version>) {
        let mut r = RunResult::new(self.job.token_ref(), Outcome::Rotated { previous });
        r.due = Some(DueReason::Requested(self.why.into()));
        r.current = self.pass.held(self.job, Some(&version)).await;
        self.pass.conclude(self.job, r).await;
    }

    async fn failed(&self, failure: Failure) -> Failure {
        let mut r = RunResult::new(self.job.token_ref(), Outcome::Failed(failure.clone()));
        r.current = self.pass.held(self.job, None).await;
        let r = self.pass.conclude(self.job, r).await;
        r.failure().cloned().unwrap_or(failure)
    }
}

impl Pass<'_> {
    /// Run one step of `job`'s store's native rotation protocol; `why` names the platform in
    /// the recorded result.
    pub async fn native_step(
        &self,
        job: &Job,
        step: &RotationStep,
        why: &'static str,
    ) -> Result<String, Failure> {
        let Some(native) = job.store.native.clone() else {
            return Err(job.failure(
                ErrorKind::Config,
                format!(
                    "the {} store runs no native rotation protocol",
                    job.store.tokens.backend()
                ),
            ));
        };
        let host = Host {
            pass: self,
            job,
            why,
        };
        native.step(step, &host).instrument(token_span(job)).await
    }
}
