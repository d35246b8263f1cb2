//! The token document as KV v2 data on a Vault / OpenBao path.
//!
//! - `read_current` is one `GET mount/data/path`: the document, its version
//!   (`metadata.version`) and, for free, the path's `custom_metadata`, which tells whether run
//!   state is kept ([`StateHint`]). A soft-deleted or destroyed latest version reads as that
//!   version with an unusable document, so the token is due and the next write replaces it.
//! - `write` is `POST mount/data/path` with `options.cas` = the version the decision was made
//!   from (`0` for the first write), so racing runners leave exactly one new version and the
//!   others get a check-and-set mismatch ([`ErrorKind::Conflict`]). It works whether or not
//!   the mount or the path has `cas_required`. Next to the document fields the data carries
//!   [`WRITE_ID_KEY`], a random id per write (applications ignore unknown keys): when the
//!   answer to a write is lost, one read of the version it would have created tells ours from
//!   another runner's — the token is never minted again for it.
//! - `keep_versions` is the path's `max_versions`, written after a rotation only when the
//!   metadata says otherwise.
//! - Run state (alert dedup, [`StatePolicy::AlertsOnly`]) lives in the path's
//!   `custom_metadata` (`state_meta`), through `GET`/`POST mount/metadata/path`, written only
//!   when it changes, with OpenBao's `metadata_cas` when the server has it.
//!
//! The least-privilege policy is `read` on the credentials' data path, `create`, `read`,
//! `update` on the token's data path and `read`, `update` on its metadata path.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::{info, warn};

use super::client::VaultClient;
use super::errors::{Op, VaultError, is_cas_mismatch};
use super::{VaultClients, state_meta};
use crate::core::document::{DocumentError, TokenDocument};
use crate::core::error::ErrorKind;
use crate::core::state::{StateEtag, StatePolicy, StateRead, StateStore};
use crate::core::store::{StateHint, StoreError, Stored, TokenStore, Version, WriteMode};

/// The KV data key holding the id of the write that created a version.
pub const WRITE_ID_KEY: &str = "deepvue_rotator_write_id";

/// A token path in a KV v2 mount.
pub struct VaultStore {
    clients: Arc<VaultClients>,
    mount: String,
    path: String,
    keep_versions: Option<u32>,
}

/// What one version read showed.
struct Read {
    version: u64,
    document: Result<TokenDocument, DocumentError>,
    write_id: Option<String>,
    custom: BTreeMap<String, String>,
}

/// What `read_state`'s metadata read showed, for the `write_state` of the same run (carried
/// as its [`StateEtag`]).
#[derive(Clone, Debug, Default, serde::Serialize, Deserialize)]
struct MetaBase {
    /// The path has metadata (a metadata write then needs `update`, not `create`).
    exists: bool,
    custom: BTreeMap<String, String>,
    /// OpenBao's `current_metadata_version`, for `metadata_cas`.
    metadata_version: Option<u64>,
}

#[derive(Deserialize)]
struct DataAnswer<'a> {
    #[serde(borrow)]
    data: Option<DataBody<'a>>,
}

#[derive(Deserialize)]
struct DataBody<'a> {
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    metadata: Option<VersionMeta>,
}

#[derive(Deserialize)]
struct VersionMeta {
    version: u64,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
    custom_metadata: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct MetaAnswer {
    data: MetaData,
}

#[derive(Deserialize)]
struct MetaData {
    #[serde(default)]
    max_versions: u64,
    custom_metadata: Option<BTreeMap<String, serde_json::Value>>,
    current_metadata_version: Option<u64>,
}

#[derive(Deserialize)]
struct WriteAnswer {
    data: Option<WriteData>,
}

#[derive(Deserialize)]
struct WriteData {
    version: u64,
}

/// `custom_metadata` values as strings (Vault coerces numbers).
fn strings(m: Option<BTreeMap<String, serde_json::Value>>) -> BTreeMap<String, String> {
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

impl VaultStore {
    /// A store at `path` in the KV v2 `mount`.
    pub fn new(
        clients: Arc<VaultClients>,
        mount: String,
        path: String,
        keep_versions: Option<u32>,
    ) -> Self {
        VaultStore {
            clients,
            mount,
            path,
            keep_versions,
        }
    }

    fn data_path(&self) -> String {
        format!("{}/data/{}", self.mount, self.path)
    }

    fn metadata_path(&self) -> String {
        format!("{}/metadata/{}", self.mount, self.path)
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError::new("vault", self.secret_id(), kind, message)
    }

    fn wrap(&self, e: VaultError) -> StoreError {
        StoreError::new("vault", self.secret_id(), e.kind, e.message.clone()).with_source(e)
    }

    async fn client(&self) -> Result<Arc<VaultClient>, StoreError> {
        self.clients.client().await.map_err(|e| self.wrap(e))
    }

    /// `GET data` (latest, or `version`): `None` when nothing is stored (or that version does
    /// not exist). A deleted or destroyed version reads with an unusable document.
    async fn read(&self, version: Option<u64>) -> Result<Option<Read>, StoreError> {
        let client = self.client().await?;
        let path = self.data_path();
        let query: Vec<(&str, String)> = version
            .map(|v| vec![("version", v.to_string())])
            .unwrap_or_default();
        let reply = client
            .call(Method::GET, &path, &query, None)
            .await
            .map_err(|e| self.wrap(e))?;
        if reply.status == 404 {
            let errors = reply.errors();
            if !errors.is_empty() {
                return Err(self.wrap(client.fail(Op::ReadData, &path, &reply)));
            }
        } else if !reply.ok() {
            return Err(self.wrap(client.fail(Op::ReadData, &path, &reply)));
        }
        let answer: DataAnswer<'_> = serde_json::from_slice(&reply.body).map_err(|e| {
            self.err(
                ErrorKind::Transient,
                format!("unexpected answer to GET `{path}` ({e}); is the mount a KV v2 engine?"),
            )
        })?;
        let Some(body) = answer.data else {
            return Ok(None); // 404 {"errors":[]}: nothing there
        };
        let Some(meta) = body.metadata else {
            return Err(self.err(
                ErrorKind::Config,
                format!(
                    "`{path}` answered without version metadata: mount `{}` is not a KV v2 \
                     engine (enable it with `bao secrets enable -version=2 -path={} kv`)",
                    self.mount, self.mount
                ),
            ));
        };
        let custom = strings(meta.custom_metadata);
        let (document, write_id) = match body.data {
            Some(raw) if reply.ok() => parse_data(raw),
            _ => (
                Err(DocumentError(format!(
                    "version {} is {}",
                    meta.version,
                    if meta.destroyed {
                        "destroyed"
                    } else if !meta.deletion_time.is_empty() {
                        "deleted"
                    } else {
                        "empty"
                    }
                ))),
                None,
            ),
        };
        Ok(Some(Read {
            version: meta.version,
            document,
            write_id,
            custom,
        }))
    }

    /// `GET metadata`: `None` when the path has none.
    async fn metadata(&self) -> Result<Option<MetaData>, StoreError> {
        let client = self.client().await?;
        let path = self.metadata_path();
        let reply = client
            .call(Method::GET, &path, &[], None)
            .await
            .map_err(|e| self.wrap(e))?;
        if reply.status == 404 && reply.errors().is_empty() {
            return Ok(None);
        }
        if !reply.ok() {
            return Err(self.wrap(client.fail(Op::ReadMetadata, &path, &reply)));
        }
        serde_json::from_slice::<MetaAnswer>(&reply.body)
            .map(|a| Some(a.data))
            .map_err(|e| {
                self.err(
                    ErrorKind::Transient,
                    format!("unexpected answer to GET `{path}`: {e}"),
                )
            })
    }

    /// `POST metadata` with `body` (a JSON object's fields).
    async fn post_metadata(
        &self,
        mut body: serde_json::Map<String, serde_json::Value>,
        base: &MetaBase,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let path = self.metadata_path();
        // OpenBao's metadata check-and-set: only when the server showed it has it (or the
        // path is new, where 0 means "only if still absent").
        match (base.exists, base.metadata_version) {
            (true, Some(v)) => {
                body.insert("metadata_cas".into(), v.into());
            }
            (false, _) => {
                body.insert("metadata_cas".into(), 0.into());
            }
            (true, None) => {}
        }
        let bytes =
            serde_json::to_vec(&body).map_err(|e| self.err(ErrorKind::Permanent, e.to_string()))?;
        let reply = client
            .call(Method::POST, &path, &[], Some(&bytes))
            .await
            .map_err(|e| self.wrap(e))?;
        if reply.ok() {
            return Ok(());
        }
        let mut e = self.wrap(client.fail(
            Op::WriteMetadata {
                create: !base.exists,
            },
            &path,
            &reply,
        ));
        if reply.status == 403 && !base.exists {
            e.message.push_str(
                " (the path has no metadata yet: with `update` only, run state and \
                 keep_versions are recorded once the first token version is written)",
            );
        }
        Err(e)
    }

    async fn meta_base(&self) -> Result<MetaBase, StoreError> {
        Ok(match self.metadata().await? {
            None => MetaBase::default(),
            Some(m) => MetaBase {
                exists: true,
                custom: strings(m.custom_metadata),
                metadata_version: m.current_metadata_version,
            },
        })
    }

    /// After a rotation: make `max_versions` what `keep_versions` says, if it is not.
    async fn keep_versions(&self, keep: u32) -> Result<(), StoreError> {
        let Some(m) = self.metadata().await? else {
            return Ok(());
        };
        if m.max_versions == u64::from(keep) {
            return Ok(());
        }
        let base = MetaBase {
            exists: true,
            custom: BTreeMap::new(),
            metadata_version: m.current_metadata_version,
        };
        let mut body = serde_json::Map::new();
        body.insert("max_versions".into(), keep.into());
        self.post_metadata(body, &base).await?;
        info!(
            max_versions = keep,
            was = m.max_versions,
            "set the path's max_versions"
        );
        Ok(())
    }

    fn conflict(&self, expected: u64) -> StoreError {
        self.err(
            ErrorKind::Conflict,
            format!(
                "`{}` is no longer at version {expected} (check-and-set mismatch): another \
                 runner wrote first; nothing written",
                self.data_path()
            ),
        )
    }
}

/// The KV data: the document (our key ignored by its parser) and the write id.
fn parse_data(raw: &RawValue) -> (Result<TokenDocument, DocumentError>, Option<String>) {
    #[derive(Deserialize)]
    struct Id {
        #[serde(rename = "deepvue_rotator_write_id")]
        id: Option<String>,
    }
    let bytes = raw.get().as_bytes();
    let id = serde_json::from_slice::<Id>(bytes).ok().and_then(|i| i.id);
    (TokenDocument::from_json(bytes), id)
}

/// A random id for one write.
fn write_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_version(v: &Version) -> Result<u64, String> {
    v.0.parse::<u64>()
        .map_err(|_| format!("version `{v}` is not a KV v2 version number"))
}

#[async_trait]
impl TokenStore for VaultStore {
    fn backend(&self) -> &'static str {
        "vault"
    }

    fn secret_id(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        Ok(self.read(None).await?.map(|r| Stored {
            version: Version(r.version.to_string()),
            document: r.document,
            state: if state_meta::marked(&r.custom) {
                StateHint::Kept
            } else {
                StateHint::None
            },
        }))
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        let Ok(v) = parse_version(version) else {
            return Ok(None);
        };
        if v == 0 {
            return Ok(None);
        }
        Ok(self
            .read(Some(v))
            .await?
            .filter(|r| r.version == v && r.document.is_ok())
            .map(|r| Stored::new(Version(r.version.to_string()), r.document)))
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        let expected = match mode.expected() {
            None => 0,
            Some(v) => parse_version(v).map_err(|m| self.err(ErrorKind::Permanent, m))?,
        };
        let id = write_id();
        let json = doc.to_json();
        let doc_json = json.expose_secret();
        let Some(fields) = doc_json
            .strip_suffix('}')
            .filter(|f| f.starts_with('{') && f.len() > 1)
        else {
            return Err(self.err(ErrorKind::Permanent, "the token document is not an object"));
        };
        let body = Zeroizing::new(format!(
            r#"{{"options":{{"cas":{expected}}},"data":{fields},"{WRITE_ID_KEY}":"{id}"}}}}"#
        ));
        let client = self.client().await?;
        let path = self.data_path();
        let create = expected == 0;
        let sent = client
            .call(Method::POST, &path, &[], Some(body.as_bytes()))
            .await;
        let lost = match sent {
            Ok(reply) if reply.ok() => {
                let version = serde_json::from_slice::<WriteAnswer>(&reply.body)
                    .ok()
                    .and_then(|a| a.data)
                    .map(|d| d.version)
                    .ok_or_else(|| {
                        self.err(
                            ErrorKind::Config,
                            format!(
                                "`{path}` answered the write without a version: mount `{}` is \
                                 not a KV v2 engine",
                                self.mount
                            ),
                        )
                    })?;
                if let Some(keep) = self.keep_versions
                    && let Err(e) = self.keep_versions(keep).await
                {
                    warn!(error = %e, "cannot set the path's max_versions (keep_versions)");
                }
                return Ok(Version(version.to_string()));
            }
            Ok(reply) if reply.status == 400 && is_cas_mismatch(&reply.errors()) => {
                return Err(self.conflict(expected));
            }
            Ok(reply) => {
                let e = client.fail(Op::WriteData { create }, &path, &reply);
                if e.kind != ErrorKind::Transient {
                    return Err(self.wrap(e));
                }
                e
            }
            Err(e) if e.kind == ErrorKind::Transient => e,
            Err(e) => return Err(self.wrap(e)),
        };
        // No answer (or a 5xx): the version may have landed. The version it would have
        // created tells: ours (same write id), another runner's, or none.
        let Some(next) = expected.checked_add(1) else {
            return Err(self.wrap(lost));
        };
        match self.read(Some(next)).await {
            Ok(Some(r)) if r.version == next => {
                if r.write_id.as_deref() == Some(id.as_str()) {
                    info!(
                        version = r.version,
                        "the write landed although its answer was lost"
                    );
                    Ok(Version(r.version.to_string()))
                } else {
                    Err(self.conflict(expected))
                }
            }
            _ => Err(self.wrap(lost)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let current = self.read(None).await?;
        let client = self.client().await?;
        let (data, meta) = (self.data_path(), self.metadata_path());
        let caps = client
            .capabilities(&[data.clone(), meta.clone()])
            .await
            .map_err(|e| self.wrap(e))?;
        let Some(caps) = caps else {
            return Ok(()); // capabilities-self not allowed: the read above is all we can prove
        };
        let mut need: Vec<(&String, Vec<&str>)> = vec![
            (&data, vec!["read", "update"]),
            (&meta, vec!["read", "update"]),
        ];
        if current.is_none() {
            need[0].1.push("create");
        }
        let mut missing = Vec::new();
        for (path, wanted) in need {
            let have = caps.get(path).cloned().unwrap_or_default();
            if have.iter().any(|c| c == "root") {
                continue;
            }
            let lacking: Vec<&str> = wanted
                .into_iter()
                .filter(|w| !have.iter().any(|h| h == w))
                .collect();
            if !lacking.is_empty() {
                missing.push(format!("`{}` on `{path}`", lacking.join("`, `")));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.err(
                ErrorKind::Permanent,
                format!(
                    "the Vault token's policy lacks {} (the rotator needs create, read, update \
                     on the data path and read, update on the metadata path)",
                    missing.join(" and ")
                ),
            ))
        }
    }
}

/// Run state in the path's `custom_metadata`.
#[async_trait]
impl StateStore for VaultStore {
    fn policy(&self) -> StatePolicy {
        StatePolicy::AlertsOnly
    }

    fn capacity(&self) -> usize {
        state_meta::CAPACITY
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        let base = self.meta_base().await?;
        let (bytes, torn) = state_meta::decode(&base.custom);
        Ok(StateRead {
            bytes,
            etag: Some(StateEtag::of(&base)),
            // State keys that do not decode (a torn write, keys edited by hand): the next
            // write_state clears them, or every run would pay the metadata read.
            needs_write: torn,
        })
    }

    async fn write_state(
        &self,
        bytes: Option<&[u8]>,
        etag: Option<&StateEtag>,
    ) -> Result<(), StoreError> {
        let keys = match bytes {
            Some(b) => state_meta::encode(b).map_err(|e| self.err(ErrorKind::Permanent, e))?,
            None => Vec::new(),
        };
        let mut base = match etag.and_then(StateEtag::value) {
            Some(b) => b,
            None => self.meta_base().await?,
        };
        for _ in 0..3 {
            let next = state_meta::merged(&base.custom, &keys);
            if next == base.custom {
                return Ok(()); // nothing changes: nothing written
            }
            let mut body = serde_json::Map::new();
            body.insert(
                "custom_metadata".into(),
                serde_json::to_value(&next)
                    .map_err(|e| self.err(ErrorKind::Permanent, e.to_string()))?,
            );
            match self.post_metadata(body, &base).await {
                Ok(()) => return Ok(()),
                // Someone else changed the metadata since it was read: merge again.
                Err(e) if e.kind == ErrorKind::Conflict => base = self.meta_base().await?,
                Err(e) => return Err(e),
            }
        }
        Err(self.err(
            ErrorKind::Transient,
            "the path's metadata kept changing while the run state was written",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_id_sits_beside_the_document_fields() {
        let raw = RawValue::from_string(
            r#"{"access_token":"SENTINEL","token_type":"bearer","expiry":"2026-11-29T15:50:18Z","issued_at":"2026-11-28T15:50:18Z","deepvue_rotator_write_id":"abc"}"#
                .to_string(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (doc, id) = parse_data(&raw);
        assert!(doc.is_ok());
        assert_eq!(id.as_deref(), Some("abc"));
        assert_eq!(write_id().len(), 32);
        assert_ne!(write_id(), write_id());
        assert!(parse_version(&Version("x".into())).is_err());
    }
}
