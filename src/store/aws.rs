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
//! (alert dedup) lives in tags on the token secret (`deepvue-rotator:state:N` chunks of base64
//! JSON plus a `deepvue-rotator:state:n` header with the count and a digest). Whether there is
//! any is marked, for free, by the staging label [`MARKER`] on the current version, which
//! `GetSecretValue` returns anyway: the rotator reads the tags (`DescribeSecret`) only when the
//! marker is there, the run failed, or egress drifted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::types::Tag;
use base64::Engine;
use secrecy::ExposeSecret;
use tracing::warn;

use super::{RotationLock, RunState, StoreError, Stored, TokenStore, Version};
use crate::aws::{AwsClients, classify_sm_error, sm_code};
use crate::error::ErrorKind;
use crate::token::{DocumentError, TokenDocument};

/// Tag keys holding the run state start with this.
pub const STATE_TAG_PREFIX: &str = "deepvue-rotator:state:";
/// The header tag: `<chunks>.<digest>`.
const STATE_HEADER: &str = "deepvue-rotator:state:n";
const CURRENT: &str = "AWSCURRENT";
/// Staging label on the current version while run state (open alerts, a failure) is kept.
pub const MARKER: &str = "DEEPVUE_ROTATOR_ALERTS";
/// At most this many state chunks (AWS allows 50 tags per secret; leave room for the user's).
const STATE_MAX_CHUNKS: usize = 10;
/// Tag values are at most 256 characters.
const STATE_CHUNK: usize = 256;
/// Rollbacks of AWSCURRENT tolerated per expected version before giving up.
const MAX_GENERATIONS: u32 = 4;
/// Description of a secret this tool creates.
const DESCRIPTION: &str = "Deepvue access token, rotated by deepvue-rotator";

/// What this process last saw of the secret (per store instance, i.e. per token and run).
#[derive(Default)]
struct Seen {
    /// The current version id: `None` unknown, `Some(None)` no value yet.
    current: Option<Option<String>>,
    /// Whether the version the decision was made from carries [`MARKER`].
    flagged: Option<bool>,
    /// Where [`MARKER`] is, per the last `DescribeSecret`.
    marker_on: Option<Option<String>>,
    /// State tag keys present, per the last `DescribeSecret`.
    state_keys: Option<Vec<String>>,
    /// The marker is set but there is no state worth keeping.
    heal: bool,
}

/// A token secret in AWS Secrets Manager.
pub struct AwsStore {
    clients: Arc<AwsClients>,
    secret_id: String,
    create_if_missing: bool,
    kms_key_id: Option<String>,
    tags: BTreeMap<String, String>,
    seen: Mutex<Seen>,
}

enum PutError {
    /// `ResourceExistsException`: that version id is taken.
    Exists,
    /// `ResourceNotFoundException`: no such secret.
    NotFound,
    Other(StoreError),
}

impl AwsStore {
    /// A store for `secret_id` (name or ARN).
    pub fn new(
        clients: Arc<AwsClients>,
        secret_id: String,
        create_if_missing: bool,
        kms_key_id: Option<String>,
        tags: BTreeMap<String, String>,
    ) -> Self {
        AwsStore {
            clients,
            secret_id,
            create_if_missing,
            kms_key_id,
            tags,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn err(&self, kind: ErrorKind, message: String) -> StoreError {
        StoreError {
            backend: "aws",
            secret_id: self.secret_id.clone(),
            kind,
            message,
        }
    }

    fn sdk_err<E>(
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

    async fn client(&self) -> Result<&aws_sdk_secretsmanager::Client, StoreError> {
        self.clients
            .secrets_manager()
            .await
            .map_err(|e| self.err(ErrorKind::Config, e))
    }

    fn seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> Option<T> {
        self.seen.lock().ok().map(|mut s| f(&mut s))
    }

    fn missing(&self) -> StoreError {
        self.err(
            ErrorKind::Config,
            "the secret does not exist; create it (deploy/terraform, or `aws secretsmanager \
             create-secret --name …`) or set create_if_missing = true"
                .into(),
        )
    }

    /// `DescribeSecret`: `None` when the secret does not exist.
    async fn describe(&self) -> Result<Option<DescribeSecretOutput>, StoreError> {
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

    fn stored(version: Option<&str>, string: Option<&str>) -> Option<Stored> {
        let version = Version(version?.to_string());
        let document = match string {
            Some(s) => TokenDocument::from_json(s.as_bytes()),
            None => Err(DocumentError(
                "the secret version holds binary data, not a token document".into(),
            )),
        };
        Some(Stored { version, document })
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
            .create_request(client)
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

    /// Whether a state is worth keeping: a success with nothing open is "no state".
    fn worth_keeping(state: &RunState) -> bool {
        !state.alerts.is_empty() || state.last_outcome.as_deref() == Some("failed")
    }

    fn encode_state(state: &RunState) -> Result<Vec<(String, String)>, String> {
        let mut s = state.clone();
        for limit in [usize::MAX, 600, 200, 0] {
            let cut = |v: &mut Option<String>| {
                if let Some(t) = v
                    && t.len() > limit
                {
                    *t = crate::token::truncate(t, limit);
                }
            };
            cut(&mut s.last_error);
            cut(&mut s.last_alert_error);
            let json = serde_json::to_vec(&s).map_err(|e| e.to_string())?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(json);
            if b64.len() <= STATE_CHUNK * STATE_MAX_CHUNKS {
                let mut tags: Vec<(String, String)> = b64
                    .as_bytes()
                    .chunks(STATE_CHUNK)
                    .enumerate()
                    .map(|(i, c)| {
                        (
                            format!("{STATE_TAG_PREFIX}{i}"),
                            String::from_utf8_lossy(c).into_owned(),
                        )
                    })
                    .collect();
                tags.push((
                    STATE_HEADER.to_string(),
                    format!("{}.{}", tags.len(), digest(&b64)),
                ));
                return Ok(tags);
            }
        }
        Err("the run state does not fit in the secret's tags".into())
    }

    /// The state from tags, and every state tag key present. A torn or foreign state (count or
    /// digest mismatch) reads as none.
    fn decode_state(tags: &[Tag]) -> (Vec<String>, Option<RunState>) {
        let mut keys = Vec::new();
        let mut chunks: BTreeMap<usize, &str> = BTreeMap::new();
        let mut header = None;
        for t in tags {
            let (Some(k), Some(v)) = (t.key(), t.value()) else {
                continue;
            };
            let Some(rest) = k.strip_prefix(STATE_TAG_PREFIX) else {
                continue;
            };
            keys.push(k.to_string());
            if k == STATE_HEADER {
                header = Some(v);
            } else if let Ok(i) = rest.parse::<usize>() {
                chunks.insert(i, v);
            }
        }
        let state = header.and_then(|h| {
            let (count, sum) = h.split_once('.')?;
            let count: usize = count.parse().ok()?;
            let joined: String = (0..count)
                .map(|i| chunks.get(&i).copied())
                .collect::<Option<String>>()?;
            if digest(&joined) != sum {
                return None;
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(joined)
                .ok()?;
            serde_json::from_slice(&bytes).ok()
        });
        (keys, state)
    }

    /// One `DescribeSecret`: the state, and what it tells about tags, marker and current.
    async fn describe_state(&self) -> Result<Option<RunState>, StoreError> {
        match self.describe().await? {
            Some(d) => {
                let (keys, state) = Self::decode_state(d.tags());
                let stages = d.version_ids_to_stages();
                let on = |label: &str| {
                    stages.and_then(|m| {
                        m.iter()
                            .find(|(_, v)| v.iter().any(|x| x == label))
                            .map(|(k, _)| k.clone())
                    })
                };
                let (marker, current) = (on(MARKER), on(CURRENT));
                let heal = marker.is_some() && !state.as_ref().is_some_and(Self::worth_keeping);
                self.seen(|s| {
                    s.state_keys = Some(keys);
                    s.marker_on = Some(marker.clone());
                    // Newer than what read_current saw (another runner may have moved it).
                    s.current = Some(current);
                    // A marker without usable state (a half-finished cleanup, tags removed by
                    // hand): the next write_state clears it, or every run would pay this read.
                    s.heal = heal;
                });
                Ok(state)
            }
            None => {
                self.seen(|s| {
                    s.state_keys = Some(Vec::new());
                    s.marker_on = Some(None);
                });
                Ok(None)
            }
        }
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
                let mut create = self.create_request(client);
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
        self.seen(|s| s.marker_on = Some(to.map(str::to_string)));
        Ok(())
    }
}

fn digest(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    d.as_ref()[..6].iter().map(|x| format!("{x:02x}")).collect()
}

#[async_trait]
impl TokenStore for AwsStore {
    fn backend(&self) -> &'static str {
        "aws"
    }

    fn secret_id(&self) -> String {
        self.secret_id.clone()
    }

    fn state_costs_call(&self) -> bool {
        true
    }

    fn state_flagged(&self) -> bool {
        self.seen(|s| s.flagged).flatten().unwrap_or(true)
    }

    fn state_needs_write(&self) -> bool {
        self.seen(|s| s.heal).unwrap_or(false)
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        let out = self.get_value(None).await?;
        // A new decision: forget what an earlier run in this process saw.
        self.seen(|s| {
            *s = Seen {
                current: Some(
                    out.as_ref()
                        .and_then(|o| o.version_id().map(str::to_string)),
                ),
                flagged: out
                    .as_ref()
                    .map(|o| o.version_stages().iter().any(|s| s == MARKER)),
                ..Seen::default()
            }
        });
        match out {
            Some(out) => Ok(Self::stored(out.version_id(), out.secret_string())),
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
            .and_then(|out| Self::stored(out.version_id(), out.secret_string())))
    }

    async fn write(
        &self,
        doc: &TokenDocument,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
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
                Ok(v) => {
                    self.seen(|s| s.current = Some(Some(v.0.clone())));
                    return Ok(v);
                }
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

    async fn lock(&self) -> Result<Option<RotationLock>, StoreError> {
        // No lock service: the derived ClientRequestToken makes racing writers converge.
        Ok(None)
    }

    async fn check(&self) -> Result<(), StoreError> {
        if self.exists().await? || self.create_if_missing {
            Ok(())
        } else {
            Err(self.missing())
        }
    }

    async fn read_state(&self) -> Result<Option<RunState>, StoreError> {
        self.describe_state().await
    }

    async fn write_state(&self, state: &RunState) -> Result<(), StoreError> {
        let keep = Self::worth_keeping(state);
        let new_tags = if keep {
            Self::encode_state(state).map_err(|e| self.err(ErrorKind::Permanent, e))?
        } else {
            Vec::new()
        };
        if self.seen(|s| s.state_keys.is_none()).unwrap_or(true) {
            self.describe_state().await?;
        }
        // Order matters for what a crash leaves: while keeping, the marker goes on first (a
        // marker without state heals itself; state without a marker would be stranded); when
        // dropping, the tags go first and the marker last.
        let (marker_on, current) = self
            .seen(|s| (s.marker_on.clone().flatten(), s.current.clone().flatten()))
            .unwrap_or_default();
        if keep {
            self.move_marker(marker_on.as_deref(), current.as_deref())
                .await?;
            self.put_state_tags(&new_tags).await?;
        }
        let stale: Vec<String> = self
            .seen(|s| s.state_keys.clone())
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !new_tags.iter().any(|(n, _)| n == k))
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
        self.seen(|s| s.state_keys = Some(new_tags.iter().map(|(k, _)| k.clone()).collect()));
        if !keep {
            self.move_marker(marker_on.as_deref(), None).await?;
        }
        self.seen(|s| s.heal = false);
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

    fn tags(pairs: &[(String, String)]) -> Vec<Tag> {
        pairs
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    #[test]
    fn state_survives_chunking_is_capped_and_torn_states_read_as_none() {
        let state = RunState {
            last_run_at: Some("2026-11-28T12:00:00Z".into()),
            last_outcome: Some("failed".into()),
            last_error: Some("x".repeat(5000)),
            consecutive_failures: 3,
            ..RunState::default()
        };
        let pairs = AwsStore::encode_state(&state).unwrap_or_default();
        assert!(pairs.len() >= 2 && pairs.len() <= STATE_MAX_CHUNKS + 1);
        assert!(pairs.iter().all(|(_, v)| v.len() <= STATE_CHUNK));
        let (keys, back) = AwsStore::decode_state(&tags(&pairs));
        assert_eq!(keys.len(), pairs.len());
        let back = back.unwrap_or_default();
        assert_eq!(back.consecutive_failures, 3);
        assert!(back.last_error.map_or(0, |e| e.len()) <= 700);

        // A chunk from another write (torn update) fails the digest: no state, not garbage.
        let mut torn = pairs.clone();
        torn[0].1 = "AAAA".into();
        assert!(AwsStore::decode_state(&tags(&torn)).1.is_none());
        // A leftover chunk beyond the header's count is ignored.
        let mut extra = pairs.clone();
        extra.push((format!("{STATE_TAG_PREFIX}9"), "junk".into()));
        assert_eq!(
            AwsStore::decode_state(&tags(&extra))
                .1
                .map(|s| s.consecutive_failures),
            Some(3)
        );
        // The user's own tags are not state keys.
        let (keys, _) = AwsStore::decode_state(&tags(&[("team".into(), "x".into())]));
        assert!(keys.is_empty());
    }

    #[test]
    fn only_failures_and_open_alerts_are_kept() {
        assert!(!AwsStore::worth_keeping(&RunState {
            last_outcome: Some("rotated".into()),
            last_run_at: Some("2026-11-28T12:00:00Z".into()),
            ..RunState::default()
        }));
        assert!(AwsStore::worth_keeping(&RunState {
            last_outcome: Some("failed".into()),
            ..RunState::default()
        }));
    }
}
