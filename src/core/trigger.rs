//! Platform triggers: a platform's own rotation protocol (Secrets Manager's four rotation
//! steps) runs in the backend that owns the platform ([`NativeRotation`]); what it needs from
//! the engine — the one mint path, and alerts plus recorded state for what it did — comes
//! through [`TriggerHost`]. Run modes only parse the platform's event and route it.

use async_trait::async_trait;

use super::document::TokenDocument;
use super::result::Failure;
use super::store::Version;

/// A step of a native rotation protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Mint the new version (staged, not yet current).
    Create,
    /// Make the new secret valid where it is used (nothing for Deepvue: it issues the token).
    Set,
    /// Check the staged version.
    Test,
    /// Make the staged version current.
    Finish,
}

/// One rotation step as the platform asked for it.
#[derive(Clone, Debug)]
pub struct RotationStep {
    /// The secret, as the platform names it (an ARN).
    pub secret_id: String,
    /// The version being rotated in.
    pub version: String,
    /// Which step.
    pub step: StepKind,
    /// The platform's rotation token, passed back on writes when it gave one.
    pub rotation_token: Option<String>,
}

/// What a platform trigger needs from the engine for one token.
#[async_trait]
pub trait TriggerHost: Send + Sync {
    /// The token's name.
    fn token(&self) -> &str;
    /// The time the engine's decisions read (its clock).
    fn now(&self) -> chrono::DateTime<chrono::Utc>;
    /// Mint through the engine's one mint path (credentials, the Deepvue client, the retrying
    /// authorize, validation). The failure names the token.
    async fn mint(&self) -> Result<TokenDocument, Failure>;
    /// The platform completed a rotation to `version` (from `previous`): resolve open alerts
    /// and record it, as a scheduled rotation would.
    async fn rotated(&self, version: Version, previous: Option<Version>);
    /// A step failed: diagnose (egress on a 403), alert and record, as a scheduled run
    /// would. Returns the failure as reported.
    async fn failed(&self, failure: Failure) -> Failure;
}

/// A backend's native rotation protocol.
#[async_trait]
pub trait NativeRotation: Send + Sync {
    /// Run one step; `Ok` is a one-line description of what it did.
    async fn step(&self, step: &RotationStep, host: &dyn TriggerHost) -> Result<String, Failure>;
}
