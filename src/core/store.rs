//! The token store contract: one trait every backend implements, and the values it trades in.
//!
//! The contract (executable form: `tests/it/conformance.rs`):
//! - [`TokenStore::read_current`] returns the current version and its document (or why the
//!   document is unusable), plus what the read showed about kept run state ([`StateMark`]).
//! - [`TokenStore::write`] adds a **new version** only if the store still holds what the
//!   decision was made from: [`WriteMode::Create`] (nothing stored) or
//!   [`WriteMode::Update`] (that version is current). Otherwise it fails with
//!   [`ErrorKind::Conflict`] and writes nothing. The previous version stays readable through
//!   [`TokenStore::read_version`].
//! - [`TokenStore::lock`] optionally serialises whole rotations between processes (the file
//!   store does, so concurrent runs on one host mint once); backends without one rely on the
//!   conditional write. The engine calls [`TokenStore::lock_from`] with the version it decided
//!   from (a lease-based store records it, so a runner that has seen a newer version knows the
//!   lease is spent) and hands the lock back with [`RotationLock::release`] when the rotation
//!   ends.
//! - A store object holds no per-run state: everything a run learns travels in the values these
//!   methods return, so one store may serve two concurrent passes.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::document::{DocumentError, TokenDocument};
use super::error::ErrorKind;
use super::state::RunState;

/// An opaque version id (file: a sequence number; AWS: a VersionId; Vault: a KV version; GCP:
/// a version number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub String);

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The condition a write is made under, as object_store's `PutMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode<'a> {
    /// Only if nothing is stored yet.
    Create,
    /// Only if this version is still the current one.
    Update(&'a Version),
}

impl<'a> WriteMode<'a> {
    /// The mode for a decision made from `current` (`None`: nothing was stored).
    pub fn from_current(current: Option<&'a Version>) -> Self {
        match current {
            None => WriteMode::Create,
            Some(v) => WriteMode::Update(v),
        }
    }

    /// The version the write expects to replace.
    pub fn expected(self) -> Option<&'a Version> {
        match self {
            WriteMode::Create => None,
            WriteMode::Update(v) => Some(v),
        }
    }
}

/// What a read showed about run state kept beside the token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateMark {
    /// The read cannot tell (or the backend keeps state where reading it is cheap).
    #[default]
    Unknown,
    /// The read showed that state is kept (e.g. AWS: a marker label on the current version).
    Kept,
    /// The read showed that no state is kept.
    None,
}

/// What a store holds at one version.
#[derive(Debug)]
pub struct Stored {
    /// The version id.
    pub version: Version,
    /// The document, or why it cannot be used (a broken document makes the token due).
    pub document: Result<TokenDocument, DocumentError>,
    /// What this read showed about kept run state.
    pub state: StateMark,
}

impl Stored {
    /// A version as read, with nothing known about kept state.
    pub fn new(version: Version, document: Result<TokenDocument, DocumentError>) -> Self {
        Stored {
            version,
            document,
            state: StateMark::Unknown,
        }
    }
}

/// How a backend keeps run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatePolicy {
    /// Beside the token, cheap to read and write (a local file): every run's outcome is kept,
    /// for `status`.
    EveryRun,
    /// In metadata that costs API calls (tags, annotations): kept only while alerting needs it
    /// (an open alert, a failure), and read only when the run failed or rotated, egress
    /// drifted, or the read marked state as kept ([`StateMark`]), so a healthy no-op stays one
    /// read.
    AlertsOnly,
}

/// Backend-private memory of one `read_state`, handed back to `write_state` of the same run
/// (AWS: which state tags exist and where the marker sits). Opaque to everyone else.
#[derive(Clone, Default)]
pub struct StateBase(Option<Arc<dyn Any + Send + Sync>>);

impl StateBase {
    /// Wrap a backend's value.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        StateBase(Some(Arc::new(value)))
    }

    /// The backend's value, if this base came from it.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|v| v.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for StateBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "StateBase(..)"
        } else {
            "StateBase(none)"
        })
    }
}

/// The run state as read, and what its write will need.
#[derive(Clone, Debug, Default)]
pub struct StateRead {
    /// The state, if any is kept.
    pub state: Option<RunState>,
    /// The stored state must be rewritten even if unchanged (e.g. a marker without state).
    pub needs_write: bool,
    /// For `write_state`.
    pub base: StateBase,
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
    /// The underlying failure, when there is one.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error without an underlying cause.
    pub fn new(
        backend: &'static str,
        secret_id: impl Into<String>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Self {
        StoreError {
            backend,
            secret_id: secret_id.into(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Keep `source` in the chain.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Held while a rotation runs; dropping it releases the lock.
pub struct RotationLock {
    release: Option<futures::future::BoxFuture<'static, ()>>,
    _guard: Box<dyn Send + Sync>,
}

impl RotationLock {
    /// Wrap whatever releases the lock on drop.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        RotationLock {
            release: None,
            _guard: Box::new(guard),
        }
    }

    /// A lock whose release needs I/O (a lease kept in the store): [`Self::release`] runs
    /// `release`, then drops `guard`. Dropped without `release()`, only `guard` runs.
    pub fn with_release(
        guard: impl Send + Sync + 'static,
        release: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        RotationLock {
            release: Some(Box::pin(release)),
            _guard: Box::new(guard),
        }
    }

    /// Release now, waiting for the store when releasing needs a call. Never fails: a lock
    /// that cannot be released expires (a lease) or dies with the process (a flock).
    pub async fn release(mut self) {
        if let Some(r) = self.release.take() {
            r.await;
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
    /// How this backend keeps run state.
    fn state_policy(&self) -> StatePolicy;
    /// The current version, or `None` when nothing was ever written.
    async fn read_current(&self) -> Result<Option<Stored>, StoreError>;
    /// A specific version, or `None` when it does not exist (any more).
    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError>;
    /// Add a new version under `mode`; returns the new version.
    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError>;
    /// Serialise rotations of this token across processes, when the backend can.
    async fn lock(&self) -> Result<Option<RotationLock>, StoreError>;
    /// [`Self::lock`] for a rotation decided from `current` (what `read_current` returned);
    /// a lease-based store records it. Default: `lock()`.
    async fn lock_from(
        &self,
        current: Option<&Version>,
    ) -> Result<Option<RotationLock>, StoreError> {
        let _ = current;
        self.lock().await
    }
    /// Prove the store is reachable and writable without changing the token.
    async fn check(&self) -> Result<(), StoreError>;
    /// The last recorded run state.
    async fn read_state(&self) -> Result<StateRead, StoreError>;
    /// Record the run state; `base` is what `read_state` returned in this run (or the default).
    async fn write_state(&self, state: &RunState, base: &StateRead) -> Result<(), StoreError>;
}
