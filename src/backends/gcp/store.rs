//! GCP Secret Manager token store.
//!
//! Each rotation adds a version whose payload is the token document; apps read
//! `versions/latest`. Every add sends `dataCrc32c` and every access checks it: a mismatch
//! makes the stored document unusable (the token is due, and the report says why).
//!
//! **Conditional writes.** `AddSecretVersion` takes neither an etag nor a request id, so the
//! condition is a **lease** in an annotation of the secret ([`super::lease`]), taken with the
//! secret's etag:
//! - [`Leases::acquire`] (the engine calls it only for a due token, with the version it decided
//!   from): `GetSecret` → if another runner holds a live lease from the same or a newer
//!   version → `Conflict` ("rotated by another runner"); else `UpdateSecret{etag, annotations
//!   + lease}` (`FAILED_PRECONDITION` → read again, bounded). The [`Lease`] value goes to the
//!   engine, which re-reads `latest` under it and decides again.
//! - [`TokenStore::write`] under the lease the write carries ([`WriteMode::lease`], with
//!   enough of it left): `AddSecretVersion` with the lease holder id as `write_id` in the
//!   payload. Without one (a caller that did not take it) the write takes a lease itself and
//!   checks `latest` against the [`WriteMode`] before adding.
//! - An add whose answer was lost is not repeated blindly: the newer versions are read for the
//!   `write_id`.
//! - After a write the lease stays: every later runner has seen a newer version than its base,
//!   so it is spent, and clearing it would cost a call per rotation. A holder that ends
//!   without writing (the re-read found the token fresh, minting failed) clears it in
//!   [`Leases::release`] (read, and remove it if it is still ours, etag-guarded); one that dies
//!   leaves it to expire. The store object remembers no lease: two passes in one process are
//!   two runners.
//!
//! **Version GC** after each write: destroy (each with its etag) enabled or disabled versions
//! older than the newest `keep_versions`; with `version_destroy_ttl` on the secret a destroy
//! only schedules. Never fails the write: a GC failure is a warning, retried after the next
//! rotation.
//!
//! **Cost.** `read_current` is one `AccessSecretVersion(latest)` (plus a `GetSecret` only when
//! there is no version, to tell "empty" from "missing"). A rotation is read, the lease's
//! `GetSecret` and `UpdateSecret`, re-read, add: five calls, then GC (a list, and a destroy per
//! version past `keep_versions`: one in the steady state). Run state (alert dedup) lives in
//! annotations (`state_annotations`) and is read only when alert sinks are configured
//! (`StateHint::Unknown`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model::secret_version::State;
use google_cloud_secretmanager_v1::model::{Secret, SecretPayload, SecretVersion};
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;
use tracing::{info, warn};

use super::client::ATTEMPT_TIMEOUT;
use super::errors::{classify, code};
use super::lease::{LEASE_ANNOTATION, LeaseRecord};
use super::{GcpClients, SecretName, crc32c, state_annotations};
use crate::core::document::{DocumentError, TokenDocument};
use crate::core::error::ErrorKind;
use crate::core::lease::Leases;
use crate::core::state::{StateEtag, StatePolicy, StateRead, StateStore};
use crate::core::store::{Lease, StoreError, Stored, TokenStore, Version, WriteMode};

/// Etag races retried per lease or state update.
const MAX_ETAG_RETRIES: u32 = 5;
/// A held lease is trusted for a write only with this much of it left (the add's own budget).
const WRITE_MARGIN: Duration = Duration::from_secs(ATTEMPT_TIMEOUT.as_secs() + 5);
/// Versions read back when looking for a write whose answer was lost.
const FIND_OWN_LIMIT: usize = 3;
/// Pages of 100 versions read by GC.
const GC_MAX_PAGES: u32 = 10;

/// What one access of a version showed.
enum Access {
    /// The payload (crc checked).
    Found {
        version: u64,
        document: Result<TokenDocument, DocumentError>,
        write_id: Option<String>,
    },
    /// No such version (or no version at all for `latest`).
    NotFound,
    /// The version exists but its payload cannot be read (disabled or destroyed).
    Unusable(String),
}

/// Secret Manager `UpdateSecret` of the annotations, etag-guarded.
async fn update_annotations(
    client: &SecretManagerService,
    secret: Secret,
) -> Result<Secret, GaxError> {
    client
        .update_secret()
        .set_secret(secret)
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["annotations"]))
        .send()
        .await
}

/// What `read_state` saw, for the `write_state` of the same run (carried as its
/// [`StateEtag`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct AnnotationBase {
    etag: String,
    annotations: HashMap<String, String>,
}

/// Why a lease could not be had.
enum LeaseError {
    Busy(String),
    Store(StoreError),
}

/// A token secret in GCP Secret Manager.
#[derive(Clone)]
pub struct GcpStore {
    clients: Arc<GcpClients>,
    secret_id: String,
    keep_versions: u32,
    lease_ttl: Duration,
    /// The secret's full name as Secret Manager reports it (a property of the secret, not of
    /// a run: it never changes).
    platform_name: Arc<tokio::sync::OnceCell<String>>,
}

impl GcpStore {
    /// A store for `secret_id` (short or `projects/P/secrets/S`); leases live `lease_ttl`.
    pub fn new(
        clients: Arc<GcpClients>,
        secret_id: String,
        keep_versions: u32,
        lease_ttl: Duration,
    ) -> Self {
        GcpStore {
            clients,
            secret_id,
            keep_versions: keep_versions.max(2),
            lease_ttl,
            platform_name: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError::new("gcp", self.secret_id.clone(), kind, message)
    }

    fn gax_err(&self, e: GaxError, action: &str, permission: &str) -> StoreError {
        let (kind, message) = classify(&e, action, permission);
        self.err(kind, message).with_source(e)
    }

    async fn client(&self) -> Result<&SecretManagerService, StoreError> {
        self.clients
            .secret_manager()
            .await
            .map_err(|e| self.err(ErrorKind::Config, e.to_string()))
    }

    /// `projects/P/secrets/S`.
    async fn name(&self) -> Result<String, StoreError> {
        let parsed = SecretName::parse(&self.secret_id).ok_or_else(|| {
            self.err(ErrorKind::Config, "not a valid secret id (checked at load)")
        })?;
        match &parsed.project {
            Some(_) => Ok(parsed.resource("")),
            None => {
                let p = self
                    .clients
                    .project()
                    .await
                    .map_err(|e| self.err(ErrorKind::Config, e.to_string()))?;
                Ok(parsed.resource(p))
            }
        }
    }

    fn missing(&self, name: &str) -> StoreError {
        let short = name.rsplit('/').next().unwrap_or(name);
        self.err(
            ErrorKind::Config,
            format!(
                "the secret {name} does not exist; create it (`gcloud secrets create {short} \
                 --replication-policy=automatic`) or fix the secret_id / [gcp] project"
            ),
        )
    }

    /// `AccessSecretVersion`, crc checked.
    async fn access(&self, name: &str, version: &str) -> Result<Access, StoreError> {
        let client = self.client().await?;
        let res = client
            .access_secret_version()
            .set_name(format!("{name}/versions/{version}"))
            .send()
            .await;
        let resp = match res {
            Ok(r) => r,
            Err(e) if code(&e) == Some(Code::NotFound) => return Ok(Access::NotFound),
            Err(e) if code(&e) == Some(Code::FailedPrecondition) => {
                let why = e
                    .status()
                    .map(|s| crate::support::text::truncate(&s.message, 200))
                    .unwrap_or_default();
                return Ok(Access::Unusable(why));
            }
            Err(e) => {
                return Err(self.gax_err(
                    e,
                    "AccessSecretVersion",
                    "secretmanager.versions.access",
                ));
            }
        };
        let number = version_number(&resp.name).ok_or_else(|| {
            self.err(
                ErrorKind::Transient,
                format!("AccessSecretVersion answered for `{}`", resp.name),
            )
        })?;
        let payload = resp.payload.unwrap_or_default();
        let data = Zeroizing::new(payload.data.to_vec());
        let document = match payload.data_crc32c {
            Some(sent) if sent != i64::from(crc32c(&data)) => Err(DocumentError(format!(
                "version {number}: the payload does not match its dataCrc32c ({sent} stored, \
                 {} computed): the stored document is corrupt or was changed in transit",
                crc32c(&data)
            ))),
            _ => TokenDocument::from_json(&data),
        };
        Ok(Access::Found {
            version: number,
            document,
            write_id: write_id_of(&data),
        })
    }

    /// `GetSecret`: `None` when the secret does not exist.
    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, StoreError> {
        let client = self.client().await?;
        match client.get_secret().set_name(name).send().await {
            Ok(s) => Ok(Some(s)),
            Err(e) if code(&e) == Some(Code::NotFound) => Ok(None),
            Err(e) => Err(self.gax_err(e, "GetSecret", "secretmanager.secrets.get")),
        }
    }

    async fn existing_secret(&self, name: &str) -> Result<Secret, StoreError> {
        self.get_secret(name)
            .await?
            .ok_or_else(|| self.missing(name))
    }

    /// `UpdateSecret` of the annotations with `etag`: `Ok(None)` when the etag is stale.
    async fn put_annotations(
        &self,
        name: &str,
        etag: &str,
        annotations: HashMap<String, String>,
    ) -> Result<Option<Secret>, StoreError> {
        if !state_annotations::fits(&annotations) {
            return Err(self.err(
                ErrorKind::Permanent,
                "the secret's annotations would exceed Secret Manager's 16 KiB limit; remove \
                 some of your own annotations from it",
            ));
        }
        let client = self.client().await?;
        let secret = Secret::new()
            .set_name(name)
            .set_etag(etag)
            .set_annotations(annotations);
        match update_annotations(client, secret).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if code(&e) == Some(Code::FailedPrecondition) => Ok(None),
            Err(e) if code(&e) == Some(Code::NotFound) => Err(self.missing(name)),
            Err(e) => Err(self.gax_err(e, "UpdateSecret", "secretmanager.secrets.update")),
        }
    }

    /// Take the lease for a rotation from version `base`: `GetSecret`, then `UpdateSecret`
    /// with its etag. Returns the lease and the secret as updated.
    async fn take_lease(&self, name: &str, base: u64) -> Result<(LeaseRecord, Secret), LeaseError> {
        for _ in 0..MAX_ETAG_RETRIES {
            let secret = self
                .existing_secret(name)
                .await
                .map_err(LeaseError::Store)?;
            let now = Utc::now();
            if let Some(other) = LeaseRecord::from_annotations(&secret.annotations)
                && other.blocks(base, now)
            {
                return Err(LeaseError::Busy(format!(
                    "another runner holds the rotation lease (from version {}) until {}",
                    other.base, other.until
                )));
            }
            let lease = LeaseRecord::new(now, base, self.lease_ttl);
            let mut annotations = secret.annotations.clone();
            annotations.insert(LEASE_ANNOTATION.to_string(), lease.to_value());
            if let Some(updated) = self
                .put_annotations(name, &secret.etag, annotations)
                .await
                .map_err(LeaseError::Store)?
            {
                return Ok((lease, updated));
            }
            // Someone changed the secret between our read and our update: look again.
        }
        Err(LeaseError::Store(self.err(
            ErrorKind::Transient,
            "the secret's etag kept changing while taking the rotation lease; retry later",
        )))
    }

    /// Clear the lease `holder` took, if it is still there: read the secret, and remove the
    /// annotation with that read's etag (someone who changed the secret since wins, and the
    /// lease then expires).
    async fn clear_lease(&self, name: &str, holder: &str) {
        for _ in 0..MAX_ETAG_RETRIES {
            let Ok(Some(secret)) = self.get_secret(name).await else {
                return;
            };
            if LeaseRecord::from_annotations(&secret.annotations).is_none_or(|l| l.holder != holder)
            {
                return; // expired and taken over, or already cleared
            }
            let mut annotations = secret.annotations.clone();
            annotations.remove(LEASE_ANNOTATION);
            match self.put_annotations(name, &secret.etag, annotations).await {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {} // changed meanwhile (state recorded): look again
            }
        }
    }

    /// The holder id of the lease a write carries when the write may rely on it: taken on
    /// this secret, from the version the write expects to replace, and still live with enough
    /// left for an add (short leases, in tests, are trusted for their second half).
    fn usable(&self, mode: WriteMode<'_>) -> Option<String> {
        let margin =
            chrono::Duration::from_std(WRITE_MARGIN.min(self.lease_ttl / 2)).unwrap_or_default();
        mode.lease()
            .filter(|l| l.store() == self.lease_store() && l.base() == mode.expected())
            .filter(|l| l.holds(Utc::now(), margin))
            .map(|l| l.holder().to_string())
    }

    /// What a lease taken here names as its store.
    fn lease_store(&self) -> String {
        format!("gcp:{}", self.secret_id)
    }

    /// `latest` still is what `mode` expects.
    async fn matches(&self, name: &str, mode: WriteMode<'_>) -> Result<bool, StoreError> {
        let latest = self.access(name, "latest").await?;
        Ok(match (mode.expected(), latest) {
            (None, Access::NotFound) => true,
            (Some(v), Access::Found { version, .. }) => v.0 == version.to_string(),
            _ => false,
        })
    }

    fn conflict(&self, mode: WriteMode<'_>, why: &str) -> StoreError {
        self.err(
            ErrorKind::Conflict,
            format!(
                "{why}: the latest version is no longer {}; nothing written",
                mode.expected().map_or("(none)", |v| v.0.as_str())
            ),
        )
    }

    /// `AddSecretVersion` with crc; an answer lost after the add landed is found by `write_id`.
    async fn add(
        &self,
        name: &str,
        payload: &[u8],
        write_id: &str,
        after: u64,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let crc = i64::from(crc32c(payload));
        let mut last = None;
        for attempt in 0..2 {
            let res = client
                .add_secret_version()
                .set_parent(name)
                .set_payload(
                    SecretPayload::new()
                        .set_data(bytes::Bytes::copy_from_slice(payload))
                        .set_data_crc32c(crc),
                )
                .send()
                .await;
            let err = match res {
                Ok(v) => {
                    return version_number(&v.name).ok_or_else(|| {
                        self.err(
                            ErrorKind::Transient,
                            format!("AddSecretVersion answered `{}`", v.name),
                        )
                    });
                }
                Err(e) if code(&e) == Some(Code::NotFound) => return Err(self.missing(name)),
                Err(e) => self.gax_err(e, "AddSecretVersion", "secretmanager.versions.add"),
            };
            if err.kind != ErrorKind::Transient {
                return Err(err);
            }
            // The answer may be lost after the version was written: look before adding again.
            if let Some(v) = self.find_own(name, write_id, after).await? {
                info!(version = v, "found the version whose add answer was lost");
                return Ok(v);
            }
            if attempt == 0 {
                warn!(error = %err, "AddSecretVersion failed before landing; trying once more");
            }
            last = Some(err);
        }
        Err(last.unwrap_or_else(|| self.err(ErrorKind::Transient, "AddSecretVersion failed")))
    }

    /// The newest versions after `after`, read back for `write_id`.
    async fn find_own(
        &self,
        name: &str,
        write_id: &str,
        after: u64,
    ) -> Result<Option<u64>, StoreError> {
        let client = self.client().await?;
        let page = client
            .list_secret_versions()
            .set_parent(name)
            .set_page_size(10)
            .send()
            .await
            .map_err(|e| self.gax_err(e, "ListSecretVersions", "secretmanager.versions.list"))?;
        let mut newer: Vec<u64> = page
            .versions
            .iter()
            .filter_map(|v| version_number(&v.name))
            .filter(|n| *n > after)
            .collect();
        newer.sort_unstable_by_key(|n| std::cmp::Reverse(*n));
        for n in newer.into_iter().take(FIND_OWN_LIMIT) {
            if let Access::Found {
                write_id: Some(w), ..
            } = self.access(name, &n.to_string()).await?
                && w == write_id
            {
                return Ok(Some(n));
            }
        }
        Ok(None)
    }

    /// Destroy versions beyond `keep_versions`. Never fails: a problem is a warning. Skipped
    /// (no call) while the newest version number is within `keep_versions`.
    async fn collect_garbage(&self, name: &str, newest: u64) {
        if newest <= u64::from(self.keep_versions) {
            return;
        }
        match self.gc(name).await {
            Ok((destroyed, scheduled)) => {
                if !destroyed.is_empty() {
                    info!(versions = ?destroyed, keep_versions = self.keep_versions, "destroyed old versions");
                }
                if !scheduled.is_empty() {
                    let list: Vec<String> = scheduled
                        .iter()
                        .map(|(v, at)| format!("{v} at {at}"))
                        .collect();
                    info!(
                        versions = %list.join(", "),
                        keep_versions = self.keep_versions,
                        "old versions scheduled for destruction (the secret's version_destroy_ttl); \
                         disabled until then and still billed"
                    );
                }
            }
            Err(e) => warn!(
                error = %e,
                "version GC failed; the rotation stands and the next rotation retries it"
            ),
        }
    }

    #[allow(clippy::type_complexity)]
    async fn gc(&self, name: &str) -> Result<(Vec<u64>, Vec<(u64, String)>), StoreError> {
        let client = self.client().await?;
        let mut all: Vec<SecretVersion> = Vec::new();
        let mut token = String::new();
        for _ in 0..GC_MAX_PAGES {
            let page = client
                .list_secret_versions()
                .set_parent(name)
                .set_page_size(100)
                .set_page_token(token.clone())
                .set_filter("NOT state:DESTROYED")
                .send()
                .await
                .map_err(|e| {
                    self.gax_err(e, "ListSecretVersions", "secretmanager.versions.list")
                })?;
            all.extend(page.versions);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut live: Vec<(u64, SecretVersion)> = all
            .into_iter()
            .filter(|v| {
                matches!(v.state, State::Enabled | State::Disabled)
                    && v.scheduled_destroy_time.is_none()
            })
            .filter_map(|v| version_number(&v.name).map(|n| (n, v)))
            .collect();
        live.sort_unstable_by_key(|v| std::cmp::Reverse(v.0));
        let mut destroyed = Vec::new();
        let mut scheduled = Vec::new();
        for (n, v) in live.into_iter().skip(self.keep_versions as usize) {
            let res = client
                .destroy_secret_version()
                .set_name(&v.name)
                .set_etag(v.etag.clone())
                .send()
                .await;
            match res {
                Ok(d) if d.state == State::Destroyed => destroyed.push(n),
                Ok(d) => scheduled.push((
                    n,
                    d.scheduled_destroy_time
                        .as_ref()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds(), 0))
                        .map(crate::core::document::format_time)
                        .unwrap_or_else(|| "a later time".into()),
                )),
                // Changed since the list (someone enabled, disabled or destroyed it): next time.
                Err(e) if matches!(code(&e), Some(Code::FailedPrecondition | Code::NotFound)) => {}
                Err(e) => {
                    return Err(self.gax_err(
                        e,
                        "DestroySecretVersion",
                        "secretmanager.versions.destroy",
                    ));
                }
            }
        }
        Ok((destroyed, scheduled))
    }

    async fn annotation_base(&self, name: &str) -> Result<Option<AnnotationBase>, StoreError> {
        Ok(self.get_secret(name).await?.map(|s| AnnotationBase {
            etag: s.etag,
            annotations: s.annotations,
        }))
    }
}

/// `…/versions/7` → 7.
fn version_number(name: &str) -> Option<u64> {
    name.rsplit_once("/versions/")?.1.parse().ok()
}

/// The `write_id` of a payload, if it is a JSON object carrying one.
fn write_id_of(data: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct W {
        write_id: Option<String>,
    }
    serde_json::from_slice::<W>(data).ok()?.write_id
}

#[async_trait]
impl TokenStore for GcpStore {
    fn backend(&self) -> &'static str {
        "gcp"
    }

    fn secret_id(&self) -> String {
        self.secret_id.clone()
    }

    /// The name Secret Manager reports (its project as a *number*, as notifications carry
    /// it); read once, as it never changes.
    async fn platform_name(&self) -> Result<Option<String>, StoreError> {
        let name = self.name().await?;
        self.platform_name
            .get_or_try_init(|| async { Ok(self.existing_secret(&name).await?.name) })
            .await
            .cloned()
            .map(Some)
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        let name = self.name().await?;
        match self.access(&name, "latest").await? {
            Access::Found {
                version, document, ..
            } => Ok(Some(Stored::new(Version(version.to_string()), document))),
            Access::NotFound => match self.get_secret(&name).await? {
                Some(_) => Ok(None),
                None => Err(self.missing(&name)),
            },
            Access::Unusable(why) => {
                // Disabled or destroyed: the token is due, not an error. Which version is it?
                let client = self.client().await?;
                let v = client
                    .get_secret_version()
                    .set_name(format!("{name}/versions/latest"))
                    .send()
                    .await
                    .map_err(|e| {
                        self.gax_err(e, "GetSecretVersion", "secretmanager.versions.get")
                    })?;
                let number = version_number(&v.name).unwrap_or_default();
                Ok(Some(Stored::new(
                    Version(number.to_string()),
                    Err(DocumentError(format!(
                        "the latest version ({number}) is not readable ({}); apps reading \
                         versions/latest fail until a new version is added",
                        if why.is_empty() {
                            format!("{:?}", v.state)
                        } else {
                            why
                        }
                    ))),
                )))
            }
        }
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        if version.0.parse::<u64>().is_err() {
            return Ok(None);
        }
        let name = self.name().await?;
        Ok(match self.access(&name, &version.0).await? {
            Access::Found {
                version, document, ..
            } => Some(Stored::new(Version(version.to_string()), document)),
            Access::NotFound | Access::Unusable(_) => None,
        })
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        let after = match mode.expected() {
            None => 0,
            Some(v) => v
                .0
                .parse::<u64>()
                .map_err(|_| self.conflict(mode, "the expected version is not a version number"))?,
        };
        let name = self.name().await?;
        // Under the lease the write carries, the engine re-read `latest` after taking it; only
        // a holder stalled past its lease or a writer that ignores leases can have added since.
        // A write without a lease takes one of its own for the add, and gives it back
        // whatever the add did (a later writer checks `latest` itself).
        let (write_id, own) = match self.usable(mode) {
            Some(holder) => (holder, false),
            None => {
                let (lease, _) = match self.take_lease(&name, after).await {
                    Ok(l) => l,
                    Err(LeaseError::Busy(why)) => return Err(self.conflict(mode, &why)),
                    Err(LeaseError::Store(e)) => return Err(e),
                };
                if !self.matches(&name, mode).await? {
                    self.clear_lease(&name, &lease.holder).await;
                    return Err(self.conflict(mode, "another runner wrote first"));
                }
                (lease.holder, true)
            }
        };
        let json = doc.to_json_with_write_id(&write_id);
        let added = self
            .add(&name, json.expose_secret().as_bytes(), &write_id, after)
            .await;
        if own {
            self.clear_lease(&name, &write_id).await;
        }
        let version = added?;
        self.collect_garbage(&name, version).await;
        Ok(Version(version.to_string()))
    }

    async fn check(&self) -> Result<(), StoreError> {
        let name = self.name().await?;
        self.existing_secret(&name).await.map(|_| ())
    }
}

/// The rotation lease: an etag-guarded annotation on the secret.
#[async_trait]
impl Leases for GcpStore {
    async fn acquire(&self, base: Option<&Version>) -> Result<Lease, StoreError> {
        let from = base.and_then(|v| v.0.parse::<u64>().ok()).unwrap_or(0);
        let name = self.name().await?;
        let (record, _) = match self.take_lease(&name, from).await {
            Ok(l) => l,
            Err(LeaseError::Busy(why)) => return Err(self.err(ErrorKind::Conflict, why)),
            Err(LeaseError::Store(e)) => return Err(e),
        };
        let until = record.expires().or_else(|| Some(Utc::now()));
        // A run dropped halfway (a push whose caller went away) does not leave the lease to
        // expire: it is cleared in the background, best effort, unless a version was written.
        let (store, holder) = (self.clone(), record.holder.clone());
        let clear = move |spent: bool| {
            if let (false, Ok(rt)) = (spent, tokio::runtime::Handle::try_current()) {
                rt.spawn(async move { store.clear_lease(&name, &holder).await });
            }
        };
        Ok(Lease::new(self.lease_store(), record.holder, base.cloned(), until).on_drop(clear))
    }

    async fn release(&self, lease: Lease) {
        if !lease.is_spent()
            && let Ok(name) = self.name().await
        {
            self.clear_lease(&name, lease.holder()).await;
        }
        // Spent: a newer version tells every runner so, no call.
        lease.handed_back();
    }
}

/// Run state in annotations on the secret (etag-guarded, beside the user's and the lease).
#[async_trait]
impl StateStore for GcpStore {
    fn policy(&self) -> StatePolicy {
        StatePolicy::AlertsOnly
    }

    fn capacity(&self) -> usize {
        state_annotations::CAPACITY
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        let name = self.name().await?;
        let Some(base) = self.annotation_base(&name).await? else {
            return Ok(StateRead::default());
        };
        let (bytes, torn) = state_annotations::decode(&base.annotations);
        Ok(StateRead {
            bytes,
            etag: Some(StateEtag::of(&base)),
            needs_write: torn,
        })
    }

    async fn write_state(
        &self,
        bytes: Option<&[u8]>,
        etag: Option<&StateEtag>,
    ) -> Result<(), StoreError> {
        let pairs = match bytes {
            Some(b) => {
                state_annotations::encode(b).map_err(|e| self.err(ErrorKind::Permanent, e))?
            }
            None => Vec::new(),
        };
        let name = self.name().await?;
        let mut base = match etag.and_then(StateEtag::value) {
            Some(b) => b,
            None => self
                .annotation_base(&name)
                .await?
                .ok_or_else(|| self.missing(&name))?,
        };
        for _ in 0..MAX_ETAG_RETRIES {
            let next = state_annotations::replace(&base.annotations, &pairs);
            if next == base.annotations {
                return Ok(());
            }
            if self
                .put_annotations(&name, &base.etag, next)
                .await?
                .is_some()
            {
                return Ok(());
            }
            base = self
                .annotation_base(&name)
                .await?
                .ok_or_else(|| self.missing(&name))?;
        }
        Err(self.err(
            ErrorKind::Transient,
            "the secret's etag kept changing while recording the run state",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_and_write_ids() {
        assert_eq!(version_number("projects/p/secrets/s/versions/12"), Some(12));
        assert_eq!(version_number("projects/p/secrets/s/versions/latest"), None);
        assert_eq!(
            write_id_of(br#"{"access_token":"x","write_id":"abc"}"#),
            Some("abc".into())
        );
        assert_eq!(write_id_of(br#"{"access_token":"x"}"#), None);
        assert_eq!(write_id_of(b"not json"), None);
    }
}
