//! AWS Secrets Manager token store.
//!
//! Each rotation is `PutSecretValue` without `VersionStages`: the new version becomes
//! AWSCURRENT and the one before it AWSPREVIOUS (still readable).
//!
//! **Conditional writes.** Secrets Manager has no compare-and-swap, but versions are immutable
//! and `ClientRequestToken` becomes the new VersionId. The token is derived from the secret id
//! and the version the decision was made from, so every runner that decided from version V
//! writes under the same token: the first creates the version, every other one gets
//! `ResourceExistsException` ("same token, different value") and ends as a clean conflict.
//! A stale runner that read V after someone already wrote past it collides with the version the
//! winner wrote from V. A put whose response was lost is retried with the same token and value
//! (the SDK's retries, then one look at the version), never by minting again.
//!
//! **Cost.** `read_current` is one `GetSecretValue`; a write one `PutSecretValue`. Run state
//! (alert dedup, last outcome) lives in tags on the token secret (`deepvue-rotator:state:N`,
//! base64 JSON in ≤ 256-character chunks): reading it costs a `DescribeSecret`, so the
//! rotator only reads it when alerting needs it (see `TokenStore::state_costs_call`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::Tag;
use base64::Engine;
use secrecy::ExposeSecret;

use super::{RotationLock, RunState, StoreError, Stored, TokenStore, Version};
use crate::aws::{AwsClients, classify_sm_error, sm_code};
use crate::error::ErrorKind;
use crate::token::{DocumentError, TokenDocument};

/// Tag keys holding the run state start with this.
pub const STATE_TAG_PREFIX: &str = "deepvue-rotator:state:";
/// At most this many state tags (AWS allows 50 per secret; leave room for the user's).
const STATE_MAX_CHUNKS: usize = 10;
/// Description of a secret this tool creates.
const DESCRIPTION: &str = "Deepvue access token, rotated by deepvue-rotator";
/// Tag values are at most 256 characters.
const STATE_CHUNK: usize = 256;

/// A token secret in AWS Secrets Manager.
pub struct AwsStore {
    clients: Arc<AwsClients>,
    secret_id: String,
    create_if_missing: bool,
    kms_key_id: Option<String>,
    tags: BTreeMap<String, String>,
    /// How many state tags the last read or write saw (to untag leftovers).
    state_chunks: Mutex<Option<usize>>,
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
            state_chunks: Mutex::new(None),
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

    fn missing(&self) -> StoreError {
        self.err(
            ErrorKind::Config,
            "the secret does not exist; create it (deploy/terraform, or `aws secretsmanager \
             create-secret --name …`) or set create_if_missing = true"
                .into(),
        )
    }

    /// Whether the secret exists (one `DescribeSecret`).
    async fn exists(&self) -> Result<bool, StoreError> {
        let client = self.client().await?;
        match client
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
        {
            Ok(d) if d.deleted_date().is_some() => Err(self.err(
                ErrorKind::Config,
                "the secret is scheduled for deletion; restore it (`aws secretsmanager \
                 restore-secret`) or point the config at another secret"
                    .into(),
            )),
            Ok(_) => Ok(true),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(self.sdk_err(&e, "DescribeSecret")),
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

    /// The version a write made from `expected` gets. UUID-shaped (36 characters; Secrets
    /// Manager wants 32-64), from SHA-256 of the secret id and the expected version.
    pub fn request_token(secret_id: &str, expected: Option<&Version>) -> String {
        let input = format!(
            "deepvue-rotator/v1\n{secret_id}\n{}",
            expected.map_or("", |v| v.0.as_str())
        );
        let d = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
        let b = d.as_ref();
        let hex: String = b[..16].iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// After a put failed without an answer: did it land? Same token + same value = ours.
    async fn landed(&self, token: &str, value: &str) -> Result<Option<bool>, StoreError> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_id(token)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.secret_string() == Some(value))),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.sdk_err(&e, "GetSecretValue")),
        }
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

    async fn create(&self, token: &str, value: &str) -> Result<Version, StoreError> {
        let client = self.client().await?;
        let mut req = client
            .create_secret()
            .name(&self.secret_id)
            .client_request_token(token)
            .secret_string(value)
            .description(DESCRIPTION);
        if let Some(k) = &self.kms_key_id {
            req = req.kms_key_id(k);
        }
        for (k, v) in &self.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        match req.send().await {
            Ok(out) => Ok(Version(out.version_id().unwrap_or(token).to_string())),
            Err(e) if sm_code(&e) == Some("ResourceExistsException") => {
                // Created by another runner meanwhile (or by our own lost attempt).
                match self.landed(token, value).await? {
                    Some(true) => Ok(Version(token.to_string())),
                    _ => Err(self.conflict(token)),
                }
            }
            Err(e) => Err(self.sdk_err(&e, "CreateSecret")),
        }
    }

    fn encode_state(state: &RunState) -> Result<Vec<String>, String> {
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
                return Ok(b64
                    .as_bytes()
                    .chunks(STATE_CHUNK)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect());
            }
        }
        Err("the run state does not fit in the secret's tags".into())
    }

    fn decode_state(tags: &[Tag]) -> (usize, Option<RunState>) {
        let mut chunks: BTreeMap<usize, &str> = BTreeMap::new();
        for t in tags {
            if let (Some(k), Some(v)) = (t.key(), t.value())
                && let Some(i) = k.strip_prefix(STATE_TAG_PREFIX)
                && let Ok(i) = i.parse::<usize>()
            {
                chunks.insert(i, v);
            }
        }
        let count = chunks.len();
        if count == 0 {
            return (0, None);
        }
        let joined: String = (0..count).map_while(|i| chunks.get(&i).copied()).collect();
        let state = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        (count, state)
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

    fn state_costs_call(&self) -> bool {
        true
    }

    async fn read_current(&self) -> Result<Option<Stored>, StoreError> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
        {
            Ok(out) => Ok(Self::stored(out.version_id(), out.secret_string())),
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => {
                // Either no secret, or a secret with no AWSCURRENT value yet (provisioned
                // empty by Terraform): only the second is "nothing stored yet".
                if self.exists().await? || self.create_if_missing {
                    Ok(None)
                } else {
                    Err(self.missing())
                }
            }
            Err(e) => Err(self.sdk_err(&e, "GetSecretValue")),
        }
    }

    async fn read_version(&self, version: &Version) -> Result<Option<Stored>, StoreError> {
        let client = self.client().await?;
        match client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_id(&version.0)
            .send()
            .await
        {
            Ok(out) => Ok(Self::stored(out.version_id(), out.secret_string())),
            // Unknown, deprecated-and-deleted, or not even a valid version id.
            Err(e)
                if matches!(
                    sm_code(&e),
                    Some("ResourceNotFoundException" | "InvalidParameterException")
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.sdk_err(&e, "GetSecretValue")),
        }
    }

    async fn write(
        &self,
        doc: &TokenDocument,
        expected: Option<&Version>,
    ) -> Result<Version, StoreError> {
        let token = Self::request_token(&self.secret_id, expected);
        let json = doc.to_json();
        let value = json.expose_secret();
        let client = self.client().await?;
        let result = client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(&token)
            .secret_string(value)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Version(out.version_id().unwrap_or(&token).to_string())),
            Err(e) if sm_code(&e) == Some("ResourceExistsException") => Err(self.conflict(&token)),
            Err(e)
                if sm_code(&e) == Some("ResourceNotFoundException")
                    && expected.is_none()
                    && self.create_if_missing =>
            {
                self.create(&token, value).await
            }
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Err(self.missing()),
            Err(e) => {
                let err = self.sdk_err(&e, "PutSecretValue");
                if err.kind != ErrorKind::Transient {
                    return Err(err);
                }
                // The SDK already retried with the same token and value. The last answer may
                // have been lost after the version was written: look before giving up.
                match self.landed(&token, value).await {
                    Ok(Some(true)) => Ok(Version(token)),
                    Ok(Some(false)) => Err(self.conflict(&token)),
                    _ => Err(err),
                }
            }
        }
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
        let client = self.client().await?;
        match client
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
        {
            Ok(d) => {
                let (count, state) = Self::decode_state(d.tags());
                if let Ok(mut c) = self.state_chunks.lock() {
                    *c = Some(count);
                }
                Ok(state)
            }
            Err(e) if sm_code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.sdk_err(&e, "DescribeSecret")),
        }
    }

    async fn write_state(&self, state: &RunState) -> Result<(), StoreError> {
        let chunks = if *state == RunState::default() {
            Vec::new()
        } else {
            Self::encode_state(state).map_err(|e| self.err(ErrorKind::Permanent, e))?
        };
        let known = self.state_chunks.lock().ok().and_then(|c| *c);
        let before = match known {
            Some(n) => n,
            None => {
                self.read_state().await?;
                self.state_chunks.lock().ok().and_then(|c| *c).unwrap_or(0)
            }
        };
        let client = self.client().await?;
        if !chunks.is_empty() {
            let mut req = client.tag_resource().secret_id(&self.secret_id);
            let state_tags: Vec<Tag> = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    Tag::builder()
                        .key(format!("{STATE_TAG_PREFIX}{i}"))
                        .value(c)
                        .build()
                })
                .collect();
            req = req.set_tags(Some(state_tags.clone()));
            match req.send().await {
                Ok(_) => {}
                // A first run that failed before anything was written: create the (empty)
                // secret now, carrying the state, so the alert history is not lost.
                Err(e)
                    if sm_code(&e) == Some("ResourceNotFoundException")
                        && self.create_if_missing =>
                {
                    let mut create = client
                        .create_secret()
                        .name(&self.secret_id)
                        .description(DESCRIPTION)
                        .set_tags(Some(state_tags));
                    if let Some(k) = &self.kms_key_id {
                        create = create.kms_key_id(k);
                    }
                    for (k, v) in &self.tags {
                        create = create.tags(Tag::builder().key(k).value(v).build());
                    }
                    create
                        .send()
                        .await
                        .map_err(|e| self.sdk_err(&e, "CreateSecret"))?;
                }
                Err(e) => return Err(self.sdk_err(&e, "TagResource")),
            }
        }
        if before > chunks.len() {
            let mut req = client.untag_resource().secret_id(&self.secret_id);
            for i in chunks.len()..before {
                req = req.tag_keys(format!("{STATE_TAG_PREFIX}{i}"));
            }
            req.send()
                .await
                .map_err(|e| self.sdk_err(&e, "UntagResource"))?;
        }
        if let Ok(mut c) = self.state_chunks.lock() {
            *c = Some(chunks.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_are_stable_uuid_shaped_and_distinct() {
        let a = AwsStore::request_token("app/deepvue", Some(&Version("v1".into())));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_eq!(
            a,
            AwsStore::request_token("app/deepvue", Some(&Version("v1".into())))
        );
        assert_ne!(
            a,
            AwsStore::request_token("app/deepvue", Some(&Version("v2".into())))
        );
        assert_ne!(
            a,
            AwsStore::request_token("app/other", Some(&Version("v1".into())))
        );
        assert_ne!(a, AwsStore::request_token("app/deepvue", None));
    }

    #[test]
    fn state_survives_chunking_and_is_capped() {
        let state = RunState {
            last_run_at: Some("2026-11-28T12:00:00Z".into()),
            last_outcome: Some("failed".into()),
            last_error: Some("x".repeat(5000)),
            consecutive_failures: 3,
            ..RunState::default()
        };
        let chunks = AwsStore::encode_state(&state).unwrap_or_default();
        assert!(!chunks.is_empty() && chunks.len() <= STATE_MAX_CHUNKS);
        assert!(chunks.iter().all(|c| c.len() <= STATE_CHUNK));
        let tags: Vec<Tag> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Tag::builder()
                    .key(format!("{STATE_TAG_PREFIX}{i}"))
                    .value(c)
                    .build()
            })
            .collect();
        let (n, back) = AwsStore::decode_state(&tags);
        assert_eq!(n, chunks.len());
        let back = back.unwrap_or_default();
        assert_eq!(back.consecutive_failures, 3);
        assert!(back.last_error.map_or(0, |e| e.len()) <= 700);
    }
}
