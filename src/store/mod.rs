//! Token stores: one trait, one module per backend.
//!
//! The contract every backend implements (and `tests/it/conformance.rs` checks):
//! - `read_current` returns the current version id and the document (or why it is unusable).
//! - `write` adds a **new version** only if the current version is still `expected`
//!   (`None` = "only if the store is empty"); otherwise it fails with [`ErrorKind::Conflict`]
//!   and writes nothing. The previous version stays readable through `read_version`.
//! - `lock` optionally serialises whole rotations between processes (the file store does, so
//!   concurrent runs on one host mint once); backends without one rely on the conditional write.

pub mod aws;
pub mod file;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{Config, StoreConfig};
use crate::error::ErrorKind;
use crate::token::{DocumentError, TokenDocument};

/// An opaque version id (file: a sequence number; later AWS VersionId, Vault version, GCP
/// version number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub String);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a store holds at one version.
#[derive(Debug)]
pub struct Stored {
    /// The version id.
    pub version: Version,
    /// The document, or why it cannot be used (a broken document makes the token due).
    pub document: Result<TokenDocument, DocumentError>,
}

/// Non-secret per-token state kept beside the token: the last outcome, for `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// RFC 3339 time of the last run that changed something or failed.
    pub last_run_at: Option<String>,
    /// `rotated`, `rotated_by_another_runner` or `failed`.
    pub last_outcome: Option<String>,
    /// The error class and message when the last outcome was a failure.
    pub last_error: Option<String>,
    /// Failures in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Open alert conditions, for dedup and resolve across runs.
    #[serde(default)]
    pub alerts: std::collections::BTreeMap<crate::alert::Condition, crate::alert::AlertState>,
    /// The last alert delivery failure, if the last alert did not reach every sink.
    #[serde(default)]
    pub last_alert_error: Option<String>,
}

/// A store failure. Names the backend and the secret id, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{backend} store `{secret_id}`: {message}")]
pub struct StoreError {
    /// Backend name.
    pub backend: &'static str,
    /// The secret id (path, name, ARN).
    pub secret_id: String,
    /// Its class; `Conflict` means another runner wrote first.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

/// Held while a rotation runs; dropping it releases the lock.
pub struct RotationLock {
    _guard: Box<dyn Send + Sync>,
}

impl RotationLock {
    /// Wrap whatever releases the lock on drop.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        RotationLock {
            _guard: Box::new(guard),
        }
    }
}

/// Where token documents live.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Backend name (`file`, `aws`, …).
    fn backend(&self) -> &'static str;
    /// The secret id this store writes (path, name, ARN).
    fn secret_id(&self) -> String;
    /// The current version, or `None` when nothing was ever written.
    async fn read_current(&self) -> Result<Option<Stored>, StoreError>;
    /// A specific version, or `None` when it does not exist (any more).
    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError>;
    /// Add a new version if the current one is still `expected`; returns the new version.
    async fn write(
        &self,
        doc: &TokenDocument,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError>;
    /// Serialise rotations of this token across processes, when the backend can.
    async fn lock(&self) -> Result<Option<RotationLock>, StoreError>;
    /// Prove the store is reachable and writable without changing the token.
    async fn check(&self) -> Result<(), StoreError>;
    /// Whether `read_state` costs a remote API call. Such backends keep run state only when
    /// alerting needs it, so a no-op run stays one read.
    fn state_costs_call(&self) -> bool {
        false
    }
    /// Whether the last `read_current` showed that run state is kept (only meaningful when
    /// `state_costs_call`; unknown counts as yes).
    fn state_flagged(&self) -> bool {
        true
    }
    /// Whether the kept state needs rewriting even if unchanged (a stale marker to clear).
    fn state_needs_write(&self) -> bool {
        false
    }
    /// The last recorded outcome, if this backend keeps one.
    async fn read_state(&self) -> Result<Option<RunState>, StoreError>;
    /// Record the outcome of a run.
    async fn write_state(&self, state: &RunState) -> Result<(), StoreError>;
}

/// Build the store a token's config describes.
pub fn from_config(
    cfg: &StoreConfig,
    global: &Config,
    aws: &std::sync::Arc<crate::aws::AwsClients>,
) -> Box<dyn TokenStore> {
    match cfg {
        StoreConfig::File {
            path,
            keep_versions,
        } => Box::new(file::FileStore::new(
            path.clone(),
            keep_versions.unwrap_or(file::DEFAULT_KEEP_VERSIONS),
            global.lock_timeout,
        )),
        StoreConfig::Aws {
            secret_id,
            create_if_missing,
            kms_key_id,
            tags,
        } => Box::new(aws::AwsStore::new(
            aws.clone(),
            secret_id.clone(),
            *create_if_missing,
            kms_key_id.clone(),
            tags.clone(),
        )),
    }
}
