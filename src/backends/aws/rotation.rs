//! Secrets Manager's native rotation protocol on the token secret, as the backend's
//! [`NativeRotation`]: AWS's template preamble, then `createSecret` (mint only if AWSPENDING
//! has no value), `setSecret` (nothing: Deepvue issues the token), `testSecret` (the document
//! parses and is unexpired), `finishSecret` (move AWSCURRENT, drop AWSPENDING). Every step is
//! replay-safe. Minting, egress diagnosis, alerts and recorded state come from the engine
//! through the [`TriggerHost`], so a rotation alerts and resolves like a scheduled run; the
//! Lambda mode only parses the event and routes it here.
//!
//! The Secrets Manager calls (the preamble's view of the secret, the AWSPENDING value,
//! putting, promoting and releasing it) live beside the store's own, so no call is written
//! twice.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::SdkError;
use secrecy::ExposeSecret;
use tracing::{info, warn};

use super::errors::sm_code;
use super::store::{AwsStore, CURRENT};
use crate::core::document::{DocumentError, TokenDocument};
use crate::core::error::ErrorKind;
use crate::core::result::Failure;
use crate::core::store::{StoreError, Version};
use crate::core::trigger::{NativeRotation, RotationStep, StepKind, TriggerHost};
use crate::support::time::format_time;

/// The staging label of a version being rotated in.
pub const PENDING: &str = "AWSPENDING";

/// What the rotation preamble needs to know about the secret.
#[derive(Clone, Debug)]
pub struct RotationState {
    /// `RotationEnabled`.
    pub enabled: bool,
    /// `VersionIdsToStages`.
    pub stages: HashMap<String, Vec<String>>,
}

impl RotationState {
    /// The labels on a version, if it is a version of this secret.
    pub fn labels(&self, version: &str) -> Option<&[String]> {
        self.stages.get(version).map(Vec::as_slice)
    }

    /// The version carrying AWSCURRENT.
    pub fn current(&self) -> Option<&str> {
        self.stages
            .iter()
            .find(|(_, v)| v.iter().any(|x| x == CURRENT))
            .map(|(k, _)| k.as_str())
    }
}

/// How a `put_pending` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingWrite {
    /// Our value is AWSPENDING.
    Written,
    /// A concurrent invocation for the same version wrote first; its value stands.
    Concurrent,
}

impl AwsStore {
    /// `DescribeSecret` for the preamble.
    pub async fn rotation_state(&self) -> Result<RotationState, StoreError> {
        let d = self
            .describe()
            .await?
            .ok_or_else(|| self.err(ErrorKind::Config, "the secret does not exist".into()))?;
        Ok(RotationState {
            enabled: d.rotation_enabled() == Some(true),
            stages: d.version_ids_to_stages().cloned().unwrap_or_default(),
        })
    }

    /// The AWSPENDING value of `version`: `None` when it has none yet.
    pub async fn pending(
        &self,
        version: &str,
    ) -> Result<Option<Result<TokenDocument, DocumentError>>, StoreError> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(self.secret())
            .version_id(version)
            .version_stage(PENDING)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Self::document(out.secret_string()))),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.sdk_err(&e, "GetSecretValue")),
        }
    }

    /// Put `doc` as `version` with only the AWSPENDING label (AWSCURRENT stays where it is).
    pub async fn put_pending(
        &self,
        version: &str,
        doc: &TokenDocument,
        rotation_token: Option<&str>,
    ) -> Result<PendingWrite, StoreError> {
        let client = self.client().await?;
        let json = doc.to_json();
        let req = client
            .put_secret_value()
            .secret_id(self.secret())
            .client_request_token(version)
            .secret_string(json.expose_secret())
            .version_stages(PENDING)
            .set_rotation_token(rotation_token.map(str::to_string));
        match req.send().await {
            Ok(_) => Ok(PendingWrite::Written),
            Err(SdkError::ServiceError(se)) if se.err().is_resource_exists_exception() => {
                Ok(PendingWrite::Concurrent)
            }
            Err(e) => Err(self.sdk_err(&e, "PutSecretValue")),
        }
    }

    /// Move AWSCURRENT to `version` (AWSPREVIOUS follows by itself). A moved AWSCURRENT since
    /// `current` was read is a race: transient.
    pub async fn promote(&self, version: &str, current: Option<&str>) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .update_secret_version_stage()
            .secret_id(self.secret())
            .version_stage(CURRENT)
            .move_to_version_id(version)
            .set_remove_from_version_id(current.map(str::to_string))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let mut err = self.sdk_err(&e, "UpdateSecretVersionStage");
                if sm_code(&e) == Some("InvalidParameterException") {
                    err.kind = ErrorKind::Transient;
                }
                err
            })
    }

    /// Take AWSPENDING off `version`.
    pub async fn release_pending(&self, version: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .update_secret_version_stage()
            .secret_id(self.secret())
            .version_stage(PENDING)
            .remove_from_version_id(version)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.sdk_err(&e, "UpdateSecretVersionStage"))
    }
}

#[async_trait]
impl NativeRotation for AwsStore {
    async fn step(&self, step: &RotationStep, host: &dyn TriggerHost) -> Result<String, Failure> {
        info!(step = ?step.step, secret_id = %step.secret_id, version = %step.version, token = %host.token(), "rotation step");
        let r = Rotation {
            // Every call and message uses the id Secrets Manager gave.
            store: self.clone().addressed_as(&step.secret_id),
            step,
            host,
        };
        r.run().await
    }
}

struct Rotation<'a> {
    store: AwsStore,
    step: &'a RotationStep,
    host: &'a dyn TriggerHost,
}

impl Rotation<'_> {
    /// A failure of `step`, naming the token and the secret.
    fn fail(&self, step: &str, kind: ErrorKind, message: impl std::fmt::Display) -> Failure {
        Failure {
            kind,
            message: format!(
                "token `{}`: aws secret `{}`: {step}: {message}",
                self.host.token(),
                self.step.secret_id
            ),
            deepvue_detail: None,
        }
    }

    /// A failure the engine reported (it names the token), placed in `step`.
    fn within(&self, step: &str, f: Failure) -> Failure {
        let prefix = format!("token `{}`: ", self.host.token());
        let message = f.message.strip_prefix(&prefix).unwrap_or(&f.message);
        Failure {
            message: format!(
                "{prefix}aws secret `{}`: {step}: {message}",
                self.step.secret_id
            ),
            ..f
        }
    }

    /// A store error during `step` (the error already names the backend and secret).
    fn store_fail(&self, step: &str, e: StoreError) -> Failure {
        self.fail(step, e.kind, e.message)
    }

    async fn run(&self) -> Result<String, Failure> {
        let ev = self.step;
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
        let Some(mine) = state.labels(&ev.version) else {
            return Err(self.fail(
                "preamble",
                ErrorKind::Permanent,
                format!("version {} is not a version of this secret", ev.version),
            ));
        };
        if mine.iter().any(|s| s == CURRENT) {
            if ev.step == StepKind::Finish && mine.iter().any(|s| s == PENDING) {
                // A finishSecret that moved AWSCURRENT but failed to drop AWSPENDING.
                self.store
                    .release_pending(&ev.version)
                    .await
                    .map_err(|e| self.store_fail("finishSecret", e))?;
            }
            info!(version = %ev.version, "already AWSCURRENT: nothing to do");
            if ev.step == StepKind::Finish {
                // Resolve alerts an interrupted finishSecret may have left open.
                self.conclude_success(None).await;
            }
            return Ok("already_current".into());
        }
        if !mine.iter().any(|s| s == PENDING) {
            return Err(self.fail(
                "preamble",
                ErrorKind::Permanent,
                format!(
                    "version {} is not AWSPENDING; another rotation moved on",
                    ev.version
                ),
            ));
        }
        let current = state.current().map(str::to_string);

        let result = match ev.step {
            StepKind::Create => match self.create().await {
                Ok(r) => r,
                // Alert like a scheduled run would (egress diagnosis on 403, dedup via the
                // token secret's state); the invocation still fails.
                Err(f) => return Err(self.conclude_failure(f).await),
            },
            StepKind::Set => "nothing to set: Deepvue issues the token itself",
            StepKind::Test => self.test().await?,
            StepKind::Finish => {
                self.store
                    .promote(&ev.version, current.as_deref())
                    .await
                    .map_err(|e| self.store_fail("finishSecret", e))?;
                self.store
                    .release_pending(&ev.version)
                    .await
                    .map_err(|e| self.store_fail("finishSecret", e))?;
                info!(version = %ev.version, previous = current.as_deref().unwrap_or("none"), "AWSCURRENT moved");
                self.conclude_success(current).await;
                "AWSCURRENT moved to the new version"
            }
        };
        Ok(result.into())
    }

    async fn test(&self) -> Result<&'static str, Failure> {
        let ev = self.step;
        let doc = self
            .store
            .pending(&ev.version)
            .await
            .map_err(|e| self.store_fail("GetSecretValue", e))?
            .ok_or_else(|| {
                self.fail(
                    "testSecret",
                    ErrorKind::Permanent,
                    format!(
                        "version {} has no value; createSecret did not run",
                        ev.version
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
        if doc.expires_in(self.host.now()) <= chrono::Duration::zero() {
            return Err(self.fail(
                "testSecret",
                ErrorKind::Permanent,
                format!("AWSPENDING token expired at {}", format_time(doc.expiry)),
            ));
        }
        Ok("AWSPENDING holds a valid token document")
    }

    async fn create(&self) -> Result<&'static str, Failure> {
        let ev = self.step;
        match self
            .store
            .pending(&ev.version)
            .await
            .map_err(|e| self.store_fail("GetSecretValue", e))?
        {
            Some(Ok(doc)) if doc.expires_in(self.host.now()) > chrono::Duration::zero() => {
                return Ok("AWSPENDING already holds a token (replay): nothing minted");
            }
            Some(Ok(doc)) => {
                // A stalled rotation retried after its token expired: versions are immutable,
                // so testSecret would fail forever. Release the label; Secrets Manager's next
                // rotation starts a fresh version.
                self.store
                    .release_pending(&ev.version)
                    .await
                    .map_err(|e| self.store_fail("createSecret", e))?;
                return Err(self.fail(
                    "createSecret",
                    ErrorKind::Permanent,
                    format!(
                        "version {} holds a token that expired at {} (a stalled rotation); \
                         AWSPENDING was removed from it, the next rotation mints afresh",
                        ev.version,
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
                        ev.version
                    ),
                ));
            }
            None => {}
        }
        // The engine's one mint path.
        let doc = self
            .host
            .mint()
            .await
            .map_err(|f| self.within("createSecret", f))?;
        match self
            .store
            .put_pending(&ev.version, &doc, ev.rotation_token.as_deref())
            .await
            .map_err(|e| self.store_fail("PutSecretValue", e))?
        {
            PendingWrite::Written => {
                info!(version = %ev.version, expiry = %format_time(doc.expiry), "minted; AWSPENDING written");
                Ok("minted; AWSPENDING written")
            }
            // A concurrent createSecret for the same version won: its value stands.
            PendingWrite::Concurrent => {
                warn!(version = %ev.version, "AWSPENDING was written concurrently; keeping that value");
                Ok("AWSPENDING written by a concurrent invocation")
            }
        }
    }

    /// Report a failed createSecret through the engine's diagnosis and alerting.
    async fn conclude_failure(&self, f: Failure) -> Failure {
        self.host.failed(f).await
    }

    /// A finished rotation: resolve open alerts and record the outcome.
    async fn conclude_success(&self, previous: Option<String>) {
        self.host
            .rotated(Version(self.step.version.clone()), previous.map(Version))
            .await;
    }
}
