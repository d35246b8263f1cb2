//! The token store contract: versions of one token document, and the values a write trades in.
//!
//! Three contracts meet at a store, each its own trait, so a backend implements what it can:
//! - [`TokenStore`] (this module): token **versions**. [`TokenStore::read_current`] returns the
//!   current version and its document (or why the document is unusable);
//!   [`TokenStore::write`] adds a **new version** only if the store still holds what the
//!   decision was made from ([`WriteMode`]), else fails with [`ErrorKind::Conflict`] and writes
//!   nothing; the previous version stays readable through [`TokenStore::read_version`].
//! - `lease::Leases`: a rotation **lease**, a value the pass owns ([`Lease`]) and
//!   hands back; the file store's flock, the GCP lease annotation. A backend without leases
//!   relies on its conditional write alone (AWS's derived ClientRequestToken, Vault's `cas`).
//! - `state::StateStore`: kept **run state** (bytes and an etag), which the engine
//!   decides about.
//!
//! No store object remembers a run: everything a run learns travels in the values these
//! methods take and return, so two passes over one token (a timer and a push, an agent's
//! refresh and a fan-out) are safe by construction. The executable form of the contract is the
//! shared scenario suite, `tests/it/scenarios.rs`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::document::{DocumentError, TokenDocument};
use super::error::ErrorKind;

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

/// A rotation lease: a value the pass that took it owns, passes to the write it makes under
/// it, and hands back to `lease::Leases::release`. It names its holder (a random id,
/// also the write id of a version added under it), the version it was taken from, and until
/// when it holds. Whatever keeps it held in this process (a flock's descriptor) lives in the
/// value and goes with it.
pub struct Lease {
    store: String,
    holder: String,
    base: Option<Version>,
    until: Option<DateTime<Utc>>,
    spent: bool,
    _guard: Option<Box<dyn Send + Sync>>,
    on_drop: Option<DropHook>,
}

/// What a lease dropped without being handed back does (best effort), told whether it was
/// spent.
type DropHook = Box<dyn FnOnce(bool) + Send + Sync>;

impl Lease {
    /// A lease on `store` (its backend and secret id: a write elsewhere does not trust it)
    /// held by `holder` for a decision made from `base`, live until `until` (`None`: until
    /// released or the process ends).
    pub fn new(
        store: String,
        holder: String,
        base: Option<Version>,
        until: Option<DateTime<Utc>>,
    ) -> Self {
        Lease {
            store,
            holder,
            base,
            until,
            spent: false,
            _guard: None,
            on_drop: None,
        }
    }

    /// Keep `guard` alive as long as the lease (dropping the lease drops it: a flock).
    pub fn guarded_by(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Run `hook` if the lease is dropped without [`Self::handed_back`] (a run cancelled
    /// halfway): where clearing it takes a call, the hook starts that call.
    pub fn on_drop(mut self, hook: impl FnOnce(bool) + Send + Sync + 'static) -> Self {
        self.on_drop = Some(Box::new(hook));
        self
    }

    /// The lease went back to its store: no drop hook runs.
    pub fn handed_back(mut self) {
        self.on_drop = None;
    }

    /// The store it was taken on.
    pub fn store(&self) -> &str {
        &self.store
    }

    /// The holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The version the lease was taken from (`None`: nothing was stored).
    pub fn base(&self) -> Option<&Version> {
        self.base.as_ref()
    }

    /// Whether it still holds at `now` with `margin` to spare (a write must finish in it).
    pub fn holds(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.until.is_none_or(|u| u - margin > now)
    }

    /// Mark that a version was written under it: every later runner sees a newer version than
    /// its base, so it is spent, and releasing it needs no call.
    pub fn spend(&mut self) {
        self.spent = true;
    }

    /// Whether a version was written under it.
    pub fn is_spent(&self) -> bool {
        self.spent
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(hook) = self.on_drop.take() {
            hook(self.spent);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("store", &self.store)
            .field("holder", &self.holder)
            .field("base", &self.base)
            .field("until", &self.until)
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

/// The condition a write is made under, as object_store's `PutMode`: it carries everything
/// the write depends on.
#[derive(Clone, Copy, Debug)]
pub enum WriteMode<'a> {
    /// Only if nothing is stored yet.
    Create {
        /// The lease the write is made under, when the pass took one.
        lease: Option<&'a Lease>,
    },
    /// Only if `expected` is still the current version.
    Update {
        /// The version the decision was made from.
        expected: &'a Version,
        /// The lease the write is made under, when the pass took one.
        lease: Option<&'a Lease>,
    },
}

impl<'a> WriteMode<'a> {
    /// The mode for a decision made from `current` (`None`: nothing was stored), under `lease`.
    pub fn from_current(current: Option<&'a Version>, lease: Option<&'a Lease>) -> Self {
        match current {
            None => WriteMode::Create { lease },
            Some(expected) => WriteMode::Update { expected, lease },
        }
    }

    /// The version the write expects to replace.
    pub fn expected(self) -> Option<&'a Version> {
        match self {
            WriteMode::Create { .. } => None,
            WriteMode::Update { expected, .. } => Some(expected),
        }
    }

    /// The lease the write is made under.
    pub fn lease(self) -> Option<&'a Lease> {
        match self {
            WriteMode::Create { lease } | WriteMode::Update { lease, .. } => lease,
        }
    }
}

/// What a read of the current version showed, for free, about kept run state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateHint {
    /// The read cannot tell.
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
    pub state: StateHint,
}

impl Stored {
    /// A version as read, with nothing known about kept state.
    pub fn new(version: Version, document: Result<TokenDocument, DocumentError>) -> Self {
        Stored {
            version,
            document,
            state: StateHint::Unknown,
        }
    }
}

/// A store failure. Names the backend and the secret id, never a value.
#[derive(Debug, thiserror::Error)]
#[error("{backend} store `{secret_id}`: {message}")]
pub struct StoreError {
    /// Backend name.
    pub backend: &'static str,
    /// The secret id (path, name, ARN).
    pub secret_id: String,
    /// Its class; `Conflict` means another runner wrote (or holds the lease) first.
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

/// Where token documents live: versions of one document.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Backend name (`file`, `aws`, …).
    fn backend(&self) -> &'static str;
    /// The secret id this store writes (path, name, ARN).
    fn secret_id(&self) -> String;
    /// Whether a platform's name for a secret (a rotation event's ARN, a Pub/Sub
    /// notification's `projects/NUMBER/secrets/ID`) is this store's secret. Default: no
    /// platform names this store.
    fn is_named(&self, platform_name: &str) -> bool {
        let _ = platform_name;
        false
    }
    /// The platform's own full name of this secret, as the platform reports it (GCP:
    /// `projects/NUMBER/secrets/ID`), so a notification is matched exactly; `None` where no
    /// platform notifies about it.
    async fn platform_name(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    /// The current version, or `None` when nothing was ever written.
    async fn read_current(&self) -> Result<Option<Stored>, StoreError>;
    /// A specific version, or `None` when it does not exist (any more). An error means the
    /// store could not answer, never "not found".
    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError>;
    /// A stream that yields when the current version may have changed, where the backend can
    /// say so without a read (the file store: inotify on its directory); `None` when it cannot
    /// (then readers poll). Built inside the async runtime.
    fn changes(&self) -> Option<futures::stream::BoxStream<'static, ()>> {
        None
    }
    /// The version before `current`, or `None` when there is none (any more). Default: the
    /// version numbered one less, for stores whose versions are sequence numbers (file,
    /// Vault, GCP, Kubernetes); a store with its own notion overrides it (AWS: AWSPREVIOUS).
    async fn read_previous(&self, current: &Version) -> Result<Option<Stored>, StoreError> {
        match current.0.parse::<u64>() {
            Ok(n) if n > 1 => self.read_version(&Version((n - 1).to_string())).await,
            _ => Ok(None),
        }
    }
    /// Add a new version under `mode`; returns the new version.
    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError>;
    /// Prove the store is reachable and writable without changing the token.
    async fn check(&self) -> Result<(), StoreError>;
}
