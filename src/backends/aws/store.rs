//! AWS Secrets Manager token store.
//!
//! Each rotation is `PutSecretValue` without `VersionStages`: the new version becomes
//! AWSCURRENT and the one before it AWSPREVIOUS (still readable).
//!
//! **Conditional writes.** Secrets Manager has no compare-and-swap, but versions are immutable
//! and `ClientRequestToken` becomes the new VersionId. The token is derived from the version the
//! decision was made from (see [`AwsStore::request_token`]), so every runner that decided from
//! version V writes under the same id: the first creates the version, every other one gets
//! `ResourceExistsException` ("same token, different value") and ends as a clean conflict. A
//! stale runner that read V after someone already wrote past it collides with the version the
//! winner wrote from V. When the id exists but AWSCURRENT is *still* V (an operator rolled
//! AWSCURRENT back to V), the write moves to the next generation of ids instead of reporting a
//! race that never happened. A put whose response was lost is retried with the same id and
//! value (the SDK's retries, then one look at that version), never by minting again.
//!
//! **Cost.** `read_current` is one `GetSecretValue`; a write one `PutSecretValue`. Run state
//! (alert dedup) lives in tags on the token secret (`state_tags`). Whether there is any is
//! marked, for free, by the staging label [`MARKER`] on the current version, which
//! `GetSecretValue` returns anyway: `read_current` reports it as the [`StateHint`], and the
//! engine reads the tags (`DescribeSecret`) only when the marker is there, the run failed or
//! rotated, or egress drifted. The store object itself remembers nothing between calls: what
//! `write_state` needs from the `DescribeSecret` of `read_state` travels in its etag.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::types::Tag;
use secrecy::ExposeSecret;
use tracing::warn;

use super::errors::{classify_sm_error, sm_code};
use super::{AwsClients, AwsStoreConfig, same_secret, state_tags};
use crate::core::document::{DocumentError, TokenDocument};
use crate::core::error::ErrorKind;
use crate::core::state::{StateEtag, StatePolicy, StateRead, StateStore};
use crate::core::store::{StateHint, StoreError, Stored, TokenStore, Version, WriteMode};

pub(super) const CURRENT: &str = "AWSCURRENT";
/// Staging label on the current version while run state (open alerts, a failure) is kept.
pub const MARKER: &str = "DEEPVUE_ROTATOR_ALERTS";
/// Rollbacks of AWSCURRENT tolerated per expected version before giving up.
const MAX_GENERATIONS: u32 = 4;
/// Description of a secret this tool creates.
const DESCRIPTION: &str = "Deepvue access token, rotated by deepvue-rotator";

/// What `read_state`'s `DescribeSecret` showed, for the `write_state` of the same run (carried
/// as its [`StateEtag`]).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct TagState {
    /// State tag keys present.
    keys: Vec<String>,
    /// Where [`MARKER`] is.
    marker_on: Option<String>,
    /// The current version (newer than what `read_current` saw, if another runner moved it).
    current: Option<String>,
}

/// A token secret in AWS Secrets Manager.
#[derive(Clone)]
pub struct AwsStore {
    clients: Arc<AwsClients>,
    secret_id: String,
    create_if_missing: bool,
    kms_key_id: Option<String>,
    tags: BTreeMap<String, String>,
}

pub(super) enum PutError {
    /// `ResourceExistsException`: that version id is taken.
    Exists,
    /// `ResourceNotFoundException`: no such secret.
    NotFound,
    Other(StoreError),
}

impl AwsStore {
    /// A store for the entry's secret (name or ARN).
    pub fn new(clients: Arc<AwsClients>, cfg: &AwsStoreConfig) -> Self {
        AwsStore {
            clients,
            secret_id: cfg.secret_id.clone(),
            create_if_missing: cfg.create_if_missing,
            kms_key_id: cfg.kms_key_id.clone(),
            tags: cfg.tags.clone(),
        }
    }

    /// The same store, addressed by another spelling of its secret id (a rotation event's
    /// ARN), so every call and message uses the id Secrets Manager gave.
    pub fn addressed_as(mut self, secret_id: &str) -> Self {
        self.secret_id = secret_id.to_string();
        self
    }

    pub(super) fn err(&self, kind: ErrorKind, message: String) -> StoreError {
        StoreError::new("aws", self.secret_id.clone(), kind, message)
    }

    pub(super) fn sdk_err<E>(
        &self,
        e: &aws_sdk_secretsmanager::error::SdkError<
            E,
            aws_sdk_secretsmanager::config::http::HttpResponse,
        >,
        action: &str,
    ) -> StoreError
    where
        E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (kind, message) = classify_sm_error(e, action, self.kms_key_id.is_some());
        self.err(kind, message)
    }

    /// The Secrets Manager client of the secret's region (its ARN's, else the configured one).
    pub(super) async fn client(&self) -> Result<aws_sdk_secretsmanager::Client, StoreError> {
        self.clients
            .secrets_manager_in(super::arn_region(&self.secret_id))
            .await
            .map_err(|e| self.err(ErrorKind::Config, e.to_string()).with_source(e))
    }

    pub(super) fn secret(&self) -> &str {
        &self.secret_id
    }

    fn missing(&self) -> StoreError {
        self.err(
            ErrorKind::Config,
            "the secret does not exist; create it (e.g. `aws secretsmanager create-secret \
             --name …`) or set create_if_missing = true"
                .into(),
        )
    }

    /// `DescribeSecret`: `None` when the secret does not exist.
    pub(super) async fn describe(&self) -> Result<Option<DescribeSecretOutput>, StoreError> {
        let client = self.client().await?;
        match client
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.sdk_err(&e, "DescribeSecret")),
        }
    }

    /// Whether the secret exists (one `DescribeSecret`).
    async fn exists(&self) -> Result<bool, StoreError> {
        match self.describe().await? {
            Some(d) if d.deleted_date().is_some() => Err(self.err(
                ErrorKind::Config,
                "the secret is scheduled for deletion; restore it (`aws secretsmanager \
                 restore-secret`) or point the config at another secret"
                    .into(),
            )),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    /// The document of a value (a `SecretString`, or why a binary value is unusable).
    pub(super) fn document(string: Option<&str>) -> Result<TokenDocument, DocumentError> {
        match string {
            Some(s) => TokenDocument::from_json(s.as_bytes()),
            None => Err(DocumentError(
                "the secret version holds binary data, not a token document".into(),
            )),
        }
    }

    fn stored(out: &GetSecretValueOutput) -> Option<Stored> {
        let version = Version(out.version_id()?.to_string());
        let mut stored = Stored::new(version, Self::document(out.secret_string()));
        stored.state = if out.version_stages().iter().any(|s| s == MARKER) {
            StateHint::Kept
        } else {
            StateHint::None
        };
        Some(stored)
    }

    /// The version id a write made from `expected` gets: UUID-shaped (36 characters; Secrets
    /// Manager wants 32-64), from SHA-256 of the expected version id and the generation (0
    /// unless AWSCURRENT was rolled back). Version ids are unique within a secret, so runners
    /// that name the secret differently (name vs ARN) still derive the same id.
    pub fn request_token(expected: Option<&Version>, generation: u32) -> String {
        let input = format!(
            "deepvue-rotator/v1\n{}\n{generation}",
            expected.map_or("", |v| v.0.as_str())
        );
        let d = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
        let hex: String = d.as_ref()[..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// `GetSecretValue` of a version id (or AWSCURRENT): `None` when it does not exist (or,
    /// for AWSCURRENT, when the secret has no value yet).
    async fn get_value(
        &self,
        version_id: Option<&str>,
    ) -> Result<Option<GetSecretValueOutput>, StoreError> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .set_version_id(version_id.map(str::to_string))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            // Not even a valid version id: it cannot exist.
            Err(e) if version_id.is_some() && sm_code(&e) == Some("InvalidParameterException") => {
                Ok(None)
            }
            Err(e) => Err(self.sdk_err(&e, "GetSecretValue")),
        }
    }

    /// The version labelled AWSPREVIOUS, if any.
    async fn get_previous(&self) -> Result<Option<GetSecretValueOutput>, StoreError> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage("AWSPREVIOUS")
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.sdk_err(&e, "GetSecretValue")),
        }
    }

    /// After a put failed without an answer: did it land? Same id + same value = ours.
    async fn landed(&self, token: &str, value: &str) -> Result<Option<bool>, StoreError> {
        Ok(self
            .get_value(Some(token))
            .await?
            .map(|out| out.secret_string() == Some(value)))
    }

    fn conflict(&self, token: &str) -> StoreError {
        self.err(
            ErrorKind::Conflict,
            format!(
                "version {token} was already written by another runner from the same current \
                 version; nothing written"
            ),
        )
    }

    async fn put(&self, token: &str, value: &str) -> Result<Version, PutError> {
        let client = self.client().await.map_err(PutError::Other)?;
        let result = client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(token)
            .secret_string(value)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Version(out.version_id().unwrap_or(token).to_string())),
            Err(e) if sm_code(&e) == Some("ResourceExistsException") => Err(PutError::Exists),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Err(PutError::NotFound),
            Err(e) => {
                let err = self.sdk_err(&e, "PutSecretValue");
                if err.kind != ErrorKind::Transient {
                    return Err(PutError::Other(err));
                }
                // The SDK already retried with the same id and value. The last answer may
                // have been lost after the version was written: look before giving up.
                match self.landed(token, value).await {
                    Ok(Some(true)) => Ok(Version(token.to_string())),
                    Ok(Some(false)) => Err(PutError::Exists),
                    _ => Err(PutError::Other(err)),
                }
            }
        }
    }

    /// `CreateSecret` for this secret with the configured description, KMS key and tags.
    fn create_request(
        &self,
        client: &aws_sdk_secretsmanager::Client,
    ) -> aws_sdk_secretsmanager::operation::create_secret::builders::CreateSecretFluentBuilder {
        let mut req = client
            .create_secret()
            .name(&self.secret_id)
            .description(DESCRIPTION)
            .set_kms_key_id(self.kms_key_id.clone());
        for (k, v) in &self.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        req
    }

    async fn create(&self, token: &str, value: &str) -> Result<Version, PutError> {
        let client = self.client().await.map_err(PutError::Other)?;
        let req = self
            .create_request(&client)
            .client_request_token(token)
            .secret_string(value);
        match req.send().await {
            Ok(out) => Ok(Version(out.version_id().unwrap_or(token).to_string())),
            // The secret appeared meanwhile (another runner, our own lost attempt, or a
            // failed first run recording its state): write into it under the same id.
            Err(e) if sm_code(&e) == Some("ResourceExistsException") => {
                match self.landed(token, value).await.map_err(PutError::Other)? {
                    Some(true) => Ok(Version(token.to_string())),
                    Some(false) => Err(PutError::Exists),
                    None => self.put(token, value).await,
                }
            }
            Err(e) => Err(PutError::Other(self.sdk_err(&e, "CreateSecret"))),
        }
    }

    /// One `DescribeSecret`: the state, and what it tells about tags, marker and current.
    async fn describe_state(&self) -> Result<StateRead, StoreError> {
        let Some(d) = self.describe().await? else {
            return Ok(StateRead {
                etag: Some(StateEtag::of(&TagState::default())),
                ..StateRead::default()
            });
        };
        let (keys, bytes, torn) = state_tags::decode(d.tags());
        let stages = d.version_ids_to_stages();
        let on = |label: &str| {
            stages.and_then(|m| {
                m.iter()
                    .find(|(_, v)| v.iter().any(|x| x == label))
                    .map(|(k, _)| k.clone())
            })
        };
        let (marker_on, current) = (on(MARKER), on(CURRENT));
        // A marker without state (a half-finished cleanup, tags removed by hand), or tags
        // that do not decode: the next write_state clears them, or every run would pay this
        // read.
        let needs_write = torn || (marker_on.is_some() && bytes.is_none());
        Ok(StateRead {
            bytes,
            etag: Some(StateEtag::of(&TagState {
                keys,
                marker_on,
                current,
            })),
            needs_write,
        })
    }

    /// Write the state tags; on a missing secret with `create_if_missing`, create it (empty)
    /// carrying them, so a failed first run keeps its alert history.
    async fn put_state_tags(&self, new_tags: &[(String, String)]) -> Result<(), StoreError> {
        let client = self.client().await?;
        let tags: Vec<Tag> = new_tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let sent = client
            .tag_resource()
            .secret_id(&self.secret_id)
            .set_tags(Some(tags.clone()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e)
                if sm_code(&e) == Some("ResourceNotFoundException") && self.create_if_missing =>
            {
                let mut create = self.create_request(&client);
                for t in tags {
                    create = create.tags(t);
                }
                create
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| self.sdk_err(&e, "CreateSecret"))
            }
            Err(e) => Err(self.sdk_err(&e, "TagResource")),
        }
    }

    /// Put `MARKER` on `to` (or nowhere), from wherever it is.
    async fn move_marker(&self, from: Option<&str>, to: Option<&str>) -> Result<(), StoreError> {
        if from == to {
            return Ok(());
        }
        let client = self.client().await?;
        let mut req = client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(MARKER);
        if let Some(t) = to {
            req = req.move_to_version_id(t);
        }
        if let Some(f) = from {
            req = req.remove_from_version_id(f);
        }
        req.send()
            .await
            .map_err(|e| self.sdk_err(&e, "UpdateSecretVersionStage"))?;
        Ok(())
    }
}

#[async_trait]
impl TokenStore for AwsStore {
    fn backend(&self) -> &'static str {
        "aws"
    }

    fn secret_id(&self) -> String {
        self.secret_id.clone()
    }

    fn is_named(&self, platform_name: &str) -> bool {
        same_secret(&self.secret_id, platform_name)
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        match self.get_value(None).await? {
            Some(out) => Ok(Self::stored(&out)),
            // Either no secret, or a secret with no AWSCURRENT value yet (provisioned empty by
            // Terraform): only the second is "nothing stored yet".
            None if self.exists().await? || self.create_if_missing => Ok(None),
            None => Err(self.missing()),
        }
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        Ok(self
            .get_value(Some(&version.0))
            .await?
            .and_then(|out| Self::stored(&out)))
    }

    async fn read_previous(&self, current: &Version) -> Result<Option<Stored>, StoreError> {
        Ok(self
            .get_previous()
            .await?
            .and_then(|out| Self::stored(&out))
            .filter(|s| &s.version != current))
    }

    async fn write(&self, doc: &TokenDocument, mode: WriteMode<'_>) -> Result<Version, StoreError> {
        let expected = mode.expected();
        let json = doc.to_json();
        let value = json.expose_secret();
        for generation in 0..MAX_GENERATIONS {
            let token = Self::request_token(expected, generation);
            let result = match self.put(&token, value).await {
                Err(PutError::NotFound) if expected.is_none() && self.create_if_missing => {
                    self.create(&token, value).await
                }
                other => other,
            };
            match result {
                Ok(v) => return Ok(v),
                Err(PutError::NotFound) => return Err(self.missing()),
                Err(PutError::Other(e)) => return Err(e),
                Err(PutError::Exists) => {
                    // Another runner wrote from `expected` first — unless AWSCURRENT is still
                    // `expected`, i.e. it was rolled back after an earlier write from it. The
                    // colliding version itself answers first: if it is AWSCURRENT, a race.
                    let colliding = self.get_value(Some(&token)).await?;
                    if colliding.is_some_and(|c| c.version_stages().iter().any(|s| s == CURRENT)) {
                        return Err(self.conflict(&token));
                    }
                    let now = self.get_value(None).await?;
                    if now.as_ref().and_then(|o| o.version_id()) != expected.map(|v| v.0.as_str()) {
                        return Err(self.conflict(&token));
                    }
                    warn!(
                        version = %token,
                        "that version exists but AWSCURRENT is still the version it was written \
                         from (rolled back?); writing under the next generation id"
                    );
                }
            }
        }
        Err(self.err(
            ErrorKind::Permanent,
            format!(
                "AWSCURRENT was rolled back to {} more than {MAX_GENERATIONS} times; rotate with \
                 --force after checking who moves AWSCURRENT",
                expected.map_or("(none)", |v| v.0.as_str())
            ),
        ))
    }

    async fn check(&self) -> Result<(), StoreError> {
        if self.exists().await? || self.create_if_missing {
            Ok(())
        } else {
            Err(self.missing())
        }
    }
}

/// Run state in tags, marked by [`MARKER`] on the current version.
#[async_trait]
impl StateStore for AwsStore {
    fn policy(&self) -> StatePolicy {
        StatePolicy::AlertsOnly
    }

    fn capacity(&self) -> usize {
        state_tags::CAPACITY
    }

    async fn read_state(&self) -> Result<StateRead, StoreError> {
        self.describe_state().await
    }

    async fn write_state(
        &self,
        bytes: Option<&[u8]>,
        etag: Option<&StateEtag>,
    ) -> Result<(), StoreError> {
        let keep = bytes.is_some();
        let new_tags = match bytes {
            Some(b) => state_tags::encode(b).map_err(|e| self.err(ErrorKind::Permanent, e))?,
            None => Vec::new(),
        };
        // What read_state saw; a write without a read in this run looks for itself.
        let base: TagState = match etag.and_then(StateEtag::value) {
            Some(b) => b,
            None => self
                .describe_state()
                .await?
                .etag
                .as_ref()
                .and_then(StateEtag::value)
                .unwrap_or_default(),
        };
        let (marker_on, current) = (base.marker_on.as_deref(), base.current.as_deref());
        // Order matters for what a crash leaves: while keeping, the marker goes on first (a
        // marker without state heals itself; state without a marker would be stranded); when
        // dropping, the tags go first and the marker last.
        if keep {
            self.move_marker(marker_on, current).await?;
            self.put_state_tags(&new_tags).await?;
        }
        let stale: Vec<String> = base
            .keys
            .iter()
            .filter(|k| !new_tags.iter().any(|(n, _)| n == *k))
            .cloned()
            .collect();
        if !stale.is_empty() {
            let client = self.client().await?;
            client
                .untag_resource()
                .secret_id(&self.secret_id)
                .set_tag_keys(Some(stale))
                .send()
                .await
                .map_err(|e| self.sdk_err(&e, "UntagResource"))?;
        }
        if !keep {
            self.move_marker(marker_on, None).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_are_stable_uuid_shaped_and_distinct() {
        let v1 = Version("v1".into());
        let a = AwsStore::request_token(Some(&v1), 0);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_eq!(a, AwsStore::request_token(Some(&v1), 0));
        assert_ne!(a, AwsStore::request_token(Some(&Version("v2".into())), 0));
        assert_ne!(a, AwsStore::request_token(Some(&v1), 1));
        assert_ne!(a, AwsStore::request_token(None, 0));
    }
}
