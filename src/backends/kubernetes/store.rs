//! The token in one Opaque `Secret`.
//!
//! **Layout.** `data` holds, for pods (env from `secretKeyRef`, or a mounted volume, which the
//! kubelet updates in place): `access_token`, `token_type`, `expiry`, `issued_at` (RFC 3339)
//! and `version` (the current version number), plus `x_api_key` when the token publishes it;
//! and for the rotator and anyone who needs the
//! previous token: `token.v<N>.json`, the whole document of each of the last `keep_versions`
//! versions (the current one included). Keys of others are left alone. Run state (alert
//! dedup) is kept in annotations `deepvue-rotator.state.*`.
//!
//! **Why one Secret, not a Secret per version.** RBAC can name one Secret
//! (`resourceNames`) for `get`/`update`/`patch`; per-version Secrets would need `create`,
//! `list` and `delete` on every Secret of the namespace, which `resourceNames` cannot limit.
//! And the version history moves with the token in one atomic write.
//!
//! **Conditional writes.** A write reads the Secret (`GET`), checks that the current version
//! is the one the decision was made from, and `PUT`s it back with that read's
//! `metadata.resourceVersion`: a runner that wrote in between makes it `409 Conflict`, and
//! nothing is written (the engine reports "rotated by another runner"). There is no lease:
//! runners racing past the decision may each mint, and only one writes (as with AWS). A `PUT`
//! whose answer was lost is looked for before it is reported as failed: a re-read that shows
//! our version with our token means it landed.
//!
//! **Cost.** A no-op pass is one `GET`; a rotation `GET` (decide), `GET` + `PUT` (write); run
//! state, when alerting needs it, one merge `PATCH` with the `resourceVersion` as its
//! precondition. `check` is a `GET` and a dry-run `PUT` (RBAC is checked, nothing stored).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use super::{KubeClient, KubeClients, KubeError};
use crate::core::document::{DocumentError, TokenDocument, format_time};
use crate::core::error::ErrorKind;
use crate::core::state::{StateChunks, StateEtag, StatePolicy, StateRead, StateStore};
use crate::core::store::{StateHint, StoreError, Stored, TokenStore, Version, WriteMode};

/// Annotation keys holding the run state start with this.
pub const STATE_ANNOTATION_PREFIX: &str = "deepvue-rotator.state.";
/// Annotations of one object may hold 256 KiB; the state takes at most 16 KiB of base64.
const CHUNKS: StateChunks = StateChunks {
    prefix: STATE_ANNOTATION_PREFIX,
    chunk: 4096,
    max_chunks: 4,
};
/// The key holding the current version number.
const VERSION_KEY: &str = "version";
/// The client secret, for pods, when the token's `publish_api_key` is on.
const API_KEY_KEY: &str = "x_api_key";
/// The document fields pods read.
const FIELDS: [&str; 4] = ["access_token", "token_type", "expiry", "issued_at"];
/// State-write races retried.
const MAX_PATCH_RETRIES: u32 = 3;

fn version_key(n: u64) -> String {
    format!("token.v{n}.json")
}

/// The version number of a `token.v<N>.json` key.
fn version_of_key(key: &str) -> Option<u64> {
    key.strip_prefix("token.v")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A `data` value, decoded (zeroised when dropped).
fn data_value(obj: &Value, key: &str) -> Option<Zeroizing<Vec<u8>>> {
    obj["data"][key].as_str().map(|v| {
        Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .unwrap_or_default(),
        )
    })
}

/// The most versions one Secret counts to (as the file store's ten digits).
const MAX_VERSION: u64 = 9_999_999_999;

/// The current version number: `Ok(None)` for an empty Secret; a `version` key that is not a
/// number in range is an error (never "empty": that would write version 1 over the history).
fn current_version(obj: &Value) -> Result<Option<u64>, String> {
    let Some(raw) = obj["data"][VERSION_KEY].as_str() else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| t.trim().parse::<u64>().ok())
        .filter(|n| (1..=MAX_VERSION).contains(n))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "key `{VERSION_KEY}` is not a version number (1 to {MAX_VERSION}); fix or remove it"
            )
        })
}

/// The document of version `n`, when the Secret keeps it.
fn document_at(obj: &Value, n: u64) -> Option<Result<TokenDocument, DocumentError>> {
    data_value(obj, &version_key(n)).map(|b| TokenDocument::from_json(&b))
}

fn annotations(obj: &Value) -> HashMap<String, String> {
    obj["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn state_hint(obj: &Value) -> StateHint {
    if annotations(obj).keys().any(|k| CHUNKS.owns(k)) {
        StateHint::Kept
    } else {
        StateHint::None
    }
}

/// What a state write needs from the read before it: the precondition and our annotations.
#[derive(Serialize, Deserialize)]
struct StateBase {
    resource_version: String,
    ours: BTreeMap<String, String>,
}

impl StateBase {
    fn of(obj: &Value) -> StateBase {
        StateBase {
            resource_version: obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ours: annotations(obj)
                .into_iter()
                .filter(|(k, _)| CHUNKS.owns(k))
                .collect(),
        }
    }
}

/// The token Secret `name` in `namespace` (the client's default when `None`).
pub struct KubeStore {
    clients: Arc<KubeClients>,
    namespace: Option<String>,
    name: String,
    keep: u32,
    create: bool,
}

impl KubeStore {
    /// A store keeping `keep` versions; `create`: the first write may create the Secret.
    pub fn new(
        clients: Arc<KubeClients>,
        namespace: Option<String>,
        name: String,
        keep: u32,
        create: bool,
    ) -> Self {
        KubeStore {
            clients,
            namespace,
            name,
            keep,
            create,
        }
    }

    fn err(&self, kind: ErrorKind, message: impl Into<String>) -> StoreError {
        StoreError::new("kubernetes", self.secret_id(), kind, message)
    }

    fn wrap(&self, e: KubeError) -> StoreError {
        self.err(e.kind, e.message.clone()).with_source(e)
    }

    async fn client(&self) -> Result<(&KubeClient, String), StoreError> {
        let client = self.clients.client().await.map_err(|e| self.wrap(e))?;
        let ns = client.namespace(self.namespace.as_deref()).to_string();
        Ok((client, ns))
    }

    async fn get(&self) -> Result<(&KubeClient, String, Option<Value>), StoreError> {
        let (client, ns) = self.client().await?;
        let obj = client
            .get_secret(&ns, &self.name)
            .await
            .map_err(|e| self.wrap(e))?;
        if obj
            .as_ref()
            .is_some_and(|o| !o.is_object() || !o["data"].is_object() && !o["data"].is_null())
        {
            return Err(self.err(
                ErrorKind::Transient,
                "the Kubernetes API answered something that is not a Secret",
            ));
        }
        Ok((client, ns, obj))
    }

    fn missing(&self, ns: &str) -> StoreError {
        self.err(
            ErrorKind::Config,
            format!(
                "secret `{}` in namespace `{ns}` does not exist: create it empty (`kubectl create \
                 secret generic {} -n {ns}`; the manifests in deploy/kubernetes ship it) or set \
                 create_if_missing = true (which needs RBAC `create` on secrets)",
                self.name, self.name
            ),
        )
    }

    fn conflict(&self, why: String) -> StoreError {
        self.err(ErrorKind::Conflict, why)
    }

    /// `data` with version `n` = `doc` as the current token; other keys kept, versions beyond
    /// `keep` dropped.
    fn next_data(
        &self,
        old: &Value,
        doc: &TokenDocument,
        n: u64,
    ) -> serde_json::Map<String, Value> {
        let mut data = old["data"].as_object().cloned().unwrap_or_default();
        let oldest_kept = n.saturating_sub(u64::from(self.keep) - 1);
        data.retain(|k, _| version_of_key(k).is_none_or(|v| v >= oldest_kept));
        let doc_json = doc.to_json();
        let values: [(&str, String); 5] = [
            (
                "access_token",
                b64(doc.access_token.expose_secret().as_bytes()),
            ),
            ("token_type", b64(doc.token_type.as_bytes())),
            ("expiry", b64(format_time(doc.expiry).as_bytes())),
            ("issued_at", b64(format_time(doc.issued_at).as_bytes())),
            (VERSION_KEY, b64(n.to_string().as_bytes())),
        ];
        for (k, v) in values {
            data.insert(k.to_string(), Value::String(v));
        }
        data.insert(
            version_key(n),
            Value::String(b64(doc_json.expose_secret().as_bytes())),
        );
        match &doc.x_api_key {
            Some(k) => {
                data.insert(
                    API_KEY_KEY.to_string(),
                    Value::String(b64(k.expose_secret().as_bytes())),
                );
            }
            None => {
                data.remove(API_KEY_KEY);
            }
        }
        debug_assert!(FIELDS.iter().all(|f| data.contains_key(*f)));
        data
    }

    /// Whether version `n` with `doc`'s token is what the Secret holds now (a write whose
    /// answer was lost).
    async fn landed(&self, n: u64, doc: &TokenDocument) -> bool {
        match self.get().await {
            Ok((_, _, Some(obj))) => {
                current_version(&obj) == Ok(Some(n))
                    && document_at(&obj, n).is_some_and(|d| d.is_ok_and(|d| d.same_token(doc)))
            }
            _ => false,
        }
    }
}

/// The state of one Secret's watch.
struct Watch {
    clients: Arc<KubeClients>,
    namespace: Option<String>,
    name: String,
    /// Where the next watch starts (`None`: learn it with a GET first).
    from: Option<String>,
    /// The last resourceVersion seen.
    known: Option<String>,
    resp: Option<reqwest::Response>,
    /// Bytes of an event line not complete yet.
    buf: Vec<u8>,
    failures: u32,
    /// Events received on the current connection.
    lines: u32,
}

/// Longest watch event line kept (a Secret is at most 1 MiB).
const MAX_WATCH_LINE: usize = 2 * 1024 * 1024;

impl Watch {
    /// Wait for the next change; `None`: watching is not allowed (readers poll).
    async fn next(&mut self) -> Option<()> {
        loop {
            if self.resp.is_none() {
                if self.failures > 0 {
                    let secs = 1u64 << self.failures.min(6);
                    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                }
                match self.connect().await {
                    Ok(changed) => {
                        self.lines = 0;
                        if changed {
                            return Some(());
                        }
                    }
                    Err(e) if e.kind == ErrorKind::Forbidden => {
                        warn!(error = %e.message, "cannot watch the Secret; readers poll");
                        return None;
                    }
                    // The starting point is too old: learn it again, at once.
                    Err(e) if e.status == Some(410) && self.from.is_some() => {
                        self.from = None;
                    }
                    Err(_) => {
                        self.failures = self.failures.saturating_add(1);
                        continue;
                    }
                }
            }
            let Some(resp) = self.resp.as_mut() else {
                continue;
            };
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    self.buf.extend_from_slice(&bytes);
                    if self.take_lines() {
                        return Some(());
                    }
                    if self.buf.len() > MAX_WATCH_LINE {
                        self.buf.clear();
                        self.resp = None;
                        self.failures = self.failures.saturating_add(1);
                    }
                }
                // The watch's time is up: start again where it ended; a watch that ended
                // before any event came is a failure (backoff, never a tight loop).
                Ok(None) => {
                    self.resp = None;
                    if self.lines == 0 {
                        self.failures = self.failures.saturating_add(1);
                    }
                }
                Err(_) => {
                    self.resp = None;
                    self.failures = self.failures.saturating_add(1);
                }
            }
        }
    }

    /// Open the watch (after a GET when the starting point is unknown); whether that GET
    /// found the Secret changed since it was last seen.
    async fn connect(&mut self) -> Result<bool, KubeError> {
        let client = self.clients.client().await?;
        let ns = client.namespace(self.namespace.as_deref()).to_string();
        let mut changed = false;
        let from = match &self.from {
            Some(rv) => rv.clone(),
            None => {
                let rv = client.get_secret(&ns, &self.name).await?.and_then(|o| {
                    o["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_string)
                });
                changed = self.known.is_some() && rv != self.known;
                self.known = rv;
                // From now (""): the Secret's own resourceVersion may be older than the
                // server's watch history (a 410 at once); the current object then comes first
                // as ADDED, which is no change when its version is the one just read.
                String::new()
            }
        };
        self.buf.clear();
        self.resp = Some(client.watch_secret(&ns, &self.name, &from).await?);
        self.from = Some(from);
        Ok(changed)
    }

    /// Handle the complete event lines in the buffer; whether one was a change.
    fn take_lines(&mut self) -> bool {
        let mut changed = false;
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if event["type"] != "ERROR" {
                self.lines += 1;
                self.failures = 0;
            }
            let rv = event["object"]["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string);
            match event["type"].as_str() {
                Some("ADDED" | "MODIFIED" | "DELETED") => {
                    if rv.is_some() && rv != self.known {
                        changed = true;
                    }
                    self.known = rv.clone();
                    self.from = rv;
                }
                Some("BOOKMARK") => self.from = rv.or(self.from.take()),
                Some("ERROR") => {
                    // 410 Gone (or another error): learn the starting point again, after a
                    // backoff that grows while errors repeat.
                    self.failures = self.failures.saturating_add(1);
                    self.from = None;
                    self.resp = None;
                    return changed;
                }
                _ => {}
            }
        }
        changed
    }
}

#[async_trait]
impl TokenStore for KubeStore {
    fn backend(&self) -> &'static str {
        "kubernetes"
    }

    fn secret_id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// A watch on the Secret (the API's `watch`, from its resourceVersion): yields when the
    /// Secret changes (added, modified, deleted) — and when a watch that expired (410) finds a
    /// different resourceVersion on its next start; made again after each `timeoutSeconds`
    /// and, with backoff, after errors; ends when RBAC does not allow `watch` (readers poll).
    fn changes(&self) -> Option<futures::stream::BoxStream<'static, ()>> {
        Some(Box::pin(futures::stream::unfold(
            Watch {
                clients: self.clients.clone(),
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                from: None,
                known: None,
                resp: None,
                buf: Vec::new(),
                failures: 0,
                lines: 0,
            },
            |mut w| async move { w.next().await.map(|()| ((), w)) },
        )))
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        let (_, ns, obj) = self.get().await?;
        let Some(obj) = obj else {
            return if self.create {
                Ok(None)
            } else {
                Err(self.missing(&ns))
            };
        };
        let Some(n) = current_version(&obj).map_err(|e| self.err(ErrorKind::Permanent, e))? else {
            return Ok(None);
        };
        let document = document_at(&obj, n).unwrap_or_else(|| {
            Err(DocumentError(format!(
                "key `version` says {n}, but `{}` is missing",
                version_key(n)
            )))
        });
        Ok(Some(Stored {
            version: Version(n.to_string()),
            document,
            state: state_hint(&obj),
        }))
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        let Ok(n) = version.0.parse::<u64>() else {
            return Ok(None);
        };
        let (_, _, obj) = self.get().await?;
        Ok(obj
            .and_then(|o| document_at(&o, n))
            .map(|document| Stored::new(version.clone(), document)))
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        let (client, ns, obj) = self.get().await?;
        let expected = mode.expected().map(|v| v.0.clone());
        let Some(mut obj) = obj else {
            if !self.create {
                return Err(self.missing(&ns));
            }
            if expected.is_some() {
                return Err(self.conflict("the secret was deleted since it was read".into()));
            }
            let new = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": self.name,
                    "namespace": ns,
                    "labels": {"app.kubernetes.io/managed-by": "deepvue-rotator"},
                },
                "type": "Opaque",
                "data": self.next_data(&json!({}), doc, 1),
            });
            return match client.create_secret(&ns, &new).await {
                Ok(_) => Ok(Version("1".into())),
                Err(e) if e.status == Some(409) => Err(self
                    .conflict("another runner created the secret first; nothing written".into())),
                Err(e) => Err(self.wrap(e)),
            };
        };
        let current = current_version(&obj).map_err(|e| self.err(ErrorKind::Permanent, e))?;
        if current.map(|n| n.to_string()) != expected {
            return Err(self.conflict(format!(
                "the secret holds version {} now, not {} this run decided from; nothing written",
                current.map_or("none".into(), |n| n.to_string()),
                expected.as_deref().unwrap_or("none")
            )));
        }
        let n = current.unwrap_or(0) + 1;
        if n > MAX_VERSION {
            return Err(self.err(
                ErrorKind::Permanent,
                format!(
                    "version numbers are exhausted (the last is {MAX_VERSION}); start a new Secret"
                ),
            ));
        }
        obj["data"] = Value::Object(self.next_data(&obj, doc, n));
        match client.replace_secret(&ns, &self.name, &obj, false).await {
            Ok(_) => Ok(Version(n.to_string())),
            Err(e) if e.kind == ErrorKind::Conflict => Err(self.conflict(format!(
                "another runner wrote the secret since it was read; nothing written ({})",
                e.message
            ))),
            // No answer, or a gateway's 5xx: the write may have landed all the same.
            Err(e) if e.kind == ErrorKind::Transient => {
                if self.landed(n, doc).await {
                    warn!(error = %e, "the write's answer was lost, but it landed");
                    Ok(Version(n.to_string()))
                } else {
                    Err(self.wrap(e))
                }
            }
            Err(e) => Err(self.wrap(e)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let (client, ns, obj) = self.get().await?;
        match obj {
            Some(obj) => client
                .replace_secret(&ns, &self.name, &obj, true)
                .await
                .map(drop)
                .map_err(|e| self.wrap(e)),
            None if self.create => Ok(()),
            None => Err(self.missing(&ns)),
        }
    }
}

#[async_trait]
impl StateStore for KubeStore {
    fn policy(&self) -> StatePolicy {
        StatePolicy::AlertsOnly
    }

    fn capacity(&self) -> usize {
        CHUNKS.capacity()
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        let (_, _, obj) = self.get().await?;
        let Some(obj) = obj else {
            return Ok(StateRead {
                bytes: None,
                etag: None,
                needs_write: false,
            });
        };
        let ann = annotations(&obj);
        let (bytes, torn) = CHUNKS.read(|k| ann.get(k).map(String::as_str));
        Ok(StateRead {
            bytes,
            etag: Some(StateEtag::of(&StateBase::of(&obj))),
            needs_write: torn,
        })
    }

    async fn write_state(
        &self,
        bytes: Option<&[u8]>,
        etag: Option<&StateEtag>,
    ) -> Result<(), StoreError> {
        let pairs = match bytes {
            Some(b) => CHUNKS
                .encode(b)
                .map_err(|e| self.err(ErrorKind::Permanent, e))?,
            None => Vec::new(),
        };
        let (client, ns) = self.client().await?;
        let mut base = etag.and_then(StateEtag::value::<StateBase>);
        for _ in 0..MAX_PATCH_RETRIES {
            let b = match base.take() {
                Some(b) => b,
                None => match self.get().await?.2 {
                    Some(obj) => StateBase::of(&obj),
                    None if bytes.is_none() => return Ok(()),
                    None => return Err(self.missing(&ns)),
                },
            };
            let next: BTreeMap<String, String> = pairs.iter().cloned().collect();
            if next == b.ours {
                return Ok(()); // nothing changes: nothing written
            }
            let mut ann = serde_json::Map::new();
            for k in b.ours.keys().filter(|k| !next.contains_key(*k)) {
                ann.insert(k.clone(), Value::Null);
            }
            for (k, v) in next {
                ann.insert(k, Value::String(v));
            }
            let patch = json!({"metadata": {
                "resourceVersion": b.resource_version,
                "annotations": ann,
            }});
            match client.patch_secret(&ns, &self.name, &patch).await {
                Ok(_) => return Ok(()),
                // Someone wrote since it was read: read again and patch again.
                Err(e) if e.kind == ErrorKind::Conflict => {}
                Err(e) => return Err(self.wrap(e)),
            }
        }
        Err(self.err(
            ErrorKind::Transient,
            "the secret kept changing while the run state was written",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_keys_round_trip_and_only_ours_are_pruned() {
        assert_eq!(version_of_key(&version_key(17)), Some(17));
        assert_eq!(version_of_key("token.vX.json"), None);
        assert_eq!(version_of_key("access_token"), None);
        let store = KubeStore::new(
            KubeClients::new(&Default::default()),
            None,
            "t".into(),
            2,
            false,
        );
        let doc = TokenDocument {
            access_token: secrecy::SecretString::from("tok".to_string()),
            token_type: "bearer".into(),
            expiry: chrono::DateTime::from_timestamp(2_000_000_000, 0).unwrap_or_default(),
            issued_at: chrono::DateTime::from_timestamp(1_999_913_600, 0).unwrap_or_default(),
            x_api_key: None,
        };
        let old =
            json!({"data": {"token.v1.json": "e30=", "token.v2.json": "e30=", "mine": "eA=="}});
        let data = store.next_data(&old, &doc, 3);
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert!(keys.contains(&"mine"), "{keys:?}");
        assert!(keys.contains(&"token.v2.json") && keys.contains(&"token.v3.json"));
        assert!(!keys.contains(&"token.v1.json"), "keep = 2: {keys:?}");
        let obj = json!({ "data": Value::Object(data) });
        assert_eq!(current_version(&obj), Ok(Some(3)));
        assert!(
            current_version(&json!({"data": {"version": "eA=="}})).is_err(),
            "not a number"
        );
        assert!(
            current_version(&json!({"data": {"version": b64(b"18446744073709551615")}})).is_err(),
            "out of range"
        );
        assert_eq!(current_version(&json!({"data": {}})), Ok(None));
        assert!(document_at(&obj, 3).is_some_and(|d| d.is_ok_and(|d| d.same_token(&doc))));
    }
}
